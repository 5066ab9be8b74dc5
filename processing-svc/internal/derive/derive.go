// Package derive computes what a visitor's sessions contribute to the
// report rollups.
//
// Contributions are additive: a session adds one to its channel's
// sessions, its pageviews to its pages, and so on. When a visitor's
// sessions change (a new hit, a late hit that merges or splits sessions),
// the processor subtracts the old sessions' contributions and adds the new
// ones, so every rollup row stays the exact sum over the sessions that
// exist now. Users too: a row's users sketch counts references (one per
// session of the user in the row), so a user leaves a dimension value with
// their last session there — exactly while the row holds at most
// sketch.ExactLimit users; beyond, the HyperLogLog cannot forget
// (docs/processing.md explains the bound).
package derive

import (
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// DailyKey addresses a rollup_daily row of one property and shard.
type DailyKey struct {
	Day       time.Time
	Report    string
	Dimension string
}

// HourKey addresses a rollup_hourly row of one property and shard.
type HourKey struct {
	Day  time.Time
	Hour int
}

// MinuteKey addresses a realtime row of one property and shard.
type MinuteKey struct{ Minute time.Time }

// FilteredKey addresses a filtered_hits row of one property and shard.
type FilteredKey struct {
	Day    time.Time
	Reason string
}

// Realtime holds what one minute adds to the realtime view.
type Realtime struct {
	Pageviews int64
	Pages     map[string]int64
	Sources   map[string]int64
}

// Contributions are additive changes to rollups, plus the users to add to
// their distinct-count sketches.
type Contributions struct {
	Daily    map[DailyKey]rollup.Metrics
	Hourly   map[HourKey]rollup.Metrics
	Realtime map[MinuteKey]*Realtime
	Filtered map[FilteredKey]int64
	// Users holds, per rollup row, the change in references of client IDs
	// to its users sketch (+1 for a session added, -1 for one taken away).
	DailyUsers    map[DailyKey]map[string]int
	HourlyUsers   map[HourKey]map[string]int
	RealtimeUsers map[MinuteKey]map[string]int
}

// New returns empty contributions.
func New() *Contributions {
	return &Contributions{
		Daily:         map[DailyKey]rollup.Metrics{},
		Hourly:        map[HourKey]rollup.Metrics{},
		Realtime:      map[MinuteKey]*Realtime{},
		Filtered:      map[FilteredKey]int64{},
		DailyUsers:    map[DailyKey]map[string]int{},
		HourlyUsers:   map[HourKey]map[string]int{},
		RealtimeUsers: map[MinuteKey]map[string]int{},
	}
}

// Empty reports whether c holds nothing.
func (c *Contributions) Empty() bool {
	return len(c.Daily) == 0 && len(c.Hourly) == 0 && len(c.Realtime) == 0 && len(c.Filtered) == 0 &&
		len(c.DailyUsers) == 0 && len(c.HourlyUsers) == 0 && len(c.RealtimeUsers) == 0
}

func (c *Contributions) addDaily(k DailyKey, m rollup.Metrics, sign int64) {
	cur := c.Daily[k]
	cur.Add(m, sign)
	if cur.IsZero() {
		delete(c.Daily, k)
		return
	}
	c.Daily[k] = cur
}

func (c *Contributions) addHourly(k HourKey, m rollup.Metrics, sign int64) {
	cur := c.Hourly[k]
	cur.Add(m, sign)
	if cur.IsZero() {
		delete(c.Hourly, k)
		return
	}
	c.Hourly[k] = cur
}

func addUser[K comparable](m map[K]map[string]int, k K, client string, sign int64) {
	refs := m[k]
	if refs == nil {
		refs = map[string]int{}
		m[k] = refs
	}
	if refs[client] += int(sign); refs[client] == 0 {
		delete(refs, client)
		if len(refs) == 0 {
			delete(m, k)
		}
	}
}

// AddSession adds sign (+1 or -1) times what s contributes. first says
// whether s is the user's first session ever. loc is the property's time
// zone, for hours and minutes.
func (c *Contributions) AddSession(s *session.Session, clientID string, first bool, loc *time.Location, sign int64) {
	sm := rollup.Metrics{
		Sessions:        1,
		DurationMS:      s.DurationMS,
		Pageviews:       int64(s.Pageviews),
		Events:          int64(s.Events),
		Conversions:     int64(s.Conversions),
		ConversionValue: s.ConversionValue,
	}
	if s.Engaged {
		sm.EngagedSessions = 1
	}
	if s.Bounce {
		sm.Bounces = 1
	}
	userType := rollup.ReturningUser
	if first {
		sm.NewUsers = 1
		userType = rollup.NewUser
	}
	t := s.Touch
	dims := [...]struct{ report, value string }{
		{rollup.Total, ""},
		{rollup.Channel, s.Channel},
		{rollup.Source, t.Source},
		{rollup.Medium, t.Medium},
		{rollup.SourceMedium, rollup.JoinDimension(t.Source, t.Medium)},
		{rollup.Campaign, t.Campaign},
		{rollup.Referrer, t.Referrer},
		{rollup.LandingPage, s.Landing},
		{rollup.Country, orNotSet(s.Country)},
		{rollup.Device, orNotSet(s.Device)},
		{rollup.Browser, orNotSet(s.Browser)},
		{rollup.OS, orNotSet(s.OS)},
		{rollup.UserType, userType},
	}
	for _, d := range dims {
		k := DailyKey{Day: s.Day, Report: d.report, Dimension: d.value}
		c.addDaily(k, sm, sign)
		addUser(c.DailyUsers, k, clientID, sign)
	}
	hk := HourKey{Day: s.Day, Hour: s.Start.In(loc).Hour()}
	c.addHourly(hk, sm, sign)
	addUser(c.HourlyUsers, hk, clientID, sign)

	c.addPages(s, sign)
	c.addEvents(s, sign)
	c.addRealtime(s, clientID, sign)
}

func (c *Contributions) addPages(s *session.Session, sign int64) {
	viewed := map[string]bool{}
	i := 0
	for _, h := range s.Hits {
		if h.Type != hit.TypePageview {
			continue
		}
		m := rollup.Metrics{Pageviews: 1}
		if pt := s.PageTimesMS[i]; pt >= 0 {
			m.TimeOnPageMS, m.TimeOnPageViews = pt, 1
		}
		if !viewed[h.Path] {
			viewed[h.Path] = true
			m.UniquePageviews = 1
		}
		c.addDaily(DailyKey{Day: s.Day, Report: rollup.Page, Dimension: h.Path}, m, sign)
		i++
	}
	if s.Pageviews == 0 {
		return
	}
	entry := rollup.Metrics{Entrances: 1, Sessions: 1}
	if s.Bounce {
		entry.Bounces = 1
	}
	c.addDaily(DailyKey{Day: s.Day, Report: rollup.Page, Dimension: s.Landing}, entry, sign)
	c.addDaily(DailyKey{Day: s.Day, Report: rollup.Page, Dimension: s.Exit}, rollup.Metrics{Exits: 1}, sign)
}

func (c *Contributions) addEvents(s *session.Session, sign int64) {
	seen := map[DailyKey]bool{}
	for _, h := range s.Hits {
		if h.Type != hit.TypeEvent {
			continue
		}
		for _, k := range [...]DailyKey{
			{s.Day, rollup.EventCategory, h.Category},
			{s.Day, rollup.EventAction, rollup.JoinDimension(h.Category, h.Action)},
			{s.Day, rollup.Event, rollup.JoinDimension(h.Category, h.Action, h.Label)},
		} {
			m := rollup.Metrics{Events: 1, EventValue: h.Value}
			if !seen[k] {
				seen[k] = true
				m.UniqueEvents = 1
			}
			c.addDaily(k, m, sign)
		}
	}
}

func (c *Contributions) addRealtime(s *session.Session, clientID string, sign int64) {
	for _, h := range s.Hits {
		if h.Type != hit.TypePageview {
			continue
		}
		k := MinuteKey{Minute: h.Time.UTC().Truncate(time.Minute)}
		r := c.Realtime[k]
		if r == nil {
			r = &Realtime{Pages: map[string]int64{}, Sources: map[string]int64{}}
			c.Realtime[k] = r
		}
		r.Pageviews += sign
		r.Pages[h.Path] += sign
		r.Sources[s.Touch.Source] += sign
		addUser(c.RealtimeUsers, k, clientID, sign)
	}
}

// AddFiltered counts one hit excluded for reason on day.
func (c *Contributions) AddFiltered(day time.Time, reason string) {
	c.Filtered[FilteredKey{Day: day, Reason: reason}]++
}

func orNotSet(s string) string {
	if s == "" {
		return session.NotSet
	}
	return s
}
