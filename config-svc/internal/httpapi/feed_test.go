package httpapi

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/migrate/migratetest"
)

// A change whose announcement failed (the feed's table did not answer) is
// announced once it answers again, without the request being repeated:
// repeating it would change nothing (so announce nothing) or create a
// second property.
func TestChangeAnnouncedAfterTheFeedRecovers(t *testing.T) {
	srv := cqltest.Server(t)
	session, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	st := store.New(session)
	closing := make(chan struct{})
	t.Cleanup(func() { close(closing) })
	feed := NewFeed(st, 50*time.Millisecond, closing, slog.New(slog.DiscardHandler), nil)
	ctx := context.Background()
	if err := feed.Init(ctx); err != nil {
		t.Fatal(err)
	}

	c := configclient.Change{Kind: configclient.ChangeRules, PropertyID: "9b0c8f4e-3f2a-4c55-9a57-2f1d8a1b6c01", TenantID: "t", TrackingID: "AT-FEEDRETRY1", At: time.Now()}
	srv.SetUnavailable(true)
	if err := feed.Append(ctx, c); err == nil {
		t.Fatal("Append succeeded while the store is unavailable")
	}
	feed.AppendSoon(c)
	time.Sleep(1500 * time.Millisecond) // a first retry fails too
	srv.SetUnavailable(false)

	deadline := time.Now().Add(10 * time.Second)
	for {
		changes, err := st.ChangesSince(ctx, 0, 0, 10)
		if err == nil && len(changes) == 1 && changes[0].TrackingID == c.TrackingID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change was not announced after the store recovered: %v, %v", changes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if head, _ := feed.state(); head != 1 {
		t.Errorf("feed head %d, want 1", head)
	}
}
