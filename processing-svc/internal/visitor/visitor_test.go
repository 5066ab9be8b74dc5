package visitor

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
)

var settings = session.Settings{Timeout: 30 * time.Minute, Location: time.UTC}

var t0 = time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)

func pv(id string, min int) *session.Hit {
	return &session.Hit{ID: id, Type: hit.TypePageview, Time: t0.Add(time.Duration(min) * time.Minute), Path: "/" + id}
}

// total sums the daily totals in c.
func total(c *derive.Contributions) rollup.Metrics {
	var m rollup.Metrics
	for k, v := range c.Daily {
		if k.Report == rollup.Total {
			m.Add(v, 1)
		}
	}
	return m
}

func TestLateHitMergeKeepsRollupsExact(t *testing.T) {
	v := New("c1")
	c := derive.New()
	received := t0.Add(2 * time.Hour)
	for _, h := range []*session.Hit{pv("a", 0), pv("c", 50)} {
		if out, _ := v.Apply(h, received, settings, c); out != Applied {
			t.Fatalf("Apply(%s) = %v", h.ID, out)
		}
	}
	if got := total(c); got.Sessions != 2 || got.NewUsers != 1 || got.Bounces != 2 {
		t.Fatalf("two single-page sessions: %+v", got)
	}
	out, ch := v.Apply(pv("b", 25), received, settings, c)
	if out != Applied {
		t.Fatalf("late hit: %v", out)
	}
	got := total(c)
	if got.Sessions != 1 || got.NewUsers != 1 || got.Bounces != 0 || got.Pageviews != 3 {
		t.Fatalf("after the bridging late hit the rollups should show one session of three pages: %+v", got)
	}
	if len(ch.UpsertSessions) != 1 || len(ch.DeleteSessions) != 1 || ch.DeleteSessions[0].ID != "c" {
		t.Fatalf("changes %+v: want session a rewritten and session c deleted", ch)
	}
}

func TestDuplicatesAndExclusions(t *testing.T) {
	v := New("c1")
	c := derive.New()
	r := t0.Add(time.Minute)
	v.Apply(pv("a", 0), r, settings, c)
	if out, _ := v.Apply(pv("a", 0), r, settings, c); out != Duplicate {
		t.Fatalf("re-sent hit: %v, want Duplicate", out)
	}
	if out := v.Exclude("x", t0, r, "bot", time.UTC, c); out != Excluded {
		t.Fatalf("Exclude = %v", out)
	}
	if out := v.Exclude("x", t0, r, "bot", time.UTC, c); out != Duplicate {
		t.Fatalf("re-sent excluded hit: %v, want Duplicate", out)
	}
	if got := c.Filtered[derive.FilteredKey{Day: t0.Truncate(24 * time.Hour), Reason: "bot"}]; got != 1 {
		t.Fatalf("filtered = %d, want 1", got)
	}
	if got := total(c); got.Pageviews != 1 {
		t.Fatalf("pageviews %d, want 1", got.Pageviews)
	}
}

func TestFreezeAndRoundTrip(t *testing.T) {
	v := New("c1")
	c := derive.New()
	v.Apply(pv("a", 0), t0, settings, c)
	// Six hours later: session a can no longer change.
	later := pv("b", 360)
	v.Apply(later, later.Time, settings, c)
	if v.FrozenSessions != 1 || len(v.Hits) != 1 || v.FirstSeen != t0 || v.FirstTouch.Source != "(direct)" {
		t.Fatalf("after freezing: frozen=%d hits=%d firstSeen=%v touch=%+v", v.FrozenSessions, len(v.Hits), v.FirstSeen, v.FirstTouch)
	}
	if out, _ := v.Apply(pv("z", 5), later.Time, settings, c); out != TooLate {
		t.Fatalf("a hit inside a frozen session: %v, want TooLate", out)
	}
	back, _ := roundTrip(t, v)
	if got, want := fmt.Sprint(back.SessionCount(settings), back.FrozenUntil, len(back.Seen)), fmt.Sprint(v.SessionCount(settings), v.FrozenUntil, len(v.Seen)); got != want {
		t.Fatalf("round trip: %s, want %s", got, want)
	}
	// The second session is a returning user's.
	if got := total(c); got.NewUsers != 1 || got.Sessions != 2 {
		t.Fatalf("totals %+v: want 2 sessions, 1 new user", got)
	}
}

// Applying hits one by one, in any arrival order (late hits, merges,
// campaign splits, midnight), builds the same sessions as building all of
// the visitor's hits at once, and the contributions it adds on the way sum
// to those of the final sessions.
func TestIncrementalBuildEqualsFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 11))
	start := time.Date(2026, 6, 1, 23, 0, 0, 0, time.UTC)
	for trial := 0; trial < 300; trial++ {
		v := New("c1")
		c := derive.New()
		var hits []*session.Hit
		for i := range 2 + rng.IntN(25) {
			hits = append(hits, randomHit(rng, fmt.Sprintf("h%02d", i), start.Add(time.Duration(rng.IntN(150))*time.Minute)))
		}
		for _, h := range hits {
			v.Apply(h, start.Add(3*time.Hour), settings, c) // received together: nothing freezes
		}
		want := session.Build(v.Hits, settings)
		got := v.Sessions(settings)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: incremental sessions differ from a full build:\n got  %s\n want %s", trial, describe(got), describe(want))
		}
		full := derive.New()
		for i, s := range want {
			full.AddSession(s, "c1", i == 0, 1)
		}
		if !reflect.DeepEqual(c.Daily, full.Daily) || !reflect.DeepEqual(c.DailyUsers, full.DailyUsers) {
			t.Fatalf("trial %d: the contributions added hit by hit differ from the final sessions'", trial)
		}
	}
}

// randomHit is a hit of the randomized tests: a pageview of one of three
// pages, an event or an engagement ping, now and then with a campaign.
func randomHit(rng *rand.Rand, id string, t time.Time) *session.Hit {
	h := &session.Hit{ID: id, Type: hit.TypePageview, Time: t, Path: fmt.Sprint("/", rng.IntN(3))}
	switch rng.IntN(5) {
	case 0:
		h.Type, h.Category, h.Action = hit.TypeEvent, "cta", "click"
	case 1:
		h.Type = hit.TypeEngagement
	}
	if rng.IntN(7) == 0 {
		h.Campaign.Source, h.Campaign.Medium = "news", fmt.Sprint("m", rng.IntN(2))
	}
	return h
}

func describe(ss []*session.Session) string {
	var out []string
	for _, s := range ss {
		out = append(out, fmt.Sprintf("%s(%d hits)", s.ID, len(s.Hits)))
	}
	return fmt.Sprint(out)
}

// applyAll applies hitAt(0) to hitAt(n-1), each received at its time, and
// counts those applied and those excluded by the limits.
func applyAll(t *testing.T, v *Visitor, c *derive.Contributions, n int, at func(int) time.Time, hitAt func(int) *session.Hit) (applied, excluded int) {
	t.Helper()
	for i := range n {
		switch out, _ := v.Apply(hitAt(i), at(i), settings, c); out {
		case Applied:
			applied++
		case OverLimit:
			excluded++
		default:
			t.Fatalf("hit %d: %v", i, out)
		}
	}
	return applied, excluded
}

// TestVisitorLimitsBytes: hits of the largest size (a path of 4 KB, a
// referrer and a title of 2 KB) reach MaxLiveBytes long before
// MaxLiveHits; without it a state at MaxLiveHits was some 90 MB, past what
// one Cassandra write takes. Its state stays within the bound, encoded.
func TestVisitorLimitsBytes(t *testing.T) {
	v := New("big")
	c := derive.New()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	path, long := "/"+strings.Repeat("p", 4095), strings.Repeat("x", 2000)
	applied, excluded := applyAll(t, v, c, 1000, at, func(i int) *session.Hit {
		return &session.Hit{ID: fmt.Sprintf("h%05d", i), Type: hit.TypePageview, Time: at(i), Path: fmt.Sprintf("%s%d", path, i),
			Referrer: "https://r.example/" + long, Title: long}
	})
	if want := MaxLiveBytes / 8200; applied < want-5 || applied > want+5 || excluded != 1000-applied {
		t.Fatalf("%d applied, %d excluded; want about %d applied (%d bytes of hits of about 8,200), the rest excluded", applied, excluded, want, MaxLiveBytes)
	}
	if got := c.Filtered[derive.FilteredKey{Day: t0.Truncate(24 * time.Hour), Reason: LimitReason}]; got != int64(excluded) {
		t.Fatalf("filtered as %s: %d, want %d", LimitReason, got, excluded)
	}
	b, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxLiveBytes+MaxLiveBytes/4 {
		t.Fatalf("the state is %d bytes encoded", len(b))
	}
}

// A visitor past MaxLiveHits live hits has its further hits excluded as
// visitor_limit (counted, not lost silently) and its state stops growing;
// its applied hits are still recognised when re-sent, and the limit lifts
// once its sessions freeze.
func TestVisitorLimits(t *testing.T) {
	v := New("server")
	c := derive.New()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 100 * time.Millisecond) }
	applied, excluded := applyAll(t, v, c, MaxLiveHits+25, at, func(i int) *session.Hit {
		return &session.Hit{ID: fmt.Sprintf("h%05d", i), Type: hit.TypeEvent, Time: at(i), Category: "api", Action: "call"}
	})
	if applied != MaxLiveHits || excluded != 25 || len(v.Hits) != MaxLiveHits {
		t.Fatalf("%d applied, %d excluded, %d live; want %d, 25, %d", applied, excluded, len(v.Hits), MaxLiveHits, MaxLiveHits)
	}
	if got := c.Filtered[derive.FilteredKey{Day: t0.Truncate(24 * time.Hour), Reason: LimitReason}]; got != 25 {
		t.Fatalf("filtered as %s: %d, want 25", LimitReason, got)
	}
	resent := &session.Hit{ID: "h00007", Type: hit.TypeEvent, Time: at(7), Category: "api", Action: "call"}
	if out, _ := v.Apply(resent, at(MaxLiveHits+30), settings, c); out != Duplicate {
		t.Fatalf("a re-sent applied hit: %v, want Duplicate", out)
	}

	// Excluded hits' IDs are kept up to MaxSeen, then counted without.
	for i := range MaxSeen {
		v.Exclude(fmt.Sprint("bot", i), at(MaxLiveHits), at(MaxLiveHits), "bot", time.UTC, c)
	}
	if len(v.Seen) > MaxSeen+MaxLiveHits {
		t.Fatalf("%d IDs kept, want at most %d", len(v.Seen), MaxSeen+MaxLiveHits)
	}

	// A day later the session has ended and frozen: hits apply again.
	next := &session.Hit{ID: "next", Type: hit.TypePageview, Time: t0.Add(30 * time.Hour), Path: "/"}
	if out, _ := v.Apply(next, next.Time, settings, c); out != Applied {
		t.Fatalf("after the sessions froze: %v, want Applied", out)
	}
}

// The property's rules change while a visitor's sessions are live (here a
// referral exclusion is added between its first and second hit): the
// rollups must end as those of its sessions derived under the rules of its
// latest hit, whatever order its hits arrive in, and whether or not it was
// saved and loaded again in between.
func TestRulesChangeMidVisit(t *testing.T) {
	v1 := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC, Source: "v1"}
	v2 := v1
	v2.Source = "v2"
	v2.IgnoreReferrer = func(host string) bool { return host == "partner.example" }

	a := pv("a", 0)
	a.Referrer = "https://partner.example/p"
	b := pv("b", 60)
	l := &session.Hit{ID: "l", Type: hit.TypeEvent, Time: t0.Add(5 * time.Minute), Category: "x", Action: "y", Interaction: true}

	want := derive.New()
	for i, s := range session.Build([]*session.Hit{a, l, b}, v2) {
		want.AddSession(s, "c1", i == 0, +1)
	}
	received := t0.Add(time.Hour)
	for _, order := range [][]*session.Hit{{a, b, l}, {a, l, b}} {
		v, c := New("c1"), derive.New()
		for i, h := range order {
			s := v2
			if i == 0 {
				s = v1 // received before the change
			}
			v.Apply(h, received, s, c)
		}
		if !reflect.DeepEqual(c.Daily, want.Daily) || !reflect.DeepEqual(c.DailyUsers, want.DailyUsers) {
			t.Errorf("arrival order %s,%s,%s:\n got  %v\n want %v", order[0].ID, order[1].ID, order[2].ID, c.Daily, want.Daily)
		}
	}

	// Saved after a, loaded again before b: its sessions are derived
	// under the rules of its latest hit first (as the engine does on
	// loading), so that b's rules change them in the rollups too.
	want = derive.New()
	for i, s := range session.Build([]*session.Hit{a, b}, v2) {
		want.AddSession(s, "c1", i == 0, +1)
	}
	v, c := New("c1"), derive.New()
	v.Apply(a, received, v1, c)
	state, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Unmarshal(state)
	if err != nil {
		t.Fatal(err)
	}
	loaded.Sessions(v1)
	loaded.Apply(b, received, v2, c)
	if !reflect.DeepEqual(c.Daily, want.Daily) {
		t.Errorf("saved and loaded between the rules versions:\n got  %v\n want %v", c.Daily, want.Daily)
	}
}

// A hit re-sent hours later without its time (so dated when received)
// while its session is still live is a duplicate, however old the hit.
func TestResendOfALiveHitHoursLater(t *testing.T) {
	v, c := New("c1"), derive.New()
	for m := 0; m <= 260; m += 20 { // a session kept alive for over four hours
		h := pv(fmt.Sprint("p", m), m)
		if out, _ := v.Apply(h, h.Time, settings, c); out != Applied {
			t.Fatalf("hit at +%d min: %v", m, out)
		}
	}
	again := pv("p0", 265) // p0 again, dated at its receipt
	if out, _ := v.Apply(again, again.Time, settings, c); out != Duplicate {
		t.Fatalf("re-send of a live hit: %v, want Duplicate", out)
	}
	if got := total(c); got.Pageviews != 14 || got.Sessions != 1 {
		t.Errorf("totals %+v, want 14 pageviews in one session", got)
	}
}

// Values with more than six decimals (a goal worth 100/3) sum to the same
// bits whatever order their hits arrive in, and as a full build sums them.
func TestValueSumsDoNotDependOnArrival(t *testing.T) {
	goal := func(id, g string, min int) *session.Hit {
		h := &session.Hit{ID: id, Type: hit.TypeEvent, Time: t0.Add(time.Duration(min) * time.Minute), Category: "c", Action: id,
			Value: 33.3333334, Interaction: true, Goals: []session.Goal{{ID: g, Value: 33.3333334}}}
		return h
	}
	p := pv("p", 0)
	e1, e2 := goal("e1", "g1", 1), goal("e2", "g2", 2)
	want := derive.New()
	for i, s := range session.Build([]*session.Hit{p, e1, e2}, settings) {
		want.AddSession(s, "c1", i == 0, +1)
	}
	for _, order := range [][]*session.Hit{{p, e1, e2}, {e2, e1, p}, {p, e2, e1}} {
		v, c := New("c1"), derive.New()
		for _, h := range order {
			v.Apply(h, t0.Add(time.Hour), settings, c)
		}
		if got, w := total(c), total(want); got.ConversionValue != w.ConversionValue || got.EventValue != w.EventValue {
			t.Errorf("order %s,%s,%s: values %v/%v, want %v/%v", order[0].ID, order[1].ID, order[2].ID,
				got.ConversionValue, got.EventValue, w.ConversionValue, w.EventValue)
		}
	}
}

// A closed day (ended more than LateHorizon and skew ago) never changes,
// even when the visitor comes back under a longer timeout than its
// sessions were derived with: report-svc reports such a day as final.
func TestClosedDayNotDerivedAgainUnderNewSettings(t *testing.T) {
	short := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC, Source: "v1"}
	long := session.Settings{Timeout: 8 * time.Hour, Location: time.UTC, Source: "v2"}
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	at := func(id string, t time.Time) *session.Hit {
		return &session.Hit{ID: id, Type: hit.TypePageview, Time: t, Path: "/" + id}
	}
	v, c := New("c1"), derive.New()
	for _, h := range []*session.Hit{at("a", day.Add(21*time.Hour)), at("b", day.Add(22*time.Hour+30*time.Minute))} {
		if out, _ := v.Apply(h, h.Time, short, c); out != Applied {
			t.Fatalf("Apply(%s) = %v", h.ID, out)
		}
	}
	// Back after the day closed (midnight + 4h10m), well within the new
	// timeout of its sessions: under it they would be one session.
	back := day.Add(24*time.Hour + 4*time.Hour + 20*time.Minute)
	out, ch := v.Apply(at("c", back), back, long, c)
	if out != Applied {
		t.Fatalf("the visitor's return: %v", out)
	}
	if len(ch.DeleteSessions) != 0 || len(ch.UpsertSessions) != 1 || ch.UpsertSessions[0].Session.ID != "c" {
		t.Fatalf("changes %+v: want only the new day's session c", ch)
	}
	sessions := map[time.Time]int64{}
	for k, m := range c.Daily {
		if k.Report == rollup.Total {
			sessions[k.Day] += m.Sessions
		}
	}
	if sessions[day] != 2 || sessions[day.AddDate(0, 0, 1)] != 1 {
		t.Fatalf("sessions by day %v, want the closed day's 2 and the next day's 1", sessions)
	}
}

// A session built under a zone since replaced can cross the new zone's
// midnight: the day rule judges it by its end, so a late hit that must
// join it still can.
func TestZoneChangeLeavesALateHitItsSession(t *testing.T) {
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	utc := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC, Source: "utc"}
	ny := session.Settings{Timeout: 30 * time.Minute, Location: newYork, Source: "ny"}
	at := func(id string, t time.Time) *session.Hit {
		return &session.Hit{ID: id, Type: hit.TypePageview, Time: t, Path: "/" + id}
	}
	base := time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)
	v, c := New("c1"), derive.New()
	for _, h := range []*session.Hit{at("a", base.Add(3*time.Hour+40*time.Minute)), at("b", base.Add(4*time.Hour+5*time.Minute)), at("c", base.Add(4*time.Hour+30*time.Minute))} {
		v.Apply(h, h.Time, utc, c)
	}
	// d happened at 04:35 UTC and arrives 3 h 40 min later, after the
	// property moved to New York (where 04:05 UTC is just past midnight).
	d := at("d", base.Add(4*time.Hour+35*time.Minute))
	if out, _ := v.Apply(d, d.Time.Add(3*time.Hour+40*time.Minute), ny, c); out != Applied {
		t.Fatalf("the late hit: %v, want applied to its session", out)
	}
	// As New York's days make them: a on June 1st, b, c and d on the 2nd.
	sessions := map[time.Time]int64{}
	for k, m := range c.Daily {
		if k.Report == rollup.Total && m.Sessions != 0 {
			sessions[k.Day] += m.Sessions
		}
	}
	june1, june2 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)
	if len(sessions) != 2 || sessions[june1] != 1 || sessions[june2] != 1 {
		t.Fatalf("sessions by day %v, want one on June 1st (a) and one on the 2nd (b, c, d)", sessions)
	}
}

// TestReSentAfterFreeze pins what a re-send (a dead letter's replay, an
// operator's, docs/operations.md) does to a hit whose session has frozen:
// it is TooLate, counted among the filtered hits and not in the sessions;
// at once again it is a Duplicate (its ID is kept with its time), but once
// the visitor's clock has moved on a minute (its next hit) the old ID is
// forgotten and a further re-send is counted as filtered once more.
func TestReSentAfterFreeze(t *testing.T) {
	v := New("c1")
	c := derive.New()
	a := pv("a", 0)
	for _, h := range []*session.Hit{pv("b", 360), pv("c", 362)} {
		if out, _ := v.Apply(h, h.Time, settings, c); out != Applied {
			t.Fatalf("Apply(%s) = %v", h.ID, out)
		}
	}
	tooLate := func() int64 {
		return c.Filtered[derive.FilteredKey{Day: t0.Truncate(24 * time.Hour), Reason: "too_late"}]
	}
	// a happened before b and c but reaches processing after them (it
	// was dead-lettered, and is replayed): no session has frozen yet, so
	// it takes its place in the visitor's sessions.
	if out, _ := v.Apply(a, a.Time, settings, c); out != Applied {
		t.Fatalf("a hit re-sent while its visitor's sessions are live: %v, want Applied", out)
	}
	if out, _ := v.Apply(a, a.Time, settings, c); out != Duplicate {
		t.Fatalf("the same hit re-sent again: %v, want Duplicate", out)
	}
	// Six hours on, the sessions up to c have frozen and a's ID is gone.
	for _, h := range []*session.Hit{pv("d", 720), pv("e", 722)} {
		v.Apply(h, h.Time, settings, c)
	}
	pageviews := total(c).Pageviews
	if out, _ := v.Apply(a, a.Time, settings, c); out != TooLate {
		t.Fatalf("re-sent after its session froze: %v, want TooLate", out)
	}
	if out, _ := v.Apply(a, a.Time, settings, c); out != Duplicate {
		t.Fatalf("re-sent again at once: %v, want Duplicate", out)
	}
	v.Apply(pv("f", 724), t0.Add(724*time.Minute), settings, c)
	if out, _ := v.Apply(a, a.Time, settings, c); out != TooLate {
		t.Fatalf("re-sent again after the visitor's next hit: %v, want TooLate", out)
	}
	if got := tooLate(); got != 2 {
		t.Errorf("too_late filtered hits %d, want 2 (one per re-send after the freeze that was not a duplicate)", got)
	}
	if got := total(c).Pageviews; got != pageviews+1 {
		t.Errorf("pageviews %d, want %d (f's alone: a re-sent never counts in the sessions again)", got, pageviews+1)
	}
}

// A per-day visitor counts its sessions on each day, frozen or live
// (OnDay), keeps a frozen day's count while hits can change the day, and
// drops it once the day is closed (PruneDays).
func TestSessionsPerDay(t *testing.T) {
	v := New("c1")
	v.PerDay = true
	c := derive.New()
	day := session.LocalDay(t0, time.UTC)
	for _, h := range []*session.Hit{pv("a", 0), pv("b", 5), pv("c", 60), pv("d", 200)} { // three sessions
		v.Apply(h, h.Time, settings, c)
	}
	if got := v.OnDay(day, settings); got.Sessions != 3 || !got.Last.Equal(t0.Add(200*time.Minute)) {
		t.Fatalf("on the day: %+v, want 3 sessions, the last ended at 13:20", got)
	}
	// Ten hours on, the first two are frozen: the day still counts them.
	late := pv("e", 600)
	v.Apply(late, late.Time, settings, c)
	if v.FrozenSessions == 0 || len(v.FrozenDays) != 1 {
		t.Fatalf("frozen %d sessions, days %+v: want some, on one day", v.FrozenSessions, v.FrozenDays)
	}
	if got := v.OnDay(day, settings); got.Sessions != 4 || !got.Last.Equal(late.Time) {
		t.Fatalf("on the day after freezing: %+v, want 4 sessions, the last ended at 20:00", got)
	}
	v.PruneDays(settings)
	if len(v.FrozenDays) != 1 {
		t.Fatal("pruned the count of a day that is still open")
	}
	// Two days on, the day is closed: its count goes once written.
	next := pv("f", 2*24*60)
	v.Apply(next, next.Time, settings, c)
	if got := v.OnDay(day, settings); got.Sessions != 4 || !got.Last.Equal(late.Time) {
		t.Fatalf("on the day, closed: %+v, want the same 4 sessions", got)
	}
	v.PruneDays(settings)
	if len(v.FrozenDays) != 0 {
		t.Fatalf("days %+v kept after the day closed", v.FrozenDays)
	}
	if got := v.OnDay(day.AddDate(0, 0, 2), settings); got.Sessions != 1 {
		t.Fatalf("two days on: %+v, want 1 session", got)
	}
}

// A visitor read in version 2 counts its frozen sessions in its base, with
// the end of the last of them (FrozenUntil less the timeout), and its live
// sessions on their days.
func TestConvertPerDay(t *testing.T) {
	v := New("c1")
	c := derive.New()
	for _, h := range []*session.Hit{pv("a", 0), pv("b", 10), pv("c", 600)} {
		v.Apply(h, h.Time, settings, c)
	}
	if v.FrozenSessions != 1 || len(v.Hits) != 1 {
		t.Fatalf("frozen %d, live hits %d: want 1 and 1", v.FrozenSessions, len(v.Hits))
	}
	v.ConvertPerDay(settings)
	if !v.PerDay || v.BaseSessions != 1 || !v.BaseLast.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("converted: per day %v, base %d ending %v; want 1 ending at 10:10", v.PerDay, v.BaseSessions, v.BaseLast)
	}
	if got := v.OnDay(session.LocalDay(t0, time.UTC), settings); got.Sessions != 1 {
		t.Fatalf("on the day: %+v, want the live session alone", got)
	}
	if b, _ := v.Marshal(); b[0] != stateV3 {
		t.Fatalf("a converted visitor written in version %#x, want 3", b[0])
	}
}
