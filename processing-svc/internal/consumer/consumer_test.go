package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const propID = "3f1c9a52-2222-4e4e-9a9a-000000000002"

// TestConsumeThroughKafka runs the consumer group against the in-process
// broker and the embedded CQL server: hits produced to the topic show up in
// the rollups, a poison message goes to the dead-letter topic, and a
// consumer stopped and started again neither loses nor double-counts.
// Visitor states are saved only when the partition is handed over (a
// policy of an hour), so stopping must save them all and commit every
// partition to its end.
func TestConsumeThroughKafka(t *testing.T) {
	cl := kafkatest.Start(t)
	kcfg := &kafka.Config{Brokers: cl.Brokers()[0], ClientID: "test"}
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, kcfg,
		kafka.Topic{Name: hit.TopicHits, Partitions: 3, ReplicationFactor: 1},
		kafka.Topic{Name: hit.TopicDeadLetter, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	ccfg := migratetest.Keyspace(t)
	session, err := cassandra.Connect(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	prop, err := enginetest.Property(propID, rules.Defaults())
	if err != nil {
		t.Fatal(err)
	}

	producer, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			h := &hit.Hit{PropertyID: propID, ClientID: fmt.Sprint("c", i%10), Type: hit.TypePageview, Origin: hit.OriginBrowser,
				Time: day.Add(time.Duration(i) * time.Second), ReceivedAt: day.Add(time.Duration(i) * time.Second), Path: fmt.Sprint("/p", i%3)}
			h.ID = h.DeriveID(fmt.Sprint("e", i))
			b, _ := hit.Marshal(h)
			if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(h.Key(1)), Value: sarama.ByteEncoder(b)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pageviews := func() int64 {
		iter := session.Query(rollup.SelectDaily, propID, day, rollup.Total).Iter()
		var total int64
		for {
			var r rollup.Row
			ok, err := r.Scan(iter)
			if err != nil || !ok {
				break
			}
			total += r.Pageviews
		}
		iter.Close()
		return total
	}
	start := func() (stop func()) {
		group, err := sarama.NewConsumerGroup(kcfg.BrokerList(), "processing", kcfg.ConsumerConfig())
		if err != nil {
			t.Fatal(err)
		}
		dlq, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		pub := deadletter.New(dlq, reg).Publish
		c := New(Config{Group: group, Topic: hit.TopicHits, Session: session, Properties: enginetest.Properties{prop}, DeadLetter: pub,
			FlushInterval: 50 * time.Millisecond, State: engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(reg)})
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = c.Run(cctx); close(done) }()
		return func() { cancel(); <-done; group.Close(); dlq.Close() }
	}
	waitFor := func(want int64) {
		t.Helper()
		eventually.NoError(t, 30*time.Second, fmt.Sprintf("%d pageviews", want), func() error {
			if got := pageviews(); got != want {
				return fmt.Errorf("pageviews = %d, want %d", got, want)
			}
			return nil
		})
	}

	// committedToEnd checks that the group committed every partition of
	// the hits topic through its last message.
	committedToEnd := func() {
		t.Helper()
		client, err := sarama.NewClient(kcfg.BrokerList(), kcfg.ConsumerConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		admin, err := sarama.NewClusterAdminFromClient(client)
		if err != nil {
			t.Fatal(err)
		}
		parts := []int32{0, 1, 2}
		resp, err := admin.ListConsumerGroupOffsets("processing", map[string][]int32{hit.TopicHits: parts})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			end, err := client.GetOffset(hit.TopicHits, p, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
			if b := resp.GetBlock(hit.TopicHits, p); end > 0 && (b == nil || b.Offset != end) {
				t.Errorf("partition %d: committed %+v after hand-over, want its end %d", p, b, end)
			}
		}
	}

	send(0, 50)
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.StringEncoder("x"), Value: sarama.StringEncoder("not json")}); err != nil {
		t.Fatal(err)
	}
	stop := start()
	waitFor(50)
	firstDeadLetter(t, kcfg) // the poison message is consumed too: the hand-over must commit past it
	stop()
	committedToEnd()

	send(10, 20) // re-sent hits are counted once
	send(50, 80) // after them in each partition, so that 80 means all are read
	stop = start()
	waitFor(80)
	stop()
	committedToEnd()
}

// TestGroupErrorsAreLoggedAndCounted makes the broker refuse every offset
// commit and checks that the group's errors are read: logged at warn and
// counted, not dropped unseen.
func TestGroupErrorsAreLoggedAndCounted(t *testing.T) {
	f := newFixture(t)
	f.cl.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		f.cl.KeepControl()
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 12 // OFFSET_METADATA_TOO_LARGE: sarama reports it and carries on
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	f.send(t, 1)
	var logs logtest.Buffer
	m := NewMetrics(prometheus.NewRegistry())
	c := New(Config{Group: f.group(t), Topic: hit.TopicHits, Session: f.session, Properties: enginetest.Properties{f.prop},
		FlushInterval: 50 * time.Millisecond, State: engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour},
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m})
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	eventually.True(t, 30*time.Second, "a consumer group error counted while every commit fails", func() bool {
		return testutil.ToFloat64(m.GroupErrors) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := logs.String(); !strings.Contains(got, "level=WARN msg=\"consumer group error\"") || !strings.Contains(got, "partition=0") {
		t.Fatalf("log has no warning of the failed commit:\n%s", got)
	}
}

// TestRevokedMidWorkIsNoError: a partition revoked (a rebalance, every
// start or stop of an instance in a rollout) while it applies or flushes,
// waiting on the store, stops that work and hands over: the hand-over
// writes what was applied and commits it. That is no error of the group:
// ConsumeClaim returns nil, so nothing is logged as "consumer group error"
// or counted in processing_consumer_errors_total (ProcessingConsumerErrors
// fired on rollouts that lost nothing). The store failing before the
// session ended stays an error (TestGroupErrorsAreLoggedAndCounted, and a
// failing store below).
func TestRevokedMidWorkIsNoError(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprint("store failing before: ", failing), func(t *testing.T) {
			f := newFixture(t)
			c := f.claimConsumer(engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}, 20*time.Second)
			ctx, revoke := context.WithCancel(context.Background())
			s := &fakeSession{ctx: ctx, marked: -1}
			b, _ := hit.Marshal(pageview(1, "e1"))
			msgs := make(chan *sarama.ConsumerMessage, 1)
			msgs <- &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: 0, Value: b, Timestamp: time.Now()}
			srv := cqltest.Server(t)
			var slowWrites atomic.Bool // the hit's reads answered, its flush's writes waiting
			srv.SetFault(func(cql string) cqlserver.Fault {
				if slowWrites.Load() && !strings.HasPrefix(cql, "SELECT") {
					time.Sleep(2 * time.Second)
				}
				return cqlserver.NoFault
			})
			defer srv.SetFault(nil)
			slowWrites.Store(!failing)
			srv.SetUnavailable(failing)
			done := make(chan error, 1)
			go func() { done <- c.ConsumeClaim(s, fakeClaim{msgs: msgs}) }()
			time.Sleep(500 * time.Millisecond) // applied and flushing, or failing
			slowWrites.Store(false)
			srv.SetUnavailable(false)
			revoke()
			err := <-done
			if failing && err == nil {
				t.Fatal("ConsumeClaim returned nil after the store failed: the failure goes unreported")
			}
			if !failing && err != nil {
				t.Fatalf("ConsumeClaim: %v, want nil: the session's end cut the work short, and the hand-over wrote it", err)
			}
			if !failing && (s.marked != 1 || !s.committed) {
				t.Fatalf("hand-over marked offset %d (committed %v), want 1, committed", s.marked, s.committed)
			}
		})
	}
}

// TestRevokedWhileRetrying: under the cooperative protocol a revoke ends
// no context, it closes the claim's Messages. A partition revoked while
// its work retries against a failing store stops retrying and hands over
// at once (it would otherwise hold the partition, ownerless, until sarama
// ended the member's whole session a rebalance timeout later); and the
// messages a retry took while it waited, to see such a close, are
// applied in order once the store answers.
func TestRevokedWhileRetrying(t *testing.T) {
	for _, revoked := range []bool{true, false} {
		t.Run(fmt.Sprint("revoked: ", revoked), func(t *testing.T) {
			f := newFixture(t)
			c := f.claimConsumer(engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}, time.Second)
			s := &fakeSession{ctx: context.Background(), marked: -1}
			msgs := make(chan *sarama.ConsumerMessage, 4)
			send := func(i int) {
				b, _ := hit.Marshal(pageview(i, fmt.Sprint("e", i)))
				msgs <- &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: int64(i), Value: b, Timestamp: time.Now()}
			}
			srv := cqltest.Server(t)
			srv.SetUnavailable(true)
			defer srv.SetUnavailable(false)
			send(0)
			done := make(chan error, 1)
			go func() { done <- c.ConsumeClaim(s, fakeClaim{msgs: msgs}) }()
			time.Sleep(300 * time.Millisecond) // the first apply failing, retried
			send(1)
			send(2)
			if revoked {
				close(msgs)
			} else {
				time.Sleep(300 * time.Millisecond) // taken while the retry waits
				srv.SetUnavailable(false)
				eventually.True(t, 30*time.Second, "the three hits applied", func() bool {
					return applied(c.cfg.Metrics) == 3
				})
				close(msgs)
			}
			select {
			case err := <-done:
				if revoked && (err == nil || !strings.Contains(err.Error(), "revoked")) {
					t.Fatalf("ConsumeClaim: %v, want the store's failure, revoked while retrying", err)
				}
				if !revoked && (err != nil || s.marked != 3 || !s.committed) {
					t.Fatalf("ConsumeClaim: %v, marked %d (committed %v); want nil, 3, committed", err, s.marked, s.committed)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("a partition revoked while its apply retried was not let go")
			}
		})
	}
}

// TestRevokedWhileRetryingWithHeldFull: a partition whose work has
// retried against a failing store long enough for the messages that kept
// coming to fill what a retry takes while it waits (a batch, at least
// heldMin) still sees its revoke: the retry pauses the partition's
// fetching and goes on taking what was fetched, so it sees the channel
// close, stops and hands over, instead of holding the partition,
// ownerless, until sarama ends the member's whole session a rebalance
// timeout (60 s) later. The pause is lifted before the partition is let
// go (sarama keeps a partition's pause across its reassignment).
func TestRevokedWhileRetryingWithHeldFull(t *testing.T) {
	f := newFixture(t)
	group := &pausingGroup{}
	c := New(Config{Group: group, Topic: hit.TopicHits, Session: f.session, Properties: enginetest.Properties{f.prop},
		FlushInterval: 50 * time.Millisecond, State: engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}, BatchSize: 10,
		HandOver: time.Second, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry())})
	s := &fakeSession{ctx: context.Background(), marked: -1}
	const n = heldMin + 200 // more than a retry takes before it pauses
	msgs := make(chan *sarama.ConsumerMessage, n+1)
	b, _ := hit.Marshal(pageview(1, "e1"))
	srv := cqltest.Server(t)
	srv.SetUnavailable(true)
	defer srv.SetUnavailable(false)
	msgs <- &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: 0, Value: b, Timestamp: time.Now()}
	done := make(chan error, 1)
	go func() { done <- c.ConsumeClaim(s, fakeClaim{msgs: msgs}) }()
	time.Sleep(300 * time.Millisecond) // the first apply failing, retried
	for i := 1; i <= n; i++ {
		msgs <- &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: int64(i), Value: b, Timestamp: time.Now()}
	}
	time.Sleep(time.Second) // taken while the retry waits, up to what it holds
	close(msgs)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("ConsumeClaim: %v, want the store's failure, revoked while retrying", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a partition revoked while its apply retried, its messages held to the bound, was not let go")
	}
	if paused, resumed := group.counts(); paused != 1 || resumed != 1 {
		t.Fatalf("partition paused %d times, resumed %d; want once each", paused, resumed)
	}
}

// pausingGroup is a consumer group for ConsumeClaim alone: it counts
// the pauses and resumes of partition 0 of the hits topic.
type pausingGroup struct {
	sarama.ConsumerGroup
	mu              sync.Mutex
	paused, resumed int
}

func (g *pausingGroup) Pause(tps map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if slices.Contains(tps[hit.TopicHits], 0) {
		g.paused++
	}
}

func (g *pausingGroup) Resume(tps map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if slices.Contains(tps[hit.TopicHits], 0) {
		g.resumed++
	}
}

func (g *pausingGroup) counts() (paused, resumed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused, g.resumed
}

// fakeSession is a consumer group session for ConsumeClaim alone: its
// context, and the offset marked and committed.
type fakeSession struct {
	ctx       context.Context
	marked    int64
	committed bool
}

func (s *fakeSession) Claims() map[string][]int32 { return map[string][]int32{hit.TopicHits: {0}} }
func (s *fakeSession) MemberID() string           { return "m" }
func (s *fakeSession) GenerationID() int32        { return 1 }
func (s *fakeSession) MarkOffset(_ string, _ int32, offset int64, _ string) {
	s.marked = offset
}
func (s *fakeSession) Commit()                                           { s.committed = true }
func (s *fakeSession) ResetOffset(string, int32, int64, string)          {}
func (s *fakeSession) MarkMessage(msg *sarama.ConsumerMessage, _ string) { s.marked = msg.Offset + 1 }
func (s *fakeSession) Context() context.Context                          { return s.ctx }

// fakeClaim is partition 0 of the hits topic, from offset 0, with its
// high water mark (0: not known).
type fakeClaim struct {
	msgs      chan *sarama.ConsumerMessage
	highWater int64
}

func (c fakeClaim) Topic() string                            { return hit.TopicHits }
func (c fakeClaim) Partition() int32                         { return 0 }
func (c fakeClaim) InitialOffset() int64                     { return 0 }
func (c fakeClaim) HighWaterMarkOffset() int64               { return c.highWater }
func (c fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }

// fixture is a broker with a hits topic (one partition unless
// newFixtureOf says), a keyspace on the test's embedded CQL server
// (cqltest.Server(t) controls it) and a property, for a consumer to run
// against.
type fixture struct {
	cl         *kafkatest.Cluster
	kcfg       *kafka.Config
	partitions int32
	session    *gocql.Session
	prop       *engine.Property
	producer   sarama.SyncProducer
}

func newFixture(t *testing.T) *fixture { return newFixtureOf(t, 1) }

// newFixtureOf makes a fixture whose hits topic has partitions partitions,
// and whose property four processing shards for each, so that its
// visitors' hits go to all of them.
func newFixtureOf(t testing.TB, partitions int32) *fixture {
	t.Helper()
	f := &fixture{cl: kafkatest.Start(t), partitions: partitions}
	f.kcfg = &kafka.Config{Brokers: f.cl.Brokers()[0], ClientID: "test"}
	if err := kafka.EnsureTopics(context.Background(), f.kcfg, kafka.Topic{Name: hit.TopicHits, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	cqltest.Server(t)
	var err error
	if f.session, err = cassandra.Connect(migratetest.Keyspace(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.session.Close)
	if f.prop, err = enginetest.Property(propID, rules.Defaults()); err != nil {
		t.Fatal(err)
	}
	if partitions > 1 {
		f.prop.Shards = 4 * int(partitions)
	}
	if f.producer, err = sarama.NewSyncProducer(f.kcfg.BrokerList(), f.kcfg.ProducerConfig()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.producer.Close() })
	return f
}

// claimConsumer returns a Consumer of the fixture's property without a
// group, for ConsumeClaim on a fake session: flushing every 50 ms,
// writing visitors by state, a hand-over bounded by handOver.
func (f *fixture) claimConsumer(state engine.StatePolicy, handOver time.Duration) *Consumer {
	return New(Config{Topic: hit.TopicHits, Session: f.session, Properties: enginetest.Properties{f.prop},
		FlushInterval: 50 * time.Millisecond, State: state,
		HandOver: handOver, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry())})
}

// send produces a pageview of visitor c<i>, received now.
func (f *fixture) send(t *testing.T, i int) { f.sendEvent(t, i, fmt.Sprint("e", i)) }

// sendEvent produces a pageview of visitor c<i>, received now, whose ID
// is derived from event.
func (f *fixture) sendEvent(t *testing.T, i int, event string) {
	t.Helper()
	h := pageview(i, event)
	b, _ := hit.Marshal(h)
	if _, _, err := f.producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(h.Key(f.prop.Shards)), Value: sarama.ByteEncoder(b)}); err != nil {
		t.Fatal(err)
	}
}

// pageview is a pageview of visitor c<i>, received now, whose ID is
// derived from event.
func pageview(i int, event string) *hit.Hit {
	now := time.Now().UTC()
	h := &hit.Hit{PropertyID: propID, ClientID: fmt.Sprint("c", i), Type: hit.TypePageview, Origin: hit.OriginBrowser, Time: now, ReceivedAt: now, Path: "/"}
	h.ID = h.DeriveID(event)
	return h
}

// group joins the processing consumer group, rebalancing cooperatively.
func (f *fixture) group(t testing.TB) sarama.ConsumerGroup {
	return f.groupIn(t, kafka.RebalanceCooperative)
}

// groupIn joins the processing consumer group, rebalancing as mode says.
func (f *fixture) groupIn(t testing.TB, mode kafka.RebalanceMode) sarama.ConsumerGroup {
	t.Helper()
	kcfg := *f.kcfg
	kcfg.Rebalance = mode
	return f.groupOf(t, kcfg.ConsumerConfig())
}

// groupOf joins the processing consumer group with sc.
func (f *fixture) groupOf(t testing.TB, sc *sarama.Config) sarama.ConsumerGroup {
	t.Helper()
	group, err := sarama.NewConsumerGroup(f.kcfg.BrokerList(), "processing", sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { group.Close() })
	return group
}

// start runs a consumer on the fixture with cfg, whose group
// (cooperative), topic, store, properties, flush interval (50 ms), state
// policy (an hour: states written at the hand-over), logger (none) and
// metrics are the fixture's where it leaves them out. cancel stops it;
// done is closed once Run has returned.
func (f *fixture) start(t testing.TB, cfg Config) (cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	_, cancel, done = f.run(t, cfg)
	return cancel, done
}

// startIn is start with a group that rebalances as mode says.
func (f *fixture) startIn(t testing.TB, mode kafka.RebalanceMode, cfg Config) (cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	cfg.Group = f.groupIn(t, mode)
	return f.start(t, cfg)
}

// run is start, returning the Consumer too.
func (f *fixture) run(t testing.TB, cfg Config) (c *Consumer, cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	if cfg.Group == nil {
		cfg.Group = f.group(t)
	}
	cfg.Topic, cfg.Session, cfg.Properties = hit.TopicHits, f.session, enginetest.Properties{f.prop}
	cfg.FlushInterval = 50 * time.Millisecond
	if cfg.State == (engine.StatePolicy{}) {
		cfg.State = engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	c = New(cfg)
	go func() { _ = c.Run(ctx); close(stopped) }()
	return c, cancel, stopped
}

// stopsWithin stops a consumer that start started and fails t unless it
// has returned within its hand-over bound (and 5 s for the rest).
func stopsWithin(t *testing.T, cancel context.CancelFunc, done <-chan struct{}, handOver time.Duration, what string) {
	t.Helper()
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(handOver + 5*time.Second):
		t.Fatalf("the hand-over still running %v after shutdown began, %s; its bound is %v", time.Since(start).Round(time.Millisecond), what, handOver)
	}
}

// TestHandOverIsBounded: a partition's final flush (revoked, or shutting
// down) gives up at Config.HandOver when the store is slow, instead of
// writing on after the group has given the partition to another member
// (whose newer writes it would overwrite). The next owner replays.
func TestHandOverIsBounded(t *testing.T) {
	f := newFixture(t)
	const handOver = time.Second
	m := NewMetrics(prometheus.NewRegistry())
	cancel, done := f.start(t, Config{HandOver: handOver, Metrics: m})

	f.send(t, 1)
	eventually.True(t, 30*time.Second, "the first hit processed", func() bool {
		return testutil.ToFloat64(m.Hits.WithLabelValues("applied")) > 0
	})
	srv := cqltest.Server(t)
	srv.SetLatency(10 * time.Second) // every statement: a final flush of three attempts would take minutes
	defer srv.SetLatency(0)
	f.send(t, 2)
	time.Sleep(300 * time.Millisecond) // applied, and its flush waiting on the store
	stopsWithin(t, cancel, done, handOver, "waiting on the store")
}

// TestOversizedPoisonRecordIsDeadLettered: a record that does not decode
// goes to the dead-letter topic even when it is as large as the hits
// topic takes (its bytes base64-encoded in a dead letter would be larger
// than the producer may send), and the partition goes on past it.
func TestOversizedPoisonRecordIsDeadLettered(t *testing.T) {
	f := newFixture(t)
	if err := kafka.EnsureTopics(context.Background(), f.kcfg, kafka.Topic{Name: hit.TopicDeadLetter, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	poison := make([]byte, 900<<10) // not UTF-8: a dead letter carries it in base64
	for i := range poison {
		poison[i] = byte(0x80 + i%64)
	}
	if _, _, err := f.producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.StringEncoder("x"), Value: sarama.ByteEncoder(poison)}); err != nil {
		t.Fatal(err)
	}
	f.send(t, 1)

	dlq, err := sarama.NewSyncProducer(f.kcfg.BrokerList(), f.kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	cancel, done := f.start(t, Config{DeadLetter: deadletter.New(dlq, prometheus.NewRegistry()).Publish})
	defer func() { cancel(); <-done }()

	dl := firstDeadLetter(t, f.kcfg)
	if dl.Reason != "undecodable" || dl.Offset != 0 || !strings.Contains(dl.Detail, fmt.Sprintf("of %d bytes", len(poison))) {
		t.Fatalf("dead letter %s, detail %q: want the record at offset 0, undecodable, its payload said to be cut", dl.Reason, dl.Detail)
	}
	eventually.NoError(t, 15*time.Second, "the partition committed past the poison record", func() error {
		if got, err := committed(f.kcfg); err != nil || got < 1 {
			return fmt.Errorf("committed %d (%v), want past offset 0", got, err)
		}
		return nil
	})
}

// TestHandOverOutlastsABriefOutage: a final flush that fails (the store
// unavailable for a moment as the partition is handed over) is tried
// again within Config.HandOver, so the hand-over still writes every
// visitor and commits the partition to its end: the next owner re-reads
// nothing.
func TestHandOverOutlastsABriefOutage(t *testing.T) {
	f := newFixture(t)
	m := NewMetrics(prometheus.NewRegistry())
	cancel, done := f.start(t, Config{HandOver: 20 * time.Second, Metrics: m})

	f.send(t, 1)
	eventually.True(t, 30*time.Second, "the hit's rollups written", func() bool {
		return testutil.ToFloat64(m.Flushes.WithLabelValues("ok")) > 0
	})
	srv := cqltest.Server(t)
	srv.SetUnavailable(true)
	outage := time.AfterFunc(3*time.Second, func() { srv.SetUnavailable(false) })
	defer outage.Stop()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the hand-over still running after 30 s")
	}
	srv.SetUnavailable(false)
	if got, err := committed(f.kcfg); err != nil || got != 1 {
		t.Fatalf("committed %d (%v) after the hand-over, want 1 (past the hit): the hand-over gave up during a 3 s outage within its bound of 20 s", got, err)
	}
}

// TestHandOverIsBoundedWhileDeadLettersHang: a dead-letter topic whose
// broker takes a produce request and never answers holds neither a flush
// past the end of its session nor the final flush past Config.HandOver
// (the dead letters are published again by the next owner's replay).
func TestHandOverIsBoundedWhileDeadLettersHang(t *testing.T) {
	f := newFixture(t)
	if err := kafka.EnsureTopics(context.Background(), f.kcfg, kafka.Topic{Name: hit.TopicDeadLetter, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	hung, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.cl.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		f.cl.KeepControl()
		for _, rt := range kreq.(*kmsg.ProduceRequest).Topics {
			if rt.Topic == hit.TopicDeadLetter {
				once.Do(func() { close(hung) })
				f.cl.SleepControl(func() { <-release })
			}
		}
		return nil, nil, false
	})
	if _, _, err := f.producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.StringEncoder("x"), Value: sarama.StringEncoder("not a hit")}); err != nil {
		t.Fatal(err)
	}
	f.send(t, 1)

	dlq, err := sarama.NewSyncProducer(f.kcfg.BrokerList(), f.kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dlq.Close() })
	const handOver = time.Second
	cancel, done := f.start(t, Config{DeadLetter: deadletter.New(dlq, prometheus.NewRegistry()).Publish, HandOver: handOver})
	t.Cleanup(func() { close(release); cancel(); <-done }) // before the producer's and the group's Close, which wait for it
	select {
	case <-hung:
	case <-time.After(30 * time.Second):
		t.Fatal("no dead letter published")
	}
	stopsWithin(t, cancel, done, handOver, "waiting on the dead-letter topic")
}

// firstDeadLetter returns the first message of the dead-letter topic,
// waiting for it.
func firstDeadLetter(t *testing.T, kcfg *kafka.Config) hit.DeadLetter {
	t.Helper()
	consumer, err := sarama.NewConsumer(kcfg.BrokerList(), kcfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(hit.TopicDeadLetter, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var dl hit.DeadLetter
	select {
	case m := <-pc.Messages():
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatalf("dead letter %.200q: %v", m.Value, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no dead letter for the poison message")
	}
	return dl
}

// committed returns the offset the processing group committed for
// partition 0 of the hits topic.
func committed(kcfg *kafka.Config) (int64, error) {
	admin, err := sarama.NewClusterAdmin(kcfg.BrokerList(), kcfg.ConsumerConfig())
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets("processing", map[string][]int32{hit.TopicHits: {0}})
	if err != nil {
		return 0, err
	}
	b := resp.GetBlock(hit.TopicHits, 0)
	if b == nil {
		return 0, fmt.Errorf("no offset of partition 0")
	}
	return b.Offset, nil
}

// TestHandOverCommitsTheLastFlush: a hand-over commits before the
// partition is let go, even when its final flush has nothing left to
// write: a regular flush wrote everything and marked its offset, and
// asked the session's committer to commit it, which has not yet (here
// it is busy with an earlier commit; under the cooperative protocol it
// waits out every join). Sarama drops a partition's marks once its
// ConsumeClaim returns, and its offset manager commits nothing as a
// session ends (auto-commit is off), so a mark left to the committer
// was lost: the next owner replayed from the commit before, and the
// partition, kept, could not resume warm.
func TestHandOverCommitsTheLastFlush(t *testing.T) {
	for _, cause := range []string{"revoked", "session ended"} {
		t.Run(cause, func(t *testing.T) {
			f := newFixture(t)
			// every changed visitor written at every flush: after one,
			// nothing is pending, and the final flush writes nothing
			c := f.claimConsumer(engine.StatePolicy{Quiet: time.Hour}, 10*time.Second)
			ctx, end := context.WithCancel(context.Background())
			defer end()
			s := &committingSession{ctx: ctx, marked: -1, busy: make(chan struct{}), release: make(chan struct{})}
			defer s.releaseOnce.Do(func() { close(s.release) })
			if err := c.Setup(s); err != nil {
				t.Fatal(err)
			}
			msgs := make(chan *sarama.ConsumerMessage, 2)
			send := func(i int) {
				b, _ := hit.Marshal(pageview(i, fmt.Sprint("e", i)))
				msgs <- &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: int64(i), Value: b, Timestamp: time.Now()}
			}
			done := make(chan error, 1)
			go func() { done <- c.ConsumeClaim(s, fakeClaim{msgs: msgs}) }()
			send(0)
			select {
			case <-s.busy: // committing offset 1, held
			case <-time.After(30 * time.Second):
				t.Fatal("the first flush's offset never committed")
			}
			send(1)
			eventually.True(t, 30*time.Second, "the second hit flushed and marked", func() bool { return s.mark() == 2 })
			if cause == "revoked" {
				close(msgs)
			} else {
				end()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ConsumeClaim: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the partition was not let go")
			}
			if got := s.commitsOf(); !slices.Contains(got, 2) {
				t.Fatalf("commits made before ConsumeClaim returned: of offsets %v; want one of 2, the last flush's", got)
			}
		})
	}
}

// committingSession is a consumer group session for Setup and
// ConsumeClaim: the offset marked, and that marked at each Commit; the
// first Commit waits until release is closed (busy is closed as it does).
type committingSession struct {
	ctx                   context.Context
	mu                    sync.Mutex
	marked                int64
	commits               []int64
	busy, release         chan struct{}
	busyOnce, releaseOnce sync.Once
}

func (s *committingSession) Claims() map[string][]int32 {
	return map[string][]int32{hit.TopicHits: {0}}
}
func (s *committingSession) MemberID() string    { return "m" }
func (s *committingSession) GenerationID() int32 { return 1 }
func (s *committingSession) MarkOffset(_ string, _ int32, offset int64, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marked = max(s.marked, offset)
}
func (s *committingSession) Commit() {
	s.mu.Lock()
	s.commits = append(s.commits, s.marked)
	first := len(s.commits) == 1
	s.mu.Unlock()
	if first {
		s.busyOnce.Do(func() { close(s.busy) })
		<-s.release
	}
}
func (s *committingSession) mark() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marked
}
func (s *committingSession) commitsOf() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commits)
}
func (s *committingSession) ResetOffset(string, int32, int64, string)          {}
func (s *committingSession) MarkMessage(msg *sarama.ConsumerMessage, _ string) {}
func (s *committingSession) Context() context.Context                          { return s.ctx }
