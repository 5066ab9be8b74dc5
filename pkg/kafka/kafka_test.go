package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestEnsureTopicsIsIdempotent(t *testing.T) {
	cl := kafkatest.Start(t)
	cfg := &kafka.Config{Brokers: cl.Brokers()[0]}
	topic := kafka.Topic{Name: "hits", Partitions: 4, ReplicationFactor: 1}
	for i := 0; i < 2; i++ {
		if err := kafka.EnsureTopics(context.Background(), cfg, topic); err != nil {
			t.Fatalf("EnsureTopics run %d: %v", i+1, err)
		}
	}
	client, err := sarama.NewClient(cfg.BrokerList(), cfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions("hits")
	if err != nil || len(parts) != 4 {
		t.Fatalf("Partitions(hits) = %v, %v; want 4 partitions", parts, err)
	}
}

// TestEnsureTopicsRefusedForGood: a replication factor above the brokers
// of the cluster cannot be mended by waiting, so EnsureTopics marks it
// retry.Permanent and retry.Until, which the services start with, returns
// it at once instead of retrying for ever; brokers that cannot be reached
// are waited for.
func TestEnsureTopicsRefusedForGood(t *testing.T) {
	cl := kafkatest.Start(t) // one broker
	cfg := &kafka.Config{Brokers: cl.Brokers()[0]}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // without the mark, Until would retry for ever
	defer cancel()
	tries := 0
	err := retry.Until(ctx, retry.Default, slog.New(slog.DiscardHandler), "create kafka topics", func(ctx context.Context) error {
		tries++
		return kafka.EnsureTopics(ctx, cfg, kafka.Topic{Name: "hits", Partitions: 1, ReplicationFactor: 3})
	})
	if !retry.IsPermanent(err) || !errors.Is(err, sarama.ErrInvalidReplicationFactor) || tries != 1 ||
		!strings.Contains(err.Error(), "replication factor 3") {
		t.Fatalf("Until(EnsureTopics with replication factor 3 on 1 broker) = %v after %d tries; want a permanent ErrInvalidReplicationFactor naming the factor, at once", err, tries)
	}

	gone := consultest.RefusedAddr(t)
	err = kafka.EnsureTopics(context.Background(), &kafka.Config{Brokers: gone}, kafka.Topic{Name: "hits", Partitions: 1, ReplicationFactor: 1})
	if err == nil || retry.IsPermanent(err) {
		t.Fatalf("EnsureTopics against a broker that is not there = %v; want an error to retry", err)
	}
}

// EnsureTopics returns when ctx ends even while sarama waits on a broker
// that accepts connections and never answers (one that drops packets):
// sarama's calls take no context, and one such attempt takes about 30 s,
// longer than a shutdown may last.
func TestEnsureTopicsReturnsWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := kafka.EnsureTopics(ctx, &kafka.Config{Brokers: silentBroker(t)}, kafka.Topic{Name: "hits", Partitions: 1, ReplicationFactor: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EnsureTopics = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("EnsureTopics took %v after ctx ended at 200ms", took)
	}
}

// Connect, as a service starts during a Kafka outage: it retries a
// constructor that fails until the broker is up and returns its client.
func TestConnectWaitsForTheBroker(t *testing.T) {
	// The broker's port is held from the start, refusing connections until
	// the broker listens on it: a port freed for it could be taken by
	// another listener in between.
	port := consultest.Reserve(t)
	cfg := &kafka.Config{Brokers: port.Addr()}
	failed := make(chan struct{})
	var once sync.Once
	type result struct {
		p   sarama.SyncProducer
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := kafka.Connect(context.Background(), retry.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
			slog.New(slog.DiscardHandler), "connect the producer", func() (sarama.SyncProducer, error) {
				p, err := sarama.NewSyncProducer(cfg.BrokerList(), cfg.ProducerConfig())
				if err != nil {
					once.Do(func() { close(failed) })
				}
				return p, err
			}, sarama.SyncProducer.Close)
		done <- result{p, err}
	}()
	<-failed
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(func(string, string) (net.Listener, error) { return port.Listen() }))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	defer cl.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Connect after the broker started = %v", r.err)
		}
		r.p.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("Connect still waiting 30s after the broker started")
	}
}

// Connect returns when ctx ends even while a constructor waits on a broker
// that never answers.
func TestConnectReturnsWhenCtxEnds(t *testing.T) {
	cfg := &kafka.Config{Brokers: silentBroker(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := kafka.Connect(ctx, retry.Default, slog.New(slog.DiscardHandler), "connect the producer", func() (sarama.SyncProducer, error) {
		return sarama.NewSyncProducer(cfg.BrokerList(), cfg.ProducerConfig())
	}, sarama.SyncProducer.Close)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Connect took %v after ctx ended at 200ms", took)
	}
}

// silentBroker returns the address of a listener that accepts connections
// and never answers, as brokers that drop packets do: sarama's calls,
// which take no context, wait on it for about 30 s.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	return ln.Addr().String()
}

// TestConsumerResumesAfterBrokerRestart exercises the whole contract the
// pipeline depends on: idempotent produce, a consumer group with manual
// commits, and a broker restart from its data directory after which the
// group resumes exactly after the last committed offset.
func TestConsumerResumesAfterBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(port int) *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("start broker: %v", err)
		}
		return c
	}
	cl := start(0) // the kernel picks the port
	cfg := &kafka.Config{Brokers: cl.ListenAddrs()[0], ClientID: "test"}
	addr, err := net.ResolveTCPAddr("tcp", cfg.Brokers)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(context.Background(), cfg, kafka.Topic{Name: "events", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, cfg, "events", 0, 10)

	// Consume and commit the first 6 messages only.
	got := consume(t, cfg, "g1", "events", 6)
	if want := seq(0, 6); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first run consumed %v, want %v", got, want)
	}

	cl.Close()
	// Restarted on its port, as a broker keeps its address: the one race
	// left, as in consultest's Agent.Restart, is another listener taking
	// the port in the moment it is closed.
	cl = start(addr.Port)
	defer cl.Close()

	produce(t, cfg, "events", 10, 12)
	got = consume(t, cfg, "g1", "events", 6)
	if want := seq(6, 12); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart consumed %v, want %v (resume after the committed offset, nothing lost)", got, want)
	}
}

func produce(t *testing.T, cfg *kafka.Config, topic string, from, to int) {
	t.Helper()
	p, err := sarama.NewSyncProducer(cfg.BrokerList(), cfg.ProducerConfig())
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer p.Close()
	for i := from; i < to; i++ {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(strconv.Itoa(i))}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

// consume reads n messages with group, committing each after "processing"
// it, and stops.
func consume(t *testing.T, cfg *kafka.Config, group, topic string, n int) []int {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(cfg.BrokerList(), group, cfg.ConsumerConfig())
	if err != nil {
		t.Fatalf("new consumer group: %v", err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &collect{n: n, done: cancel}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
			t.Fatalf("consume: %v", err)
		}
	}
	if len(h.got) != n {
		t.Fatalf("consumed %d messages before the deadline, want %d", len(h.got), n)
	}
	return h.got
}

type collect struct {
	n    int
	got  []int
	done func()
}

func (c *collect) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *collect) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c *collect) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		if len(c.got) == c.n {
			return nil
		}
		v, _ := strconv.Atoi(string(m.Value))
		c.got = append(c.got, v)
		s.MarkMessage(m, "")
		s.Commit()
		if len(c.got) == c.n {
			c.done()
			return nil
		}
	}
	return nil
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}
