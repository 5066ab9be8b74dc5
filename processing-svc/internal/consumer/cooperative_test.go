package consumer

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// TestCooperativeRebalancesMoveOnlyWhatChangesHands: under the
// cooperative protocol (the default), a second member joins a member
// holding four partitions and takes two. The first member hands over
// those two alone: its other two are never revoked (claimed once, no
// hand-over) and go on applying hits while the two that move are still
// being handed over. Then the second member leaves: it hands its two
// over, and the first takes them cold from the offsets committed, its
// own two still untouched. Every table ends as a cold run of the same
// messages gives, nothing lost or counted twice; and nothing is kept in
// memory that no claim can resume.
func TestCooperativeRebalancesMoveOnlyWhatChangesHands(t *testing.T) {
	f := newFixtureOf(t, 4)
	a, b := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	var logA logtest.Buffer
	const visitors = 40
	send := func(r int) {
		t.Helper()
		for i := range visitors {
			f.sendEvent(t, i, fmt.Sprint("e", i, "-", r))
		}
	}
	round := func(r int) {
		t.Helper()
		send(r)
		eventually.True(t, 30*time.Second, fmt.Sprintf("round %d applied", r), func() bool {
			return applied(a)+applied(b) == int64(r*visitors)
		})
	}
	consumerA, stopA, doneA := f.run(t, Config{Metrics: a, HandOver: 20 * time.Second, Log: slog.New(slog.NewTextHandler(&logA, nil))})
	defer func() { stopA(); <-doneA }()
	round(1)
	if got := count(a.Claims.WithLabelValues("cold")); got != 4 {
		t.Fatalf("first member claimed %d partitions cold, want all 4", got)
	}

	// Visitors' states are written at a hand-over only: holding those
	// writes holds the hand-over of the partitions that move, and with it
	// the rebalance (the second member gets them only once they are let
	// go).
	srv := cqltest.Server(t)
	held, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(cql, "INSERT INTO visitor_state") {
			once.Do(func() { close(held) })
			<-release
		}
		return cqlserver.NoFault
	})
	defer srv.SetFault(nil)
	stopB, doneB := f.start(t, Config{Metrics: b, HandOver: 20 * time.Second})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no partition handed over after a second member joined")
	}
	appliedA := applied(a)
	send(2)
	eventually.True(t, 30*time.Second, "hits of the partitions that stay applied mid-rebalance", func() bool {
		return applied(a) > appliedA
	})
	if got := applied(b); got != 0 {
		t.Fatalf("the second member applied %d hits while the partitions it takes were being handed over", got)
	}
	releaseOnce.Do(func() { close(release) })
	eventually.True(t, 30*time.Second, "two partitions each, round 2 applied", func() bool {
		return count(a.Partitions) == 2 && count(b.Partitions) == 2 && applied(a)+applied(b) == 2*visitors
	})
	srv.SetFault(nil)
	if got, want := count(a.Claims.WithLabelValues("cold"))+count(a.Claims.WithLabelValues("warm")), int64(4); got != want {
		t.Errorf("first member claimed %d partitions in all, want %d: the two it kept were claimed again", got, want)
	}
	if got := strings.Count(logA.String(), `msg="partition handed over"`); got != 2 {
		t.Errorf("first member handed over %d partitions as the second joined, want the 2 that moved:\n%s", got, logA.String())
	}
	if got := strings.Count(logA.String(), "cause=revoked"); got != 2 {
		t.Errorf("first member logged %d hand-overs of revoked partitions, want 2", got)
	}
	eventually.True(t, 30*time.Second, "nothing kept that no claim can resume", func() bool { return consumerA.kept.len() == 0 })
	round(3)

	// The second member leaves: the first takes its partitions, cold,
	// from what it committed.
	stopB()
	<-doneB
	eventually.True(t, 30*time.Second, "all four partitions back with the first member", func() bool {
		return count(a.Partitions) == 4
	})
	if got := count(a.Claims.WithLabelValues("cold")); got != 6 {
		t.Errorf("first member claimed %d partitions cold in all, want 6: 4 at the start, 2 when the second left", got)
	}
	if got := strings.Count(logA.String(), `msg="partition handed over"`); got != 2 {
		t.Errorf("first member handed over %d partitions in all, want only the 2 that moved when the second joined", got)
	}
	round(4)
	stopA()
	<-doneA
	f.sameAsColdRun(t)
}

// TestCooperativeMemberRefusedByAnEarlierBuild: a cooperative member
// cannot join a group that has a member of the build before (offering
// sticky and range): Kafka refuses it (INCONSISTENT_GROUP_PROTOCOL), and
// the consumer says at error level what that means and what to do. The
// member in the group keeps every partition and goes on.
func TestCooperativeMemberRefusedByAnEarlierBuild(t *testing.T) {
	f := newFixtureOf(t, 2)
	previous := f.kcfg.ConsumerConfig()
	previous.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky(), sarama.NewBalanceStrategyRange()}
	old, refused := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	stopOld, doneOld := f.start(t, Config{Group: f.groupOf(t, previous), Metrics: old})
	defer func() { stopOld(); <-doneOld }()
	eventually.True(t, 30*time.Second, "the earlier build's member holding both partitions", func() bool { return count(old.Partitions) == 2 })

	var logs logtest.Buffer
	stop, done := f.start(t, Config{Metrics: refused, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	eventually.True(t, 30*time.Second, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "level=ERROR")
	})
	got := logs.String()
	for _, want := range []string{`msg="consumer group refused this member (INCONSISTENT_GROUP_PROTOCOL): members of an earlier build are in the group`, "-kafka-rebalance=eager", "docs/operations.md", "INCONSISTENT_GROUP_PROTOCOL"} {
		if !strings.Contains(got, want) {
			t.Errorf("log has no %q:\n%s", want, got)
		}
	}
	f.send(t, 1)
	eventually.True(t, 30*time.Second, "the earlier build's member applying hits", func() bool { return applied(old) == 1 })
	if count(old.Partitions) != 2 || count(old.Claims.WithLabelValues("cold")) != 2 || count(refused.Partitions) != 0 {
		t.Errorf("after the refusal the earlier build's member holds %d partitions, claimed %d; the refused one %d; want 2, 2 and 0",
			count(old.Partitions), count(old.Claims.WithLabelValues("cold")), count(refused.Partitions))
	}
	if count(refused.JoinsRefused) == 0 || count(old.JoinsRefused) != 0 {
		t.Errorf("joins refused: %d counted by the refused member, %d by the other; want some, and none",
			count(refused.JoinsRefused), count(old.JoinsRefused))
	}
	stopsWithin(t, stop, done, 0, "waiting to join again")
}

// TestKeptExpires: a Partition kept from a hand-over in generation 5
// stays while the session is in 5 (under the cooperative protocol, the
// generation that revoked it), and in 6 if 6 claims it again; it is
// dropped in 6 if 6 does not, and in any later generation.
func TestKeptExpires(t *testing.T) {
	p := engine.New(engine.Config{})
	for _, c := range []struct {
		name   string
		gens   []int32
		claims []int32
		kept   bool
	}{
		{name: "the generation it was handed over in", gens: []int32{5}, kept: true},
		{name: "the next, claiming it", gens: []int32{5, 6}, claims: []int32{0}, kept: true},
		{name: "the next, not claiming it", gens: []int32{5, 6}, claims: []int32{1}},
		{name: "one after the next", gens: []int32{7}, claims: []int32{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var k kept
			k.keep(5, 0, p)
			for _, gen := range c.gens {
				k.expire(gen, c.claims)
			}
			if got := k.len() == 1; got != c.kept {
				t.Fatalf("kept: %v, want %v", got, c.kept)
			}
		})
	}
}

// TestClaimAndHandOverLogTheCommittedOffset: a partition the group has
// never committed an offset for is claimed and handed over with
// `offset=none` in the log, not sarama's OffsetOldest (-2), which read as
// an offset committed (the local upgrade drill of session 21 logged
// `partition handed over ... offset=-2` for every partition without
// traffic); once hits were applied and committed, the offset is the one
// after the last, at the hand-over and at the next claim.
func TestClaimAndHandOverLogTheCommittedOffset(t *testing.T) {
	f := newFixtureOf(t, 2)
	var first, second logtest.Buffer
	m := NewMetrics(prometheus.NewRegistry())
	stop, done := f.start(t, Config{Metrics: m, Log: slog.New(slog.NewTextHandler(&first, nil))})
	eventually.True(t, 30*time.Second, "both partitions claimed", func() bool { return count(m.Partitions) == 2 })
	const visitors = 20
	for i := range visitors {
		f.send(t, i)
	}
	eventually.True(t, 30*time.Second, "the hits applied", func() bool { return applied(m) == visitors })
	stop()
	<-done
	lines := func(b *logtest.Buffer, msg string) []string {
		var out []string
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.Contains(l, `msg="`+msg+`"`) {
				out = append(out, l)
			}
		}
		return out
	}
	claims := lines(&first, "partition claimed")
	if len(claims) != 2 {
		t.Fatalf("%d claims logged, want 2:\n%s", len(claims), first.String())
	}
	for _, l := range claims {
		if !strings.Contains(l, "offset=none") {
			t.Errorf("a partition the group never committed is claimed with %q, want offset=none", l)
		}
	}
	handOvers := lines(&first, "partition handed over")
	if len(handOvers) != 2 {
		t.Fatalf("%d hand-overs logged, want 2:\n%s", len(handOvers), first.String())
	}
	for _, l := range handOvers {
		if strings.Contains(l, "offset=none") || strings.Contains(l, "offset=-") {
			t.Errorf("a partition whose hits were applied and committed is handed over with %q, want the offset after the last", l)
		}
	}

	m = NewMetrics(prometheus.NewRegistry())
	stop, done = f.start(t, Config{Metrics: m, Log: slog.New(slog.NewTextHandler(&second, nil))})
	eventually.True(t, 30*time.Second, "both partitions claimed again", func() bool { return count(m.Partitions) == 2 })
	stop()
	<-done
	var total int
	for _, l := range lines(&second, "partition claimed") {
		var n int
		if _, err := fmt.Sscanf(l[strings.Index(l, "offset=")+len("offset="):], "%d", &n); err != nil {
			t.Fatalf("claim after a commit logged %q, want a committed offset", l)
		}
		total += n
	}
	if total != visitors {
		t.Errorf("the claims after the commits start at offsets summing to %d, want %d, one past each partition's last hit", total, visitors)
	}
}
