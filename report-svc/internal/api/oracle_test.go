package api_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// The oracle computes what every report must say straight from the data
// set's sessions, with the definitions of docs/processing.md, without the
// rollup rows or the query engine.

// oagg is the expected sums of a report row.
type oagg struct {
	sessions, newUsers, engaged, bounces, durationMS, pageviews, events, conversions int64
	convValue                                                                        float64
	users                                                                            map[string]bool
	upv, entrances, exits, topMS, topViews                                           int64
	uniqueEvents                                                                     int64
	eventValue                                                                       float64
	hits                                                                             int64
}

func newOagg() *oagg { return &oagg{users: map[string]bool{}} }

func (a *oagg) addSession(s *reporttest.Session) {
	a.sessions++
	if s.New {
		a.newUsers++
	}
	if s.Engaged() {
		a.engaged++
	}
	if s.Bounce() {
		a.bounces++
	}
	a.durationMS += s.DurationMS
	a.pageviews += int64(len(s.Pageviews))
	a.events += int64(len(s.Events))
	a.conversions += int64(s.Conversions)
	a.convValue += s.ConversionValue
	a.users[s.Client] = true
}

func (a *oagg) add(o *oagg) {
	a.sessions += o.sessions
	a.newUsers += o.newUsers
	a.engaged += o.engaged
	a.bounces += o.bounces
	a.durationMS += o.durationMS
	a.pageviews += o.pageviews
	a.events += o.events
	a.conversions += o.conversions
	a.convValue += o.convValue
	for u := range o.users {
		a.users[u] = true
	}
	a.upv += o.upv
	a.entrances += o.entrances
	a.exits += o.exits
	a.topMS += o.topMS
	a.topViews += o.topViews
	a.uniqueEvents += o.uniqueEvents
	a.eventValue += o.eventValue
	a.hits += o.hits
}

func div(n, d float64) float64 {
	if d == 0 {
		return 0
	}
	return n / d
}

// metric returns the expected value of a metric of scope.
func (a *oagg) metric(scope, name string) float64 {
	f := func(n int64) float64 { return float64(n) }
	switch scope {
	case "session":
		switch name {
		case "users":
			return f(int64(len(a.users)))
		case "new_users":
			return f(a.newUsers)
		case "sessions":
			return f(a.sessions)
		case "engaged_sessions":
			return f(a.engaged)
		case "engagement_rate":
			return div(f(a.engaged), f(a.sessions))
		case "bounces":
			return f(a.bounces)
		case "bounce_rate":
			return div(f(a.bounces), f(a.sessions))
		case "avg_session_duration":
			return div(f(a.durationMS), f(a.sessions)) / 1000
		case "pageviews":
			return f(a.pageviews)
		case "pages_per_session":
			return div(f(a.pageviews), f(a.sessions))
		case "events":
			return f(a.events)
		case "conversions":
			return f(a.conversions)
		case "conversion_rate":
			return div(f(a.conversions), f(a.sessions))
		case "goal_value":
			return a.convValue
		}
	case "page":
		switch name {
		case "pageviews":
			return f(a.pageviews)
		case "unique_pageviews":
			return f(a.upv)
		case "avg_time_on_page":
			return div(f(a.topMS), f(a.topViews)) / 1000
		case "entrances":
			return f(a.entrances)
		case "exits":
			return f(a.exits)
		case "exit_rate":
			return div(f(a.exits), f(a.pageviews))
		case "bounces":
			return f(a.bounces)
		case "bounce_rate":
			return div(f(a.bounces), f(a.entrances))
		}
	case "event":
		switch name {
		case "total_events":
			return f(a.events)
		case "unique_events":
			return f(a.uniqueEvents)
		case "event_value":
			return a.eventValue
		case "avg_event_value":
			return div(a.eventValue, f(a.events))
		}
	case "filtered":
		if name == "hits" {
			return f(a.hits)
		}
	}
	panic("oracle: no metric " + scope + "/" + name)
}

var sessionMetrics = []string{"users", "new_users", "sessions", "engaged_sessions", "engagement_rate", "bounces", "bounce_rate",
	"avg_session_duration", "pageviews", "pages_per_session", "events", "conversions", "conversion_rate", "goal_value"}
var pageMetrics = []string{"pageviews", "unique_pageviews", "avg_time_on_page", "entrances", "exits", "exit_rate", "bounces", "bounce_rate"}
var eventMetrics = []string{"total_events", "unique_events", "event_value", "avg_event_value"}

// sessionValue is a session's value of an acquisition dimension.
func sessionValue(s *reporttest.Session, name string) string {
	switch name {
	case "channel":
		return s.Channel
	case "source":
		return s.Source
	case "medium":
		return s.Medium
	case "source_medium":
		return s.Source + " / " + s.Medium
	case "campaign":
		return s.Campaign
	case "referrer":
		return s.Referrer
	case "landing_page":
		return s.Landing()
	case "country":
		return s.Country
	case "device":
		return s.Device
	case "browser":
		return s.Browser
	case "os":
		return s.OS
	case "user_type":
		return s.UserType()
	}
	panic("oracle: no session dimension " + name)
}

// drill is the page-path drill-down: the page, or the directory directly
// under dir that holds it.
func drill(path, dir string) (string, bool) {
	if !strings.HasPrefix(path, dir) {
		return "", false
	}
	rest := path[len(dir):]
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if j := strings.Index(rest, "/"); j >= 0 {
		return dir + rest[:j+1], true
	}
	return path, true
}

// spec is a report as the oracle understands it.
type spec struct {
	scope    string // session, page, event, filtered
	from, to time.Time
	gran     string
	dims     []string
	level    int    // events: 1 category, 2 action, 3 label
	dir      string // page_path drill-down directory
	pred     func(v func(string) string) bool
	nonZero  string // drop rows where this metric is zero
}

type orow struct {
	label string
	dims  []string
	agg   *oagg
}

func label(day time.Time, hour int, gran string) string {
	switch gran {
	case "hour":
		return fmt.Sprintf("%sT%02d", day.Format(time.DateOnly), hour)
	case "day":
		return day.Format(time.DateOnly)
	case "week":
		y, w := day.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	case "month":
		return day.Format("2006-01")
	}
	return ""
}

func rowKey(label string, dims []string) string { return label + "\x00" + strings.Join(dims, "\x00") }

// expect returns the expected rows (by rowKey) and totals.
func (sp spec) expect(ds *reporttest.Dataset) (map[string]*orow, *oagg) {
	rows := map[string]*orow{}
	total := newOagg()
	in := func(day time.Time) bool { return !day.Before(sp.from) && !day.After(sp.to) }
	put := func(lbl string, v func(string) string, a *oagg) {
		if sp.pred != nil && !sp.pred(v) {
			return
		}
		dims := make([]string, len(sp.dims))
		for i, d := range sp.dims {
			dims[i] = v(d)
		}
		k := rowKey(lbl, dims)
		r := rows[k]
		if r == nil {
			r = &orow{label: lbl, dims: dims, agg: newOagg()}
			rows[k] = r
		}
		r.agg.add(a)
		total.add(a)
	}
	switch sp.scope {
	case "session":
		for _, s := range ds.Sessions {
			if !in(s.Day) {
				continue
			}
			a := newOagg()
			a.addSession(s)
			put(label(s.Day, s.Hour, sp.gran), func(n string) string { return sessionValue(s, n) }, a)
		}
	case "page":
		for _, s := range ds.Sessions {
			if !in(s.Day) {
				continue
			}
			lbl := label(s.Day, s.Hour, sp.gran)
			contrib := func(path string, a *oagg) {
				v := func(n string) string {
					if n == "page_path" {
						p, _ := drill(path, sp.dir)
						return p
					}
					return path
				}
				if sp.dir != "" {
					if _, ok := drill(path, sp.dir); !ok {
						return
					}
				}
				put(lbl, v, a)
			}
			viewed := map[string]bool{}
			for _, pv := range s.Pageviews {
				a := newOagg()
				a.pageviews = 1
				if pv.TimeMS >= 0 {
					a.topMS, a.topViews = pv.TimeMS, 1
				}
				if !viewed[pv.Path] {
					viewed[pv.Path] = true
					a.upv = 1
				}
				contrib(pv.Path, a)
			}
			if len(s.Pageviews) > 0 {
				a := newOagg()
				a.entrances = 1
				if s.Bounce() {
					a.bounces = 1
				}
				contrib(s.Landing(), a)
				a = newOagg()
				a.exits = 1
				contrib(s.Exit(), a)
			}
		}
	case "event":
		for _, s := range ds.Sessions {
			if !in(s.Day) {
				continue
			}
			seen := map[string]bool{}
			for _, e := range s.Events {
				parts := []string{e.Category, e.Action, e.Label}
				k := strings.Join(parts[:sp.level], "\x00")
				a := newOagg()
				a.events, a.eventValue = 1, e.Value
				if !seen[k] {
					seen[k] = true
					a.uniqueEvents = 1
				}
				put(label(s.Day, 0, sp.gran), func(n string) string {
					switch n {
					case "event_category":
						return e.Category
					case "event_action":
						return e.Action
					}
					return e.Label
				}, a)
			}
		}
	case "filtered":
		for _, f := range ds.Filtered {
			if !in(f.Day) {
				continue
			}
			a := newOagg()
			a.hits = f.Hits
			put(label(f.Day, 0, sp.gran), func(string) string { return f.Reason }, a)
		}
	}
	if sp.nonZero != "" {
		for k, r := range rows {
			if r.agg.metric(sp.scope, sp.nonZero) == 0 {
				delete(rows, k)
			}
		}
	}
	return rows, total
}

// closeEnough compares a served value with the expected one: exactly for
// counts, to rounding for ratios, and within 3 standard errors of the
// HyperLogLog for users past the exact limit.
func closeEnough(metric string, got, want float64) bool {
	if metric == "users" && want > 512 {
		return math.Abs(got-want) <= 3*0.0081*want
	}
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

// check compares a served report with the oracle's rows and totals.
func check(t *testing.T, got *report, sp spec, ds *reporttest.Dataset, metrics []string) {
	t.Helper()
	want, total := sp.expect(ds)
	if got.RowCount != len(got.Rows) {
		t.Fatalf("row_count %d but %d rows served (the test expects one page)", got.RowCount, len(got.Rows))
	}
	seen := map[string]bool{}
	for _, row := range got.Rows {
		lbl, _ := row["period"].(string)
		dims := make([]string, len(sp.dims))
		for i, d := range sp.dims {
			dims[i], _ = row[d].(string)
		}
		k := rowKey(lbl, dims)
		if seen[k] {
			t.Errorf("row %q served twice", k)
		}
		seen[k] = true
		w := want[k]
		if w == nil {
			// A time series without dimensions shows every period.
			zero := len(sp.dims) == 0 && sp.gran != ""
			for _, m := range metrics {
				if v, _ := row[m].(float64); v != 0 {
					zero = false
				}
			}
			if !zero {
				t.Errorf("unexpected row %q: %v", k, row)
			}
			continue
		}
		for _, m := range metrics {
			v, ok := row[m].(float64)
			if !ok {
				t.Errorf("row %q: no metric %s", k, m)
				continue
			}
			if e := w.agg.metric(sp.scope, m); !closeEnough(m, v, e) {
				t.Errorf("row %q: %s = %v, want %v", strings.ReplaceAll(k, "\x00", "|"), m, v, e)
			}
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("missing row %q", strings.ReplaceAll(k, "\x00", "|"))
		}
	}
	for _, m := range metrics {
		if e := total.metric(sp.scope, m); !closeEnough(m, got.Totals[m], e) {
			t.Errorf("totals: %s = %v, want %v", m, got.Totals[m], e)
		}
	}
}

// sortedKeys lists the expected rows in the order of the given metric,
// largest first, ties by dimension values.
func sortedRows(want map[string]*orow, scope, metric string) []*orow {
	var out []*orow
	for _, r := range want {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *orow) int {
		va, vb := a.agg.metric(scope, metric), b.agg.metric(scope, metric)
		if va != vb {
			if va > vb {
				return -1
			}
			return 1
		}
		return slices.Compare(a.dims, b.dims)
	})
	return out
}
