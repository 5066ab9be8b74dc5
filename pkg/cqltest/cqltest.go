// Package cqltest gives tests a CQL store to talk to through gocql: the
// real cluster named by CASSANDRA_HOSTS when that variable is set, or else
// an embedded cqlserver started for the test. Each test gets its own
// keyspace, so tests can run in parallel and never see each other's data.
//
//	func TestThing(t *testing.T) {
//		session, keyspace := cqltest.Session(t)
//		...
//	}
//
// A test that simulates an outage of the store takes the embedded server
// first, then its session, which is then always on that server:
//
//	srv := cqltest.Server(t)
//	session, _ := cqltest.Session(t)
//	srv.SetUnavailable(true) // or srv.Stop() ... srv.Restart()
//
// and one that fails a single step of a change names its statements:
//
//	srv.SetFault(func(cql string) cqlserver.Fault {
//		if strings.HasPrefix(cql, "UPDATE properties ") {
//			return cqlserver.FailBefore
//		}
//		return cqlserver.NoFault
//	})
package cqltest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/gocql/gocql"
)

// HostsEnv names the environment variable with a real cluster's contact
// points (comma separated host[:port]).
const HostsEnv = "CASSANDRA_HOSTS"

// Hosts returns the contact points of the store a test should use: those in
// CASSANDRA_HOSTS when set, else the address of the test's embedded server
// (see Server). If the test already started its embedded server with
// Server, that server is used even when CASSANDRA_HOSTS is set, so tests
// that control the server (outages) always talk to it.
func Hosts(t testing.TB) []string {
	t.Helper()
	if srv, ok := servers.Load(t); ok {
		return []string{srv.(*cqlserver.Server).Addr()}
	}
	if env := os.Getenv(HostsEnv); env != "" {
		var hosts []string
		for _, h := range strings.Split(env, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) > 0 {
			return hosts
		}
	}
	return []string{Server(t).Addr()}
}

// servers holds the embedded server of each running test.
var servers sync.Map // testing.TB -> *cqlserver.Server

// Server returns the test's embedded server, starting it on a free
// loopback port on first use and closing it in t.Cleanup. Every call in
// one test returns the same server, and Hosts and Session use it too.
// Tests that need to control the store (Stop, Restart, SetUnavailable)
// call Server before Session.
func Server(t testing.TB) *cqlserver.Server {
	t.Helper()
	if srv, ok := servers.Load(t); ok {
		return srv.(*cqlserver.Server)
	}
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("create CQL server: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start CQL server: %v", err)
	}
	servers.Store(t, srv)
	t.Cleanup(func() {
		servers.Delete(t)
		if err := srv.Close(); err != nil {
			t.Errorf("close CQL server: %v", err)
		}
	})
	return srv
}

// Cluster returns a gocql configuration for the hosts with settings suited
// to tests: protocol v4, quorum consistency and generous timeouts (real
// clusters can be slow to agree on schema). Write coalescing is off: its
// 200µs timer costs about a millisecond per sequential request, which
// dominates test run time. A port in the first host also becomes the
// cluster's default port, since gocql reconnects to the node addresses it
// discovers using that port.
func Cluster(hosts ...string) *gocql.ClusterConfig {
	cc := gocql.NewCluster(hosts...)
	cc.ProtoVersion = 4
	cc.Consistency = gocql.Quorum
	cc.Timeout = 10 * time.Second
	cc.ConnectTimeout = 10 * time.Second
	cc.WriteCoalesceWaitTime = 0
	if len(hosts) > 0 {
		if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				cc.Port = p
			}
		}
	}
	return cc
}

var keyspaceSeq atomic.Int64

// Session creates a fresh keyspace (SimpleStrategy, replication factor 1)
// named after the test, and returns a session using it together with the
// keyspace name. The session is closed when the test ends, and the
// keyspace dropped (on a real cluster; an embedded server is discarded).
func Session(t testing.TB) (*gocql.Session, string) {
	t.Helper()
	hosts := Hosts(t)
	admin, err := Cluster(hosts...).CreateSession()
	if err != nil {
		t.Fatalf("connect to %v: %v", hosts, err)
	}
	ks := keyspaceName(t.Name())
	err = admin.Query(fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, ks)).Exec()
	if err != nil {
		admin.Close()
		t.Fatalf("create keyspace %s: %v", ks, err)
	}
	cc := Cluster(hosts...)
	cc.Keyspace = ks
	s, err := cc.CreateSession()
	if err != nil {
		admin.Close()
		t.Fatalf("connect to keyspace %s: %v", ks, err)
	}
	t.Cleanup(func() {
		s.Close()
		defer admin.Close()
		if _, embedded := servers.Load(t); embedded {
			return // the keyspace goes with the server, which may be stopped
		}
		if err := admin.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			t.Logf("drop keyspace %s: %v", ks, err)
		}
	})
	return s, ks
}

// keyspaceName derives a valid, unique keyspace name (at most 48
// characters of [a-z0-9_]) from a test name.
func keyspaceName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := fmt.Sprintf("_%d_%d", time.Now().UnixNano()%1e6, keyspaceSeq.Add(1))
	name := "t_" + b.String()
	if len(name)+len(suffix) > 48 {
		name = name[:48-len(suffix)]
	}
	return name + suffix
}
