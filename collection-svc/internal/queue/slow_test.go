package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A request waits at most the time limit, also when the producer's
// buffers are full: with a broker that takes produce requests and does not
// answer, the producer stops taking messages once a request's worth is
// waiting, and a Send handing it messages then must not wait for it
// beyond its limit (within -max-in-flight, so never refused).
func TestSendIsBoundedWhenTheProducerIsFull(t *testing.T) {
	cl := kafkatest.Start(t, kfake.SeedTopics(1, hit.TopicHits))
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
	kc := &kafka.Config{Brokers: cl.Brokers()[0]}
	ap, err := sarama.NewAsyncProducer(kc.BrokerList(), kc.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	p := New(ap, Options{MaxInFlight: 50000, Timeout: timeout}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	t.Cleanup(func() { unhang(); p.Close() })

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
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_ = send(i, 100)
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout + 3*time.Second):
		t.Fatalf("Sends still waiting %v after they began; the limit is %v", timeout+3*time.Second, timeout)
	}
	if slowest > timeout+time.Second {
		t.Errorf("the slowest Send took %v; the limit is %v", slowest, timeout)
	}
}
