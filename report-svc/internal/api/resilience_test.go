package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/api"
	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestBreaker stops the CQL server under a running service: requests fail
// fast with 503 and Retry-After once the breaker is open, a result cached
// before the outage is served marked stale, and the breaker closes by
// itself when the server is back.
func TestBreaker(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 4, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 40, Clients: 200, Shards: 2, LiveClients: 10})
	o := defaultOptions()
	o.store.BreakerFailures = 3
	o.store.BreakerOpen = 300 * time.Millisecond
	o.store.Timeout = time.Second
	o.engine.DayCacheBytes = 0 // every request reads the store
	e := newEnv(t, ds, o)

	cachedQuery := params("range", "last_28_days", "metrics", "users,sessions")
	before := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)
	if before.Stale || before.Cached {
		t.Fatalf("before the outage: stale %v cached %v", before.Stale, before.Cached)
	}
	if _, body, _ := e.get(viewer, "/v1/reports/realtime", nil); decodeRealtime(t, body).Stale {
		t.Fatal("realtime stale before the outage")
	}

	stopped := time.Now()
	if err := e.cql.Stop(); err != nil {
		t.Fatal(err)
	}
	// A query never cached: it fails once the reads fail, and the breaker
	// opens after BreakerFailures of them.
	uncached := params("range", "last_7_days", "metrics", "sessions")
	eventually.True(t, 10*time.Second, "breaker open", func() bool {
		status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", uncached)
		if status != http.StatusServiceUnavailable && status != http.StatusOK {
			t.Fatalf("status %d during the outage: %s", status, body)
		}
		return e.store.BreakerState() == "open"
	})
	t.Logf("breaker open %v after the store stopped", time.Since(stopped).Round(time.Millisecond))
	// Fails fast: no read is attempted while the breaker is open. The
	// median of a few requests, so that one scheduling hiccup of a busy
	// test machine does not decide.
	var took []time.Duration
	for range 5 {
		start := time.Now()
		status, body, resp := e.get(viewer, "/v1/reports/acquisition/source", uncached)
		took = append(took, time.Since(start))
		if status != http.StatusServiceUnavailable {
			t.Fatalf("status %d with the breaker open: %s", status, body)
		}
		if got := decodeError(t, body); got.Error.Code != "store_unavailable" {
			t.Errorf("code %q, want store_unavailable (%s)", got.Error.Code, got.Error.Message)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
	slices.Sort(took)
	t.Logf("503s with the breaker open took %v", took)
	if took[2] > 50*time.Millisecond {
		t.Errorf("requests with the breaker open took %v", took)
	}

	stale := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)
	if !stale.Stale || stale.Fallback == "" {
		t.Errorf("cached result during the outage: stale %v fallback %q", stale.Stale, stale.Fallback)
	}
	if len(stale.Rows) != len(before.Rows) || stale.Totals["sessions"] != before.Totals["sessions"] {
		t.Errorf("stale result differs from the cached one")
	}
	if _, body, _ := e.get(viewer, "/v1/reports/realtime", nil); !decodeRealtime(t, body).Stale {
		t.Error("realtime during the outage is not marked stale")
	}

	restarted := time.Now()
	if err := e.cql.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "recovery", func() bool {
		status, _, _ := e.get(viewer, "/v1/reports/acquisition/source", uncached)
		return status == http.StatusOK
	})
	t.Logf("outage of %v; serving again %v after the restart", restarted.Sub(stopped).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	if s := e.store.BreakerState(); s != "closed" {
		t.Errorf("breaker %s after recovery, want closed", s)
	}
	after := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)
	if after.Stale {
		t.Error("still stale after recovery")
	}
}

// TestResultCache checks that identical queries are answered from the
// cache while fresh, and computed again once their data may have moved.
func TestResultCache(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 5, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC), Days: 10, Clients: 50, Shards: 1})
	o := defaultOptions()
	o.engine.CacheTTL = 5 * time.Second
	o.engine.FinalCacheTTL = 5 * time.Minute
	e := newEnv(t, ds, o)

	live := params("range", "today", "metrics", "sessions")
	final := params("range", "last_7_days", "metrics", "sessions")
	for _, step := range []struct {
		name       string
		advance    time.Duration
		p          map[string][]string
		wantCached bool
	}{
		{"live, first", 0, live, false},
		{"live, again", time.Second, live, true},
		{"live, limit and offset share the entry", 0, map[string][]string{"range": {"today"}, "metrics": {"sessions"}, "limit": {"1"}}, true},
		{"live, past the ttl", 5 * time.Second, live, false},
		{"final, first", 0, final, false},
		{"final, past the live ttl", time.Minute, final, true},
		{"final, past the final ttl", 5 * time.Minute, final, false},
		{"final, again", 0, final, true},
		{"final, after the merchant changed the time zone", 0, final, false},
	} {
		if strings.Contains(step.name, "time zone") {
			e.lookup[ds.Property.String()] = api.PropertyInfo{TenantID: tenantA, Location: time.UTC}
		}
		e.clock.Set(e.clock.Now().Add(step.advance))
		got := e.mustReport("/v1/reports/acquisition/overview", step.p)
		if got.Cached != step.wantCached {
			t.Errorf("%s: cached %v, want %v", step.name, got.Cached, step.wantCached)
		}
	}
}

// TestComputeTimeout slows every read of the store without failing any:
// a report whose reads take longer in all than -compute-timeout answers
// 503 report_timeout once that time is up, not when the last read is done
// (the gateway would have given up first, and counted the healthy report
// instance as failed), and the service answers normally once the store is
// fast again.
func TestComputeTimeout(t *testing.T) {
	e := slowStore(t, 500*time.Millisecond)
	query := params("range", "last_28_days", "metrics", "sessions")
	start := time.Now()
	status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", query)
	took := time.Since(start)
	t.Logf("answered %d after %v", status, took.Round(time.Millisecond))
	if status != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "report_timeout" {
		t.Fatalf("status %d, %s; want 503 report_timeout", status, body)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("the report timed out after %v; -compute-timeout is 500ms (and a read 300ms)", took)
	}

	e.cql.SetLatency(0)
	if got := e.mustReport("/v1/reports/acquisition/source", query); len(got.Rows) == 0 {
		t.Error("no rows once the store is fast again")
	}
	if s := e.store.BreakerState(); s != "closed" {
		t.Errorf("breaker %s: slow reads that the report gave up on are not the store's failures", s)
	}
}

// TestComputeTimeoutServesStale: a report that runs out of
// -compute-timeout over a slow store (no read failing) is answered, like
// one whose reads fail, with its cached result marked stale, within that
// time, the breaker counting nothing; only with no result younger than
// -cache-stale-max-age is it report_timeout. It answered report_timeout
// whenever the store was slow rather than failing, a cached result or not.
func TestComputeTimeoutServesStale(t *testing.T) {
	e := slowStore(t, time.Second)
	e.cql.SetLatency(0)
	query := params("range", "last_28_days", "metrics", "sessions")
	before := e.mustReport("/v1/reports/acquisition/source", query)

	e.cql.SetLatency(300 * time.Millisecond)
	start := time.Now()
	got := e.mustReport("/v1/reports/acquisition/source", query)
	took := time.Since(start)
	t.Logf("answered after %v: stale %v, fallback %q", took.Round(time.Millisecond), got.Stale, got.Fallback)
	if !got.Stale || !got.Cached || got.Fallback == "" {
		t.Errorf("stale %v cached %v fallback %q; want the cached result, marked stale", got.Stale, got.Cached, got.Fallback)
	}
	if got.Totals["sessions"] != before.Totals["sessions"] || len(got.Rows) != len(before.Rows) {
		t.Errorf("stale totals %v over %d rows, want the cached %v over %d", got.Totals, len(got.Rows), before.Totals, len(before.Rows))
	}
	if took > 2*time.Second {
		t.Errorf("the stale result came after %v; -compute-timeout is 1s", took)
	}
	csv := url.Values{"format": {"csv"}}
	for k, v := range query {
		csv[k] = v
	}
	status, _, resp := e.get(viewer, "/v1/reports/acquisition/source", csv)
	if status != http.StatusOK || resp.Header.Get("X-Report-Stale") != "true" || resp.Header.Get("X-Report-Fallback") == "" {
		t.Errorf("CSV: status %d, X-Report-Stale %q, X-Report-Fallback %q", status, resp.Header.Get("X-Report-Stale"), resp.Header.Get("X-Report-Fallback"))
	}

	e.clock.Set(e.clock.Now().Add(time.Hour + time.Minute)) // past -cache-stale-max-age
	status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", query)
	if status != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "report_timeout" {
		t.Errorf("with nothing cached younger than -cache-stale-max-age: %d %s; want 503 report_timeout", status, body)
	}
	if s := e.store.BreakerState(); s != "closed" {
		t.Errorf("breaker %s: slow reads that the report gave up on are not the store's failures", s)
	}
	e.cql.SetLatency(0)
}

// TestUnavailableCountsTimeouts: every report answered 503 counts in
// report_results_total{origin="unavailable"}, on which ReportsUnavailable
// pages: report_timeout (the store slow, -compute-timeout up, nothing
// cached) as store_unavailable does. Only store_unavailable was counted,
// so a store too slow for any report to be computed paged no one. A
// request whose client went away is answered nothing and counted nowhere.
func TestUnavailableCountsTimeouts(t *testing.T) {
	e := slowStore(t, 500*time.Millisecond)
	status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", params("range", "last_28_days", "metrics", "sessions"))
	if status != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "report_timeout" {
		t.Fatalf("status %d, %s; want 503 report_timeout", status, body)
	}
	if got := e.results(); got["unavailable"] != 1 {
		t.Errorf("after a report_timeout: report_results_total %v; want unavailable 1", got)
	}
	e.cql.SetLatency(time.Second) // the realtime view's one read outlasts -compute-timeout
	status, body, _ = e.get(viewer, "/v1/reports/realtime", nil)
	if status != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "report_timeout" {
		t.Fatalf("realtime: status %d, %s; want 503 report_timeout", status, body)
	}
	if got := e.results(); got["unavailable"] != 2 {
		t.Errorf("after a realtime report_timeout: report_results_total %v; want unavailable 2", got)
	}

	// A client that goes away while its report is computed, well within
	// -compute-timeout: the same data served by an engine with time to
	// spare.
	o := defaultOptions()
	o.store.Concurrency = 1
	o.engine.DayCacheBytes = 0
	o.engine.ComputeTimeout = 30 * time.Second
	e.cql.SetLatency(0) // for the new session's own queries
	patient := serve(t, e.ds, e.cql, e.keyspace, o)
	e.cql.SetLatency(300 * time.Millisecond)
	var reads atomic.Int64
	e.cql.SetFault(func(cql string) cqlserver.Fault {
		if strings.Contains(cql, "FROM rollup_daily") {
			reads.Add(1)
		}
		return cqlserver.NoFault
	})
	t.Cleanup(func() { e.cql.SetFault(nil); e.cql.SetLatency(0) })
	ctx, cancel := context.WithCancel(context.Background())
	query := params("range", "last_7_days", "metrics", "sessions", "property_id", e.ds.Property.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, patient.acq.URL+"/v1/reports/acquisition/source?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tenant.Sign(req.Header, viewer, secret, time.Now())
	done := make(chan error, 1)
	go func() {
		resp, err := patient.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	eventually.True(t, 10*time.Second, "the computation started", func() bool { return reads.Load() >= 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was not cancelled")
	}
	patient.acq.Close() // returns once its handler has
	if got := patient.results(); len(got) != 0 {
		t.Errorf("after a request its client cancelled: report_results_total %v; want nothing counted", got)
	}
}

// slowStore serves a data set of 40 days from a store that reads one
// partition at a time, each 300ms late (28 days: over 8 s in all), no
// single read timing out, and computes a report for at most limit.
func slowStore(t *testing.T, limit time.Duration) *env {
	ds := reporttest.Generate(reporttest.Config{Seed: 5, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 40, Clients: 100, Shards: 1, LiveClients: 5})
	o := defaultOptions()
	o.store.Timeout = 5 * time.Second
	o.store.Concurrency = 1
	o.engine.ComputeTimeout = limit
	o.engine.DayCacheBytes = 0
	e := newEnv(t, ds, o)
	e.cql.SetLatency(300 * time.Millisecond)
	return e
}

// TestReprocessedDayLeavesTheWeekCache: a final week merged from cached
// days is dropped with the first of them, so a day rewritten (by
// reprocessing) shows its old numbers for at most -day-cache-ttl, in a
// week as alone (a week merged late from a day cached early kept the old
// day for up to twice that).
func TestReprocessedDayLeavesTheWeekCache(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 5, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC), Days: 20, Clients: 50, Shards: 1})
	o := defaultOptions() // no result cache; days kept an hour
	e := newEnv(t, ds, o)
	sessions := func(from, to string) float64 {
		return e.mustReport("/v1/reports/acquisition/overview", params("from", from, "to", to, "metrics", "sessions")).Totals["sessions"]
	}
	sunday := sessions("2026-03-15", "2026-03-15") // cached until an hour from now
	e.clock.Set(e.clock.Now().Add(50 * time.Minute))
	week := sessions("2026-03-09", "2026-03-15") // merged from the cached Sunday
	if sunday == 0 || week <= sunday {
		t.Fatalf("Sunday %v sessions, its week %v: the data set should have both", sunday, week)
	}
	// Sunday is reprocessed: its rows now say it had no sessions.
	for _, report := range rollup.AcquisitionReports {
		if err := e.writer.Query(`DELETE FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?`,
			ds.Property, "2026-03-15", report).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Set(e.clock.Now().Add(11 * time.Minute)) // past Sunday's hour in the day cache
	if got := sessions("2026-03-09", "2026-03-15"); got != week-sunday {
		t.Fatalf("the week has %v sessions an hour after Sunday was rewritten, want %v", got, week-sunday)
	}
}

// TestComputeTimeoutShared: identical queries that share a computation
// over a slow store each answer report_timeout within -compute-timeout of
// their arrival, as a lone one does. A request had no deadline of its own,
// so the callers of a computation that ran out of time started it again
// (up to twice) and waited anew: they answered after twice the limit or
// more, up to the 30s the gateway waits for a report.
func TestComputeTimeoutShared(t *testing.T) {
	e := slowStore(t, time.Second)
	type answer struct {
		status int
		code   string
		took   time.Duration
	}
	const callers = 4
	answers := make(chan answer, callers)
	for range callers {
		go func() {
			start := time.Now()
			status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", params("range", "last_28_days", "metrics", "sessions"))
			a := answer{status: status, took: time.Since(start)}
			var ae apiError
			if json.Unmarshal(body, &ae) == nil {
				a.code = ae.Error.Code
			}
			answers <- a
		}()
	}
	for range callers {
		a := <-answers
		t.Logf("answered %d %s after %v", a.status, a.code, a.took.Round(time.Millisecond))
		if a.status != http.StatusServiceUnavailable || a.code != "report_timeout" {
			t.Errorf("status %d %s; want 503 report_timeout", a.status, a.code)
		}
		if a.took > 1500*time.Millisecond {
			t.Errorf("a shared report timed out after %v; -compute-timeout is 1s", a.took)
		}
	}
	e.cql.SetLatency(0)
}

// TestResultCacheKeyFilters: queries whose filters differ have results of
// their own in the result cache. The key joined the filter parameters with
// a NUL byte, which a filter value may hold (%00), so one filter holding
// it and two filters had one key, and a query was answered with the
// other's cached rows.
func TestResultCacheKeyFilters(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 5, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC), Days: 10, Clients: 50, Shards: 1})
	o := defaultOptions()
	o.engine.CacheTTL = time.Minute
	o.engine.FinalCacheTTL = time.Minute
	e := newEnv(t, ds, o)

	all := e.mustReport("/v1/reports/acquisition/country", params("range", "last_7_days", "metrics", "sessions"))
	if len(all.Rows) < 2 {
		t.Fatalf("%d countries; the test needs two or more", len(all.Rows))
	}
	country := all.Rows[0]["country"].(string)
	// One filter: no country is "ZZ\x00country==<country>", so every row.
	one := e.mustReport("/v1/reports/acquisition/country", params("range", "last_7_days", "metrics", "sessions", "filter", "country!=ZZ\x00country=="+country))
	// Two filters, ANDed: only that country.
	two := e.mustReport("/v1/reports/acquisition/country", params("range", "last_7_days", "metrics", "sessions", "filter", "country!=ZZ", "filter", "country=="+country))
	if len(one.Rows) != len(all.Rows) {
		t.Errorf("one filter: %d rows, want %d", len(one.Rows), len(all.Rows))
	}
	if len(two.Rows) != 1 || two.Rows[0]["country"] != country || two.Cached {
		t.Errorf("two filters: %d rows (cached %v), want the one of %s", len(two.Rows), two.Cached, country)
	}
}

// TestPartialReadFailure: a report whose partitions are read in part (the
// store refuses some of a multi-day report's reads, below the breaker's
// threshold) is never served or cached as if whole: it answers 503 (or the
// whole result cached before, marked stale), and once the store reads
// again, the numbers are those of every day, the day and week caches
// holding nothing of the failed computation.
func TestPartialReadFailure(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 6, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 40, Clients: 200, Shards: 2, LiveClients: 5})
	for _, dayCache := range []int64{256 << 20, 0} {
		t.Run(fmt.Sprintf("day cache %d bytes", dayCache), func(t *testing.T) {
			o := defaultOptions()
			o.store.BreakerFailures = 1000 // the breaker stays closed: only some reads fail
			o.engine.CacheTTL = time.Minute
			o.engine.FinalCacheTTL = time.Minute
			o.engine.DayCacheBytes = dayCache
			partialReadFailure(t, ds, o)
		})
	}
}

func partialReadFailure(t *testing.T, ds *reporttest.Dataset, o envOptions) {
	e := newEnv(t, ds, o)

	cachedQuery := params("range", "last_28_days", "metrics", "users,sessions")
	freshQuery := params("range", "last_30_days", "metrics", "users,sessions")
	before := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)

	var n atomic.Int64
	e.cql.SetFault(func(cql string) cqlserver.Fault {
		if strings.Contains(cql, "FROM rollup_daily") && n.Add(1)%3 == 0 {
			return cqlserver.FailBefore
		}
		return cqlserver.NoFault
	})
	e.clock.Set(e.clock.Now().Add(2 * time.Minute)) // past the result cache's time
	status, body, _ := e.get(viewer, "/v1/reports/acquisition/channel", freshQuery)
	if status != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "store_unavailable" {
		t.Fatalf("a report read in part: %d %s; want 503 store_unavailable", status, body)
	}
	// Computed again from the day cache, or (its days read) the whole
	// result of before, marked stale.
	cached := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)
	if cached.Totals["sessions"] != before.Totals["sessions"] || cached.Totals["users"] != before.Totals["users"] || len(cached.Rows) != len(before.Rows) {
		t.Errorf("a cached report during the fault: totals %v (stale %v), want the whole result of before %v", cached.Totals, cached.Stale, before.Totals)
	}

	e.cql.SetFault(nil)
	if n.Load() < 3 {
		t.Fatalf("%d reads of rollup_daily under the fault; none failed", n.Load())
	}
	// Reads sent under the fault may still be in flight, shared with the
	// next report: it can fail once more.
	var after *report
	eventually.True(t, 10*time.Second, "the store reads again", func() bool {
		status, body, _ := e.get(viewer, "/v1/reports/acquisition/channel", freshQuery)
		after = &report{}
		return status == http.StatusOK && json.Unmarshal(body, after) == nil
	})
	again := e.mustReport("/v1/reports/acquisition/channel", cachedQuery)
	if after.Stale || again.Stale || again.Totals["sessions"] != before.Totals["sessions"] || again.Totals["users"] != before.Totals["users"] {
		t.Errorf("after the fault: %v (stale %v), want %v", again.Totals, again.Stale, before.Totals)
	}
	// Every day again, from the store: the same as an engine that never
	// saw the fault.
	clean := serve(t, ds, e.cql, e.keyspace, o)
	clean.clock.Set(e.clock.Now())
	want := clean.mustReport("/v1/reports/acquisition/channel", freshQuery)
	if after.Totals["sessions"] != want.Totals["sessions"] || after.Totals["users"] != want.Totals["users"] || len(after.Rows) != len(want.Rows) {
		t.Errorf("after the fault: totals %v over %d rows, want %v over %d", after.Totals, len(after.Rows), want.Totals, len(want.Rows))
	}
}

// TestDayConcurrency: a report reads at most -day-concurrency partitions
// at once, final weeks and the previous period of a comparison included. A
// week merged from its days read them all at once, and each period had
// the limit of its own, so a report read up to fourteen times as many
// partitions at once as the flag says, and one long report could take
// every read slot of the process (-store-concurrency) from the others.
func TestDayConcurrency(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 7, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 40, Clients: 100, Shards: 1})
	o := defaultOptions()
	o.engine.DayConcurrency = 4
	e := newEnv(t, ds, o)

	var inflight, most atomic.Int64
	e.cql.SetFault(func(cql string) cqlserver.Fault {
		if strings.Contains(cql, "FROM rollup_daily") {
			n := inflight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond) // long enough for the reads started together to meet here
			inflight.Add(-1)
		}
		return cqlserver.NoFault
	})
	t.Cleanup(func() { e.cql.SetFault(nil) })
	for _, compare := range []string{"", "previous_period"} {
		most.Store(0)
		got := e.mustReport("/v1/reports/acquisition/channel", params("range", "last_28_days", "metrics", "sessions", "compare", compare))
		if len(got.Rows) == 0 {
			t.Fatal("no rows")
		}
		if m := most.Load(); m > int64(o.engine.DayConcurrency) {
			t.Errorf("compare %q: %d partitions read at once; -day-concurrency is %d", compare, m, o.engine.DayConcurrency)
		}
		e.clock.Set(e.clock.Now().Add(2 * time.Hour)) // past the day cache's hour: read again
	}
}

// TestSharedComputationOutlivesItsStarter: the request that started a
// computation going away (its client cancelled) ends neither the
// computation nor the wait of an identical request that joined it, and
// counts nothing against the breaker.
func TestSharedComputationOutlivesItsStarter(t *testing.T) {
	e := slowStore(t, 30*time.Second)
	e.cql.SetLatency(40 * time.Millisecond) // 56 partitions one at a time: over 2 s
	var reads atomic.Int64
	e.cql.SetFault(func(cql string) cqlserver.Fault {
		if strings.Contains(cql, "FROM rollup_daily") {
			reads.Add(1)
		}
		return cqlserver.NoFault
	})
	t.Cleanup(func() { e.cql.SetFault(nil) })
	query := params("range", "last_28_days", "metrics", "sessions", "property_id", e.ds.Property.String())
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.acq.URL+"/v1/reports/acquisition/source?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tenant.Sign(req.Header, viewer, secret, time.Now())
	starter := make(chan error, 1)
	go func() {
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		starter <- err
	}()
	eventually.True(t, 10*time.Second, "the computation started", func() bool { return reads.Load() >= 2 })
	joined := make(chan *report, 1)
	go func() {
		status, body, _ := e.get(viewer, "/v1/reports/acquisition/source", query)
		var r report
		if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
			t.Errorf("the joined request: %d %s", status, body)
		}
		joined <- &r
	}()
	start := reads.Load()
	eventually.True(t, 10*time.Second, "the computation went on", func() bool { return reads.Load() >= start+5 })
	cancel()
	if err := <-starter; err == nil {
		t.Fatal("the starter's request was not cancelled")
	}
	if r := <-joined; len(r.Rows) == 0 {
		t.Error("the joined request has no rows")
	}
	if n := reads.Load(); n > 60 {
		t.Errorf("%d partitions read: the joined request computed the report again", n)
	}
	if s := e.store.BreakerState(); s != "closed" {
		t.Errorf("breaker %s after a cancelled request", s)
	}
}

// TestOpenBreakerRefusesReadsInFlight: once the breaker is open, a report
// whose partitions (days, or final weeks merged from them) are being read
// for another report, by reads that hang since before it opened, is
// answered at once, from its cached result marked stale, as a report over
// partitions of its own is. It joined those reads and waited for them, up
// to -store-timeout, before the breaker was asked.
func TestOpenBreakerRefusesReadsInFlight(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 5, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 40, Clients: 100, Shards: 1})
	for _, dayCache := range []int64{256 << 20, 0} {
		t.Run(fmt.Sprintf("day cache %d bytes", dayCache), func(t *testing.T) {
			o := defaultOptions()
			o.store.Timeout = 2 * time.Second
			o.store.BreakerFailures = 1
			o.store.BreakerOpen = time.Minute
			o.engine.DayCacheBytes = dayCache
			o.engine.DayCacheTTL = 10 * time.Minute
			e := newEnv(t, ds, o)
			// Three whole weeks, final: with the day cache on, read as
			// weeks only.
			query := params("from", "2026-02-23", "to", "2026-03-15", "metrics", "sessions", "sort", "channel")
			before := e.mustReport("/v1/reports/acquisition/channel", query)
			e.clock.Set(e.clock.Now().Add(11 * time.Minute)) // past the day cache's time: read again

			// Another report over the same partitions (its own result: sorted
			// otherwise) starts reads that hang; other reads then fail, and
			// the breaker opens.
			const (
				hang = iota + 1
				fail
			)
			var mode, hung atomic.Int32
			release := make(chan struct{})
			e.cql.SetFault(func(cql string) cqlserver.Fault {
				switch mode.Load() {
				case hang:
					if strings.Contains(cql, "FROM rollup_daily") {
						hung.Add(1)
						select {
						case <-release:
						case <-time.After(3 * time.Second): // past -store-timeout
						}
					}
				case fail:
					return cqlserver.FailBefore
				}
				return cqlserver.NoFault
			})
			t.Cleanup(func() { close(release); e.cql.SetFault(nil) })
			mode.Store(hang)
			go e.get(viewer, "/v1/reports/acquisition/channel", params("from", "2026-02-23", "to", "2026-03-15", "metrics", "sessions"))
			eventually.True(t, 10*time.Second, "reads hung", func() bool { return hung.Load() >= 4 })
			mode.Store(fail)
			e.get(viewer, "/v1/reports/acquisition/device", params("range", "last_7_days", "metrics", "sessions"))
			if s := e.store.BreakerState(); s != "open" {
				t.Fatalf("breaker %s after a failed read; -breaker-failures is 1", s)
			}

			start := time.Now()
			got := e.mustReport("/v1/reports/acquisition/channel", query)
			took := time.Since(start)
			t.Logf("answered after %v: stale %v, fallback %q", took.Round(time.Millisecond), got.Stale, got.Fallback)
			if !got.Stale || got.Totals["sessions"] != before.Totals["sessions"] {
				t.Errorf("stale %v, totals %v; want the cached %v, marked stale", got.Stale, got.Totals, before.Totals)
			}
			if took > 500*time.Millisecond {
				t.Errorf("answered %v after the breaker opened; it refuses reads at once", took)
			}
		})
	}
}
