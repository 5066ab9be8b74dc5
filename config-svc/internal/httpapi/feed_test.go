package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// feedEnv is a Feed on its own CQL server, which the test can make
// unavailable, with its log kept for the test to read.
type feedEnv struct {
	srv     *cqlserver.Server
	st      *store.Store
	feed    *Feed
	log     *logtest.Buffer
	closing chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// newFeedEnv starts a Feed's Run; adjust changes its retry settings first.
func newFeedEnv(t *testing.T, adjust func(*Feed)) *feedEnv {
	t.Helper()
	srv := cqltest.Server(t)
	session, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	fe := &feedEnv{srv: srv, st: store.New(session), log: &logtest.Buffer{}, closing: make(chan struct{}), done: make(chan struct{})}
	fe.feed = NewFeed(fe.st, 50*time.Millisecond, fe.closing, slog.New(slog.NewTextHandler(fe.log, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	if adjust != nil {
		adjust(fe.feed)
	}
	if err := fe.feed.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fe.cancel = cancel
	go func() { defer close(fe.done); _ = fe.feed.Run(ctx) }()
	t.Cleanup(func() {
		srv.SetUnavailable(false)
		cancel()
		<-fe.done
	})
	return fe
}

func change(i int) configclient.Change {
	return configclient.Change{Kind: configclient.ChangeProperty, PropertyID: gocql.MustRandomUUID().String(),
		TenantID: "0b4c8f4e-3f2a-4c55-9a57-2f1d8a1b6c01", TrackingID: fmt.Sprintf("AT-%010d", i), At: time.Now()}
}

// A change whose announcement failed (the feed's table did not answer) is
// announced once it answers again, without the request being repeated:
// repeating it would change nothing (so announce nothing) or create a
// second property.
func TestChangeAnnouncedAfterTheFeedRecovers(t *testing.T) {
	fe := newFeedEnv(t, func(f *Feed) { f.retryFirst, f.retryMax = 20*time.Millisecond, 100*time.Millisecond })
	ctx := context.Background()
	c := change(1)
	fe.srv.SetUnavailable(true)
	if err := fe.feed.Append(ctx, c); err == nil {
		t.Fatal("Append succeeded while the store is unavailable")
	}
	fe.feed.AppendSoon(c)
	eventually.True(t, 10*time.Second, "a first retry fails too", func() bool { return strings.Contains(fe.log.String(), "announcing a change failed again") })
	fe.srv.SetUnavailable(false)

	eventually.True(t, 10*time.Second, "the change is announced after the store recovered", func() bool {
		changes, err := fe.st.ChangesSince(ctx, 0, 0, 10)
		return err == nil && len(changes) == 1 && changes[0].TrackingID == c.TrackingID
	})
	// The store has the change a moment before the worker's Append
	// advances the instance's head past it.
	eventually.True(t, 10*time.Second, "the instance's head moves to the announced change", func() bool {
		head, _ := fe.feed.state()
		return head == 1
	})
}

// TestFailedAppendsWaitForOneWorker: many failed appends take no goroutine
// each: they wait in one bounded queue (those past it are counted and
// logged), and once the feed answers again the queued ones are appended in
// the order they came, and no others.
func TestFailedAppendsWaitForOneWorker(t *testing.T) {
	const queue, failures = 5, 50
	fe := newFeedEnv(t, func(f *Feed) {
		f.retryLen = queue
		f.retryFirst, f.retryMax = 5*time.Millisecond, 20*time.Millisecond
	})
	ctx := context.Background()
	fe.srv.SetUnavailable(true)
	before := runtime.NumGoroutine()
	var sent []configclient.Change
	for i := range failures {
		c := change(i)
		sent = append(sent, c)
		fe.feed.AppendSoon(c)
	}
	if n := runtime.NumGoroutine() - before; n > 2 {
		t.Fatalf("%d failed appends started %d goroutines; want none (one worker for all)", failures, n)
	}
	if got := testutil.ToFloat64(fe.feed.queued); got != queue {
		t.Fatalf("config_feed_retry_queue = %v, want the queue's bound %d", got, queue)
	}
	if got := testutil.ToFloat64(fe.feed.unannounced.WithLabelValues(unannouncedQueueFull)); got != failures-queue {
		t.Fatalf("config_feed_unannounced_total{reason=queue_full} = %v, want %d", got, failures-queue)
	}
	if n := strings.Count(fe.log.String(), "retry queue is full"); n != failures-queue {
		t.Fatalf("%d log lines say the queue is full, want %d", n, failures-queue)
	}
	eventually.True(t, 10*time.Second, "retries fail while the store is unavailable", func() bool {
		return strings.Count(fe.log.String(), "announcing a change failed again") >= 3
	})

	fe.srv.SetUnavailable(false)
	eventually.True(t, 10*time.Second, "the queue drains", func() bool { return testutil.ToFloat64(fe.feed.queued) == 0 })
	got, err := fe.st.ChangesSince(ctx, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs, wantIDs []string
	for _, c := range got {
		gotIDs = append(gotIDs, c.TrackingID)
	}
	for _, c := range sent[:queue] {
		wantIDs = append(wantIDs, c.TrackingID)
	}
	if strings.Join(gotIDs, " ") != strings.Join(wantIDs, " ") {
		t.Fatalf("feed holds %v\nwant      %v (the queued changes, in order)", gotIDs, wantIDs)
	}
}

// TestRetryWorkerStopsAtShutdown: when shutdown begins the worker stops at
// once, even in the middle of a backoff, and leaves what waits to the
// clients' resync (counted); a change failing after that is not queued.
func TestRetryWorkerStopsAtShutdown(t *testing.T) {
	fe := newFeedEnv(t, func(f *Feed) { f.retryFirst, f.retryMax = time.Hour, time.Hour })
	fe.srv.SetUnavailable(true)
	for i := range 3 {
		fe.feed.AppendSoon(change(i))
	}
	close(fe.closing)
	shutdown := func() float64 { return testutil.ToFloat64(fe.feed.unannounced.WithLabelValues(unannouncedShutdown)) }
	eventually.True(t, 10*time.Second, "the queued changes are left to the resync", func() bool { return shutdown() == 3 })
	fe.feed.AppendSoon(change(4))
	if got := shutdown(); got != 4 || testutil.ToFloat64(fe.feed.queued) != 0 {
		t.Fatalf("after shutdown began: %v unannounced, %v queued; want 4 and none", got, testutil.ToFloat64(fe.feed.queued))
	}
	fe.cancel()
	select {
	case <-fe.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestRetryGivesUpInTime: a change the feed does not take within
// feedRetryFor is given up on (counted and logged) and the worker goes on
// with the next, which is announced once the feed answers.
func TestRetryGivesUpInTime(t *testing.T) {
	fe := newFeedEnv(t, func(f *Feed) {
		f.retryFirst, f.retryMax, f.retryFor = 5*time.Millisecond, 10*time.Millisecond, 100*time.Millisecond
	})
	fe.srv.SetUnavailable(true)
	fe.feed.AppendSoon(change(1))
	expired := func() float64 { return testutil.ToFloat64(fe.feed.unannounced.WithLabelValues(unannouncedExpired)) }
	eventually.True(t, 10*time.Second, "the change is given up on", func() bool { return expired() == 1 })
	if !strings.Contains(fe.log.String(), "gave up announcing a change") {
		t.Fatal("giving up is not logged")
	}
	fe.srv.SetUnavailable(false)
	next := change(2)
	fe.feed.AppendSoon(next)
	eventually.True(t, 10*time.Second, "the next change is announced", func() bool {
		changes, err := fe.st.ChangesSince(context.Background(), 0, 0, 10)
		return err == nil && len(changes) == 1 && changes[0].TrackingID == next.TrackingID
	})
}
