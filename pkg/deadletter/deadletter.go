// Package deadletter publishes rejected hits and poison messages to the
// dead-letter topic, where they are kept with their reason (and counted by
// the publisher's metric) instead of being dropped silently.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/prometheus/client_golang/prometheus"
)

// Publisher sends dead letters with a durable, idempotent producer.
type Publisher struct {
	producer sarama.SyncProducer
	counter  *prometheus.CounterVec
	// sending counts the sends under way, those Publish gave up on too.
	sending atomic.Int64
}

// New returns a Publisher over producer (configured by
// kafka.Config.ProducerConfig) that counts what it sends, by stage and
// reason, in dead_letters_total on reg.
func New(producer sarama.SyncProducer, reg prometheus.Registerer) *Publisher {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dead_letters_total",
		Help: "Hits and messages sent to the dead-letter topic, by stage and reason.",
	}, []string{"stage", "reason"})
	reg.MustRegister(c)
	return &Publisher{producer: producer, counter: c}
}

// Publish sends dls and returns once the broker has them all, or with
// ctx's error when ctx ends first: a broker that takes the request and
// never answers would otherwise hold the caller for as long as the
// producer's timeouts and retries allow (minutes), past any bound the
// caller keeps (a consumer's hand-over of its partition). The letters
// given up on may still be delivered, and be delivered again when the
// caller retries: a dead letter's partition and offset tell a second copy.
func (p *Publisher) Publish(ctx context.Context, dls []hit.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, len(dls))
	for i := range dls {
		b, err := json.Marshal(&dls[i])
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		msgs[i] = &sarama.ProducerMessage{Topic: hit.TopicDeadLetter, Key: sarama.StringEncoder(dls[i].TrackingID), Value: sarama.ByteEncoder(b)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sent := make(chan error, 1)
	p.sending.Add(1)
	go func() {
		defer p.sending.Add(-1)
		err := p.producer.SendMessages(msgs)
		if err == nil {
			for _, dl := range dls {
				p.counter.WithLabelValues(dl.Stage, dl.Reason).Inc()
			}
		}
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			return fmt.Errorf("publish %d dead letters: %w", len(msgs), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %d dead letters: %w", len(msgs), ctx.Err())
	}
}

// ErrSending is Close's answer while a send that Publish gave up on is
// still running.
var ErrSending = errors.New("a dead-letter send is still running; the producer is left open")

// Close closes the producer, once the last Publish has returned. A send
// that Publish gave up on may still be under way (the broker not
// answering): closing a sarama producer under a send panics, so Close then
// leaves the producer open and returns ErrSending. Callers close at
// shutdown, when the process is about to exit and the producer with it.
func (p *Publisher) Close() error {
	if p.sending.Load() > 0 {
		return ErrSending
	}
	return p.producer.Close()
}
