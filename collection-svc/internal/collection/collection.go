// Package collection wires the collection service: it validates and
// enriches hits and queues them in Kafka. This file is its configuration
// and its lifecycle; the endpoints are package collect, the producer
// package queue.
package collection

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
	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/geoip"
	"github.com/acme/analytics/collection-svc/internal/queue"
	"github.com/acme/analytics/collection-svc/internal/tracker"
	"github.com/acme/analytics/pkg/clientaddr"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/deadletter"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/retry"
	"github.com/acme/analytics/pkg/service"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the complete configuration of the collection binary.
type Config struct {
	Service      service.Config
	Kafka        kafka.Config
	ConfigClient configclient.Config

	EnsureTopics      bool
	Partitions        int
	ReplicationFactor int

	IdentitySecret string
	TrustedProxies string
	GeoIPDB        string

	ProduceTimeout   time.Duration
	MaxInFlight      int
	DeadLetterBuffer int

	// now is the clock of the endpoints (tests set it); nil is time.Now.
	now func() time.Time
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "collection"
	c.Service.RegisterFlags(fs, "127.0.0.1:8081")
	c.Kafka.RegisterFlags(fs)
	c.ConfigClient.RegisterFlags(fs)
	fs.BoolVar(&c.EnsureTopics, "kafka-ensure-topics", true, "create the hits and dead-letter topics at start when they do not exist")
	fs.IntVar(&c.Partitions, "kafka-partitions", 12, "partitions of topics created by -kafka-ensure-topics")
	fs.IntVar(&c.ReplicationFactor, "kafka-replication-factor", 1, "replication factor of topics created by -kafka-ensure-topics (3 in production)")
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "secret shared with the gateway and the services that signs identity headers; signs the calls to config-svc (at least 16 bytes; required)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies (the gateway, load balancers) whose X-Forwarded-For is believed, e.g. 127.0.0.1/32,10.0.0.0/8; empty: the connection's peer is the client")
	fs.StringVar(&c.GeoIPDB, "geoip-db", "", "MaxMind-format IP-to-country database (make geoip installs a CC0 one under collection-svc/.geoip); empty: no country")
	fs.DurationVar(&c.ProduceTimeout, "produce-timeout", 3*time.Second, "longest a request waits for the broker's acknowledgement before answering 503")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 50000, "hits handed to the producer and not yet acknowledged, beyond which requests are answered 503 at once")
	fs.IntVar(&c.DeadLetterBuffer, "dead-letter-buffer", 10000, "rejected hits waiting for the dead-letter topic; beyond it they are counted and dropped")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if err := c.Service.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if len(c.IdentitySecret) < 16 {
		return errors.New("-identity-secret must be at least 16 bytes (the same value as the gateway's)")
	}
	if c.ConfigClient.BaseURL == "" && !c.Service.Discovery.Enabled() {
		return errors.New("give -config-svc-url or a Consul agent (-consul-addr) to find config-svc")
	}
	if c.ConfigClient.BaseURL != "" {
		// Only the URL is checked here; the rest is set by Run.
		cc := c.ConfigClient
		cc.Caller, cc.IdentitySecret = "collection", []byte(c.IdentitySecret)
		if err := cc.Validate(); err != nil {
			return err
		}
	}
	if _, err := clientaddr.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	switch {
	case c.Partitions < 1:
		return errors.New("-kafka-partitions must be at least 1")
	case c.ReplicationFactor < 1:
		return errors.New("-kafka-replication-factor must be at least 1")
	case c.ProduceTimeout <= 0:
		return errors.New("-produce-timeout must be positive")
	case c.MaxInFlight < parseMaxBatch:
		return fmt.Errorf("-max-in-flight must be at least %d (one full batch)", parseMaxBatch)
	case c.DeadLetterBuffer < 1:
		return errors.New("-dead-letter-buffer must be at least 1")
	}
	return nil
}

const parseMaxBatch = 500

// Run serves until ctx is done, logging to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	ccfg := cfg.ConfigClient
	ccfg.Caller = "collection"
	ccfg.IdentitySecret = []byte(cfg.IdentitySecret)
	ccfg.Log = svc.Log
	ccfg.Registerer = svc.Registry
	if err := ccfg.Locate(&cfg.Service.Discovery); err != nil {
		return err
	}
	cc, err := configclient.New(ccfg)
	if err != nil {
		return err
	}
	svc.Go(cc.Run)
	svc.Go(func(ctx context.Context) error {
		prefetchSalts(ctx, cc, time.Now, saltPrefetchInterval, svc.Log)
		return nil
	})

	// Kafka is waited for in start-up, with /healthz answering meanwhile.
	svc.Setup(func(ctx context.Context) error {
		p, err := Assemble(ctx, cfg, Properties(cc), cc, svc.Log, svc.Registry)
		if err != nil {
			return err
		}
		p.Register(svc.Mux)
		svc.Go(p.DeadLetters.Run)
		svc.Health.Add("kafka", func(context.Context) error { return p.Producer.Healthy() })
		svc.OnClose(p.Close)
		return nil
	})
	svc.QuietAccessLog(collect.HitPaths...)
	return svc.Run(ctx)
}

// Parts are the assembled pieces of a running collection service.
type Parts struct {
	Server      *collect.Server
	Producer    *queue.Producer
	DeadLetters *queue.DeadLetters
	Tracker     *tracker.Script
	closers     []func()
}

// Register mounts every endpoint on mux.
func (p *Parts) Register(mux *http.ServeMux) {
	p.Server.Register(mux)
	p.Tracker.Register(mux)
}

// Close flushes and closes the producers and the database. Call it once
// the HTTP server has stopped.
func (p *Parts) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// Assemble connects to Kafka (ensuring the topics when configured),
// opens the GeoIP database and builds the endpoints over props and salts
// (cookieless visitor IDs). The caller runs DeadLetters.Run and calls
// Close at the end.
func Assemble(ctx context.Context, cfg Config, props collect.Properties, salts collect.Salts, log *slog.Logger, reg prometheus.Registerer) (*Parts, error) {
	trusted, err := clientaddr.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	p := &Parts{Tracker: tracker.Load()}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()

	if cfg.EnsureTopics {
		err := retry.Until(ctx, kafkaBackoff, log, "create kafka topics", func(ctx context.Context) error {
			return kafka.EnsureTopics(ctx, &cfg.Kafka,
				kafka.Topic{Name: hit.TopicHits, Partitions: int32(cfg.Partitions), ReplicationFactor: int16(cfg.ReplicationFactor)},
				kafka.Topic{Name: hit.TopicDeadLetter, Partitions: int32(cfg.Partitions), ReplicationFactor: int16(cfg.ReplicationFactor)})
		})
		if err != nil {
			return nil, fmt.Errorf("create kafka topics: %w", err)
		}
	}
	kc := cfg.Kafka
	if kc.ClientID == "" {
		kc.ClientID = "collection"
	}
	type producer struct {
		client sarama.Client
		ap     sarama.AsyncProducer
	}
	prod, err := kafka.Connect(ctx, kafkaBackoff, log, "connect the kafka producer", func() (producer, error) {
		client, err := sarama.NewClient(kc.BrokerList(), kc.ProducerConfig())
		if err != nil {
			return producer{}, err
		}
		ap, err := sarama.NewAsyncProducerFromClient(client)
		if err != nil {
			client.Close()
			return producer{}, err
		}
		return producer{client, ap}, nil
	}, func(p producer) error { p.ap.Close(); return p.client.Close() })
	if err != nil {
		return nil, fmt.Errorf("connect the kafka producer: %w", err)
	}
	client, ap := prod.client, prod.ap
	p.Producer = queue.New(ap, queue.Options{MaxInFlight: cfg.MaxInFlight, Timeout: cfg.ProduceTimeout,
		Probe: func() error { return kafka.Probe(client, hit.TopicHits) }}, log, reg)
	p.closers = append(p.closers, func() { p.Producer.Close(); client.Close() })

	sp, err := kafka.Connect(ctx, kafkaBackoff, log, "connect the dead-letter producer", func() (sarama.SyncProducer, error) {
		return sarama.NewSyncProducer(kc.BrokerList(), kc.ProducerConfig())
	}, sarama.SyncProducer.Close)
	if err != nil {
		return nil, fmt.Errorf("connect the dead-letter producer: %w", err)
	}
	pub := deadletter.New(sp, reg)
	p.closers = append(p.closers, func() {
		// A Run still publishing when the shutdown ran out of time, or
		// a send it gave up on (the broker down), keeps its producer:
		// closing it under a send panics, and the process is about to
		// exit (pub.Close leaves it open then).
		if p.DeadLetters == nil || !p.DeadLetters.Running() {
			_ = pub.Close()
		}
	})
	p.DeadLetters = queue.NewDeadLetters(pub, cfg.DeadLetterBuffer, log, reg)

	var geo *geoip.DB
	if cfg.GeoIPDB != "" {
		db, err := geoip.Open(cfg.GeoIPDB)
		if err != nil {
			return nil, err
		}
		geo = db
		p.closers = append(p.closers, func() { db.Close() })
	} else {
		log.Warn("no -geoip-db: hits get no country (make geoip installs a database)")
	}

	p.Server = collect.New(collect.Config{
		Properties:     props,
		Queue:          p.Producer,
		DeadLetters:    p.DeadLetters,
		GeoIP:          geo,
		Devices:        device.NewParser(50000),
		TrustedProxies: trusted,
		Salts:          salts,
		Log:            log,
		Registry:       reg,
		Now:            cfg.now,
	})
	ok = true
	return p, nil
}

// kafkaBackoff paces the start-up's attempts at Kafka: at start the broker
// may still be coming up.
var kafkaBackoff = retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
