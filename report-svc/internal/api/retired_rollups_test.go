package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestSourceReportsOfDaysWrittenBeforeEscaping: the source and medium
// reports of a day whose rows a build before 2026-12-05 wrote (its
// source_medium rows joined with " / " unescaped, beside the source and
// medium rollups it also wrote) show what they showed while those reports
// had rows of their own (the release note of session 24: "the same
// numbers exactly", "the new build is right either way"). The expected
// values come from the sessions, not from the engine: per source (or
// medium), the sessions whose source (medium) it is.
//
// Two days: one written wholly by the old build, and the day the escaping
// build was rolled out on, where a session moved by a late hit after the
// rollout left the old-form row (2 sessions) as it was and was taken out
// of the new-form row (-1), as the note "Dimension values holding ` / `"
// of docs/operations.md describes; the old build's single-part source row
// took it out of the one row (2 - 1 = 1).
func TestSourceReportsOfDaysWrittenBeforeEscaping(t *testing.T) {
	old := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	rollout := old.AddDate(0, 0, 1)
	ds := dayDataset(rollout)
	e := newEnv(t, ds, defaultOptions())

	type row struct {
		day               time.Time
		report, dimension string
		sessions          int64
		users             []string
	}
	oldJoin := func(source, medium string) string { return source + rollup.Separator + medium }
	rows := []row{
		// The old build's day: sessions by (source, medium).
		{old, rollup.Total, "", 9, []string{"a1", "a2", "a3", "a4", "a5", "b1", "b2", "c1", "c2"}},
		{old, rollup.SourceMedium, oldJoin("news / letter", "email"), 5, []string{"a1", "a2", "a3", "a4", "a5"}},
		{old, rollup.SourceMedium, oldJoin(`C:\tmp`, "referral"), 2, []string{"b1", "b2"}},
		{old, rollup.SourceMedium, oldJoin("google", `a\b`), 2, []string{"c1", "c2"}},
		{old, rollup.RetiredSource, "news / letter", 5, []string{"a1", "a2", "a3", "a4", "a5"}},
		{old, rollup.RetiredSource, `C:\tmp`, 2, []string{"b1", "b2"}},
		{old, rollup.RetiredSource, "google", 2, []string{"c1", "c2"}},
		{old, rollup.RetiredMedium, "email", 5, []string{"a1", "a2", "a3", "a4", "a5"}},
		{old, rollup.RetiredMedium, "referral", 2, []string{"b1", "b2"}},
		{old, rollup.RetiredMedium, `a\b`, 2, []string{"c1", "c2"}},
		// The rollout day: d1 and d2 came from news / letter by email
		// before the rollout; after it a late hit moved d2's session to
		// google / organic.
		{rollout, rollup.Total, "", 2, []string{"d1", "d2"}},
		{rollout, rollup.SourceMedium, oldJoin("news / letter", "email"), 2, []string{"d1", "d2"}},
		{rollout, rollup.SourceMedium, rollup.JoinDimension("news / letter", "email"), -1, nil},
		{rollout, rollup.SourceMedium, rollup.JoinDimension("google", "organic"), 1, []string{"d2"}},
		{rollout, rollup.RetiredSource, "news / letter", 1, []string{"d1"}},
		{rollout, rollup.RetiredSource, "google", 1, []string{"d2"}},
		{rollout, rollup.RetiredMedium, "email", 1, []string{"d1"}},
		{rollout, rollup.RetiredMedium, "organic", 1, []string{"d2"}},
	}
	for _, r := range rows {
		var users sketch.Set
		for _, u := range r.users {
			users.Add(u)
		}
		stored := rollup.Row{Day: r.day, Report: r.report, Dimension: r.dimension, Users: users,
			Metrics: rollup.Metrics{Sessions: r.sessions}}
		vals, err := stored.Values()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.writer.Query(rollup.InsertDaily, append(append([]any{ds.Property}, vals...), int64(1))...).Exec(); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		day, report string
		want        []string // value=sessions/users, sorted
	}{
		{"2026-03-18", "source", []string{`C:\tmp=2/2`, "google=2/2", "news / letter=5/5"}},
		{"2026-03-18", "medium", []string{`a\b=2/2`, "email=5/5", "referral=2/2"}},
		{"2026-03-19", "source", []string{"google=1/1", "news / letter=1/1"}},
		{"2026-03-19", "medium", []string{"email=1/1", "organic=1/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.day+"/"+tt.report, func(t *testing.T) {
			r := e.mustReport("/v1/reports/acquisition/"+tt.report, params("from", tt.day, "to", tt.day, "metrics", "sessions,users"))
			var got []string
			for _, row := range r.Rows {
				got = append(got, fmt.Sprintf("%v=%v/%v", row[tt.report], row["sessions"], row["users"]))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s report of %s:\n got %s\nwant %s", tt.report, tt.day, strings.Join(got, ", "), strings.Join(tt.want, ", "))
			}
		})
	}
}

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
		if err := e.writer.Query(rollup.InsertDaily, append(append([]any{ds.Property}, vals...), int64(1))...).Exec(); err != nil {
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
