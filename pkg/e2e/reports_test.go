package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/simulate"
	"github.com/acme/analytics/pkg/sketch"
)

// reportAnswer is the part of a report response the tests read.
type reportAnswer struct {
	Rows           []map[string]any `json:"rows"`
	Totals         map[string]any   `json:"totals"`
	PreviousTotals map[string]any   `json:"previous_totals"`
	// Stale marks a cached result served because computing it failed
	// just then (docs/reports.md): the tests ask again for current numbers.
	Stale bool `json:"stale"`
}

// getReport calls a report through the gateway as the merchant, waiting
// out a 503 and the tenant's rate limit (429), as a client should, and
// asking again while the answer is stale.
func getReport(ctx context.Context, t *testing.T, client *http.Client, m *simulate.Merchant, path string, q url.Values) reportAnswer {
	t.Helper()
	q = maps.Clone(q)
	q.Set("property_id", m.PropertyID)
	q.Set("limit", "10000")
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", m.Gateway+path+"?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+m.AccessToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s?%s: %s: %s", path, q.Encode(), resp.Status, body)
		}
		var a reportAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
		if a.Stale && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		return a
	}
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// compareReports reads every acquisition report and the pages, events,
// exit pages and filtered-traffic reports of each day through the
// gateway, and the whole range's totals, and compares them with the
// expectation: counts exactly, users within the sketches' error.
func compareReports(t *testing.T, client *http.Client, m *simulate.Merchant, e *simulate.Expectation) {
	t.Helper()
	ctx := context.Background()
	mismatches := 0
	report := func(format string, args ...any) {
		mismatches++
		if mismatches <= 30 {
			t.Errorf(format, args...)
		}
	}
	usersOK := func(got float64, want int) bool {
		if want <= sketch.ExactLimit {
			return got == float64(want)
		}
		return math.Abs(got-float64(want)) <= 4*sketch.StandardError*float64(want)+0.5
	}
	acquisition := map[string]string{"channel": "channel", "source": "source", "medium": "medium", "campaign": "campaign",
		"referrer": "referrer", "landing_page": "landing_page", "device": "device", "browser": "browser", "user_type": "user_type", "country": "country"}
	days := e.SortedDays()
	for _, day := range days {
		for rep, dim := range acquisition {
			q := url.Values{"from": {day}, "to": {day}, "metrics": {"users,new_users,sessions,engaged_sessions,conversions"}}
			a := getReport(ctx, t, client, m, "/v1/reports/acquisition/"+rep, q)
			got := map[string]map[string]any{}
			for _, r := range a.Rows {
				got[fmt.Sprint(r[dim])] = r
			}
			for value, want := range e.Days[day][rep] {
				g := got[value]
				if g == nil {
					report("%s %s %q: no row", day, rep, value)
					continue
				}
				for _, c := range []struct {
					name string
					want int64
				}{{"sessions", want.Sessions}, {"new_users", want.NewUsers}, {"engaged_sessions", want.Engaged}, {"conversions", want.Conversions}} {
					if int64(num(g[c.name])) != c.want {
						report("%s %s %q: %s = %v, want %d", day, rep, value, c.name, g[c.name], c.want)
					}
				}
				if !usersOK(num(g["users"]), len(want.Users)) {
					report("%s %s %q: users = %v, want %d", day, rep, value, g["users"], len(want.Users))
				}
			}
			if len(a.Rows) != len(e.Days[day][rep]) {
				report("%s %s: %d rows, want %d", day, rep, len(a.Rows), len(e.Days[day][rep]))
			}
		}
		q := url.Values{"from": {day}, "to": {day}, "metrics": {"pageviews,unique_pageviews,entrances,exits"}}
		a := getReport(ctx, t, client, m, "/v1/reports/behavior/pages", q)
		got := map[string]map[string]any{}
		for _, r := range a.Rows {
			got[fmt.Sprint(r["page"])] = r
		}
		for page, want := range e.Days[day]["page"] {
			g := got[page]
			if g == nil {
				report("%s pages %q: no row", day, page)
				continue
			}
			for _, c := range []struct {
				name string
				want int64
			}{{"pageviews", want.Pageviews}, {"unique_pageviews", want.UniquePageviews}, {"entrances", want.Entrances}, {"exits", want.Exits}} {
				if int64(num(g[c.name])) != c.want {
					report("%s pages %q: %s = %v, want %d", day, page, c.name, g[c.name], c.want)
				}
			}
		}
	}
	for _, day := range days {
		q := url.Values{"from": {day}, "to": {day}, "metrics": {"total_events,unique_events"}}
		a := getReport(ctx, t, client, m, "/v1/reports/behavior/events", q)
		got := map[string]map[string]any{}
		for _, r := range a.Rows {
			got[rollup.JoinDimension(fmt.Sprint(r["event_category"]), fmt.Sprint(r["event_action"]), fmt.Sprint(r["event_label"]))] = r
		}
		for ev, want := range e.Days[day]["event"] {
			g := got[ev]
			if g == nil || int64(num(g["total_events"])) != want.Events || int64(num(g["unique_events"])) != want.UniqueEvents {
				report("%s events %q: %v, want %d total, %d unique", day, ev, g, want.Events, want.UniqueEvents)
			}
		}
		q = url.Values{"from": {day}, "to": {day}, "metrics": {"exits"}}
		a = getReport(ctx, t, client, m, "/v1/reports/behavior/exit_pages", q)
		exits := map[string]int64{}
		for _, r := range a.Rows {
			exits[fmt.Sprint(r["page"])] = int64(num(r["exits"]))
		}
		for page, want := range e.Days[day]["page"] {
			if exits[page] != want.Exits {
				report("%s exit pages %q: %d exits, want %d", day, page, exits[page], want.Exits)
			}
		}
		q = url.Values{"from": {day}, "to": {day}, "metrics": {"hits"}}
		a = getReport(ctx, t, client, m, "/v1/reports/behavior/filtered", q)
		filtered := map[string]int64{}
		for _, r := range a.Rows {
			filtered[fmt.Sprint(r["reason"])] = int64(num(r["hits"]))
		}
		for reason, want := range e.Filtered[day] {
			if filtered[reason] != want {
				report("%s filtered %q: %d hits, want %d", day, reason, filtered[reason], want)
			}
		}
	}

	// The whole range: users are the union over the days.
	q := url.Values{"from": {days[0]}, "to": {days[len(days)-1]}, "metrics": {"users,sessions"}}
	a := getReport(ctx, t, client, m, "/v1/reports/acquisition/overview", q)
	var sessions int64
	for _, d := range days {
		sessions += e.Row(d, "total", "").Sessions
	}
	if int64(num(a.Totals["sessions"])) != sessions {
		report("range %s..%s: sessions %v, want %d", days[0], days[len(days)-1], a.Totals["sessions"], sessions)
	}
	if !usersOK(num(a.Totals["users"]), len(e.Users)) {
		report("range %s..%s: users %v, want %d", days[0], days[len(days)-1], a.Totals["users"], len(e.Users))
	}
	if mismatches > 0 {
		t.Errorf("%d report values differ from the expectation (%s)", mismatches, strings.Join(days, ", "))
	}
}
