package derive

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/attribution"
	"github.com/acme/analytics/processing-svc/internal/session"
)

func sessions(t *testing.T, hits ...*session.Hit) []*session.Session {
	t.Helper()
	return session.Build(hits, session.Settings{Timeout: 30 * time.Minute, Location: time.UTC})
}

func TestSessionContributions(t *testing.T) {
	base := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	ss := sessions(t,
		&session.Hit{ID: "1", Type: hit.TypePageview, Time: base, Path: "/a", Referrer: "https://news.example/x"},
		&session.Hit{ID: "2", Type: hit.TypePageview, Time: base.Add(20 * time.Second), Path: "/b"},
		&session.Hit{ID: "3", Type: hit.TypeEvent, Time: base.Add(30 * time.Second), Category: "video", Action: "play", Label: "intro", Value: 2, Interaction: true},
		&session.Hit{ID: "4", Type: hit.TypeEvent, Time: base.Add(40 * time.Second), Category: "video", Action: "play", Label: "intro", Value: 3, Interaction: true},
		&session.Hit{ID: "5", Type: hit.TypePageview, Time: base.Add(60 * time.Second), Path: "/a"},
	)
	c := New()
	c.AddSession(ss[0], "client-1", true, 1)
	day := base.Truncate(24 * time.Hour)
	get := func(report, dim string) rollup.Metrics { return c.Daily[DailyKey{day, report, dim}] }

	tests := []struct {
		name string
		got  rollup.Metrics
		want rollup.Metrics
	}{
		{"total", get(rollup.Total, ""), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
		{"channel", get(rollup.Channel, "Referral"), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
		{"landing page /a", get(rollup.Page, "/a"), rollup.Metrics{Pageviews: 2, UniquePageviews: 1, TimeOnPageMS: 20000, TimeOnPageViews: 1, Entrances: 1, Sessions: 1, Exits: 1}},
		{"page /b", get(rollup.Page, "/b"), rollup.Metrics{Pageviews: 1, UniquePageviews: 1, TimeOnPageMS: 40000, TimeOnPageViews: 1}},
		{"event", get(rollup.Event, "video / play / intro"), rollup.Metrics{Events: 2, UniqueEvents: 1, EventValue: 5}},
		{"user type", get(rollup.UserType, rollup.NewUser), rollup.Metrics{NewUsers: 1, Sessions: 1, EngagedSessions: 1, DurationMS: 60000, Pageviews: 3, Events: 2}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got  %+v\n want %+v", tt.name, tt.got, tt.want)
		}
	}
	if refs := c.DailyUsers[DailyKey{day, rollup.SourceMedium, rollup.JoinDimension("news.example", "referral")}]; c.Client != "client-1" || refs != 1 {
		t.Errorf("the source and medium's users: client %q with %d references; want client-1 with 1", c.Client, refs)
	}
	if rt := c.Realtime[MinuteKey{base}]; rt == nil || rt.Pageviews != 2 || rt.Pages["/a"] != 1 || rt.Pages["/b"] != 1 || rt.Sources["news.example"] != 2 {
		t.Errorf("realtime minute = %+v", rt)
	}
	// Every hit makes the user active in its minute: the events too.
	if refs := c.RealtimeUsers[MinuteKey{base}]; refs != 4 {
		t.Errorf("realtime users of the first minute: %d references, want 4 (2 pageviews, 2 events)", refs)
	}

	// Taking the session back leaves no metric behind.
	c.AddSession(ss[0], "client-1", true, -1)
	if len(c.Daily) != 0 || len(c.Hourly) != 0 || len(c.DailyUsers) != 0 || len(c.HourlyUsers) != 0 {
		t.Fatalf("after subtracting the session: daily %v hourly %v users %v; want empty", c.Daily, c.Hourly, c.DailyUsers)
	}
}

// AddChange must equal taking the old build away and adding the new one,
// for every way a hit can join a session: appended, inserted in the
// middle, becoming the first hit, a pageview, an event, a goal, a ping.
func TestAddChangeEqualsSubtractAndAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	base := time.Date(2026, 5, 1, 23, 40, 0, 0, time.UTC)
	settings := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC}
	paths := []string{"/", "/a", "/b", "/c"}
	randomHit := func(i int) *session.Hit {
		h := &session.Hit{ID: fmt.Sprintf("h%03d", i), Type: hit.TypePageview, Time: base.Add(time.Duration(rng.IntN(1800)) * time.Second),
			Path: paths[rng.IntN(len(paths))], Interaction: true}
		switch rng.IntN(6) {
		case 0:
			h.Type, h.Category, h.Action, h.Value = hit.TypeEvent, "cta", fmt.Sprint("click", rng.IntN(2)), float64(rng.IntN(3))/10
			h.Interaction = rng.IntN(2) == 0
		case 1:
			h.Type = hit.TypeEngagement
		case 2:
			h.Goals = []session.Goal{{ID: fmt.Sprint("g", rng.IntN(2)), Value: 0.1 * float64(rng.IntN(5))}}
		}
		if rng.IntN(8) == 0 {
			h.Referrer = "https://news.example/x"
		}
		if rng.IntN(6) == 0 {
			h.Campaign = attribution.Campaign{Source: "news", Medium: "email", Name: fmt.Sprint("c", rng.IntN(2))}
		}
		return h
	}
	for trial := 0; trial < 500; trial++ {
		var hits []*session.Hit
		for i := range 1 + rng.IntN(12) {
			hits = append(hits, randomHit(i))
		}
		sortHits(hits)
		before := session.Build(hits, settings)
		added := randomHit(100)
		after := session.Build(sortHits(append(append([]*session.Hit(nil), hits...), added)), settings)
		for _, o := range before {
			for _, n := range after {
				if o.ID != n.ID {
					continue
				}
				for _, firsts := range [][2]bool{{true, true}, {false, false}, {true, false}} {
					want, got := New(), New()
					want.AddSession(o, "c1", firsts[0], -1)
					want.AddSession(n, "c1", firsts[1], +1)
					got.AddChange(o, n, "c1", firsts[0], firsts[1])
					if diff := compareContributions(want, got); diff != "" {
						t.Fatalf("trial %d, session %s (first %v): %s", trial, o.ID, firsts, diff)
					}
				}
			}
		}
	}
}

func sortHits(h []*session.Hit) []*session.Hit {
	slices.SortFunc(h, session.Compare)
	return h
}

// compareContributions describes how two contributions differ in effect:
// values within float rounding, zero realtime counts ignored.
func compareContributions(want, got *Contributions) string {
	if d := compareMetrics(want.Daily, got.Daily); d != "" {
		return "daily: " + d
	}
	if d := compareMetrics(want.Hourly, got.Hourly); d != "" {
		return "hourly: " + d
	}
	if !reflect.DeepEqual(want.DailyUsers, got.DailyUsers) || !reflect.DeepEqual(want.HourlyUsers, got.HourlyUsers) ||
		!reflect.DeepEqual(want.RealtimeUsers, got.RealtimeUsers) {
		return fmt.Sprintf("users: want %v %v %v, got %v %v %v", want.DailyUsers, want.HourlyUsers, want.RealtimeUsers, got.DailyUsers, got.HourlyUsers, got.RealtimeUsers)
	}
	if w, g := realtimeNet(want), realtimeNet(got); !reflect.DeepEqual(w, g) {
		return fmt.Sprintf("realtime: want %v, got %v", w, g)
	}
	return ""
}

func compareMetrics[K comparable](want, got map[K]rollup.Metrics) string {
	for k := range got {
		if _, ok := want[k]; !ok {
			want[k] = rollup.Metrics{}
		}
	}
	for k, w := range want {
		g := got[k]
		if math.Abs(g.ConversionValue-w.ConversionValue) > 1e-9 || math.Abs(g.EventValue-w.EventValue) > 1e-9 {
			return fmt.Sprintf("%v: values got %v/%v, want %v/%v", k, g.ConversionValue, g.EventValue, w.ConversionValue, w.EventValue)
		}
		g.ConversionValue, g.EventValue, w.ConversionValue, w.EventValue = 0, 0, 0, 0
		if g != w {
			return fmt.Sprintf("%v: got %+v, want %+v", k, g, w)
		}
	}
	return ""
}

func realtimeNet(c *Contributions) map[string]int64 {
	out := map[string]int64{}
	for k, r := range c.Realtime {
		add := func(name string, n int64) {
			if n != 0 {
				out[k.Minute.Format("15:04")+" "+name] += n
			}
		}
		add("pageviews", r.Pageviews)
		for p, n := range r.Pages {
			add("page "+p, n)
		}
		for s, n := range r.Sources {
			add("source "+s, n)
		}
	}
	return out
}

// AddExtension must equal AddChange (itself held equal to taking the old
// build away and adding the new one) for every hit session.Extend appends,
// with the Tail carried from hit to hit as the visitor carries it, and
// started from nil or from another session's.
func TestAddExtensionEqualsAddChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 17))
	base := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	settings := session.Settings{Timeout: 30 * time.Minute, Location: time.UTC}
	paths := []string{"/", "/a", "/b", "/a|b"}
	extended := 0
	for trial := range 400 {
		var hits []*session.Hit
		at := base
		for i := range 2 + rng.IntN(25) {
			at = at.Add(time.Duration(rng.IntN(120)) * time.Second)
			h := &session.Hit{ID: fmt.Sprintf("h%03d", i), Type: hit.TypePageview, Time: at, Path: paths[rng.IntN(len(paths))]}
			switch rng.IntN(5) {
			case 0:
				h.Type, h.Category, h.Action, h.Label = hit.TypeEvent, "cta", fmt.Sprint("click", rng.IntN(2)), fmt.Sprint(rng.IntN(2))
				h.Value, h.Interaction = float64(rng.IntN(3))/10, rng.IntN(2) == 0
			case 1:
				h.Type = hit.TypeEngagement
			}
			if rng.IntN(7) == 0 {
				h.Goals = []session.Goal{{ID: fmt.Sprint("g", rng.IntN(2)), Value: 0.1 * float64(rng.IntN(5))}}
			}
			hits = append(hits, h)
		}
		first := trial%2 == 0
		var tail *Tail
		if ss := session.Build(hits[:1], settings); trial%3 == 0 && len(ss) > 0 {
			tail = tailOf(ss[0]) // another session's
			tail.session = "other"
		}
		cur := session.Build(hits[:1], settings)
		for k := 1; k < len(hits); k++ {
			if len(cur) == 0 {
				cur = session.Build(hits[:k+1], settings)
				continue
			}
			last := cur[len(cur)-1]
			old := session.Build(last.Hits, settings)[0] // an unshared copy for AddChange
			if last.Pageviews == 0 && hits[k].Type == hit.TypePageview {
				cur = session.Build(hits[:k+1], settings) // the landing page changes: the long way
				tail = nil
				continue
			}
			now, e, ok := session.Extend(last, hits[k], settings)
			if !ok {
				cur = session.Build(hits[:k+1], settings)
				tail = nil
				continue
			}
			extended++
			cur[len(cur)-1] = now
			want, got := New(), New()
			want.AddChange(old, now, "c1", first, first)
			tail = got.AddExtension(tail, e, now, "c1", first)
			if diff := compareContributions(want, got); diff != "" {
				t.Fatalf("trial %d, hit %d (%s %s): %s", trial, k, hits[k].Type, hits[k].Path, diff)
			}
		}
	}
	if extended < 2000 {
		t.Fatalf("only %d hits extended a session: the test does not exercise AddExtension", extended)
	}
}

// A user whose last pageview is older than the realtime window but who is
// still active (an event, an engagement ping) is an active user of the
// minutes of those hits, which count no pageview.
func TestRealtimeUsersOfEveryHit(t *testing.T) {
	base := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	ss := sessions(t,
		&session.Hit{ID: "1", Type: hit.TypePageview, Time: base, Path: "/a"},
		&session.Hit{ID: "2", Type: hit.TypeEvent, Time: base.Add(25 * time.Minute), Category: "video", Action: "play", Interaction: true},
		&session.Hit{ID: "3", Type: hit.TypeEngagement, Time: base.Add(50 * time.Minute)},
	)
	c := New()
	c.AddSession(ss[0], "client-1", true, 1)
	for _, m := range []time.Duration{0, 25 * time.Minute, 50 * time.Minute} {
		if refs := c.RealtimeUsers[MinuteKey{base.Add(m)}]; refs != 1 {
			t.Errorf("minute +%v: %d references of the user, want 1", m, refs)
		}
	}
	if len(c.Realtime) != 1 || c.Realtime[MinuteKey{base}].Pageviews != 1 {
		t.Errorf("realtime pageviews: %v, want one in the first minute only", c.Realtime)
	}
}
