// Package processing wires the processing service: the Kafka consumer
// group that runs the engine on the hits topic's partitions, the config
// client that serves each property's rules, and the reprocessing admin API.
package processing

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/acme/analytics/pkg/retry"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/processing-svc/internal/consumer"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/reprocess"
)

// Config is the complete configuration of the processing binary.
type Config struct {
	Service        service.Config
	Kafka          kafka.Config
	Cassandra      cassandra.Config
	ConfigSvc      configclient.Config
	IdentitySecret string
	Group          string
	FlushInterval  time.Duration
	StateQuiet     time.Duration
	StateMaxDelay  time.Duration
	StateEncoding  int
	BatchSize      int
	EnsureTopics   bool
	Partitions     int
	Replication    int
	MaxReprocess   int
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "processing"
	c.Service.RegisterFlags(fs, "127.0.0.1:8083")
	c.Kafka.RegisterFlags(fs)
	c.Kafka.RegisterConsumerFlags(fs)
	c.Cassandra.RegisterFlags(fs)
	c.ConfigSvc.RegisterFlags(fs)
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "shared secret of gateway-signed identity headers and internal calls (at least 16 bytes; required)")
	fs.StringVar(&c.Group, "consumer-group", "processing", "Kafka consumer group of the processing instances")
	fs.DurationVar(&c.FlushInterval, "flush-interval", consumer.DefaultFlushInterval, "how often derived rows are written and offsets committed: report freshness, traded against Cassandra writes (docs/benchmarks.md, \"Flush interval\")")
	fs.DurationVar(&c.StateQuiet, "state-quiet", engine.DefaultStatePolicy.Quiet, "write a changed visitor (its sessions, pageviews, events, users row and state) once it has had no hit for this long; rollups are written at every flush regardless (docs/processing.md: Visitors written when due)")
	fs.DurationVar(&c.StateMaxDelay, "state-max-delay", engine.DefaultStatePolicy.MaxDelay, "write a changed visitor at the latest this long after its first unwritten hit; bounds what a crashed processor re-reads (0: every changed visitor at every flush)")
	fs.IntVar(&c.StateEncoding, "state-encoding", 3, "visitor state encoding written: 3 counts users' sessions per day (so that reprocessing re-derives them); 2 writes what builds before 2026-12-07 read, for the first step of upgrading from them (docs/operations.md)")
	fs.IntVar(&c.BatchSize, "batch-size", 2000, "hits applied at once per partition")
	fs.BoolVar(&c.EnsureTopics, "kafka-ensure-topics", true, "create the hits and dead-letter topics at start if missing")
	fs.IntVar(&c.Partitions, "kafka-partitions", 12, "partitions of the hits topic when this instance creates it")
	fs.IntVar(&c.Replication, "kafka-replication-factor", 1, "replication factor of the topics when this instance creates them (production: 3, or create them with deploy/'s topics job)")
	fs.IntVar(&c.MaxReprocess, "reprocess-max-running", 2, "reprocessing jobs this instance runs at once (each holds its range's users in memory, about 100 bytes each); more are refused with 503 instance_busy")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	for _, v := range []func() error{c.Service.Validate, c.Kafka.Validate, c.Cassandra.Validate} {
		if err := v(); err != nil {
			return err
		}
	}
	switch {
	case len(c.IdentitySecret) < 16:
		return errors.New("-identity-secret must be at least 16 bytes")
	case c.FlushInterval < 10*time.Millisecond:
		return errors.New("-flush-interval must be at least 10ms")
	case c.BatchSize < 1:
		return errors.New("-batch-size must be at least 1")
	case c.StateQuiet < 0 || c.StateMaxDelay < 0:
		return errors.New("-state-quiet and -state-max-delay must not be negative")
	case c.StateEncoding != 2 && c.StateEncoding != 3:
		return fmt.Errorf("-state-encoding must be 2 or 3, not %d", c.StateEncoding)
	case c.Partitions < 1:
		return errors.New("-kafka-partitions must be at least 1")
	case c.Replication < 1:
		return errors.New("-kafka-replication-factor must be at least 1")
	case c.MaxReprocess < 1:
		// 0 ran the default, 2, and a negative bound refused every job.
		return fmt.Errorf("-reprocess-max-running must be at least 1, not %d", c.MaxReprocess)
	case c.ConfigSvc.BaseURL == "" && !c.Service.Discovery.Enabled():
		return errors.New("give -config-svc-url, or -consul-addr to find config-svc in Consul")
	}
	return nil
}

// handOver bounds a partition's final flush: within the group's rebalance
// timeout (a revoked partition's), and within -shutdown-timeout (at
// shutdown, the group is left once it has passed), each less a margin for
// the commit and the writes in flight.
func handOver(shutdown time.Duration) time.Duration {
	return max(min(shutdown-3*time.Second, kafka.RebalanceTimeout-15*time.Second), time.Second)
}

// Run serves until ctx is done, logging to w. It waits for Cassandra and
// Kafka at start, serving /healthz meanwhile (service.Setup).
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	svc.Setup(func(ctx context.Context) error { return setUp(ctx, svc, cfg) })
	return svc.Run(ctx)
}

// setUp connects to Cassandra and Kafka (waiting for each), and adds the
// consumer, the config client and the reprocessing API to svc.
func setUp(ctx context.Context, svc *service.Service, cfg Config) error {
	log := svc.Log
	cfg.Kafka.ClientID = "processing"

	session, err := migrate.Open(ctx, &cfg.Cassandra, log)
	if err != nil {
		return err
	}
	svc.OnClose(session.Close)
	svc.Health.Add("cassandra", func(context.Context) error { return cassandra.Ping(session) })

	// Kafka is waited for as Cassandra is.
	kafkaLog := log.With(slog.String("kafka_brokers", cfg.Kafka.Brokers))
	if cfg.EnsureTopics {
		err := retry.Until(ctx, retry.Default, kafkaLog, "create kafka topics", func(ctx context.Context) error {
			return kafka.EnsureTopics(ctx, &cfg.Kafka,
				kafka.Topic{Name: hit.TopicHits, Partitions: int32(cfg.Partitions), ReplicationFactor: int16(cfg.Replication)},
				kafka.Topic{Name: hit.TopicDeadLetter, Partitions: 1, ReplicationFactor: int16(cfg.Replication)})
		})
		if err != nil {
			return fmt.Errorf("create kafka topics at %s: %w", cfg.Kafka.Brokers, err)
		}
	}

	cc := cfg.ConfigSvc
	cc.Caller, cc.IdentitySecret, cc.Log, cc.Registerer = "processing", []byte(cfg.IdentitySecret), log, svc.Registry
	if err := cc.Locate(&cfg.Service.Discovery); err != nil {
		return err
	}
	configs, err := configclient.New(cc)
	if err != nil {
		return err
	}
	svc.Go(func(ctx context.Context) error { return configs.Run(ctx) })
	props := &engine.ConfigProperties{Client: configs}

	producer, err := kafka.Connect(ctx, retry.Default, kafkaLog, "connect the dead-letter producer", func() (sarama.SyncProducer, error) {
		return sarama.NewSyncProducer(cfg.Kafka.BrokerList(), cfg.Kafka.ProducerConfig())
	}, sarama.SyncProducer.Close)
	if err != nil {
		return fmt.Errorf("connect dead-letter producer to kafka at %s: %w", cfg.Kafka.Brokers, err)
	}
	dead := deadletter.New(producer, svc.Registry)
	svc.OnClose(func() {
		if err := dead.Close(); err != nil {
			kafkaLog.Warn("close the dead-letter producer", slog.Any("error", err))
		}
	})

	group, err := kafka.Connect(ctx, retry.Default, kafkaLog, "join the consumer group", func() (sarama.ConsumerGroup, error) {
		return sarama.NewConsumerGroup(cfg.Kafka.BrokerList(), cfg.Group, cfg.Kafka.ConsumerConfig())
	}, sarama.ConsumerGroup.Close)
	if err != nil {
		return fmt.Errorf("join consumer group %s at %s: %w", cfg.Group, cfg.Kafka.Brokers, err)
	}
	svc.OnClose(func() { group.Close() })
	c := consumer.New(consumer.Config{
		Group: group, Topic: hit.TopicHits, Session: session, Properties: props, DeadLetter: dead.Publish,
		FlushInterval: cfg.FlushInterval, State: engine.StatePolicy{Quiet: cfg.StateQuiet, MaxDelay: cfg.StateMaxDelay, Encoding: cfg.StateEncoding}, BatchSize: cfg.BatchSize,
		HandOver: handOver(cfg.Service.HTTP.ShutdownTimeout), Log: log, Metrics: consumer.NewMetrics(svc.Registry),
	})
	svc.Go(c.Run)

	// Jobs look their property up afresh: "current" rules are those in
	// effect when a job was created, a change the feed may not have
	// announced yet among them.
	runner := &reprocess.Runner{Session: session, Properties: &engine.ConfigProperties{Client: configs, Fresh: true}, Log: log, MaxRunning: cfg.MaxReprocess}
	secret := []byte(cfg.IdentitySecret)
	internal := func(h http.Handler) http.Handler {
		return tenant.Require(secret)(tenant.RequireRole(tenant.RoleService)(h))
	}
	runner.Register(svc.Mux, internal, context.WithoutCancel(ctx))
	return nil
}
