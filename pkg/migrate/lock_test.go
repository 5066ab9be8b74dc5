package migrate

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqltest"
)

// The migration lock is renewed while its runner lives: a migration that
// takes longer than the lock's TTL does not let a second runner start
// beside it; once released, the next runner takes it.
func TestMigrationLockRenewedWhileHeld(t *testing.T) {
	old := lockTTL
	lockTTL = 2 * time.Second
	t.Cleanup(func() { lockTTL = old })
	s, ks := cqltest.Session(t)
	if err := s.Query("CREATE TABLE IF NOT EXISTS " + ks + ".schema_migration_lock (name text PRIMARY KEY, owner text, acquired_at timestamp)").Exec(); err != nil {
		t.Fatal(err)
	}
	ctx, log := context.Background(), slog.New(slog.DiscardHandler)
	held, release, err := lock(ctx, s, ks, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * lockTTL / 2) // past the TTL the lock was taken with
	if _, _, err := lock(ctx, s, ks, 500*time.Millisecond, log); err == nil || !strings.Contains(err.Error(), "held") {
		t.Fatalf("a second runner took the lock while the first held it past its TTL: %v", err)
	}
	if held.Err() != nil {
		t.Fatalf("the held lock's context ended: %v", context.Cause(held))
	}
	release()
	_, again, err := lock(ctx, s, ks, time.Second, log)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	again()
}

// A lock that is lost (another runner holds the row when the renewal
// comes) ends the run's context.
func TestLostMigrationLockStopsTheRun(t *testing.T) {
	old := lockTTL
	lockTTL = time.Second
	t.Cleanup(func() { lockTTL = old })
	s, ks := cqltest.Session(t)
	if err := s.Query("CREATE TABLE IF NOT EXISTS " + ks + ".schema_migration_lock (name text PRIMARY KEY, owner text, acquired_at timestamp)").Exec(); err != nil {
		t.Fatal(err)
	}
	held, release, err := lock(context.Background(), s, ks, time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// Another runner's row, as after the lock expired and was taken.
	if err := s.Query("UPDATE " + ks + ".schema_migration_lock SET owner = 'another' WHERE name = 'migrate'").Exec(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the run's context did not end when its lock was lost")
	}
}
