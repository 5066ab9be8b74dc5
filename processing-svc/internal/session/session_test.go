package session

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/attribution"
)

var ny, _ = time.LoadLocation("America/New_York")

func settings() Settings {
	return Settings{Timeout: 30 * time.Minute, Location: ny, IgnoreReferrer: func(h string) bool { return h == "shop.example" }}
}

// at returns a New York local time on 2026-03-10.
func at(hh, mm, ss int) time.Time { return time.Date(2026, 3, 10, hh, mm, ss, 0, ny) }

func pv(id string, t time.Time, path string) *Hit {
	return &Hit{ID: id, Type: hit.TypePageview, Time: t, Path: path}
}
func ev(id string, t time.Time) *Hit {
	return &Hit{ID: id, Type: hit.TypeEvent, Time: t, Category: "c", Action: "a", Interaction: true}
}
func ping(id string, t time.Time) *Hit { return &Hit{ID: id, Type: hit.TypeEngagement, Time: t} }

func withCampaign(h *Hit, url string) *Hit { h.Campaign = attribution.CampaignFromURL(url); return h }

func build(hits ...*Hit) []*Session {
	sort.Slice(hits, func(i, j int) bool { return Less(hits[i], hits[j]) })
	return Build(hits, settings())
}

// shape renders sessions as the IDs of their hits, e.g. "[a b] [c]".
func shape(ss []*Session) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " "
		}
		out += "["
		for j, h := range s.Hits {
			if j > 0 {
				out += " "
			}
			out += h.ID
		}
		out += "]"
	}
	return out
}

func TestSplitRules(t *testing.T) {
	tests := []struct {
		name string
		hits []*Hit
		want string
	}{
		{"exactly the timeout continues", []*Hit{pv("a", at(10, 0, 0), "/"), pv("b", at(10, 30, 0), "/x")}, "[a b]"},
		{"a second more splits", []*Hit{pv("a", at(10, 0, 0), "/"), pv("b", at(10, 30, 1), "/x")}, "[a] [b]"},
		{"gaps are between consecutive hits", []*Hit{pv("a", at(10, 0, 0), "/"), pv("b", at(10, 25, 0), "/"), pv("c", at(10, 50, 0), "/")}, "[a b c]"},
		{"local midnight splits", []*Hit{pv("a", at(23, 55, 0), "/"), pv("b", at(23, 59, 59).Add(2*time.Second), "/")}, "[a] [b]"},
		{"UTC midnight does not", []*Hit{pv("a", time.Date(2026, 3, 10, 23, 55, 0, 0, time.UTC), "/"), pv("b", time.Date(2026, 3, 11, 0, 5, 0, 0, time.UTC), "/")}, "[a b]"},
		{"a new campaign splits", []*Hit{pv("a", at(10, 0, 0), "/"), withCampaign(pv("b", at(10, 1, 0), "/?utm_source=x&utm_medium=email"), "/?utm_source=x&utm_medium=email")}, "[a] [b]"},
		{"the same campaign continues", []*Hit{
			withCampaign(pv("a", at(10, 0, 0), "/"), "/?utm_source=x&utm_medium=email"),
			pv("b", at(10, 1, 0), "/p"),
			withCampaign(pv("c", at(10, 2, 0), "/"), "/?utm_source=x&utm_medium=email&utm_content=other"),
		}, "[a b c]"},
		{"a new click ID splits", []*Hit{withCampaign(pv("a", at(10, 0, 0), "/"), "/?gclid=1"), withCampaign(pv("b", at(10, 1, 0), "/"), "/?gclid=2")}, "[a] [b]"},
		{"a new iOS click ID splits", []*Hit{withCampaign(pv("a", at(10, 0, 0), "/"), "/?gbraid=1"), withCampaign(pv("b", at(10, 1, 0), "/"), "/?gbraid=1"),
			withCampaign(pv("c", at(10, 2, 0), "/"), "/?wbraid=2")}, "[a b] [c]"},
		{"no campaign never splits", []*Hit{withCampaign(pv("a", at(10, 0, 0), "/"), "/?utm_source=x"), pv("b", at(10, 1, 0), "/")}, "[a b]"},
		{"pings extend but never start", []*Hit{ping("p0", at(9, 0, 0)), pv("a", at(10, 0, 0), "/"), ping("p1", at(10, 20, 0)), ping("p2", at(11, 0, 0))}, "[a p1]"},
		{"a ping never splits on its campaign", []*Hit{withCampaign(pv("a", at(10, 0, 0), "/"), "/?utm_source=b"),
			withCampaign(ping("p", at(10, 1, 0)), "/?utm_source=a")}, "[a p]"},
		{"an event starts a session", []*Hit{ev("e", at(10, 0, 0)), pv("a", at(10, 1, 0), "/")}, "[e a]"},
		{"ties are ordered by ID", []*Hit{pv("b", at(10, 0, 0), "/"), pv("a", at(10, 0, 0), "/")}, "[a b]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shape(build(tt.hits...)); got != tt.want {
				t.Fatalf("sessions %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLateHitMergesAndSplits(t *testing.T) {
	a, c := pv("a", at(10, 0, 0), "/"), pv("c", at(10, 50, 0), "/")
	if got := shape(build(a, c)); got != "[a] [c]" {
		t.Fatalf("before the late hit: %s", got)
	}
	b := pv("b", at(10, 25, 0), "/")
	if got := shape(build(a, b, c)); got != "[a b c]" {
		t.Fatalf("a late hit bridging the gap should merge: %s", got)
	}
	early := withCampaign(pv("z", at(9, 59, 0), "/"), "/?utm_source=news&utm_medium=email")
	ss := build(a, b, c, early)
	if shape(ss) != "[z a b c]" || ss[0].Touch.Source != "news" || ss[0].ID != "z" {
		t.Fatalf("a late first hit should take over attribution and the session ID: %s %+v", shape(ss), ss[0].Touch)
	}
}

func TestSessionFields(t *testing.T) {
	goal := []Goal{{ID: "g1", Value: 10}}
	hits := []*Hit{
		{ID: "1", Type: hit.TypePageview, Time: at(10, 0, 0), Path: "/home", Referrer: "https://www.google.com/", Country: "US", Device: "mobile"},
		{ID: "2", Type: hit.TypePageview, Time: at(10, 0, 30), Path: "/product", Goals: goal},
		{ID: "3", Type: hit.TypeEvent, Time: at(10, 1, 0), Category: "cart", Action: "add", Interaction: true, Goals: goal},
		{ID: "4", Type: hit.TypePageview, Time: at(10, 2, 0), Path: "/checkout", Goals: []Goal{{ID: "g2", Value: 5}}},
		{ID: "5", Type: hit.TypeEngagement, Time: at(10, 2, 45)},
	}
	s := build(hits...)[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"landing", s.Landing, "/home"},
		{"exit", s.Exit, "/checkout"},
		{"pageviews", s.Pageviews, 3},
		{"events", s.Events, 1},
		{"duration", s.DurationMS, int64(165_000)},
		{"page times", fmt.Sprint(s.PageTimesMS), "[30000 90000 45000]"},
		{"bounce", s.Bounce, false},
		{"engaged", s.Engaged, true},
		{"conversions", s.Conversions, 2},
		{"conversion value", s.ConversionValue, 15.0},
		{"source", s.Touch.Source, "google"},
		{"channel", s.Channel, attribution.OrganicSearch},
		{"country", s.Country, "US"},
		{"day", s.Day, time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestBounceAndEngagement(t *testing.T) {
	nonInteraction := ev("e", at(10, 0, 5))
	nonInteraction.Interaction = false
	tests := []struct {
		name            string
		hits            []*Hit
		bounce, engaged bool
		pageTime        string
	}{
		{"single pageview", []*Hit{pv("a", at(10, 0, 0), "/")}, true, false, "[-1]"},
		{"single pageview with a ping", []*Hit{pv("a", at(10, 0, 0), "/"), ping("p", at(10, 0, 40))}, true, true, "[40000]"},
		{"pageview and interaction event", []*Hit{pv("a", at(10, 0, 0), "/"), ev("e", at(10, 0, 5))}, false, false, "[5000]"},
		{"pageview and non-interaction event", []*Hit{pv("a", at(10, 0, 0), "/"), nonInteraction}, true, false, "[5000]"},
		{"two pageviews", []*Hit{pv("a", at(10, 0, 0), "/"), pv("b", at(10, 0, 3), "/b")}, false, true, "[3000 -1]"},
		{"event only", []*Hit{ev("e", at(10, 0, 0))}, false, false, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := build(tt.hits...)[0]
			if s.Bounce != tt.bounce || s.Engaged != tt.engaged || fmt.Sprint(s.PageTimesMS) != tt.pageTime {
				t.Fatalf("bounce=%v engaged=%v pageTimes=%v; want %v %v %v", s.Bounce, s.Engaged, s.PageTimesMS, tt.bounce, tt.engaged, tt.pageTime)
			}
		})
	}
}

// A session whose first hit is an event lands on its first pageview, if it
// has one (docs/processing.md: the landing page is the page of the first
// pageview), and is a bounce when its only interaction is that pageview.
func TestEventFirstSessionLanding(t *testing.T) {
	nonInteraction := ev("e", at(10, 0, 0))
	nonInteraction.Interaction = false
	tests := []struct {
		name            string
		hits            []*Hit
		landing, exit   string
		bounce, entered bool
	}{
		{"non-interaction event, then a pageview", []*Hit{nonInteraction, pv("a", at(10, 0, 5), "/a")}, "/a", "/a", true, true},
		{"interaction event, then a pageview", []*Hit{ev("e", at(10, 0, 0)), pv("a", at(10, 0, 5), "/a")}, "/a", "/a", false, true},
		{"events only", []*Hit{ev("e", at(10, 0, 0)), ev("f", at(10, 0, 5))}, NotSet, NotSet, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := build(tt.hits...)[0]
			if s.Landing != tt.landing || s.Exit != tt.exit || s.Bounce != tt.bounce || (s.Pageviews > 0) != tt.entered {
				t.Fatalf("landing %q exit %q bounce %v pageviews %d; want %q %q %v entered=%v", s.Landing, s.Exit, s.Bounce, s.Pageviews, tt.landing, tt.exit, tt.bounce, tt.entered)
			}
		})
	}
}

func TestCustomChannelComesFirst(t *testing.T) {
	st := settings()
	st.CustomChannel = func(src, med, camp string) (string, bool) { return "Partners", src == "partner" }
	hits := []*Hit{withCampaign(pv("a", at(10, 0, 0), "/"), "/?utm_source=partner&utm_medium=referral")}
	if got := Build(hits, st)[0].Channel; got != "Partners" {
		t.Fatalf("channel %q, want the custom channel", got)
	}
}

// Extending the last session hit by hit gives exactly the sessions that
// building all the hits at once gives: every field, for hits of every
// kind arriving in order (pageviews, events with and without interaction,
// pings, goals, campaigns, gaps past the timeout, midnight, equal times).
func TestExtendEqualsBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 21))
	st := settings()
	for trial := range 500 {
		var hits []*Hit
		at := at(23, 0, 0)
		for i := range 1 + rng.IntN(30) {
			if rng.IntN(6) > 0 {
				at = at.Add(time.Duration(rng.IntN(20*60)) * time.Second)
			}
			if rng.IntN(15) == 0 {
				at = at.Add(31 * time.Minute)
			}
			h := pv(fmt.Sprintf("h%02d", i), at, fmt.Sprint("/", rng.IntN(4)))
			switch rng.IntN(6) {
			case 0:
				h = ev(h.ID, at)
				h.Interaction = rng.IntN(2) == 0
			case 1:
				h = ping(h.ID, at)
			}
			if rng.IntN(8) == 0 {
				h.Goals = []Goal{{ID: fmt.Sprint("g", rng.IntN(2)), Value: float64(rng.IntN(4))}}
			}
			if rng.IntN(10) == 0 {
				withCampaign(h, fmt.Sprint("/?utm_source=s", rng.IntN(2)))
			}
			hits = append(hits, h)
		}
		var got []*Session
		for _, h := range hits {
			if n := len(got); n > 0 {
				before := *got[n-1]
				if now, e, ok := Extend(got[n-1], h, st); ok {
					before.Hits, before.PageTimesMS, before.GoalIDs = nil, nil, nil
					if !reflect.DeepEqual(e.Before, before) {
						t.Fatalf("trial %d: Extension.Before is not the session before", trial)
					}
					got[n-1] = now
					continue
				}
			}
			if h.Initiates() {
				got = append(got, Build([]*Hit{h}, st)...)
			}
		}
		if want := Build(hits, st); !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: extended %s, built %s\n got  %+v\n want %+v", trial, shape(got), shape(want), got, want)
		}
	}
}

// Extend refuses a hit that does not come after the session's last hit,
// and one that starts a new session, and leaves the session as it was.
func TestExtendRefuses(t *testing.T) {
	ss := build(pv("b", at(10, 0, 0), "/"), pv("c", at(10, 5, 0), "/x"))[0]
	keep := fmt.Sprintf("%+v", *ss)
	for _, h := range []*Hit{
		pv("a", at(10, 5, 0), "/early"),                               // same time, smaller ID: sorts before c
		pv("d", at(10, 35, 1), "/late"),                               // past the timeout
		withCampaign(pv("e", at(10, 6, 0), "/"), "/?utm_source=news"), // a new campaign
		ping("f", at(11, 0, 0)),                                       // outside every session
	} {
		if _, _, ok := Extend(ss, h, settings()); ok {
			t.Errorf("hit %s extended the session", h.ID)
		}
	}
	if fmt.Sprintf("%+v", *ss) != keep {
		t.Error("a refused hit changed the session")
	}
}

// The timeout is measured in real time and the day is the local date,
// whatever the clock does: across daylight-saving changes (a wall-clock
// gap longer or shorter, even negative, than the real one), in zones far
// from UTC or off the hour, and with a property's own timeout.
func TestSplitRulesAcrossClockChanges(t *testing.T) {
	zone := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	berlin, asuncion := zone("Europe/Berlin"), zone("America/Asuncion")
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		loc     *time.Location
		timeout time.Duration
		times   []string // RFC 3339, in the zone's offsets
		want    string   // sessions, as their hits' indexes
		days    string   // each session's local date
	}{
		{"spring forward: 01:50 CET to 03:10 CEST is 20 minutes", berlin, 30 * time.Minute,
			[]string{"2026-03-29T01:50:00+01:00", "2026-03-29T03:10:00+02:00"}, "[0 1]", "2026-03-29"},
		{"fall back: 02:50 CEST to 02:10 CET is 20 minutes", berlin, 30 * time.Minute,
			[]string{"2026-10-25T02:50:00+02:00", "2026-10-25T02:10:00+01:00"}, "[0 1]", "2026-10-25"},
		{"fall back: 02:40 CEST to 02:20 CET is 40 minutes", berlin, 30 * time.Minute,
			[]string{"2026-10-25T02:40:00+02:00", "2026-10-25T02:20:00+01:00"}, "[0] [1]", "2026-10-25 2026-10-25"},
		{"fall back: exactly the timeout across the repeated hour", berlin, 30 * time.Minute,
			[]string{"2026-10-25T02:45:00+02:00", "2026-10-25T02:15:00+01:00", "2026-10-25T02:45:01+01:00"}, "[0 1] [2]", "2026-10-25 2026-10-25"},
		{"a property's timeout: exactly 7:00 continues, 7:01 splits", berlin, 7 * time.Minute,
			[]string{"2026-12-05T10:00:00+01:00", "2026-12-05T10:07:00+01:00", "2026-12-05T10:14:01+01:00"}, "[0 1] [2]", "2026-12-05 2026-12-05"},
		{"a property's timeout at the local midnight", berlin, 7 * time.Minute,
			[]string{"2026-12-05T23:57:00+01:00", "2026-12-06T00:00:00+01:00"}, "[0] [1]", "2026-12-05 2026-12-06"},
		{"Kathmandu's midnight, 18:15 UTC", zone("Asia/Kathmandu"), 30 * time.Minute,
			[]string{"2026-12-05T23:59:59+05:45", "2026-12-06T00:00:00+05:45", "2026-12-06T00:20:00+05:45"}, "[0] [1 2]", "2026-12-05 2026-12-06"},
		{"Kolkata's midnight, 18:30 UTC", zone("Asia/Kolkata"), 30 * time.Minute,
			[]string{"2026-12-05T23:50:00+05:30", "2026-12-06T00:10:00+05:30"}, "[0] [1]", "2026-12-05 2026-12-06"},
		{"UTC+14: midnight within one UTC date", zone("Pacific/Kiritimati"), 30 * time.Minute,
			[]string{"2026-12-05T23:50:00+14:00", "2026-12-06T00:10:00+14:00"}, "[0] [1]", "2026-12-05 2026-12-06"},
		{"UTC-11: midnight within one UTC date", zone("Pacific/Pago_Pago"), 30 * time.Minute,
			[]string{"2026-12-05T23:50:00-11:00", "2026-12-06T00:10:00-11:00"}, "[0] [1]", "2026-12-05 2026-12-06"},
		{"UTC+13:45 in summer", zone("Pacific/Chatham"), 30 * time.Minute,
			[]string{"2026-12-05T23:59:00+13:45", "2026-12-06T00:01:00+13:45"}, "[0] [1]", "2026-12-05 2026-12-06"},
		{"a clock set back over midnight: the date stays, then changes", asuncion, 30 * time.Minute,
			[]string{"2024-03-23T23:50:00-03:00", "2024-03-23T23:20:00-04:00", "2024-03-23T23:45:00-04:00", "2024-03-24T00:05:00-04:00"}, "[0 1 2] [3]", "2024-03-23 2024-03-24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits []*Hit
			for i, s := range tt.times {
				hits = append(hits, pv(strconv.Itoa(i), utc(s), "/"))
			}
			sort.Slice(hits, func(i, j int) bool { return Less(hits[i], hits[j]) })
			s := settings()
			s.Location, s.Timeout = tt.loc, tt.timeout
			ss := Build(hits, s)
			var days []string
			for _, x := range ss {
				days = append(days, x.Day.Format(time.DateOnly))
				if x.DurationMS != x.End.Sub(x.Start).Milliseconds() {
					t.Errorf("session %s lasts %d ms, from %s to %s", x.ID, x.DurationMS, x.Start, x.End)
				}
			}
			if got := shape(ss); got != tt.want || strings.Join(days, " ") != tt.days {
				t.Errorf("sessions %s on %v, want %s on %s", got, days, tt.want, tt.days)
			}
		})
	}
}
