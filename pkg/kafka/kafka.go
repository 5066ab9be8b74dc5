// Package kafka holds the sarama configuration every service uses, so that
// the durability guarantees of the pipeline are decided in one place:
//
//   - producers wait for all in-sync replicas and are idempotent, so a hit is
//     acknowledged only once the broker has it, and a retried send is not
//     written twice;
//   - consumer groups never auto-commit: a consumer marks and commits an
//     offset only after everything derived from the message is stored;
//   - consumer groups rebalance cooperatively (RebalanceCooperative): a
//     member joining or leaving revokes only the partitions that move, so
//     a consumer must let a partition go while its others go on
//     (processing's consumer does), and a group still holding members of a
//     build before that goes through RebalanceEager first.
package kafka

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/retry"
)

// Version is the Kafka protocol version the clients speak. 2.8 is the lowest
// that has everything we rely on (idempotence, incremental rebalancing,
// KRaft-era metadata) and is served by every broker we run.
var Version = sarama.V2_8_0_0

// Config is the connection configuration shared by producers and consumers.
type Config struct {
	Brokers  string // comma-separated host:port list
	ClientID string
	// Rebalance is how consumer groups rebalance (ConsumerConfig); empty
	// is RebalanceCooperative. RegisterConsumerFlags sets it.
	Rebalance RebalanceMode
}

// RebalanceMode is the rebalance protocol a consumer group member takes
// part in, and so which members it can share its group with.
type RebalanceMode string

const (
	// RebalanceCooperative offers the cooperative-sticky strategy alone,
	// so the member rebalances cooperatively (KIP-429): a rebalance
	// revokes only the partitions that move to another member, in a
	// first round, and gives them to their new owners in a second; the
	// other partitions keep being consumed throughout. The group must
	// have no member that does not offer cooperative-sticky (a build
	// before 2026-12-06 offers sticky and range): Kafka refuses such a
	// join with INCONSISTENT_GROUP_PROTOCOL (sarama.ErrInconsistentGroupProtocol)
	// as long as one is in the group.
	RebalanceCooperative RebalanceMode = "cooperative"
	// RebalanceEager offers sticky, cooperative-sticky and range, so the
	// member rebalances eagerly (every partition of every member revoked
	// at each rebalance, as before 2026-12-06) and can share its group
	// both with members of the builds before, which offer sticky and
	// range, and with RebalanceCooperative members: the first step of
	// the two-step upgrade to cooperative rebalancing, and the way back.
	RebalanceEager RebalanceMode = "eager"
)

// String implements flag.Value.
func (m *RebalanceMode) String() string { return string(*m) }

// Set implements flag.Value: it takes "cooperative" or "eager".
func (m *RebalanceMode) Set(v string) error {
	switch RebalanceMode(v) {
	case RebalanceCooperative, RebalanceEager:
		*m = RebalanceMode(v)
		return nil
	}
	return fmt.Errorf("want %q or %q", RebalanceCooperative, RebalanceEager)
}

// RegisterConsumerFlags registers the flags of a consumer group member
// on fs (-kafka-rebalance).
func (c *Config) RegisterConsumerFlags(fs *flag.FlagSet) {
	c.Rebalance = RebalanceCooperative
	fs.Var(&c.Rebalance, "kafka-rebalance",
		"how the consumer group rebalances (`mode`): cooperative moves only the partitions that change hands; eager revokes every partition at each rebalance, and is the step between a build before 2026-12-06 and cooperative, both ways (docs/operations.md, \"Cooperative rebalancing\")")
}

// RegisterFlags registers the Kafka flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Brokers, "kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers (host:port)")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if len(c.BrokerList()) == 0 {
		return errors.New("-kafka-brokers is empty; give at least one host:port")
	}
	for _, b := range c.BrokerList() {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("-kafka-brokers entry %q is not host:port", b)
		}
	}
	if c.Rebalance != "" {
		if err := new(RebalanceMode).Set(string(c.Rebalance)); err != nil {
			return fmt.Errorf("-kafka-rebalance is %q; %w", c.Rebalance, err)
		}
	}
	return nil
}

// BrokerList returns the brokers as a slice.
func (c *Config) BrokerList() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func (c *Config) base() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = Version
	if c.ClientID != "" {
		sc.ClientID = c.ClientID
	}
	sc.Metadata.Retry.Max = 5
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	sc.Net.DialTimeout = 5 * time.Second
	return sc
}

// ProducerConfig returns a durable, idempotent producer configuration:
// acknowledgement from all in-sync replicas, idempotence (which requires at
// most one in-flight request per broker), and successes reported back so
// callers can answer only after the broker has the message. Messages are
// hashed to partitions by key.
func (c *Config) ProducerConfig() *sarama.Config {
	sc := c.base()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Compression = sarama.CompressionSnappy
	// Batching: a hit is small, so flush on a short timer rather than per
	// message; throughput comes from many hits sharing one round trip.
	sc.Producer.Flush.Frequency = 2 * time.Millisecond
	sc.Producer.Flush.Messages = 500
	sc.Producer.Flush.MaxMessages = 5000
	return sc
}

// RebalanceTimeout is how long the group waits, in a rebalance, for every
// member to give up its partitions (rejoin) before dropping the ones that
// have not; a member still writing after that may race the partitions' new
// owners, so a consumer's hand-over must finish well within it. Under the
// cooperative protocol sarama also waits this long for a revoked
// partition's ConsumeClaim to return, and then ends the member's whole
// session. (Sarama's default, set here so that the consumers can rely on
// it.)
const RebalanceTimeout = 60 * time.Second

// ConsumerConfig returns a consumer group configuration with auto-commit
// off: the consumer commits explicitly after its writes succeed. A new group
// starts from the oldest retained offset so that nothing published before
// the group first joined is skipped.
//
// The group's strategies follow c.Rebalance (Validate refuses any other
// value than those below; an unknown one here is taken as cooperative).
// Kafka gives a group a strategy that every member offers (the members
// vote among those, each for the first it lists), and sarama rebalances
// cooperatively only when every strategy a member offers is cooperative
// (rebalance_protocol.go, selectRebalanceProtocol), so:
//
//   - RebalanceCooperative (the default) offers cooperative-sticky alone,
//     and rebalances cooperatively: a member joining or leaving revokes
//     only the partitions that move. A consumer's session and Setup then
//     last across rebalances, its ConsumeClaim starts for a partition
//     added mid-session, a revoked one sees its Messages channel closed
//     and must return within RebalanceTimeout, and the others never stop
//     (processing-svc/internal/consumer says what processing does).
//   - RebalanceEager offers sticky, cooperative-sticky and range, and
//     rebalances eagerly: every partition of every member is revoked
//     before the group assigns them again. With members of a build
//     before 2026-12-06 (sticky, range; or one older still, range alone)
//     the group stays on sticky (or range); with cooperative members it
//     uses cooperative-sticky, their partitions that stay going on while
//     the eager members hand over everything; among eager members alone,
//     sticky. Sticky comes before cooperative-sticky because sarama's
//     cooperative-sticky keeps a member's partitions by those it reports
//     owning when it joins, and an eager member, having given them all
//     up, reports none: under the eager protocol it would move
//     partitions for nothing, where sticky remembers the last assignment.
//
// A group of members offering nothing in common refuses the member that
// joins last (INCONSISTENT_GROUP_PROTOCOL): a cooperative member and one
// of a build before 2026-12-06. Hence the two-step upgrade of Kafka's
// KIP-429: roll out with RebalanceEager, then roll again with
// RebalanceCooperative; and back the same way (TestStrategiesOfARollingUpdate,
// TestRebalanceModesOfARollingUpdate).
//
// Both sticky strategies leave a member the partitions it had wherever
// the balance allows, so that a consumer keeping a partition's state in
// memory (processing) keeps it across a rebalance.
func (c *Config) ConsumerConfig() *sarama.Config {
	sc := c.base()
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.Rebalance.GroupStrategies = c.strategies()
	sc.Consumer.Group.Rebalance.Timeout = RebalanceTimeout
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	// A member learns of a rebalance at its next heartbeat. Under the
	// cooperative protocol the member that revoked partitions joins
	// again at once and waits for the others to, and sarama sends that
	// JoinGroup on the connection it fetches from the coordinator's
	// broker with, whose answers Kafka sends in order: the partitions
	// that broker leads pause until the last member has heard, up to a
	// heartbeat interval (3 s, sarama's default, paused the partitions
	// that stay for 2.8 s where 1 s pauses them 0.8 s: BenchmarkRebalance).
	sc.Consumer.Group.Heartbeat.Interval = time.Second
	sc.Consumer.Fetch.Default = 1 << 20
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	return sc
}

// strategies returns the balance strategies of c.Rebalance, new ones
// (cooperative-sticky keeps state, and must not be shared between groups).
func (c *Config) strategies() []sarama.BalanceStrategy {
	if c.Rebalance == RebalanceEager {
		return []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky(), sarama.NewBalanceStrategyCooperativeSticky(), sarama.NewBalanceStrategyRange()}
	}
	return []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
}

// Topic describes a topic the services expect to exist.
type Topic struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// Probe checks, without sending a message, that the brokers serve topic:
// its metadata is fetched afresh and every partition has a leader.
func Probe(client sarama.Client, topic string) error {
	if err := client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("kafka metadata of %s: %w", topic, err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("kafka partitions of %s: %w", topic, err)
	}
	for _, part := range parts {
		if _, err := client.Leader(topic, part); err != nil {
			return fmt.Errorf("kafka leader of %s/%d: %w", topic, part, err)
		}
	}
	return nil
}

// Connect makes a client with open, one of sarama's constructors
// (NewSyncProducer, NewConsumerGroup, ...), waiting for the brokers: it
// calls open until it succeeds, with retry.Until's backoff b and logging
// ("<what> failed; retrying"), and returns what retry.Until returns. The
// constructors take no context, and with brokers that drop packets an
// attempt takes about 30 s, longer than a shutdown may last: an attempt
// still running when ctx ends is abandoned (retry.Abandonable), so that
// Connect returns at once, and what it makes later is closed with release
// (its error dropped).
func Connect[T any](ctx context.Context, b retry.Backoff, log *slog.Logger, what string, open func() (T, error), release func(T) error) (T, error) {
	var v T
	err := retry.Until(ctx, b, log, what, func(ctx context.Context) (err error) {
		v, err = retry.Abandonable(ctx, open, func(v T) { release(v) })
		return err
	})
	return v, err
}

// EnsureTopics creates the topics that do not exist yet. Existing topics are
// left as they are (partition counts are an operator's decision).
//
// sarama's calls take no context, and with brokers that drop packets one
// takes about 30 s, so the work runs apart (retry.Abandonable): when ctx
// ends first, EnsureTopics returns at once with an error wrapping
// ctx.Err(), and the abandoned work closes its admin client when done.
//
// A creation the brokers refuse for a reason that waiting cannot change (a
// replication factor above the brokers up, an invalid config, partition
// count or name, a policy, no authorization) is marked retry.Permanent,
// so that retry.Until returns it at once; other errors (brokers that
// cannot be reached, no controller or leader yet) are not.
func EnsureTopics(ctx context.Context, c *Config, topics ...Topic) error {
	_, err := retry.Abandonable(ctx, func() (struct{}, error) {
		return struct{}{}, ensureTopics(ctx, c, topics)
	}, nil)
	return err
}

func ensureTopics(ctx context.Context, c *Config, topics []Topic) error {
	admin, err := sarama.NewClusterAdmin(c.BrokerList(), c.base())
	if err != nil {
		return fmt.Errorf("connect to kafka at %s: %w", c.Brokers, err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("list kafka topics: %w", err)
	}
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := existing[t.Name]; ok {
			continue
		}
		detail := &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: t.ReplicationFactor}
		if len(t.Configs) > 0 {
			detail.ConfigEntries = map[string]*string{}
			for k, v := range t.Configs {
				detail.ConfigEntries[k] = &v
			}
		}
		err := admin.CreateTopic(t.Name, detail, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			err = fmt.Errorf("create kafka topic %s: %w", t.Name, err)
			if errors.Is(err, sarama.ErrInvalidReplicationFactor) {
				err = fmt.Errorf("%w (replication factor %d: more than the brokers that are up; "+
					"lower the replication factor or start the missing brokers)", err, t.ReplicationFactor)
			}
			if refusedForGood(err) {
				return retry.Permanent(err)
			}
			return err
		}
	}
	return nil
}

// refusedForGood reports whether the brokers refused a topic's creation
// for a reason that asking again cannot change: the request itself is
// wrong (partitions, replication factor, configs, name, a broker policy)
// or not allowed. Not controller, a leader not available, a broker that
// cannot be reached, and any other error, may heal.
//
// A replication factor above the number of brokers counts: Kafka counts
// the brokers that are up, so during a partial outage the process exits
// and its restarts (the pod's back-off) try again, with the reason in the
// log, rather than waiting without saying why.
func refusedForGood(err error) bool {
	for _, kerr := range []sarama.KError{
		sarama.ErrInvalidReplicationFactor,
		sarama.ErrInvalidPartitions,
		sarama.ErrInvalidReplicaAssignment,
		sarama.ErrInvalidConfig,
		sarama.ErrInvalidTopic,
		sarama.ErrPolicyViolation,
		sarama.ErrTopicAuthorizationFailed,
		sarama.ErrClusterAuthorizationFailed,
	} {
		if errors.Is(err, kerr) {
			return true
		}
	}
	return false
}
