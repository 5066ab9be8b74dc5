package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/prometheus/client_golang/prometheus"
)

// Feed is this instance's view of the change feed: the head it knows, and
// a broadcast that wakes long polls when it advances. Appends made here
// advance it at once; Run tails Cassandra for those of other instances, so
// a change reaches every instance's long polls within the poll interval.
type Feed struct {
	store *store.Store
	poll  time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	head    int64
	wake    chan struct{} // closed and replaced when head advances
	closing <-chan struct{}

	headGauge prometheus.Gauge
}

// NewFeed returns a Feed tailing st every poll. Long polls end early once
// closing is closed (shutdown begins), so they never hold up a drain.
func NewFeed(st *store.Store, poll time.Duration, closing <-chan struct{}, log *slog.Logger, reg prometheus.Registerer) *Feed {
	f := &Feed{store: st, poll: poll, log: log, wake: make(chan struct{}), closing: closing,
		headGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "config_feed_head", Help: "The change-feed sequence number this instance has seen."})}
	if reg != nil {
		reg.MustRegister(f.headGauge)
	}
	return f
}

// Init reads the head from Cassandra; the feed is served only after it.
func (f *Feed) Init(ctx context.Context) error {
	h, err := f.store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read change feed head: %w", err)
	}
	f.advance(h)
	return nil
}

// Append adds a change and wakes the long polls.
func (f *Feed) Append(ctx context.Context, c configclient.Change) error {
	seq, err := f.store.AppendChange(ctx, c)
	if err != nil {
		return err
	}
	f.advance(seq)
	return nil
}

// feedRetryFor is how long AppendSoon keeps trying: the clients' periodic
// resync (configclient's ResyncInterval, 10 minutes for a cache of up to
// 30,000 documents, longer for more at its rate) fetches the change
// anyway.
const feedRetryFor = 10 * time.Minute

// AppendSoon appends c in the background, for a change already stored
// whose Append failed: it retries with backoff (1 s, doubling to 30 s)
// until the change is in, the instance shuts down, or feedRetryFor has
// passed. Until then the pipeline keeps its cached copy of the property.
func (f *Feed) AppendSoon(c configclient.Change) {
	log := f.log.With(slog.String("property_id", c.PropertyID), slog.String("kind", c.Kind))
	go func() {
		backoff, deadline := time.Second, time.Now().Add(feedRetryFor)
		for {
			select {
			case <-f.closing:
				log.Warn("shutting down before a change could be announced; clients' resync will fetch it")
				return
			case <-time.After(backoff):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := f.Append(ctx, c)
			cancel()
			if err == nil {
				log.Info("change announced after a retry")
				return
			}
			if time.Now().After(deadline) {
				log.Error("gave up announcing a change; clients' resync will fetch it", slog.Any("error", err))
				return
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
}

func (f *Feed) advance(seq int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq <= f.head {
		return
	}
	f.head = seq
	close(f.wake)
	f.wake = make(chan struct{})
	f.headGauge.Set(float64(seq))
}

// state returns the known head and a channel closed when it advances.
func (f *Feed) state() (int64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head, f.wake
}

// Run tails the feed until ctx is done.
func (f *Feed) Run(ctx context.Context) error {
	t := time.NewTicker(f.poll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		head, _ := f.state()
		changes, err := f.store.ChangesSince(ctx, head, 0, 1000)
		if err == nil && len(changes) > 0 {
			f.advance(changes[len(changes)-1].Seq)
		}
		if err != nil && ctx.Err() == nil {
			if !failing {
				f.log.Warn("tailing the change feed failed; long polls see only this instance's changes until it recovers", slog.Any("error", err))
			}
			failing = true
			continue
		}
		if failing {
			f.log.Info("tailing the change feed recovered")
			failing = false
		}
	}
}
