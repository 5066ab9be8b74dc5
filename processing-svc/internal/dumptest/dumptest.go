// Package dumptest renders what processing stored as sorted text, for
// tests that compare the tables of two runs (a disturbed one with an
// undisturbed one).
package dumptest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/gocql/gocql"
)

// Pipeline are the tables processing writes from hits, and those it
// wrote before (raw_hits, raw_hit_blocks, sessions, pageviews, events:
// reprocessing reads them, and deletes the entity rows of the days it
// re-derives).
var Pipeline = []string{"raw_hits", "raw_hit_blocks", "raw_hit_blocks_by_hour", "visitor_state", "site_users",
	"sessions", "pageviews", "events", "sessions_by_hour", "pageviews_by_hour", "events_by_hour",
	"rollup_daily", "rollup_hourly", "filtered_hits", "realtime_minutes"}

// Tables renders every row of tables in s's keyspace, a line each,
// sorted, without the offsets (and the Kafka partition) through which rows
// and visitor states include hits (applied_offset, through_offset,
// through_partition): they record flush boundaries and who wrote a row
// (live processing or reprocessing), which differ between runs by
// construction; the data must not.
func Tables(t testing.TB, s *gocql.Session, tables ...string) string {
	t.Helper()
	var out []string
	for _, table := range tables {
		iter := s.Query("SELECT * FROM " + table).Iter()
		rows, err := iter.SliceMap()
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		for _, r := range rows {
			delete(r, "applied_offset")
			delete(r, "through_offset")
			delete(r, "through_partition")
			keys := make([]string, 0, len(r))
			for k := range r {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			b.WriteString(table)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%v", k, r[k])
			}
			out = append(out, b.String())
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
