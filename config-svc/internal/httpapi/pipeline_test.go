package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/prometheus/client_golang/prometheus"
)

// The pipeline must see a change within this long (the bound).
const changeDeadline = 5 * time.Second

// runClient starts a configclient (as collection would run it) against
// config-svc at baseURL, or through Consul when baseURL is "".
func runClient(t *testing.T, mod func(*configclient.Config)) (*configclient.Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := configclient.Config{
		Caller: "collection", IdentitySecret: testSecret, Wait: 2 * time.Second, RequestTimeout: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
	}
	mod(&cfg)
	c, err := configclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, reg
}

// TestChangeReachesPipelineWithin5s: two config-svc instances share one
// keyspace; the merchant changes things through one, a configclient
// follows the other, and sees every change within 5 seconds without a
// restart.
func TestChangeReachesPipelineWithin5s(t *testing.T) {
	ks := migratetest.Keyspace(t)
	pool := []string{"AT-PPPPPPPPPP", "AT-QQQQQQQQQQ"}
	var n int
	pick := func(o *Options) {
		o.NewTrackingID = func() (string, error) { n++; return pool[(n-1)%len(pool)], nil }
	}
	a := startInstance(t, ks, "", pick)
	b := startInstance(t, ks, a.keysDir)
	client, reg := runClient(t, func(c *configclient.Config) { c.BaseURL = b.url })
	ctx := context.Background()

	// A tracking ID asked for before it exists is remembered as unknown...
	if _, err := client.ByTrackingID(ctx, pool[0]); !errors.Is(err, configclient.ErrNotFound) {
		t.Fatalf("unknown tracking ID: %v", err)
	}
	eventually.True(t, changeDeadline, "the client anchors on the feed", func() bool { return client.Seq() >= 0 })
	acct := a.signup("Pipeline")
	p := a.createProperty(acct, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
	if p.TrackingID != pool[0] {
		t.Fatalf("tracking ID %s, want %s", p.TrackingID, pool[0])
	}
	// ...until the feed announces it.
	start := time.Now()
	eventually.True(t, changeDeadline, "a new property reaches the client", func() bool {
		doc, err := client.ByTrackingID(ctx, p.TrackingID)
		return err == nil && doc.PropertyID == p.ID
	})
	t.Logf("new property seen after %s", time.Since(start))

	steps := []struct {
		name   string
		change func()
		seen   func(doc *configclient.Property) bool
	}{
		{"a rule change", func() {
			a.must(http.StatusOK, acct.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"exclusions": map[string]any{"ip": []string{"198.51.100.0/24"}}})
		}, func(doc *configclient.Property) bool {
			_, excluded := doc.Compiled().MatchIP(netip.MustParseAddr("198.51.100.9"))
			return doc.Rules.Version == 2 && excluded
		}},
		{"a hostname change", func() {
			a.must(http.StatusOK, acct.as(), "PATCH", "/v1/properties/"+p.ID, map[string]any{"hostnames": []string{"example.com", "shop.example"}})
		}, func(doc *configclient.Property) bool {
			return len(doc.Hostnames) == 2 && doc.Rules.Version == 3 && len(doc.Compiled().Hostnames()) == 2
		}},
		{"a new API secret", func() {
			var sec NewSecretJSON
			a.must(http.StatusCreated, acct.as(), "POST", "/v1/properties/"+p.ID+"/api-secrets", map[string]string{"name": "backend"}).decode(t, &sec)
			secret = sec
		}, func(doc *configclient.Property) bool { return doc.VerifySecret(secret.Secret) }},
		{"a revoked API secret", func() {
			a.must(http.StatusNoContent, acct.as(), "DELETE", "/v1/properties/"+p.ID+"/api-secrets/"+secret.ID, nil)
		}, func(doc *configclient.Property) bool { return !doc.VerifySecret(secret.Secret) }},
		{"new processing shards", func() {
			a.must(http.StatusOK, service("operator"), "PUT", "/internal/v1/properties/"+p.ID+"/processing-shards", map[string]int{"processing_shards": 8})
		}, func(doc *configclient.Property) bool { return doc.ProcessingShards == 8 }},
	}
	for _, st := range steps {
		st.change()
		start := time.Now()
		eventually.True(t, changeDeadline, st.name+" reaches the client", func() bool {
			doc, err := client.ByTrackingID(ctx, p.TrackingID)
			return err == nil && st.seen(doc)
		})
		t.Logf("%s seen after %s", st.name, time.Since(start))
	}

	// The rule history for reprocessing follows changes too.
	history, err := client.RuleHistory(ctx, p.ID)
	if err != nil || len(history.Versions()) != 3 {
		t.Fatalf("rule history = %v, %v; want 3 versions", history, err)
	}
	a.must(http.StatusOK, acct.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"session_timeout_minutes": 20})
	eventually.True(t, changeDeadline, "the rule history reaches the client", func() bool {
		h, err := client.RuleHistory(ctx, p.ID)
		return err == nil && len(h.Versions()) == 4 && h.Versions()[3].Rules.SessionTimeoutMinutes == 20
	})

	// A deleted property disappears.
	a.must(http.StatusNoContent, acct.as(), "DELETE", "/v1/properties/"+p.ID, nil)
	eventually.True(t, changeDeadline, "a deletion reaches the client", func() bool {
		_, err := client.ByTrackingID(ctx, p.TrackingID)
		return errors.Is(err, configclient.ErrNotFound)
	})
	if got := gauge(t, reg, "configclient_feed_connected"); got != 1 {
		t.Fatalf("configclient_feed_connected = %v while following", got)
	}
}

var secret NewSecretJSON

// gauge reads a metric's value from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestPipelineKeepsLastKnownCopyWhileConfigSvcIsDown: with config-svc
// unreachable, cached documents keep being served (and the client says it
// is disconnected); changes made meanwhile arrive once it is back.
func TestPipelineKeepsLastKnownCopyWhileConfigSvcIsDown(t *testing.T) {
	ks := migratetest.Keyspace(t)
	a := startInstance(t, ks, "")
	b := startInstance(t, ks, a.keysDir)
	client, reg := runClient(t, func(c *configclient.Config) { c.BaseURL = b.url })
	ctx := context.Background()
	acct := a.signup("Outage")
	p := a.createProperty(acct, map[string]any{"name": "Site"})
	eventually.True(t, changeDeadline, "the client anchors on the feed", func() bool { return client.Seq() >= 0 && client.Connected() })
	if _, err := client.ByTrackingID(ctx, p.TrackingID); err != nil {
		t.Fatal(err)
	}

	b.down()
	eventually.True(t, changeDeadline, "the client notices the outage", func() bool { return !client.Connected() })
	if got := gauge(t, reg, "configclient_feed_connected"); got != 0 {
		t.Fatalf("configclient_feed_connected = %v during the outage", got)
	}
	doc, err := client.ByTrackingID(ctx, p.TrackingID)
	if err != nil || doc.PropertyID != p.ID {
		t.Fatalf("during the outage: %v, %v; want the last known copy", doc, err)
	}
	if _, err := client.ByTrackingID(ctx, "AT-NEVERSEEN2"); !errors.Is(err, configclient.ErrUnavailable) {
		t.Fatalf("an uncached ID during the outage: %v, want ErrUnavailable", err)
	}
	// The merchant changes the rules through the other instance meanwhile.
	a.must(http.StatusOK, acct.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"bot_filtering": false})
	if doc, _ := client.ByTrackingID(ctx, p.TrackingID); doc.Rules.Version != 1 {
		t.Fatalf("version %d during the outage, want the last known 1", doc.Rules.Version)
	}

	b.up()
	eventually.True(t, 2*changeDeadline, "the change made during the outage arrives", func() bool {
		doc, err := client.ByTrackingID(ctx, p.TrackingID)
		return err == nil && doc.Rules.Version == 2 && !doc.Compiled().BotFiltering()
	})
	eventually.True(t, changeDeadline, "the client reconnects", client.Connected)
}

// TestPipelineResyncsWhenTheFeedForgotItsPosition: a client whose position
// the feed no longer holds (410, as after a week-long outage) re-anchors at
// the head and refetches what it cached.
func TestPipelineResyncsWhenTheFeedForgotItsPosition(t *testing.T) {
	e := newEnv(t)
	acct := e.signup("Gone")
	p := e.createProperty(acct, map[string]any{"name": "Site"})
	c, err := configclient.New(configclient.Config{BaseURL: e.url, Caller: "processing", IdentitySecret: testSecret, Wait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func() func() {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(rctx) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	eventually.True(t, changeDeadline, "the client anchors", func() bool { return c.Seq() >= 0 })
	if _, err := c.ByID(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	stop()
	since := c.Seq()

	// While the client is away, a change is made and the feed's rows
	// expire.
	e.must(http.StatusOK, acct.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"session_timeout_minutes": 15})
	session, err := cassandra.Connect(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if err := session.Query("TRUNCATE config_changes").Exec(); err != nil {
		t.Fatal(err)
	}
	r := e.must(http.StatusGone, service("processing"), "GET", "/internal/v1/changes?since="+strconv.FormatInt(since, 10), nil)
	if r.apiError().Code != "feed_gone" {
		t.Fatalf("410 body %s", r.body)
	}

	defer run()()
	eventually.True(t, 2*changeDeadline, "the client refetches after the feed forgot its position", func() bool {
		doc, err := c.ByID(ctx, p.ID)
		return err == nil && doc.Rules.Version == 2
	})
	if c.Seq() <= since {
		t.Fatalf("the client did not re-anchor: seq %d, was %d", c.Seq(), since)
	}
}

// TestPipelineFindsConfigSvcInConsul: with no static URL, the client finds
// config-svc's healthy instances in the real Consul agent.
func TestPipelineFindsConfigSvcInConsul(t *testing.T) {
	agent := consultest.Start(t)
	e := newEnv(t)
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(e.url, "http://"))
	port, _ := strconv.Atoi(portStr)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := discovery.Register(context.Background(), agent.Client(), "config", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	eventually.True(t, 15*time.Second, "config-svc healthy in consul", func() bool {
		insts, _, err := discovery.Healthy(context.Background(), agent.Client(), "config", 0, 0)
		return err == nil && len(insts) == 1
	})
	client, _ := runClient(t, func(c *configclient.Config) { c.Consul = agent.Client() })
	acct := e.signup("Consul")
	p := e.createProperty(acct, map[string]any{"name": "Site"})
	ctx := context.Background()
	eventually.True(t, changeDeadline, "lookup through consul", func() bool {
		doc, err := client.ByTrackingID(ctx, p.TrackingID)
		return err == nil && doc.PropertyID == p.ID
	})
	e.must(http.StatusOK, acct.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"session_timeout_minutes": 12})
	eventually.True(t, changeDeadline, "a change through consul", func() bool {
		doc, err := client.ByTrackingID(ctx, p.TrackingID)
		return err == nil && doc.Rules.Version == 2
	})
}

// TestPipelineCookielessSaltsAgree: two collection instances' clients, each
// on its own config-svc instance of one deployment, asking at once, get
// one salt for a date (so one visitor one ID), another for the next date;
// a client started later gets the salt made then; and while its config-svc
// is down, a client answers the salts it has and no other.
func TestPipelineCookielessSaltsAgree(t *testing.T) {
	ks := migratetest.Keyspace(t)
	a := startInstance(t, ks, "")
	b := startInstance(t, ks, a.keysDir)
	ca, _ := runClient(t, func(c *configclient.Config) { c.BaseURL = a.url })
	cb, _ := runClient(t, func(c *configclient.Config) { c.BaseURL = b.url })
	ctx := context.Background()
	today := time.Now().UTC().Format(time.DateOnly)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)

	type answer struct {
		salt []byte
		err  error
	}
	answers := make(chan answer, 2)
	for _, c := range []*configclient.Client{ca, cb} {
		go func() {
			salt, err := c.CookielessSalt(ctx, today)
			answers <- answer{salt, err}
		}()
	}
	first, second := <-answers, <-answers
	if first.err != nil || second.err != nil {
		t.Fatal(first.err, second.err)
	}
	if !bytes.Equal(first.salt, second.salt) {
		t.Fatalf("two instances got %x and %x for %s", first.salt, second.salt, today)
	}
	next, err := cb.CookielessSalt(ctx, tomorrow)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(next, first.salt) {
		t.Fatal("tomorrow has today's salt")
	}
	if other, err := ca.CookielessSalt(ctx, tomorrow); err != nil || !bytes.Equal(other, next) {
		t.Fatalf("the other instance's salt of tomorrow: %x, %v; want %x", other, err, next)
	}

	late, _ := runClient(t, func(c *configclient.Config) { c.BaseURL = b.url })
	if salt, err := late.CookielessSalt(ctx, today); err != nil || !bytes.Equal(salt, first.salt) {
		t.Fatalf("a client started later: %x, %v; want the salt made first, %x", salt, err, first.salt)
	}

	a.down()
	if salt, err := ca.CookielessSalt(ctx, today); err != nil || !bytes.Equal(salt, first.salt) {
		t.Fatalf("a cached salt while config-svc is down: %x, %v", salt, err)
	}
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	if salt, err := ca.CookielessSalt(ctx, yesterday); !errors.Is(err, configclient.ErrUnavailable) {
		t.Fatalf("an uncached salt while config-svc is down: %x, %v; want ErrUnavailable", salt, err)
	}
}
