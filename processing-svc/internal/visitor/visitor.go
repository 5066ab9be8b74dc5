// Package visitor keeps one visitor's sessionization state and turns each
// new hit into rollup changes and table rows.
//
// A visitor holds its recent hits (the live timeline) and derives its open
// sessions from them with package session. A new hit is inserted in time
// order and the sessions are built again; the sessions that changed are
// subtracted from the rollups in their old form and added in their new one.
// A hit later than all of the visitor's hits, the common case, instead
// extends the current session (session.Extend) and adds only what changes
// (derive.AddExtension), in time that does not grow with the session.
// Place defers the building until Settle, so that many hits placed out of
// order (a client sending a long session's hits newest first) build the
// sessions once, not once each: Apply is Place and Settle for one hit.
// Sessions that no hit can change any more (they ended longer ago than the
// late-hit horizon plus the session timeout) are frozen: their hits leave
// the timeline and only their count and the user's first touch remain.
package visitor

import (
	"slices"
	"sort"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// LateHorizon is how old a hit may be when collection accepts it (its
// queue time); hits older than that never reach processing.
const LateHorizon = 4 * time.Hour

// ClockSkew is the allowance for receive times of one visitor's hits that
// reach processing out of order (several collection instances, retries).
const ClockSkew = 10 * time.Minute

// Limits on one visitor's state, against a client that sends far more hits
// than a person can (a server sending every event with one client ID, a
// crawler that keeps its cookie): without them its state would grow past
// what a processor's memory and one Cassandra write can hold, and every
// hit would cost more.
const (
	// MaxLiveHits bounds the live hits of one property-local day: a hit
	// that would take its day's past this is excluded with reason
	// LimitReason, until sessions freeze. Per day, as reprocessing (a day
	// at a time) counts them: the live timeline holds the day before's
	// sessions until they freeze, hours into the next day, and a limit of
	// the whole timeline excluded, live, hits a job then kept. A visitor
	// holds at most twice as many.
	MaxLiveHits = 10_000
	// MaxLiveBytes bounds the live hits of one property-local day by what
	// the state keeps of them (hitBytes): a hit that would take its day's
	// past it, once the day has minLiveForBytes hits, is excluded with
	// reason LimitReason too. Hits of the largest size (paths of 4 KB,
	// referrers and titles near collection's 8 KiB a hit) made a state of
	// 90 MB at MaxLiveHits, past the 16 MiB Cassandra takes in one write:
	// its visitor's partition could flush, and commit, nothing more.
	MaxLiveBytes = 2 << 20
	// MaxSeen bounds the IDs of excluded hits kept to recognise re-sends:
	// past it, an excluded hit is counted without its ID being kept, so a
	// re-send of it is counted again. Hits that are applied are always kept.
	MaxSeen = 20_000
)

// minLiveForBytes is how many live hits a day has before MaxLiveBytes is
// checked: a day with fewer (of at most 8 KiB each, collection's limit)
// holds far less, and most visitors' hits are never added up.
const minLiveForBytes = 64

// LimitReason is the filtered-hits reason of a hit excluded by MaxLiveHits
// or MaxLiveBytes.
const LimitReason = "visitor_limit"

// Touch is a user's first-touch acquisition.
type Touch struct {
	Source, Medium, Campaign, Channel string
}

// Visitor is one (property, client ID)'s state. The exported fields are
// its durable form (see Marshal).
type Visitor struct {
	ClientID string
	// FrozenSessions counts sessions that left the timeline.
	FrozenSessions int
	// FrozenUntil: a hit earlier than this can no longer be placed.
	FrozenUntil time.Time
	// FirstSeen is the start of the user's first session; FirstTouch its
	// acquisition. Both are zero until the user has a session.
	FirstSeen  time.Time
	FirstTouch Touch
	LastSeen   time.Time
	// PerDay says the users row counts the user's sessions per local day
	// (its day_sessions and day_last_seen: state encoding 3), so that
	// reprocessing can replace a day's figures. A visitor read in encoding
	// 2 counts them in one figure until it is converted (ConvertPerDay).
	PerDay bool
	// BaseSessions are the sessions the users row counted before it
	// counted per day (a visitor converted from encoding 2, or read back
	// from such a row), and BaseLast the end of the last of them.
	BaseSessions int
	BaseLast     time.Time
	// FrozenDays counts the frozen sessions per local day (PerDay only),
	// for the days whose figures a hit may still change, and a closed day
	// until its figures have been written (PruneDays).
	FrozenDays []DaySessions
	// Watermark is the latest receive time of the visitor's hits.
	Watermark time.Time
	// Hits is the live timeline, sorted by session.Less.
	Hits []*session.Hit
	// Seen holds the IDs of the visitor's hits (kept, excluded or
	// dropped) still young enough to be re-sent, with their times.
	Seen map[string]time.Time
	// PrunedAt is the watermark minute Seen was last pruned at: pruning
	// once a minute of watermark keeps it cheap and deterministic.
	PrunedAt time.Time

	sessions  []*session.Session // derived from Hits; nil until built (built)
	builtWith any                // the Settings.Source sessions were built with
	tail      *derive.Tail       // of the last session, while hits are appended to it
	// placed is what Place deferred: nil when the sessions are those of
	// every hit of Hits.
	placed *placed
	// dayBytes holds the hitBytes of the live hits of a day in dayZone
	// (by its start), once overLimit has summed them: each hit added adds
	// its own; freezing, which takes hits away, and another zone clear
	// them. Summed at every hit, a day of n hits cost in the order of n².
	dayBytes map[time.Time]int
	dayZone  *time.Location
}

// placed holds what Settle needs to derive the sessions of hits that Place
// inserted in the timeline without building them again: the sessions as
// before the first of them (as the rollups hold them), where the earliest
// went in Hits, and the settings they were placed under (one for all:
// Place settles before placing a hit under other settings).
type placed struct {
	before    []*session.Session
	from      int
	settings  session.Settings
	resettled bool // before was built under other settings than these
}

// DaySessions is a user's sessions on one property-local day: how many,
// and when the last of them ended.
type DaySessions struct {
	Day      time.Time
	Sessions int
	Last     time.Time
}

// Add counts ss among d's sessions.
func (d *DaySessions) Add(ss *session.Session) {
	d.Sessions++
	if ss.End.After(d.Last) {
		d.Last = ss.End
	}
}

// New returns the state of a visitor not seen before.
func New(clientID string) *Visitor {
	return &Visitor{ClientID: clientID, Seen: map[string]time.Time{}}
}

// Outcome says what Apply did with a hit.
type Outcome int

// Outcomes of Apply.
const (
	Applied   Outcome = iota // the hit is part of the visitor's sessions
	Duplicate                // the hit ID was seen before: nothing changes
	TooLate                  // older than the frozen sessions: counted as filtered
	Excluded                 // excluded by a rule: counted as filtered
	OverLimit                // past MaxLiveHits: counted as filtered (LimitReason)
)

// Changes are the rows a hit's application asks to write.
type Changes struct {
	// UpsertSessions are sessions whose row is new or changed.
	UpsertSessions []Upsert
	// DeleteSessions are rows of sessions that no longer exist (merged, or
	// renamed because a late hit became their first hit), or that moved:
	// derived again under another zone, a session keeps its ID but may
	// start on another local day or hour, another row.
	DeleteSessions []SessionRef
	// User is true when the users row changed.
	User bool
}

// Upsert is a session to write, and whether it is the user's first.
type Upsert struct {
	Session *session.Session
	First   bool
}

// SessionRef identifies a session row: the session's ID, and the local
// day and hour it started in (session.Session's Day and Hour), which
// partition the row.
type SessionRef struct {
	ID   string
	Day  time.Time
	Hour int
}

// RefOf returns the reference of s's row.
func RefOf(s *session.Session) SessionRef { return SessionRef{ID: s.ID, Day: s.Day, Hour: s.Hour} }

// liveOnDay returns the live hits on the property-local day of t (v.Hits
// is in time order), and the day's start.
func (v *Visitor) liveOnDay(t time.Time, loc *time.Location) ([]*session.Hit, time.Time) {
	start, end := dayOf(t, loc)
	from := sort.Search(len(v.Hits), func(i int) bool { return !v.Hits[i].Time.Before(start) })
	to := sort.Search(len(v.Hits), func(i int) bool { return !v.Hits[i].Time.Before(end) })
	return v.Hits[from:to], start
}

// dayOf returns the start and the end of the day of t in loc.
func dayOf(t time.Time, loc *time.Location) (start, end time.Time) {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// overLimit reports whether h would take the live hits of its day past
// MaxLiveHits or MaxLiveBytes.
func (v *Visitor) overLimit(h *session.Hit, loc *time.Location) bool {
	if loc != v.dayZone {
		// Before any return: a hit added under another zone (added skips
		// it) would leave the bytes kept for this one short, were the zone
		// to come back (TestDayBytesAcrossAZoneAndBack).
		clear(v.dayBytes)
		v.dayZone = loc
	}
	day, start := v.liveOnDay(h.Time, loc)
	if len(day) >= MaxLiveHits {
		return true
	}
	if len(day) < minLiveForBytes {
		return false
	}
	n, ok := v.dayBytes[start]
	if !ok {
		for _, o := range day {
			n += hitBytes(o)
		}
		if v.dayBytes == nil {
			v.dayBytes = map[time.Time]int{}
		}
		v.dayBytes[start] = n
	}
	return n+hitBytes(h) > MaxLiveBytes
}

// added counts h, just added to the live hits, in its day's bytes.
func (v *Visitor) added(h *session.Hit, loc *time.Location) {
	if len(v.dayBytes) == 0 || loc != v.dayZone {
		return
	}
	start, _ := dayOf(h.Time, loc)
	if n, ok := v.dayBytes[start]; ok {
		v.dayBytes[start] = n + hitBytes(h)
	}
}

// hitBytes is about what the state keeps of h: its strings, and a fixed
// allowance for the rest.
func hitBytes(h *session.Hit) int {
	c := &h.Campaign
	return 64 + len(h.ID) + len(h.Path) + len(h.Title) + len(h.Referrer) + len(h.Category) + len(h.Action) + len(h.Label) +
		len(c.Source) + len(c.Medium) + len(c.Name) + len(c.Term) + len(c.Content) + len(c.GCLID) + len(c.MSCLKID) +
		len(h.Country) + len(h.Device) + len(h.Browser) + len(h.OS) + 16*len(h.Goals)
}

// Exclude records a hit excluded by a rule: it is remembered as seen, so
// that a re-send is not counted again, and counted as filtered on the
// property-local day of its time. It returns Duplicate for a re-send.
func (v *Visitor) Exclude(id string, t, received time.Time, reason string, loc *time.Location, c *derive.Contributions) Outcome {
	if _, dup := v.Seen[id]; dup {
		return Duplicate
	}
	if len(v.Seen) < MaxSeen {
		v.Seen[id] = t
	}
	v.advance(received)
	c.AddFiltered(session.LocalDay(t, loc), reason)
	return Excluded
}

// Apply adds h (received at received) to the visitor, adds to c what
// changes in the rollups, and reports which rows must be written: Place
// and Settle, on a visitor with nothing placed before.
func (v *Visitor) Apply(h *session.Hit, received time.Time, s session.Settings, c *derive.Contributions) (Outcome, Changes) {
	if v.placed != nil {
		panic("visitor: Apply on a visitor with hits placed and not settled")
	}
	out, chs := v.Place(h, received, s, c)
	if v.placed != nil {
		chs = append(chs, v.Settle(c))
	}
	if len(chs) == 0 {
		return out, Changes{}
	}
	return out, chs[0] // Place settles nothing on a visitor with nothing placed
}

// Place adds h (received at received) to the visitor as Apply does, but a
// hit that does not simply come after every other (a late one, or the
// visitor's first) is only inserted in the timeline: its sessions are
// derived, and what they change added to c, by the next Settle, once for
// every hit placed until then. A hit placed after such hits is placed
// too. The Changes it returns, in order, are those of the sessions it
// derived now: a hit appended to the current session (as Apply), or the
// hits placed before it, settled first because this hit comes under other
// settings or may freeze sessions (freeze needs them derived). So a run of
// a visitor's hits settled once gives what applying them one at a time
// gives, the rollups' sums and the rows to write, built in time linear in
// its hits where one at a time took the square of their number when they
// came newest first. Until Settle, the visitor's sessions must not be read.
func (v *Visitor) Place(h *session.Hit, received time.Time, s session.Settings, c *derive.Contributions) (Outcome, []Changes) {
	if _, dup := v.Seen[h.ID]; dup {
		return Duplicate, nil
	}
	var chs []Changes
	// Sessions that ended long enough before this hit's receipt are
	// frozen first: no hit can change them, and that holds for this one
	// too, however much later it comes (a visitor back days later, its
	// last sessions still live in its stored state) and under whatever
	// settings (a rules change must not re-derive a closed day's session,
	// which reprocessing may have rewritten since). It also makes room
	// at the limit.
	v.advance(received)
	chs = v.settleAndFreeze(s, c, chs)
	if h.Time.Before(v.FrozenUntil) {
		v.Exclude(h.ID, h.Time, received, "too_late", s.Location, c)
		return TooLate, chs
	}
	if v.overLimit(h, s.Location) {
		v.Exclude(h.ID, h.Time, received, LimitReason, s.Location, c)
		return OverLimit, chs
	}
	v.Seen[h.ID] = h.Time
	if v.placed != nil && v.placed.settings.Source != s.Source {
		chs = append(chs, v.Settle(c))
	}
	i, _ := slices.BinarySearchFunc(v.Hits, h, session.Compare)
	if v.placed != nil {
		v.placed.from = min(v.placed.from, i)
		v.Hits = slices.Insert(v.Hits, i, h)
	} else {
		before := v.build(s)
		// Settings other than those the sessions were derived under (the
		// property's rules or zone changed): every live session is
		// derived again under this hit's, and each that comes out other
		// than the rollups have it is taken away and added anew.
		resettled := v.builtWith != s.Source
		ch, ok := Changes{}, false
		if i == len(v.Hits) && len(before) > 0 && !resettled {
			ch, ok = v.append(h, s, c)
		}
		if ok {
			chs = append(chs, ch)
		} else {
			v.placed = &placed{before: before, from: i, settings: s, resettled: resettled}
			v.Hits = slices.Insert(v.Hits, i, h)
		}
	}
	v.added(h, s.Location)
	if h.Time.After(v.LastSeen) {
		v.LastSeen = h.Time
	}
	v.advance(received)
	chs = v.settleAndFreeze(s, c, chs)
	return Applied, chs
}

// Placed reports whether hits were placed that the next Settle derives.
func (v *Visitor) Placed() bool { return v.placed != nil }

// Settle derives the sessions of the hits placed since the last Settle,
// adds to c what changed in the rollups, and reports which rows must be
// written. Sessions are cut by consecutive pairs of hits, so, as for one
// hit, only the sessions from the one holding the hit before the earliest
// placed are built again.
func (v *Visitor) Settle(c *derive.Contributions) Changes {
	p := v.placed
	if p == nil {
		return Changes{}
	}
	v.placed = nil
	after := v.rebuild(p.before, p.from, p.settings)
	v.tail = nil
	return v.diff(p.before, after, p.resettled, c)
}

// settleAndFreeze freezes what freeze would, settling the placed hits
// first when it may freeze any of their sessions, and appends what the
// settling changed to chs. A session ends no earlier than its first hit,
// so while the earliest live hit is within the horizon nothing freezes
// and placed hits stay placed.
func (v *Visitor) settleAndFreeze(s session.Settings, c *derive.Contributions, chs []Changes) []Changes {
	if v.placed != nil {
		if !v.placedMayFreeze(s) {
			return chs
		}
		chs = append(chs, v.Settle(c))
	}
	v.freeze(s)
	return chs
}

// placedMayFreeze reports whether settling the placed hits may give
// sessions that freeze would freeze under s (it needs them settled).
// Placing hits only adds hits to sessions, so a session as before them
// (placed.before) that does not freeze now does not once they are
// settled; a session they end (a split by a new campaign, of a session
// holding the earliest placed hit) ends within the timeout before that
// hit; every other session they make or change ends after it. So while
// the first session of before does not freeze, nor what ends a timeout
// before the earliest placed hit, nothing does, and a long session's hits
// placed out of order stay placed and are built once, however old its
// first hit (TestPlacedStayPlacedInAnOldSession). A hit in no session
// before them that freeze may take out settles them too. Under other
// settings than before's (a rules or zone change), the earliest live hit
// tells, as every session is built anew.
func (v *Visitor) placedMayFreeze(s session.Settings) bool {
	p := v.placed
	freezes := v.frozenAt(s).at
	if p.resettled || p.settings.Source != s.Source {
		return freezes(v.Hits[0].Time)
	}
	if len(p.before) > 0 && freezes(p.before[0].End) {
		return true
	}
	// A hit in no session before them, as old, that freeze may take out
	// (it does once no session is live, so not while one of before is):
	// the hits it takes out must not depend on how hits were batched.
	if p.from > 0 && len(p.before) == 0 && freezes(v.Hits[0].Time) {
		return true
	}
	return freezes(v.Hits[p.from].Time.Add(-s.Timeout))
}

// LatestRuleVersion returns the highest rules version of the live hits (0
// with none): that of the rules the live sessions were last derived under,
// as hits come under ever later versions.
func (v *Visitor) LatestRuleVersion() int {
	n := 0
	for _, h := range v.Hits {
		n = max(n, h.RuleVersion)
	}
	return n
}

// Sessions returns the live sessions (built if needed).
func (v *Visitor) Sessions(s session.Settings) []*session.Session { return v.build(s) }

// SessionCount is the number of sessions the user has had.
func (v *Visitor) SessionCount(s session.Settings) int { return v.FrozenSessions + len(v.build(s)) }

// frozenDay finds a day among FrozenDays (sorted by day), or where it goes.
func (v *Visitor) frozenDay(day time.Time) (int, bool) {
	return slices.BinarySearchFunc(v.FrozenDays, day, func(d DaySessions, day time.Time) int { return d.Day.Compare(day) })
}

// OnDay returns the user's sessions on a local day, frozen and live.
func (v *Visitor) OnDay(day time.Time, s session.Settings) DaySessions {
	d := DaySessions{Day: day}
	if i, found := v.frozenDay(day); found {
		d = v.FrozenDays[i]
	}
	for _, ss := range v.build(s) {
		if ss.Day.Equal(day) {
			d.Add(ss)
		}
	}
	return d
}

// PruneDays drops the frozen sessions' counts of the days no hit can
// change any more (before the earliest day not closed, as freeze reckons
// it): once their figures are written, nothing writes them again, so a
// reprocessing job's figures for such a day stay. Call it after the users
// row was written with every day changed since its last write.
func (v *Visitor) PruneDays(s session.Settings) {
	if len(v.FrozenDays) == 0 || s.Location == nil {
		return
	}
	_, open := v.horizon(s)
	v.FrozenDays = slices.DeleteFunc(v.FrozenDays, func(d DaySessions) bool { return d.Day.Before(open) })
}

// ConvertPerDay makes a visitor read in encoding 2 count its sessions per
// day: the sessions frozen so far become its base (the users row keeps
// counting them in session_count), its live sessions are counted per day
// from now on; the caller writes the days of its live sessions. Encoding 2
// does not keep when the last frozen session ended: without live hits it
// is LastSeen; with them it is FrozenUntil less the session timeout s
// gives (freeze sets FrozenUntil to that end plus the timeout), unless
// FrozenUntil is the midnight after that session, which it is when the
// timeout would pass midnight: then just before midnight, at most the
// timeout after the end, and never on a later day. The timeout s gives is
// that of the live hits' rules, which need not be the one the session was
// frozen under: where the difference would put the end on an earlier day
// than FrozenUntil's (a longer timeout since), the end is taken as just
// before FrozenUntil too, on the session's day, since a base ending a day
// early would leave that day to a job, which would count its sessions
// again (userRow.inBase).
func (v *Visitor) ConvertPerDay(s session.Settings) {
	if v.PerDay {
		return
	}
	v.PerDay = true
	if v.FrozenSessions == 0 {
		return
	}
	v.BaseSessions, v.BaseLast = v.FrozenSessions, v.LastSeen
	if len(v.Hits) == 0 || !v.FrozenUntil.Before(v.LastSeen) {
		return
	}
	end := v.FrozenUntil.Add(-s.Timeout)
	if s.Location != nil && v.FrozenUntil.Equal(rollup.DayStart(session.LocalDay(end, s.Location).AddDate(0, 0, 1), s.Location)) {
		end = v.FrozenUntil.Add(-time.Millisecond) // clipped at midnight: the end lies within the timeout before it
	}
	if s.Location != nil {
		if last := v.FrozenUntil.Add(-time.Millisecond); !session.LocalDay(end, s.Location).Equal(session.LocalDay(last, s.Location)) {
			end = last // a longer timeout than the session was frozen under: its day is FrozenUntil's
		}
	}
	v.BaseLast = end
}

// FirstTouchNow returns the user's first-touch acquisition, from the first
// live session while none is frozen.
func (v *Visitor) FirstTouchNow(s session.Settings) (Touch, time.Time) {
	if v.FrozenSessions == 0 {
		if ss := v.build(s); len(ss) > 0 {
			return TouchOf(ss[0]), ss[0].Start
		}
	}
	return v.FirstTouch, v.FirstSeen
}

// TouchOf returns the acquisition of a session, as a first touch.
func TouchOf(ss *session.Session) Touch {
	return Touch{Source: ss.Touch.Source, Medium: ss.Touch.Medium, Campaign: ss.Touch.Campaign, Channel: ss.Channel}
}

func (v *Visitor) build(s session.Settings) []*session.Session {
	if v.placed != nil {
		panic("visitor: sessions read with hits placed and not settled")
	}
	if v.sessions == nil {
		v.sessions, v.builtWith = built(session.Build(v.Hits, s)), s.Source
	}
	return v.sessions
}

// rebuild derives the sessions after a hit was inserted at index i of
// Hits, given those before. Sessions are cut by consecutive pairs of
// hits, so every session that started before the hit preceding the new
// one, other than the last such, is unchanged: only the sessions from that
// one on are built again. Under other settings than before's, all are.
func (v *Visitor) rebuild(before []*session.Session, i int, s session.Settings) []*session.Session {
	k := 0 // sessions kept as they were
	if i > 0 && v.builtWith == s.Source {
		prev := v.Hits[i-1]
		k = max(0, sort.Search(len(before), func(j int) bool { return session.Less(prev, before[j].Hits[0]) })-1)
	}
	from := 0
	if k > 0 {
		first := before[k].Hits[0]
		from = sort.Search(i, func(j int) bool { return !session.Less(v.Hits[j], first) })
	}
	v.sessions = built(append(slices.Clip(before[:k]), session.Build(v.Hits[from:], s)...))
	v.builtWith = s.Source
	return v.sessions
}

// built is ss as the sessions of a visitor: not nil, which is the mark of
// sessions not built yet, when there are none (a visitor with hits in no
// session, such as engagement pings alone, was built again at every hit).
func built(ss []*session.Session) []*session.Session {
	if ss == nil {
		return []*session.Session{}
	}
	return ss
}

// append handles h when it comes after every hit of the visitor, the
// common case, in time that does not grow with the current session's
// length: h extends the last session (session.Extend), starts a new one,
// or, outside every session, changes none. It reports false, changing
// nothing, when h would give the last session its first pageview (and so
// its landing page): rebuild and diff handle that, once per session.
func (v *Visitor) append(h *session.Hit, s session.Settings, c *derive.Contributions) (Changes, bool) {
	k := len(v.sessions) - 1
	last := v.sessions[k]
	if last.Pageviews == 0 && h.Type == hit.TypePageview {
		return Changes{}, false
	}
	now, e, ok := session.Extend(last, h, s)
	switch {
	case ok:
		v.sessions[k] = now
		v.tail = c.AddExtension(v.tail, e, now, v.ClientID, v.isFirst(k))
	case h.Initiates():
		now = session.Build([]*session.Hit{h}, s)[0]
		k++
		v.sessions = append(v.sessions, now)
		c.AddSession(now, v.ClientID, v.isFirst(k), +1)
	default:
		v.Hits = append(v.Hits, h) // outside every session
		return Changes{}, true
	}
	v.Hits = append(v.Hits, h)
	return Changes{UpsertSessions: []Upsert{{Session: now, First: v.isFirst(k)}}, User: true}, true
}

// isFirst reports whether the i-th live session is the user's first.
func (v *Visitor) isFirst(i int) bool { return v.FrozenSessions == 0 && i == 0 }

// diff adds the contributions of changed sessions to c and lists the rows
// to write. Both lists are sorted by their first hits, and a session in
// both has the same first hit (its ID), so one walk pairs them. With
// resettled (after was derived under other settings than before), a
// session with the same hits may still have changed (its channel, its
// attribution, its day) and is never taken as the same.
func (v *Visitor) diff(before, after []*session.Session, resettled bool, c *derive.Contributions) Changes {
	var ch Changes
	gone := func(j int) {
		s := before[j]
		c.AddSession(s, v.ClientID, v.isFirst(j), -1)
		ch.DeleteSessions = append(ch.DeleteSessions, RefOf(s))
	}
	j := 0
	for i, s := range after {
		for j < len(before) && before[j].ID != s.ID && session.Less(before[j].Hits[0], s.Hits[0]) {
			gone(j)
			j++
		}
		first := v.isFirst(i)
		if j < len(before) && before[j].ID == s.ID {
			o, oFirst := before[j], v.isFirst(j)
			j++
			if !resettled && oFirst == first && sameSession(o, s) {
				continue
			}
			c.AddChange(o, s, v.ClientID, oFirst, first)
			if !o.Day.Equal(s.Day) || o.Hour != s.Hour {
				// Derived under another zone: the same ID starts on
				// another day or hour, in another row.
				ch.DeleteSessions = append(ch.DeleteSessions, RefOf(o))
			}
		} else {
			c.AddSession(s, v.ClientID, first, +1)
		}
		ch.UpsertSessions = append(ch.UpsertSessions, Upsert{Session: s, First: first})
		ch.User = true
	}
	for ; j < len(before); j++ {
		gone(j)
	}
	return ch
}

// sameSession reports whether two builds of a session are the same: the
// same hits (hits never change, so the same count and the same last hit
// suffice for sessions with the same first hit).
func sameSession(a, b *session.Session) bool {
	return len(a.Hits) == len(b.Hits) && a.Hits[len(a.Hits)-1].ID == b.Hits[len(b.Hits)-1].ID
}

func (v *Visitor) advance(received time.Time) {
	if received.After(v.Watermark) {
		v.Watermark = received
	}
	if minute := v.Watermark.Truncate(time.Minute); minute.After(v.PrunedAt) {
		v.PrunedAt = minute
		cut := v.Watermark.Add(-LateHorizon - ClockSkew)
		// A hit still in a live session stays known however old: a
		// re-send of it without its time (dated when received) is still
		// the same hit, and the timeline must never hold an ID twice. So
		// nothing at or after the first live hit goes (excluded hits'
		// IDs among them stay a little longer, within MaxSeen).
		if len(v.Hits) > 0 && v.Hits[0].Time.Before(cut) {
			cut = v.Hits[0].Time
		}
		for id, t := range v.Seen {
			if t.Before(cut) {
				delete(v.Seen, id)
			}
		}
	}
}

// horizon returns what freezes under s: a session that ended before
// cutoff, or on a day before open, the earliest day not closed.
func (v *Visitor) horizon(s session.Settings) (cutoff, open time.Time) {
	return v.Watermark.Add(-LateHorizon - ClockSkew - s.Timeout), session.LocalDay(v.Watermark.Add(-LateHorizon-ClockSkew), s.Location)
}

// frozenAt returns the horizon under s as a test (a value, not a closure,
// which would cost an allocation at every hit).
func (v *Visitor) frozenAt(s session.Settings) frozenTest {
	cutoff, open := v.horizon(s)
	return frozenTest{cutoff, open, s.Location}
}

// frozenTest is a horizon (Visitor.horizon) in the zone loc.
type frozenTest struct {
	cutoff, open time.Time
	loc          *time.Location
}

// at reports whether a session that ends at end (or a hit in no session at
// that time) freezes.
func (f frozenTest) at(end time.Time) bool {
	return end.Before(f.cutoff) || session.LocalDay(end, f.loc).Before(f.open)
}

// freeze moves sessions that no future hit can change out of the timeline.
// A future hit is at most LateHorizon (plus skew) older than the visitor's
// watermark, and can only touch a session it is within the timeout of.
//
// A session of a day that ended more than LateHorizon (plus skew) before
// the watermark is frozen too, whatever the timeout: no hit of its day can
// still come, and a hit of a later day starts a session of its own. From
// then on report-svc reports the day as final; without this, a visitor
// back under a longer timeout than its sessions were derived with (a rules
// change) would derive a closed day's sessions again.
//
// Hits in no session (an engagement ping long after the page, the pings of
// a client that sends nothing else) leave with the sessions after them,
// and, once no session is live, when they are as old: no hit collection
// accepts can bring such a hit into a session (only a hit before it,
// within the timeout, could), so a client sending only pings holds a
// day's at most, not every ping it ever sent. (With a session live they
// wait for it: the live sessions may have been derived again under the
// rules of such a hit, LatestRuleVersion.)
func (v *Visitor) freeze(s session.Settings) {
	gone := v.frozenAt(s).at
	ss := v.build(s)
	n := 0
	// A session's day by its end: built under a zone since replaced, a
	// session can cross the new zone's midnight, and only its end tells
	// that no late hit can join it.
	for n < len(ss) && gone(ss[n].End) {
		n++
	}
	// Every hit of the frozen sessions leaves the timeline, and any hit in
	// no session before them.
	cut := 0
	if n > 0 {
		end := ss[n-1].Hits[len(ss[n-1].Hits)-1]
		cut = sort.Search(len(v.Hits), func(i int) bool { return session.Less(end, v.Hits[i]) })
		v.froze(ss[:n], s)
	}
	// With no session live, so do the hits in no session as old, and a hit
	// before the last of them is too late from then on, as one before a
	// frozen session is: it would bring that hit into its session (only a
	// hit older than collection accepts can, replayed from the dead
	// letters). Not for a visitor read in state encoding 2 with frozen
	// sessions, whose FrozenUntil tells ConvertPerDay when the last ended.
	if n == len(ss) && (v.PerDay || v.FrozenSessions == 0) {
		kept := cut
		for cut < len(v.Hits) && gone(v.Hits[cut].Time) {
			cut++
		}
		if cut > kept {
			v.FrozenUntil = later(v.FrozenUntil, v.Hits[cut-1].Time.Add(time.Nanosecond))
		}
	}
	v.cutHits(cut)
	if n > 0 {
		// The live sessions stay as derived, under the settings the
		// rollups hold them with: built again from the hits now, they
		// could come out under other settings, unnoticed.
		v.sessions, v.tail = dropFront(ss, n), nil
	}
}

// froze counts the sessions ss, the first live ones, as frozen under s.
func (v *Visitor) froze(ss []*session.Session, s session.Settings) {
	if v.FrozenSessions == 0 {
		v.FirstTouch, v.FirstSeen = TouchOf(ss[0]), ss[0].Start
	}
	if v.PerDay {
		for _, f := range ss {
			i, found := v.frozenDay(f.Day)
			if !found {
				v.FrozenDays = slices.Insert(v.FrozenDays, i, DaySessions{Day: f.Day})
			}
			v.FrozenDays[i].Add(f)
		}
	}
	last := ss[len(ss)-1]
	v.FrozenSessions += len(ss)
	// A hit earlier than this would join the last frozen session: within
	// the timeout of its end, on its day.
	v.FrozenUntil = last.End.Add(s.Timeout)
	if next := rollup.DayStart(session.LocalDay(last.End, s.Location).AddDate(0, 0, 1), s.Location); next.Before(v.FrozenUntil) {
		v.FrozenUntil = next
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// cutHits takes the first n live hits out of the timeline and their bytes
// out of dayBytes, in time that grows with n, not with the hits left
// (TestFreezingKeepsDayBytes; BenchmarkApplyHitVisitorShapes in package
// engine): a visitor whose every hit starts a session (a new campaign
// each) freezes a session at nearly every hit.
func (v *Visitor) cutHits(n int) {
	if n == 0 {
		return
	}
	if len(v.dayBytes) > 0 {
		for _, h := range v.Hits[:n] {
			start, _ := dayOf(h.Time, v.dayZone)
			if b, ok := v.dayBytes[start]; ok {
				v.dayBytes[start] = b - hitBytes(h)
			}
		}
	}
	v.Hits = dropFront(v.Hits, n)
}

// dropFront returns s without its first n elements, cleared so that what
// they point to can be collected. It copies what is left only when that
// is no more than what goes; else it reslices, and the array's dead front
// goes at the next append past its capacity (which the front no longer
// counts in), which copies only what is live. Copying what is left every
// time cost the whole slice at each freeze.
func dropFront[E any](s []*E, n int) []*E {
	if n >= len(s)-n {
		return slices.Clone(s[n:])
	}
	clear(s[:n])
	return s[n:]
}
