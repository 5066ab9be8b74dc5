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
