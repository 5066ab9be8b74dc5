package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/report-svc/internal/api"
	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestALargePartitionIsNoStoreFailure: a merchant whose page partitions
// span several of the store's pages (each answered in time, the whole
// read longer than -store-timeout) gets its report, and the breaker,
// shared by every merchant, stays closed. Before 2026-12-07 the time
// limit covered every page of a read: such a read timed out on a healthy
// store, and a few of them opened the breaker for every merchant.
func TestALargePartitionIsNoStoreFailure(t *testing.T) {
	e := uncachedEnv(t, 50, 2*time.Second, 2)

	big := gocql.MustRandomUUID()
	e.lookup[big.String()] = api.PropertyInfo{TenantID: "tenant-big", Location: time.UTC}
	const rows = 10000 // two pages of 5,000
	for d := 11; d <= 13; d++ {
		day := time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC)
		for i := 0; i < rows; i += 200 {
			b := e.writer.NewBatch(gocql.UnloggedBatch)
			for j := i; j < i+200; j++ {
				r := rollup.Row{Day: day, Report: rollup.Page, Dimension: fmt.Sprintf("/p/%06d", j), Metrics: rollup.Metrics{Pageviews: 1, UniquePageviews: 1}}
				vals, err := r.Values()
				if err != nil {
					t.Fatal(err)
				}
				b.Query(rollup.InsertDaily, append(append([]any{big}, vals...), int64(1), nil)...)
			}
			if err := e.writer.ExecuteBatch(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	bigViewer := viewer
	bigViewer.TenantID = "tenant-big"
	// Its statements prepared (a day's report), then every page of every
	// read answers 1.2 s late: within the time limit (with room for a
	// machine slowed by the race detector), and a partition of two pages
	// in 2.4 s and more, over it.
	if st, body, _ := e.get(bigViewer, "/v1/reports/behavior/pages", params("property_id", big.String(), "from", "2026-03-11", "to", "2026-03-11", "limit", "1")); st != http.StatusOK {
		t.Fatalf("the large merchant's day: %d %.300s", st, body)
	}
	e.cql.SetLatency(1200 * time.Millisecond)
	defer e.cql.SetLatency(0)
	st, body, _ := e.get(bigViewer, "/v1/reports/behavior/pages", params("property_id", big.String(), "from", "2026-03-11", "to", "2026-03-13", "limit", "1"))
	if st != http.StatusOK || !strings.Contains(string(body), `"pageviews":3`) {
		t.Fatalf("the large merchant's pages: %d %.300s, want its report (each page 3 pageviews)", st, body)
	}
	if got := e.store.BreakerState(); got != "closed" {
		t.Fatalf("breaker %s after a large partition read page by page, want closed", got)
	}
	if st, body, _ := e.get(viewer, "/v1/reports/acquisition/overview", params("range", "last_14_days", "metrics", "sessions")); st != http.StatusOK {
		t.Fatalf("another merchant after it: %d %s", st, body)
	}
}

// TestAStoreTimeoutIsNotReadAgain: identical concurrent reports share
// their reads; a read the store did not answer in time fails each of them
// at once, not read again by every one that shared it (each waiting its
// time limit again, and counting against the breaker again).
func TestAStoreTimeoutIsNotReadAgain(t *testing.T) {
	e := uncachedEnv(t, 20, 100*time.Millisecond, 1000)
	var reads atomic.Int64
	e.cql.SetFault(func(cql string) cqlserver.Fault {
		if strings.Contains(cql, "FROM rollup_daily") {
			reads.Add(1)
		}
		return cqlserver.NoFault
	})
	e.mustReport("/v1/reports/acquisition/overview", params("from", "2026-03-14", "to", "2026-03-14", "metrics", "sessions")) // statements prepared
	e.cql.SetLatency(300 * time.Millisecond)
	defer e.cql.SetLatency(0)
	count := func(day string, requests int) int64 {
		reads.Store(0)
		var wg sync.WaitGroup
		for range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, body, _ := e.get(viewer, "/v1/reports/acquisition/overview", params("from", day, "to", day, "metrics", "sessions")); st != http.StatusServiceUnavailable {
					t.Errorf("a report whose reads time out: %d %.200s, want 503", st, body)
				}
			}()
		}
		wg.Wait()
		time.Sleep(400 * time.Millisecond) // the reads the store still answers
		return reads.Load()
	}
	alone, together := count("2026-03-15", 1), count("2026-03-16", 2)
	if together != alone {
		t.Fatalf("two identical reports at once read rollup_daily %d times, one alone %d: want the same reads", together, alone)
	}
}

// uncachedEnv is an env of 10 days of a UTC property's traffic (clients
// visitors), whose store reads have the time limit timeout and whose
// breaker opens for 30 s after failures, without a day cache: every
// report reads the store.
func uncachedEnv(t *testing.T, clients int, timeout time.Duration, failures uint) *env {
	ds := reporttest.Generate(reporttest.Config{Seed: 4, Location: time.UTC, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC),
		Days: 10, Clients: clients, Shards: 1})
	o := defaultOptions()
	o.store.Timeout, o.store.BreakerFailures, o.store.BreakerOpen = timeout, failures, 30*time.Second
	o.engine.DayCacheBytes = 0
	return newEnv(t, ds, o)
}
