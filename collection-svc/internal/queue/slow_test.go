package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
)

// A request waits at most the time limit, also when the producer's
// buffers are full: with a broker that takes produce requests and does not
// answer, the producer stops taking messages once a request's worth is
// waiting, and a Send handing it messages then must not wait for it
// beyond its limit (within -max-in-flight, so never refused).
func TestSendIsBoundedWhenTheProducerIsFull(t *testing.T) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, hit.TopicHits))
	hung, release := cl.HoldProduce(t)
	kc := &kafka.Config{Brokers: cl.Brokers()[0]}
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
