package mail

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/retry"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueConfig bounds a Queue. Zero fields take the defaults.
type QueueConfig struct {
	// Size is how many messages may wait for a worker (default 100).
	Size int
	// Workers is how many messages are sent at once (default 4).
	Workers int
	// RetryFor is how long after it was queued a message whose sends
	// failed temporarily is still tried (default 10 minutes).
	RetryFor time.Duration
	// Backoff is the wait between attempts of one message (default 5 s
	// doubling to 1 minute).
	Backoff retry.Backoff
	// Drain bounds the sending of what the queue holds once Run's ctx is
	// done (default 5 s).
	Drain time.Duration
}

// Outcomes of a message (config_mail_messages_total).
const (
	OutcomeSent      = "sent"       // the sender took it
	OutcomeFailed    = "failed"     // refused for good (not Temporary)
	OutcomeExpired   = "expired"    // failed temporarily until RetryFor had passed
	OutcomeQueueFull = "queue_full" // Size messages were waiting: not queued
	OutcomeShutdown  = "shutdown"   // still unsent when the drain ended
)

// Queue sends messages in the background, so that whoever hands one over
// neither waits for the mail server nor learns how the send went: Enqueue
// returns at once; a few workers send, retrying a temporary failure with
// backoff until RetryFor has passed since the message was queued, and give
// up at once on a permanent one. Every message that is not sent is logged
// with the attributes it was queued with and counted by outcome; the
// message itself (a reset link) is never logged.
//
// It is in memory: what it holds when the process ends unexpectedly is
// lost without a trace but the queued gauge.
type Queue struct {
	sender Sender
	cfg    QueueConfig
	log    *slog.Logger
	ch     chan queued

	mu     sync.RWMutex // held for writing only to close: Enqueue sends under it
	closed bool         // Run has ended: nothing is queued any more

	outcomes *prometheus.CounterVec
	cut      atomic.Int64 // sends given up when the drain ended
}

type queued struct {
	m     Message
	log   *slog.Logger // with the attributes of Enqueue
	until time.Time    // RetryFor after it was queued
}

// NewQueue returns a queue that sends with s once Run runs; its metrics
// are registered on reg.
func NewQueue(s Sender, c QueueConfig, log *slog.Logger, reg prometheus.Registerer) *Queue {
	if c.Size <= 0 {
		c.Size = 100
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 10 * time.Minute
	}
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = retry.Backoff{Min: 5 * time.Second, Max: time.Minute}
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	q := &Queue{sender: s, cfg: c, log: log, ch: make(chan queued, c.Size),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_mail_messages_total",
			Help: "E-mails handed to the background sender, by outcome: sent, failed (refused for good), expired (temporary failures past the retry bound), queue_full and shutdown (dropped unsent)."}, []string{"outcome"}),
	}
	for _, o := range []string{OutcomeSent, OutcomeFailed, OutcomeExpired, OutcomeQueueFull, OutcomeShutdown} {
		q.outcomes.WithLabelValues(o)
	}
	queuedGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "config_mail_queued",
		Help: "E-mails waiting for a worker of the background sender."}, func() float64 { return float64(len(q.ch)) })
	reg.MustRegister(q.outcomes, queuedGauge)
	return q
}

// Enqueue hands m over to be sent, and returns at once: false when it was
// dropped (the queue full, or stopped), which is logged and counted. attrs
// identify the message in the log (a user ID, a request ID: never what the
// message holds).
func (q *Queue) Enqueue(m Message, attrs ...slog.Attr) bool {
	log := q.log.With(attrsAny(attrs)...)
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		q.outcomes.WithLabelValues(OutcomeShutdown).Inc()
		log.Warn("e-mail dropped: the sender has stopped")
		return false
	}
	select {
	case q.ch <- queued{m: m, log: log, until: time.Now().Add(q.cfg.RetryFor)}:
		return true
	default:
		q.outcomes.WithLabelValues(OutcomeQueueFull).Inc()
		log.Warn("e-mail dropped: the send queue is full", slog.Int("queued", q.cfg.Size))
		return false
	}
}

// Run sends the queued messages until ctx is done; then it goes on
// sending what it holds (and retrying) for at most Drain, drops what is
// left (logged, counted as shutdown) and returns nil. A message queued
// after Run has returned is dropped.
func (q *Queue) Run(ctx context.Context) error {
	// Sends outlive ctx by the drain's bound: then one under way is cut
	// and one waiting for its retry given up.
	sendCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.work(ctx, sendCtx)
		}()
	}
	<-ctx.Done()
	drain := time.AfterFunc(q.cfg.Drain, stop)
	defer drain.Stop()
	wg.Wait()

	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	left := len(q.ch)
	for range left {
		j := <-q.ch
		j.log.Warn("e-mail dropped unsent at shutdown")
	}
	q.outcomes.WithLabelValues(OutcomeShutdown).Add(float64(left))
	if dropped := int64(left) + q.cut.Load(); dropped > 0 {
		q.log.Warn("the e-mail sender stopped with messages unsent", slog.Int64("dropped", dropped), slog.Duration("drain", q.cfg.Drain))
	}
	return nil
}

// work sends queued messages until ctx is done, then those still queued
// until the queue is empty or sendCtx is done.
func (q *Queue) work(ctx, sendCtx context.Context) {
	for sendCtx.Err() == nil {
		select {
		case j := <-q.ch:
			q.send(sendCtx, j)
		case <-ctx.Done():
			select {
			case j := <-q.ch:
				q.send(sendCtx, j)
			default:
				return
			}
		}
	}
}

// send delivers one message, retrying temporary failures until its
// deadline or the end of ctx, and records the outcome.
func (q *Queue) send(ctx context.Context, j queued) {
	mctx, cancel := context.WithDeadline(ctx, j.until)
	defer cancel()
	err := retry.Until(mctx, q.cfg.Backoff, j.log, "send an e-mail", func(ctx context.Context) error {
		err := q.sender.Send(ctx, j.m)
		if err != nil && !Temporary(err) {
			return retry.Permanent(err)
		}
		return err
	})
	switch {
	case err == nil:
		q.outcomes.WithLabelValues(OutcomeSent).Inc()
		j.log.Info("e-mail sent")
	case retry.IsPermanent(err):
		q.outcomes.WithLabelValues(OutcomeFailed).Inc()
		j.log.Error("e-mail not sent: refused for good", slog.Any("error", err))
	case ctx.Err() != nil:
		q.cut.Add(1)
		q.outcomes.WithLabelValues(OutcomeShutdown).Inc()
		j.log.Warn("e-mail dropped unsent at shutdown", slog.Any("error", err))
	default:
		q.outcomes.WithLabelValues(OutcomeExpired).Inc()
		j.log.Error("e-mail not sent: gave up retrying", slog.Any("error", err), slog.Duration("retried_for", q.cfg.RetryFor))
	}
}

func attrsAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
