package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/api"
	"github.com/acme/analytics/report-svc/internal/query"
	"github.com/acme/analytics/report-svc/internal/reporttest"
	"github.com/acme/analytics/report-svc/internal/store"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
)

var secret = []byte("test-identity-secret-0123456789")

// Tenants of the tests: tenantA owns the data set's property, tenantB owns
// otherProperty.
const (
	tenantA = "tenant-a"
	tenantB = "tenant-b"
)

var otherProperty = gocql.MustRandomUUID()

// staticLookup answers property lookups from a map (config-svc's client
// is tested with config-svc; here only the answer matters).
type staticLookup map[string]api.PropertyInfo

func (s staticLookup) Lookup(_ context.Context, id string) (api.PropertyInfo, error) {
	p, ok := s[id]
	if !ok {
		return api.PropertyInfo{}, api.ErrPropertyNotFound
	}
	return p, nil
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// env is a running report service over a written data set.
type env struct {
	t      testing.TB
	ds     *reporttest.Dataset
	cql    *cqlserver.Server
	store  *store.Store
	clock  *clock
	acq    *httptest.Server
	beh    *httptest.Server
	client *http.Client
	// lookup answers the services' property lookups; a test may change
	// an entry between requests (a merchant's change of time zone).
	lookup staticLookup
	// writer is a session of newEnv's keyspace for a test to change the
	// rows with (as reprocessing would); nil for other envs.
	writer *gocql.Session
	// keyspace is newEnv's, for a test to serve the same data again with
	// another engine; nil for other envs.
	keyspace *cassandra.Config
	// metrics holds the engine's metrics (a registry of the env's own).
	metrics *prometheus.Registry
}

type envOptions struct {
	store  store.Config
	engine query.Config
}

// defaultOptions are the options of a healthy store: its read timeout
// (-store-timeout) is long, so that no read times out that is only queued
// behind the others. The CQL server runs in the test's process, which the
// race detector slows, and a report reads up to -day-concurrency
// partitions at once: with one CPU for the process on a busy machine, a
// read of TestRollupOracle had no answer after 2 s, the old limit, and the
// breaker opened. The tests of timeouts and of the breaker set their own.
func defaultOptions() envOptions {
	return envOptions{
		store: store.Config{Timeout: 30 * time.Second, BreakerFailures: 5, BreakerOpen: 5 * time.Second, Concurrency: 64},
		engine: query.Config{CacheTTL: 0, FinalCacheTTL: 0, StaleMaxAge: time.Hour, CacheBytes: 16 << 20,
			DayCacheTTL: time.Hour, DayCacheBytes: 256 << 20, ProcessingDelay: time.Second, LateHorizon: 4*time.Hour + 15*time.Minute,
			ComputeTimeout: 30 * time.Second, DayConcurrency: 16},
	}
}

// newEnv writes ds to a fresh keyspace on the test's embedded CQL server
// and serves both families over real HTTP on loopback.
func newEnv(t testing.TB, ds *reporttest.Dataset, o envOptions) *env {
	t.Helper()
	srv := cqltest.Server(t)
	cfg := migratetest.Keyspace(t)
	session, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	if err := reporttest.Write(context.Background(), session, ds.Property, ds.Derive()); err != nil {
		t.Fatalf("write data set: %v", err)
	}
	e := serve(t, ds, srv, cfg, o)
	e.writer, e.keyspace = session, cfg
	return e
}

func serve(t testing.TB, ds *reporttest.Dataset, srv *cqlserver.Server, cfg *cassandra.Config, o envOptions) *env {
	// The service's own session, with the production settings.
	session, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	e := &env{t: t, ds: ds, cql: srv, clock: &clock{now: ds.Now}, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		metrics: prometheus.NewRegistry()}
	e.store = store.New(session, o.store, nil)
	engine := query.New(e.store, o.engine, e.clock.Now, e.metrics)
	lookup := staticLookup{
		ds.Property.String():   {TenantID: tenantA, Location: ds.Location},
		otherProperty.String(): {TenantID: tenantB, Location: time.UTC},
	}
	e.lookup = lookup
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, f := range []*query.Family{query.Acquisition, query.Behavior} {
		mux := http.NewServeMux()
		h := &api.Handler{Family: f, Engine: engine, Properties: lookup, Realtime: f == query.Behavior, Log: log, Now: e.clock.Now}
		h.Register(mux, secret)
		s := httptest.NewServer(httpserver.Chain(mux, httpserver.WithRequestID, httpserver.Recover(log)))
		t.Cleanup(s.Close)
		if f == query.Acquisition {
			e.acq = s
		} else {
			e.beh = s
		}
	}
	return e
}

// dayDataset is an empty data set of one property in UTC, of one shard,
// whose clock is two days after day: for tests that write a day's
// sessions by hand.
func dayDataset(day time.Time) *reporttest.Dataset {
	return &reporttest.Dataset{Property: gocql.MustRandomUUID(), Location: time.UTC, Shards: 1, Now: day.Add(60 * time.Hour)}
}

// get calls path (with the property_id of the data set unless params set
// one) as id, and returns the status, the body and the response.
func (e *env) get(id tenant.Identity, path string, params url.Values) (int, []byte, *http.Response) {
	e.t.Helper()
	if params == nil {
		params = url.Values{}
	}
	if _, ok := params["property_id"]; !ok {
		params.Set("property_id", e.ds.Property.String())
	}
	return e.getRaw(id, path, params.Encode())
}

// getRaw calls path with the query string rawQuery exactly as given (no
// property_id added) as id, and returns the status, the body and the
// response.
func (e *env) getRaw(id tenant.Identity, path, rawQuery string) (int, []byte, *http.Response) {
	e.t.Helper()
	base := e.beh.URL
	if strings.HasPrefix(path, "/v1/reports/acquisition") {
		base = e.acq.URL
	}
	req, err := http.NewRequest("GET", base+path+"?"+rawQuery, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if id.TenantID != "" {
		tenant.Sign(req.Header, id, secret, time.Now())
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, body, resp
}

// results returns report_results_total of the env's engine by origin.
func (e *env) results() map[string]float64 {
	e.t.Helper()
	mfs, err := e.metrics.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "report_results_total" {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

var viewer = tenant.Identity{TenantID: tenantA, UserID: "u1", Role: tenant.RoleViewer}

// report is a decoded JSON report.
type report struct {
	Range struct {
		From, To, Preset string
	} `json:"range"`
	PreviousRange *struct{ From, To string } `json:"previous_range"`
	Dimensions    []string                   `json:"dimensions"`
	Metrics       []string                   `json:"metrics"`
	Rows          []map[string]any           `json:"rows"`
	Totals        map[string]float64         `json:"totals"`
	PrevTotals    map[string]float64         `json:"previous_totals"`
	RowCount      int                        `json:"row_count"`
	UsersEstim    bool                       `json:"users_estimated"`
	Freshness     struct {
		CompleteUpTo   time.Time  `json:"complete_up_to"`
		Final          bool       `json:"final"`
		NewestActivity *time.Time `json:"newest_activity"`
	} `json:"freshness"`
	Cached   bool   `json:"cached"`
	Stale    bool   `json:"stale"`
	Fallback string `json:"fallback"`
}

// mustReport GETs a report as viewer and decodes it, failing on any
// status but 200.
func (e *env) mustReport(path string, params url.Values) *report {
	e.t.Helper()
	status, body, _ := e.get(viewer, path, params)
	if status != http.StatusOK {
		e.t.Fatalf("GET %s?%s: status %d: %s", path, params.Encode(), status, body)
	}
	var r report
	if err := json.Unmarshal(body, &r); err != nil {
		e.t.Fatalf("decode %s: %v\n%s", path, err, body)
	}
	return &r
}

type apiError struct {
	Error struct {
		Code, Message, Field string
	} `json:"error"`
}

func decodeError(t testing.TB, body []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode error body: %v\n%s", err, body)
	}
	return e
}
