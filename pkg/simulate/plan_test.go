package simulate

import (
	"fmt"
	"testing"
	"time"
)

func TestPlanIsDeterministicAndCoversTheRules(t *testing.T) {
	end := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	a := New(Config{Seed: 1, Visitors: 300, End: end})
	b := New(Config{Seed: 1, Visitors: 300, End: end})
	if fmt.Sprint(a.Hits) != fmt.Sprint(b.Hits) {
		t.Fatal("the same seed gave different plans")
	}
	if c := New(Config{Seed: 2, Visitors: 300, End: end}); fmt.Sprint(c.Hits) == fmt.Sprint(a.Hits) {
		t.Fatal("different seeds gave the same plan")
	}

	// Local midnight falls inside the window, so there are two days.
	if days := a.Expect.SortedDays(); len(days) != 2 {
		t.Fatalf("days %v, want two (the plan crosses the property's midnight)", days)
	}
	var sessions, byChannel int64
	channels := map[string]bool{}
	for _, d := range a.Expect.SortedDays() {
		sessions += a.Expect.Row(d, "total", "").Sessions
		for ch, m := range a.Expect.Days[d]["channel"] {
			byChannel += m.Sessions
			channels[ch] = true
		}
	}
	if sessions == 0 || sessions != byChannel {
		t.Fatalf("sessions %d, by channel %d: want equal and non-zero", sessions, byChannel)
	}
	for _, ch := range []string{"Direct", "Organic Search", "Organic Social", "Paid Search", "Paid Social", "Email", "Referral", "Affiliates"} {
		if !channels[ch] {
			t.Errorf("no session in channel %q", ch)
		}
	}
	var late, dup, bad int
	for _, h := range a.Hits {
		if h.Send.After(h.At) {
			late++
		}
		if h.Copies > 1 {
			dup++
		}
		if h.Malformed != "" {
			bad++
		}
		if age := end.Sub(h.At); age > 4*time.Hour {
			t.Fatalf("a hit %v old cannot be sent", age)
		}
	}
	if late == 0 || dup == 0 || bad == 0 || len(a.Expect.Filtered) == 0 {
		t.Fatalf("late %d, duplicates %d, malformed %d, filtered %v: the plan must have each", late, dup, bad, a.Expect.Filtered)
	}

	for _, c := range []string{CaseEventFirst, CaseNonInteractionBounce, CaseNonInteractionAndClick, CaseGapAtTimeout, CaseGapOverTimeout} {
		if n := a.Expect.Cases[c]; n < 2 {
			t.Errorf("%d sessions with %s; want a few", n, c)
		}
	}
	// The requests are what make the cases, whatever the oracle thinks.
	var nonInteraction int
	pageviews := map[string][]Hit{} // by client
	for _, h := range a.Hits {
		switch {
		case h.Params.Get("ni") == "1":
			nonInteraction++
		case h.Params.Get("t") == "pageview":
			pageviews[h.Params.Get("cid")] = append(pageviews[h.Params.Get("cid")], h)
		}
	}
	if nonInteraction == 0 {
		t.Error("no non-interaction event")
	}
	var eventFirst int
	for _, e := range a.Hits {
		if e.Params.Get("t") != "event" {
			continue
		}
		for _, pv := range pageviews[e.Params.Get("cid")] {
			if d := pv.At.Sub(e.At); d >= 5*time.Millisecond && d <= 50*time.Millisecond && e.Send.After(pv.Send) &&
				e.Params.Get("dl") == pv.Params.Get("dl") && e.Params.Get("dr") == pv.Params.Get("dr") {
				eventFirst++
			}
		}
	}
	if eventFirst == 0 {
		t.Error("no event dated just before its pageview, sent after it, with the page's location and referrer")
	}
	gaps := map[time.Duration]int{}
	for i, h := range a.Hits {
		if !h.WithNext {
			continue
		}
		next := a.Hits[i+1]
		if next.Params.Get("cid") != h.Params.Get("cid") || !next.Send.Equal(h.Send) || next.Copies != h.Copies {
			t.Fatalf("hit %d is sent with the next, but the next is %+v", i, next)
		}
		gaps[next.At.Sub(h.At)]++
	}
	if gaps[SessionTimeout] == 0 || gaps[SessionTimeout+time.Second] == 0 {
		t.Errorf("gaps between hits sent together %v: want some of exactly the timeout and some a second more", gaps)
	}
}

func TestRebasedIsTheSamePlanShifted(t *testing.T) {
	end := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	p := New(Config{Seed: 3, Visitors: 50, End: end})
	q := p.Rebased(end.Add(1234 * time.Millisecond))
	if len(p.Hits) != len(q.Hits) {
		t.Fatalf("%d hits, rebased %d", len(p.Hits), len(q.Hits))
	}
	for i := range p.Hits {
		if q.Hits[i].At.Sub(p.Hits[i].At) != 1234*time.Millisecond || q.Hits[i].Params.Get("hid") != p.Hits[i].Params.Get("hid") {
			t.Fatalf("hit %d: %v vs %v", i, p.Hits[i].At, q.Hits[i].At)
		}
	}
}

// An ad click that is also the first hit after the property's midnight
// starts a Paid Search session: the click, not the date change, decides
// the new session's attribution (the pipeline does the same).
func TestAdClickAtMidnightIsPaidSearch(t *testing.T) {
	loc := time.FixedZone("UTC-6", -6*3600)
	midnight := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC) // local 00:00
	e := newExpectation(loc)
	email := sources[0]
	for _, s := range sources {
		if s.name == "email" {
			email = s
		}
	}
	e.sessions("1.1", "desktop", "Chrome", email, []planned{
		{t: midnight.Add(-7 * time.Minute), typ: "pageview", path: "/a"},
		{t: midnight.Add(-3 * time.Minute), typ: "pageview", path: "/b"},
		{t: midnight.Add(30 * time.Second), typ: "pageview", path: "/c", campaign: "gclid"},
	}, true)
	if got := e.Row("2026-11-22", "channel", "Paid Search").Sessions; got != 1 {
		t.Errorf("Paid Search sessions on the new day: %d, want 1", got)
	}
	if got := e.Row("2026-11-22", "channel", "Direct").Sessions; got != 0 {
		t.Errorf("Direct sessions on the new day: %d, want 0", got)
	}
	if got := e.Row("2026-11-21", "channel", email.channel).Sessions; got != 1 {
		t.Errorf("%s sessions before midnight: %d, want 1", email.channel, got)
	}
}

// The oracle's inactivity rule: a gap of exactly the timeout continues the
// session, a second more ends it, and the next session's attribution comes
// from its own first hit (an internal page: Direct).
func TestInactivityBoundary(t *testing.T) {
	start := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	email := sourceNamed(t, "email")
	for _, tc := range []struct {
		gap                 time.Duration
		sessions, direct    int64
		returning, newUsers int64
	}{
		{SessionTimeout, 1, 0, 0, 1},
		{SessionTimeout + time.Second, 2, 1, 1, 1},
	} {
		e := newExpectation(time.UTC)
		e.sessions("1.1", "desktop", "Chrome", email, []planned{
			{t: start, typ: "pageview", path: "/a"},
			{t: start.Add(40 * time.Second), typ: "pageview", path: "/b"},
			{t: start.Add(40*time.Second + tc.gap), typ: "pageview", path: "/c"},
		}, true)
		day := "2026-11-22"
		if got := e.Row(day, "total", "").Sessions; got != tc.sessions {
			t.Errorf("gap %v: %d sessions, want %d", tc.gap, got, tc.sessions)
		}
		if got := e.Row(day, "channel", "Direct").Sessions; got != tc.direct {
			t.Errorf("gap %v: %d Direct sessions, want %d", tc.gap, got, tc.direct)
		}
		if got := e.Row(day, "channel", "Email").Sessions; got != 1 {
			t.Errorf("gap %v: %d Email sessions, want 1", tc.gap, got)
		}
		if got := e.Row(day, "user_type", "returning").Sessions; got != tc.returning {
			t.Errorf("gap %v: %d returning sessions, want %d", tc.gap, got, tc.returning)
		}
		if got := e.Row(day, "total", "").NewUsers; got != tc.newUsers {
			t.Errorf("gap %v: %d new users, want %d", tc.gap, got, tc.newUsers)
		}
	}
}

// A session with one pageview and only non-interaction events is a bounce;
// an interaction event among them makes it none. Events count either way.
func TestNonInteractionEventsKeepABounce(t *testing.T) {
	start := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	scroll := planned{t: start.Add(9 * time.Second), typ: "event", cat: "scroll", act: "depth", label: "50%", nonInteraction: true}
	click := planned{t: start.Add(20 * time.Second), typ: "event", cat: "cta", act: "click", label: "hero"}
	for _, tc := range []struct {
		name            string
		hits            []planned
		bounces, events int64
	}{
		{"non-interaction only", []planned{scroll}, 1, 1},
		{"and an interaction", []planned{scroll, click}, 0, 2},
	} {
		e := newExpectation(time.UTC)
		e.sessions("1.1", "desktop", "Chrome", sources[0], append([]planned{{t: start, typ: "pageview", path: "/a"}}, tc.hits...), true)
		got := e.Row("2026-11-22", "total", "")
		if got.Bounces != tc.bounces || got.Events != tc.events {
			t.Errorf("%s: %d bounces, %d events; want %d, %d", tc.name, got.Bounces, got.Events, tc.bounces, tc.events)
		}
		if got := e.Row("2026-11-22", "page", "/a").Bounces; got != tc.bounces {
			t.Errorf("%s: the landing page has %d bounces, want %d", tc.name, got, tc.bounces)
		}
	}
}

// A session whose first hit is an event keeps the source of the page, and
// lasts from the event; its landing page is its first pageview's.
func TestEventFirstSession(t *testing.T) {
	start := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	google := sourceNamed(t, "google")
	e := newExpectation(time.UTC)
	e.sessions("1.1", "desktop", "Chrome", google, []planned{
		{t: start.Add(-20 * time.Millisecond), typ: "event", path: "/a", cat: "cta", act: "click", label: "hero"},
		{t: start, typ: "pageview", path: "/a"},
	}, true)
	got := e.Row("2026-11-22", "channel", "Organic Search")
	if got.Sessions != 1 || got.Bounces != 0 || got.DurationMS != 20 {
		t.Errorf("Organic Search: %d sessions, %d bounces, %d ms; want 1, 0, 20", got.Sessions, got.Bounces, got.DurationMS)
	}
	if got := e.Row("2026-11-22", "landing_page", "/a").Sessions; got != 1 {
		t.Errorf("landing on /a: %d sessions, want 1", got)
	}
	if e.Cases[CaseEventFirst] != 1 {
		t.Errorf("cases %v", e.Cases)
	}
}

func sourceNamed(t *testing.T, name string) source {
	t.Helper()
	for _, s := range sources {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no source %q", name)
	return source{}
}
