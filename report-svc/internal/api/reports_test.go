package api_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/reporttest"
	"github.com/gocql/gocql"
)

var newYork = func() *time.Location {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		panic(err)
	}
	return loc
}()

// testData is the data set of the report tests: 110 days of a property in
// New York (with the 2026-03-08 daylight-saving change) whose today is
// 2026-03-20, three processing shards, a launch burst on 2026-03-10 with
// 1700 one-pageview visitors (rows holding HyperLogLog sketches), and
// visitors active in the last 30 minutes.
func testData() *reporttest.Dataset {
	return reporttest.Generate(reporttest.Config{
		Seed: 1, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 110, Clients: 1200, Shards: 3, BurstDay: 10, BurstClients: 1700, LiveClients: 60,
	})
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func params(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func eq(dim, value string) func(v func(string) string) bool {
	return func(v func(string) string) bool { return v(dim) == value }
}

// TestReports checks every report, dimension, metric, filter operator
// and granularity against the oracle.
func TestReports(t *testing.T) {
	ds := testData()
	e := newEnv(t, ds, defaultOptions())
	from, to := "2026-02-01", "2026-03-20"
	rng := spec{from: date(from), to: date(to)}
	sm := strings.Join(sessionMetrics, ",")
	pm := strings.Join(pageMetrics, ",")
	em := strings.Join(eventMetrics, ",")
	with := func(s spec, f func(*spec)) spec { f(&s); return s }

	type tc struct {
		name    string
		path    string
		params  url.Values
		spec    spec
		metrics []string
	}
	var cases []tc
	// Every acquisition report with every session metric.
	for _, r := range []struct {
		name string
		dims []string
	}{
		{"channel", []string{"channel"}}, {"source", []string{"source"}}, {"medium", []string{"medium"}},
		{"source_medium", []string{"source", "medium"}}, {"campaign", []string{"campaign"}}, {"referrer", []string{"referrer"}},
		{"landing_page", []string{"landing_page"}}, {"country", []string{"country"}}, {"device", []string{"device"}},
		{"browser", []string{"browser"}}, {"os", []string{"os"}}, {"user_type", []string{"user_type"}},
		{"overview", nil},
	} {
		cases = append(cases, tc{"acquisition/" + r.name, "/v1/reports/acquisition/" + r.name,
			params("from", from, "to", to, "metrics", sm), with(rng, func(s *spec) { s.scope, s.dims = "session", r.dims }), sessionMetrics})
	}
	// Every dimension through the generic query, alone and as pairs.
	for _, dims := range [][]string{{"channel"}, {"source_medium"}, {"source", "medium"}, {"medium", "source"}, {"country"}, {"user_type"}} {
		cases = append(cases, tc{"acquisition/query/" + strings.Join(dims, ","), "/v1/reports/acquisition/query",
			params("from", from, "to", to, "metrics", sm, "dimensions", strings.Join(dims, ",")),
			with(rng, func(s *spec) { s.scope, s.dims = "session", dims }), sessionMetrics})
	}
	// Filters: every operator, AND and OR.
	filters := []struct {
		name, dims, filter string
		pred               func(v func(string) string) bool
	}{
		{"equals", "country", "country==DE", eq("country", "DE")},
		{"not equals", "country", "country!=US", func(v func(string) string) bool { return v("country") != "US" }},
		{"contains", "source", "source=@example", func(v func(string) string) bool { return strings.Contains(v("source"), "example") }},
		{"not contains", "source", "source!@example", func(v func(string) string) bool { return !strings.Contains(v("source"), "example") }},
		{"regex", "source", "source=~^(google|bing)$", func(v func(string) string) bool {
			return regexp.MustCompile("^(google|bing)$").MatchString(v("source"))
		}},
		{"not regex", "source", "source!~^goo", func(v func(string) string) bool { return !strings.HasPrefix(v("source"), "goo") }},
		{"in", "country", "country[]DE|FR|GB", func(v func(string) string) bool { return slices.Contains([]string{"DE", "FR", "GB"}, v("country")) }},
		{"or", "medium", "medium==cpc,medium==email", func(v func(string) string) bool { return v("medium") == "cpc" || v("medium") == "email" }},
		{"and across columns", "source", "source=~^g;medium==cpc", func(v func(string) string) bool { return strings.HasPrefix(v("source"), "g") && v("medium") == "cpc" }},
		{"and of ors", "source_medium", "source==google,source==bing;medium==organic", func(v func(string) string) bool {
			return (v("source") == "google" || v("source") == "bing") && v("medium") == "organic"
		}},
		{"filter without dimensions", "", "channel==Direct", eq("channel", "Direct")},
		{"escaped comma", "campaign", `campaign!=a\,b`, func(v func(string) string) bool { return v("campaign") != "a,b" }},
		{"derived dimension", "source_medium", "source_medium==google / cpc", eq("source_medium", "google / cpc")},
	}
	for _, f := range filters {
		dims := splitDims(f.dims)
		cases = append(cases, tc{"filter/" + f.name, "/v1/reports/acquisition/query",
			params("from", from, "to", to, "metrics", sm, "dimensions", f.dims, "filter", f.filter),
			with(rng, func(s *spec) { s.scope, s.dims, s.pred = "session", dims, f.pred }), sessionMetrics})
	}
	// Granularities.
	for _, g := range []string{"day", "week", "month"} {
		cases = append(cases, tc{"overview/" + g, "/v1/reports/acquisition/overview",
			params("from", from, "to", to, "metrics", sm, "granularity", g),
			with(rng, func(s *spec) { s.scope, s.gran = "session", g }), sessionMetrics})
		cases = append(cases, tc{"channel/" + g, "/v1/reports/acquisition/channel",
			params("from", from, "to", to, "metrics", sm, "granularity", g),
			with(rng, func(s *spec) { s.scope, s.gran, s.dims = "session", g, []string{"channel"} }), sessionMetrics})
		cases = append(cases, tc{"pages/" + g, "/v1/reports/behavior/pages",
			params("from", from, "to", to, "metrics", pm, "granularity", g),
			with(rng, func(s *spec) { s.scope, s.gran, s.dims = "page", g, []string{"page"} }), pageMetrics})
	}
	// Hours across the daylight-saving change of 2026-03-08 (a 23-hour day).
	cases = append(cases, tc{"overview/hour", "/v1/reports/acquisition/overview",
		params("from", "2026-03-07", "to", "2026-03-09", "metrics", sm, "granularity", "hour"),
		spec{scope: "session", from: date("2026-03-07"), to: date("2026-03-09"), gran: "hour"}, sessionMetrics})
	cases = append(cases, tc{"overview/hour today", "/v1/reports/acquisition/overview",
		params("range", "today", "metrics", "users,sessions,pageviews", "granularity", "hour"),
		spec{scope: "session", from: date("2026-03-20"), to: date("2026-03-20"), gran: "hour"}, []string{"users", "sessions", "pageviews"}})
	// Presets.
	cases = append(cases, tc{"preset last_28_days", "/v1/reports/acquisition/channel", params("range", "last_28_days", "metrics", sm),
		spec{scope: "session", from: date("2026-02-20"), to: date("2026-03-19"), dims: []string{"channel"}}, sessionMetrics})
	cases = append(cases, tc{"preset last_90_days", "/v1/reports/acquisition/device", params("range", "last_90_days", "metrics", sm),
		spec{scope: "session", from: date("2025-12-20"), to: date("2026-03-19"), dims: []string{"device"}}, sessionMetrics})
	cases = append(cases, tc{"preset this_month", "/v1/reports/acquisition/overview", params("range", "this_month", "metrics", sm),
		spec{scope: "session", from: date("2026-03-01"), to: date("2026-03-20")}, sessionMetrics})
	cases = append(cases, tc{"default range", "/v1/reports/acquisition/overview", params(),
		spec{scope: "session", from: date("2026-02-20"), to: date("2026-03-19")},
		[]string{"users", "new_users", "sessions", "engaged_sessions", "bounce_rate", "avg_session_duration", "pages_per_session", "conversions", "conversion_rate", "goal_value"}})

	// Behavior.
	cases = append(cases,
		tc{"behavior/overview", "/v1/reports/behavior/overview", params("from", from, "to", to, "metrics", pm),
			with(rng, func(s *spec) { s.scope = "page" }), pageMetrics},
		tc{"behavior/overview/day", "/v1/reports/behavior/overview", params("from", from, "to", to, "metrics", pm, "granularity", "day"),
			with(rng, func(s *spec) { s.scope, s.gran = "page", "day" }), pageMetrics},
		tc{"behavior/pages", "/v1/reports/behavior/pages", params("from", from, "to", to, "metrics", pm),
			with(rng, func(s *spec) { s.scope, s.dims = "page", []string{"page"} }), pageMetrics},
		tc{"behavior/pages filtered", "/v1/reports/behavior/pages", params("from", from, "to", to, "metrics", pm, "filter", "page=~^/docs/,page=@tips"),
			with(rng, func(s *spec) {
				s.scope, s.dims = "page", []string{"page"}
				s.pred = func(v func(string) string) bool {
					return strings.HasPrefix(v("page"), "/docs/") || strings.Contains(v("page"), "tips")
				}
			}), pageMetrics},
		tc{"behavior/landing_pages", "/v1/reports/behavior/landing_pages", params("from", from, "to", to, "metrics", sm),
			with(rng, func(s *spec) { s.scope, s.dims = "session", []string{"landing_page"} }), sessionMetrics},
		tc{"behavior/exit_pages", "/v1/reports/behavior/exit_pages", params("from", from, "to", to),
			with(rng, func(s *spec) { s.scope, s.dims, s.nonZero = "page", []string{"page"}, "exits" }), []string{"exits", "pageviews", "exit_rate"}},
		tc{"behavior/page_paths root", "/v1/reports/behavior/page_paths", params("from", from, "to", to, "metrics", pm),
			with(rng, func(s *spec) { s.scope, s.dims, s.dir = "page", []string{"page_path"}, "/" }), pageMetrics},
		tc{"behavior/page_paths blog", "/v1/reports/behavior/page_paths", params("from", from, "to", to, "metrics", pm, "path", "/blog"),
			with(rng, func(s *spec) { s.scope, s.dims, s.dir = "page", []string{"page_path"}, "/blog/" }), pageMetrics},
		tc{"behavior/events", "/v1/reports/behavior/events", params("from", from, "to", to, "metrics", em),
			with(rng, func(s *spec) {
				s.scope, s.dims, s.level = "event", []string{"event_category", "event_action", "event_label"}, 3
			}), eventMetrics},
		tc{"behavior/event_categories", "/v1/reports/behavior/event_categories", params("from", from, "to", to, "metrics", em),
			with(rng, func(s *spec) { s.scope, s.dims, s.level = "event", []string{"event_category"}, 1 }), eventMetrics},
		tc{"behavior/event_actions", "/v1/reports/behavior/event_actions", params("from", from, "to", to, "metrics", em),
			with(rng, func(s *spec) { s.scope, s.dims, s.level = "event", []string{"event_category", "event_action"}, 2 }), eventMetrics},
		tc{"behavior/events by category filtered on action", "/v1/reports/behavior/query",
			params("from", from, "to", to, "metrics", em, "dimensions", "event_category", "filter", "event_action==play"),
			with(rng, func(s *spec) {
				s.scope, s.dims, s.level, s.pred = "event", []string{"event_category"}, 2, eq("event_action", "play")
			}), eventMetrics},
		tc{"behavior/events weekly", "/v1/reports/behavior/event_categories", params("from", from, "to", to, "metrics", em, "granularity", "week"),
			with(rng, func(s *spec) { s.scope, s.dims, s.level, s.gran = "event", []string{"event_category"}, 1, "week" }), eventMetrics},
		tc{"behavior/events totals", "/v1/reports/behavior/overview", params("from", from, "to", to, "metrics", em),
			with(rng, func(s *spec) { s.scope, s.level = "event", 1 }), eventMetrics},
		tc{"behavior/filtered", "/v1/reports/behavior/filtered", params("from", from, "to", to),
			with(rng, func(s *spec) { s.scope, s.dims = "filtered", []string{"reason"} }), []string{"hits"}},
		tc{"behavior/filtered monthly", "/v1/reports/behavior/filtered", params("from", from, "to", to, "granularity", "month", "filter", "reason!=bot"),
			with(rng, func(s *spec) {
				s.scope, s.dims, s.gran = "filtered", []string{"reason"}, "month"
				s.pred = func(v func(string) string) bool { return v("reason") != "bot" }
			}), []string{"hits"}},
		tc{"behavior/session metrics overview", "/v1/reports/behavior/overview", params("from", from, "to", to, "metrics", "sessions,users"),
			with(rng, func(s *spec) { s.scope = "session" }), []string{"sessions", "users"}},
	)
	// Seed-era calls: a page's views over a time range, a country's
	// weekly totals.
	cases = append(cases,
		tc{"seed/page views", "/v1/reports/behavior/pages", params("property_id", ds.Property.String(), "from", "2026-03-01", "to", "2026-03-15", "filter", "page==/pricing", "metrics", "pageviews"),
			spec{scope: "page", from: date("2026-03-01"), to: date("2026-03-15"), dims: []string{"page"}, pred: eq("page", "/pricing")}, []string{"pageviews"}},
		tc{"seed/country weekly", "/v1/reports/acquisition/country", params("range", "last_90_days", "filter", "country==DE", "granularity", "week", "metrics", sm),
			spec{scope: "session", from: date("2025-12-20"), to: date("2026-03-19"), dims: []string{"country"}, gran: "week", pred: eq("country", "DE")}, sessionMetrics},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := e.mustReport(c.path, c.params)
			if len(got.Rows) == 0 && len(c.spec.dims) > 0 {
				t.Fatalf("no rows")
			}
			check(t, got, c.spec, ds, c.metrics)
		})
	}

	t.Run("users estimated past the exact limit", func(t *testing.T) {
		got := e.mustReport("/v1/reports/acquisition/overview", params("from", from, "to", to, "metrics", "users"))
		if !got.UsersEstim {
			t.Errorf("users_estimated = false for %v users", got.Totals["users"])
		}
		small := e.mustReport("/v1/reports/acquisition/overview", params("from", "2026-03-19", "to", "2026-03-19", "metrics", "users"))
		if small.UsersEstim {
			t.Errorf("users_estimated = true for %v users", small.Totals["users"])
		}
	})

	t.Run("totals add up across dimension values", func(t *testing.T) {
		overview := e.mustReport("/v1/reports/acquisition/overview", params("from", from, "to", to, "metrics", sm))
		for _, rep := range []string{"channel", "source", "medium", "source_medium", "campaign", "referrer", "landing_page", "country", "device", "browser", "os", "user_type"} {
			got := e.mustReport("/v1/reports/acquisition/"+rep, params("from", from, "to", to, "metrics", sm))
			for _, m := range []string{"new_users", "sessions", "engaged_sessions", "bounces", "pageviews", "events", "conversions", "goal_value"} {
				sum := 0.0
				for _, row := range got.Rows {
					sum += row[m].(float64)
				}
				if !closeEnough(m, sum, got.Totals[m]) || !closeEnough(m, got.Totals[m], overview.Totals[m]) {
					t.Errorf("%s: sum of rows' %s = %v, totals %v, overview %v", rep, m, sum, got.Totals[m], overview.Totals[m])
				}
			}
			if got.Totals["users"] != overview.Totals["users"] {
				t.Errorf("%s: totals users %v, overview %v", rep, got.Totals["users"], overview.Totals["users"])
			}
		}
		pages := e.mustReport("/v1/reports/behavior/pages", params("from", from, "to", to, "metrics", "pageviews,entrances"))
		if pages.Totals["pageviews"] != overview.Totals["pageviews"] {
			t.Errorf("pages total pageviews %v, acquisition overview %v", pages.Totals["pageviews"], overview.Totals["pageviews"])
		}
	})

	t.Run("compare with the previous period", func(t *testing.T) {
		got := e.mustReport("/v1/reports/acquisition/channel", params("from", "2026-03-01", "to", "2026-03-14", "compare", "previous_period", "metrics", sm))
		if got.PreviousRange == nil || got.PreviousRange.From != "2026-02-15" || got.PreviousRange.To != "2026-02-28" {
			t.Fatalf("previous_range = %+v, want 2026-02-15 to 2026-02-28", got.PreviousRange)
		}
		prev := spec{scope: "session", from: date("2026-02-15"), to: date("2026-02-28"), dims: []string{"channel"}}
		want, total := prev.expect(ds)
		for _, row := range got.Rows {
			p := row["previous"].(map[string]any)
			w := want[rowKey("", []string{row["channel"].(string)})]
			for _, m := range sessionMetrics {
				e := 0.0
				if w != nil {
					e = w.agg.metric("session", m)
				}
				if !closeEnough(m, p[m].(float64), e) {
					t.Errorf("%s previous %s = %v, want %v", row["channel"], m, p[m], e)
				}
			}
		}
		for _, m := range sessionMetrics {
			if e := total.metric("session", m); !closeEnough(m, got.PrevTotals[m], e) {
				t.Errorf("previous_totals %s = %v, want %v", m, got.PrevTotals[m], e)
			}
		}
		check(t, got, spec{scope: "session", from: date("2026-03-01"), to: date("2026-03-14"), dims: []string{"channel"}}, ds, sessionMetrics)
	})

	t.Run("compare a daily series", func(t *testing.T) {
		got := e.mustReport("/v1/reports/acquisition/overview", params("from", "2026-03-01", "to", "2026-03-07", "granularity", "day", "compare", "previous_period", "metrics", "sessions"))
		want, _ := spec{scope: "session", from: date("2026-02-22"), to: date("2026-02-28"), gran: "day"}.expect(ds)
		if len(got.Rows) != 7 {
			t.Fatalf("%d rows, want 7", len(got.Rows))
		}
		for i, row := range got.Rows {
			day := date("2026-02-22").AddDate(0, 0, i).Format(time.DateOnly)
			e := 0.0
			if w := want[rowKey(day, nil)]; w != nil {
				e = w.agg.metric("session", "sessions")
			}
			if p := row["previous"].(map[string]any)["sessions"].(float64); p != e {
				t.Errorf("%s: previous sessions %v, want %v (%s)", row["period"], p, e, day)
			}
		}
	})

	t.Run("sort, limit and offset", func(t *testing.T) {
		want, _ := spec{scope: "session", from: date(from), to: date(to), dims: []string{"source"}}.expect(ds)
		order := sortedRows(want, "session", "sessions")
		got := e.mustReport("/v1/reports/acquisition/source", params("from", from, "to", to, "metrics", "sessions,users", "limit", "3", "offset", "2"))
		if got.RowCount != len(order) || len(got.Rows) != 3 {
			t.Fatalf("row_count %d, %d rows; want %d and 3", got.RowCount, len(got.Rows), len(order))
		}
		for i, row := range got.Rows {
			if row["source"] != order[2+i].dims[0] {
				t.Errorf("row %d: source %v, want %v", 2+i, row["source"], order[2+i].dims[0])
			}
		}
		asc := e.mustReport("/v1/reports/acquisition/source", params("from", from, "to", to, "metrics", "sessions", "sort", "source"))
		if !slices.IsSortedFunc(asc.Rows, func(a, b map[string]any) int { return strings.Compare(a["source"].(string), b["source"].(string)) }) {
			t.Errorf("sort=source: rows not in source order")
		}
		desc := e.mustReport("/v1/reports/acquisition/source", params("from", from, "to", to, "metrics", "sessions,bounce_rate", "sort", "-bounce_rate,source"))
		if !slices.IsSortedFunc(desc.Rows, func(a, b map[string]any) int { return -cmpF(a["bounce_rate"].(float64), b["bounce_rate"].(float64)) }) {
			t.Errorf("sort=-bounce_rate: rows not in descending bounce rate")
		}
	})

	t.Run("csv equals json", func(t *testing.T) {
		p := params("from", from, "to", to, "metrics", "users,sessions,bounce_rate", "granularity", "week")
		js := e.mustReport("/v1/reports/acquisition/channel", p)
		p.Set("format", "csv")
		status, body, resp := e.get(viewer, "/v1/reports/acquisition/channel", p)
		if status != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("status %d, content type %q", status, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("X-Report-Complete-Up-To") == "" || resp.Header.Get("X-Report-Stale") != "false" {
			t.Errorf("freshness headers missing: %v", resp.Header)
		}
		recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"period", "period_start", "channel", "users", "sessions", "bounce_rate"}; !slices.Equal(recs[0], want) {
			t.Fatalf("header %v, want %v", recs[0], want)
		}
		if len(recs)-1 != len(js.Rows) {
			t.Fatalf("%d CSV rows, %d JSON rows", len(recs)-1, len(js.Rows))
		}
		for i, rec := range recs[1:] {
			row := js.Rows[i]
			if rec[0] != row["period"] || rec[2] != row["channel"] {
				t.Errorf("row %d: %v vs %v", i, rec, row)
			}
			for j, m := range []string{"users", "sessions", "bounce_rate"} {
				v, _ := strconv.ParseFloat(rec[3+j], 64)
				if v != row[m].(float64) {
					t.Errorf("row %d %s: csv %v, json %v", i, m, v, row[m])
				}
			}
		}
		// Accept: text/csv works too.
		req, _ := http.NewRequest("GET", e.acq.URL+"/v1/reports/acquisition/channel?property_id="+ds.Property.String(), nil)
		req.Header.Set("Accept", "text/csv")
		tenant.Sign(req.Header, viewer, secret, time.Now())
		resp2, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if !strings.HasPrefix(resp2.Header.Get("Content-Type"), "text/csv") {
			t.Errorf("Accept: text/csv answered %q", resp2.Header.Get("Content-Type"))
		}
	})

	t.Run("freshness", func(t *testing.T) {
		past := e.mustReport("/v1/reports/acquisition/overview", params("range", "last_7_days"))
		startOfToday := time.Date(2026, 3, 20, 0, 0, 0, 0, newYork)
		if !past.Freshness.CompleteUpTo.Equal(startOfToday) || !past.Freshness.Final {
			t.Errorf("last_7_days: complete_up_to %v final %v; want %v, true", past.Freshness.CompleteUpTo, past.Freshness.Final, startOfToday)
		}
		now := e.mustReport("/v1/reports/acquisition/overview", params("range", "today"))
		if want := ds.Now.Add(-time.Second); !now.Freshness.CompleteUpTo.Equal(want) || now.Freshness.Final {
			t.Errorf("today: complete_up_to %v final %v; want %v, false", now.Freshness.CompleteUpTo, now.Freshness.Final, want)
		}
		if now.Freshness.NewestActivity == nil || ds.Now.Sub(*now.Freshness.NewestActivity) > 2*time.Minute {
			t.Errorf("newest_activity = %v, want the newest realtime minute (before %v)", now.Freshness.NewestActivity, ds.Now)
		}
		if now.Stale || now.Fallback != "" {
			t.Errorf("stale %v fallback %q", now.Stale, now.Fallback)
		}
	})

	t.Run("realtime", func(t *testing.T) {
		status, body, _ := e.get(viewer, "/v1/reports/realtime", nil)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		got := decodeRealtime(t, body)
		want := expectRealtime(ds, 30, 10)
		if got.ActiveUsers5m != want.users5 || got.ActiveUsers30m != want.users30 {
			t.Errorf("active users 5m/30m = %d/%d, want %d/%d", got.ActiveUsers5m, got.ActiveUsers30m, want.users5, want.users30)
		}
		if got.ActiveUsers30m == 0 || got.ActiveUsers5m == 0 {
			t.Errorf("the data set has no recent activity")
		}
		if len(got.PerMinute) != 30 {
			t.Fatalf("%d minutes, want 30", len(got.PerMinute))
		}
		for i, m := range got.PerMinute {
			if m.Pageviews != want.perMinute[i] {
				t.Errorf("minute %s: %d pageviews, want %d", m.Minute, m.Pageviews, want.perMinute[i])
			}
		}
		if !slices.Equal(got.TopPages, want.pages) || !slices.Equal(got.TopSources, want.sources) {
			t.Errorf("top pages %v sources %v; want %v %v", got.TopPages, got.TopSources, want.pages, want.sources)
		}
		status, body, _ = e.get(viewer, "/v1/reports/realtime/pages", params("window", "5", "limit", "3", "format", "csv"))
		w5 := expectRealtime(ds, 5, 3)
		recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if status != 200 || err != nil {
			t.Fatalf("status %d err %v", status, err)
		}
		if len(recs)-1 != len(w5.pages) {
			t.Fatalf("%d CSV rows, want %d", len(recs)-1, len(w5.pages))
		}
		for i, rec := range recs[1:] {
			if rec[0] != w5.pages[i].Page || rec[1] != strconv.FormatInt(w5.pages[i].Pageviews, 10) {
				t.Errorf("row %d: %v, want %+v", i, rec, w5.pages[i])
			}
		}
	})
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func splitDims(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// TestAuthorization checks that only the owning tenant's admins and viewers
// read a property, and that another tenant's property looks missing.
func TestAuthorization(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 2, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC), Days: 3, Clients: 20, Shards: 1})
	e := newEnv(t, ds, defaultOptions())
	missing := gocql.MustRandomUUID().String()
	tests := []struct {
		name     string
		id       tenant.Identity
		property string
		path     string
		status   int
		code     string
	}{
		{"viewer of the owner", viewer, "", "/v1/reports/acquisition/channel", 200, ""},
		{"admin of the owner", tenant.Identity{TenantID: tenantA, UserID: "a", Role: tenant.RoleAdmin}, "", "/v1/reports/behavior/pages", 200, ""},
		{"realtime of the owner", viewer, "", "/v1/reports/realtime", 200, ""},
		{"another tenant", tenant.Identity{TenantID: tenantB, UserID: "b", Role: tenant.RoleAdmin}, "", "/v1/reports/acquisition/channel", 404, "property_not_found"},
		{"another tenant's realtime", tenant.Identity{TenantID: tenantB, UserID: "b", Role: tenant.RoleAdmin}, "", "/v1/reports/realtime", 404, "property_not_found"},
		{"another tenant's property", viewer, otherProperty.String(), "/v1/reports/behavior/pages", 404, "property_not_found"},
		{"no such property", viewer, missing, "/v1/reports/acquisition/overview", 404, "property_not_found"},
		{"no identity", tenant.Identity{}, "", "/v1/reports/acquisition/channel", 401, "unauthenticated"},
		{"service role", tenant.System("gateway"), "", "/v1/reports/acquisition/channel", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := url.Values{}
			if tt.property != "" {
				p.Set("property_id", tt.property)
			}
			status, body, _ := e.get(tt.id, tt.path, p)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.code != "" {
				if got := decodeError(t, body); got.Error.Code != tt.code {
					t.Errorf("code %q, want %q", got.Error.Code, tt.code)
				}
			}
		})
	}
	t.Run("forged identity", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.acq.URL+"/v1/reports/acquisition/channel?property_id="+ds.Property.String(), nil)
		tenant.Sign(req.Header, tenant.Identity{TenantID: tenantB, UserID: "b", Role: tenant.RoleAdmin}, secret, time.Now())
		req.Header.Set(tenant.HeaderTenantID, tenantA)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

// TestBodyIsRefused: a report's parameters are in its query string; a body
// was ignored, so {"filter": ...} sent as one got the report unfiltered.
// White space, {} and null are no parameters, and pass (null, what a
// client sends that marshals a nil value, and { } were refused).
func TestBodyIsRefused(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 3, Location: time.UTC, Now: time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC), Days: 2, Clients: 5, Shards: 1})
	e := newEnv(t, ds, defaultOptions())
	for _, tt := range []struct {
		base, path, body string
		want             int
	}{
		{e.acq.URL, "/v1/reports/acquisition/channel", `{"filter": "country==DE"}`, http.StatusBadRequest},
		{e.beh.URL, "/v1/reports/behavior/pages", "metrics=pageviews", http.StatusBadRequest},
		{e.beh.URL, "/v1/reports/realtime", "[]", http.StatusBadRequest},
		{e.acq.URL, "/v1/reports/acquisition", `{"x": 1}`, http.StatusBadRequest},
		{e.acq.URL, "/v1/reports/acquisition/channel", " \n", http.StatusOK},
		{e.acq.URL, "/v1/reports/acquisition/channel", "{}", http.StatusOK},
		{e.acq.URL, "/v1/reports/acquisition/channel", "null", http.StatusOK},
		{e.beh.URL, "/v1/reports/realtime", "{ }\n", http.StatusOK},
		{e.beh.URL, "/v1/reports/realtime", "nul", http.StatusBadRequest},
		{e.beh.URL, "/v1/reports/realtime", "{ 1 }", http.StatusBadRequest},
	} {
		req, err := http.NewRequest("GET", tt.base+tt.path+"?property_id="+ds.Property.String(), strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		tenant.Sign(req.Header, viewer, secret, time.Now())
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with the body %q: %d %s, want %d", tt.path, tt.body, resp.StatusCode, body, tt.want)
			continue
		}
		if tt.want == http.StatusBadRequest {
			if got := decodeError(t, body); got.Error.Code != "unexpected_body" || !strings.Contains(got.Error.Message, "takes no body") {
				t.Errorf("GET %s with the body %q: %s, want unexpected_body", tt.path, tt.body, body)
			}
		}
	}
}

// TestErrors checks that bad requests get a stable code and a message that
// says how to fix them.
func TestErrors(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 3, Location: time.UTC, Now: time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC), Days: 2, Clients: 5, Shards: 1})
	e := newEnv(t, ds, defaultOptions())
	tests := []struct {
		name     string
		path     string
		params   url.Values
		status   int
		code     string
		field    string
		contains string
	}{
		{"unknown report", "/v1/reports/acquisition/nope", nil, 404, "unknown_report", "", `"nope" is not an acquisition report; valid: overview, channel, source`},
		{"unknown behavior report", "/v1/reports/behavior/page", nil, 404, "unknown_report", "", `"page" is not a behavior report; valid: overview, pages`},
		{"missing property", "/v1/reports/acquisition/channel", params("property_id", ""), 400, "missing_parameter", "property_id", "required"},
		{"bad property", "/v1/reports/acquisition/channel", params("property_id", "x"), 400, "invalid_parameter", "property_id", "UUID"},
		{"bad date", "/v1/reports/acquisition/channel", params("from", "1 March 2026", "to", "2026-03-01"), 400, "invalid_date", "from", "use YYYY-MM-DD"},
		{"no such month", "/v1/reports/acquisition/channel", params("from", "2026-13-01", "to", "2026-03-01"), 400, "invalid_date", "from", "no month 13 (YYYY-MM-DD: the month comes before the day)"},
		{"no such day", "/v1/reports/acquisition/channel", params("from", "2026-02-28", "to", "2026-02-30"), 400, "invalid_date", "to", "February 2026 has no day 30 (it has days 1 to 28)"},
		{"only from", "/v1/reports/acquisition/channel", params("from", "2026-03-01"), 400, "invalid_range", "from", "both"},
		{"reversed", "/v1/reports/acquisition/channel", params("from", "2026-03-02", "to", "2026-03-01"), 400, "invalid_range", "to", "before"},
		{"unknown preset", "/v1/reports/acquisition/channel", params("range", "last_week_or_so"), 400, "invalid_range", "range", "last_7_days"},
		{"too long", "/v1/reports/acquisition/channel", params("from", "2024-01-01", "to", "2026-03-01"), 400, "range_too_long", "from,to", "from 2024-01-01 to 2026-03-01 is 791 days; a report covers at most 400"},
		{"centuries too long", "/v1/reports/acquisition/channel", params("from", "1970-01-01", "to", "9999-12-31"), 400, "range_too_long", "from,to", "from 1970-01-01 to 9999-12-31 is 2932897 days"},
		{"before 1970", "/v1/reports/acquisition/channel", params("from", "0001-01-01", "to", "0001-01-02"), 400, "invalid_date", "from", "before 1970-01-01"},
		{"unknown dimension", "/v1/reports/acquisition/query", params("dimensions", "planet"), 400, "unknown_dimension", "dimensions", "channel, source"},
		{"behavior dimension in acquisition", "/v1/reports/acquisition/query", params("dimensions", "page"), 400, "unknown_dimension", "dimensions", "valid:"},
		{"fixed dimensions", "/v1/reports/acquisition/channel", params("dimensions", "country"), 400, "fixed_dimensions", "dimensions", "/query"},
		{"unknown metric", "/v1/reports/acquisition/channel", params("metrics", "sessions,revenue"), 400, "unknown_metric", "metrics", "bounce_rate"},
		{"page metric on sessions", "/v1/reports/acquisition/channel", params("metrics", "exits"), 400, "unknown_metric", "metrics", "users, new_users"},
		{"incompatible dimensions", "/v1/reports/acquisition/query", params("dimensions", "country,device"), 400, "incompatible_dimensions", "dimensions", "(source, medium)"},
		{"incompatible filter", "/v1/reports/acquisition/channel", params("filter", "country==DE"), 400, "incompatible_dimensions", "dimensions", "channel and country"},
		{"bad filter", "/v1/reports/acquisition/channel", params("filter", "channel"), 400, "invalid_filter", "filter", "operator"},
		{"bad regex", "/v1/reports/acquisition/channel", params("filter", "channel=~(("), 400, "invalid_filter", "filter", "regular expression"},
		// It matched every row: the report was served unfiltered.
		{"filter without a value", "/v1/reports/acquisition/channel", params("filter", "channel=@"), 400, "invalid_filter", "filter", `condition "channel=@" has no value after "=@": dimension values are never empty`},
		{"filter on unknown dimension", "/v1/reports/acquisition/channel", params("filter", "planet==mars"), 400, "unknown_dimension", "filter", "planet"},
		{"bad granularity", "/v1/reports/acquisition/channel", params("granularity", "year"), 400, "invalid_granularity", "granularity", "hour, day, week or month"},
		{"hour with dimensions", "/v1/reports/acquisition/channel", params("granularity", "hour"), 400, "hour_unavailable", "granularity", "day"},
		{"bad sort", "/v1/reports/acquisition/channel", params("sort", "-revenue"), 400, "invalid_sort", "sort", "sessions"},
		{"sort by a field twice", "/v1/reports/acquisition/channel", params("sort", "users,-users"), 400, "invalid_sort", "sort", `sort gives "users" twice (users,-users)`},
		{"sort by a dimension twice", "/v1/reports/acquisition/channel", params("sort", "channel,sessions,channel"), 400, "invalid_sort", "sort", `"channel" twice`},
		// A - alone was "cannot sort by \"\"".
		{"sort by a - alone", "/v1/reports/acquisition/channel", params("sort", "-"), 400, "invalid_sort", "sort", "a - that names no field (-)"},
		{"sort by a - alone after a field", "/v1/reports/acquisition/channel", params("sort", "users,-"), 400, "invalid_sort", "sort", "-users for users descending"},
		{"bad limit", "/v1/reports/acquisition/channel", params("limit", "0"), 400, "invalid_limit", "limit", "1 to 10000"},
		{"bad compare", "/v1/reports/acquisition/channel", params("compare", "last_year"), 400, "invalid_compare", "compare", "previous_period"},
		{"bad format", "/v1/reports/acquisition/channel", params("format", "xml"), 400, "invalid_parameter", "format", "csv"},
		{"path without drill-down", "/v1/reports/behavior/pages", params("path", "/blog/"), 400, "unused_parameter", "path", "page_paths"},
		{"mixed metrics", "/v1/reports/behavior/overview", params("metrics", "exits,total_events"), 400, "incompatible_metrics", "metrics", "page metrics"},
		{"unknown realtime view", "/v1/reports/realtime/planets", nil, 404, "unknown_report", "", "pages"},
		{"bad window", "/v1/reports/realtime", params("window", "90"), 400, "invalid_window", "window", "1 to 30"},
	}
	t.Run("catalog", func(t *testing.T) {
		for _, f := range []struct{ path, report, dim, metric string }{
			{"/v1/reports/acquisition", "source_medium", "user_type", "conversion_rate"},
			{"/v1/reports/behavior", "page_paths", "event_label", "exit_rate"},
		} {
			status, body, _ := e.get(viewer, f.path, nil)
			var c struct {
				Reports    []struct{ Name string }       `json:"reports"`
				Dimensions []struct{ Name string }       `json:"dimensions"`
				Metrics    []struct{ Name, Kind string } `json:"metrics"`
			}
			if err := json.Unmarshal(body, &c); status != 200 || err != nil {
				t.Fatalf("%s: %d %v", f.path, status, err)
			}
			has := func(list []string, x string) bool { return slices.Contains(list, x) }
			var reports, dims, mets []string
			for _, r := range c.Reports {
				reports = append(reports, r.Name)
			}
			for _, d := range c.Dimensions {
				dims = append(dims, d.Name)
			}
			for _, m := range c.Metrics {
				mets = append(mets, m.Name)
			}
			if !has(reports, f.report) || !has(dims, f.dim) || !has(mets, f.metric) {
				t.Errorf("%s lists reports %v, dimensions %v, metrics %v", f.path, reports, dims, mets)
			}
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.params
			if p == nil {
				p = url.Values{}
			}
			status, body, _ := e.get(viewer, tt.path, p)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			got := decodeError(t, body)
			if got.Error.Code != tt.code || got.Error.Field != tt.field || !strings.Contains(got.Error.Message, tt.contains) {
				t.Errorf("error %+v; want code %q field %q and a message containing %q", got.Error, tt.code, tt.field, tt.contains)
			}
		})
	}
}

// TestAcceptNegotiation: the Accept header picks CSV only when the client
// prefers it. Any header naming text/csv was taken for CSV: a client
// refusing it (q=0) or preferring JSON got CSV, and the realtime summary,
// JSON only, answered 400 to a client that accepts JSON too.
func TestAcceptNegotiation(t *testing.T) {
	ds := dayDataset(time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, ds, defaultOptions())
	get := func(path, accept string) (int, string) {
		req, err := http.NewRequest("GET", path+"?property_id="+ds.Property.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		tenant.Sign(req.Header, viewer, secret, time.Now())
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	for _, c := range []struct{ accept, want string }{
		{"application/json, text/csv;q=0", "application/json"},
		{"application/json;q=1.0, text/csv;q=0.1", "application/json"},
		{"text/csv, application/json", "application/json"}, // a tie: the default
		{"text/csv", "text/csv"},
		{"text/csv, */*;q=0.5", "text/csv"},
		{"application/json;q=0.5, text/csv", "text/csv"},
		{"*/*", "application/json"},
	} {
		if status, ct := get(e.acq.URL+"/v1/reports/acquisition/channel", c.accept); status != http.StatusOK || !strings.HasPrefix(ct, c.want) {
			t.Errorf("Accept %q: %d %s, want 200 %s", c.accept, status, ct, c.want)
		}
	}
	for _, accept := range []string{"text/csv", "text/csv, application/json;q=0.5"} {
		if status, ct := get(e.beh.URL+"/v1/reports/realtime", accept); status != http.StatusOK || !strings.HasPrefix(ct, "application/json") {
			t.Errorf("realtime summary with Accept %q: %d %s, want 200 JSON (the summary is JSON only)", accept, status, ct)
		}
	}
}
