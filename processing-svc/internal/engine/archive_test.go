package engine

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/acme/analytics/cql"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// TestArchiveBlocks checks the raw archive: a flush adds its hits in one
// statement per block (not per hit), and reading a day back returns every
// hit once, in ID order, from the blocks and from raw_hits (the archive
// before the blocks) alike.
func TestArchiveBlocks(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(60, 9)

	var a archive
	hits := 0
	for _, m := range msgs {
		h, err := hit.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		a.add(h, m.Value, 0)
		hits++
	}
	if n, blocks := len(a.writes()), 24*archiveBuckets; n > blocks || n >= hits/2 {
		t.Fatalf("%d hits make %d archive statements; want one per block (at most %d)", hits, n, blocks)
	}

	// A block's hits over maxArchiveStatement bytes take several
	// statements, each within the bound and written on its own.
	var big archive
	h, err := hit.Unmarshal(msgs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	filler := make([]byte, 8<<10) // the largest hit collection accepts
	for i := range 1000 {
		big.add(&hit.Hit{PropertyID: h.PropertyID, Time: h.Time, ID: h.ID}, filler, 0)
		h.ID = fmt.Sprintf("big-%d", i) // the same hour; blocks by ID
	}
	stmts := big.writes()
	labels, added := map[string]bool{}, 0
	for _, st := range stmts {
		part := st.args[0].(archiveHits)
		size := 0
		for _, b := range part {
			size += len(b)
		}
		if size > maxArchiveStatement {
			t.Fatalf("an archive statement adds %d bytes, over %d", size, maxArchiveStatement)
		}
		if labels[st.partition] {
			t.Fatalf("two archive statements share the batch label %s", st.partition)
		}
		labels[st.partition] = true
		added += len(part)
	}
	if added != 1000 || len(stmts) <= len(big) {
		t.Fatalf("%d statements for %d blocks add %d hits; want the 1000 hits, the blocks split", len(stmts), len(big), added)
	}

	// Processed: every hit is archived; one more, archived before the
	// blocks, is in raw_hits.
	run(t, ctx, newPartition(s, prop), msgs, 25)
	old := &hit.Hit{PropertyID: propID, ClientID: "old-client", Type: hit.TypePageview, Origin: hit.OriginBrowser,
		Time: t0.Add(time.Hour), ReceivedAt: t0.Add(time.Hour), Path: "/old"}
	old.ID = old.DeriveID("old")
	oldRaw, err := hit.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	day := t0.Truncate(24 * time.Hour)
	if err := s.Query("INSERT INTO raw_hits (property_id, day, shard, hit_id, hit) VALUES (?, ?, ?, ?, ?)",
		propID, day, int16(0), old.ID, oldRaw).Exec(); err != nil {
		t.Fatal(err)
	}

	got, err := archivedPartition(ctx, s, propID, day, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{old.ID: true}
	for _, m := range msgs {
		h, _ := hit.Unmarshal(m.Value)
		if h.Time.UTC().Truncate(24 * time.Hour).Equal(day) {
			want[h.ID] = true
		}
	}
	var ids []string
	for _, h := range got {
		ids = append(ids, h.ID)
	}
	if !slices.IsSorted(ids) {
		t.Error("archived hits not in ID order")
	}
	if len(ids) != len(want) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("read back %d hits (%d distinct), want %d, each once", len(ids), len(slices.Compact(slices.Clone(ids))), len(want))
	}
	for _, id := range ids {
		if !want[id] {
			t.Fatalf("read back %s, which was not archived", id)
		}
	}
}

// hit.ArchiveRetention is the archive tables' TTL in the schema:
// reprocessing refuses the days past it, and config-svc drops the rule
// versions replaced longer ago, by this constant.
func TestArchiveRetentionIsTheSchemasTTL(t *testing.T) {
	files, err := fs.Glob(cql.FS, "*.cql")
	if err != nil {
		t.Fatal(err)
	}
	want := int(hit.ArchiveRetention / time.Second)
	found := 0
	for _, f := range files {
		b, err := fs.ReadFile(cql.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?s)CREATE TABLE IF NOT EXISTS (raw_hits|raw_hit_blocks|raw_hit_blocks_by_hour) \(.*?default_time_to_live = (\d+)`).FindAllStringSubmatch(string(b), -1) {
			found++
			if m[2] != strconv.Itoa(want) {
				t.Errorf("%s: %s has a TTL of %s s, hit.ArchiveRetention is %d s", f, m[1], m[2], want)
			}
		}
	}
	if found != 3 {
		t.Errorf("found the TTL of %d archive tables, want 3", found)
	}
}

// The entity tables that processing writes expire with the archive they
// are derived from (cql/0021_entity_retention.cql): their rows name a
// visitor, and past the archive's retention no reprocessing reaches them.
func TestEntityTablesExpireWithTheArchive(t *testing.T) {
	files, err := fs.Glob(cql.FS, "*.cql")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(int(hit.ArchiveRetention / time.Second))
	ttl := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(cql.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`ALTER TABLE (\w+) WITH default_time_to_live = (\d+)`).FindAllStringSubmatch(string(b), -1) {
			ttl[m[1]] = m[2]
		}
	}
	for _, table := range []string{"sessions_by_hour", "pageviews_by_hour", "events_by_hour"} {
		if ttl[table] != want {
			t.Errorf("%s has a TTL of %q s, want hit.ArchiveRetention's %s", table, ttl[table], want)
		}
	}
	// And the tables as migrated say so.
	cfg := migratetest.Keyspace(t)
	s, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, table := range []string{"sessions_by_hour", "pageviews_by_hour", "events_by_hour"} {
		var got int
		if err := s.Query(`SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`, cfg.Keyspace, table).Scan(&got); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if strconv.Itoa(got) != want {
			t.Errorf("%s as migrated has a TTL of %d s, want %s", table, got, want)
		}
	}
}

// The archive's hits encode themselves as gocql encodes a map<text, blob>:
// the same bytes for one entry, null and empty ones included (a map's
// order is its own), and for many the
// same length and the same map decoded back (empty and nil hits included),
// under protocols 3 and 4 and under protocol 2's 16-bit sizes (gocql's own
// encoding there).
func TestArchiveHitsEncodeAsGocql(t *testing.T) {
	for _, proto := range []byte{2, 3, 4} {
		info := gocql.CollectionType{NativeType: gocql.NewNativeType(proto, gocql.TypeMap, ""),
			Key: gocql.NewNativeType(proto, gocql.TypeVarchar, ""), Elem: gocql.NewNativeType(proto, gocql.TypeBlob, "")}
		encode := func(v any) []byte {
			t.Helper()
			b, err := gocql.Marshal(info, v)
			if err != nil {
				t.Fatalf("protocol %d: %v", proto, err)
			}
			return b
		}
		decode := func(b []byte) map[string][]byte {
			t.Helper()
			var m map[string][]byte
			if err := gocql.Unmarshal(info, b, &m); err != nil {
				t.Fatalf("protocol %d: %v", proto, err)
			}
			return m
		}
		for _, one := range []archiveHits{{"h1": {1, 2, 3}}, {"empty": {}}, {"nil": nil}} {
			if got, want := encode(one), encode(map[string][]byte(one)); !bytes.Equal(got, want) {
				t.Fatalf("protocol %d: %v encodes as %x, gocql's encoding is %x", proto, one, got, want)
			}
		}
		many := archiveHits{"": {}, "nil": nil}
		for i := range 300 {
			many[fmt.Sprint("hit-", i)] = bytes.Repeat([]byte{byte(i)}, i)
		}
		got, want := encode(many), encode(map[string][]byte(many))
		if len(got) != len(want) {
			t.Fatalf("protocol %d: %d bytes, gocql's encoding %d", proto, len(got), len(want))
		}
		if g, w := decode(got), decode(want); !reflect.DeepEqual(g, w) || len(g) != len(many) {
			t.Fatalf("protocol %d: decoded as %d hits unlike gocql's encoding's %d", proto, len(g), len(w))
		}
	}
}

// A users row's day figures encode as gocql encodes the Go maps they stand
// for, in every protocol version.
func TestDayFiguresEncodeAsGocql(t *testing.T) {
	day := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	days := dayFigures{
		{Day: day, Sessions: 3, Last: day.Add(13*time.Hour + 1234567*time.Microsecond)},
		{Day: day.AddDate(-60, 0, 0), Sessions: 1, Last: day.AddDate(-60, 0, 0).Add(time.Minute)}, // before the epoch
		{Day: day.AddDate(0, 0, 1), Sessions: 0, Last: time.Time{}},
	}
	for _, proto := range []byte{2, 3, 4} {
		for _, c := range []struct {
			elem gocql.Type
			ours gocql.Marshaler
			want func(dayFigures) any
		}{
			{gocql.TypeInt, dayCounts(days), func(d dayFigures) any {
				m := map[time.Time]int{}
				for _, f := range d {
					m[f.Day] = f.Sessions
				}
				return m
			}},
			{gocql.TypeTimestamp, dayLasts(days), func(d dayFigures) any {
				m := map[time.Time]time.Time{}
				for _, f := range d {
					m[f.Day] = f.Last.Truncate(time.Millisecond) // what gocql keeps
				}
				return m
			}},
		} {
			info := gocql.CollectionType{NativeType: gocql.NewNativeType(proto, gocql.TypeMap, ""),
				Key: gocql.NewNativeType(proto, gocql.TypeDate, ""), Elem: gocql.NewNativeType(proto, c.elem, "")}
			for i := range days {
				one := days[i : i+1]
				var ours gocql.Marshaler = dayCounts(one)
				if c.elem == gocql.TypeTimestamp {
					ours = dayLasts(one)
				}
				got, err := gocql.Marshal(info, ours)
				if err != nil {
					t.Fatal(err)
				}
				want, err := gocql.Marshal(info, c.want(one))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("protocol %d, %v: %+v encodes as %x, gocql's encoding is %x", proto, c.elem, one[0], got, want)
				}
			}
			// Several days: the same map once decoded (a Go map's order is
			// not gocql's).
			got, err := gocql.Marshal(info, c.ours)
			if err != nil {
				t.Fatal(err)
			}
			back := reflect.New(reflect.TypeOf(c.want(days)))
			if err := gocql.Unmarshal(info, got, back.Interface()); err != nil {
				t.Fatalf("protocol %d: %v", proto, err)
			}
			if !reflect.DeepEqual(fmt.Sprint(back.Elem().Interface()), fmt.Sprint(c.want(days))) {
				t.Errorf("protocol %d, %v: decodes as %v, want %v", proto, c.elem, back.Elem().Interface(), c.want(days))
			}
		}
	}
}
