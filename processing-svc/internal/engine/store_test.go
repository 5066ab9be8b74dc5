package engine

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/gocql/gocql"
)

func TestWriterBatches(t *testing.T) {
	// st is a statement of partition p whose blob makes it n KiB as
	// stmtBytes counts it.
	st := func(p string, n int) stmt {
		return stmt{partition: p, args: []any{make([]byte, n<<10-256)}}
	}
	kib := func(n ...int) []stmt {
		var out []stmt
		for _, x := range n {
			out = append(out, st("a", x))
		}
		return out
	}
	tests := []struct {
		name            string
		count, bytesKiB int
		stmts           []stmt
		want            string // each batch's partitions, a batch a word
	}{
		{"by count", 2, 0, append(kib(1, 1, 1), st("b", 1)), "aa a b"},
		{"partitions apart, in order", 50, 0, []stmt{st("b", 2), st("a", 1), st("b", 1), st("a", 3)}, "bb aa"},
		{"by bytes", 50, 3, kib(1, 1, 1, 1, 2, 2), "aaa aa a"},
		{"a statement past the bound goes alone", 50, 3, kib(1, 5, 1), "a a a"},
		{"count first", 2, 100, kib(1, 1, 1), "aa a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &writer{batchSize: tt.count, batchBytes: tt.bytesKiB << 10}
			var got []string
			for _, b := range w.batches(tt.stmts) {
				var ps strings.Builder
				for _, s := range b {
					ps.WriteString(s.partition)
				}
				got = append(got, ps.String())
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("batches %q, want %q", g, tt.want)
			}
			if n := len(slices.Concat(w.batches(tt.stmts)...)); n != len(tt.stmts) {
				t.Errorf("%d statements in the batches, want %d", n, len(tt.stmts))
			}
			// A partition's statements keep their order.
			order := func(stmts []stmt) map[string][]int {
				sizes := map[string][]int{}
				for _, s := range stmts {
					sizes[s.partition] = append(sizes[s.partition], len(s.args[0].([]byte)))
				}
				return sizes
			}
			if got, want := order(slices.Concat(w.batches(tt.stmts)...)), order(tt.stmts); !reflect.DeepEqual(got, want) {
				t.Errorf("statements by partition %v, want %v", got, want)
			}
		})
	}
}

func TestSharedBatches(t *testing.T) {
	// job is the batch of one partition: n statements of 300 bytes as
	// mutationBytes counts them.
	job := func(partition string, n int) []stmt {
		out := make([]stmt, n)
		for i := range out {
			out[i] = stmt{partition: partition, args: []any{make([]byte, 300-20-16)}}
		}
		return out
	}
	var reports [][]stmt // 12 partitions of a statement each
	var first10 []string
	for i := range 12 {
		p := fmt.Sprintf("d/p1/day/r%d", i)
		reports = append(reports, job(p, 1))
		if i < sharePartitions {
			first10 = append(first10, p)
		}
	}
	tests := []struct {
		name string
		jobs [][]stmt
		want string // each batch's partitions, "+" between, a batch a word
	}{
		{"one property's small partitions share a batch",
			[][]stmt{job("d/p1/day/channel", 1), job("h/p1/day", 1), job("r/p1", 2)},
			"d/p1/day/channel+h/p1/day+r/p1+r/p1"},
		{"properties apart, in the order of their first partitions",
			[][]stmt{job("d/p2/day/channel", 1), job("d/p1/day/channel", 1), job("h/p2/day", 1)},
			"d/p2/day/channel+h/p2/day d/p1/day/channel"},
		{"at most sharePartitions partitions", reports,
			strings.Join(first10, "+") + " d/p1/day/r10+d/p1/day/r11"},
		{"at most shareBatchBytes; a partition of more than half of it alone",
			[][]stmt{job("d/p1/day/page", 9), job("d/p1/day/channel", 6), job("h/p1/day", 6), job("r/p1", 6)},
			"d/p1/day/page×9 d/p1/day/channel×6+h/p1/day×6 r/p1×6"},
		{"partitions without a key stay alone",
			[][]stmt{job("x", 1), job("y", 1)},
			"x y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sharedBatches(tt.jobs, shareBatchBytes)
			if g := describeBatches(got); g != tt.want {
				t.Errorf("batches %q, want %q", g, tt.want)
			}
			if n, w := len(slices.Concat(got...)), len(slices.Concat(tt.jobs...)); n != w {
				t.Errorf("%d statements in the batches, want %d", n, w)
			}
		})
	}
}

// describeBatches renders batches a word each: its partitions in order,
// "+" between, a run of n statements of one partition as "p×n".
func describeBatches(batches [][]stmt) string {
	var words []string
	for _, b := range batches {
		var parts []string
		for i := 0; i < len(b); {
			j := i
			for j < len(b) && b[j].partition == b[i].partition {
				j++
			}
			if n := j - i; n > 2 {
				parts = append(parts, fmt.Sprintf("%s×%d", b[i].partition, n))
			} else {
				for range n {
					parts = append(parts, b[i].partition)
				}
			}
			i = j
		}
		words = append(words, strings.Join(parts, "+"))
	}
	return strings.Join(words, " ")
}

func TestRowReads(t *testing.T) {
	day1, day2 := t0, t0.AddDate(0, 0, 1)
	daily := func(day time.Time, report, dim string, shard int) rowKey {
		return rowKey{kind: kindDaily, property: propID, shard: shard, daily: derive.DailyKey{Day: day, Report: report, Dimension: dim}}
	}
	hourly := rowKey{kind: kindHourly, property: propID, hourly: derive.HourKey{Day: day1, Hour: 3}}
	keys := []rowKey{daily(day1, "page", "/b", 0), hourly, daily(day1, "channel", "Direct", 0), daily(day2, "page", "/a", 0),
		daily(day1, "page", "/a", 0), daily(day1, "page", "/a", 1)}
	var pages []rowKey
	for i := range dailyReadCombinations + 1 {
		pages = append(pages, daily(day1, "page", fmt.Sprintf("/p%03d", i), 0))
	}
	describe := func(reads [][]rowKey) string {
		var out []string
		for _, r := range reads {
			var ks []string
			for _, k := range r {
				if k.kind == kindDaily {
					ks = append(ks, fmt.Sprintf("%s/%d/%s=%s", k.daily.Day.Format("02"), k.shard, k.daily.Report, k.daily.Dimension))
				} else {
					ks = append(ks, "hourly")
				}
			}
			out = append(out, strings.Join(ks, "+"))
		}
		return strings.Join(out, " ")
	}
	if got, want := describe(rowReads(keys)), "hourly 01/0/channel=Direct+01/0/page=/a+01/0/page=/b 01/1/page=/a 02/0/page=/a"; got != want {
		t.Errorf("reads %q, want %q", got, want)
	}
	// A report's new values, as many as one query asks for.
	reads := rowReads(pages)
	if len(reads) != 2 || len(reads[0]) != dailyReadCombinations || len(reads[1]) != 1 {
		t.Errorf("%d page rows read %d at a time, want %d then 1", len(pages), len(reads[0]), dailyReadCombinations)
	}
}

// A read of several rollup_daily rows asks for every combination of their
// reports and dimensions, so a row not asked for can come back: it must
// not be taken for another. A decoy row (report channel, dimension a
// landing page) is in the store before a fresh processor reads the rows
// of a new session (channel Direct, landing page /decoy); the tables must
// be those of a run that never read them back.
func TestDailyReadsTakeOnlyTheRowsAsked(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(8, 3)
	h := pageview("decoy-visitor", "/decoy", "", t0.Add(30*time.Minute))
	b, err := hit.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	last := Message{Offset: int64(len(msgs)), Value: b}
	decoy := func(s *gocql.Session) {
		err := s.Query("INSERT INTO rollup_daily (property_id, day, report, dimension, shard, pageviews, sessions, through_offset) VALUES (?, ?, 'channel', '/decoy', 0, 1000, 1000, 0)",
			propID, session.LocalDay(t0, time.UTC)).Exec()
		if err != nil {
			t.Fatal(err)
		}
	}

	want := connect(t)
	decoy(want)
	run(t, ctx, newPartition(want, prop), append(slices.Clip(msgs), last), 25)

	got := connect(t)
	decoy(got)
	first := newPartition(got, prop)
	run(t, ctx, first, msgs, 25)
	if _, err := first.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, newPartition(got, prop), []Message{last}, 1) // reads the rows back
	if g, w := dump(t, got), dump(t, want); g != w {
		t.Fatalf("tables differ:\n%s", diff(w, g))
	}
}

// cassandraDataSize is what Cassandra counts of a statement against its
// batch size thresholds (BatchStatement.verifyBatchSize sums
// IMutation.dataSize): for each row its clustering values, its liveness
// (8 bytes) and deletion (12), and for each cell 16 bytes (timestamp, TTL,
// local deletion time, AbstractCell.dataSize) with its value, an entry of
// a map a cell of its own with its key as path; not the partition key. A
// value is counted at its Go type's size, at least its column's.
func cassandraDataSize(t *testing.T, s stmt) int {
	t.Helper()
	var table string
	var update bool
	switch f := strings.Fields(s.cql); f[0] {
	case "INSERT", "DELETE":
		table = f[2]
	case "UPDATE":
		table, update = f[1], true
	}
	keys := map[string][2]int{ // partition key and clustering columns
		"rollup_daily": {3, 2}, "rollup_hourly": {2, 2}, "filtered_hits": {2, 2}, "realtime_minutes": {1, 2},
		"sessions_by_hour": {4, 1}, "pageviews_by_hour": {4, 1}, "events_by_hour": {4, 1}, "sessions": {3, 1},
		"site_users": {2, 0}, "visitor_state": {2, 0}, "processing_marks": {2, 0}, "fallback_rule_buckets": {2, 1},
		"fallback_rule_versions": {3, 1}, "raw_hit_blocks_by_hour": {4, 1},
	}
	k, ok := keys[table]
	if !ok {
		t.Fatalf("no key columns known for %q", s.cql)
	}
	value := func(a any) int {
		switch v := a.(type) {
		case string:
			return len(v)
		case []byte:
			return len(v)
		case int16:
			return 2
		case bool:
			return 1
		case map[string]int64: // frozen: serialized
			n := 4
			for k := range v {
				n += 4 + len(k) + 4 + 8
			}
			return n
		}
		return 8
	}
	args, cells := s.args, []any(nil)
	if update { // SET m = m + ?: the map's entries, then the key
		cells, args = args[:1], args[1:]
	} else {
		cells = args[k[0]+k[1]:]
	}
	n := 8 + 12
	for _, a := range args[k[0] : k[0]+k[1]] {
		n += value(a)
	}
	for _, c := range cells {
		if v, ok := c.(archiveHits); ok {
			c = map[string][]byte(v)
		}
		switch v := c.(type) {
		case map[string][]byte:
			for k, b := range v {
				n += 16 + len(k) + len(b)
			}
		case map[string]int:
			for k := range v {
				n += 16 + len(k) + 4
			}
		default:
			if c != gocql.UnsetValue {
				n += 16 + value(c)
			}
		}
	}
	return n
}

// Shared batches are held to Cassandra's batch_size_warn_threshold, 5 KiB,
// as Cassandra measures them: past it Cassandra logs a warning for every
// such batch. The bytes a statement sends (stmtBytes) are well under
// Cassandra's measure for rows of many numbers (16 bytes more a cell): a
// shared batch of 5 KiB of those was some 7 KiB to Cassandra, for half the
// shared batches of this traffic.
func TestSharedBatchesUnderCassandraWarning(t *testing.T) {
	prop := testProperty(t, rules.Defaults())
	msgs, source := spreadOver(t, benchTraffic(6000, 2000), prop, 200)
	var mu sync.Mutex
	var shared, over, largest int
	replayOnHitClock(t, msgs, source, 2*time.Second, func(p *Partition) {
		p.w.beforeJob = func(job []stmt) error {
			mu.Lock()
			defer mu.Unlock()
			size := 0
			for _, s := range job {
				n := cassandraDataSize(t, s)
				if m := mutationBytes(s); m < n {
					t.Errorf("mutationBytes %d of a statement Cassandra counts %d bytes: %s", m, n, s.cql)
				}
				size += n
			}
			if job[0].partition == job[len(job)-1].partition {
				return nil // one partition: no threshold
			}
			shared++
			largest = max(largest, size)
			if size > shareBatchBytes {
				over++
			}
			return nil
		}
	})
	if shared == 0 {
		t.Fatal("no shared batch: the test proved nothing")
	}
	t.Logf("%d shared batches, the largest %d bytes to Cassandra", shared, largest)
	if over > 0 {
		t.Errorf("%d of %d shared batches over Cassandra's batch_size_warn_threshold (%d bytes), the largest %d", over, shared, shareBatchBytes, largest)
	}
}
