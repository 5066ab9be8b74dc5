package collection

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/collection-svc/internal/geoip/geoiptest"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/configclient/configclienttest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Tracking IDs of the test properties.
const (
	tidShop       = "AT-SHPSHPSHP2" // hostnames shop.example, cookies
	tidCookieless = "AT-CKYCKYCKY2" // cookieless, no hostnames
	tidExcluded   = "AT-EXCXEXCXE2" // excludes 203.0.113.0/24, strict anonymization
	tidUnknown    = "AT-NNNNNNNNNN" // well formed, no property
	tidBrowser    = "AT-BRWSRBRWS2" // hostname localhost, for the browser test
	apiSecret     = "s3cret-api-key"
)

// staticProperties is a fixed set of properties, standing in for
// config-svc (configclient has its own tests against config-svc).
type staticProperties map[string]*collect.Property

func (s staticProperties) ByTrackingID(_ context.Context, tid string) (*collect.Property, error) {
	if p, ok := s[tid]; ok {
		return p, nil
	}
	return nil, collect.ErrUnknownTrackingID
}

func testProperties(t testing.TB) staticProperties {
	compile := func(r rules.Rules, hostnames ...string) *rules.Compiled {
		c, err := rules.Compile(r, 7, hostnames)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	def := rules.Defaults()
	excl := rules.Defaults()
	excl.Exclusions.IP = []string{"203.0.113.0/24"}
	excl.IPAnonymization = rules.AnonymizeStrict
	secret := func(s string) bool { return s == apiSecret }
	return staticProperties{
		tidShop:       {ID: "p-shop", TenantID: "t-1", TrackingID: tidShop, Currency: "EUR", Shards: 4, Rules: compile(def, "shop.example"), VerifySecret: secret},
		tidCookieless: {ID: "p-ckl", TenantID: "t-1", TrackingID: tidCookieless, Shards: 1, Cookieless: true, Rules: compile(def)},
		tidBrowser:    {ID: "p-browser", TenantID: "t-3", TrackingID: tidBrowser, Shards: 2, Rules: compile(def, "localhost")},
		tidExcluded:   {ID: "p-excl", TenantID: "t-2", TrackingID: tidExcluded, Shards: 1, Rules: compile(excl), VerifySecret: secret},
	}
}

// newSaltServer is config-svc's cookieless salts endpoint on the clock now,
// answering only collection's identity (it is tested over its store in
// config-svc); collection reaches it through the real configclient.
func newSaltServer(t testing.TB, now func() time.Time) *configclienttest.SaltServer {
	t.Helper()
	return configclienttest.NewSaltServer(t, configclienttest.SaltServerConfig{Now: now, IdentitySecret: []byte(identitySecret)})
}

const identitySecret = "test-identity-secret-0123456789"

// env is a collection service on loopback in front of an in-process
// broker, with the real configclient for its cookieless salts.
type env struct {
	t       testing.TB
	cluster *kafkatest.Cluster
	url     string
	parts   *Parts
	brokers string
	reg     *prometheus.Registry
}

type envOptions struct {
	produceTimeout time.Duration
	maxInFlight    int // -max-in-flight (50000 when 0)
	handler        func(http.Handler) http.Handler
	broker         []kfake.Opt
	// salts serves the cookieless salts (newSaltServer on now when nil).
	salts *configclienttest.SaltServer
	// now is the service's clock (time.Now when nil).
	now func() time.Time
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	cluster := kafkatest.Start(t, opts.broker...)
	brokers := strings.Join(cluster.Brokers(), ",")
	if opts.produceTimeout == 0 {
		opts.produceTimeout = 5 * time.Second
	}
	if opts.maxInFlight == 0 {
		opts.maxInFlight = 50000
	}
	cfg := Config{
		Kafka:             kafka.Config{Brokers: brokers},
		EnsureTopics:      true,
		Partitions:        3,
		ReplicationFactor: 1,
		IdentitySecret:    identitySecret,
		TrustedProxies:    "127.0.0.1/32",
		GeoIPDB:           geoiptest.Write(t, map[string]string{"203.0.113.0/24": "DE", "198.51.100.0/24": "FR", "2001:db8::/32": "JP"}),
		ProduceTimeout:    opts.produceTimeout,
		MaxInFlight:       opts.maxInFlight,
		DeadLetterBuffer:  10000,
		now:               opts.now,
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.salts == nil {
		opts.salts = newSaltServer(t, opts.now)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	cc, err := configclient.New(configclient.Config{BaseURL: opts.salts.URL, Caller: "collection", IdentitySecret: []byte(identitySecret), RequestTimeout: 2 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	parts, err := Assemble(ctx, cfg, testProperties(t), cc, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	dlDone := make(chan struct{})
	go func() { parts.DeadLetters.Run(ctx); close(dlDone) }()
	mux := http.NewServeMux()
	parts.Register(mux)
	var h http.Handler = mux
	if opts.handler != nil {
		h = opts.handler(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-dlDone
		parts.Close()
	})
	return &env{t: t, cluster: cluster, url: srv.URL, parts: parts, brokers: brokers, reg: reg}
}

// topicReader collects every message of a topic from the start. On the
// hits topic each hit of a multi-hit record is a message of its own (with
// the record's key and offset), so tests match hits, and records keeps
// the records as they came.
type topicReader struct {
	mu      sync.Mutex
	msgs    []*sarama.ConsumerMessage
	records []*sarama.ConsumerMessage
}

func (e *env) read(topic string) *topicReader {
	e.t.Helper()
	kc := kafka.Config{Brokers: e.brokers}
	sc := kc.ConsumerConfig()
	sc.Consumer.Retry.Backoff = 100 * time.Millisecond
	consumer, err := sarama.NewConsumer(kc.BrokerList(), sc)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { consumer.Close() })
	parts, err := consumer.Partitions(topic)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &topicReader{}
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			e.t.Fatal(err)
		}
		go func() {
			for m := range pc.Messages() {
				msgs := []*sarama.ConsumerMessage{m}
				if topic == hit.TopicHits {
					msgs = splitRecord(e.t, m)
				}
				r.mu.Lock()
				r.records = append(r.records, m)
				r.msgs = append(r.msgs, msgs...)
				r.mu.Unlock()
			}
		}()
	}
	return r
}

// splitRecord returns a message per hit of a hits topic record.
func splitRecord(t testing.TB, m *sarama.ConsumerMessage) []*sarama.ConsumerMessage {
	parts, err := hit.SplitRecord(m.Value)
	if err != nil {
		t.Errorf("a broken record at offset %d: %v", m.Offset, err)
		return []*sarama.ConsumerMessage{m}
	}
	out := make([]*sarama.ConsumerMessage, len(parts))
	for i, p := range parts {
		c := *m
		c.Value = p
		out[i] = &c
	}
	return out
}

// waitFor polls until match has found want messages, or fails the test.
func (r *topicReader) waitFor(t testing.TB, want int, match func(*sarama.ConsumerMessage) bool) []*sarama.ConsumerMessage {
	t.Helper()
	var got []*sarama.ConsumerMessage
	eventually.NoError(t, 15*time.Second, fmt.Sprintf("%d matching messages", want), func() error {
		got = nil
		r.mu.Lock()
		for _, m := range r.msgs {
			if match(m) {
				got = append(got, m)
			}
		}
		r.mu.Unlock()
		if len(got) < want {
			return fmt.Errorf("found %d", len(got))
		}
		return nil
	})
	return got
}

// hitsOf decodes hit messages.
func hitsOf(t testing.TB, msgs []*sarama.ConsumerMessage) []*hit.Hit {
	t.Helper()
	var out []*hit.Hit
	for _, m := range msgs {
		h, err := hit.Unmarshal(m.Value)
		if err != nil {
			t.Fatalf("message is not a hit: %v", err)
		}
		out = append(out, h)
	}
	return out
}

func deadLetterOf(t testing.TB, m *sarama.ConsumerMessage) hit.DeadLetter {
	t.Helper()
	var dl hit.DeadLetter
	if err := json.Unmarshal(m.Value, &dl); err != nil {
		t.Fatal(err)
	}
	return dl
}

// do sends a request with the browser's headers, through the trusted
// proxy (the test client's own 127.0.0.1) for client IP ip.
func (e *env) do(method, path, contentType, body, ip, ua string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	}
	if ua == "" {
		ua = chromeUA
	}
	req.Header.Set("User-Agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
