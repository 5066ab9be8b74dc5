package query

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/gocql/gocql"
)

// TestReportHoldsTheUnitsInFlight: a report folds each day into its rows
// as soon as it and the days before it are read, and drops it, and reads a
// day only while it holds fewer than -day-concurrency. It held every day
// of its range until all were read: a month of a large property's pages
// (millions of rows, each with its users sketch) took gigabytes, where the
// report's own rows (the distinct pages) are a thirtieth of that. (With
// the store in its own process, CASSANDRA_HOSTS, this test's report peaked
// at 50 MiB of heap before, 17 MiB after.)
func TestReportHoldsTheUnitsInFlight(t *testing.T) {
	ctx := context.Background()
	session := testSession(t)
	property := gocql.MustRandomUUID()
	const days, pages = 30, 3000
	first := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	pad := strings.Repeat("x", 60)
	for d := range days {
		day := first.AddDate(0, 0, d)
		for start := 0; start < pages; start += 100 {
			b := session.NewBatch(gocql.UnloggedBatch)
			for i := start; i < start+100; i++ {
				r := rollup.Row{Day: day, Report: rollup.Page, Dimension: fmt.Sprintf("/p/%d/%s", i, pad),
					Metrics: rollup.Metrics{Pageviews: 3, UniquePageviews: 2}}
				for u := range 40 {
					r.Users.Add(fmt.Sprintf("c%d-%d-%d", d, i, u))
				}
				vals, err := r.Values()
				if err != nil {
					t.Fatal(err)
				}
				b.Query(rollup.InsertDaily, append(append([]any{property}, vals...), int64(1), nil)...)
			}
			if err := session.ExecuteBatch(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := first.AddDate(0, 0, days+3)
	e := testEngine(session, func() time.Time { return now })
	e.cfg.DayCacheBytes = 0
	e.cfg.DayConcurrency = 4
	e.cfg.ComputeTimeout = time.Minute
	q := parseQuery(t, fmt.Sprintf("from=%s&to=%s&metrics=pageviews,unique_pageviews", first.Format(time.DateOnly), first.AddDate(0, 0, days-1).Format(time.DateOnly)), now)

	var most atomic.Int64
	e.held = func(n int) {
		for m := most.Load(); int64(n) > m && !most.CompareAndSwap(m, int64(n)); m = most.Load() {
		}
	}
	ans, err := e.Report(ctx, Property{ID: property, Location: time.UTC}, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Rows) != pages || ans.Totals[0] != 3*days*pages {
		t.Fatalf("%d rows, %v pageviews; want %d, %d", len(ans.Rows), ans.Totals[0], pages, 3*days*pages)
	}
	if m := most.Load(); m == 0 || m > int64(e.cfg.DayConcurrency) {
		t.Errorf("the report held %d days read and not folded at once, of %d; want at most -day-concurrency, %d", m, days, e.cfg.DayConcurrency)
	}
}
