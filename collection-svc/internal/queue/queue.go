// Package queue puts accepted hits in Kafka durably and fast: one sarama
// AsyncProducer (acks from all in-sync replicas, idempotent) shared by
// every request, so that the hits of many concurrent requests travel in
// the same produce requests, and each request waits only for its own
// messages' acknowledgements.
//
// What is in flight is bounded: a request that would take the number of
// unacknowledged messages past the limit is refused at once, and so is
// every request while the broker is known to be failing: messages fail and
// none has been acknowledged for a second (except one probe at a time, whose
// success closes the circuit again; one partition failing while the others
// take messages fails only its own requests). A request never
// waits longer than its time limit. Refused and timed-out requests are
// answered 503 and retried by the client; a hit that the broker got after
// all is then queued twice with the same ID, which processing counts once.
package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors of Send. All mean "not stored now, retry".
var (
	ErrOverloaded  = errors.New("too many hits waiting for the broker")
	ErrUnavailable = errors.New("the broker is unavailable")
	ErrTimeout     = errors.New("the broker did not acknowledge in time")
)

// Options tune a Producer.
type Options struct {
	// MaxInFlight bounds the hits handed to the producer and not yet
	// acknowledged or failed (the hits, not the records they travel in:
	// one record may hold hundreds).
	MaxInFlight int
	// Timeout bounds how long Send waits for acknowledgements.
	Timeout time.Duration
	// Probe checks the broker without sending a message (kafka.Probe).
	// While the broker is failing it runs every ProbeEvery (default one
	// second), and its success closes the circuit: an instance that no
	// request reaches any more (unready, so out of the gateway's
	// rotation) must still find out by itself that the broker is back.
	// Nil: only a request's probe closes it.
	Probe      func() error
	ProbeEvery time.Duration
}

// Producer sends messages and reports when the broker has them.
type Producer struct {
	ap   sarama.AsyncProducer
	opts Options
	log  *slog.Logger

	inFlight atomic.Int64 // hits, as Send counts them
	// failing: the broker is taken as down (messages fail and none has
	// been acknowledged for failWindow); requests are refused.
	failing atomic.Bool
	probing atomic.Bool  // a request is testing a failing broker
	lastAck atomic.Int64 // when a message was last acknowledged (unix ns)

	done chan struct{} // closed when both result loops have ended

	acked, failed, refused prometheus.Counter
	latency                prometheus.Histogram
}

// failWindow is how long without any acknowledgement a failure must come
// after for the broker to be taken as down: a partition failing while the
// others are acknowledged is not an outage.
const failWindow = time.Second

// ticket follows one Send: its messages carry it as Metadata.
type ticket struct {
	pending atomic.Int32 // messages not yet back
	hits    int64        // what Send added to inFlight, taken off when all are back
	failed  atomic.Bool
	done    chan struct{}
}

var tickets = sync.Pool{New: func() any { return &ticket{done: make(chan struct{}, 1)} }}

// New wraps ap, which must be configured by kafka.Config.ProducerConfig
// (successes and errors returned), and registers metrics on reg. The
// producer's results are read until Close.
func New(ap sarama.AsyncProducer, opts Options, log *slog.Logger, reg prometheus.Registerer) *Producer {
	p := &Producer{
		ap: ap, opts: opts, log: log, done: make(chan struct{}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "collection_queue_acked_total", Help: "Messages the broker acknowledged.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "collection_queue_failed_total", Help: "Messages the producer gave up on after its retries.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "collection_queue_refused_total", Help: "Messages refused without trying, because too many were in flight or the broker was failing.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "collection_queue_ack_seconds",
			Help:    "Time from handing a request's messages to the producer to the broker's acknowledgement of all of them.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	reg.MustRegister(p.acked, p.failed, p.refused, p.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "collection_queue_in_flight", Help: "Hits handed to the producer and not yet acknowledged or failed.",
		}, func() float64 { return float64(p.inFlight.Load()) }))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m := range ap.Successes() {
			p.complete(m, false)
		}
	}()
	go func() {
		defer wg.Done()
		for e := range ap.Errors() {
			// A failure while others are acknowledged is one partition's
			// (its leader moving, too few in-sync replicas): its requests
			// fail on their own, the others must not be refused.
			if time.Since(time.Unix(0, p.lastAck.Load())) > failWindow && p.failing.CompareAndSwap(false, true) {
				p.log.Warn("kafka produce failing; answering 503 until it recovers", slog.Any("error", e.Err))
			}
			p.complete(e.Msg, true)
		}
	}()
	go func() { wg.Wait(); close(p.done) }()
	if opts.Probe != nil {
		go p.probeWhileFailing(cmp.Or(opts.ProbeEvery, time.Second))
	}
	return p
}

// probeWhileFailing runs the probe every period while the broker is
// failing, until Close, and closes the circuit when it succeeds: requests
// are taken again, and the next failure opens it again. The probe sees
// the brokers and the partitions' leaders, not whether a produce would
// succeed (too few in-sync replicas, a full disk): when the circuit it
// closed opens again at once, it waits twice as long before the next
// probe (up to 32 periods), so that readiness does not flap every second.
func (p *Producer) probeWhileFailing(period time.Duration) {
	wait := period
	var closedAt time.Time // when a probe last closed the circuit; zero when it held
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		switch {
		case p.failing.Load():
			if !closedAt.IsZero() && time.Since(closedAt) < 10*wait {
				wait = min(2*wait, 32*period) // what the probe closed opened again at once
			}
			closedAt = time.Time{}
			if err := p.opts.Probe(); err == nil && p.failing.CompareAndSwap(true, false) {
				p.log.Info("kafka reachable again; taking requests")
				closedAt = time.Now()
			}
		case !closedAt.IsZero() && time.Since(closedAt) >= 10*wait:
			wait, closedAt = period, time.Time{} // the circuit held
		}
		t.Reset(wait)
	}
}

func (p *Producer) complete(m *sarama.ProducerMessage, failed bool) {
	if failed {
		p.failed.Inc()
	} else {
		p.acked.Inc()
		p.lastAck.Store(time.Now().UnixNano())
		if p.failing.Load() && p.failing.CompareAndSwap(true, false) {
			p.log.Info("kafka produce recovered")
		}
	}
	t, ok := m.Metadata.(*ticket)
	if !ok {
		return
	}
	if failed {
		t.failed.Store(true)
	}
	if t.pending.Add(-1) == 0 {
		p.inFlight.Add(-t.hits)
		t.done <- struct{}{}
	}
}

// Send hands msgs, which hold hits hits, to the producer and returns nil
// once the broker has acknowledged all of them. The in-flight bound counts
// the hits until every message is back. It returns ErrOverloaded or ErrUnavailable at
// once when it does not try, ErrTimeout after the time limit, or
// ErrUnavailable when the producer gave up on one of them. It hands
// nothing over when ctx is done already: the client has gone (the
// gateway's time limit passed while the request waited for the property's
// configuration, say), so it will send its hits again, and hits without
// their own ID (hid, event_id), whose content ID includes the second they
// were received in, would then count twice.
func (p *Producer) Send(ctx context.Context, msgs []*sarama.ProducerMessage, hits int) error {
	n := int64(len(msgs))
	if n == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hand messages to kafka: %w", err)
	}
	weight := max(int64(hits), n)
	if p.failing.Load() {
		if !p.probing.CompareAndSwap(false, true) {
			p.refused.Add(float64(n))
			return ErrUnavailable
		}
		defer p.probing.Store(false)
	}
	if p.inFlight.Add(weight) > int64(p.opts.MaxInFlight) {
		p.inFlight.Add(-weight)
		p.refused.Add(float64(n))
		return ErrOverloaded
	}
	t := tickets.Get().(*ticket)
	t.hits = weight
	t.pending.Store(int32(n))
	t.failed.Store(false)
	start := time.Now()
	// The time limit counts from here: with the broker slow, the
	// producer's buffers fill and it stops taking messages.
	timer := time.NewTimer(p.opts.Timeout)
	defer timer.Stop()
	for i, m := range msgs {
		m.Metadata = t
		select {
		case p.ap.Input() <- m: // the producer taking it at once, as it mostly does
			continue
		default:
		}
		var err error
		select {
		case p.ap.Input() <- m:
			continue
		case <-timer.C:
			err = ErrTimeout
		case <-ctx.Done():
			err = fmt.Errorf("hand messages to kafka: %w", ctx.Err())
		}
		// msgs[i:] were never handed over: the ticket waits only for
		// the others (and is not reused, as after any timeout).
		if t.pending.Add(-int32(len(msgs)-i)) == 0 {
			p.inFlight.Add(-t.hits)
		}
		return err
	}
	select {
	case <-t.done:
		// Every message is back: the ticket can be reused.
		failed := t.failed.Load()
		tickets.Put(t)
		if failed {
			return ErrUnavailable
		}
		p.latency.Observe(time.Since(start).Seconds())
		return nil
	case <-timer.C:
		// The ticket stays with its messages (the producer still
		// retries them), so it is not reused.
		return ErrTimeout
	case <-ctx.Done():
		return fmt.Errorf("wait for kafka: %w", ctx.Err())
	}
}

// Healthy reports whether the broker is taking messages.
func (p *Producer) Healthy() error {
	if p.failing.Load() {
		return ErrUnavailable
	}
	return nil
}

// Close flushes what is in flight (the producer's own retries bound how
// long that takes) and stops the producer. Call it after the last Send.
func (p *Producer) Close() error {
	p.ap.AsyncClose()
	<-p.done
	return nil
}
