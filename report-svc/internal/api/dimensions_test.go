package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestValuesHoldingTheSeparator: a source, an event category, action or
// label holding " / " (or starting or ending with "/", or holding a
// backslash) reads back as it was sent, in the reports of one column and
// in those that read it from a row of several (source_medium,
// event_action, event), filters included. The rows are those processing
// writes (reporttest.Derive uses pkg/rollup's encoding).
func TestValuesHoldingTheSeparator(t *testing.T) {
	day := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	ds := dayDataset(day)
	session := func(i int, channel, source, medium string, events ...reporttest.Event) {
		start := day.Add(10*time.Hour + time.Duration(i)*time.Minute)
		for j := range events {
			events[j].At = start.Add(time.Duration(j+1) * time.Second)
		}
		ds.Sessions = append(ds.Sessions, &reporttest.Session{
			Client: fmt.Sprintf("c%d", i), Start: start, Day: day, Hour: 10,
			Channel: channel, Source: source, Medium: medium, Campaign: "(not set)", Referrer: "(none)",
			Country: "DE", Device: "desktop", Browser: "Firefox", OS: "Linux", New: true,
			Pageviews: []reporttest.Pageview{{Path: "/", At: start, TimeMS: -1}}, Events: events,
			DurationMS: int64(len(events)) * 1000,
		})
	}
	for i := range 5 {
		session(i, "Email", "news / letter", "email")
	}
	session(5, "Organic Search", "google", "organic",
		reporttest.Event{Category: "Video / YouTube", Action: "play", Label: "intro"},
		reporttest.Event{Category: "video", Action: "play", Label: "intro"},
		reporttest.Event{Category: "a /", Action: "/ b", Label: `c\d`},
	)
	session(6, "Email", "mail /", "/ email")
	e := newEnv(t, ds, defaultOptions())

	// rows renders a report's rows as "dim|dim=metric", sorted.
	rows := func(path, metric string, kv ...string) ([]string, float64) {
		t.Helper()
		r := e.mustReport(path, params(append([]string{"from", "2026-03-18", "to", "2026-03-18", "metrics", metric}, kv...)...))
		var out []string
		for _, row := range r.Rows {
			var dims []string
			for _, d := range r.Dimensions {
				dims = append(dims, fmt.Sprint(row[d]))
			}
			out = append(out, fmt.Sprintf("%s=%v", strings.Join(dims, "|"), row[metric]))
		}
		slices.Sort(out)
		return out, r.Totals[metric]
	}
	tests := []struct {
		name, path, metric string
		params             []string
		want               []string
		total              float64
	}{
		{"source", "/v1/reports/acquisition/source", "sessions", nil,
			[]string{"google=1", "mail /=1", "news / letter=5"}, 7},
		{"source of a medium", "/v1/reports/acquisition/query", "sessions", []string{"dimensions", "source", "filter", "medium==email"},
			[]string{"news / letter=5"}, 5},
		{"medium of a source", "/v1/reports/acquisition/query", "sessions", []string{"dimensions", "medium", "filter", "source==mail /"},
			[]string{"/ email=1"}, 1},
		{"source_medium of a source", "/v1/reports/acquisition/source_medium", "sessions", []string{"filter", "source==news / letter"},
			[]string{"news / letter|email=5"}, 5},
		{"derived source_medium", "/v1/reports/acquisition/query", "sessions", []string{"dimensions", "source_medium"},
			[]string{"google / organic=1", "mail / / / email=1", "news / letter / email=5"}, 7},
		{"events", "/v1/reports/behavior/events", "total_events", nil,
			[]string{"Video / YouTube|play|intro=1", `a /|/ b|c\d=1`, "video|play|intro=1"}, 3},
		{"categories of an action", "/v1/reports/behavior/event_categories", "total_events", []string{"filter", "event_action==play"},
			[]string{"Video / YouTube=1", "video=1"}, 2},
		{"actions of a category", "/v1/reports/behavior/event_actions", "total_events", []string{"filter", "event_category==a /"},
			[]string{"a /|/ b=1"}, 1},
		{"labels", "/v1/reports/behavior/query", "total_events", []string{"dimensions", "event_label", "filter", "event_category=@/"},
			[]string{"c\\d=1", "intro=1"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, total := rows(tt.path, tt.metric, tt.params...)
			if !slices.Equal(got, tt.want) || total != tt.total {
				t.Errorf("rows %q, total %v; want %q, %v", got, total, tt.want, tt.total)
			}
		})
	}
}

// TestValuesHoldingANULByte: the rows of a report of several dimensions
// are told apart by all their values, whatever bytes the values hold
// (collection accepts any valid UTF-8, NUL included): category "a\x00b"
// with action "c" and category "a" with action "b\x00c" are two rows,
// not one row of both events under the first's name.
func TestValuesHoldingANULByte(t *testing.T) {
	day := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	ds := dayDataset(day)
	start := day.Add(10 * time.Hour)
	ds.Sessions = append(ds.Sessions, &reporttest.Session{
		Client: "c1", Start: start, Day: day, Hour: 10,
		Channel: "Direct", Source: "(direct)", Medium: "(none)", Campaign: "(not set)", Referrer: "(none)",
		Country: "DE", Device: "desktop", Browser: "Firefox", OS: "Linux", New: true,
		Pageviews: []reporttest.Pageview{{Path: "/", At: start, TimeMS: -1}},
		Events: []reporttest.Event{
			{Category: "a\x00b", Action: "c", Label: "x", At: start.Add(time.Second)},
			{Category: "a", Action: "b\x00c", Label: "x", At: start.Add(2 * time.Second)},
			{Category: "a", Action: "b\x00c", Label: "x", At: start.Add(3 * time.Second)},
		},
		DurationMS: 3000,
	})
	e := newEnv(t, ds, defaultOptions())
	for _, path := range []string{"/v1/reports/behavior/event_actions", "/v1/reports/behavior/events"} {
		r := e.mustReport(path, params("from", "2026-03-18", "to", "2026-03-18", "metrics", "total_events"))
		got := map[string]float64{}
		for _, row := range r.Rows {
			got[fmt.Sprint(row["event_category"])+"|"+fmt.Sprint(row["event_action"])] += row["total_events"].(float64)
		}
		want := map[string]float64{"a\x00b|c": 1, "a|b\x00c": 2}
		if len(r.Rows) != 2 || got["a\x00b|c"] != 1 || got["a|b\x00c"] != 2 {
			t.Errorf("%s: %d rows %v; want %v", path, len(r.Rows), got, want)
		}
	}
}
