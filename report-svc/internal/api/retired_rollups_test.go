package api_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestSourceUsersPastTheExactLimit: a source whose mediums each hold fewer
// than sketch.ExactLimit users but which together hold more shows the
// users its own row would have held (a sketch.Set of every user of the
// source, as processing built it), clamped to new_users <= users <=
// sessions, with users_estimated; the medium report likewise.
func TestSourceUsersPastTheExactLimit(t *testing.T) {
	day := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	ds := dayDataset(day)
	e := newEnv(t, ds, defaultOptions())
	type part struct {
		source, medium string
		shard          int
		from, to       int // users u<from>..u<to-1>
		newUsers       int64
	}
	parts := []part{
		{"google", "organic", 0, 0, 400, 300},
		{"google", "cpc", 0, 300, 700, 350},
		{"google", "organic", 1, 650, 1000, 100},
		{"bing", "organic", 1, 900, 1300, 0},
	}
	sets := map[string]*sketch.Set{}
	sums := map[string]*rollup.Metrics{}
	add := func(key string, p part) {
		if sets[key] == nil {
			sets[key], sums[key] = &sketch.Set{}, &rollup.Metrics{}
		}
		for u := p.from; u < p.to; u++ {
			sets[key].Add(fmt.Sprintf("u%d", u))
		}
		sums[key].Add(rollup.Metrics{Sessions: int64(p.to - p.from), NewUsers: p.newUsers}, 1)
	}
	for _, p := range parts {
		var users sketch.Set
		for u := p.from; u < p.to; u++ {
			users.Add(fmt.Sprintf("u%d", u))
		}
		row := rollup.Row{Day: day, Report: rollup.SourceMedium, Dimension: rollup.JoinDimension(p.source, p.medium), Shard: p.shard, Users: users,
			Metrics: rollup.Metrics{Sessions: int64(p.to - p.from), NewUsers: p.newUsers}}
		vals, err := row.Values()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.writer.Query(rollup.InsertDaily, append(append([]any{ds.Property}, vals...), int64(1), nil)...).Exec(); err != nil {
			t.Fatal(err)
		}
		add("source|"+p.source, p)
		add("medium|"+p.medium, p)
	}
	for _, report := range []string{"source", "medium"} {
		r := e.mustReport("/v1/reports/acquisition/"+report, params("from", "2026-03-18", "to", "2026-03-18", "metrics", "users,new_users,sessions"))
		if len(r.Rows) != 2 {
			t.Fatalf("%s report: %d rows, want 2", report, len(r.Rows))
		}
		for _, row := range r.Rows {
			k := report + "|" + fmt.Sprint(row[report])
			m := sums[k]
			want := min(max(int64(sets[k].Count()), m.NewUsers), m.Sessions)
			if got := row["users"].(float64); got != float64(want) || row["sessions"].(float64) != float64(m.Sessions) {
				t.Errorf("%s: users %v, sessions %v; want %d (its own row's sketch), %d", k, got, row["sessions"], want, m.Sessions)
			}
		}
		if !r.UsersEstim {
			t.Errorf("%s report: users_estimated false with a row past %d users", report, sketch.ExactLimit)
		}
	}
}

// TestEmptySourceAndMedium: an empty source or medium (the measurement
// protocol's cs= or cm= sent empty) is a row of the source and medium
// reports of its own, as it was in their own rollups.
func TestEmptySourceAndMedium(t *testing.T) {
	day := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	ds := dayDataset(day)
	for i, sm := range [][2]string{{"", "cpc"}, {"", "cpc"}, {"x", ""}, {"", ""}, {"x", "cpc"}} {
		start := day.Add(10*time.Hour + time.Duration(i)*time.Minute)
		ds.Sessions = append(ds.Sessions, &reporttest.Session{
			Client: fmt.Sprintf("c%d", i), Start: start, Day: day, Hour: 10,
			Channel: "Direct", Source: sm[0], Medium: sm[1], Campaign: "(not set)", Referrer: "(none)",
			Country: "DE", Device: "desktop", Browser: "Firefox", OS: "Linux", New: true,
			Pageviews: []reporttest.Pageview{{Path: "/", At: start, TimeMS: -1}},
		})
	}
	e := newEnv(t, ds, defaultOptions())
	for report, want := range map[string][]string{
		"source": {"=3/3", "x=2/2"},
		"medium": {"=2/2", "cpc=3/3"},
	} {
		r := e.mustReport("/v1/reports/acquisition/"+report, params("from", "2026-03-18", "to", "2026-03-18", "metrics", "sessions,users"))
		var got []string
		for _, row := range r.Rows {
			got = append(got, fmt.Sprintf("%v=%v/%v", row[report], row["sessions"], row["users"]))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || r.Totals["sessions"] != 5 {
			t.Errorf("%s report: %q, total %v; want %q, 5", report, got, r.Totals["sessions"], want)
		}
	}
}
