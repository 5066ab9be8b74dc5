package migrate_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/gocql/gocql"
)

// TestOpenWaitsThenMigrates starts a service's Open (with -cassandra-migrate,
// as the local stack runs) before the store is up: once the CQL server
// starts on its address, Open makes the schema and returns a session on the
// new keyspace.
func TestOpenWaitsThenMigrates(t *testing.T) {
	// Held from the start, refusing connections until the server listens
	// on it: a port freed for the server could be taken by another
	// listener in between.
	port := consultest.Reserve(t)
	cfg := &cassandra.Config{Hosts: port.Addr(), Keyspace: "late", Consistency: "ONE", Timeout: 5 * time.Second,
		Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}", Migrate: true}
	var logs logtest.Buffer
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := migrate.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		done <- result{s, err}
	}()
	eventually.True(t, 15*time.Second, "Open to log a failed attempt", func() bool {
		return strings.Contains(logs.String(), `msg="connect to cassandra failed; retrying"`)
	})

	srv, err := cqlserver.New(cqlserver.Config{Addr: port.Addr(), Listen: func(string, string) (net.Listener, error) { return port.Listen() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Open: %v", r.err)
		}
		defer r.s.Close()
		var n int
		if err := r.s.Query("SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n == 0 {
			t.Fatalf("the session's keyspace has %d migrations recorded (%v), want the schema", n, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Open did not return within 20s of the store starting")
	}
}
