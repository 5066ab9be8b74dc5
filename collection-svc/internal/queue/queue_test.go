package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"
	"github.com/acme/analytics/pkg/hit"
	"github.com/prometheus/client_golang/prometheus"
)

// A probe that closes the circuit while produce still fails (the probe
// sees brokers and leaders, not too few in-sync replicas) is tried less
// and less often, so readiness does not flap every period; a probe that
// fails leaves the circuit open.
func TestProbeBacksOffWhenWhatItClosedFailsAgain(t *testing.T) {
	var calls atomic.Int32
	var p *Producer
	p = &Producer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), done: make(chan struct{}), opts: Options{Probe: func() error {
		calls.Add(1)
		go func() { // a request fails at once after the circuit closes
			// (waiting for the close itself: a store made before it, by a
			// goroutine run first on a busy machine, was lost to it and
			// the circuit stayed closed, one probe in all)
			for !p.failing.CompareAndSwap(false, true) {
				time.Sleep(time.Millisecond)
			}
		}()
		return nil
	}}}
	p.failing.Store(true)
	go p.probeWhileFailing(5 * time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	close(p.done)
	// Every 5 ms would be 80 probes; backing off (5, 10, 20, ... 160 ms)
	// about 6.
	if n := calls.Load(); n < 2 || n > 12 {
		t.Errorf("%d probes in 400 ms, want a few (backing off from 5 ms)", n)
	}
}

type blockingPublisher struct{ release chan struct{} }

func (b blockingPublisher) Publish(ctx context.Context, _ []hit.DeadLetter) error {
	<-b.release
	return nil
}

// Running says whether Run may still use the publisher: its producer is
// closed only once Run has returned (a send on a closed producer panics).
func TestDeadLettersRunning(t *testing.T) {
	pub := blockingPublisher{release: make(chan struct{})}
	d := NewDeadLetters(pub, 10, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if d.Running() {
		t.Fatal("running before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { _ = d.Run(ctx); close(ended) }()
	d.Add(hit.DeadLetter{Reason: "malformed"})
	cancel() // Run drains: the publish blocks
	time.Sleep(20 * time.Millisecond)
	if !d.Running() {
		t.Fatal("not running while a publish is in progress")
	}
	close(pub.release)
	<-ended
	if d.Running() {
		t.Fatal("running after Run returned")
	}
}

// A message failing while others are acknowledged (one partition's leader
// moving, too few in-sync replicas) fails its own request only: the circuit
// opens, refusing every request, only when messages fail and none has been
// acknowledged for failWindow.
func TestOnlyAnOutageOpensTheCircuit(t *testing.T) {
	cfg := mocks.NewTestConfig()
	cfg.Producer.Return.Successes = true
	ap := mocks.NewAsyncProducer(t, cfg)
	p := New(ap, Options{MaxInFlight: 100, Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	defer p.Close()
	send := func() error {
		return p.Send(context.Background(), []*sarama.ProducerMessage{{Topic: hit.TopicHits, Value: sarama.StringEncoder("h")}}, 1)
	}
	ap.ExpectInputAndSucceed()
	if err := send(); err != nil {
		t.Fatalf("first send: %v", err)
	}
	ap.ExpectInputAndFail(sarama.ErrNotEnoughReplicas)
	if err := send(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a failed message's request: %v, want ErrUnavailable", err)
	}
	if err := p.Healthy(); err != nil {
		t.Fatalf("one failure right after an acknowledgement opened the circuit: %v", err)
	}
	ap.ExpectInputAndSucceed()
	if err := send(); err != nil {
		t.Fatalf("the next request was refused: %v", err)
	}

	p.lastAck.Store(time.Now().Add(-2 * failWindow).UnixNano()) // nothing acknowledged since
	ap.ExpectInputAndFail(sarama.ErrOutOfBrokers)
	if err := send(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("send during the outage: %v", err)
	}
	if err := p.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("messages failing with none acknowledged for %v left the circuit closed", failWindow)
	}
}
