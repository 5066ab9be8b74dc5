package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
)

// TestStrategiesOfARollingUpdate: a member of the previous build, which
// offered the range strategy alone, and members of this one, which offer
// sticky then range, share a group (the new members are not refused) on
// range; once the old member has left, the group moves to sticky, under
// which a member joining leaves the others a part of what they had.
func TestStrategiesOfARollingUpdate(t *testing.T) {
	cl := kafkatest.Start(t)
	cfg := &kafka.Config{Brokers: cl.Brokers()[0], ClientID: "test"}
	const topic, group = "events", "g"
	if err := kafka.EnsureTopics(context.Background(), cfg, kafka.Topic{Name: topic, Partitions: 6, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	rangeOnly := cfg.ConsumerConfig()
	rangeOnly.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}

	old := joinGroup(t, cfg, rangeOnly, group, topic)
	waitForClaims(t, cfg, group, "range", map[*member]int{old: 6})
	a := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic)
	waitForClaims(t, cfg, group, "range", map[*member]int{old: 3, a: 3})
	old.leave()
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 6})
	b := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 3, b: 3})
	aHad, bHad := a.claims(), b.claims()
	c := joinGroup(t, cfg, cfg.ConsumerConfig(), group, topic)
	waitForClaims(t, cfg, group, "sticky", map[*member]int{a: 2, b: 2, c: 2})
	for _, m := range []struct {
		name      string
		had, have []int32
	}{{"a", aHad, a.claims()}, {"b", bHad, b.claims()}} {
		for _, p := range m.have {
			if !slices.Contains(m.had, p) {
				t.Errorf("member %s claims %v after a third joined, having had %v: partition %d moved to it", m.name, m.have, m.had, p)
			}
		}
	}
}

// member is a consumer group member that records the partitions of its
// latest session.
type member struct {
	mu     sync.Mutex
	gen    int32
	parts  []int32
	cancel context.CancelFunc
	done   chan struct{}
}

// joinGroup runs a member of group with sc until the test ends or leave.
func joinGroup(t *testing.T, cfg *kafka.Config, sc *sarama.Config, group, topic string) *member {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(cfg.BrokerList(), group, sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{cancel: cancel, done: make(chan struct{})}
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

func (m *member) claims() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parts
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen = s.GenerationID()
	for _, parts := range s.Claims() {
		m.parts = slices.Sorted(slices.Values(parts))
	}
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parts = nil
	return nil
}

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, _ sarama.ConsumerGroupClaim) error {
	<-s.Context().Done()
	return nil
}

// waitForClaims waits until the group is stable on protocol with each of
// want's members holding that many partitions, in one generation.
func waitForClaims(t *testing.T, cfg *kafka.Config, group, protocol string, want map[*member]int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(cfg.BrokerList(), cfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	eventually.NoError(t, 30*time.Second, fmt.Sprintf("the group on %s with claims %v", protocol, slices.Collect(maps.Values(want))), func() error {
		gen := int32(-1)
		for m, n := range want {
			m.mu.Lock()
			g, got := m.gen, len(m.parts)
			m.mu.Unlock()
			if got != n || (gen >= 0 && g != gen) {
				return fmt.Errorf("a member holds %d partitions in generation %d, want %d in %d", got, g, n, gen)
			}
			gen = g
		}
		desc, err := admin.DescribeConsumerGroups([]string{group})
		if err != nil || len(desc) != 1 {
			return fmt.Errorf("describe group: %v", err)
		}
		if d := desc[0]; d.State != "Stable" || d.Protocol != protocol {
			return fmt.Errorf("group %s on %q, want Stable on %q", d.State, d.Protocol, protocol)
		}
		return nil
	})
}
