package deadletter_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCloseLeavesAnAbandonedSend: a send Publish gave up on (the broker
// took the produce request and does not answer) keeps the producer open,
// since closing a sarama producer under a send panics; once the send has
// ended, Close closes it.
func TestCloseLeavesAnAbandonedSend(t *testing.T) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, hit.TopicDeadLetter))
	hung, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	unhang := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unhang) // before the cluster's Close, which waits for it
	cl.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		once.Do(func() { close(hung) })
		cl.SleepControl(func() { <-release })
		return nil, nil, false
	})
	kcfg := &kafka.Config{Brokers: cl.Brokers()[0]}
	producer, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := deadletter.New(producer, prometheus.NewRegistry())

	ctx, cancel := context.WithCancel(context.Background())
	published := make(chan error, 1)
	go func() {
		published <- p.Publish(ctx, []hit.DeadLetter{{Reason: "malformed", Stage: "processing", TrackingID: "AT-23456789AB"}})
	}()
	select {
	case <-hung:
	case <-time.After(30 * time.Second):
		t.Fatal("the dead letter never reached the broker")
	}
	cancel()
	if err := <-published; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish after its context ended: %v, want context.Canceled", err)
	}
	if err := p.Close(); !errors.Is(err, deadletter.ErrSending) {
		t.Fatalf("Close with the send still running: %v, want ErrSending", err)
	}
	unhang()
	eventually.NoError(t, 30*time.Second, "the producer closed once the send ended", p.Close)
}
