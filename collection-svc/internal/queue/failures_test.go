package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
)

// hangingBroker is a broker with topic whose produce requests are taken
// and not answered until release (kafkatest.Cluster.HoldProduce).
func hangingBroker(t *testing.T, topic string) (kc *kafka.Config, hung <-chan struct{}, release func()) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, topic))
	hung, release = cl.HoldProduce(t)
	return &kafka.Config{Brokers: cl.Brokers()[0]}, hung, release
}

// A request waits at most the time limit, also when the producer's
// buffers are full: with a broker that takes produce requests and does not
// answer, the producer stops taking messages once a request's worth is
// waiting, and a Send handing it messages then must not wait for it
// beyond its limit (within -max-in-flight, so never refused).
func TestSendIsBoundedWhenTheProducerIsFull(t *testing.T) {
	kc, hung, release := hangingBroker(t, hit.TopicHits)
	ap, err := sarama.NewAsyncProducer(kc.BrokerList(), kc.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	p := New(ap, Options{MaxInFlight: 50000, Timeout: timeout}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	t.Cleanup(func() { release(); p.Close() })

	value := strings.Repeat("h", 1000)
	send := func(i, n int) error {
		msgs := make([]*sarama.ProducerMessage, n)
		for j := range msgs {
			msgs[j] = &sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(fmt.Sprint(i, j, value))}
		}
		return p.Send(context.Background(), msgs, n)
	}
	go send(-1, 1)
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("no produce request reached the broker")
	}
	took := make(chan time.Duration, 40)
	for i := range cap(took) {
		go func() {
			start := time.Now()
			_ = send(i, 100)
			took <- time.Since(start)
		}()
	}
	deadline := time.After(timeout + 3*time.Second)
	for range cap(took) {
		select {
		case d := <-took:
			if d > timeout+time.Second {
				t.Errorf("a Send took %v; the limit is %v", d, timeout)
			}
		case <-deadline:
			t.Fatalf("Sends still waiting %v after they began; the limit is %v", timeout+3*time.Second, timeout)
		}
	}
}

// Run returns within its bound (drainTime) after its context ends, also
// when the dead-letter topic's broker takes the produce request and does
// not answer: the shutdown waits for it. The letters given up on are
// counted as dropped, not lost silently.
func TestDeadLettersRunIsBoundedWhileTheBrokerHangs(t *testing.T) {
	kc, hung, release := hangingBroker(t, hit.TopicDeadLetter)
	sp, err := sarama.NewSyncProducer(kc.BrokerList(), kc.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	pub := deadletter.New(sp, prometheus.NewRegistry())
	t.Cleanup(func() {
		release()
		eventually.NoError(t, 60*time.Second, "the dead-letter producer closed once its send ended", pub.Close)
	})
	d := NewDeadLetters(pub, 10000, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { _ = d.Run(ctx); close(ended) }()
	d.Add(hit.DeadLetter{Reason: "malformed", Stage: "collection", TrackingID: "AT-23456789AB"})
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the dead letter never reached the broker")
	}
	// Ten batches more wait in the buffer behind the hung send, given
	// up on with it: Run's drain stopped at its deadline after one batch
	// and left the rest in the buffer uncounted (unless Run's loop took
	// all ten before its context's end, 1 time in 1024).
	for range 4999 {
		d.Add(hit.DeadLetter{Reason: "malformed", Stage: "collection", TrackingID: "AT-23456789AB"})
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(drainTime + 3*time.Second):
		t.Fatalf("Run still publishing %v after its context ended", drainTime+3*time.Second)
	}
	dropped := func() float64 {
		var m dto.Metric
		if err := d.dropped.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if n := dropped(); n != 5000 {
		t.Errorf("%v dead letters counted as dropped, want 5000 (the one sent and those in the buffer)", n)
	}
	// A request the HTTP drain gave up on may still reject a hit once
	// Run has returned: nothing publishes it any more.
	d.Add(hit.DeadLetter{Reason: "malformed", Stage: "collection", TrackingID: "AT-23456789AB"})
	if n := dropped(); n != 5001 {
		t.Errorf("%v dead letters counted as dropped after a letter added once Run returned, want 5001", n)
	}
}

// TestSendHandsNothingOverForAClientGone: a request whose client has gone
// (its context done) before its hits reach Send hands none of them to the
// producer: the client sends them again, and a hit without its own ID
// would count twice.
func TestSendHandsNothingOverForAClientGone(t *testing.T) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, hit.TopicHits))
	kc := &kafka.Config{Brokers: cl.Brokers()[0]}
	ap, err := sarama.NewAsyncProducer(kc.BrokerList(), kc.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := New(ap, Options{MaxInFlight: 100, Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	t.Cleanup(func() { p.Close() })
	msg := func(v string) []*sarama.ProducerMessage {
		return []*sarama.ProducerMessage{{Topic: hit.TopicHits, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(v)}}
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Send(gone, msg("gone"), 1); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Send for a client gone = %v, want its context's error", err)
	}
	if err := p.Send(context.Background(), msg("kept"), 1); err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(kc.BrokerList(), kc.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	n, err := client.GetOffset(hit.TopicHits, 0, sarama.OffsetNewest)
	if err != nil || n != 1 {
		t.Fatalf("the topic holds %d records (%v), want only the hit of the client still there", n, err)
	}
	if n := p.inFlight.Load(); n != 0 {
		t.Fatalf("%d hits counted in flight after both Sends", n)
	}
}
