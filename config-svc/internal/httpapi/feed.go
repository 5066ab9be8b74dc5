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
// Changes whose Append failed wait in one bounded queue that Run's retry
// worker announces in order (AppendSoon).
type Feed struct {
	store *store.Store
	poll  time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	head    int64
	wake    chan struct{} // closed and replaced when head advances
	closing <-chan struct{}

	retryMu   sync.Mutex
	retry     []pendingChange // oldest first; the worker tries the first
	stopped   bool            // the worker has stopped: nothing is queued
	retryWake chan struct{}   // capacity 1: a change was queued
	// Retry settings (retryQueueLen, 1 s doubling to 30 s, feedRetryFor);
	// tests shorten them before Run.
	retryLen             int
	retryFirst, retryMax time.Duration
	retryFor             time.Duration

	headGauge   prometheus.Gauge
	queued      prometheus.Gauge
	unannounced *prometheus.CounterVec
}

// pendingChange is a change waiting in the retry queue, given up on after
// until.
type pendingChange struct {
	c     configclient.Change
	until time.Time
}

// retryQueueLen bounds the changes waiting for the feed to answer again:
// about 200 bytes each, 2 MB at most; 10 minutes of config writes at 16 a
// second, many times what one instance takes. Past it a change is left to
// the clients' resync at once.
const retryQueueLen = 10_000

// feedRetryFor is how long a change is retried: the clients' periodic
// resync (configclient's ResyncInterval, 10 minutes for a cache of up to
// 30,000 documents, longer for more at its rate) fetches the change
// anyway.
const feedRetryFor = 10 * time.Minute

// Reasons a change is never announced (config_feed_unannounced_total).
const (
	unannouncedQueueFull = "queue_full"
	unannouncedExpired   = "expired"
	unannouncedShutdown  = "shutdown"
)

// NewFeed returns a Feed tailing st every poll. Long polls end early once
// closing is closed (shutdown begins), so they never hold up a drain; the
// retry worker stops then too.
func NewFeed(st *store.Store, poll time.Duration, closing <-chan struct{}, log *slog.Logger, reg prometheus.Registerer) *Feed {
	f := &Feed{store: st, poll: poll, log: log, wake: make(chan struct{}), closing: closing,
		retryWake: make(chan struct{}, 1), retryLen: retryQueueLen, retryFirst: time.Second, retryMax: 30 * time.Second, retryFor: feedRetryFor,
		headGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "config_feed_head", Help: "The change-feed sequence number this instance has seen."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Name: "config_feed_retry_queue",
			Help: "Changes whose announcement failed, waiting for the change feed to answer again."}),
		unannounced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_feed_unannounced_total",
			Help: "Changes never announced in the change feed, left to the clients' resync, by reason (queue_full, expired, shutdown)."}, []string{"reason"}),
	}
	for _, r := range []string{unannouncedQueueFull, unannouncedExpired, unannouncedShutdown} {
		f.unannounced.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(f.headGauge, f.queued, f.unannounced)
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

// AppendSoon queues c for Run's retry worker, for a change already stored
// whose Append failed. The worker appends the queued changes in order,
// each retried with backoff (1 s, doubling to 30 s) until it is in, the
// instance shuts down, or feedRetryFor has passed since it was queued.
// One worker, whatever the number of failures, so a failing feed is not
// also flooded with retries. When retryQueueLen changes already wait, c is
// not queued (logged, and counted in config_feed_unannounced_total). Until
// the change is announced the pipeline keeps its cached copy of the
// property; the clients' resync fetches one never announced.
func (f *Feed) AppendSoon(c configclient.Change) {
	log := f.log.With(slog.String("property_id", c.PropertyID), slog.String("kind", c.Kind))
	f.retryMu.Lock()
	stopped, full := f.stopped, len(f.retry) >= f.retryLen
	if !stopped && !full {
		f.retry = append(f.retry, pendingChange{c: c, until: time.Now().Add(f.retryFor)})
		f.queued.Set(float64(len(f.retry)))
	}
	f.retryMu.Unlock()
	switch {
	case stopped:
		f.unannounced.WithLabelValues(unannouncedShutdown).Inc()
		log.Warn("shutting down before a change could be announced; clients' resync will fetch it")
	case full:
		f.unannounced.WithLabelValues(unannouncedQueueFull).Inc()
		log.Warn("the change feed's retry queue is full; clients' resync will fetch this change", slog.Int("queued", f.retryLen))
	default:
		select {
		case f.retryWake <- struct{}{}:
		default: // the worker has a wake-up pending already
		}
	}
}

// announce is the retry worker: it appends the queued changes in order
// until ctx is done or shutdown begins.
func (f *Feed) announce(ctx context.Context) {
	var wait time.Duration // before the next attempt: 0 while the feed answers
	announced := 0         // since the queue was last empty
	for {
		p, ok := f.first()
		if !ok {
			if announced > 0 {
				f.log.Info("the change feed answers again; delayed changes announced", slog.Int("changes", announced))
				announced = 0
			}
			select {
			case <-f.retryWake:
				// A queued change's own Append has just failed.
				wait = f.retryFirst
				continue
			case <-ctx.Done():
			case <-f.closing:
			}
			f.stop()
			return
		}
		log := f.log.With(slog.String("property_id", p.c.PropertyID), slog.String("kind", p.c.Kind))
		if time.Now().After(p.until) {
			f.drop()
			f.unannounced.WithLabelValues(unannouncedExpired).Inc()
			log.Error("gave up announcing a change; clients' resync will fetch it", slog.Duration("retried_for", f.retryFor))
			continue
		}
		if wait > 0 && !f.sleep(ctx, wait) {
			f.stop()
			return
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f.Append(actx, p.c)
		cancel()
		if err == nil {
			f.drop()
			announced++
			wait = 0
			continue
		}
		wait = min(max(2*wait, f.retryFirst), f.retryMax)
		log.Debug("announcing a change failed again", slog.Any("error", err), slog.Duration("next_try_in", wait))
	}
}

// sleep waits d; false when ctx is done or shutdown begins first.
func (f *Feed) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-f.closing:
	}
	return false
}

// first returns the change the worker tries next.
func (f *Feed) first() (pendingChange, bool) {
	f.retryMu.Lock()
	defer f.retryMu.Unlock()
	if len(f.retry) == 0 {
		return pendingChange{}, false
	}
	return f.retry[0], true
}

// drop removes the first change of the queue (announced or given up on).
func (f *Feed) drop() {
	f.retryMu.Lock()
	defer f.retryMu.Unlock()
	f.retry[0] = pendingChange{}
	f.retry = f.retry[1:]
	f.queued.Set(float64(len(f.retry)))
}

// stop empties the queue as the worker stops, leaving its changes to the
// clients' resync, and makes AppendSoon queue nothing more.
func (f *Feed) stop() {
	f.retryMu.Lock()
	n := len(f.retry)
	f.retry, f.stopped = nil, true
	f.queued.Set(0)
	f.retryMu.Unlock()
	if n > 0 {
		f.unannounced.WithLabelValues(unannouncedShutdown).Add(float64(n))
		f.log.Warn("shutting down before changes could be announced; clients' resync will fetch them", slog.Int("changes", n))
	}
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

// Run tails the feed, and announces the changes queued by AppendSoon,
// until ctx is done (the retry worker stops already when shutdown begins).
func (f *Feed) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.announce(ctx)
	}()
	f.tail(ctx)
	wg.Wait()
	return nil
}

// tail reads the feed every poll interval for the changes made through
// other instances, until ctx is done.
func (f *Feed) tail(ctx context.Context) {
	t := time.NewTicker(f.poll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
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
