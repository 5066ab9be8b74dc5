package visitor

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// TestPlacedHitsSettleAsAppliedOneByOne: hits placed and settled now and
// then (Place, Settle) give what applying them one at a time gives: the
// same outcomes, the same sessions and frozen state, the same sums in the
// rollups and the same session rows once written. The traffic has what
// makes settling early necessary: hits out of order and re-sent, receipts
// hours apart (sessions freeze), midnight, and a rules change.
func TestPlacedHitsSettleAsAppliedOneByOne(t *testing.T) {
	v1 := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC, Source: "v1"}
	v2 := v1
	v2.Source, v2.Timeout = "v2", 45*time.Minute
	rng := rand.New(rand.NewPCG(7, 3))
	start := time.Date(2026, 6, 1, 21, 0, 0, 0, time.UTC)
	for trial := range 400 {
		tw := newTwins(false)
		r := start
		s := v1
		for i := range 2 + rng.IntN(60) {
			r = r.Add(time.Duration(rng.IntN(40)) * time.Minute)
			id := fmt.Sprintf("h%02d", i)
			if i > 0 && rng.IntN(12) == 0 {
				id = fmt.Sprintf("h%02d", rng.IntN(i)) // re-sent
			}
			if i > 10 && trial%3 == 0 {
				s = v2 // the rules changed
			}
			tw.give(t, trial, randomHit(rng, id, r.Add(-time.Duration(rng.IntN(300))*time.Minute)), r, s, rng.IntN(6) == 0)
		}
		tw.check(t, trial, s)
	}
}

// TestPlacedHitsSettleAsAppliedOneByOneAcrossZonesAndLimits is
// TestPlacedHitsSettleAsAppliedOneByOne with the zone changing back and
// forth (UTC, Berlin, Tokyo), per-day counts (PerDay, FrozenDays), and
// hits large enough to reach MaxLiveBytes.
func TestPlacedHitsSettleAsAppliedOneByOneAcrossZonesAndLimits(t *testing.T) {
	zones := []session.Settings{
		{Timeout: 30 * time.Minute, Location: time.UTC, Source: "utc"},
		{Timeout: 30 * time.Minute, Location: location(t, "Europe/Berlin"), Source: "berlin"},
		{Timeout: 20 * time.Minute, Location: location(t, "Asia/Tokyo"), Source: "tokyo"},
	}
	rng := rand.New(rand.NewPCG(11, 5))
	start := time.Date(2026, 6, 1, 13, 0, 0, 0, time.UTC)
	for trial := range 150 {
		tw := newTwins(true)
		r := start
		zone := 0
		big := trial%2 == 0
		for i := range 20 + rng.IntN(400) {
			r = r.Add(time.Duration(rng.IntN(90)) * time.Second)
			if rng.IntN(200) == 0 {
				r = r.Add(time.Duration(rng.IntN(8)) * time.Hour) // freezes
			}
			if rng.IntN(60) == 0 {
				zone = rng.IntN(len(zones))
			}
			id := fmt.Sprintf("h%03d", i)
			if i > 0 && rng.IntN(15) == 0 {
				id = fmt.Sprintf("h%03d", rng.IntN(i))
			}
			h := randomHit(rng, id, r.Add(-time.Duration(rng.IntN(240))*time.Minute))
			if big {
				h.Path += strings.Repeat("x", 4000+rng.IntN(4000))
			}
			tw.give(t, trial, h, r, zones[zone], rng.IntN(25) == 0)
		}
		tw.check(t, trial, zones[zone])
	}
}

// twins are two visitors given the same hits: one applies each (Apply),
// the other places them and settles now and then (Place, Settle), each
// with its contributions and its session rows as written.
type twins struct {
	one, placed         *Visitor
	oneC, placedC       *derive.Contributions
	oneRows, placedRows map[SessionRef]string
}

func newTwins(perDay bool) *twins {
	tw := &twins{one: New("c1"), placed: New("c1"), oneC: derive.New(), placedC: derive.New(),
		oneRows: map[SessionRef]string{}, placedRows: map[SessionRef]string{}}
	tw.one.PerDay, tw.placed.PerDay = perDay, perDay
	return tw
}

// give gives both h, received at received under s, the placed one
// settling after it when settle, and fails t unless both have the same
// outcome. It returns how many changes Place returned: those of hits it
// settled or appended.
func (tw *twins) give(t *testing.T, trial int, h *session.Hit, received time.Time, s session.Settings, settle bool) (changes int) {
	t.Helper()
	h2 := *h
	want, ch := tw.one.Apply(h, received, s, tw.oneC)
	write(tw.oneRows, ch)
	got, chs := tw.placed.Place(&h2, received, s, tw.placedC)
	for _, ch := range chs {
		write(tw.placedRows, ch)
	}
	if settle {
		write(tw.placedRows, tw.placed.Settle(tw.placedC))
	}
	if got != want {
		t.Fatalf("trial %d, hit %s: placed %v, applied %v", trial, h.ID, got, want)
	}
	return len(chs)
}

// check settles the placed visitor and fails t unless both have the same
// sessions (read under s), frozen state, contributions and rows, and the
// bytes of their days are those of their live hits.
func (tw *twins) check(t *testing.T, trial int, s session.Settings) {
	t.Helper()
	write(tw.placedRows, tw.placed.Settle(tw.placedC))
	one, placed := tw.one, tw.placed
	if got, want := describe(placed.Sessions(s)), describe(one.Sessions(s)); got != want {
		t.Fatalf("trial %d: sessions %s, want %s", trial, got, want)
	}
	if placed.FrozenSessions != one.FrozenSessions || !placed.FrozenUntil.Equal(one.FrozenUntil) || placed.FirstTouch != one.FirstTouch ||
		len(placed.Hits) != len(one.Hits) || !reflect.DeepEqual(placed.FrozenDays, one.FrozenDays) {
		t.Fatalf("trial %d: frozen state differs: frozen %d/%d until %v/%v hits %d/%d", trial, placed.FrozenSessions, one.FrozenSessions, placed.FrozenUntil, one.FrozenUntil, len(placed.Hits), len(one.Hits))
	}
	for _, m := range []struct {
		name      string
		got, want any
	}{
		{"daily", tw.placedC.Daily, tw.oneC.Daily}, {"hourly", tw.placedC.Hourly, tw.oneC.Hourly},
		{"filtered", tw.placedC.Filtered, tw.oneC.Filtered}, {"daily users", tw.placedC.DailyUsers, tw.oneC.DailyUsers},
		{"hourly users", tw.placedC.HourlyUsers, tw.oneC.HourlyUsers}, {"realtime users", tw.placedC.RealtimeUsers, tw.oneC.RealtimeUsers},
		{"realtime", realtimeCounts(tw.placedC), realtimeCounts(tw.oneC)}, {"session rows", tw.placedRows, tw.oneRows},
	} {
		if !reflect.DeepEqual(m.got, m.want) {
			t.Fatalf("trial %d: %s differ:\n placed  %v\n applied %v", trial, m.name, m.got, m.want)
		}
	}
	checkDayBytes(t, one, fmt.Sprint("trial ", trial, ", applied"))
	checkDayBytes(t, placed, fmt.Sprint("trial ", trial, ", placed"))
}

// write applies ch to a table of session rows, as the engine writes them:
// each row's session as its hits.
func write(rows map[SessionRef]string, ch Changes) {
	for _, d := range ch.DeleteSessions {
		delete(rows, d)
	}
	for _, u := range ch.UpsertSessions {
		rows[RefOf(u.Session)] = fmt.Sprint(u.First, describe([]*session.Session{u.Session}), u.Session.Hits[len(u.Session.Hits)-1].ID)
	}
}

// realtimeCounts flattens c's realtime values, leaving out those that
// cancelled out.
func realtimeCounts(c *derive.Contributions) map[string]int64 {
	out := map[string]int64{}
	for k, r := range c.Realtime {
		if r.Pageviews != 0 {
			out[fmt.Sprint(k.Minute, "pageviews")] = r.Pageviews
		}
		for p, n := range r.Pages {
			if n != 0 {
				out[fmt.Sprint(k.Minute, "page", p)] = n
			}
		}
		for src, n := range r.Sources {
			if n != 0 {
				out[fmt.Sprint(k.Minute, "source", src)] = n
			}
		}
	}
	return out
}

// TestDayBytesFollowTheLiveHits: the bytes of a day's live hits that
// overLimit keeps as hits come, out of order and across midnight, with
// sessions freezing and the zone changing, are what summing them again
// gives.
func TestDayBytesFollowTheLiveHits(t *testing.T) {
	berlin := location(t, "Europe/Berlin")
	rng := rand.New(rand.NewPCG(2, 9))
	v, c := New("c1"), derive.New()
	r := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC)
	kept := 0
	for i := range 3000 {
		r = r.Add(time.Duration(rng.IntN(20)) * time.Second)
		s := settings
		if i/700%2 == 1 {
			s.Location, s.Source = berlin, "berlin"
		}
		h := &session.Hit{ID: fmt.Sprint("h", i), Type: hit.TypePageview, Time: r.Add(-time.Duration(rng.IntN(240)) * time.Minute),
			Path: "/" + strings.Repeat("p", rng.IntN(300))}
		v.Apply(h, r, s, c)
		kept += checkDayBytes(t, v, fmt.Sprint("hit ", i))
	}
	if kept == 0 {
		t.Fatal("no day's bytes were kept: the test proved nothing")
	}
}

// TestDayBytesAcrossAZoneAndBack: a day's bytes are kept for one zone; a
// hit under another zone whose day there has too few hits to be summed
// (minLiveForBytes) is added to the live hits, and the zone then changes
// back (the property's zone set and reverted: configclient gives one
// *time.Location a zone). The bytes kept must still be those of the live
// hits: otherwise the visitor limit lets through hits that a fresh state
// (a replay, reprocessing) excludes.
func TestDayBytesAcrossAZoneAndBack(t *testing.T) {
	v, c := New("c1"), derive.New()
	utc := settings
	utc.Source = "utc"
	jp := settings
	jp.Location, jp.Source = location(t, "Asia/Tokyo"), "tokyo"
	at := time.Date(2026, 6, 1, 15, 0, 0, 0, time.UTC) // midnight in Tokyo
	place := func(id string, when time.Time, s session.Settings) {
		h := &session.Hit{ID: id, Type: hit.TypePageview, Time: when, Path: "/" + strings.Repeat("p", 100)}
		if out, _ := v.Place(h, at.Add(time.Hour), s, c); out != Applied {
			t.Fatalf("hit %s: %v", id, out)
		}
		v.Settle(c)
	}
	for i := range minLiveForBytes + 6 {
		place(fmt.Sprint("u", i), at.Add(time.Duration(i)*time.Second), utc)
	}
	// 23:50 in Tokyo, on a Tokyo day with this one hit; UTC's day of
	// the others.
	place("jp", at.Add(-10*time.Minute), jp)
	place("back", at.Add(30*time.Minute), utc)
	checkDayBytes(t, v, "back in UTC")
}

// checkDayBytes fails t unless the bytes v keeps for each day are those of
// its live hits of the day, and returns how many days it keeps.
func checkDayBytes(t *testing.T, v *Visitor, when string) int {
	t.Helper()
	for day, kept := range v.dayBytes {
		hits, _ := v.liveOnDay(day, v.dayZone)
		sum := 0
		for _, o := range hits {
			sum += hitBytes(o)
		}
		if kept != sum {
			t.Fatalf("%s: the day of %v holds %d bytes in %d hits, kept %d", when, day, sum, len(hits), kept)
		}
	}
	return len(v.dayBytes)
}

func location(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
