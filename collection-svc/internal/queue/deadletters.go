package queue

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/prometheus/client_golang/prometheus"
)

// Publisher publishes dead letters durably (pkg/deadletter.Publisher).
type Publisher interface {
	Publish(ctx context.Context, dls []hit.DeadLetter) error
}

// DeadLetters hands rejected hits to the dead-letter topic in the
// background, so that answering a bad request never waits for the broker
// (and a flood of bad requests cannot hold connections). The buffer is
// bounded: when it is full, or the broker stays down past the retries, a
// dead letter is dropped and counted in collection_dead_letters_dropped_total
// (the rejection itself is always counted in
// collection_hits_rejected_total). Once Run has returned nothing publishes:
// the letters left in the buffer and those added later are counted as
// dropped too.
type DeadLetters struct {
	pub     Publisher
	ch      chan hit.DeadLetter
	log     *slog.Logger
	dropped prometheus.Counter
	running atomic.Int32 // Runs in progress

	// mu orders Add (shared) against the end of Run (exclusive), so
	// that a letter is either in the buffer when Run counts what is
	// left, or sees ended and is counted by Add.
	mu         sync.RWMutex
	ended      bool        // a Run has returned
	lateLogged atomic.Bool // the first letter added after Run returned was logged
}

// Running reports whether Run is publishing (it has not returned): the
// publisher's producer must not be closed under it.
func (d *DeadLetters) Running() bool { return d.running.Load() > 0 }

// NewDeadLetters returns a DeadLetters buffering up to size letters.
func NewDeadLetters(pub Publisher, size int, log *slog.Logger, reg prometheus.Registerer) *DeadLetters {
	d := &DeadLetters{
		pub: pub, ch: make(chan hit.DeadLetter, size), log: log,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "collection_dead_letters_dropped_total",
			Help: "Dead letters that could not be published (buffer full or broker down past the retries).",
		}),
	}
	reg.MustRegister(d.dropped)
	return d
}

// Add queues dl for publication without waiting. Once Run has returned,
// dl is counted as dropped (a request the HTTP server's drain gave up on
// may still be rejecting hits).
func (d *DeadLetters) Add(dl hit.DeadLetter) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.ended {
		d.dropped.Inc()
		if d.lateLogged.CompareAndSwap(false, true) {
			d.log.Error("dead letter added after publishing stopped; it and any later are counted as dropped, not logged")
		}
		return
	}
	select {
	case d.ch <- dl:
	default:
		d.dropped.Inc()
	}
}

// Run publishes dead letters in batches until ctx is done, then publishes
// what is left, for drainTime at most: a publish under way when ctx ends,
// the broker not answering, is given up on then too (and its letters
// counted as dropped), so that the shutdown does not wait for it. What is
// still in the buffer then is counted as dropped and logged once, and so
// is every letter added after Run returns. ctx should end only once no
// request can add letters (service.Component: after the HTTP drain).
func (d *DeadLetters) Run(ctx context.Context) error {
	d.running.Add(1)
	defer d.running.Add(-1)
	defer d.end()
	// Publishing outlives ctx by drainTime: a batch under way when ctx
	// ends is not given up on at once, nor waited for without bound.
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	context.AfterFunc(ctx, func() { time.AfterFunc(drainTime, stop) })
	batch := make([]hit.DeadLetter, 0, 500)
	for {
		if ctx.Err() != nil {
			// Drain rather than go on taking letters in the loop,
			// which the select below may choose over ctx's end.
			d.drain(pctx, batch[:0])
			return nil
		}
		select {
		case dl := <-d.ch:
			batch = append(batch[:0], dl)
		case <-ctx.Done():
			continue
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case dl := <-d.ch:
				batch = append(batch, dl)
			default:
				break fill
			}
		}
		d.publish(pctx, batch)
	}
}

func (d *DeadLetters) drain(ctx context.Context, batch []hit.DeadLetter) {
	for {
		select {
		case dl := <-d.ch:
			batch = append(batch, dl)
			if len(batch) < cap(batch) {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			return
		}
		d.publish(ctx, batch)
		batch = batch[:0]
		if ctx.Err() != nil {
			return
		}
	}
}

// end counts what no Run will publish: the letters left in the buffer, and
// through Add those added from now on.
func (d *DeadLetters) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = true
	left := len(d.ch)
	for range left {
		<-d.ch
	}
	if left > 0 {
		d.log.Error("dead letters dropped at shutdown: not published in time", slog.Int("count", left))
		d.dropped.Add(float64(left))
	}
}

// publish tries a few times with backoff, until ctx ends, then drops and
// counts.
func (d *DeadLetters) publish(ctx context.Context, batch []hit.DeadLetter) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := d.pub.Publish(ctx, batch)
		if err == nil {
			return
		}
		if attempt == 3 || ctx.Err() != nil {
			d.log.Error("dead letters dropped", slog.Int("count", len(batch)), slog.Any("error", err))
			d.dropped.Add(float64(len(batch)))
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 2
	}
}

// drainTime is how long Run goes on publishing once its context has ended.
const drainTime = 5 * time.Second
