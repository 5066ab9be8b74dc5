// Package dumptest renders what processing stored as sorted text, for
// tests that compare the tables of two runs (a disturbed one with an
// undisturbed one).
package dumptest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/sketch"
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
// construction; the data must not. For the same reason it leaves out the
// additive rows that count nothing (empty): live processing keeps a row
// whose last session a late hit moved elsewhere, with every value zero,
// which no report shows, and whether a run passes through the state that
// made the row depends on how its hits were batched (a visitor's hits of
// one batch are derived together).
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
			if keys, additive := additiveKeys[table]; additive && empty(r, keys) {
				continue
			}
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

// additiveKeys are the key columns of the additive tables.
var additiveKeys = map[string][]string{
	"rollup_daily":     {"property_id", "day", "report", "dimension", "shard"},
	"rollup_hourly":    {"property_id", "day", "hour", "shard"},
	"filtered_hits":    {"property_id", "day", "reason", "shard"},
	"realtime_minutes": {"property_id", "minute", "shard"},
}

// emptySketch is the encoding of a users sketch of no user.
var emptySketch = func() string {
	b, err := new(sketch.Set).MarshalBinary()
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// empty reports whether every column of row but keys holds nothing: a
// zero number, a map of zeros, an empty users sketch.
func empty(row map[string]any, keys []string) bool {
	for col, v := range row {
		if slices.Contains(keys, col) {
			continue
		}
		switch v := v.(type) {
		case int64, int, int32, float64:
			if fmt.Sprint(v) != "0" {
				return false
			}
		case map[string]int64:
			for _, n := range v {
				if n != 0 {
					return false
				}
			}
		case []byte:
			if len(v) > 0 && string(v) != emptySketch {
				return false
			}
		case nil:
		default:
			return false
		}
	}
	return true
}
