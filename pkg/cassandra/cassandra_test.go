package cassandra_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/gocql/gocql"
)

// These tests start, stop and configure the embedded CQL server, so they
// run against it even when CASSANDRA_HOSTS names a real cluster.

func config(addr, keyspace string) *cassandra.Config {
	return &cassandra.Config{Hosts: addr, Keyspace: keyspace, Consistency: "ONE", Timeout: 5 * time.Second}
}

// connectRetry runs ConnectRetry in the background, logging to logs.
func connectRetry(ctx context.Context, c *cassandra.Config, logs *logtest.Buffer) <-chan result {
	done := make(chan result, 1)
	go func() {
		s, err := cassandra.ConnectRetry(ctx, c, slog.New(slog.NewTextHandler(logs, nil)))
		done <- result{s, err}
	}()
	return done
}

type result struct {
	s   *gocql.Session
	err error
}

// session waits for ConnectRetry's result and wants a session.
func session(t *testing.T, done <-chan result) *gocql.Session {
	t.Helper()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("ConnectRetry: %v", r.err)
		}
		t.Cleanup(r.s.Close)
		return r.s
	case <-time.After(20 * time.Second):
		t.Fatal("ConnectRetry did not return within 20s of the cluster answering")
		return nil
	}
}

const retrying = `msg="connect to cassandra failed; retrying"`

// TestConnectRetryWaitsForTheCluster starts connecting to a port nobody
// listens on, then starts the CQL server there: the connect returns a
// working session, having logged the failed attempts and then its success.
func TestConnectRetryWaitsForTheCluster(t *testing.T) {
	// Held from the start, refusing connections until the server listens
	// on it: a port freed for the server could be taken by another
	// listener in between.
	port := consultest.Reserve(t)
	var logs logtest.Buffer
	done := connectRetry(context.Background(), config(port.Addr(), ""), &logs)
	eventually.True(t, 15*time.Second, "a failed attempt logged", func() bool { return strings.Contains(logs.String(), retrying) })
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the warning does not carry the error:\n%s", logs.String())
	}

	srv, err := cqlserver.New(cqlserver.Config{Addr: port.Addr(), Listen: func(string, string) (net.Listener, error) { return port.Listen() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s := session(t, done)
	if err := cassandra.Ping(s); err != nil {
		t.Fatalf("ping on the session: %v", err)
	}
	if !strings.Contains(logs.String(), `level=INFO msg="connect to cassandra succeeded after failed attempts"`) {
		t.Errorf("no info line on connecting after failures:\n%s", logs.String())
	}
}

// TestConnectRetryWaitsForTheKeyspace connects to a keyspace the migrate
// job has not made yet: the warning says so, and the connect returns once
// the keyspace exists.
func TestConnectRetryWaitsForTheKeyspace(t *testing.T) {
	srv := cqltest.Server(t)
	var logs logtest.Buffer
	done := connectRetry(context.Background(), config(srv.Addr(), "not_yet"), &logs)
	eventually.True(t, 15*time.Second, "a failed attempt logged", func() bool { return strings.Contains(logs.String(), retrying) })
	if !strings.Contains(logs.String(), "keyspace not_yet does not exist yet") {
		t.Errorf("the warning does not say the keyspace is missing:\n%s", logs.String())
	}

	admin, err := cassandra.Connect(config(srv.Addr(), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.Query(`CREATE KEYSPACE not_yet WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec(); err != nil {
		t.Fatal(err)
	}
	s := session(t, done)
	if err := s.Query(`CREATE TABLE kv (k int PRIMARY KEY)`).Exec(); err != nil {
		t.Fatalf("the session is not on the keyspace: %v", err)
	}
}

// TestConnectRetryEndsWithCtx cancels the connect while it waits between
// attempts, and while an attempt hangs on a node that accepts connections
// and never answers: either way it returns at once with ctx's error.
func TestConnectRetryEndsWithCtx(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	})

	tests := []struct {
		name    string
		addr    string
		waiting func(logs *logtest.Buffer) bool // the connect is where the test cancels it
	}{
		{"between attempts", consultest.RefusedAddr(t), func(logs *logtest.Buffer) bool { return strings.Contains(logs.String(), retrying) }},
		{"during an attempt", hung.Addr().String(), func(*logtest.Buffer) bool { return len(accepted) > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := config(tt.addr, "")
			c.Timeout = time.Minute // an attempt on the hung node outlasts the test
			var logs logtest.Buffer
			done := connectRetry(ctx, c, &logs)
			eventually.True(t, 15*time.Second, "the connect to be waiting", func() bool { return tt.waiting(&logs) })
			cancel()
			select {
			case r := <-done:
				if !errors.Is(r.err, context.Canceled) {
					t.Fatalf("ConnectRetry = %v, want context.Canceled", r.err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("ConnectRetry still running 2s after ctx was cancelled")
			}
		})
	}
}

// TestConnectRetryRefusedCredentials: a cluster that refuses the
// credentials is not waited for (waiting cannot change them); right ones
// connect at the first attempt.
func TestConnectRetryRefusedCredentials(t *testing.T) {
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0", Credentials: map[string]string{"analytics_app": "right"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	tests := []struct {
		name, user, password string
		wantErr              string // "" for a session
	}{
		{"wrong password", "analytics_app", "wrong", "and/or password are incorrect"},
		{"no such role", "nobody", "right", "and/or password are incorrect"},
		{"no credentials configured", "", "", "authentication required"},
		{"right credentials", "analytics_app", "right", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config(srv.Addr(), "")
			c.Username, c.Password = tt.user, tt.password
			var logs logtest.Buffer
			select {
			case r := <-connectRetry(context.Background(), c, &logs):
				if tt.wantErr == "" {
					if r.err != nil {
						t.Fatalf("ConnectRetry: %v", r.err)
					}
					r.s.Close()
				} else if r.err == nil || !strings.Contains(r.err.Error(), tt.wantErr) || !retry.IsPermanent(r.err) {
					t.Fatalf("ConnectRetry = %v, want a permanent error containing %q", r.err, tt.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ConnectRetry is waiting; want it to return at once")
			}
			if strings.Contains(logs.String(), retrying) {
				t.Errorf("logged a retry:\n%s", logs.String())
			}
		})
	}
}

// replicas hands out the one node up to four times, as a token-aware policy
// hands out a real cluster's replicas (and then the other nodes): a retry
// on "the next host" then reaches the server again.
type replicas struct{ gocql.HostSelectionPolicy }

func (p replicas) Pick(q gocql.ExecutableQuery) gocql.NextHost {
	first := p.HostSelectionPolicy.Pick(q)()
	n := 0
	return func() gocql.SelectedHost {
		if first == nil || n == 4 {
			return nil
		}
		n++
		return first
	}
}

// TestConditionalWritesAreNotRetried: a write that timed out is tried again
// on another replica, but a lightweight transaction tried again sees its
// own first attempt's write (which Paxos completes) and answers not
// applied: a revoked secret would read as revoked by someone else. Its
// timeout reaches the caller instead; a plain upsert is still retried.
func TestConditionalWritesAreNotRetried(t *testing.T) {
	srv := cqltest.Server(t)
	admin, err := cqltest.Cluster(srv.Addr()).CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{
		`CREATE KEYSPACE lwt WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE TABLE lwt.t (k text PRIMARY KEY, v int)`,
	} {
		if err := admin.Query(q).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	cc := config(srv.Addr(), "lwt").ClusterConfig("lwt")
	cc.PoolConfig.HostSelectionPolicy = replicas{gocql.RoundRobinHostPolicy()}
	s, err := cc.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	timeoutOnce := func(prefix string) {
		var fired atomic.Bool
		srv.SetFault(func(cql string) cqlserver.Fault {
			if strings.HasPrefix(cql, prefix) && fired.CompareAndSwap(false, true) {
				return cqlserver.TimeoutAfter // written, then a timeout
			}
			return cqlserver.NoFault
		})
	}
	defer srv.SetFault(nil)

	timeoutOnce("INSERT INTO t")
	applied, err := s.Query(`INSERT INTO t (k, v) VALUES ('a', 1) IF NOT EXISTS`).MapScanCAS(map[string]any{})
	var timeout *gocql.RequestErrWriteTimeout
	if !errors.As(err, &timeout) {
		t.Fatalf("a conditional insert that timed out: applied %v, error %v; want its write timeout", applied, err)
	}
	timeoutOnce("UPDATE t")
	if err := s.Query(`UPDATE t SET v = 2 WHERE k = 'a'`).Exec(); err != nil {
		t.Fatalf("a plain upsert that timed out once was not tried again: %v", err)
	}
	for stmt, want := range map[string]bool{
		"INSERT INTO t (k) VALUES (?) IF NOT EXISTS": true,
		"DELETE FROM t WHERE k = ? IF EXISTS":        true,
		"UPDATE t SET v = 1 WHERE k = ?\nIF v = ?":   true,
		"UPDATE t SET v = 1 WHERE k = ?":             false,
		"SELECT * FROM t WHERE k = ?":                false,
	} {
		if got := cassandra.Conditional(stmt); got != want {
			t.Errorf("Conditional(%q) = %v", stmt, got)
		}
	}
}

// dropping listens for a CQL server: while drop is on, each connection
// accepted after the first since drop was turned on is closed at once, as
// a node that has just come back takes one connection but not the next.
type dropping struct {
	drop     atomic.Bool
	accepted atomic.Int64 // since drop was last turned on
	dropped  atomic.Int64
}

func (d *dropping) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	return droppingListener{ln, d}, err
}

func (d *dropping) start() {
	d.accepted.Store(0)
	d.drop.Store(true)
}

type droppingListener struct {
	net.Listener
	d *dropping
}

func (l droppingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.d.drop.Load() && l.d.accepted.Add(1) > 1 {
			c.Close()
			l.d.dropped.Add(1)
			continue
		}
		return c, nil
	}
}

// hostEvents counts what gocql tells its host selection policy.
type hostEvents struct {
	gocql.HostSelectionPolicy
	up, down atomic.Int64
}

func (h *hostEvents) HostUp(host *gocql.HostInfo) {
	h.up.Add(1)
	h.HostSelectionPolicy.HostUp(host)
}

func (h *hostEvents) HostDown(host *gocql.HostInfo) {
	h.down.Add(1)
	h.HostSelectionPolicy.HostDown(host)
}

// TestSessionRecoversAfterAFailedPoolFill brings the node back in a way
// that leaves gocql with its control connection up and no connection to
// the node for queries: the control connection reconnects (the first
// connection the node takes), and the fill of the node's pool that this
// starts fails (the node drops its three attempts). gocql then marks the
// node down and, its control connection being healthy, tries it again
// only every ReconnectInterval: at gocql's default of 60 s, every query
// failed for a minute after the outage. (TestBreaker's recovery, given
// 30 s, failed so on a busy machine: a fill started in the outage failed
// just after the control connection came back.) With ClusterConfig's
// interval, a fill that tries the node again may come first and succeed;
// either way queries are served within seconds of the node taking
// connections.
func TestSessionRecoversAfterAFailedPoolFill(t *testing.T) {
	var d dropping
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0", Listen: d.listen})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cc := config(srv.Addr(), "").ClusterConfig("")
	events := &hostEvents{HostSelectionPolicy: cc.PoolConfig.HostSelectionPolicy}
	cc.PoolConfig.HostSelectionPolicy = events
	s, err := cc.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := cassandra.Ping(s); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// (Marked down again at each try of it from then on, every second.)
	eventually.True(t, 10*time.Second, "the node marked down", func() bool { return events.down.Load() >= 1 })
	up, down := events.up.Load(), events.down.Load()
	d.start()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// The pool's three tries of the node dropped (gocql's
	// ReconnectionPolicy) after the control connection came back, or a
	// fill that came first succeeded.
	eventually.True(t, 15*time.Second, "the pool's fill failed, or a later one succeeded", func() bool {
		return d.dropped.Load() >= 3 || events.up.Load() > up
	})
	t.Logf("after the restart: node marked down %d more times, up %d; %d connections dropped", events.down.Load()-down, events.up.Load()-up, d.dropped.Load())
	d.drop.Store(false)
	back := time.Now()
	eventually.True(t, 10*time.Second, "queries served again", func() bool { return cassandra.Ping(s) == nil })
	t.Logf("queries served again %v after the node took every connection", time.Since(back).Round(time.Millisecond))
}
