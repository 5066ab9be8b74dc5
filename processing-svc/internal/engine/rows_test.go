package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/gocql/gocql"
)

// usersArg returns the users sketch a rollup row's write binds, and false
// for a statement that writes no sketch.
func usersArg(st stmt) (any, bool) {
	switch {
	case st.cql == rollup.InsertDaily:
		return st.args[5], true
	case st.cql == cqlHourly, st.cql == cqlRealtime:
		return st.args[4], true
	}
	return nil, false
}

// recordWrites makes part's writer keep every statement it is about to
// send, for the test to read after a flush.
func recordWrites(part *Partition) func() []stmt {
	var mu sync.Mutex
	var got []stmt
	part.w.beforeJob = func(job []stmt) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, job...)
		return nil
	}
	return func() []stmt {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

func pageview(client, path, event string, at time.Time) *hit.Hit {
	h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview, Origin: hit.OriginBrowser,
		Time: at, ReceivedAt: at, Hostname: "shop.example", Path: path, Country: "DE", DeviceCategory: "desktop", Browser: "Firefox"}
	h.ID = h.DeriveID(event)
	return h
}

// A flush after a hit that extends a session writes the session-level
// rows' metrics but leaves their users sketches as stored (unset): the
// hit added no user to them. The page new in the session, whose users
// did change, gets its sketch written. After a hand-over, where the next
// owner reads the rows from the store, a row's first write sends its
// sketch (a write of the owner before may land after the read), and the
// same holds from then on.
func TestUnchangedSketchLeftUnset(t *testing.T) {
	for _, handOver := range []bool{false, true} {
		t.Run(fmt.Sprint("hand-over=", handOver), func(t *testing.T) { unchangedSketchLeftUnset(t, handOver) })
	}
}

func unchangedSketchLeftUnset(t *testing.T, handOver bool) {
	ctx := context.Background()
	s := connect(t)
	prop := testProperty(t, rules.Defaults())
	part := newPartition(s, prop)
	writes := recordWrites(part)
	run(t, ctx, part, []Message{{Offset: 0, Value: marshal(pageview("alice", "/", "e1", t0))}}, 1)
	for _, st := range writes() {
		if u, ok := usersArg(st); ok && u == gocql.UnsetValue {
			t.Errorf("the first write of a row left its sketch unset: %s %v", st.cql, st.args)
		}
	}
	next := Message{Offset: 1, Value: marshal(pageview("alice", "/p/1", "e2", t0.Add(20*time.Second)))}
	newPath := "/p/1"
	if handOver {
		if _, err := part.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
		part = newPartition(s, prop)
		writes = recordWrites(part)
		// The next owner reads the rows back: their first writes send
		// their sketches, whatever the hit changed (a write of the owner
		// before may land after the read).
		run(t, ctx, part, []Message{next}, 1)
		for _, st := range writes() {
			if u, ok := usersArg(st); ok && u == gocql.UnsetValue && st.cql != cqlRealtime {
				t.Errorf("the first write of a row read back left its sketch unset: %s %v", st.cql, st.args[:6])
			}
		}
		next = Message{Offset: 2, Value: marshal(pageview("alice", "/p/2", "e3", t0.Add(40*time.Second)))}
		newPath = "/p/2"
	}

	run(t, ctx, part, []Message{next}, 1)
	var unset, written int
	for _, st := range writes() {
		u, ok := usersArg(st)
		if !ok {
			continue
		}
		// Every hit adds a reference of its user to its minute's
		// realtime row: the minute's sketch changes too.
		newPage := st.cql == rollup.InsertDaily && st.args[2] == rollup.Page && st.args[3] == newPath
		changed := newPage || st.cql == cqlRealtime
		switch {
		case changed && u == gocql.UnsetValue:
			t.Errorf("a row whose users changed left its sketch unset: %s %v", st.cql, st.args[:6])
		case changed:
			written++
		case u != gocql.UnsetValue:
			t.Errorf("a row whose users did not change had its sketch written: %s %v", st.cql, st.args[:6])
		default:
			unset++
		}
	}
	if written != 2 || unset < 13 { // 11 session-level daily rows, the hour, the landing page
		t.Errorf("%d rows written with their sketch, %d without, want 2 and at least 13", written, unset)
	}
	if b := valueBytes([]any{gocql.UnsetValue}); b != 0 {
		t.Errorf("an unset value counts %d bytes, want 0", b)
	}

	// The stored rows have the new metrics and the sketch written first.
	var pageviews int64
	var users []byte
	if err := s.Query("SELECT pageviews, users_hll FROM rollup_daily WHERE property_id = ? AND day = ? AND report = 'total' AND dimension = '' AND shard = 0",
		propID, t0.Truncate(24*time.Hour)).Scan(&pageviews, &users); err != nil {
		t.Fatal(err)
	}
	var got sketch.Set
	if err := got.UnmarshalBinary(users); err != nil {
		t.Fatal(err)
	}
	if want := next.Offset + 1; pageviews != want || got.Count() != 1 { // a pageview a message
		t.Errorf("total row: %d pageviews, %d users, want %d and 1", pageviews, got.Count(), want)
	}
}

// A row's sketch changed in a flush that failed is written by the retry,
// though the retry's own hits do not change it.
func TestChangedSketchWrittenByTheRetry(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	part := newPartition(s, testProperty(t, rules.Defaults()))
	if err := part.Apply(ctx, []Message{{Offset: 0, Value: marshal(pageview("alice", "/", "e1", t0))}}); err != nil {
		t.Fatal(err)
	}
	part.w.beforeJob = func([]stmt) error { return context.DeadlineExceeded }
	if _, err := part.Flush(ctx); err == nil {
		t.Fatal("the flush did not fail: the test proves nothing")
	}
	writes := recordWrites(part)
	run(t, ctx, part, []Message{{Offset: 1, Value: marshal(pageview("alice", "/p/1", "e2", t0.Add(20*time.Second)))}}, 1)
	var total bool
	for _, st := range writes() {
		if st.cql == rollup.InsertDaily && st.args[2] == rollup.Total {
			total = true
			if u, _ := usersArg(st); u == gocql.UnsetValue {
				t.Error("the retry left the total row's sketch unset, which the failed flush did not write")
			}
		}
	}
	if !total {
		t.Fatal("the retry did not write the total row")
	}
	var users []byte
	if err := s.Query("SELECT users_hll FROM rollup_daily WHERE property_id = ? AND day = ? AND report = 'total' AND dimension = '' AND shard = 0",
		propID, t0.Truncate(24*time.Hour)).Scan(&users); err != nil {
		t.Fatal(err)
	}
	var got sketch.Set
	if err := got.UnmarshalBinary(users); err != nil || got.Count() != 1 {
		t.Errorf("total row: %d users (%v), want 1", got.Count(), err)
	}
}

// The rows of a reprocessing run replace what is stored, so each writes
// its sketch, even one no hit added a user to (empty).
func TestFreshRowsWriteTheirSketch(t *testing.T) {
	rows := newRowSet()
	rows.fresh = true
	c := derive.New()
	day := t0.Truncate(24 * time.Hour)
	c.Daily[derive.DailyKey{Day: day, Report: rollup.Page, Dimension: "/exit"}] = rollup.Metrics{Exits: 1}
	c.Hourly[derive.HourKey{Day: day, Hour: 12}] = rollup.Metrics{Pageviews: 1}
	c.Realtime[derive.MinuteKey{Minute: t0}] = &derive.Realtime{Pageviews: 1}
	rows.add(propID, 0, 0, t0, c)
	var n int
	rows.each(func(k rowKey, r *row) bool {
		st, err := rowWrite(k, r, FinalOffset, reprocessed)
		if err != nil {
			t.Fatal(err)
		}
		if u, _ := usersArg(st); u == gocql.UnsetValue {
			t.Errorf("a fresh row left its sketch unset: %s", st.cql)
		}
		n++
		return true
	})
	if n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

// A reprocessed day writes the users sketch of every rollup row it
// replaces.
func TestReprocessWritesEverySketch(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	changed := t0.Add(365 * 24 * time.Hour)
	p, day := movedChannels(t, s, changed)
	now := changed.Add(time.Hour)
	var mu sync.Mutex
	var rows, unset int
	d := newDayRun(s, p, day, RulesCurrent, p.RulesAt(now), NewFirstSessions(p, day, day), now)
	d.beforeJob = func(job []stmt) error {
		mu.Lock()
		defer mu.Unlock()
		for _, st := range job {
			if u, ok := usersArg(st); ok && strings.HasPrefix(st.cql, "INSERT") {
				rows++
				if u == gocql.UnsetValue {
					unset++
				}
			}
		}
		return nil
	}
	if err := d.run(ctx); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || unset != 0 {
		t.Errorf("%d of %d rollup rows written without their sketch, want 0 of some", unset, rows)
	}
}

// A flush writes the rows changed since the last one and no other, each
// once however often it changed; a row unchanged since a write holds every
// hit up to that write's offset, so a replayed hit at or below it is not
// applied again (as when each write raised every row's base); and idle rows
// leave memory at the next sweep, the changed ones never.
func TestChangedRowsAndTheirBase(t *testing.T) {
	rows := newRowSet()
	day := t0.Truncate(24 * time.Hour)
	key := func(page string) derive.DailyKey {
		return derive.DailyKey{Day: day, Report: rollup.Page, Dimension: page}
	}
	hitOn := func(offset int64, at time.Time, pages ...string) {
		c := derive.New()
		for _, p := range pages {
			c.Daily[key(p)] = rollup.Metrics{Pageviews: 1}
		}
		rows.add(propID, 0, offset, at, c)
	}
	load := func() { // as loadRows does, with nothing stored
		for _, k := range rows.unloaded {
			rows.get(k).load(-1, func(*row) {})
		}
		rows.unloaded = nil
	}
	changed := func() []string {
		var out []string
		for _, kr := range rows.changed {
			out = append(out, kr.key.daily.Dimension)
		}
		return out
	}
	pageviews := func(page string) int64 {
		return rows.get(shardKey{propID, 0}.daily(key(page))).metrics.Pageviews
	}

	hitOn(1, t0, "/a", "/b")
	hitOn(2, t0, "/a")
	load()
	if got := strings.Join(changed(), " "); got != "/a /b" && got != "/b /a" {
		t.Fatalf("changed rows %q, want /a and /b once each", got)
	}
	rows.wrote(2)
	hitOn(3, t0, "/b")
	if got := changed(); len(got) != 1 || got[0] != "/b" {
		t.Fatalf("changed rows after a write %q, want /b alone", got)
	}
	rows.wrote(3)
	rows.wrote(7) // hits 4 to 7 changed neither row

	// Offsets at or below the last write are in /a already, though no write
	// since its own named it; a later one is not.
	hitOn(5, t0, "/a")
	hitOn(7, t0, "/a")
	if n := pageviews("/a"); n != 2 {
		t.Fatalf("/a has %d pageviews after replayed hits, want 2", n)
	}
	if len(rows.changed) != 0 {
		t.Fatalf("replayed hits listed %d rows as changed", len(rows.changed))
	}
	hitOn(8, t0, "/a")
	if n := pageviews("/a"); n != 3 || len(rows.changed) != 1 {
		t.Fatalf("/a has %d pageviews and %d rows changed after a new hit, want 3 and 1", n, len(rows.changed))
	}

	// /b is idle, /a changed and unwritten: a sweep drops /b alone, and
	// not again until its interval has passed.
	later := t0.Add(time.Hour)
	rows.evictIdle(later, later.Add(-time.Minute), 10*time.Minute)
	if rows.get(shardKey{propID, 0}.daily(key("/b"))) != nil || rows.get(shardKey{propID, 0}.daily(key("/a"))) == nil {
		t.Fatal("the sweep kept the idle row or dropped the changed one")
	}
	rows.wrote(8)
	rows.evictIdle(later.Add(time.Minute), later, 10*time.Minute)
	if rows.get(shardKey{propID, 0}.daily(key("/a"))) == nil {
		t.Fatal("a sweep ran before its interval had passed")
	}
	rows.evictIdle(later.Add(10*time.Minute), later, 10*time.Minute)
	if rows.get(shardKey{propID, 0}.daily(key("/a"))) != nil {
		t.Fatal("the idle row, written, stayed after the next sweep")
	}
}

// A flush settles every hit placed since the last, and the rows those
// hits create are read once one of them has queued pendingLoad changes,
// not only by the flush: here the first pageviews of three times that
// many visitors, all of one page. The tables are those of a processor
// that reads the rows only at the flush.
func TestSettleReadsCrowdedRows(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := firstPageviews(3 * pendingLoad)
	settled := func(s *gocql.Session, load int) (*Partition, int) {
		part := newPartition(s, prop)
		part.rows.pendingLoad = load
		if err := part.Apply(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		part.settlePlaced(ctx, part.cfg.Now())
		most := 0
		part.rows.each(func(_ rowKey, r *row) bool {
			most = max(most, len(r.pending))
			return true
		})
		return part, most
	}
	flushed := func(part *Partition) {
		if _, err := part.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
	}

	want := connect(t)
	atFlush, most := settled(want, len(msgs)*2)
	if most < len(msgs) {
		t.Fatalf("read only by the flush, a row queued at most %d changes, want at least %d", most, len(msgs))
	}
	flushed(atFlush)

	got := connect(t)
	early, most := settled(got, pendingLoad)
	// The rows every hit touches were read once they crowded and took
	// the changes after directly; those made since (a new minute's
	// realtime row) hold fewer. A visitor's hit changes a row twice (its
	// metrics, its user) before the rows are read.
	if most > pendingLoad+1 {
		t.Errorf("a row queued %d changes, want at most %d", most, pendingLoad+1)
	}
	flushed(early)
	if g, w := dump(t, got), dump(t, want); g != w {
		t.Fatalf("tables differ:\n%s", diff(w, g))
	}
}

// A read that fails while a flush settles is not tried again for every
// visitor after it (a row left unread stays crowded): the flush fails at
// its own read, as before rows were read while settling, and a retry
// writes the tables of an undisturbed run. Here the store refuses every
// read of an hourly row, the row every hit touches.
func TestSettleReadsFailOnce(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := firstPageviews(200)
	want := connect(t)
	run(t, ctx, newPartition(want, prop), msgs, len(msgs))

	srv := cqltest.Server(t)
	got := connect(t)
	part := newPartition(got, prop)
	part.rows.pendingLoad = 2
	if err := part.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(cql, "SELECT") && strings.Contains(cql, "FROM rollup_hourly") {
			reads.Add(1)
			return cqlserver.FailBefore
		}
		return cqlserver.NoFault
	})
	if _, err := part.Flush(ctx); err == nil {
		t.Fatal("the flush succeeded without reading the hourly row")
	}
	srv.SetFault(nil)
	// One read while settling, one by the flush, each retried by gocql
	// at most as its policy says.
	if n := reads.Load(); n > 8 {
		t.Errorf("the hourly row was read %d times, want a read while settling and one by the flush", n)
	}
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if g, w := dump(t, got), dump(t, want); g != w {
		t.Fatalf("tables differ:\n%s", diff(w, g))
	}
}

// firstPageviews returns the first pageviews of n visitors, all of one
// page, a second apart.
func firstPageviews(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		h := pageview(fmt.Sprint("visitor-", i), "/same", "", t0.Add(time.Duration(i)*time.Second))
		msgs[i] = Message{Offset: int64(i), Value: marshal(h)}
	}
	return msgs
}
