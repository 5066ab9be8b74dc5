// Package session turns a visitor's hits into sessions.
//
// Sessionization is a pure function of the visitor's hits (sorted by time,
// then ID) and the property's settings, so that a late hit is handled by
// simply inserting it and building the visitor's open sessions again: it
// lands in the right session, merges two sessions it bridges, or splits one,
// and the caller turns the difference into rollup updates.
//
// The rules (docs/processing.md has them with examples):
//   - a gap strictly longer than the timeout (30 minutes by default) ends a
//     session; exactly the timeout continues it;
//   - the local calendar date of the property's time zone changing between
//     two hits ends a session;
//   - a hit whose campaign (utm_source, utm_medium, utm_campaign, gclid
//     or gbraid or wbraid, msclkid) is non-empty and differs from the
//     session's starts a new one; a hit without campaign data never does;
//   - only pageviews and events start or split sessions; an engagement ping
//     (or a timing or exception hit archived before collection made them
//     events) that falls outside every session is ignored, since it is not
//     user activity.
package session

import (
	"cmp"
	"slices"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/attribution"
)

// Settings are a property's session settings.
type Settings struct {
	Timeout  time.Duration
	Location *time.Location
	// IgnoreReferrer reports referrer hosts that never set attribution: the
	// property's own hosts and its referral exclusions.
	IgnoreReferrer func(host string) bool
	// CustomChannel applies the property's channel rules before the default
	// channel group.
	CustomChannel func(source, medium, campaign string) (string, bool)
	// Source identifies where the settings come from (comparable: the
	// engine uses the compiled rules and the zone). Sessions built under
	// one Source are extended for the next hit instead of built again.
	Source any
	// RuleVersion is the version of the rules the settings come from,
	// which a session built under them records (0: its first hit's).
	RuleVersion int
}

// Goal is a goal completion a hit triggered.
type Goal struct {
	ID    string
	Value float64
}

// Hit is a hit as sessionization sees it: the property's rules already
// applied (path cleaned, goals matched).
type Hit struct {
	ID       string
	Type     hit.Type
	Time     time.Time
	Path     string // the page dimension: the cleaned path and query, less the attribution parameters (engine.pagePath)
	Title    string
	Referrer string
	Campaign attribution.Campaign
	// Event fields.
	Category, Action, Label string
	Value                   float64
	// Interaction is false for events the client marked non-interaction.
	Interaction bool
	Goals       []Goal
	// Enrichment, taken from the session's first hit.
	Country, Device, Browser, OS string
	RuleVersion                  int

	// attributed caches the attribution of the session this hit starts:
	// a visitor's current session is built again for each of its hits.
	attributed *attributed
}

// attributed is a session's attribution as computed under the settings
// of source.
type attributed struct {
	source  any
	touch   attribution.Touch
	channel string
}

// attribution returns the source, medium, campaign and channel of a
// session that h starts, under s.
func (h *Hit) attribution(s Settings) (attribution.Touch, string) {
	if a := h.attributed; a != nil && s.Source != nil && a.source == s.Source {
		return a.touch, a.channel
	}
	touch := attribution.Attribute(h.Campaign, h.Referrer, s.IgnoreReferrer)
	channel, custom := "", false
	if s.CustomChannel != nil {
		channel, custom = s.CustomChannel(touch.Source, touch.Medium, touch.Campaign)
	}
	if !custom {
		channel = attribution.DefaultChannel(touch.Source, touch.Medium, touch.Campaign)
	}
	if s.Source != nil {
		h.attributed = &attributed{source: s.Source, touch: touch, channel: channel}
	}
	return touch, channel
}

// Initiates reports whether a hit of this type may start or split a
// session: a pageview or an event.
func (h *Hit) Initiates() bool { return h.Type == hit.TypePageview || h.Type == hit.TypeEvent }

// Less orders hits by time, then ID, which is how a visitor's timeline is
// kept.
func Less(a, b *Hit) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return a.ID < b.ID
}

// Compare is Less as a three-way comparison, for slices.SortFunc and
// slices.BinarySearchFunc.
func Compare(a, b *Hit) int {
	switch {
	case Less(a, b):
		return -1
	case Less(b, a):
		return 1
	}
	return 0
}

// Session is one derived session.
type Session struct {
	// ID is the ID of the session's first hit, stable for as long as that
	// hit stays first.
	ID         string
	Start, End time.Time
	// Day is the property-local date the session started on, as midnight
	// UTC of that date, and Hour the local hour it started in (LocalHour):
	// the partition of its row. Location is the zone both are in, the
	// Settings' the session was built under, in which its hits' own hours
	// (their rows' partitions) are taken too.
	Day      time.Time
	Hour     int
	Location *time.Location
	Hits     []*Hit

	Pageviews, Events int
	Landing, Exit     string
	Bounce, Engaged   bool
	DurationMS        int64
	// PageTimesMS holds, for each pageview in order, its time on page: until
	// the next pageview, or for the last one until the session's last hit;
	// -1 when there is no later hit to measure by.
	PageTimesMS []int64

	Touch   attribution.Touch
	Channel string

	Country, Device, Browser, OS string
	// Conversions counts the distinct goals completed; each goal counts
	// once per session, with the value of its first completion.
	Conversions     int
	ConversionValue float64
	GoalIDs         []string
	RuleVersion     int

	interaction bool // an interaction event is among the hits
	lastPage    *Hit // the last pageview, nil if none
}

// EngagedAfter is how long a session must last to count as engaged without
// a second pageview or a conversion (GA4's definition).
const EngagedAfter = 10 * time.Second

// NotSet is the landing or exit page of a session without pageviews.
const NotSet = rollup.NotSet

// Build derives the sessions of hits, which must be sorted by Less.
func Build(hits []*Hit, s Settings) []*Session {
	var out []*Session
	var cur *Session
	var last *Hit
	for _, h := range hits {
		if cur != nil && !startsNew(cur, last, h, s) {
			cur.Hits = append(cur.Hits, h)
			last = h
			continue
		}
		if !h.Initiates() {
			continue // outside every session: ignored
		}
		cur = &Session{ID: h.ID, Hits: []*Hit{h}}
		out = append(out, cur)
		last = h
	}
	for _, ss := range out {
		ss.finish(s)
	}
	return out
}

func startsNew(cur *Session, last, h *Hit, s Settings) bool {
	if h.Time.Sub(last.Time) > s.Timeout {
		return true
	}
	if localDay(last.Time, s.Location) != localDay(h.Time, s.Location) {
		return true
	}
	return h.Initiates() && !h.Campaign.Empty() && !h.Campaign.Same(cur.Hits[0].Campaign)
}

// LocalDay returns the property-local date of t as midnight UTC of that
// date, the representation used for the "day" of every table.
func LocalDay(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func localDay(t time.Time, loc *time.Location) time.Time { return LocalDay(t, loc) }

// LocalHour returns the hour (0-23) of t in loc. With LocalDay it is the
// time bucket of the tables partitioned by hour (cql/0017_hourly_partitions.cql:
// a session's row by its start's local hour, a pageview's or an event's
// by its own; the raw archive's blocks by the UTC hour, loc time.UTC) and
// the hour of rollup_hourly. On a day a clock change shortens or
// lengthens, a local hour holds no real hour or two: it is only a bucket,
// and readers of a day read all 24.
func LocalHour(t time.Time, loc *time.Location) int { return t.In(loc).Hour() }

func (ss *Session) finish(s Settings) {
	first := ss.Hits[0]
	ss.Start = first.Time
	ss.End = ss.Hits[len(ss.Hits)-1].Time
	ss.Day, ss.Hour, ss.Location = LocalDay(ss.Start, s.Location), LocalHour(ss.Start, s.Location), s.Location
	ss.DurationMS = ss.End.Sub(ss.Start).Milliseconds()
	ss.Country, ss.Device, ss.Browser, ss.OS = first.Country, first.Device, first.Browser, first.OS
	// The rules the session was derived under, which a rules change
	// re-derives it under: not its first hit's, evaluated perhaps under
	// an earlier version.
	ss.RuleVersion = cmp.Or(s.RuleVersion, first.RuleVersion)
	ss.Landing, ss.Exit = NotSet, NotSet

	var pvTimes []time.Time
	for _, h := range ss.Hits {
		ss.count(h)
		if h.Type == hit.TypePageview {
			pvTimes = append(pvTimes, h.Time)
		}
	}
	ss.PageTimesMS = make([]int64, len(pvTimes))
	for i, t := range pvTimes {
		switch {
		case i+1 < len(pvTimes):
			ss.PageTimesMS[i] = pvTimes[i+1].Sub(t).Milliseconds()
		case ss.End.After(t):
			ss.PageTimesMS[i] = ss.End.Sub(t).Milliseconds()
		default:
			ss.PageTimesMS[i] = -1
		}
	}
	ss.setEngagement()
	ss.Touch, ss.Channel = first.attribution(s)
}

// count adds what h counts for: pageviews, landing and exit page, events,
// interaction and goals. Build and Extend count every hit through it.
func (ss *Session) count(h *Hit) {
	switch h.Type {
	case hit.TypePageview:
		ss.Pageviews++
		if ss.Landing == NotSet {
			ss.Landing = h.Path
		}
		ss.Exit = h.Path
		ss.lastPage = h
	case hit.TypeEvent:
		ss.Events++
		if h.Interaction {
			ss.interaction = true
		}
	}
	for _, g := range h.Goals {
		if !slices.Contains(ss.GoalIDs, g.ID) {
			ss.GoalIDs = append(ss.GoalIDs, g.ID)
			ss.Conversions++
			// As every sum of values: the rollups add this sum's changes,
			// and must come out as adding the values would.
			ss.ConversionValue = rollup.AddValue(ss.ConversionValue, g.Value)
		}
	}
}

func (ss *Session) setEngagement() {
	ss.Bounce = ss.Pageviews == 1 && !ss.interaction
	ss.Engaged = ss.Pageviews >= 2 || ss.Conversions > 0 || ss.End.Sub(ss.Start) > EngagedAfter
}

// Extension is what Extend changed in a session.
type Extension struct {
	// Before holds the session's values before the hit. Its Hits,
	// PageTimesMS and GoalIDs are nil: they now hold the extended
	// session's.
	Before Session
	// LastPage is the pageview whose time on page the hit changed (the
	// session's last pageview before it), nil if none, with its time on
	// page before and after.
	LastPage                      *Hit
	LastPageTimeMS, PageTimeNowMS int64
}

// Extend appends h to ss when h comes after every hit of ss and continues
// it (under the rules of Build): it returns the session that Build would
// give for ss's hits and h, and what changed. It takes constant time where
// building the session again takes time in its number of hits, which for
// a visitor's current session, the one that gets most hits, would make a
// session's cost grow with the square of its length.
//
// The new session shares ss's memory, and ss's last time on page is
// updated in place: ss must not be used afterwards. ok is false, and ss
// unchanged, when h does not come after ss's last hit or does not continue
// ss (it starts a new session, or, if it cannot, is outside every session).
func Extend(ss *Session, h *Hit, s Settings) (now *Session, e Extension, ok bool) {
	last := ss.Hits[len(ss.Hits)-1]
	if !Less(last, h) || startsNew(ss, last, h, s) {
		return nil, Extension{}, false
	}
	e.Before = *ss
	e.Before.Hits, e.Before.PageTimesMS, e.Before.GoalIDs = nil, nil, nil
	n := *ss
	n.Hits = append(n.Hits, h)
	n.End = h.Time
	n.DurationMS = n.End.Sub(n.Start).Milliseconds()
	if p := n.lastPage; p != nil {
		// The last pageview's time on page now runs to h: to the next
		// pageview, or to the session's last hit.
		k := len(n.PageTimesMS) - 1
		pt := int64(-1)
		if h.Time.After(p.Time) || h.Type == hit.TypePageview {
			pt = h.Time.Sub(p.Time).Milliseconds()
		}
		e.LastPage, e.LastPageTimeMS, e.PageTimeNowMS = p, n.PageTimesMS[k], pt
		n.PageTimesMS[k] = pt
	}
	n.count(h)
	if h.Type == hit.TypePageview {
		n.PageTimesMS = append(n.PageTimesMS, -1) // h is the last hit
	}
	n.setEngagement()
	return &n, e, true
}
