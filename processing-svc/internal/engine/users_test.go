package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
	"github.com/gocql/gocql"
)

// A visitor whose last sessions were still live in its stored state when
// a job re-derived their day comes back days later: freezing them then
// changes nothing in the users row's figures for that day, which keep
// the job's (its next write writes only the days its hits change).
func TestReturningVisitorKeepsJobsDayFigures(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	v2 := rules.Defaults()
	v2.Pages.Exclude = []string{"^/x"}
	day := session.LocalDay(t0, time.UTC)
	changed := t0.AddDate(0, 0, 3)
	p := rulesChangeAt(changed, 1, compile(t, rules.Defaults(), 1), compile(t, v2, 2), false)
	page := func(id, path string, at time.Time) *hit.Hit {
		h := aHit("V", id, at, at.Add(time.Second), "https://shop.example"+path, "")
		h.Path = path
		return h
	}
	part := newPartition(s, p)
	// Two sessions on the day under v1, live when the visitor is written.
	run(t, ctx, part, aMsgs(0, page("a", "/", t0), page("b", "/x", t0.Add(time.Hour))), 10)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	// v2 excludes /x: the job leaves the day one session.
	rp := &Reprocessor{Session: s, Now: func() time.Time { return changed.Add(time.Hour) }}
	if err := rp.Run(ctx, p, day, day, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, s, "V"); u.sessions != 1 || !u.last.Equal(t0) {
		t.Fatalf("after the job: %d sessions, last seen %v; want 1, %v", u.sessions, u.last, t0)
	}
	// Back five days later, on a processor that reads its state.
	back := t0.AddDate(0, 0, 5)
	part = newPartition(s, p)
	run(t, ctx, part, aMsgs(2, page("c", "/", back)), 10)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	u := userOf(t, s, "V")
	if u.sessions != 2 || !u.last.Equal(back) || u.days[day] != 1 {
		t.Fatalf("after the return: %d sessions (%v on the job's day), last seen %v; want 2 (1), %v\n%s", u.sessions, u.days[day], u.last, back,
			dumptest.Tables(t, s, "site_users"))
	}
}

// A processor that catches up applies a visitor's hits of days apart in
// one batch: the sessions of the first day are frozen by the later hit
// before any flush, and the day's figures are still written whole.
func TestFrozenBeforeWrittenStillCounted(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := testProperty(t, rules.Defaults())
	later := t0.AddDate(0, 0, 2)
	part := newPartition(s, p)
	run(t, ctx, part, aMsgs(0,
		aHit("V", "a", t0, t0, "https://shop.example/", ""),
		aHit("V", "b", t0.Add(2*time.Hour), t0.Add(2*time.Hour), "https://shop.example/", ""),
		aHit("V", "c", later, later, "https://shop.example/", "")), 10)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	u := userOf(t, s, "V")
	if day := session.LocalDay(t0, time.UTC); u.days[day] != 2 || !u.lasts[day].Equal(t0.Add(2*time.Hour)) || u.sessions != 3 || !u.last.Equal(later) {
		t.Fatalf("users row: days %v, lasts %v; want 2 sessions on the first day ending at 14:00, 3 in all, last seen %v", u.days, u.lasts, later)
	}
	// Pruned once written: the closed day is not written again.
	if vs := part.visitors[propID+"/V"]; vs == nil || len(vs.v.FrozenDays) != 0 {
		t.Fatalf("the visitor in memory: %+v, want no frozen day kept", vs)
	}
}

// The upgrade to per-day figures: visitors processed first by a build of
// one figure (StatePolicy.Encoding 2, written in version 2), then converted at
// their next hit, end with the users rows of a run per day throughout.
func TestConversionToPerDayKeepsTheUsers(t *testing.T) {
	ctx := context.Background()
	p := testProperty(t, rules.Defaults())
	msgs := traffic(40, 7)
	want := connect(t)
	run(t, ctx, newPartition(want, p), msgs, 25)
	if _, err := newPartition(want, p).FlushAll(ctx); err != nil {
		t.Fatal(err)
	}

	got := connect(t)
	half := len(msgs) / 2
	old := New(Config{Topic: "hits", Partition: 0, Session: got, Properties: staticProperties{p}, State: StatePolicy{Encoding: 2}})
	run(t, ctx, old, msgs[:half], 25)
	if _, err := old.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	var state []byte
	if err := got.Query("SELECT state FROM visitor_state WHERE property_id = ? AND client_id = 'client-0'", propID).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if v, err := visitor.Unmarshal(state); err != nil || v.PerDay {
		t.Fatalf("encoding 2 wrote a per-day state (%v)", err)
	}
	if dumpUsers(t, got) == dumpUsers(t, want) {
		t.Fatal("half the traffic gives the users of all of it: the test would prove nothing")
	}
	part := newPartition(got, p)
	run(t, ctx, part, msgs[half:], 25)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if g, w := dumpUsers(t, got), dumpUsers(t, want); g != w {
		t.Fatalf("users after the conversion:\n%s", diff(w, g))
	}
}

// A visitor whose every hit live processing excluded, in a state of one
// figure (encoding 2), and whose first session and day figures a job
// derived since, counts per day when it comes back: the job's sessions
// are counted once, whichever encoding its processor writes.
func TestJobsDaysCountedOnceForAVisitorOfOneFigure(t *testing.T) {
	for _, encoding := range []int{2, 3} {
		t.Run(fmt.Sprint("encoding=", encoding), func(t *testing.T) {
			ctx := context.Background()
			s := connect(t)
			v1 := rules.Defaults()
			v1.Pages.Exclude = []string{"^/x"}
			changed := t0.AddDate(0, 0, 3)
			p := rulesChangeAt(changed, 1, compile(t, v1, 1), compile(t, rules.Defaults(), 2), false)
			page := func(id, path string, at time.Time) *hit.Hit {
				h := aHit("V", id, at, at.Add(time.Second), "https://shop.example"+path, "")
				h.Path = path
				return h
			}
			old := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, State: StatePolicy{Encoding: 2}})
			run(t, ctx, old, aMsgs(0, page("a", "/x", t0)), 10)
			if _, err := old.FlushAll(ctx); err != nil {
				t.Fatal(err)
			}
			day := session.LocalDay(t0, time.UTC)
			rp := &Reprocessor{Session: s, Now: func() time.Time { return changed.Add(time.Hour) }}
			if err := rp.Run(ctx, p, day, day, RulesCurrent, nil, nil); err != nil {
				t.Fatal(err)
			}
			back := t0.AddDate(0, 0, 5)
			part := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, State: StatePolicy{Encoding: encoding}})
			run(t, ctx, part, aMsgs(1, page("b", "/", back)), 10)
			if _, err := part.FlushAll(ctx); err != nil {
				t.Fatal(err)
			}
			if u := userOf(t, s, "V"); u.sessions != 2 || !u.first.Equal(t0) || !u.last.Equal(back) {
				t.Fatalf("users row: %d sessions, first %v, last %v; want 2, %v, %v\n%s", u.sessions, u.first, u.last, t0, back, dumptest.Tables(t, s, "site_users"))
			}
		})
	}
}

// A property's time zone changes, and a job re-derives the days around
// the change under the new zone ("days before and around a zone change are
// made consistent by reprocessing them", docs/processing.md): a user's
// session counted on its day in the old zone, which is another day in the
// new one, is counted once.
func TestReprocessAfterZoneChangeCountsUsersOnce(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := testProperty(t, rules.Defaults()) // UTC
	at := t0.Add(8 * time.Hour)            // 20:00 UTC: 05:00 the next day in Tokyo
	// W's hit keeps the first Tokyo day in the archive: a day without an
	// archived hit is left as it is, every table of it (ErrNoArchive).
	run(t, ctx, newPartition(s, p), aMsgs(0, aHit("W", "w", t0, t0.Add(time.Second), "https://shop.example/", ""),
		aHit("V", "a", at, at.Add(time.Second), "https://shop.example/", "")), 10)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	moved := *p
	moved.Location = tokyo
	from := session.LocalDay(t0, tokyo)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.AddDate(0, 0, 10) }}
	if err := rp.Run(ctx, &moved, from, from.AddDate(0, 0, 1), RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, s, "V"); u.sessions != 1 || !u.last.Equal(at) {
		t.Errorf("after the job: %d sessions (days %v), last seen %v; want 1, %v", u.sessions, u.days, u.last, at)
	}
}

// A visitor all of whose hits live processing excluded, whose first
// session a job of a build before per-day counts derived (first_seen
// only: its users row counts no session on a day), returns and is
// converted (its session counted in session_count), and a job over that
// first session's day runs again: the session is counted once.
func TestJobAfterConversionOfExcludedVisitorCountsItsDayOnce(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 2, true)
	old := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, State: StatePolicy{Encoding: 2}})
	run(t, ctx, old, aMsgs(0, aPromo("B", "b0", "")), 10)
	keepPromoOfB(t, ctx, s, p, t0.Add(4*24*time.Hour))
	// What a job before per-day counts wrote: the first session alone.
	if err := s.Query("UPDATE site_users SET day_sessions = null, day_last_seen = null WHERE property_id = ? AND client_id = 'B'", propID).Exec(); err != nil {
		t.Fatal(err)
	}
	d8 := t0.AddDate(0, 0, 8)
	run(t, ctx, newPartition(s, p), aMsgs(1, aHit("B", "b8", d8, d8.Add(time.Second), "https://shop.example/", "")), 10)
	day0 := session.LocalDay(t0, time.UTC)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.AddDate(0, 0, 10) }}
	if err := rp.Run(ctx, p, day0, day0, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, s, "B"); u.sessions != 2 || !u.last.Equal(d8) {
		t.Errorf("after the job: %d sessions (%d in session_count, last seen %v; days %v), last seen %v; want 2, %v", u.sessions, u.base.Sessions, u.base.Last, u.days, u.last, d8)
	}
}

// A user whose state expired, whose users row holds only the first session
// a job derived before per-day counts (first_seen and first touch, no
// session_count: live processing had excluded every hit), comes back: that
// session still counts, as the visitor started from the row counts it
// (FrozenSessions 1).
func TestUserBackAfterStateExpiredCountsJobsFirstSession(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	first := t0.AddDate(-1, -2, 0)
	if err := s.Query(cqlUserFirst, propID, "back", first, "news.example", "referral", "(referral)", "Referral").Exec(); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, newPartition(s, testProperty(t, rules.Defaults())), aMsgs(0, aHit("back", "b", t0, t0, "https://shop.example/", "")), 10)
	if u := userOf(t, s, "back"); u.sessions != 2 || !u.last.Equal(t0) {
		t.Errorf("users row: %d sessions (%d in session_count), last seen %v; want 2 (the job's and today's), %v", u.sessions, u.base.Sessions, u.last, t0)
	}
}

// A visitor of one figure (state encoding 2) whose last session was frozen
// by an engagement ping outside any session (a tab left open for hours) is
// converted at its next hit, another such ping: its users row's last seen
// is when its last session ended (docs/processing.md, "Users"), not the
// end of the session timeout after it (ConvertPerDay took the base's last
// as just before FrozenUntil when the state held live hits, and these
// pings are live hits without a session). Found by the session 26 upgrade
// drill.
func TestConversionOfAVisitorBackWithAPingKeepsItsLastSessionsEnd(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := testProperty(t, rules.Defaults())
	ping := func(id string, at time.Time) *hit.Hit {
		h := aHit("V", id, at, at, "https://shop.example/", "")
		h.Type, h.EngagementMS = hit.TypeEngagement, 15000
		return h
	}
	old := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, State: StatePolicy{Encoding: 2}})
	run(t, ctx, old, aMsgs(0, aHit("V", "a", t0, t0, "https://shop.example/", ""), ping("b", t0.Add(5*time.Hour))), 10)
	if _, err := old.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	part := newPartition(s, p) // encoding 3: converts the visitor
	run(t, ctx, part, aMsgs(2, ping("c", t0.Add(5*time.Hour+time.Minute))), 10)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, s, "V"); u.sessions != 1 || !u.last.Equal(t0) {
		t.Fatalf("users row after the conversion: %d sessions, last seen %v; want 1, %v (the end of its only session)\n%s",
			u.sessions, u.last, t0, dumptest.Tables(t, s, "site_users"))
	}
}

// userOf reads a client's users row (readUsers: its session count and last
// seen summed over its base and days); a client without one reads as zero.
func userOf(t *testing.T, s *gocql.Session, client string) userRow {
	t.Helper()
	users, err := readUsers(context.Background(), s, propID, []string{client})
	if err != nil {
		t.Fatal(err)
	}
	return users[client]
}

// A visitor of one figure (state encoding 2) whose last session was frozen
// under a 30-minute timeout, and whose live hits since came under a rules
// version with a 90-minute one, is converted: its base must end when that
// session ended. ConvertPerDay takes FrozenUntil less the timeout of the
// live hits' rules, not of the rules the session was frozen under, so the
// base ends an hour early, here on the day before: a job over the session's
// day then counts it on that day too (userRow.inBase no longer covers it),
// so the user has one session more than the tables. Found by reviewing the
// fix of TestConversionOfAVisitorBackWithAPingKeepsItsLastSessionsEnd after
// the session 26 upgrade drill.
func TestConversionAfterATimeoutChangeEndsTheBaseWhenItsLastSessionEnded(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	day := session.LocalDay(t0, time.UTC) // t0's day, UTC
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	v1, v2 := rules.Defaults(), rules.Defaults()
	v1.SessionTimeoutMinutes, v2.SessionTimeoutMinutes = 30, 90
	changed := at(5, 30)
	p := rulesChangeAt(changed, 1, compile(t, v1, 1), compile(t, v2, 2), true)
	page := func(id string, when time.Time) *hit.Hit {
		h := aHit("V", id, when, when, "https://shop.example/", "")
		if h.RuleVersion = 1; !when.Before(changed) {
			h.RuleVersion = 2
		}
		return h
	}
	old := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, State: StatePolicy{Encoding: 2}})
	// A session at 00:10, frozen by the visit at 05:00 (under v1: FrozenUntil
	// 00:40), which goes on at 05:40 under v2.
	run(t, ctx, old, aMsgs(0, page("a", at(0, 10)), page("b", at(5, 0)), page("c", at(5, 40))), 10)
	if _, err := old.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	part := newPartition(s, p) // encoding 3: converts the visitor
	run(t, ctx, part, aMsgs(3, page("d", at(5, 45))), 10)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Encoding 2 does not keep the session's end, nor the timeout it was
	// frozen under: the base may end up to a timeout late, but on its day.
	u := userOf(t, s, "V")
	if u.base.Last.Before(at(0, 10)) || !session.LocalDay(u.base.Last, time.UTC).Equal(day) {
		t.Errorf("the converted row's base ends at %v; want on %v, not before %v, when its frozen session ended", u.base.Last, day.Format(time.DateOnly), at(0, 10))
	}
	rp := &Reprocessor{Session: s, Now: func() time.Time { return day.AddDate(0, 0, 3) }}
	if err := rp.Run(ctx, p, day, day, RulesHistorical, nil, nil); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := s.Query("SELECT COUNT(*) FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ?", propID, day, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if u = userOf(t, s, "V"); u.sessions != stored {
		t.Fatalf("after a job over the day: the users row counts %d sessions (base %d ending %v, days %v); the tables hold %d\n%s",
			u.sessions, u.base.Sessions, u.base.Last, u.days, stored, dumptest.Tables(t, s, "site_users"))
	}
}
