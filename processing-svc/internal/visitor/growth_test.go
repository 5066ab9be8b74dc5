package visitor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// What a visitor keeps must not grow with what a client sends over days,
// nor what a hit costs with the hits kept: each case is a shape a client
// can send at will (BenchmarkApplyHitVisitorShapes and
// BenchmarkApplyHitNewestFirst in package engine measure their cost).

// TestPingsAloneLeaveTheTimeline: a client sending engagement pings and
// nothing else (no session) keeps only those a late hit could still bring
// into a session, not every ping it ever sent (its state grew by a day's
// pings a day, past what one write to Cassandra takes in a week of large
// ones), and its sessions, none, stay built.
func TestPingsAloneLeaveTheTimeline(t *testing.T) {
	v := New("c1")
	c := derive.New()
	// Pings a minute apart for four days, then a pageview 20 minutes
	// late, which the 21 pings from its time on join.
	for i := range 4 * 24 * 60 {
		at := t0.Add(time.Duration(i) * time.Minute)
		h := &session.Hit{ID: fmt.Sprint("p", i), Type: hit.TypeEngagement, Time: at, Path: "/p"}
		if out, _ := v.Apply(h, at, settings, c); out != Applied {
			t.Fatalf("ping %d: %v", i, out)
		}
		if v.sessions == nil {
			t.Fatalf("ping %d: sessions left unbuilt, to be built again at the next hit", i)
		}
	}
	// A ping stays while a hit may still come before it within the
	// timeout: the late-hit horizon, the clock skew and the timeout.
	// (IDs are let go a minute of receipts at a time.)
	keep := int((LateHorizon+ClockSkew+settings.Timeout)/time.Minute) + 1
	if len(v.Hits) > keep || len(v.Seen) > keep+1 {
		t.Fatalf("%d live hits and %d IDs kept after four days of pings, want at most %d and %d", len(v.Hits), len(v.Seen), keep, keep+1)
	}
	last := v.Hits[len(v.Hits)-1].Time
	late := pv("late", 0)
	late.Time = last.Add(-20 * time.Minute)
	if out, _ := v.Apply(late, last, settings, c); out != Applied {
		t.Fatalf("late pageview: %v", out)
	}
	if ss := v.Sessions(settings); len(ss) != 1 || len(ss[0].Hits) != 22 {
		t.Fatalf("sessions %s, want one of the pageview and the 21 pings from its time on", describe(ss))
	}
}

// TestPlacedStayPlacedInAnOldSession: the hits of a session placed out of
// order stay placed until the batch's end (built once) even when the
// session's first hit, or a ping in no session before it, is older than
// what may freeze, as long as nothing freezes; they were settled at every
// hit then, built once a hit. Settled, they give what applying them one at
// a time gives.
func TestPlacedStayPlacedInAnOldSession(t *testing.T) {
	tw := newTwins(false)
	now := t0.Add(6 * time.Hour)
	// A ping in no session 4 hours 55 minutes ago (it stays while a
	// session is live), then a session begun 4 hours 45 minutes ago, a
	// pageview every 20 minutes: live, its first hit before the horizon's
	// cutoff.
	ping := &session.Hit{ID: "ping", Type: hit.TypeEngagement, Time: now.Add(-295 * time.Minute), Path: "/p"}
	tw.give(t, 0, ping, ping.Time, settings, false)
	for at := now.Add(-285 * time.Minute); at.Before(now); at = at.Add(20 * time.Minute) {
		tw.give(t, 0, pv(fmt.Sprint("o", at.Unix()), int(at.Sub(t0)/time.Minute)), at, settings, false)
	}
	// Its last 25 minutes sent now, newest first: the first comes after
	// every hit (appended), the others are placed.
	for i := range 500 {
		h := pv(fmt.Sprintf("n%03d", i), 0)
		h.Time = now.Add(-time.Duration(i) * 3 * time.Second)
		changes := tw.give(t, 0, h, now.Add(time.Duration(i)*time.Millisecond), settings, false)
		if i > 0 && (changes > 0 || !tw.placed.Placed()) {
			t.Fatalf("hit %d: %d changes, placed %v: the placed hits were settled", i, changes, tw.placed.Placed())
		}
	}
	tw.check(t, 0, settings)
}

// TestFreezingKeepsDayBytes: a visitor whose every pageview starts a
// session (a new campaign each) freezes a session at nearly every hit once
// its first ones are old; the bytes of its days follow the hits left
// (taken away as hits freeze, where freezing cleared them, to be summed
// over every live hit of the day at the next hit).
func TestFreezingKeepsDayBytes(t *testing.T) {
	v := New("c1")
	c := derive.New()
	for i := range 2000 {
		h := pv(fmt.Sprint("h", i), 0)
		h.Time = t0.Add(time.Duration(i) * 10 * time.Second)
		h.Campaign.Source = fmt.Sprint("s", i)
		if out, _ := v.Apply(h, h.Time, settings, c); out != Applied {
			t.Fatalf("hit %d: %v", i, out)
		}
		if i >= 64 && i%97 == 0 {
			checkDayBytes(t, v, fmt.Sprint("after hit ", i))
		}
	}
	if v.FrozenSessions == 0 {
		t.Fatal("nothing froze")
	}
}

// TestHitBeforeATakenOutPingIsTooLate: a ping taken out of the timeline
// as old raises the bar as a frozen session does: a hit before it (only a
// dead letter replayed with its original time can be that old) is too
// late, where it was applied without the ping it would have brought into
// its session.
func TestHitBeforeATakenOutPingIsTooLate(t *testing.T) {
	v := New("c1")
	c := derive.New()
	ping := &session.Hit{ID: "o", Type: hit.TypeEngagement, Time: t0, Path: "/p"}
	for _, h := range []*session.Hit{ping, pv("b", 360), pv("c", 362)} {
		if out, _ := v.Apply(h, h.Time, settings, c); out != Applied {
			t.Fatalf("%s: %v", h.ID, out)
		}
	}
	if len(v.Hits) != 2 {
		t.Fatalf("%d live hits, want the ping taken out", len(v.Hits))
	}
	replayed := pv("a", -10)
	if out, _ := v.Apply(replayed, replayed.Time, settings, c); out != TooLate {
		t.Fatalf("a hit before the ping taken out: %v, want TooLate", out)
	}
}

// TestPingsWaitForTheLiveSession: a ping in no session stays while a
// session is live, as the live sessions may have been derived again under
// its rules (a rules version the live hits do not carry): the rules a
// visitor read back from its state derives them under are those of its
// latest live hit (LatestRuleVersion), and taking the ping out made them
// the older rules, so the next hit took out of the rollups a session they
// never held (a channel at -1 sessions).
func TestPingsWaitForTheLiveSession(t *testing.T) {
	v1 := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC, Source: "v1", RuleVersion: 1}
	v2 := v1
	v2.Source, v2.RuleVersion = "v2", 2
	v2.IgnoreReferrer = func(h string) bool { return strings.HasSuffix(h, "facebook.com") }
	byVersion := map[int]session.Settings{1: v1, 2: v2}
	at := func(h, m, s int) time.Time {
		return t0.Truncate(24 * time.Hour).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
	}
	v := New("c1")
	c := derive.New()
	// A session of large pageviews from 01:30 under v1, from facebook, up
	// to the day's bytes limit; a ping of 01:05 received at 05:00 under v2
	// (which ignores facebook: the session is Direct now), then at 05:50 a
	// pageview over the limit, which is not applied but freezes.
	for i := range 280 {
		h := &session.Hit{ID: fmt.Sprintf("s%03d", i), Type: hit.TypePageview, Time: at(1, 30, 40*i), Path: "/" + strings.Repeat("x", 7400), RuleVersion: 1}
		if i == 0 {
			h.Referrer = "https://m.facebook.com/x"
		}
		v.Apply(h, h.Time, v1, c)
	}
	v.Apply(&session.Hit{ID: "o", Type: hit.TypeEngagement, Time: at(1, 5, 0), Path: "/p", RuleVersion: 2}, at(5, 0, 0), v2, c)
	v.Apply(&session.Hit{ID: "x", Type: hit.TypePageview, Time: at(5, 40, 0), Path: "/" + strings.Repeat("x", 7400), RuleVersion: 2}, at(5, 50, 0), v2, c)
	if got := v.LatestRuleVersion(); got != 2 {
		t.Fatalf("LatestRuleVersion %d, want 2: the ping left while its rules' session lives", got)
	}
	// Read back, as the engine does, and given the next hit.
	back, _ := roundTrip(t, v)
	back.Sessions(byVersion[back.LatestRuleVersion()])
	y := &session.Hit{ID: "y", Type: hit.TypePageview, Time: at(5, 51, 0), Path: "/y", RuleVersion: 2}
	back.Apply(y, y.Time, v2, c)
	for k, m := range c.Daily {
		if k.Report == "channel" && m.Sessions < 0 {
			t.Errorf("channel %q: %d sessions", k.Dimension, m.Sessions)
		}
	}
}
