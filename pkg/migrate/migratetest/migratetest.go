// Package migratetest gives a test its own keyspace holding the product's
// schema, on the embedded CQL server (or the cluster in CASSANDRA_HOSTS).
package migratetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/migrate"
)

var seq atomic.Int64

// Keyspace creates a fresh keyspace, applies every migration in cql/ to it
// and returns a configuration pointing at it (consistency ONE, which a
// single-node test cluster needs). The keyspace is dropped when the test
// ends.
func Keyspace(t testing.TB) *cassandra.Config {
	t.Helper()
	hosts := cqltest.Hosts(t)
	cfg := &cassandra.Config{
		Keyspace:    fmt.Sprintf("t%d_%d", time.Now().UnixNano()%1e10, seq.Add(1)),
		Consistency: "ONE",
		Timeout:     10 * time.Second,
		Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}",
	}
	for i, h := range hosts {
		if i > 0 {
			cfg.Hosts += ","
		}
		cfg.Hosts += h
	}
	if _, err := migrate.Up(context.Background(), cfg, nil); err != nil {
		t.Fatalf("apply schema to %s: %v", cfg.Keyspace, err)
	}
	t.Cleanup(func() {
		s, err := cfg.ClusterConfig("").CreateSession()
		if err != nil {
			return
		}
		defer s.Close()
		_ = s.Query("DROP KEYSPACE IF EXISTS " + cfg.Keyspace).Exec()
	})
	return cfg
}
