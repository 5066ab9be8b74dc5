package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
)

// TestStrategiesOfARollingUpdate: a member of a build before session 19,
// which offered the range strategy alone, and members of this one in
// eager mode, which offer sticky, cooperative-sticky and range, share a
// group (the new members are not refused) on range; once the old member
// has left, the group moves to sticky, under which a member joining
// leaves the others a part of what they had.
func TestStrategiesOfARollingUpdate(t *testing.T) {
	const topic, group = "events", "g"
	cfg, eager := rollingUpdate(t, topic)
	rangeOnly := cfg.ConsumerConfig()
	rangeOnly.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	owners := newOwners()

	old := joinGroup(t, cfg, rangeOnly, group, topic, owners)
	waitForClaims(t, cfg, group, "range", map[*member]int{old: 6})
	a := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "range", map[*member]int{old: 3, a: 3})
	old.leave()
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 6})
	b := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 3, b: 3})
	aHad, bHad := a.claims(), b.claims()
	c := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 2, b: 2, c: 2})
	keptAll(t, "a", aHad, a.claims())
	keptAll(t, "b", bHad, b.claims())
	owners.check(t)
}

// rollingUpdate starts a broker with topic, of six partitions, and
// returns a configuration of it in the default rebalance mode
// (cooperative) and one in eager mode.
func rollingUpdate(t *testing.T, topic string) (cfg, eager *kafka.Config) {
	t.Helper()
	cl := kafkatest.Start(t)
	cfg = &kafka.Config{Brokers: cl.Brokers()[0], ClientID: "test"}
	if err := kafka.EnsureTopics(context.Background(), cfg, kafka.Topic{Name: topic, Partitions: 6, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	return cfg, &kafka.Config{Brokers: cfg.Brokers, ClientID: "test", Rebalance: kafka.RebalanceEager}
}

// TestRebalanceModesOfARollingUpdate: the two-step upgrade from a build
// that offered sticky and range (sessions 19 and 20) to cooperative
// rebalancing, and back. Members in eager mode share the group with the
// previous build's (on sticky); a cooperative member is refused by a
// group that still has one of those (INCONSISTENT_GROUP_PROTOCOL),
// which changes nothing for the members in it; once none is left,
// cooperative members join the eager ones (on cooperative-sticky), and
// among cooperative members alone a member joining takes its share
// without any other partition being revoked. At no time do two members
// consume a partition at once.
func TestRebalanceModesOfARollingUpdate(t *testing.T) {
	const topic, group = "events", "g"
	cfg, eager := rollingUpdate(t, topic) // cfg: cooperative, the default
	previous := cfg.ConsumerConfig()
	previous.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky(), sarama.NewBalanceStrategyRange()}
	owners := newOwners()

	// Step 1: the previous build's members are replaced by eager ones.
	p := joinGroup(t, cfg, previous, group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{p: 6})
	e1 := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{p: 3, e1: 3})

	// Step 2 too early: a cooperative member is refused, and the group
	// goes on as it was.
	gen, pHad, e1Had := p.generation(), p.claims(), e1.claims()
	cg, err := sarama.NewConsumerGroup(cfg.BrokerList(), group, cfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	refused := &member{}
	err = cg.Consume(context.Background(), []string{topic}, refused)
	cg.Close()
	if !errors.Is(err, sarama.ErrInconsistentGroupProtocol) {
		t.Fatalf("a cooperative member joining a group with a member offering sticky and range: Consume = %v, want %v", err, sarama.ErrInconsistentGroupProtocol)
	}
	waitForClaims(t, cfg, group, "sticky", map[*member]int{p: 3, e1: 3})
	if p.generation() != gen || !slices.Equal(p.claims(), pHad) || !slices.Equal(e1.claims(), e1Had) {
		t.Errorf("after the cooperative member was refused: generation %d, claims %v and %v; want %d, %v and %v, unchanged",
			p.generation(), p.claims(), e1.claims(), gen, pHad, e1Had)
	}

	p.leave()
	waitForClaims(t, cfg, group, "sticky", map[*member]int{e1: 6})
	e2 := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{e1: 3, e2: 3})

	// Step 2: eager members are replaced by cooperative ones.
	c1 := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{e1: 2, e2: 2, c1: 2})
	e1.leave()
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{e2: 3, c1: 3})
	c2 := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{e2: 2, c1: 2, c2: 2})
	e2.leave()
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{c1: 3, c2: 3})

	// Cooperative alone: a third member takes one partition of each,
	// and no other partition is revoked.
	c1Had, c2Had := c1.claims(), c2.claims()
	c1Revoked, c2Revoked := c1.revoked(), c2.revoked()
	c3 := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{c1: 2, c2: 2, c3: 2})
	keptAll(t, "c1", c1Had, c1.claims())
	keptAll(t, "c2", c2Had, c2.claims())
	if got := c1.revoked() - c1Revoked + c2.revoked() - c2Revoked; got != 2 {
		t.Errorf("%d partitions revoked as a third member joined, want the 2 it took", got)
	}

	// And back (a rollback): an eager member joins the cooperative ones,
	// and once they have left the previous build's members may join.
	e3 := joinGroup(t, cfg, eager.ConsumerConfig(), group, topic, owners)
	waitForClaims(t, cfg, group, "cooperative-sticky", map[*member]int{c1: -1, c2: -1, c3: -1, e3: -1})
	c1.leave()
	c2.leave()
	c3.leave()
	waitForClaims(t, cfg, group, "sticky", map[*member]int{e3: 6})
	p2 := joinGroup(t, cfg, previous, group, topic, owners)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{e3: 3, p2: 3})
	owners.check(t)
}

// keptAll fails t unless every partition member name has was among those
// it had.
func keptAll(t *testing.T, name string, had, have []int32) {
	t.Helper()
	for _, p := range have {
		if !slices.Contains(had, p) {
			t.Errorf("member %s claims %v after another joined, having had %v: partition %d moved to it", name, have, had, p)
		}
	}
}

// owners records which member consumes each partition, and whether two
// ever did at once.
type owners struct {
	mu      sync.Mutex
	by      map[int32]*member
	doubled []string
}

func newOwners() *owners { return &owners{by: map[int32]*member{}} }

func (o *owners) claim(m *member, p int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if other := o.by[p]; other != nil && other != m {
		o.doubled = append(o.doubled, fmt.Sprintf("partition %d claimed while another member consumed it", p))
	}
	o.by[p] = m
}

func (o *owners) release(m *member, p int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by[p] == m {
		delete(o.by, p)
	}
}

func (o *owners) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range o.doubled {
		t.Error(d)
	}
}

// member is a consumer group member that records the partitions it
// consumes (a ConsumeClaim running), under the eager protocol and the
// cooperative alike.
type member struct {
	owners   *owners
	mu       sync.Mutex
	sess     sarama.ConsumerGroupSession // the latest
	parts    map[int32]bool
	nRevoked int // claims that ended while their session went on
	cancel   context.CancelFunc
	done     chan struct{}
}

// joinGroup runs a member of group with sc until the test ends or leave.
func joinGroup(t *testing.T, cfg *kafka.Config, sc *sarama.Config, group, topic string, o *owners) *member {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(cfg.BrokerList(), group, sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{owners: o, parts: map[int32]bool{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer cg.Close()
		for ctx.Err() == nil {
			_ = cg.Consume(ctx, []string{topic}, m)
		}
	}()
	t.Cleanup(m.leave)
	return m
}

func (m *member) leave() { m.cancel(); <-m.done }

// claims returns the partitions m consumes, in order.
func (m *member) claims() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.parts))
}

// generation returns the generation of m's session, -1 without one.
func (m *member) generation() int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return -1
	}
	return m.sess.GenerationID()
}

// revoked returns how many of m's claims have been revoked while their
// session went on (the cooperative protocol's revocations).
func (m *member) revoked() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nRevoked
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sess = s
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sess = nil
	return nil
}

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	m.owners.claim(m, p)
	m.mu.Lock()
	m.parts[p] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.parts, p)
		if s.Context().Err() == nil {
			m.nRevoked++
		}
		m.mu.Unlock()
		m.owners.release(m, p)
	}()
	for {
		select {
		case _, ok := <-claim.Messages():
			if !ok {
				return nil // revoked
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

// waitForClaims waits until the group is stable on protocol with each of
// want's members holding that many partitions (-1: any), all in one
// generation, and all six of the test's topic claimed.
func waitForClaims(t *testing.T, cfg *kafka.Config, group, protocol string, want map[*member]int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(cfg.BrokerList(), cfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	eventually.NoError(t, 30*time.Second, fmt.Sprintf("the group on %s with claims %v", protocol, slices.Collect(maps.Values(want))), func() error {
		gen, total := int32(-1), 0
		for m, n := range want {
			g, got := m.generation(), len(m.claims())
			if (n >= 0 && got != n) || g < 0 || (gen >= 0 && g != gen) {
				return fmt.Errorf("a member holds %d partitions in generation %d, want %d in %d", got, g, n, gen)
			}
			gen, total = g, total+got
		}
		if total != 6 {
			return fmt.Errorf("%d partitions claimed, want 6", total)
		}
		desc, err := admin.DescribeConsumerGroups([]string{group})
		if err != nil || len(desc) != 1 {
			return fmt.Errorf("describe group: %v", err)
		}
		if d := desc[0]; d.State != "Stable" || d.Protocol != protocol || len(d.Members) != len(want) {
			return fmt.Errorf("group %s on %q with %d members, want Stable on %q with %d", d.State, d.Protocol, len(d.Members), protocol, len(want))
		}
		return nil
	})
}

// TestRebalanceModes: the strategies each mode offers, in order, and an
// unknown mode refused with the flag and the values it takes.
func TestRebalanceModes(t *testing.T) {
	for _, c := range []struct {
		mode    kafka.RebalanceMode
		want    []string
		invalid bool
	}{
		{mode: "", want: []string{"cooperative-sticky"}},
		{mode: kafka.RebalanceCooperative, want: []string{"cooperative-sticky"}},
		{mode: kafka.RebalanceEager, want: []string{"sticky", "cooperative-sticky", "range"}},
		{mode: "incremental", invalid: true},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			cfg := &kafka.Config{Brokers: "127.0.0.1:9092", Rebalance: c.mode}
			err := cfg.Validate()
			if c.invalid {
				if err == nil || !strings.Contains(err.Error(), "-kafka-rebalance") || !strings.Contains(err.Error(), `"cooperative" or "eager"`) {
					t.Fatalf("Validate = %v, want an error naming -kafka-rebalance and its values", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range cfg.ConsumerConfig().Consumer.Group.Rebalance.GroupStrategies {
				got = append(got, s.Name())
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("strategies %v, want %v", got, c.want)
			}
		})
	}
}
