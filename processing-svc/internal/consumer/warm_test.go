package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPartitionsStayWarmAcrossRebalances: under the eager protocol (the
// step of a rolling update between the previous build and cooperative
// rebalancing), a second member joins the group and leaves it again. The
// first keeps one of its two partitions through both rebalances, warm:
// claimed warm, none of its visitors read again from the store. The partition the second member held in between comes
// back cold, its visitors read again; and every table equals that of a
// cold run of the same messages.
func TestPartitionsStayWarmAcrossRebalances(t *testing.T) {
	f := newFixtureOf(t, 2)
	a, b := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	const visitors = 20
	round := func(r int) {
		t.Helper()
		for i := range visitors {
			f.sendEvent(t, i, fmt.Sprint("e", i, "-", r))
		}
		eventually.True(t, 30*time.Second, fmt.Sprintf("round %d applied", r), func() bool {
			return applied(a)+applied(b) == int64(r*visitors)
		})
	}

	stopA, doneA := f.startIn(t, kafka.RebalanceEager, Config{Metrics: a})
	defer func() { stopA(); <-doneA }()
	round(1)
	if got := count(a.Claims.WithLabelValues("cold")); got != 2 {
		t.Fatalf("first member claimed %d partitions cold, want both", got)
	}

	// A second member: the first keeps one partition, warm.
	stopB, doneB := f.startIn(t, kafka.RebalanceEager, Config{Metrics: b})
	eventually.True(t, 30*time.Second, "one partition each, the first member's warm", func() bool {
		return count(a.Partitions) == 1 && count(b.Partitions) == 1 && count(a.Claims.WithLabelValues("warm")) >= 1
	})
	readsA, appliedA := count(a.VisitorReads), applied(a)
	round(2)
	onA, onB := applied(a)-appliedA, applied(b)
	if onA == 0 || onB == 0 {
		t.Fatalf("visitors on the first member's partition %d, on the second's %d: the test proves nothing", onA, onB)
	}
	if got := count(a.VisitorReads) - readsA; got != 0 {
		t.Errorf("the first member read %d visitors of its warm partition again, want none", got)
	}
	if got := count(b.VisitorReads); got != onB {
		t.Errorf("the second member read %d visitors of the partition it took, want each of its %d", got, onB)
	}

	// The second member leaves: its partition comes back to the first,
	// cold (another member applied hits to it since the first held it).
	stopB()
	<-doneB
	eventually.True(t, 30*time.Second, "both partitions back with the first member", func() bool {
		return count(a.Partitions) == 2
	})
	if got := count(a.Claims.WithLabelValues("cold")); got != 3 {
		t.Errorf("first member claimed %d partitions cold in all, want 3: both at the start, one when the second member left", got)
	}
	if got := count(a.Claims.WithLabelValues("warm")); got < 2 {
		t.Errorf("first member claimed %d partitions warm in all, want its own at both rebalances", got)
	}
	readsA = count(a.VisitorReads)
	round(3)
	if got := count(a.VisitorReads) - readsA; got != onB {
		t.Errorf("after the second member left, the first read %d visitors, want the %d of the partition that came back", got, onB)
	}
	stopA()
	<-doneA
	f.sameAsColdRun(t)
}

// TestFailedHandOverStartsCold: a member whose hand-over failed (the store
// refusing every write) claims its partition again cold, and the numbers
// stay exact. (Eager: a member joining revokes the partition that stays;
// cooperatively it would not be handed over at all.)
func TestFailedHandOverStartsCold(t *testing.T) {
	f := newFixture(t)
	a, b := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	stopA, doneA := f.startIn(t, kafka.RebalanceEager, Config{Metrics: a, HandOver: time.Second})
	defer func() { stopA(); <-doneA }()
	f.send(t, 1)
	eventually.True(t, 30*time.Second, "the hit's rollups written", func() bool {
		return count(a.Flushes.WithLabelValues("ok")) > 0
	})

	// The visitor is written at the hand-over only: that write fails.
	srv := cqltest.Server(t)
	srv.SetFault(func(string) cqlserver.Fault { return cqlserver.FailBefore })
	defer srv.SetFault(nil)
	stopB, doneB := f.startIn(t, kafka.RebalanceEager, Config{Metrics: b, HandOver: time.Second})
	defer func() { stopB(); <-doneB }()
	eventually.True(t, 30*time.Second, "the failed hand-over, then the partition claimed again", func() bool {
		claims := count(a.Claims.WithLabelValues("cold")) + count(a.Claims.WithLabelValues("warm")) + count(b.Claims.WithLabelValues("cold"))
		return count(a.Flushes.WithLabelValues("error")) > 0 && claims == 2
	})
	srv.SetFault(nil)
	if got := count(a.Claims.WithLabelValues("warm")) + count(b.Claims.WithLabelValues("warm")); got != 0 {
		t.Fatalf("%d partitions claimed warm after a failed hand-over, want none", got)
	}
	f.sendEvent(t, 1, "e1-again")
	eventually.True(t, 30*time.Second, "both hits applied", func() bool {
		return count(a.Hits.WithLabelValues("applied"))+count(b.Hits.WithLabelValues("applied")) >= 2
	})
	stopA()
	<-doneA
	stopB()
	<-doneB
	f.sameAsColdRun(t)
}

// TestKeptPartitionResumes: a Partition kept from a hand-over resumes
// only in the generation right after it, claimed again, from the offset
// after its last (from anywhere if it applied nothing), with nothing
// applied since; any other claim starts cold and drops it.
func TestKeptPartitionResumes(t *testing.T) {
	f := newFixture(t)
	msg := func(offset int64, i int) engine.Message {
		b, _ := hit.Marshal(pageview(i, fmt.Sprint("e", i)))
		return engine.Message{Offset: offset, Value: b}
	}
	ctx := context.Background()
	for _, c := range []struct {
		name        string
		gen         int32
		claims      []int32
		offset      int64
		appliedMore bool
		// appliedNothing: the partition had no message in the last session.
		appliedNothing bool
		why            string // "" resumes
	}{
		{name: "next generation", gen: 6, claims: []int32{0}, offset: 1},
		{name: "a generation missed", gen: 7, claims: []int32{0}, offset: 1, why: "not kept"},
		{name: "not claimed", gen: 6, claims: []int32{1}, offset: 1, why: "not kept"},
		{name: "offset replays", gen: 6, claims: []int32{0}, offset: 0, why: "not the one after"},
		{name: "offset skips", gen: 6, claims: []int32{0}, offset: 2, why: "not the one after"},
		{name: "applied since the hand-over", gen: 6, claims: []int32{0}, offset: 2, appliedMore: true, why: "not the one after"},
		{name: "nothing applied", gen: 6, claims: []int32{0}, offset: -2, appliedNothing: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := engine.New(engine.Config{Topic: hit.TopicHits, Session: f.session, Properties: enginetest.Properties{f.prop}})
			if !c.appliedNothing {
				if err := p.Apply(ctx, []engine.Message{msg(0, 1)}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.FlushAll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if c.appliedMore {
				if err := p.Apply(ctx, []engine.Message{msg(1, 2)}); err != nil {
					t.Fatal(err)
				}
			}
			var k kept
			k.keep(5, 0, p)
			k.expire(c.gen, c.claims)
			got, why := k.take(c.gen, 0, c.offset)
			if c.why == "" && got != p {
				t.Fatalf("not resumed: %s", why)
			}
			if c.why != "" && (got != nil || !strings.Contains(why, c.why)) {
				t.Fatalf("take = %p, %q; want nil, %q", got, why, c.why)
			}
			if again, _ := k.take(c.gen, 0, c.offset); again != nil {
				t.Fatal("a Partition taken twice")
			}
		})
	}
}

// count is the value of a counter or gauge.
func count(c prometheus.Collector) int64 { return int64(testutil.ToFloat64(c)) }

// applied is the hits a consumer applied and flushed.
func applied(m *Metrics) int64 { return count(m.Hits.WithLabelValues("applied")) }

// sameAsColdRun fails t unless the fixture's tables are those of a cold
// run of every message of its hits topic: a new Partition per partition
// applying them all in one batch, into a new keyspace.
func (f *fixture) sameAsColdRun(t *testing.T) {
	t.Helper()
	session, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	client, err := sarama.NewClient(f.kcfg.BrokerList(), f.kcfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := context.Background()
	for part := range f.partitions {
		end, err := client.GetOffset(hit.TopicHits, part, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := consumer.ConsumePartition(hit.TopicHits, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []engine.Message
		for int64(len(msgs)) < end {
			m := <-pc.Messages()
			msgs = append(msgs, engine.Message{Offset: m.Offset, Value: m.Value})
		}
		pc.Close()
		p := engine.New(engine.Config{Topic: hit.TopicHits, Partition: part, Session: session, Properties: enginetest.Properties{f.prop}})
		if err := p.Apply(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		if _, err := p.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := dumptest.Tables(t, f.session, dumptest.Pipeline...), dumptest.Tables(t, session, dumptest.Pipeline...); got != want {
		t.Fatalf("tables differ from a cold run of the same hits:\n got: %.2000s\nwant: %.2000s", got, want)
	}
}

// BenchmarkRebalance measures what a member joining costs the partitions
// that stay where they were, against those that move, under the eager
// protocol and the cooperative: 4,000 visitors on four partitions have a
// hit each through one member; a second joins and takes two partitions
// (cold), the first keeps two. Hits flow all along, 500 a second to the
// visitors of every partition: the longest time the first member applied
// none while the second joined is the pause of the partitions that stay
// (stayed-pause-ms), and the partitions it handed over are counted
// (handed-over: eager, all four, two of them claimed back warm;
// cooperative, the two that moved). Then every visitor has another hit,
// produced at once, and each member's visitor reads and time to apply and
// flush its share are reported. Before partitions were kept warm, every
// member started every partition cold: the first member's figures were
// the second's.
// (go test -run NONE -bench Rebalance -benchtime 3x ./internal/consumer)
func BenchmarkRebalance(b *testing.B) {
	for _, mode := range []kafka.RebalanceMode{kafka.RebalanceEager, kafka.RebalanceCooperative} {
		b.Run(string(mode), func(b *testing.B) { benchmarkRebalance(b, mode) })
	}
}

func benchmarkRebalance(b *testing.B, mode kafka.RebalanceMode) {
	const visitors, partitions = 4000, 4
	var warmReads, coldReads, warmTime, coldTime, handedOver, pause float64
	for n := range b.N {
		f := newFixtureOf(b, partitions)
		ma, mb := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
		var logA logtest.Buffer
		round := func(r int) {
			msgs := make([]*sarama.ProducerMessage, visitors)
			for i := range msgs {
				h := pageview(i, fmt.Sprint("e", i, "-", r))
				v, _ := hit.Marshal(h)
				msgs[i] = &sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(h.Key(f.prop.Shards)), Value: sarama.ByteEncoder(v)}
			}
			if err := f.producer.SendMessages(msgs); err != nil {
				b.Fatal(err)
			}
		}
		stopA, doneA := f.startIn(b, mode, Config{Metrics: ma, Log: slog.New(slog.NewTextHandler(&logA, nil))})
		round(1)
		eventually.True(b, time.Minute, "the first round applied", func() bool { return applied(ma) == visitors })

		// Hits all along the join, and the first member's progress.
		var steady int64
		stopSteady, steadyDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(steadyDone)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-stopSteady:
					return
				case <-tick.C:
				}
				h := pageview(k%visitors, fmt.Sprint("s", k))
				v, _ := hit.Marshal(h)
				if _, _, err := f.producer.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(h.Key(f.prop.Shards)), Value: sarama.ByteEncoder(v)}); err != nil {
					b.Error(err)
					return
				}
				steady++
			}
		}()
		joined := time.Now()
		stopB, doneB := f.startIn(b, mode, Config{Metrics: mb})
		var longest time.Duration
		last, seen := joined, applied(ma)
		eventually.True(b, time.Minute, "two partitions each", func() bool {
			now := time.Now()
			if got := applied(ma); got != seen {
				longest, last, seen = max(longest, now.Sub(last)), now, got
			}
			claimsA := count(ma.Claims.WithLabelValues("warm")) + count(ma.Claims.WithLabelValues("cold"))
			done := count(ma.Partitions) == 2 && count(mb.Partitions) == 2
			if mode == kafka.RebalanceEager {
				return done && count(ma.Claims.WithLabelValues("warm")) == 2
			}
			return done && claimsA == partitions
		})
		settled := time.Now().Add(500 * time.Millisecond) // the first member's flushes after the join
		eventually.True(b, time.Minute, "the first member applying after the join", func() bool {
			now := time.Now()
			if got := applied(ma); got != seen {
				longest, last, seen = max(longest, now.Sub(last)), now, got
			}
			return now.After(settled) && last.After(settled.Add(-500*time.Millisecond))
		})
		close(stopSteady)
		<-steadyDone
		moved := strings.Count(logA.String(), `msg="partition handed over"`)

		readsA, appliedA := count(ma.VisitorReads), applied(ma)
		start := time.Now()
		lastA, lastB := start, start
		seenA, seenB := appliedA, applied(mb)
		round(2)
		eventually.True(b, time.Minute, "the second round applied", func() bool {
			now, gotA, gotB := time.Now(), applied(ma), applied(mb)
			if gotA != seenA {
				seenA, lastA = gotA, now
			}
			if gotB != seenB {
				seenB, lastB = gotB, now
			}
			return gotA+gotB == 2*visitors+steady
		})
		warmReads += float64(count(ma.VisitorReads) - readsA)
		coldReads += float64(count(mb.VisitorReads))
		warmTime += float64(lastA.Sub(start).Milliseconds())
		coldTime += float64(lastB.Sub(start).Milliseconds())
		handedOver += float64(moved)
		pause += float64(longest.Milliseconds())
		b.Logf("run %d (%s): the join: first member handed over %d partitions, applied nothing for %v at most; round 2: warm member: %d hits, %d visitors read, applied and flushed in %v; cold member: %d visitors read in all, round 2 in %v",
			n, mode, moved, longest.Round(time.Millisecond), seenA-appliedA, count(ma.VisitorReads)-readsA, lastA.Sub(start).Round(time.Millisecond), count(mb.VisitorReads), lastB.Sub(start).Round(time.Millisecond))
		stopB()
		<-doneB
		stopA()
		<-doneA
	}
	b.ReportMetric(handedOver/float64(b.N), "handed-over")
	b.ReportMetric(pause/float64(b.N), "stayed-pause-ms")
	b.ReportMetric(warmReads/float64(b.N), "warm-visitor-reads")
	b.ReportMetric(coldReads/float64(b.N), "cold-visitor-reads")
	b.ReportMetric(warmTime/float64(b.N), "warm-ms")
	b.ReportMetric(coldTime/float64(b.N), "cold-ms")
}
