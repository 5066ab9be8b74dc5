package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/gocql/gocql"
)

// kolkata is a zone off UTC by a fraction of an hour (UTC+5:30), so that
// a local hour is never a UTC hour.
func kolkata(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// propertyIn returns testProperty in zone loc.
func propertyIn(t *testing.T, loc *time.Location) *Property {
	t.Helper()
	p := testProperty(t, rules.Defaults())
	p.Location = loc
	return p
}

// hourRows returns the rows of shard 0's day in a table partitioned by
// hour: the hour of each row, by its ID (column id). An ID in two hours
// fails the test.
func hourRows(t *testing.T, s *gocql.Session, table, id string, day time.Time) map[string]int {
	t.Helper()
	out := map[string]int{}
	iter := s.Query("SELECT hour, "+id+" FROM "+table+" WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ?", propID, day, dayHours).Iter()
	var hour int16
	var rowID string
	for iter.Scan(&hour, &rowID) {
		if prior, ok := out[rowID]; ok {
			t.Errorf("%s: %s has a row in hour %d and in hour %d", table, rowID, prior, hour)
		}
		out[rowID] = int(hour)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// count returns the number of rows of table.
func count(t *testing.T, s *gocql.Session, table string) int {
	t.Helper()
	var n int
	if err := s.Query("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Rows land in the partition of their hour: a session in the local hour it
// started in, however long it lasts; a pageview or an event in the local
// hour of its own time; an archived hit in its UTC hour. The tables they
// replaced get nothing.
func TestRowsInTheirLocalHour(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	loc := kolkata(t)
	local := func(hh, mm int) time.Time { return time.Date(2026, 7, 1, hh, mm, 0, 0, loc) }
	event := func(h *hit.Hit) *hit.Hit {
		h.Type, h.Category, h.Action = hit.TypeEvent, "video", "play"
		return h
	}
	// One session from 10:50 to 11:07 local (05:20 to 05:37 UTC).
	hits := []*hit.Hit{
		aHit("A", "p1", local(10, 50), local(10, 50), "https://shop.example/", ""),
		aHit("A", "p2", local(10, 58), local(10, 58), "https://shop.example/", ""),
		aHit("A", "p3", local(11, 5), local(11, 5), "https://shop.example/", ""),
		event(aHit("A", "e1", local(11, 7), local(11, 7), "https://shop.example/", "")),
	}
	run(t, ctx, newPartition(s, propertyIn(t, loc)), aMsgs(0, hits...), 10)

	day := session.LocalDay(local(10, 50), loc)
	for _, c := range []struct {
		table, id string
		want      map[string]int
	}{
		{"sessions_by_hour", "session_id", map[string]int{"p1": 10}},
		{"pageviews_by_hour", "hit_id", map[string]int{"p1": 10, "p2": 10, "p3": 11}},
		{"events_by_hour", "hit_id", map[string]int{"e1": 11}},
	} {
		if got := hourRows(t, s, c.table, c.id, day); !maps.Equal(got, c.want) {
			t.Errorf("%s: rows by hour %v, want %v", c.table, got, c.want)
		}
	}
	// The hours the writers took are session.LocalHour's, in the zone.
	for _, h := range hits {
		if got, want := session.LocalHour(h.Time, loc), h.Time.In(loc).Hour(); got != want {
			t.Errorf("LocalHour(%s) = %d, want %d", h.Time.In(loc).Format(time.TimeOnly), got, want)
		}
	}

	// The archive: by UTC day and hour, whatever the zone.
	iter := s.Query("SELECT day, hour, hits FROM raw_hit_blocks_by_hour").Iter()
	var archDay time.Time
	var hour int16
	var block map[string][]byte
	archived := map[string]string{} // hit ID -> UTC day and hour
	for iter.Scan(&archDay, &hour, &block) {
		for id := range block {
			archived[id] = fmt.Sprintf("%s %02d", archDay.Format(time.DateOnly), hour)
		}
		block = nil
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		want := fmt.Sprintf("%s %02d", h.Time.UTC().Format(time.DateOnly), session.LocalHour(h.Time, time.UTC))
		if got := archived[h.ID]; got != want || got != "2026-07-01 05" {
			t.Errorf("hit %s archived in %q, want %q (UTC day and hour 5)", h.ID, got, want)
		}
	}
	for _, old := range []string{"sessions", "pageviews", "events", "raw_hit_blocks", "raw_hits"} {
		if n := count(t, s, old); n != 0 {
			t.Errorf("%d rows written to %s, which the tables by hour replaced", n, old)
		}
	}
}

// A session's row is where its start is: when a late hit, a merge or a
// change of the property's zone moves its start (or its ID) to another
// hour, the row of the hour it was in is deleted, as one of another day
// or ID is.
func TestSessionRowFollowsItsStartHour(t *testing.T) {
	ctx := context.Background()
	loc := kolkata(t)
	local := func(hh, mm int) time.Time { return time.Date(2026, 7, 1, hh, mm, 0, 0, loc) }
	pv := func(id string, at, recv time.Time) *hit.Hit {
		return aHit("A", id, at, recv, "https://shop.example/", "")
	}
	type batch struct {
		loc  *time.Location // the property's zone when the batch is processed
		hits []*hit.Hit
	}
	for _, c := range []struct {
		name    string
		batches []batch
		want    map[string]int // session rows: hour by ID
	}{
		{"a late hit becomes the first, an hour earlier", []batch{
			{loc, []*hit.Hit{pv("a1", local(11, 5), local(11, 5)), pv("a2", local(11, 9), local(11, 9))}},
			{loc, []*hit.Hit{pv("a0", local(10, 50), local(11, 12))}},
		}, map[string]int{"a0": 10}},
		{"a late hit merges the next hour's session into the one before", []batch{
			{loc, []*hit.Hit{pv("a1", local(10, 20), local(10, 20)), pv("b1", local(11, 5), local(11, 5))}},
			{loc, []*hit.Hit{pv("m", local(10, 45), local(11, 10))}},
		}, map[string]int{"a1": 10}},
		{"a late hit splits a session (a campaign) into the next hour", []batch{
			{loc, []*hit.Hit{pv("a1", local(10, 50), local(10, 50)), pv("a2", local(11, 15), local(11, 15))}},
			{loc, []*hit.Hit{aHit("A", "c", local(11, 2), local(11, 20), "https://shop.example/?utm_source=news&utm_medium=email", "")}},
		}, map[string]int{"a1": 10, "c": 11}},
		{"the property's zone changes under a live session", []batch{
			{time.UTC, []*hit.Hit{pv("a1", local(10, 50), local(10, 50))}}, // 05:20 UTC
			{loc, []*hit.Hit{pv("a2", local(10, 55), local(10, 55))}},
		}, map[string]int{"a1": 10}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := connect(t)
			p := propertyIn(t, c.batches[0].loc)
			part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{p}})
			off := int64(0)
			for _, b := range c.batches {
				p.Location = b.loc // a configuration refresh
				run(t, ctx, part, aMsgs(off, b.hits...), 10)
				off += int64(len(b.hits))
			}
			if got := hourRows(t, s, "sessions_by_hour", "session_id", session.LocalDay(local(10, 50), loc)); !maps.Equal(got, c.want) {
				t.Errorf("session rows by hour %v, want %v", got, c.want)
			}
			if n := count(t, s, "sessions_by_hour"); n != len(c.want) {
				t.Errorf("%d session rows in all, want %d", n, len(c.want))
			}
		})
	}
}

// asBeforeTheUpgrade moves what processing stored in the tables
// partitioned by hour to the tables they replaced, as a build before
// migration 17 wrote it: the same columns without hour, an archive block
// numbered hour * 16 + block. The archive's even blocks stay in the new
// table too, as hits archived again after the upgrade (a replay) would.
func asBeforeTheUpgrade(t *testing.T, s *gocql.Session) {
	t.Helper()
	for _, m := range []struct{ from, to string }{
		{"sessions_by_hour", "sessions"}, {"pageviews_by_hour", "pageviews"}, {"events_by_hour", "events"},
		{"raw_hit_blocks_by_hour", "raw_hit_blocks"},
	} {
		rows, err := s.Query("SELECT * FROM " + m.from).Iter().SliceMap()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if block, hour := r["block"], r["hour"].(int16); block != nil {
				if block.(int16)%2 == 1 {
					if err := s.Query("DELETE FROM "+m.from+" WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND block = ?",
						r["property_id"], r["day"], r["shard"], hour, block).Exec(); err != nil {
						t.Fatal(err)
					}
				}
				r["block"] = hour*archiveBuckets + block.(int16)
			}
			delete(r, "hour")
			cols := slices.Sorted(maps.Keys(r))
			args := make([]any, len(cols))
			for i, col := range cols {
				args[i] = r[col]
			}
			if err := s.Query("INSERT INTO "+m.to+" ("+strings.Join(cols, ", ")+") VALUES (?"+strings.Repeat(", ?", len(cols)-1)+")", args...).Exec(); err != nil {
				t.Fatalf("copy a row of %s to %s: %v", m.from, m.to, err)
			}
		}
		if m.to != "raw_hit_blocks" {
			if err := s.Query("TRUNCATE " + m.from).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Reprocessing reads what processing stored before the upgrade to the
// tables partitioned by hour: the archive's blocks in raw_hit_blocks (a
// hit archived in both tables once), and the entity rows in sessions,
// pageviews and events, which a reprocessed day deletes, its rows ending
// in the new tables only. A visit that spans the upgrade, its session in
// both tables, comes out once. The days come out as if every hit had been
// processed after the upgrade, and reprocessing them again changes
// nothing.
func TestReprocessAcrossTheUpgrade(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 3)
	from, to := session.LocalDay(t0, time.UTC), session.LocalDay(t0, time.UTC)
	for _, m := range msgs {
		h, _ := hit.Unmarshal(m.Value)
		from, to = minTime(from, session.LocalDay(h.Time, time.UTC)), maxTime(to, session.LocalDay(h.Time, time.UTC))
	}
	process := func(upgradeBetween bool) *gocql.Session {
		s := connect(t)
		for i, half := range [][]Message{msgs[:len(msgs)/2], msgs[len(msgs)/2:]} {
			if i == 1 && upgradeBetween {
				asBeforeTheUpgrade(t, s)
			}
			part := newPartition(s, prop) // a restart: the upgrade
			run(t, ctx, part, half, 20)
			if _, err := part.FlushAll(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	reprocess := func(s *gocql.Session) {
		t.Helper()
		rp := &Reprocessor{Session: s, Now: func() time.Time { return to.AddDate(0, 0, 10) }}
		if err := rp.Run(ctx, prop, from, to, RulesHistorical, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	always := process(false)
	reprocess(always)
	want := dumpDerived(t, always)

	s := process(true)
	spanning := 0
	for id := range hourRowIDs(t, s, "sessions_by_hour") {
		if hourRowIDs(t, s, "sessions")[id] {
			spanning++
		}
	}
	if spanning == 0 || count(t, s, "raw_hit_blocks") == 0 || count(t, s, "pageviews") == 0 {
		t.Fatalf("no session in both tables (%d), or nothing in the old tables: the test tests nothing", spanning)
	}
	reprocess(s)
	if got := dumpDerived(t, s); got != want {
		t.Fatalf("days reprocessed after the upgrade differ from days processed after it only:\n%s", diff(want, got))
	}
	for _, old := range []string{"sessions", "pageviews", "events"} {
		if n := count(t, s, old); n != 0 {
			t.Errorf("%d rows left in %s after their days were reprocessed", n, old)
		}
	}
	once := dump(t, s)
	reprocess(s)
	if got := dump(t, s); got != once {
		t.Fatalf("reprocessing the days again changed them:\n%s", diff(once, got))
	}
}

// hourRowIDs returns the session IDs of sessions or sessions_by_hour.
func hourRowIDs(t *testing.T, s *gocql.Session, table string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	iter := s.Query("SELECT session_id FROM " + table).Iter()
	var id string
	for iter.Scan(&id) {
		out[id] = true
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// A resumed job whose finished days were written before the upgrade finds
// their first sessions in the old sessions table: their users are not new
// again on the days after.
func TestResumedJobFindsFirstSessionsOfBeforeTheUpgrade(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := testProperty(t, rules.Defaults())
	d0, d1 := t0, t0.Add(24*time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(0,
		aHit("A", "a1", d0, d0.Add(time.Second), "https://shop.example/", ""),
		aHit("A", "a2", d1, d1.Add(time.Second), "https://shop.example/", "")), 10)
	asBeforeTheUpgrade(t, s)
	day0, day1 := session.LocalDay(d0, time.UTC), session.LocalDay(d1, time.UTC)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(10 * 24 * time.Hour) }}
	if err := rp.Run(ctx, p, day0, day1, RulesCurrent, func(d time.Time) bool { return d.Equal(day0) }, nil); err != nil {
		t.Fatal(err)
	}
	if _, nu, _ := dailyRow(t, s, day1, "total", ""); nu != 0 {
		t.Errorf("resumed job: new_users on day1 = %d, want 0 (A first seen on day0, in the old sessions table)", nu)
	}
	if got, want := hourRowIDs(t, s, "sessions"), map[string]bool{"a1": true}; !maps.Equal(got, want) {
		t.Errorf("old sessions table holds %v, want %v (day0, skipped, as it was; day1 reprocessed)", got, want)
	}
	if got, want := hourRowIDs(t, s, "sessions_by_hour"), map[string]bool{"a2": true}; !maps.Equal(got, want) {
		t.Errorf("sessions_by_hour holds %v, want %v", got, want)
	}
}

// A change of the property's zone under a live session moves its hits'
// rows too: each pageview and event is in the partition of its hour in
// the new zone, and in no other. (A row whose signature is unchanged,
// the event's, must not be skipped as written: it was written in another
// hour; a row rewritten there must not stay in the hour it left.)
func TestHitRowsFollowAZoneChange(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	loc := kolkata(t)
	local := func(hh, mm int) time.Time { return time.Date(2026, 7, 1, hh, mm, 0, 0, loc) }
	ev := aHit("A", "e1", local(10, 52), local(10, 52), "https://shop.example/", "")
	ev.Type, ev.Category, ev.Action = hit.TypeEvent, "video", "play"
	p := propertyIn(t, time.UTC)
	part := newPartition(s, p)
	// Under UTC: 05:20 and 05:22, hour 5.
	run(t, ctx, part, aMsgs(0, aHit("A", "a1", local(10, 50), local(10, 50), "https://shop.example/", ""), ev), 10)
	p.Location = loc // a configuration refresh
	run(t, ctx, part, aMsgs(2, aHit("A", "a2", local(10, 55), local(10, 55), "https://shop.example/", "")), 10)

	day := session.LocalDay(local(10, 50), loc)
	for _, c := range []struct {
		table, id string
		want      map[string]int
	}{
		{"sessions_by_hour", "session_id", map[string]int{"a1": 10}},
		{"pageviews_by_hour", "hit_id", map[string]int{"a1": 10, "a2": 10}},
		{"events_by_hour", "hit_id", map[string]int{"e1": 10}},
	} {
		if got := hourRows(t, s, c.table, c.id, day); !maps.Equal(got, c.want) {
			t.Errorf("%s: rows by hour %v, want %v", c.table, got, c.want)
		}
	}
}

// After a change of the property's zone under a live session, the
// session is counted in rollup_hourly in the hour it starts in under the
// new zone, as its row is, and taken out of the hour the old zone put it
// in: no hour is left with a part of it, or a negative count.
func TestHourlyRollupFollowsAZoneChange(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	loc := kolkata(t)
	local := func(hh, mm int) time.Time { return time.Date(2026, 7, 1, hh, mm, 0, 0, loc) }
	p := propertyIn(t, time.UTC)
	part := newPartition(s, p)
	run(t, ctx, part, aMsgs(0, aHit("A", "a1", local(10, 50), local(10, 50), "https://shop.example/", "")), 10)
	p.Location = loc
	run(t, ctx, part, aMsgs(1, aHit("A", "a2", local(10, 55), local(10, 55), "https://shop.example/", "")), 10)

	got := map[int]string{}
	iter := s.Query("SELECT hour, sessions, bounces, pageviews FROM rollup_hourly WHERE property_id = ? AND day = ?", propID, session.LocalDay(local(10, 50), loc)).Iter()
	var hour int16
	var sessions, bounces, pageviews int64
	for iter.Scan(&hour, &sessions, &bounces, &pageviews) {
		if sessions != 0 || bounces != 0 || pageviews != 0 {
			got[int(hour)] = fmt.Sprintf("sessions=%d bounces=%d pageviews=%d", sessions, bounces, pageviews)
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if want := map[int]string{10: "sessions=1 bounces=0 pageviews=2"}; !maps.Equal(got, want) {
		t.Errorf("rollup_hourly by hour %v, want %v", got, want)
	}
}

// A session the previous build wrote to the old sessions table, which
// after the upgrade a late hit renames (it becomes the first hit) or
// merges away, leaves no row under its old ID there: what the old table
// keeps of the upgrade's day are sessions that exist, some with a newer
// copy in sessions_by_hour, so that a reader of both, taking a session in
// both once, gets the sessions as they are.
func TestSessionGoneAfterTheUpgradeLeavesNoOldRow(t *testing.T) {
	ctx := context.Background()
	pv := func(id string, at, recv time.Time) *hit.Hit {
		return aHit("A", id, at, recv, "https://shop.example/", "")
	}
	for _, c := range []struct {
		name  string
		late  *hit.Hit
		exist map[string]bool // the sessions after the late hit
	}{
		{"renamed", pv("a0", t0.Add(-5*time.Minute), t0.Add(40*time.Minute)), map[string]bool{"a0": true, "b1": true}},
		{"merged", pv("m", t0.Add(25*time.Minute), t0.Add(40*time.Minute)), map[string]bool{"a1": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := connect(t)
			p := testProperty(t, rules.Defaults())
			// Before the upgrade: sessions a1 (12:00) and b1 (12:50).
			run(t, ctx, newPartition(s, p), aMsgs(0, pv("a1", t0, t0), pv("b1", t0.Add(50*time.Minute), t0.Add(50*time.Minute))), 10)
			asBeforeTheUpgrade(t, s)
			// After it, a late hit (the new build, a restart).
			run(t, ctx, newPartition(s, p), aMsgs(2, c.late), 10)
			for _, table := range []string{"sessions_by_hour", "sessions"} {
				for id := range hourRowIDs(t, s, table) {
					if !c.exist[id] {
						t.Errorf("%s holds %s, a session that no longer exists (the sessions: %v)", table, id, slices.Sorted(maps.Keys(c.exist)))
					}
				}
			}
		})
	}
}

// On the days a zone's clock changes, the local hour is a bucket: on the
// day it goes back, two sessions of a visitor an hour apart in real time
// are both in the repeated hour 1, each its own row, and so are their
// pageviews; on the day it goes forward, a session from 01:50 to 03:05
// (15 minutes) is in hour 1 and its second pageview in hour 3.
// Reprocessing the days gives what live processing wrote.
func TestClockChangeDays(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	p := propertyIn(t, ny)
	utc := func(mo time.Month, d, hh, mm int) time.Time { return time.Date(2026, mo, d, hh, mm, 0, 0, time.UTC) }
	pv := func(id string, at time.Time) *hit.Hit { return aHit("A", id, at, at, "https://shop.example/", "") }
	run(t, ctx, newPartition(s, p), aMsgs(0,
		// 2026-03-08: 01:50 EST, then 03:05 EDT.
		pv("f1", utc(3, 8, 6, 50)), pv("f2", utc(3, 8, 7, 5)),
		// 2026-11-01: 01:10 and 01:20 EDT, then 01:10 and 01:40 EST.
		pv("b1", utc(11, 1, 5, 10)), pv("b2", utc(11, 1, 5, 20)), pv("b3", utc(11, 1, 6, 10)), pv("b4", utc(11, 1, 6, 40)),
	), 10)

	spring, fall := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		table, id string
		day       time.Time
		want      map[string]int
	}{
		{"sessions_by_hour", "session_id", spring, map[string]int{"f1": 1}},
		{"pageviews_by_hour", "hit_id", spring, map[string]int{"f1": 1, "f2": 3}},
		{"sessions_by_hour", "session_id", fall, map[string]int{"b1": 1, "b3": 1}},
		{"pageviews_by_hour", "hit_id", fall, map[string]int{"b1": 1, "b2": 1, "b3": 1, "b4": 1}},
	} {
		if got := hourRows(t, s, c.table, c.id, c.day); !maps.Equal(got, c.want) {
			t.Errorf("%s of %s: rows by hour %v, want %v", c.table, dayString(c.day), got, c.want)
		}
	}
	var sessions int64
	if err := s.Query("SELECT sessions FROM rollup_hourly WHERE property_id = ? AND day = ? AND hour = 1 AND shard = 0", propID, fall).Scan(&sessions); err != nil || sessions != 2 {
		t.Errorf("rollup_hourly of %s, hour 1: %d sessions (%v), want 2", dayString(fall), sessions, err)
	}

	live := dumpDerived(t, s)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return fall.AddDate(0, 0, 10) }}
	for _, day := range []time.Time{spring, fall} {
		if err := rp.Run(ctx, p, day, day, RulesHistorical, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := dumpDerived(t, s); got != live {
		t.Errorf("reprocessed clock-change days differ from live processing:\n%s", diff(live, got))
	}
}
