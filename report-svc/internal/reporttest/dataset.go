// Package reporttest generates a property's traffic as sessions whose
// every report value is known, derives the rollup rows the processing
// service would write for them (docs/processing.md, "Rollups"), and writes
// those rows to Cassandra. Tests compute the expected reports from the
// sessions, independently of how the query engine reads the rows.
package reporttest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/gocql/gocql"
)

// Session is one generated session with everything the reports count.
type Session struct {
	Client     string
	Shard      int
	Start      time.Time // UTC
	Day        time.Time // property-local date, midnight UTC
	Hour       int       // property-local hour of Start
	Channel    string
	Source     string
	Medium     string
	Campaign   string
	Referrer   string
	Country    string
	Device     string
	Browser    string
	OS         string
	New        bool // the client's first session
	Pageviews  []Pageview
	Events     []Event
	DurationMS int64
	// Conversions counts distinct goals completed; ConversionValue is the
	// sum of their values.
	Conversions     int
	ConversionValue float64
}

// Pageview is a pageview of a session.
type Pageview struct {
	Path   string
	At     time.Time
	TimeMS int64 // time on page; -1 when unmeasured (the last pageview without a later hit)
}

// Event is an event of a session.
type Event struct {
	Category, Action, Label string
	Value                   float64
	NonInteraction          bool
	At                      time.Time
}

// NotSet is the value of a missing dimension.
const NotSet = "(not set)"

// Landing returns the session's landing page.
func (s *Session) Landing() string {
	if len(s.Pageviews) == 0 {
		return NotSet
	}
	return s.Pageviews[0].Path
}

// Exit returns the session's exit page.
func (s *Session) Exit() string {
	if len(s.Pageviews) == 0 {
		return NotSet
	}
	return s.Pageviews[len(s.Pageviews)-1].Path
}

// Bounce: exactly one pageview and no interaction event.
func (s *Session) Bounce() bool {
	if len(s.Pageviews) != 1 {
		return false
	}
	for _, e := range s.Events {
		if !e.NonInteraction {
			return false
		}
	}
	return true
}

// Engaged: longer than 10 seconds, 2 or more pageviews, or a conversion.
func (s *Session) Engaged() bool {
	return s.DurationMS > 10_000 || len(s.Pageviews) >= 2 || s.Conversions > 0
}

// UserType is "new" or "returning".
func (s *Session) UserType() string {
	if s.New {
		return "new"
	}
	return "returning"
}

// Filtered is a count of excluded hits.
type Filtered struct {
	Day    time.Time
	Reason string
	Shard  int
	Hits   int64
}

// Dataset is a property's generated traffic.
type Dataset struct {
	Property gocql.UUID
	Location *time.Location
	Shards   int
	// Now is the data set's clock: the engine under test must use it.
	Now      time.Time
	Sessions []*Session
	Filtered []Filtered
}

// Config sizes a data set.
type Config struct {
	Seed     uint64
	Location *time.Location
	Now      time.Time // UTC; today is its local date
	Days     int       // days of history before and including today
	Clients  int       // regular visitors, 1 to 5 sessions each
	Shards   int
	// BurstDay (days before today) gets BurstClients extra one-pageview
	// visitors from a launch campaign, so that some stored rows hold
	// HyperLogLog sketches (more than 512 users in one row).
	BurstDay     int
	BurstClients int
	// LiveClients have one session each within the last 30 minutes, for
	// the realtime view.
	LiveClients int
}

type touch struct{ channel, source, medium, campaign, referrer string }

var touches = []struct {
	t      touch
	weight int
}{
	{touch{"Direct", "(direct)", "(none)", "(direct)", "(none)"}, 30},
	{touch{"Organic Search", "google", "organic", "(organic)", "(none)"}, 25},
	{touch{"Organic Search", "bing", "organic", "(organic)", "(none)"}, 6},
	{touch{"Organic Search", "duckduckgo", "organic", "(organic)", "(none)"}, 3},
	{touch{"Referral", "news.example.com", "referral", "(referral)", "news.example.com/article/42"}, 8},
	{touch{"Referral", "blog.example.org", "referral", "(referral)", "blog.example.org/"}, 4},
	{touch{"Organic Social", "facebook.com", "referral", "(referral)", "facebook.com/"}, 6},
	{touch{"Paid Search", "google", "cpc", "spring_sale", "(none)"}, 9},
	{touch{"Paid Search", "bing", "cpc", "spring_sale", "(none)"}, 2},
	{touch{"Email", "newsletter", "email", "weekly", "(none)"}, 5},
	{touch{"Unassigned", "partner", "(not set)", "Partner Deal", "(none)"}, 2},
}

var (
	countries = []string{"US", "US", "US", "DE", "DE", "FR", "GB", "BR", NotSet}
	devices   = []string{"desktop", "desktop", "mobile", "mobile", "tablet"}
	browsers  = []string{"Chrome", "Chrome", "Chrome", "Safari", "Firefox", "Edge"}
	systems   = []string{"Windows", "macOS", "iOS", "Android", "Linux"}
	pages     = []string{"/", "/", "/", "/pricing", "/pricing", "/features", "/blog/", "/blog/launch", "/blog/tips-1", "/blog/tips-2",
		"/blog/2025/recap", "/blog/2025/roadmap", "/docs/start", "/docs/api/events", "/docs/api/reports", "/signup", "/search?q=reports", "/about"}
	eventDefs = []struct {
		cat, act, label string
		value           float64
		nonInteraction  bool
	}{
		{"video", "play", "intro", 0, false},
		{"video", "play", "demo", 0, false},
		{"video", "pause", "demo", 0, false},
		{"form", "submit", "signup", 5, false},
		{"form", "submit", "contact", 2.5, false},
		{"download", "click", "whitepaper.pdf", 1.25, false},
		{"scroll", "depth", "90%", 0, true},
	}
)

// Generate builds a data set deterministically from cfg.
func Generate(cfg Config) *Dataset {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7e57))
	ds := &Dataset{Property: gocql.MustRandomUUID(), Location: cfg.Location, Shards: cfg.Shards, Now: cfg.Now}
	loc := cfg.Location
	today := localDate(cfg.Now, loc)
	first := today.AddDate(0, 0, -(cfg.Days - 1))
	total := 0
	for _, t := range touches {
		total += t.weight
	}
	pickTouch := func() touch {
		n := rng.IntN(total)
		for _, t := range touches {
			if n < t.weight {
				return t.t
			}
			n -= t.weight
		}
		panic("unreachable")
	}
	pick := func(list []string) string { return list[rng.IntN(len(list))] }

	// newSession makes a session of client starting at start (UTC) with
	// npv pageviews.
	newSession := func(client string, c clientTraits, start time.Time, t touch, npv int) *Session {
		s := &Session{
			Client: client, Shard: hit.ShardOf(client, cfg.Shards), Start: start,
			Day: localDate(start, loc), Hour: start.In(loc).Hour(),
			Channel: t.channel, Source: t.source, Medium: t.medium, Campaign: t.campaign, Referrer: t.referrer,
			Country: c.country, Device: c.device, Browser: c.browser, OS: c.os,
		}
		at := start
		for i := 0; i < npv; i++ {
			if i > 0 {
				gap := time.Duration(5+rng.IntN(300)) * time.Second
				s.Pageviews[i-1].TimeMS = gap.Milliseconds()
				at = at.Add(gap)
			}
			path := pick(pages)
			if i == 0 && t.campaign == "launch" {
				path = "/blog/launch"
			}
			s.Pageviews = append(s.Pageviews, Pageview{Path: path, At: at, TimeMS: -1})
		}
		if rng.IntN(3) == 0 {
			for range 1 + rng.IntN(3) {
				e := eventDefs[rng.IntN(len(eventDefs))]
				at = at.Add(time.Duration(1+rng.IntN(60)) * time.Second)
				s.Events = append(s.Events, Event{Category: e.cat, Action: e.act, Label: e.label, Value: e.value, NonInteraction: e.nonInteraction, At: at})
			}
		}
		if len(s.Events) > 0 && len(s.Pageviews) > 0 {
			// A later hit measures the last pageview's time.
			last := &s.Pageviews[len(s.Pageviews)-1]
			last.TimeMS = at.Sub(last.At).Milliseconds()
		}
		s.DurationMS = at.Sub(start).Milliseconds()
		goals := 0
		for _, e := range s.Events {
			if e.Category == "form" && e.Action == "submit" {
				goals = 1 // goal "lead", once per session
			}
		}
		if slices.ContainsFunc(s.Pageviews, func(p Pageview) bool { return p.Path == "/signup" }) {
			s.Conversions, s.ConversionValue = goals+1, float64(goals)*10+25
		} else if goals > 0 {
			s.Conversions, s.ConversionValue = 1, 10
		}
		return s
	}

	startOn := func(day time.Time, minHour, maxHour int) time.Time {
		h := minHour + rng.IntN(maxHour-minHour+1)
		t := time.Date(day.Year(), day.Month(), day.Day(), h, rng.IntN(60), rng.IntN(60), 0, loc)
		return t.UTC()
	}

	var sessions []*Session
	for i := 0; i < cfg.Clients; i++ {
		client := fmt.Sprintf("c%05d.%d", i, rng.IntN(1e6))
		c := newTraits(rng)
		n := 1 + rng.IntN(5)
		for range n {
			day := first.AddDate(0, 0, rng.IntN(cfg.Days-1)) // not today: live sessions are today's
			npv := rng.IntN(6)
			if npv == 0 && rng.IntN(2) == 0 {
				npv = 1 // mostly sessions with pageviews; some event-only
			}
			s := newSession(client, c, startOn(day, 0, 21), pickTouch(), npv)
			if npv == 0 && len(s.Events) == 0 {
				s.Events = append(s.Events, Event{Category: "video", Action: "play", Label: "intro", At: s.Start})
			}
			sessions = append(sessions, s)
		}
	}
	burst := today.AddDate(0, 0, -cfg.BurstDay)
	for i := 0; i < cfg.BurstClients; i++ {
		client := fmt.Sprintf("b%05d", i)
		sessions = append(sessions, newSession(client, newTraits(rng), startOn(burst, 8, 20),
			touch{"Referral", "producthunt.com", "referral", "launch", "producthunt.com/posts/acme"}, 1))
	}
	for i := 0; i < cfg.LiveClients; i++ {
		client := fmt.Sprintf("l%05d", i)
		start := cfg.Now.Add(-time.Duration(1+rng.IntN(40*60)) * time.Second)
		s := newSession(client, newTraits(rng), start, pickTouch(), 1+rng.IntN(3))
		// Live sessions end by now.
		for j := range s.Pageviews {
			if s.Pageviews[j].At.After(cfg.Now) {
				s.Pageviews = s.Pageviews[:j]
				break
			}
		}
		if len(s.Pageviews) == 0 || s.Day != today {
			continue
		}
		s.Events = nil
		s.Pageviews[len(s.Pageviews)-1].TimeMS = -1
		s.DurationMS = s.Pageviews[len(s.Pageviews)-1].At.Sub(s.Start).Milliseconds()
		s.Conversions, s.ConversionValue = 0, 0
		sessions = append(sessions, s)
	}
	// Each client's earliest session is its first: a new user.
	slices.SortStableFunc(sessions, func(a, b *Session) int { return a.Start.Compare(b.Start) })
	seen := map[string]bool{}
	for _, s := range sessions {
		if !seen[s.Client] {
			s.New, seen[s.Client] = true, true
		}
	}
	ds.Sessions = sessions

	reasons := []string{"bot", "ip", "user_agent", "foreign_host", "page"}
	for d := first; !d.After(today); d = d.AddDate(0, 0, 1) {
		for _, r := range reasons {
			for sh := 0; sh < cfg.Shards; sh++ {
				if rng.IntN(3) > 0 {
					ds.Filtered = append(ds.Filtered, Filtered{Day: d, Reason: r, Shard: sh, Hits: 1 + int64(rng.IntN(50))})
				}
			}
		}
	}
	return ds
}

type clientTraits struct{ country, device, browser, os string }

func newTraits(rng *rand.Rand) clientTraits {
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	return clientTraits{pick(countries), pick(devices), pick(browsers), pick(systems)}
}

func localDate(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
