package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/acme/analytics/processing-svc/internal/visitor"
	"github.com/gocql/gocql"
)

// lateTraffic is traffic whose visitors' hits mostly arrive out of order:
// sessions sent newest first, hits hours late (within the horizon), some
// past the frozen sessions, re-sends, bots, days crossing midnight, so
// that a batch holds many placed hits of one visitor.
func lateTraffic(n int, seed uint64) []Message {
	rng := rand.New(rand.NewPCG(seed, 11))
	var out []*hit.Hit
	for v := 0; v < n; v++ {
		client := fmt.Sprintf("late-%d", v)
		at := t0.Add(time.Duration(rng.IntN(14*3600)) * time.Second) // some cross midnight
		ref := []string{"", "https://www.google.com/", "https://news.example.org/a"}[rng.IntN(3)]
		var vh []*hit.Hit
		for s := 0; s < 1+rng.IntN(3); s++ {
			var sh []*hit.Hit
			for p := 0; p < 2+rng.IntN(12); p++ {
				h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview,
					Origin: hit.OriginBrowser, Time: at, ReceivedAt: at.Add(time.Second), URL: "https://shop.example/?utm_source=s" + fmt.Sprint(rng.IntN(3)),
					Hostname: "shop.example", Path: fmt.Sprintf("/p/%d", rng.IntN(6)), Referrer: ref, Country: "DE", DeviceCategory: "desktop", Browser: "Firefox"}
				if p > 0 {
					h.URL, h.Referrer = "", "https://shop.example/"
				}
				if rng.IntN(5) == 0 {
					h.Type, h.Category, h.Action, h.Label, h.Value = hit.TypeEvent, "video", "play", "intro", float64(rng.IntN(10))
				}
				if v%9 == 4 && rng.IntN(3) == 0 {
					h.Bot = true // excluded, interleaved with placed hits
				}
				h.ID = h.DeriveID(fmt.Sprintf("lv-%d-%d-%d-%d", seed, v, s, p))
				sh = append(sh, h)
				at = at.Add(time.Duration(5+rng.IntN(900)) * time.Second)
			}
			switch rng.IntN(3) {
			case 0: // newest first, all at the session's end
				end := at
				for i, h := range sh {
					h.ReceivedAt = end.Add(time.Duration(len(sh)-i) * time.Second)
				}
			case 1: // each up to 3 h late
				for _, h := range sh {
					if rng.IntN(2) == 0 {
						h.ReceivedAt = h.Time.Add(time.Duration(rng.IntN(3*3600)) * time.Second)
					}
				}
			}
			vh = append(vh, sh...)
			at = at.Add(time.Duration(20+rng.IntN(400)) * time.Minute)
		}
		if rng.IntN(3) == 0 {
			// Back five hours later, then a hit of the first session,
			// too late for sessions now frozen.
			back := *vh[len(vh)-1]
			back.Time = at.Add(5 * time.Hour)
			back.ReceivedAt = back.Time.Add(time.Second)
			back.ID = back.DeriveID(fmt.Sprintf("back-%d-%d", seed, v))
			late := *vh[0]
			late.Time = vh[0].Time.Add(-time.Second)
			late.ReceivedAt = back.ReceivedAt.Add(time.Duration(1+rng.IntN(60)) * time.Second)
			late.ID = late.DeriveID(fmt.Sprintf("toolate-%d-%d", seed, v))
			vh = append(vh, &back, &late)
		}
		for i, h := range vh {
			out = append(out, h)
			if i%4 == 1 {
				again := *h
				again.ReceivedAt = h.ReceivedAt.Add(time.Duration(rng.IntN(600)) * time.Second)
				out = append(out, &again)
			}
		}
	}
	return inReceiveOrder(out)
}

// TestCrashAnywhereCountsOnceWithPlacedHits is TestCrashAnywhereCountsOnce
// on traffic whose visitors' hits are mostly out of order, in large
// batches: many placed hits of one visitor settled together.
func TestCrashAnywhereCountsOnceWithPlacedHits(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			prop := testProperty(t, rules.Defaults())
			msgs := lateTraffic(25, seed)
			sameAfterCrashes(t, prop, msgs, undisturbedStable(t, prop, msgs), seed, rand.New(rand.NewPCG(seed, 5)))
		})
	}
}

// TestPlacedHitsAsOneAtATime: live processing deriving a batch's hits
// together ends with the tables of one deriving each hit on its own.
func TestPlacedHitsAsOneAtATime(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			prop := testProperty(t, rules.Defaults())
			msgs := lateTraffic(25, seed)
			sameOneAtATime(t, prop, msgs, undisturbedStable(t, prop, msgs))
		})
	}
}

// dumpStable is dump with the visitor states' FrozenDays left out: which
// closed days a state still holds depends on when it was last written
// (PruneDays), which differs between runs flushed at other points.
func dumpStable(t *testing.T, s *gocql.Session) string {
	t.Helper()
	var tables []string
	for _, tb := range dumptest.Pipeline {
		if tb != "visitor_state" {
			tables = append(tables, tb)
		}
	}
	out := dumptest.Tables(t, s, tables...)
	iter := s.Query("SELECT client_id, state FROM visitor_state").Iter()
	var client string
	var b []byte
	var states []string
	for iter.Scan(&client, &b) {
		v, err := visitor.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		v.FrozenDays = nil
		b, err := v.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, fmt.Sprintf("state %s %x", client, b))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(states)
	return out + "\n" + strings.Join(states, "\n")
}

// undisturbedStable is dumpStable of the tables msgs make when applied in
// batches of 20, each flushed, a visitor's hits of a batch derived
// together.
func undisturbedStable(t *testing.T, prop *Property, msgs []Message) string {
	t.Helper()
	clean := connect(t)
	run(t, context.Background(), newPartition(clean, prop), msgs, 20)
	return dumpStable(t, clean)
}

// sameOneAtATime fails t unless msgs, each hit derived on its own, make
// the tables want.
func sameOneAtATime(t *testing.T, prop *Property, msgs []Message, want string) {
	t.Helper()
	s := connect(t)
	run(t, context.Background(), New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{prop}}), msgs, 50)
	if got := dumpStable(t, s); got != want {
		t.Fatalf("one at a time:\n%s", diff(want, got))
	}
}

// sameAfterCrashes fails t unless msgs, applied by processors that crash
// at random points (crashUntilDone) in batches of up to 80 (records of
// several hits, up to 25, for odd seeds), visitors written when due for
// seeds not divisible by 3, make the tables want.
func sameAfterCrashes(t *testing.T, prop *Property, msgs []Message, want string, seed uint64, rng *rand.Rand) {
	t.Helper()
	batchMax := 80
	if seed%2 == 1 {
		msgs, batchMax = asRecords(msgs, seed), 25
	}
	s := connect(t)
	clock := time.Unix(0, 0)
	if crashes, _ := crashUntilDone(t, rng, disturbed(s, prop, seed%3 != 0, &clock), msgs, -1, batchMax, &clock); crashes == 0 {
		t.Fatal("no flush was interrupted: the test proved nothing")
	}
	if got := dumpStable(t, s); got != want {
		t.Fatalf("after crashes the tables differ from an undisturbed run:\n%s", diff(want, got))
	}
}

// versionedProperty has three rules versions, each in effect from a
// receive time on, with other session timeouts and referral exclusions.
func versionedProperty(t *testing.T) *Property {
	t.Helper()
	var vs []*rules.Compiled
	for i, timeout := range []int{30, 10, 90} {
		r := rules.Defaults()
		r.SessionTimeoutMinutes = timeout
		if i == 1 {
			r.ReferralExclusions = []string{"news.example.org"}
		}
		c, err := rules.Compile(r, i+1, []string{"shop.example"})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, c)
	}
	return &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt: func(at time.Time) *rules.Compiled {
			switch {
			case at.Before(t0.Add(6 * time.Hour)):
				return vs[0]
			case at.Before(t0.Add(12 * time.Hour)):
				return vs[1]
			}
			return vs[2]
		},
		RulesVersion: func(n int) *rules.Compiled {
			if n < 1 || n > 3 {
				return nil
			}
			return vs[n-1]
		}}
}

// TestCrashAnywhereCountsOnceWithPlacedHitsAndRules is the crash test on
// late traffic stamped with rules versions that change mid-stream, some
// hits stamped with the version before (a collection instance learning of
// the change late).
func TestCrashAnywhereCountsOnceWithPlacedHitsAndRules(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			prop := versionedProperty(t)
			rng := rand.New(rand.NewPCG(seed, 9))
			msgs := restamp(t, lateTraffic(25, seed), func(_ int64, h *hit.Hit) {
				h.RuleVersion = prop.RulesAt(h.ReceivedAt).Version()
				if h.RuleVersion > 1 && rng.IntN(4) == 0 {
					h.RuleVersion--
				}
			})
			want := undisturbedStable(t, prop, msgs)
			sameOneAtATime(t, prop, msgs, want)
			sameAfterCrashes(t, prop, msgs, want, seed, rng)
		})
	}
}
