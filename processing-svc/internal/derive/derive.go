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
// their distinct-count sketches. They are one visitor's (Client's): what
// one hit, or one visitor's day when re-deriving, changes.
type Contributions struct {
	Daily    map[DailyKey]rollup.Metrics
	Hourly   map[HourKey]rollup.Metrics
	Realtime map[MinuteKey]*Realtime
	Filtered map[FilteredKey]int64
	// Client is the visitor whose sessions these are, set by the first
	// session added.
	Client string
	// Users holds, per rollup row, the change in references of Client to
	// its users sketch (+1 for a session added, -1 for one taken away).
	DailyUsers    map[DailyKey]int
	HourlyUsers   map[HourKey]int
	RealtimeUsers map[MinuteKey]int

	// spare holds the Realtime values of earlier uses, emptied by Reset,
	// for reuse: a Realtime must not be kept past the next Reset.
	spare []*Realtime
}

// New returns empty contributions.
func New() *Contributions {
	return &Contributions{
		Daily:         map[DailyKey]rollup.Metrics{},
		Hourly:        map[HourKey]rollup.Metrics{},
		Realtime:      map[MinuteKey]*Realtime{},
		Filtered:      map[FilteredKey]int64{},
		DailyUsers:    map[DailyKey]int{},
		HourlyUsers:   map[HourKey]int{},
		RealtimeUsers: map[MinuteKey]int{},
	}
}

// Empty reports whether c holds nothing.
func (c *Contributions) Empty() bool {
	return len(c.Daily) == 0 && len(c.Hourly) == 0 && len(c.Realtime) == 0 && len(c.Filtered) == 0 &&
		len(c.DailyUsers) == 0 && len(c.HourlyUsers) == 0 && len(c.RealtimeUsers) == 0
}

// addMetrics adds sign*m to the metrics of k in to, dropping k when they
// cancel out.
func addMetrics[K comparable](to map[K]rollup.Metrics, k K, m rollup.Metrics, sign int64) {
	cur := to[k]
	cur.Add(m, sign)
	if cur.IsZero() {
		delete(to, k)
		return
	}
	to[k] = cur
}

// setClient makes c the contributions of client.
func (c *Contributions) setClient(client string) {
	if c.Client != client {
		if c.Client != "" {
			panic("derive: contributions of two visitors, " + c.Client + " and " + client)
		}
		c.Client = client
	}
}

func addUser[K comparable](m map[K]int, k K, sign int64) {
	if m[k] += int(sign); m[k] == 0 {
		delete(m, k)
	}
}

// Reset empties c for reuse, keeping its maps' memory. The Realtime values
// it held are reused: whoever keeps one past Reset must copy it.
func (c *Contributions) Reset() {
	clear(c.Daily)
	clear(c.Hourly)
	for _, rt := range c.Realtime {
		rt.Pageviews = 0
		clear(rt.Pages)
		clear(rt.Sources)
		c.spare = append(c.spare, rt)
	}
	clear(c.Realtime)
	clear(c.Filtered)
	c.Client = ""
	clear(c.DailyUsers)
	clear(c.HourlyUsers)
	clear(c.RealtimeUsers)
}

// AddSession adds sign (+1 or -1) times what s contributes. first says
// whether s is the user's first session ever. Its day and hour are those
// s was built with (s.Day, s.Hour, in the zone of the settings it was
// built under), so that taking out a session built under a zone the
// property has since left takes it out of the rows it was added to.
func (c *Contributions) AddSession(s *session.Session, clientID string, first bool, sign int64) {
	c.setClient(clientID)
	sm := sessionMetrics(s, first)
	for _, d := range sessionDims(s, first) {
		k := DailyKey{Day: s.Day, Report: d.report, Dimension: d.value}
		addMetrics(c.Daily, k, sm, sign)
		addUser(c.DailyUsers, k, sign)
	}
	hk := HourKey{Day: s.Day, Hour: s.Hour}
	addMetrics(c.Hourly, hk, sm, sign)
	addUser(c.HourlyUsers, hk, sign)

	c.addPages(s, sign)
	c.addEvents(s, sign)
	c.addRealtime(s.Hits, s.Touch.Source, sign)
}

// AddChange adds what rebuilding a session changes: old and now are two
// builds of one session, before and after a hit joined it (firstOld and
// firstNow say whether each was the user's first session). The result is
// that of AddSession(old, -1) then AddSession(now, +1), but when the
// session keeps its head (first hit, day, attribution, landing page,
// enrichment) only what differs is computed: its rows and users stay the
// same, so only its metrics move. That is the common case, a hit appended
// to a visitor's current session.
func (c *Contributions) AddChange(old, now *session.Session, clientID string, firstOld, firstNow bool) {
	c.setClient(clientID)
	if firstOld != firstNow || !sameHead(old, now) {
		c.AddSession(old, clientID, firstOld, -1)
		c.AddSession(now, clientID, firstNow, +1)
		return
	}
	c.addMetricsChange(old, now, firstOld, firstNow)
	c.addPages(old, -1)
	c.addPages(now, +1)
	c.addEvents(old, -1)
	c.addEvents(now, +1)
	// Realtime counts each pageview on its own (with the session's
	// source, which is part of the head): only the hits in one build and
	// not the other change it.
	added, removed := hitDiff(old.Hits, now.Hits)
	c.addRealtime(removed, now.Touch.Source, -1)
	c.addRealtime(added, now.Touch.Source, +1)
}

// Tail is what adding a hit to the end of a visitor's current session
// needs to know of the session's earlier hits: the pages it viewed and the
// event rows it counted, for unique pageviews and events. AddExtension
// keeps it up to date from hit to hit.
type Tail struct {
	session string // the session's ID
	pages   map[string]bool
	events  map[DailyKey]bool
}

// tailOf returns the Tail of session s's hits before its last.
func tailOf(s *session.Session) *Tail {
	t := &Tail{session: s.ID, pages: map[string]bool{}, events: map[DailyKey]bool{}}
	for _, h := range s.Hits[:len(s.Hits)-1] {
		t.add(s.Day, h)
	}
	return t
}

// add records h, and reports for each row it counts in whether h is the
// first of the session there (the pageview's page, or the event's three
// event rows).
func (t *Tail) add(day time.Time, h *session.Hit) (first [3]bool, keys [3]DailyKey) {
	switch h.Type {
	case hit.TypePageview:
		first[0] = !t.pages[h.Path]
		t.pages[h.Path] = true
	case hit.TypeEvent:
		keys = eventKeys(day, h)
		for i, k := range keys {
			first[i] = !t.events[k]
			t.events[k] = true
		}
	}
	return first, keys
}

// AddExtension adds what session.Extend changed when it appended a hit to
// the session now: the same as AddChange of the session before and now
// (first says whether it is the user's first session), in time that does
// not grow with the session's length. The session's head must be the
// same before and after (its landing page: a session without pageviews
// getting its first is built and added the long way). tail is the Tail of
// the session before the hit, or nil, or another session's: then it is
// made from the session's hits. It returns the Tail to pass with the
// session's next hit.
func (c *Contributions) AddExtension(tail *Tail, e session.Extension, now *session.Session, clientID string, first bool) *Tail {
	c.setClient(clientID)
	b := &e.Before
	if b.Landing != now.Landing {
		panic("derive: AddExtension of a session whose landing page changed")
	}
	if tail == nil || tail.session != now.ID {
		tail = tailOf(now)
	}
	c.addMetricsChange(b, now, first, first)

	h := now.Hits[len(now.Hits)-1]
	page := func(path string, m rollup.Metrics) {
		if !m.IsZero() {
			addMetrics(c.Daily, DailyKey{Day: now.Day, Report: rollup.Page, Dimension: path}, m, 1)
		}
	}
	if e.LastPage != nil {
		m := pageTime(e.PageTimeNowMS)
		m.Add(pageTime(e.LastPageTimeMS), -1)
		page(e.LastPage.Path, m)
	}
	firsts, keys := tail.add(now.Day, h)
	switch h.Type {
	case hit.TypePageview:
		m := rollup.Metrics{Pageviews: 1} // the last hit: no time on page yet
		if firsts[0] {
			m.UniquePageviews = 1
		}
		page(h.Path, m)
		page(b.Exit, rollup.Metrics{Exits: -1})
		page(now.Exit, rollup.Metrics{Exits: 1})
	case hit.TypeEvent:
		for i, k := range keys {
			m := rollup.Metrics{Events: 1, EventValue: h.Value}
			if firsts[i] {
				m.UniqueEvents = 1
			}
			addMetrics(c.Daily, k, m, 1)
		}
	}
	if now.Pageviews > 0 && b.Bounce != now.Bounce {
		page(now.Landing, rollup.Metrics{Bounces: bit(now.Bounce) - bit(b.Bounce)})
	}
	c.addRealtime(now.Hits[len(now.Hits)-1:], now.Touch.Source, 1)
	return tail
}

// pageTime is what a pageview's time on page adds to its page's row.
func pageTime(ms int64) rollup.Metrics {
	if ms < 0 {
		return rollup.Metrics{}
	}
	return rollup.Metrics{TimeOnPageMS: ms, TimeOnPageViews: 1}
}

func bit(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// addMetricsChange adds the change of a session's metrics between two
// builds with the same head (so the same rows) to its session-level rows.
func (c *Contributions) addMetricsChange(old, now *session.Session, firstOld, firstNow bool) {
	dm := sessionMetrics(now, firstNow)
	dm.Add(sessionMetrics(old, firstOld), -1)
	if dm.IsZero() {
		return
	}
	for _, d := range sessionDims(now, firstNow) {
		addMetrics(c.Daily, DailyKey{Day: now.Day, Report: d.report, Dimension: d.value}, dm, 1)
	}
	addMetrics(c.Hourly, HourKey{Day: now.Day, Hour: now.Hour}, dm, 1)
}

// sameHead reports whether two builds of a session have the same rows:
// everything the session-level dimensions and the hour come from.
func sameHead(a, b *session.Session) bool {
	return a.ID == b.ID && a.Day.Equal(b.Day) && a.Hour == b.Hour && a.Start.Equal(b.Start) && a.Touch == b.Touch && a.Channel == b.Channel &&
		a.Landing == b.Landing && a.Country == b.Country && a.Device == b.Device && a.Browser == b.Browser && a.OS == b.OS
}

// hitDiff returns the hits only in now and those only in old; both are
// sorted by session.Less, and a hit in both is the same pointer or ID.
func hitDiff(old, now []*session.Hit) (added, removed []*session.Hit) {
	i, j := 0, 0
	for i < len(old) || j < len(now) {
		switch {
		case i < len(old) && j < len(now) && old[i].ID == now[j].ID:
			i++
			j++
		case j == len(now) || i < len(old) && session.Less(old[i], now[j]):
			removed = append(removed, old[i])
			i++
		default:
			added = append(added, now[j])
			j++
		}
	}
	return added, removed
}

func sessionMetrics(s *session.Session, first bool) rollup.Metrics {
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
	if first {
		sm.NewUsers = 1
	}
	return sm
}

type dim struct{ report, value string }

// sessionDims are the session-level rows a session counts in.
func sessionDims(s *session.Session, first bool) [11]dim {
	userType := rollup.ReturningUser
	if first {
		userType = rollup.NewUser
	}
	t := s.Touch
	return [...]dim{
		{rollup.Total, ""},
		{rollup.Channel, s.Channel},
		{rollup.SourceMedium, rollup.JoinDimension(t.Source, t.Medium)},
		{rollup.Campaign, t.Campaign},
		{rollup.Referrer, t.Referrer},
		{rollup.LandingPage, s.Landing},
		{rollup.Country, rollup.OrNotSet(s.Country)},
		{rollup.Device, rollup.OrNotSet(s.Device)},
		{rollup.Browser, rollup.OrNotSet(s.Browser)},
		{rollup.OS, rollup.OrNotSet(s.OS)},
		{rollup.UserType, userType},
	}
}

func (c *Contributions) addPages(s *session.Session, sign int64) {
	viewed := map[string]bool{}
	i := 0
	for _, h := range s.Hits {
		if h.Type != hit.TypePageview {
			continue
		}
		m := pageTime(s.PageTimesMS[i])
		m.Pageviews = 1
		if !viewed[h.Path] {
			viewed[h.Path] = true
			m.UniquePageviews = 1
		}
		addMetrics(c.Daily, DailyKey{Day: s.Day, Report: rollup.Page, Dimension: h.Path}, m, sign)
		i++
	}
	if s.Pageviews == 0 {
		return
	}
	entry := rollup.Metrics{Entrances: 1, Sessions: 1}
	if s.Bounce {
		entry.Bounces = 1
	}
	addMetrics(c.Daily, DailyKey{Day: s.Day, Report: rollup.Page, Dimension: s.Landing}, entry, sign)
	addMetrics(c.Daily, DailyKey{Day: s.Day, Report: rollup.Page, Dimension: s.Exit}, rollup.Metrics{Exits: 1}, sign)
}

func (c *Contributions) addEvents(s *session.Session, sign int64) {
	seen := map[DailyKey]bool{}
	for _, h := range s.Hits {
		if h.Type != hit.TypeEvent {
			continue
		}
		for _, k := range eventKeys(s.Day, h) {
			m := rollup.Metrics{Events: 1, EventValue: h.Value}
			if !seen[k] {
				seen[k] = true
				m.UniqueEvents = 1
			}
			addMetrics(c.Daily, k, m, sign)
		}
	}
}

// eventKeys are the rows an event counts in.
func eventKeys(day time.Time, h *session.Hit) [3]DailyKey {
	category, action, event := rollup.EventDimensions(h.Category, h.Action, h.Label)
	return [...]DailyKey{
		{day, rollup.EventCategory, category},
		{day, rollup.EventAction, action},
		{day, rollup.Event, event},
	}
}

// addRealtime adds hits to the realtime view of their minutes: every hit
// of a session (pageview, event, engagement ping...) makes its user active
// in its minute, as any event does in GA4's realtime report; pageviews
// also count, with their page and the session's source.
func (c *Contributions) addRealtime(hits []*session.Hit, source string, sign int64) {
	for _, h := range hits {
		k := MinuteKey{Minute: h.Time.UTC().Truncate(time.Minute)}
		addUser(c.RealtimeUsers, k, sign)
		if h.Type != hit.TypePageview {
			continue
		}
		r := c.Realtime[k]
		if r == nil {
			if n := len(c.spare); n > 0 {
				r, c.spare = c.spare[n-1], c.spare[:n-1]
			} else {
				r = &Realtime{Pages: map[string]int64{}, Sources: map[string]int64{}}
			}
			c.Realtime[k] = r
		}
		r.Pageviews += sign
		r.Pages[h.Path] += sign
		r.Sources[source] += sign
	}
}

// AddFiltered counts one hit excluded for reason on day.
func (c *Contributions) AddFiltered(day time.Time, reason string) {
	c.Filtered[FilteredKey{Day: day, Reason: reason}]++
}
