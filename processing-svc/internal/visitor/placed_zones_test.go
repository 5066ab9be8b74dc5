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

// TestPlacedHitsSettleAsAppliedOneByOneAcrossZonesAndLimits is
// TestPlacedHitsSettleAsAppliedOneByOne with the zone changing back and
// forth (UTC, Berlin, Tokyo), per-day counts (PerDay, FrozenDays), and
// hits large enough to reach MaxLiveBytes: a visitor settled at random
// points must end where one applying each hit does, outcome by outcome.
func TestPlacedHitsSettleAsAppliedOneByOneAcrossZonesAndLimits(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	zones := []session.Settings{
		{Timeout: 30 * time.Minute, Location: time.UTC, Source: "utc"},
		{Timeout: 30 * time.Minute, Location: berlin, Source: "berlin"},
		{Timeout: 20 * time.Minute, Location: tokyo, Source: "tokyo"},
	}
	rng := rand.New(rand.NewPCG(11, 5))
	start := time.Date(2026, 6, 1, 13, 0, 0, 0, time.UTC)
	for trial := range 150 {
		one, placed := New("c1"), New("c1")
		one.PerDay, placed.PerDay = true, true
		oneC, placedC := derive.New(), derive.New()
		oneRows, placedRows := map[SessionRef]string{}, map[SessionRef]string{}
		r := start
		zone := 0
		big := trial%2 == 0
		n := 20 + rng.IntN(400)
		for i := range n {
			r = r.Add(time.Duration(rng.IntN(90)) * time.Second)
			if rng.IntN(200) == 0 {
				r = r.Add(time.Duration(rng.IntN(8)) * time.Hour) // freezes
			}
			if rng.IntN(60) == 0 {
				zone = rng.IntN(len(zones))
			}
			s := zones[zone]
			path := "/" + fmt.Sprint(rng.IntN(5))
			if big {
				path += strings.Repeat("x", 4000+rng.IntN(4000))
			}
			id := fmt.Sprintf("h%03d", i)
			if i > 0 && rng.IntN(15) == 0 {
				id = fmt.Sprintf("h%03d", rng.IntN(i))
			}
			h := &session.Hit{ID: id, Type: hit.TypePageview, Time: r.Add(-time.Duration(rng.IntN(240)) * time.Minute), Path: path}
			if rng.IntN(5) == 0 {
				h.Type, h.Category, h.Action = hit.TypeEvent, "cta", "click"
			}
			h2 := *h
			want, ch := one.Apply(h, r, s, oneC)
			write(oneRows, ch)
			got, chs := placed.Place(&h2, r, s, placedC)
			for _, ch := range chs {
				write(placedRows, ch)
			}
			if rng.IntN(25) == 0 {
				write(placedRows, placed.Settle(placedC))
			}
			if got != want {
				t.Fatalf("trial %d, hit %d (%s): placed %v, applied %v", trial, i, h.ID, got, want)
			}
		}
		write(placedRows, placed.Settle(placedC))
		s := zones[zone]
		if got, want := describe(placed.Sessions(s)), describe(one.Sessions(s)); got != want {
			t.Fatalf("trial %d: sessions %s, want %s", trial, got, want)
		}
		if placed.FrozenSessions != one.FrozenSessions || !placed.FrozenUntil.Equal(one.FrozenUntil) || len(placed.Hits) != len(one.Hits) ||
			!reflect.DeepEqual(placed.FrozenDays, one.FrozenDays) {
			t.Fatalf("trial %d: frozen state differs", trial)
		}
		for _, m := range []struct {
			name      string
			got, want any
		}{
			{"daily", placedC.Daily, oneC.Daily}, {"hourly", placedC.Hourly, oneC.Hourly},
			{"filtered", placedC.Filtered, oneC.Filtered}, {"daily users", placedC.DailyUsers, oneC.DailyUsers},
			{"hourly users", placedC.HourlyUsers, oneC.HourlyUsers}, {"session rows", placedRows, oneRows},
		} {
			if !reflect.DeepEqual(m.got, m.want) {
				t.Fatalf("trial %d: %s differ:\n placed  %v\n applied %v", trial, m.name, m.got, m.want)
			}
		}
		// And as a fresh state would: the bytes kept are the live hits'.
		for _, v := range []*Visitor{one, placed} {
			for day, kept := range v.dayBytes {
				hits, _ := v.liveOnDay(day, v.dayZone)
				sum := 0
				for _, o := range hits {
					sum += hitBytes(o)
				}
				if kept != sum {
					t.Fatalf("trial %d: the day of %v holds %d bytes, kept %d", trial, day, sum, kept)
				}
			}
		}
	}
}
