package queue

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Run returns within its bound (drainTime) after its context ends, also
// when the dead-letter topic's broker takes the produce request and does
// not answer: the shutdown waits for it. The letters given up on are
// counted as dropped, not lost silently.
func TestDeadLettersRunIsBoundedWhileTheBrokerHangs(t *testing.T) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, hit.TopicDeadLetter))
	hung, release := cl.HoldProduce(t)
	kc := &kafka.Config{Brokers: cl.Brokers()[0]}
	sp, err := sarama.NewSyncProducer(kc.BrokerList(), kc.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	pub := deadletter.New(sp, prometheus.NewRegistry())
	t.Cleanup(func() {
		release()
		eventually.NoError(t, 60*time.Second, "the dead-letter producer closed once its send ended", pub.Close)
	})
	d := NewDeadLetters(pub, 10, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { _ = d.Run(ctx); close(ended) }()
	d.Add(hit.DeadLetter{Reason: "malformed", Stage: "collection", TrackingID: "AT-23456789AB"})
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the dead letter never reached the broker")
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(drainTime + 3*time.Second):
		t.Fatalf("Run still publishing %v after its context ended", drainTime+3*time.Second)
	}
	var m dto.Metric
	if err := d.dropped.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("%v dead letters counted as dropped, want 1", n)
	}
}
