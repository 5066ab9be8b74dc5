package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/acme/analytics/cql"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/gocql/gocql"
)

func TestSplitStatements(t *testing.T) {
	src := `-- a comment; with a semicolon
CREATE TABLE a (k text PRIMARY KEY); /* block; comment */
INSERT INTO a (k) VALUES ('it''s; fine');
// trailing comment
`
	got, err := migrate.SplitStatements(src)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CREATE TABLE a (k text PRIMARY KEY)", "INSERT INTO a (k) VALUES ('it''s; fine')"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if _, err := migrate.SplitStatements("SELECT 'oops"); err == nil {
		t.Fatal("an unterminated string was accepted")
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"bad name", fstest.MapFS{"1_x.cql": {Data: []byte("SELECT 1")}}, "NNNN_description.cql"},
		{"duplicate version", fstest.MapFS{"0001_a.cql": {Data: []byte("X")}, "0001_b.cql": {Data: []byte("Y")}}, "share version 1"},
		{"empty", fstest.MapFS{"0001_a.cql": {Data: []byte("-- nothing\n")}}, "no statements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := migrate.Load(tt.fs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestProductSchemaAppliesTwice applies the real cql/ migrations to the
// CQL server (or the cluster in CASSANDRA_HOSTS): the first run applies them
// all, the second applies nothing.
func TestProductSchemaAppliesTwice(t *testing.T) {
	ms, err := migrate.Load(cql.FS)
	if err != nil {
		t.Fatal(err)
	}
	cluster, opts := setup(t)
	got, err := migrate.Apply(context.Background(), cluster, opts, ms)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if len(got) != len(ms) {
		t.Fatalf("first run applied %d migrations, want %d", len(got), len(ms))
	}
	got, err = migrate.Apply(context.Background(), cluster, opts, ms)
	if err != nil || len(got) != 0 {
		t.Fatalf("second run applied %d migrations (err %v), want none", len(got), err)
	}
}

// TestProductSchemaReruns re-runs every real cql/ migration from its
// first statement over the schema it already made, as the runner does after
// a run interrupted before it recorded a migration: each statement must be
// idempotent or fail as already applied (ALTER TABLE ... ADD of a column
// that exists).
func TestProductSchemaReruns(t *testing.T) {
	ms, err := migrate.Load(cql.FS)
	if err != nil {
		t.Fatal(err)
	}
	cluster, opts := setup(t)
	if _, err := migrate.Apply(context.Background(), cluster, opts, ms); err != nil {
		t.Fatalf("first run: %v", err)
	}
	s, err := cluster(opts.Keyspace).CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range ms {
		if err := s.Query("DELETE FROM schema_migrations WHERE version = ?", m.Version).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := migrate.Apply(context.Background(), cluster, opts, ms)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if len(got) != len(ms) {
		t.Fatalf("re-run applied %d migrations, want %d", len(got), len(ms))
	}
}

func TestModifiedMigrationIsRefused(t *testing.T) {
	cluster, opts := setup(t)
	fsys := fstest.MapFS{"0001_a.cql": {Data: []byte("CREATE TABLE IF NOT EXISTS a (k text PRIMARY KEY)")}}
	apply := func() error {
		ms, err := migrate.Load(fsys)
		if err != nil {
			t.Fatal(err)
		}
		_, err = migrate.Apply(context.Background(), cluster, opts, ms)
		return err
	}
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	fsys["0001_a.cql"] = &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS a (k text PRIMARY KEY, v int)")}
	if err := apply(); !errors.Is(err, migrate.ErrModified) {
		t.Fatalf("Apply after editing an applied migration: %v, want ErrModified", err)
	}
	fsys["0001_a.cql"] = &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS a (k text PRIMARY KEY)")}
	fsys["0002_b.cql"] = &fstest.MapFile{Data: []byte("ALTER TABLE a ADD v int")}
	if err := apply(); err != nil {
		t.Fatalf("a new migration after the first: %v", err)
	}
}

func TestConcurrentRunsApplyOnce(t *testing.T) {
	cluster, opts := setup(t)
	ms, err := migrate.Load(fstest.MapFS{
		"0001_a.cql": {Data: []byte("CREATE TABLE IF NOT EXISTS a (k text PRIMARY KEY)")},
		"0002_b.cql": {Data: []byte("CREATE TABLE IF NOT EXISTS b (k text PRIMARY KEY)")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := migrate.Apply(context.Background(), cluster, opts, ms)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			total += len(got)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != len(ms) {
		t.Fatalf("concurrent runs applied %d migrations in all, want %d (each exactly once)", total, len(ms))
	}
}

var ksSeq struct {
	sync.Mutex
	n int
}

func setup(t *testing.T) (func(string) *gocql.ClusterConfig, migrate.Options) {
	t.Helper()
	hosts := cqltest.Hosts(t)
	cluster := func(ks string) *gocql.ClusterConfig {
		c := gocql.NewCluster(hosts...)
		c.Keyspace = ks
		c.Timeout = 10 * time.Second
		return c
	}
	ksSeq.Lock()
	ksSeq.n++
	ks := fmt.Sprintf("migrate_%d_%d", time.Now().UnixNano()%1e9, ksSeq.n)
	ksSeq.Unlock()
	t.Cleanup(func() {
		if s, err := cluster("").CreateSession(); err == nil {
			_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec()
			s.Close()
		}
	})
	return cluster, migrate.Options{Keyspace: ks, Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}", LockTimeout: 30 * time.Second}
}
