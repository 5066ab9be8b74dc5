// Package migrate applies the Cassandra schema in cql/ as ordered,
// versioned migrations.
//
// Files are named NNNN_description.cql and hold CQL statements separated by
// semicolons. The runner creates the keyspace, records each applied
// migration (version, name, checksum) in schema_migrations, applies only the
// pending ones in order, and refuses to run when an applied migration's file
// has changed since. Runs are serialized across processes by a
// lightweight-transaction lock (with a TTL, renewed while its runner
// lives), so every service may run migrations at start-up; the keyspace
// and the two bookkeeping tables are made before the lock, with IF NOT
// EXISTS, which real Cassandra can race on at a first run from several
// nodes at once: production makes them with the one migrate Job.
// Statements must be idempotent (CREATE ... IF NOT EXISTS): a
// migration interrupted half-way is re-run from its first statement.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/cql"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/gocql/gocql"
)

// Migration is one migration file.
type Migration struct {
	Version    int
	Name       string // file name
	Statements []string
	Checksum   string // hex SHA-256 of the file
}

var fileName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.cql$`)

// Load reads the migrations in the root of fsys, ordered by version. It
// fails on a malformed name, a duplicate version, or an empty file.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".cql" {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_description.cql (lowercase)", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, ok := seen[v]; ok {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		stmts, err := SplitStatements(string(b))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s has no statements", e.Name())
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: e.Name(), Statements: stmts, Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// SplitStatements splits CQL text into statements at semicolons outside
// string literals, quoted identifiers and comments, dropping comments.
func SplitStatements(src string) ([]string, error) {
	var stmts []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			stmts = append(stmts, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for ; j < len(src); j++ {
				if src[j] == c {
					if j+1 < len(src) && src[j+1] == c { // doubled quote escapes itself
						j++
						continue
					}
					break
				}
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated %c quote starting at byte %d", c, i)
			}
			cur.WriteString(src[i : j+1])
			i = j
		case c == '-' && i+1 < len(src) && src[i+1] == '-', c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated /* comment starting at byte %d", i)
			}
			i += end + 3
			cur.WriteByte(' ')
		case c == ';':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return stmts, nil
}

// Options configure a run.
type Options struct {
	Keyspace string
	// Replication is the keyspace's replication map as CQL, e.g.
	// {'class': 'NetworkTopologyStrategy', 'dc1': 3}. It applies only when
	// the keyspace is created; an existing keyspace is left as it is.
	Replication string
	// LockTimeout bounds the wait for another process's run (default 2m).
	LockTimeout time.Duration
	Log         *slog.Logger
}

// ErrModified is returned when an applied migration's file has changed.
var ErrModified = errors.New("applied migration was modified")

var identifier = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Apply brings the keyspace up to date with migrations and returns the ones
// it applied (none when already up to date). cluster returns a new cluster
// configuration for a keyspace ("" for none): Apply opens two sessions, and
// gocql's host selection policies cannot be shared between sessions.
func Apply(ctx context.Context, cluster func(keyspace string) *gocql.ClusterConfig, opts Options, migrations []Migration) ([]Migration, error) {
	if !identifier.MatchString(opts.Keyspace) {
		return nil, fmt.Errorf("keyspace name %q must be lowercase letters, digits and underscores", opts.Keyspace)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 2 * time.Minute
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	s, err := cluster("").CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect for migrations: %w", err)
	}
	defer s.Close()
	ks := opts.Keyspace
	if err := s.Query(fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", ks, opts.Replication)).WithContext(ctx).Exec(); err != nil {
		return nil, fmt.Errorf("create keyspace %s: %w", ks, err)
	}
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS " + ks + ".schema_migrations (version int PRIMARY KEY, name text, checksum text, applied_at timestamp)",
		"CREATE TABLE IF NOT EXISTS " + ks + ".schema_migration_lock (name text PRIMARY KEY, owner text, acquired_at timestamp)",
	} {
		if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return nil, fmt.Errorf("create migration bookkeeping tables: %w", err)
		}
	}

	ctx, release, err := lock(ctx, s, ks, opts.LockTimeout, log)
	if err != nil {
		return nil, err
	}
	defer release()

	applied, err := appliedMigrations(ctx, s, ks)
	if err != nil {
		return nil, err
	}
	var pending []Migration
	for _, m := range migrations {
		a, ok := applied[m.Version]
		if !ok {
			pending = append(pending, m)
			continue
		}
		if a.checksum != m.Checksum {
			return nil, fmt.Errorf("%w: %s (applied as %s) has changed since it was applied; never edit an applied migration, add a new one", ErrModified, m.Name, a.name)
		}
	}
	if len(pending) == 0 {
		log.Info("schema up to date", slog.String("keyspace", ks))
		return nil, nil
	}

	ksess, err := cluster(ks).CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to keyspace %s: %w", ks, err)
	}
	defer ksess.Close()
	for _, m := range pending {
		for i, stmt := range m.Statements {
			if err := ksess.Query(stmt).WithContext(ctx).Exec(); err != nil && !alreadyApplied(err) {
				return nil, fmt.Errorf("migration %s, statement %d: %w", m.Name, i+1, err)
			}
		}
		// The driver waits for the nodes to agree on the schema after each
		// change, but only logs when they do not (a node down): recorded
		// then, the migration's tables or columns could be missing on some
		// coordinators while the services use them. Not recorded, the next
		// run applies it again (each statement is idempotent).
		if err := ksess.AwaitSchemaAgreement(ctx); err != nil {
			return nil, fmt.Errorf("migration %s: the cluster's nodes do not agree on the schema (is one down?); run again once they do: %w", m.Name, err)
		}
		if err := s.Query("INSERT INTO "+ks+".schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
			m.Version, m.Name, m.Checksum, time.Now()).WithContext(ctx).Exec(); err != nil {
			return nil, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		log.Info("applied migration", slog.String("keyspace", ks), slog.String("migration", m.Name))
	}
	return pending, nil
}

type appliedRow struct{ name, checksum string }

func appliedMigrations(ctx context.Context, s *gocql.Session, ks string) (map[int]appliedRow, error) {
	out := map[int]appliedRow{}
	iter := s.Query("SELECT version, name, checksum FROM " + ks + ".schema_migrations").WithContext(ctx).Iter()
	var v int
	var r appliedRow
	for iter.Scan(&v, &r.name, &r.checksum) {
		out[v] = r
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	return out, nil
}

// lockTTL (a variable for tests) is how long the migration lock outlives a runner that died
// holding it; a live runner renews it every lockTTL/5, so a migration may
// take longer than lockTTL without a second runner starting beside it.
var lockTTL = 300 * time.Second

// lock takes the migration lock with a lightweight transaction. The lock
// row has a TTL, so a runner that dies holding it blocks others for at most
// that long; while the runner lives it is renewed, until release. The
// context returned is ctx, cancelled if the lock is lost (its renewals
// failed past its TTL and another runner may have it): the run's
// statements use it, so the run stops rather than migrate beside another.
func lock(ctx context.Context, s *gocql.Session, ks string, timeout time.Duration, log *slog.Logger) (held context.Context, release func(), err error) {
	owner := gocql.TimeUUID().String()
	deadline := time.Now().Add(timeout)
	ttl := int(lockTTL / time.Second)
	for {
		existing := map[string]any{}
		applied, err := s.Query("INSERT INTO "+ks+".schema_migration_lock (name, owner, acquired_at) VALUES ('migrate', ?, ?) IF NOT EXISTS USING TTL ?",
			owner, time.Now(), ttl).WithContext(ctx).MapScanCAS(existing)
		if err != nil {
			return nil, nil, fmt.Errorf("take migration lock: %w", err)
		}
		if applied {
			held, lost := context.WithCancelCause(ctx)
			stop, renewed := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(renewed)
				t := time.NewTicker(lockTTL / 5)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					// Every column again: the TTL covers the cells written.
					applied, err := s.Query("UPDATE "+ks+".schema_migration_lock USING TTL ? SET owner = ?, acquired_at = ? WHERE name = 'migrate' IF owner = ?",
						ttl, owner, time.Now(), owner).MapScanCAS(map[string]any{})
					switch {
					case err != nil:
						log.Warn("renewing the migration lock failed; retrying", slog.Any("error", err))
					case !applied:
						log.Error("the migration lock was lost (not renewed within its TTL); stopping this run")
						lost(errors.New("the migration lock was lost: its renewals failed for longer than its TTL"))
						return
					}
				}
			}()
			return held, func() {
				close(stop)
				<-renewed
				lost(nil)
				_, _ = s.Query("DELETE FROM "+ks+".schema_migration_lock WHERE name = 'migrate' IF owner = ?", owner).MapScanCAS(map[string]any{})
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("migration lock held by %v for longer than %s", existing["owner"], timeout)
		}
		log.Info("waiting for another migration run", slog.Any("owner", existing["owner"]))
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// alreadyApplied reports errors that mean a statement's effect is already in
// place, which happens when an interrupted migration is re-run.
func alreadyApplied(err error) bool {
	var ae *gocql.RequestErrAlreadyExists
	if errors.As(err, &ae) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conflicts with an existing column") || strings.Contains(msg, "already exists")
}

// Up applies the product's schema (the embedded cql/ migrations) to the
// keyspace of cfg.
func Up(ctx context.Context, cfg *cassandra.Config, log *slog.Logger) ([]Migration, error) {
	ms, err := Load(cql.FS)
	if err != nil {
		return nil, err
	}
	return Apply(ctx, cfg.ClusterConfig, Options{Keyspace: cfg.Keyspace, Replication: cfg.Replication, Log: log}, ms)
}

// Open is how a long-running service gets its session at start: it waits
// for the cluster (cassandra.ConnectRetry), applies the pending migrations
// first when cfg.Migrate is set (the local stack's services make their own
// schema; production runs the migrate job), and returns a session on cfg's
// keyspace, waiting for the keyspace while the migrate job has not made
// it. The migrate command itself calls Up, which tries once: a Job's
// failures and restarts are what show an outage there.
func Open(ctx context.Context, cfg *cassandra.Config, log *slog.Logger) (*gocql.Session, error) {
	if cfg.Migrate {
		cluster := *cfg
		cluster.Keyspace = "" // it may not exist yet
		s, err := cassandra.ConnectRetry(ctx, &cluster, log)
		if err != nil {
			return nil, err
		}
		s.Close()
		if _, err := Up(ctx, cfg, log); err != nil {
			return nil, fmt.Errorf("apply schema migrations: %w", err)
		}
	}
	return cassandra.ConnectRetry(ctx, cfg, log)
}
