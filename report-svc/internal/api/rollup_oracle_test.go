package api_test

// An independent oracle of the report services' arithmetic.
//
// The test writes rollup rows itself, from randomly generated sessions of
// one property (several days around a daylight-saving change, several
// processing shards, dimension values with characters that need escaping
// in a filter or in a row of several columns (" / " and backslashes in a
// source, medium or event part, see roJoin), a launch day past the exact
// sketch limit, rows whose metrics are all zero), and keeps the ground
// truth in plain maps: per stored row the exact metric sums and the exact
// set of client IDs. The users sketches are built from those sets with
// pkg/sketch's public API, one reference per session, as processing does
// (processing-svc/internal/engine/rows.go).
//
// It then asks both services, over HTTP, many random queries (every report
// of both families, dimension combinations of the query report, metric
// lists, filters with every operator and escapes, sorts, pages,
// granularities, presets, ranges partly outside the data or in the future,
// compare=previous_period, JSON and CSV), and compares every number with
// what the definitions of docs/reports.md give from the ground truth alone:
// sums over days and shards, users as distinct client IDs of the range
// (exact up to sketch.ExactLimit, else within 3 standard errors), rates
// and averages from summed numerators and denominators, totals (from the
// total rollup for unfiltered session reports with dimensions, else over
// the matching rows), rows whose metrics are all zero left out, row counts
// before paging, periods clipped to the range and not in the future,
// previous periods matched by position.
//
// Nothing here reads the engine's code paths: the planner (which rollup a
// query reads), filters, drill-down, buckets, sorting and paging are
// implemented again from the documentation. Where the documentation is
// silent the oracle assumes: ties of the sort keys are broken by period,
// then by the dimension values in byte order (pages must be stable); "a
// row whose metrics are all zero" means all its stored sums, not only
// the metrics asked for.
//
// Mismatches are reported by class; TestRollupOracleCases holds a minimal
// example of each class the oracle found in the system (all fixed).

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/reporttest"
	"github.com/gocql/gocql"
)

// ---------------------------------------------------------------------
// Ground truth

// roM is the additive content of a stored row; values are kept in whole
// cents so that sums are exact.
type roM struct {
	newUsers, sessions, engaged, bounces, durMS, pageviews, upv, entrances, exits,
	topMS, topViews, events, uniqueEvents, eventCents, conversions, convCents, hits int64
}

func (a *roM) add(b *roM) {
	a.newUsers += b.newUsers
	a.sessions += b.sessions
	a.engaged += b.engaged
	a.bounces += b.bounces
	a.durMS += b.durMS
	a.pageviews += b.pageviews
	a.upv += b.upv
	a.entrances += b.entrances
	a.exits += b.exits
	a.topMS += b.topMS
	a.topViews += b.topViews
	a.events += b.events
	a.uniqueEvents += b.uniqueEvents
	a.eventCents += b.eventCents
	a.conversions += b.conversions
	a.convCents += b.convCents
	a.hits += b.hits
}

func (a *roM) zero() bool { return *a == roM{} }

func (a *roM) rollup() rollup.Metrics {
	return rollup.Metrics{
		NewUsers: a.newUsers, Sessions: a.sessions, EngagedSessions: a.engaged, Bounces: a.bounces, DurationMS: a.durMS,
		Pageviews: a.pageviews, UniquePageviews: a.upv, Entrances: a.entrances, Exits: a.exits,
		TimeOnPageMS: a.topMS, TimeOnPageViews: a.topViews, Events: a.events, UniqueEvents: a.uniqueEvents,
		EventValue: float64(a.eventCents) / 100, Conversions: a.conversions, ConversionValue: float64(a.convCents) / 100,
	}
}

// roCell is one stored row's truth.
type roCell struct {
	cols  []string       // the row's column values (the dimension value, split as written)
	m     roM            // metric sums
	users map[string]int // client ID -> sessions of it counted in the row
}

// roJoin is a row's stored dimension value, as docs/reports.md describes
// it: one column as it is; several each with a backslash before every
// backslash and slash in it, joined with " / ".
func roJoin(cols []string) string {
	if len(cols) == 1 {
		return cols[0]
	}
	esc := strings.NewReplacer(`\`, `\\`, "/", `\/`)
	var parts []string
	for _, c := range cols {
		parts = append(parts, esc.Replace(c))
	}
	return strings.Join(parts, " / ")
}

type roKey struct {
	day    time.Time
	report string
	dim    string
	shard  int
}

type roHourKey struct {
	day         time.Time
	hour, shard int
}

// roData is a property's rows and their truth.
type roData struct {
	loc          *time.Location
	now          time.Time
	first, today time.Time // property-local dates of the data (midnight UTC)
	shards       int
	daily        map[roKey]*roCell
	hourly       map[roHourKey]*roCell
	byDay        map[string][]*roCell // formatDate(day)+"|"+report
	hoursByDay   map[time.Time]map[int][]*roCell
	values       map[string][]string // column -> values present (for filters)
	dst          time.Time           // the day of the daylight-saving change
	sessions     int
}

type roTouch struct{ channel, source, medium, campaign, referrer string }

var roTouches = []roTouch{
	{"Direct", "(direct)", "(none)", "(direct)", "(none)"},
	{"Direct", "(direct)", "(none)", "(direct)", "(none)"},
	{"Organic Search", "google", "organic", "(organic)", "(none)"},
	{"Organic Search", "google", "organic", "(organic)", "(none)"},
	{"Organic Search", "bing", "organic", "(organic)", "(none)"},
	{"Paid Search", "google", "cpc", "spring_sale", "(none)"},
	{"Referral", "news.example.com", "referral", "(referral)", "news.example.com/a/1"},
	{"Organic Social", "facebook.com", "referral", "(referral)", "facebook.com"},
	{"Email", "newsletter", "email", `Spring "Sale", 2026`, "(none)"},
	{"Unassigned", "partner;x", "(not set)", `a|b\c`, "(none)"},
	{"Referral", "bücher.de", "referral", "(referral)", "bücher.de/über"},
	{"Email", "news / letter", "email", "weekly", "(none)"},
	{"Unassigned", `mail /`, `/ x\y`, "(not set)", "(none)"},
}

var roLaunch = roTouch{"Referral", "producthunt.com", "referral", "launch", "producthunt.com/posts/acme"}

var (
	roCountries = []string{"US", "US", "DE", "DE", "FR", "GB", "BR", "(not set)"}
	roDevices   = []string{"desktop", "desktop", "mobile", "mobile", "tablet"}
	roBrowsers  = []string{"Chrome", "Chrome", "Safari", "Firefox", "Edge"}
	roSystems   = []string{"Windows", "macOS", "iOS", "Android", "Linux"}
	roPages     = []string{"/", "/", "/pricing", "/features", "/blog/", "/blog/launch", "/blog/tips-1", "/blog/2025/recap",
		"/docs/start", "/docs/api/events", "/docs/api/reports", "/signup", "/search?q=a/b", "/a,b;c",
		// Stored as collection gives pages (hit.CanonicalPath), and as
		// rows written before 2026-12-04 may hold one (as sent).
		"/caf%C3%A9/", "/caf%C3%A9/men%C3%BC", "/it's?q=it%27s", "/über-uns"}
	roEventDefs = []struct {
		cat, act, label string
		cents           int64
		nonInteraction  bool
	}{
		{"video", "play", "intro", 0, false},
		{"video", "play", "x / y", 0, false},
		{"video", "pause", "demo", 0, false},
		{"form", "submit", "signup", 500, false},
		{"form", "submit", "contact", 250, false},
		{"download", "click", "whitepaper.pdf", 125, false},
		{"scroll", "depth", "90%", 0, true},
		{"outbound", "click", "https://ex.com/?a=1,b", 33, false},
		{"Video / YouTube", "play", "intro", 0, false},
		{"a /", "/ b", `c\d`, 0, false},
	}
	roReasons = []string{"bot", "ip", "user_agent", "page", "too_late"}
)

type roPV struct {
	path string
	at   time.Time
	ms   int64 // -1: unmeasured
}

type roEv struct {
	cat, act, label string
	cents           int64
	nonInt          bool
}

type roSess struct {
	client                       string
	shard                        int
	pre                          bool // the client was first seen before the data
	start                        time.Time
	touch                        roTouch
	country, device, browser, os string
	pvs                          []roPV
	evs                          []roEv
	durMS                        int64
	conv, convCents              int64
	isNew                        bool
}

func roDate(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// roMidnight returns the instant a property-local day begins: its
// midnight, or, where the clock jumps over midnight (America/Havana,
// America/Santiago), the transition, when the clock shows 01:00.
func roMidnight(day time.Time, loc *time.Location) time.Time {
	t := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
	if roDate(t, loc).Before(day) {
		_, end := t.ZoneBounds()
		return end
	}
	return t
}

func roFmt(day time.Time) string { return day.Format(time.DateOnly) }

// roGenerate builds a property's sessions and the rows they give.
func roGenerate(seed uint64, loc *time.Location, now time.Time, days, clients, burst, shards int, dstDay time.Time) *roData {
	rng := rand.New(rand.NewPCG(seed, 0x0ac1e))
	d := &roData{loc: loc, now: now, shards: shards, daily: map[roKey]*roCell{}, hourly: map[roHourKey]*roCell{}}
	d.today, d.dst = roDate(now, loc), dstDay
	d.first = d.today.AddDate(0, 0, -(days - 1))
	pick := func(l []string) string { return l[rng.IntN(len(l))] }

	// startIn returns a random instant of [lo, hi).
	startIn := func(lo, hi time.Time) time.Time {
		return lo.Add(time.Duration(rng.Int64N(int64(hi.Sub(lo))))).Truncate(time.Second).UTC()
	}
	startOn := func(day time.Time) time.Time {
		lo, hi := roMidnight(day, loc), roMidnight(day.AddDate(0, 0, 1), loc)
		if day.Equal(d.today) {
			hi = now.Add(-time.Hour)
		}
		return startIn(lo, hi)
	}
	newSession := func(client string, shard int, start time.Time, t roTouch, npv int) *roSess {
		s := &roSess{client: client, shard: shard, start: start, touch: t,
			country: pick(roCountries), device: pick(roDevices), browser: pick(roBrowsers), os: pick(roSystems)}
		at := start
		for i := range npv {
			if i > 0 {
				gap := time.Duration(5+rng.IntN(300)) * time.Second
				s.pvs[i-1].ms = gap.Milliseconds()
				at = at.Add(gap)
			}
			s.pvs = append(s.pvs, roPV{path: pick(roPages), at: at, ms: -1})
		}
		if npv == 0 || rng.IntN(3) == 0 {
			for range 1 + rng.IntN(3) {
				e := roEventDefs[rng.IntN(len(roEventDefs))]
				at = at.Add(time.Duration(1+rng.IntN(60)) * time.Second)
				s.evs = append(s.evs, roEv{e.cat, e.act, e.label, e.cents, e.nonInteraction})
			}
			if npv > 0 {
				last := &s.pvs[npv-1]
				last.ms = at.Sub(last.at).Milliseconds()
			}
		}
		s.durMS = at.Sub(start).Milliseconds()
		form := slices.ContainsFunc(s.evs, func(e roEv) bool { return e.cat == "form" && e.act == "submit" })
		signup := slices.ContainsFunc(s.pvs, func(p roPV) bool { return p.path == "/signup" })
		switch {
		case signup && form:
			s.conv, s.convCents = 2, 3599
		case signup:
			s.conv, s.convCents = 1, 2599
		case form:
			s.conv, s.convCents = 1, 1000
		}
		return s
	}

	var sessions []*roSess
	for i := range clients {
		client := fmt.Sprintf("c%04d.%d", i, rng.IntN(1e6))
		shard := rng.IntN(shards)
		pre := rng.IntN(8) == 0
		for range 1 + rng.IntN(4) {
			var start time.Time
			if rng.IntN(10) == 0 {
				// Around the daylight-saving change: the night of the change.
				lo := roMidnight(dstDay, loc)
				start = startIn(lo, lo.Add(6*time.Hour))
			} else {
				start = startOn(d.first.AddDate(0, 0, rng.IntN(days)))
			}
			npv := rng.IntN(6)
			s := newSession(client, shard, start, roTouches[rng.IntN(len(roTouches))], npv)
			s.pre = pre
			if rng.IntN(4) != 0 && len(sessions) > 0 && sessions[len(sessions)-1].client == client {
				// Mostly the same device and place as the client's last session.
				p := sessions[len(sessions)-1]
				s.country, s.device, s.browser, s.os = p.country, p.device, p.browser, p.os
			}
			sessions = append(sessions, s)
		}
	}
	burstDay := d.first.AddDate(0, 0, 1+rng.IntN(days-3))
	for i := range burst {
		lo := roMidnight(burstDay, loc).Add(8 * time.Hour)
		s := newSession(fmt.Sprintf("b%04d", i), rng.IntN(shards), startIn(lo, lo.Add(12*time.Hour)), roLaunch, 1)
		s.evs, s.conv, s.convCents, s.durMS = nil, 0, 0, 0
		s.pvs[0].path, s.pvs[0].ms = "/blog/launch", -1
		sessions = append(sessions, s)
	}
	slices.SortStableFunc(sessions, func(a, b *roSess) int { return a.start.Compare(b.start) })
	seen := map[string]bool{}
	for _, s := range sessions {
		if !seen[s.client] {
			seen[s.client] = true
			s.isNew = !s.pre
		}
	}
	d.sessions = len(sessions)

	cell := func(day time.Time, report string, cols []string, shard int) *roCell {
		k := roKey{day, report, roJoin(cols), shard}
		c := d.daily[k]
		if c == nil {
			c = &roCell{cols: cols, users: map[string]int{}}
			d.daily[k] = c
		}
		return c
	}
	for _, s := range sessions {
		day := roDate(s.start, loc)
		bounce := len(s.pvs) == 1 && !slices.ContainsFunc(s.evs, func(e roEv) bool { return !e.nonInt })
		sm := roM{sessions: 1, durMS: s.durMS, pageviews: int64(len(s.pvs)), events: int64(len(s.evs)), conversions: s.conv, convCents: s.convCents}
		if s.durMS > 10_000 || len(s.pvs) >= 2 || s.conv > 0 {
			sm.engaged = 1
		}
		if bounce {
			sm.bounces = 1
		}
		userType := "returning"
		if s.isNew {
			sm.newUsers, userType = 1, "new"
		}
		landing, exit := "(not set)", ""
		if len(s.pvs) > 0 {
			landing, exit = s.pvs[0].path, s.pvs[len(s.pvs)-1].path
		}
		t := s.touch
		for _, r := range []struct {
			report string
			cols   []string
		}{
			{"total", nil}, {"channel", []string{t.channel}}, {"source", []string{t.source}}, {"medium", []string{t.medium}},
			{"source_medium", []string{t.source, t.medium}}, {"campaign", []string{t.campaign}}, {"referrer", []string{t.referrer}},
			{"landing_page", []string{landing}}, {"country", []string{s.country}}, {"device", []string{s.device}},
			{"browser", []string{s.browser}}, {"os", []string{s.os}}, {"user_type", []string{userType}},
		} {
			c := cell(day, r.report, r.cols, s.shard)
			c.m.add(&sm)
			c.users[s.client]++
		}
		hk := roHourKey{day, s.start.In(loc).Hour(), s.shard}
		hc := d.hourly[hk]
		if hc == nil {
			hc = &roCell{users: map[string]int{}}
			d.hourly[hk] = hc
		}
		hc.m.add(&sm)
		hc.users[s.client]++

		viewed := map[string]bool{}
		for _, pv := range s.pvs {
			m := roM{pageviews: 1}
			if pv.ms >= 0 {
				m.topMS, m.topViews = pv.ms, 1
			}
			if !viewed[pv.path] {
				viewed[pv.path], m.upv = true, 1
			}
			cell(day, "page", []string{pv.path}, s.shard).m.add(&m)
		}
		if len(s.pvs) > 0 {
			entry := roM{entrances: 1, sessions: 1}
			if bounce {
				entry.bounces = 1
			}
			cell(day, "page", []string{landing}, s.shard).m.add(&entry)
			cell(day, "page", []string{exit}, s.shard).m.add(&roM{exits: 1})
		}
		counted := map[string]bool{}
		for _, e := range s.evs {
			for _, r := range []struct {
				report string
				cols   []string
			}{
				{"event_category", []string{e.cat}}, {"event_action", []string{e.cat, e.act}}, {"event", []string{e.cat, e.act, e.label}},
			} {
				m := roM{events: 1, eventCents: e.cents}
				if k := r.report + "|" + roJoin(r.cols); !counted[k] {
					counted[k], m.uniqueEvents = true, 1
				}
				cell(day, r.report, r.cols, s.shard).m.add(&m)
			}
		}
	}
	// Excluded hits.
	for day := d.first; !day.After(d.today); day = day.AddDate(0, 0, 1) {
		for _, r := range roReasons {
			for sh := range shards {
				if rng.IntN(2) == 0 {
					cell(day, "filtered_hits", []string{r}, sh).m.hits = 1 + int64(rng.IntN(40))
				}
			}
		}
	}
	// Rows whose metrics are all zero (left behind when a late hit moved a
	// session elsewhere): never shown.
	for range 6 {
		day := d.first.AddDate(0, 0, rng.IntN(days))
		sh := rng.IntN(shards)
		cell(day, "channel", []string{"Display"}, sh)
		cell(day, "country", []string{"ZZ"}, sh)
		cell(day, "page", []string{"/old"}, sh)
		cell(day, "event_category", []string{"legacy"}, sh)
		cell(day, "source_medium", []string{"old", "cpm"}, sh)
	}

	d.byDay = map[string][]*roCell{}
	values := map[string]map[string]bool{}
	addValue := func(col, v string) {
		if values[col] == nil {
			values[col] = map[string]bool{}
		}
		values[col][v] = true
	}
	for k, c := range d.daily {
		key := roFmt(k.day) + "|" + k.report
		d.byDay[key] = append(d.byDay[key], c)
		for i, col := range roSourceOf(k.report).cols {
			addValue(col, c.cols[i])
		}
		if k.report == "source_medium" {
			addValue("source_medium", strings.Join(c.cols, " / "))
		}
		if k.report == "page" {
			if v, ok := roDrill(c.cols[0], "/"); ok {
				addValue("page_path", v)
			}
		}
	}
	d.values = map[string][]string{}
	for col, set := range values {
		for v := range set {
			d.values[col] = append(d.values[col], v)
		}
		slices.Sort(d.values[col])
	}
	d.hoursByDay = map[time.Time]map[int][]*roCell{}
	for k, c := range d.hourly {
		if d.hoursByDay[k.day] == nil {
			d.hoursByDay[k.day] = map[int][]*roCell{}
		}
		d.hoursByDay[k.day][k.hour] = append(d.hoursByDay[k.day][k.hour], c)
	}
	return d
}

// rows returns what the store is given: every cell, its users sketch made
// with pkg/sketch from the client IDs, one reference per session.
func (d *roData) rows() *reporttest.Rows {
	r := &reporttest.Rows{Daily: map[reporttest.DailyKey]*reporttest.Cell{}, Hourly: map[reporttest.HourKey]*reporttest.Cell{},
		Realtime: map[reporttest.MinuteKey]*reporttest.RealtimeCell{}}
	toCell := func(c *roCell) *reporttest.Cell {
		out := &reporttest.Cell{Metrics: c.m.rollup()}
		clients := make([]string, 0, len(c.users))
		for u := range c.users {
			clients = append(clients, u)
		}
		slices.Sort(clients)
		for _, u := range clients {
			for range c.users[u] {
				out.Users.Add(u)
			}
		}
		return out
	}
	for k, c := range d.daily {
		if k.report == "filtered_hits" {
			r.Filtered = append(r.Filtered, reporttest.Filtered{Day: k.day, Reason: k.dim, Shard: k.shard, Hits: c.m.hits})
			continue
		}
		r.Daily[reporttest.DailyKey{Day: k.day, Report: k.report, Dimension: k.dim, Shard: k.shard}] = toCell(c)
	}
	for k, c := range d.hourly {
		r.Hourly[reporttest.HourKey{Day: k.day, Hour: k.hour, Shard: k.shard}] = toCell(c)
	}
	return r
}

// ---------------------------------------------------------------------
// What docs/reports.md says a query reads and shows

type roSource struct {
	report string
	scope  string
	cols   []string
}

// roSources are the rollups of docs/reports.md, "Dimensions and the rows
// they need".
var roSources = []roSource{
	{"total", "session", nil},
	{"channel", "session", []string{"channel"}},
	{"source", "session", []string{"source"}},
	{"medium", "session", []string{"medium"}},
	{"source_medium", "session", []string{"source", "medium"}},
	{"campaign", "session", []string{"campaign"}},
	{"referrer", "session", []string{"referrer"}},
	{"landing_page", "session", []string{"landing_page"}},
	{"country", "session", []string{"country"}},
	{"device", "session", []string{"device"}},
	{"browser", "session", []string{"browser"}},
	{"os", "session", []string{"os"}},
	{"user_type", "session", []string{"user_type"}},
	{"page", "page", []string{"page"}},
	{"event_category", "event", []string{"event_category"}},
	{"event_action", "event", []string{"event_category", "event_action"}},
	{"event", "event", []string{"event_category", "event_action", "event_label"}},
	{"filtered_hits", "filtered", []string{"reason"}},
}

func roSourceOf(report string) roSource {
	for _, s := range roSources {
		if s.report == report {
			return s
		}
	}
	panic("no source " + report)
}

// roNeeds are the stored columns a dimension is computed from.
func roNeeds(dim string) []string {
	switch dim {
	case "source_medium":
		return []string{"source", "medium"}
	case "page_path":
		return []string{"page"}
	}
	return []string{dim}
}

var (
	roSessionMetrics = []string{"users", "new_users", "sessions", "engaged_sessions", "engagement_rate", "bounces", "bounce_rate",
		"avg_session_duration", "pageviews", "pages_per_session", "events", "conversions", "conversion_rate", "goal_value"}
	roPageMetrics    = []string{"pageviews", "unique_pageviews", "avg_time_on_page", "entrances", "exits", "exit_rate", "bounces", "bounce_rate"}
	roEventMetrics   = []string{"total_events", "unique_events", "event_value", "avg_event_value"}
	roAcqDefault     = []string{"users", "new_users", "sessions", "engaged_sessions", "bounce_rate", "avg_session_duration", "pages_per_session", "conversions", "conversion_rate", "goal_value"}
	roPageDefault    = []string{"pageviews", "unique_pageviews", "avg_time_on_page", "entrances", "exits", "exit_rate", "bounce_rate"}
	roLandingDefault = []string{"sessions", "users", "new_users", "bounce_rate", "pages_per_session", "avg_session_duration", "conversions", "conversion_rate", "goal_value"}
	roScopeMetrics   = map[string][]string{"session": roSessionMetrics, "page": roPageMetrics, "event": roEventMetrics, "filtered": {"hits"}}
	roScopeDefaults  = map[string][]string{"session": roAcqDefault, "page": roPageDefault, "event": roEventMetrics, "filtered": {"hits"}}
	roCountMetrics   = []string{"users", "new_users", "sessions", "engaged_sessions", "bounces", "pageviews", "events", "conversions", "unique_pageviews", "entrances", "exits", "total_events", "unique_events", "hits"}
)

type roReportDef struct {
	dims    []string
	metrics []string
	generic bool
	nonZero string
}

var roReports = map[string]map[string]roReportDef{
	"acquisition": {
		"overview": {nil, roAcqDefault, false, ""}, "channel": {[]string{"channel"}, roAcqDefault, false, ""},
		"source": {[]string{"source"}, roAcqDefault, false, ""}, "medium": {[]string{"medium"}, roAcqDefault, false, ""},
		"source_medium": {[]string{"source", "medium"}, roAcqDefault, false, ""}, "campaign": {[]string{"campaign"}, roAcqDefault, false, ""},
		"referrer": {[]string{"referrer"}, roAcqDefault, false, ""}, "landing_page": {[]string{"landing_page"}, roAcqDefault, false, ""},
		"country": {[]string{"country"}, roAcqDefault, false, ""}, "device": {[]string{"device"}, roAcqDefault, false, ""},
		"browser": {[]string{"browser"}, roAcqDefault, false, ""}, "os": {[]string{"os"}, roAcqDefault, false, ""},
		"user_type": {[]string{"user_type"}, roAcqDefault, false, ""}, "query": {nil, roAcqDefault, true, ""},
	},
	"behavior": {
		"overview": {nil, roPageDefault, false, ""}, "pages": {[]string{"page"}, roPageDefault, false, ""},
		"landing_pages":    {[]string{"landing_page"}, roLandingDefault, false, ""},
		"exit_pages":       {[]string{"page"}, []string{"exits", "pageviews", "exit_rate"}, false, "exits"},
		"page_paths":       {[]string{"page_path"}, roPageDefault, false, ""},
		"events":           {[]string{"event_category", "event_action", "event_label"}, roEventMetrics, false, ""},
		"event_categories": {[]string{"event_category"}, roEventMetrics, false, ""},
		"event_actions":    {[]string{"event_category", "event_action"}, roEventMetrics, false, ""},
		"filtered":         {[]string{"reason"}, []string{"hits"}, false, ""},
		"query":            {nil, roPageDefault, true, ""},
	},
}

// roDrill is the page-path drill-down: the entry directly below dir that
// page belongs to, the page itself or the next directory; false for pages
// outside dir. A query string is not part of the path.
func roDrill(page, dir string) (string, bool) {
	if !strings.HasPrefix(page, dir) {
		return "", false
	}
	rest := page[len(dir):]
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.Index(rest, "/"); i >= 0 {
		return dir + rest[:i+1], true
	}
	return page, true
}

// ---------------------------------------------------------------------
// Queries

type roCond struct {
	dim, op string
	val     string
	vals    []string
	re      *regexp.Regexp
}

func roEscape(s, chars string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(chars, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (c roCond) String() string {
	if c.op == "[]" {
		parts := make([]string, len(c.vals))
		for i, v := range c.vals {
			parts[i] = roEscape(v, ",;|")
		}
		return c.dim + "[]" + strings.Join(parts, "|")
	}
	return c.dim + c.op + roEscape(c.val, ",;")
}

func (c roCond) match(v string) bool {
	switch c.op {
	case "==":
		return slices.Contains(c.forms(c.val), v)
	case "!=":
		return !slices.Contains(c.forms(c.val), v)
	case "=@":
		return slices.ContainsFunc(c.forms(c.val), func(f string) bool { return strings.Contains(v, f) })
	case "!@":
		return !slices.ContainsFunc(c.forms(c.val), func(f string) bool { return strings.Contains(v, f) })
	case "=~":
		return c.re.MatchString(v)
	case "!~":
		return !c.re.MatchString(v)
	case "[]":
		return slices.ContainsFunc(c.vals, func(w string) bool { return slices.Contains(c.forms(w), v) })
	}
	panic(c.op)
}

// roPageDims are the dimensions whose values are pages (docs/reports.md,
// "Filters").
var roPageDims = []string{"page", "landing_page", "page_path"}

// forms are the spellings of a value a condition tests: on a page
// dimension, as given and as collection stores pages (hit.CanonicalPath),
// and for contains also with the query's escapes; elsewhere as given.
func (c roCond) forms(v string) []string {
	if !slices.Contains(roPageDims, c.dim) {
		return []string{v}
	}
	out := []string{v, hit.CanonicalPath(v)}
	if (c.op == "=@" || c.op == "!@") && !strings.Contains(v, "?") {
		out = append(out, hit.CanonicalPath("?" + v)[1:])
	}
	return out
}

type roQuery struct {
	family, report string
	dims           []string     // the dimensions parameter (query report)
	metrics        []string     // nil: the report's
	filters        [][][]roCond // filter parameters, each an AND of ORs
	preset         string
	from, to       time.Time
	gran           string
	compare        bool
	sort           []string
	limit, offset  int    // -1: not given
	path           string // "": not given
	csv, accept    bool
}

func (q *roQuery) params() url.Values {
	v := url.Values{}
	if q.preset != "" {
		v.Set("range", q.preset)
	} else {
		v.Set("from", roFmt(q.from))
		v.Set("to", roFmt(q.to))
	}
	if q.dims != nil {
		v.Set("dimensions", strings.Join(q.dims, ","))
	}
	if q.metrics != nil {
		v.Set("metrics", strings.Join(q.metrics, ","))
	}
	for _, f := range q.filters {
		var ands []string
		for _, ors := range f {
			var parts []string
			for _, c := range ors {
				parts = append(parts, c.String())
			}
			ands = append(ands, strings.Join(parts, ","))
		}
		v.Add("filter", strings.Join(ands, ";"))
	}
	if q.gran != "" {
		v.Set("granularity", q.gran)
	}
	if q.compare {
		v.Set("compare", "previous_period")
	}
	if q.sort != nil {
		v.Set("sort", strings.Join(q.sort, ","))
	}
	if q.limit >= 0 {
		v.Set("limit", strconv.Itoa(q.limit))
	}
	if q.offset >= 0 {
		v.Set("offset", strconv.Itoa(q.offset))
	}
	if q.path != "" {
		v.Set("path", q.path)
	}
	if q.csv && !q.accept {
		v.Set("format", "csv")
	}
	return v
}

func (q *roQuery) String() string {
	return "/v1/reports/" + q.family + "/" + q.report + "?" + q.params().Encode()
}

// ---------------------------------------------------------------------
// The oracle

type roAgg struct {
	m     roM
	users map[string]bool
}

func newRoAgg() *roAgg { return &roAgg{users: map[string]bool{}} }

func (a *roAgg) addCell(c *roCell) {
	a.m.add(&c.m)
	for u := range c.users {
		a.users[u] = true
	}
}

type roBucket struct {
	label, start string
	first, last  time.Time // dates of the bucket within the range
	hour         int
}

type roRow struct {
	bucket int // -1 without granularity
	dims   []string
	agg    *roAgg
	prev   *roAgg // nil: zeros
}

type roExpect struct {
	from, to, prevFrom, prevTo time.Time
	dims, metrics              []string
	scope, source              string
	buckets, prevBuckets       []roBucket
	rows                       []*roRow
	total, prevTotal           *roAgg
	path                       string
}

// roPreset is a preset range of docs/reports.md relative to today.
func roPreset(name string, today time.Time) (time.Time, time.Time) {
	lastN := func(n int) (time.Time, time.Time) { return today.AddDate(0, 0, -n), today.AddDate(0, 0, -1) }
	monday := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
	first := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	switch name {
	case "today":
		return today, today
	case "yesterday":
		y := today.AddDate(0, 0, -1)
		return y, y
	case "last_7_days":
		return lastN(7)
	case "last_14_days":
		return lastN(14)
	case "last_28_days":
		return lastN(28)
	case "last_30_days":
		return lastN(30)
	case "last_90_days":
		return lastN(90)
	case "this_week":
		return monday, today
	case "last_week":
		return monday.AddDate(0, 0, -7), monday.AddDate(0, 0, -1)
	case "this_month":
		return first, today
	case "last_month":
		return first.AddDate(0, -1, 0), first.AddDate(0, 0, -1)
	}
	panic(name)
}

// buckets are the periods of [from, to] at gran that have begun by now.
func (d *roData) buckets(from, to time.Time, gran string) []roBucket {
	var out []roBucket
	rfc := func(t time.Time) string { return t.In(d.loc).Format(time.RFC3339) }
	for day := from; !day.After(to); day = day.AddDate(0, 0, 1) {
		start := roMidnight(day, d.loc)
		if start.After(d.now) {
			break
		}
		switch gran {
		case "day":
			out = append(out, roBucket{label: roFmt(day), start: rfc(start), first: day, last: day})
		case "week", "month":
			same := false
			if n := len(out); n > 0 {
				p := out[n-1].first
				if gran == "week" {
					y1, w1 := p.ISOWeek()
					y2, w2 := day.ISOWeek()
					same = y1 == y2 && w1 == w2
				} else {
					same = p.Year() == day.Year() && p.Month() == day.Month()
				}
			}
			if same {
				out[len(out)-1].last = day
				continue
			}
			label := day.Format("2006-01")
			if gran == "week" {
				y, w := day.ISOWeek()
				label = fmt.Sprintf("%d-W%02d", y, w)
			}
			out = append(out, roBucket{label: label, start: rfc(start), first: day, last: day})
		case "hour":
			// Walk the local day by quarter hours (every offset the
			// scenarios' zones have is a whole number of them); a repeated
			// local hour is one period (starting at its first occurrence),
			// a skipped one has none, and one the clock shortens (Chatham's
			// 03 from 03:45) starts where it starts.
			seen := map[int]int{} // local hour -> index in out
			for t := start; roDate(t, d.loc).Equal(day); t = t.Add(15 * time.Minute) {
				h := t.In(d.loc).Hour()
				if _, ok := seen[h]; ok {
					continue
				}
				if t.After(d.now) {
					continue
				}
				seen[h] = len(out)
				out = append(out, roBucket{label: fmt.Sprintf("%sT%02d", roFmt(day), h), start: rfc(t), first: day, last: day, hour: h})
			}
		}
	}
	return out
}

// plan resolves the report, dimensions, metrics and the rollup a query
// reads, from docs/reports.md.
func (d *roData) plan(q *roQuery) *roExpect {
	def := roReports[q.family][q.report]
	x := &roExpect{}
	if q.preset != "" {
		x.from, x.to = roPreset(q.preset, d.today)
	} else {
		x.from, x.to = q.from, q.to
	}
	n := int(x.to.Sub(x.from).Hours()/24) + 1
	x.prevFrom, x.prevTo = x.from.AddDate(0, 0, -n), x.from.AddDate(0, 0, -1)
	x.dims = def.dims
	if q.dims != nil {
		x.dims = q.dims
	}
	var needed []string
	for _, dim := range x.dims {
		needed = append(needed, roNeeds(dim)...)
	}
	for _, f := range q.filters {
		for _, ors := range f {
			for _, c := range ors {
				needed = append(needed, roNeeds(c.dim)...)
			}
		}
	}
	metrics := def.metrics
	if q.metrics != nil {
		metrics = q.metrics
	}
	if len(needed) == 0 {
		if q.family == "acquisition" {
			x.source = "total"
		} else {
			// The behavior overview reads the one kind of row that has every
			// metric: page rows first, then event, filtered, session totals.
			for _, sc := range []struct{ scope, source string }{{"page", "page"}, {"event", "event_category"}, {"filtered", "filtered_hits"}, {"session", "total"}} {
				all := true
				for _, m := range metrics {
					all = all && slices.Contains(roScopeMetrics[sc.scope], m)
				}
				if all {
					x.source = sc.source
					break
				}
			}
		}
	} else {
		best := -1
		for i, s := range roSources {
			if q.family == "acquisition" && s.scope != "session" || q.family == "behavior" && s.scope == "session" && s.report != "landing_page" {
				continue
			}
			all := true
			for _, c := range needed {
				all = all && slices.Contains(s.cols, c)
			}
			if all && (best < 0 || len(s.cols) < len(roSources[best].cols)) {
				best = i
			}
		}
		x.source = roSources[best].report
	}
	x.scope = roSourceOf(x.source).scope
	if q.metrics == nil && (def.generic || len(def.dims) == 0) && len(needed) > 0 {
		metrics = roScopeDefaults[x.scope]
	}
	x.metrics = metrics
	usesPath := slices.Contains(needed, "page") && (slices.Contains(x.dims, "page_path") || slices.ContainsFunc(q.filters, func(f [][]roCond) bool {
		return slices.ContainsFunc(f, func(ors []roCond) bool {
			return slices.ContainsFunc(ors, func(c roCond) bool { return c.dim == "page_path" })
		})
	}))
	if usesPath {
		x.path = "/"
		if q.path != "" {
			x.path = hit.CanonicalPath(q.path) // pages are stored so
			if !strings.HasSuffix(x.path, "/") {
				x.path += "/"
			}
		}
	}
	return x
}

// aggregate folds the rows of [from, to] into groups (period, dimension
// values) and totals, straight from the truth.
func (d *roData) aggregate(q *roQuery, x *roExpect, from, to time.Time, buckets []roBucket) (map[string]*roRow, *roAgg) {
	groups := map[string]*roRow{}
	total := newRoAgg()
	src := roSourceOf(x.source)
	hourly := q.gran == "hour"
	// Unfiltered session reports with dimensions take totals from the
	// total rollup (docs/reports.md, "Totals").
	totalRows := x.scope == "session" && len(src.cols) > 0 && len(q.filters) == 0
	group := func(b int, dims []string) *roRow {
		k := strconv.Itoa(b) + "\x00" + strings.Join(dims, "\x00")
		g := groups[k]
		if g == nil {
			g = &roRow{bucket: b, dims: dims, agg: newRoAgg()}
			groups[k] = g
		}
		return g
	}
	bucketOfDay := func(day time.Time) int {
		for i, b := range buckets {
			if !day.Before(b.first) && !day.After(b.last) {
				return i
			}
		}
		return -2
	}
	if q.gran != "" && len(x.dims) == 0 {
		for i := range buckets {
			group(i, []string{})
		}
	}
	for day := from; !day.After(to) && !day.After(d.today); day = day.AddDate(0, 0, 1) {
		b := -1
		if q.gran != "" && !hourly {
			if b = bucketOfDay(day); b < 0 {
				continue // a period that has not begun
			}
		}
		if hourly {
			for h, cells := range d.hoursByDay[day] {
				hb := -2
				for i, bk := range buckets {
					if bk.first.Equal(day) && bk.hour == h {
						hb = i
					}
				}
				for _, c := range cells {
					total.addCell(c)
					if hb >= 0 {
						group(hb, []string{}).agg.addCell(c)
					}
				}
			}
			continue
		}
		for _, c := range d.byDay[roFmt(day)+"|"+x.source] {
			value := func(dim string) (string, bool) {
				switch dim {
				case "source_medium":
					return c.cols[slices.Index(src.cols, "source")] + " / " + c.cols[slices.Index(src.cols, "medium")], true
				case "page_path":
					return roDrill(c.cols[0], x.path)
				}
				return c.cols[slices.Index(src.cols, dim)], true
			}
			ok := true
			for _, f := range q.filters {
				for _, ors := range f {
					hit := false
					for _, cond := range ors {
						if v, in := value(cond.dim); in && cond.match(v) {
							hit = true
						} else if !in {
							ok = false
						}
					}
					ok = ok && hit
				}
			}
			dims := make([]string, len(x.dims))
			for i, dim := range x.dims {
				v, in := value(dim)
				ok = ok && in
				dims[i] = v
			}
			if !ok {
				continue
			}
			if !totalRows {
				total.addCell(c)
			}
			group(b, dims).agg.addCell(c)
		}
		if totalRows {
			for _, c := range d.byDay[roFmt(day)+"|total"] {
				total.addCell(c)
			}
		}
	}
	return groups, total
}

func (d *roData) expect(q *roQuery) *roExpect {
	x := d.plan(q)
	if q.gran != "" {
		x.buckets = d.buckets(x.from, x.to, q.gran)
		x.prevBuckets = d.buckets(x.prevFrom, x.prevTo, q.gran)
	}
	groups, total := d.aggregate(q, x, x.from, x.to, x.buckets)
	x.total = total
	var prevGroups map[string]*roRow
	if q.compare {
		prevGroups, x.prevTotal = d.aggregate(q, x, x.prevFrom, x.prevTo, x.prevBuckets)
	}
	fill := q.gran != "" && len(x.dims) == 0
	nonZero := roReports[q.family][q.report].nonZero
	for k, g := range groups {
		if g.agg.m.zero() && !fill {
			continue // a row whose metrics are all zero is not shown
		}
		if nonZero == "exits" && g.agg.m.exits == 0 {
			continue
		}
		if pg := prevGroups[k]; pg != nil && (!pg.agg.m.zero() || fill) {
			g.prev = pg.agg
		}
		x.rows = append(x.rows, g)
	}
	return x
}

func roRatio(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// roValue is a metric's value by its definition in docs/reports.md; est
// says it is a users count past the exact limit (an estimate).
func roValue(scope, name string, a *roAgg) (v float64, est bool) {
	m := &a.m
	if scope == "session" {
		switch name {
		case "users":
			return float64(len(a.users)), len(a.users) > sketch.ExactLimit
		case "new_users":
			return float64(m.newUsers), false
		case "sessions":
			return float64(m.sessions), false
		case "engaged_sessions":
			return float64(m.engaged), false
		case "engagement_rate":
			return roRatio(m.engaged, m.sessions), false
		case "bounces":
			return float64(m.bounces), false
		case "bounce_rate":
			return roRatio(m.bounces, m.sessions), false
		case "avg_session_duration":
			return roRatio(m.durMS, m.sessions) / 1000, false
		case "pageviews":
			return float64(m.pageviews), false
		case "pages_per_session":
			return roRatio(m.pageviews, m.sessions), false
		case "events":
			return float64(m.events), false
		case "conversions":
			return float64(m.conversions), false
		case "conversion_rate":
			return roRatio(m.conversions, m.sessions), false
		case "goal_value":
			return float64(m.convCents) / 100, false
		}
	}
	if scope == "page" {
		switch name {
		case "pageviews":
			return float64(m.pageviews), false
		case "unique_pageviews":
			return float64(m.upv), false
		case "avg_time_on_page":
			return roRatio(m.topMS, m.topViews) / 1000, false
		case "entrances":
			return float64(m.entrances), false
		case "exits":
			return float64(m.exits), false
		case "exit_rate":
			return roRatio(m.exits, m.pageviews), false
		case "bounces":
			return float64(m.bounces), false
		case "bounce_rate":
			return roRatio(m.bounces, m.entrances), false
		}
	}
	if scope == "event" {
		switch name {
		case "total_events":
			return float64(m.events), false
		case "unique_events":
			return float64(m.uniqueEvents), false
		case "event_value":
			return float64(m.eventCents) / 100, false
		case "avg_event_value":
			return roRatio(m.eventCents, m.events) / 100, false
		}
	}
	if scope == "filtered" && name == "hits" {
		return float64(m.hits), false
	}
	panic(scope + "/" + name)
}

func roClose(got, want float64, est bool) bool {
	if est {
		return math.Abs(got-want) <= 3*sketch.StandardError*want
	}
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

// ---------------------------------------------------------------------
// Responses

type roGotRow struct {
	period, start string
	dims          []string
	vals          []float64
	prev          []float64
	raw           string // for messages
}

type roGot struct {
	rangeFrom, rangeTo, preset string
	prevFrom, prevTo           string
	hasPrev                    bool
	gran                       string
	dims, metrics              []string
	rows                       []roGotRow
	totals, prevTotals         map[string]float64
	rowCount, limit, offset    int
	usersEstimated             *bool
	cached                     bool
}

func roNum(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func roDecodeJSON(body []byte, dims, metrics []string, compare bool) (*roGot, error) {
	var raw struct {
		Range         map[string]string      `json:"range"`
		PreviousRange map[string]string      `json:"previous_range"`
		Granularity   string                 `json:"granularity"`
		Dimensions    []string               `json:"dimensions"`
		Metrics       []string               `json:"metrics"`
		Rows          []map[string]any       `json:"rows"`
		Totals        map[string]json.Number `json:"totals"`
		PrevTotals    map[string]json.Number `json:"previous_totals"`
		RowCount      int                    `json:"row_count"`
		Limit         int                    `json:"limit"`
		Offset        int                    `json:"offset"`
		UsersEstim    *bool                  `json:"users_estimated"`
		Cached        bool                   `json:"cached"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	g := &roGot{rangeFrom: raw.Range["from"], rangeTo: raw.Range["to"], preset: raw.Range["preset"], gran: raw.Granularity,
		dims: raw.Dimensions, metrics: raw.Metrics, rowCount: raw.RowCount, limit: raw.Limit, offset: raw.Offset,
		usersEstimated: raw.UsersEstim, cached: raw.Cached, totals: map[string]float64{}, prevTotals: map[string]float64{}}
	if raw.PreviousRange != nil {
		g.hasPrev, g.prevFrom, g.prevTo = true, raw.PreviousRange["from"], raw.PreviousRange["to"]
	}
	for k, v := range raw.Totals {
		g.totals[k], _ = v.Float64()
	}
	for k, v := range raw.PrevTotals {
		g.prevTotals[k], _ = v.Float64()
	}
	for _, r := range raw.Rows {
		enc, _ := json.Marshal(r)
		row := roGotRow{raw: string(enc)}
		row.period, _ = r["period"].(string)
		row.start, _ = r["period_start"].(string)
		for _, dim := range dims {
			s, ok := r[dim].(string)
			if !ok {
				return nil, fmt.Errorf("row %s: no dimension %s", enc, dim)
			}
			row.dims = append(row.dims, s)
		}
		for _, m := range metrics {
			f, ok := roNum(r[m])
			if !ok {
				return nil, fmt.Errorf("row %s: no metric %s", enc, m)
			}
			row.vals = append(row.vals, f)
		}
		if compare {
			p, ok := r["previous"].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("row %s: no previous", enc)
			}
			for _, m := range metrics {
				f, ok := roNum(p[m])
				if !ok {
					return nil, fmt.Errorf("row %s: no previous %s", enc, m)
				}
				row.prev = append(row.prev, f)
			}
		}
		g.rows = append(g.rows, row)
	}
	return g, nil
}

func roDecodeCSV(body []byte, series bool, dims, metrics []string, compare bool) ([]roGotRow, error) {
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		return nil, err
	}
	var header []string
	if series {
		header = append(header, "period", "period_start")
	}
	header = append(header, dims...)
	header = append(header, metrics...)
	if compare {
		for _, m := range metrics {
			header = append(header, "previous_"+m)
		}
	}
	if len(recs) == 0 || !slices.Equal(recs[0], header) {
		return nil, fmt.Errorf("CSV header %q, want %q", recs[0], header)
	}
	var out []roGotRow
	for _, rec := range recs[1:] {
		if len(rec) != len(header) {
			return nil, fmt.Errorf("CSV record %q has %d fields, want %d", rec, len(rec), len(header))
		}
		row := roGotRow{raw: strings.Join(rec, ",")}
		if series {
			row.period, row.start, rec = rec[0], rec[1], rec[2:]
		}
		row.dims, rec = rec[:len(dims)], rec[len(dims):]
		for i, s := range rec {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("CSV value %q: %v", s, err)
			}
			if i < len(metrics) {
				row.vals = append(row.vals, f)
			} else {
				row.prev = append(row.prev, f)
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// roFetch GETs a report as a viewer of the property.
func roFetch(e *env, q *roQuery, v url.Values, accept bool) (int, []byte, http.Header) {
	e.t.Helper()
	base := e.beh.URL
	if q.family == "acquisition" {
		base = e.acq.URL
	}
	v.Set("property_id", e.ds.Property.String())
	req, err := http.NewRequest("GET", base+"/v1/reports/"+q.family+"/"+q.report+"?"+v.Encode(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if accept {
		req.Header.Set("Accept", "text/csv")
	}
	tenant.Sign(req.Header, viewer, secret, time.Now())
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

// ---------------------------------------------------------------------
// Checking

// roChecker collects mismatches by class, so that a run reports each
// class with a few examples instead of hundreds of lines.
type roChecker struct {
	t        *testing.T
	classes  map[string][]string
	order    []string
	checked  int
	compared int
	stats    map[string]int // coverage: what the random queries exercised
}

func (c *roChecker) count(what string) {
	if c.stats == nil {
		c.stats = map[string]int{}
	}
	c.stats[what]++
}

func (c *roChecker) fail(class, format string, args ...any) {
	if c.classes == nil {
		c.classes = map[string][]string{}
	}
	if _, ok := c.classes[class]; !ok {
		c.order = append(c.order, class)
	}
	c.classes[class] = append(c.classes[class], fmt.Sprintf(format, args...))
}

func (c *roChecker) report() {
	for _, class := range c.order {
		ex := c.classes[class]
		msg := fmt.Sprintf("%s: %d mismatches, e.g.:\n  %s", class, len(ex), strings.Join(ex[:min(3, len(ex))], "\n  "))
		c.t.Error(msg)
	}
}

type roSortKey struct {
	field string
	desc  bool
	dim   int
	met   int
}

func roSortKeys(q *roQuery, x *roExpect) []roSortKey {
	var fields []string
	if q.sort == nil {
		if q.gran != "" {
			fields = append(fields, "period")
		}
		fields = append(fields, "-"+x.metrics[0])
	} else {
		fields = q.sort
	}
	var keys []roSortKey
	for _, f := range fields {
		k := roSortKey{field: strings.TrimPrefix(f, "-"), desc: strings.HasPrefix(f, "-"), dim: -1, met: -1}
		k.dim = slices.Index(x.dims, k.field)
		k.met = slices.Index(x.metrics, k.field)
		keys = append(keys, k)
	}
	return keys
}

// check asks the query twice: every row (one page of 10000) as JSON,
// compared with the oracle, then the page the query asks for, in its
// format, compared with the matching slice of the full answer.
func (c *roChecker) check(e *env, d *roData, q *roQuery) {
	x := d.expect(q)
	c.checked++
	c.count(q.family + "/" + q.report)
	c.count("granularity " + q.gran)
	if q.compare {
		c.count("compare")
	}
	if len(q.filters) > 0 {
		c.count("filter")
	}
	if q.csv {
		c.count("csv")
	}
	if q.preset != "" {
		c.count("preset")
	}
	if q.to.After(d.today) || x.to.After(d.today) {
		c.count("range into the future")
	}
	if x.from.Before(d.first) {
		c.count("range before the data")
	}
	if q.gran == "hour" && !x.from.After(d.dst) && !x.to.Before(d.dst) {
		c.count("hour series over the DST day")
	}
	name := q.String()
	full := q.params()
	full.Set("limit", "10000")
	full.Set("offset", "0")
	full.Del("format")
	status, body, _ := roFetch(e, q, full, false)
	if status != http.StatusOK {
		c.fail("status", "%s: %d %s", name, status, body)
		return
	}
	g, err := roDecodeJSON(body, x.dims, x.metrics, q.compare)
	if err != nil {
		c.fail("decode", "%s: %v", name, err)
		return
	}
	// The echo of the query.
	if g.rangeFrom != roFmt(x.from) || g.rangeTo != roFmt(x.to) || g.preset != q.preset {
		c.fail("range echo", "%s: range %s..%s (%q), want %s..%s (%q)", name, g.rangeFrom, g.rangeTo, g.preset, roFmt(x.from), roFmt(x.to), q.preset)
	}
	if q.compare != g.hasPrev || q.compare && (g.prevFrom != roFmt(x.prevFrom) || g.prevTo != roFmt(x.prevTo)) {
		c.fail("previous_range", "%s: previous range %v %s..%s, want %s..%s", name, g.hasPrev, g.prevFrom, g.prevTo, roFmt(x.prevFrom), roFmt(x.prevTo))
	}
	if !slices.Equal(g.dims, x.dims) && !(len(g.dims) == 0 && len(x.dims) == 0) || !slices.Equal(g.metrics, x.metrics) {
		c.fail("dimensions/metrics", "%s: dimensions %q metrics %q, want %q %q", name, g.dims, g.metrics, x.dims, x.metrics)
		return
	}
	if g.gran != q.gran {
		c.fail("granularity echo", "%s: granularity %q", name, g.gran)
	}

	// Rows: the same set, each value by its definition.
	bucketIdx := map[string]int{}
	for i, b := range x.buckets {
		bucketIdx[b.label] = i
	}
	label := func(b int) string {
		if b < 0 {
			return ""
		}
		return x.buckets[b].label
	}
	want := map[string]*roRow{}
	for _, r := range x.rows {
		want[label(r.bucket)+"\x00"+strings.Join(r.dims, "\x00")] = r
	}
	usersEst := false
	checkVals := func(where string, got []float64, a *roAgg) {
		for i, m := range x.metrics {
			var w float64
			var est bool
			if a != nil {
				w, est = roValue(x.scope, m, a)
			}
			usersEst = usersEst || est
			c.compared++
			if m == "users" {
				switch {
				case est:
					c.count("users estimated")
				case w > 0:
					c.count("users exact")
				}
			}
			if !roClose(got[i], w, est) {
				class := "value " + x.scope + "/" + m
				if est {
					class = "users estimate"
				}
				c.fail(class, "%s: %s: %s = %v, want %v", name, where, m, got[i], w)
			}
			if slices.Contains(roCountMetrics, m) && got[i] != math.Trunc(got[i]) {
				c.fail("count not whole", "%s: %s: %s = %v", name, where, m, got[i])
			}
		}
	}
	seen := map[string]bool{}
	bucketOf := make([]int, len(g.rows))
	for i, row := range g.rows {
		k := row.period + "\x00" + strings.Join(row.dims, "\x00")
		where := "row " + strings.ReplaceAll(k, "\x00", "|")
		if seen[k] {
			c.fail("duplicate row", "%s: %s", name, where)
		}
		seen[k] = true
		bucketOf[i] = -1
		if q.gran != "" {
			b, ok := bucketIdx[row.period]
			if !ok {
				c.fail("unexpected period", "%s: %s", name, row.raw)
				continue
			}
			bucketOf[i] = b
			if row.start != x.buckets[b].start {
				c.fail("period_start", "%s: %s: period_start %s, want %s", name, where, row.start, x.buckets[b].start)
			}
		}
		r := want[k]
		if r == nil {
			c.fail("unexpected row", "%s: %s", name, row.raw)
			continue
		}
		checkVals(where, row.vals, r.agg)
		if q.compare {
			checkVals(where+" previous", row.prev, r.prev)
		}
	}
	for k, r := range want {
		if !seen[k] {
			c.fail("missing row", "%s: row %s (%v)", name, strings.ReplaceAll(k, "\x00", "|"), r.agg.m)
		}
	}
	if g.rowCount != len(x.rows) {
		c.fail("row_count", "%s: row_count %d, want %d", name, g.rowCount, len(x.rows))
	}
	// Totals.
	tot := make([]float64, len(x.metrics))
	for i, m := range x.metrics {
		tot[i] = g.totals[m]
	}
	checkVals("totals", tot, x.total)
	if q.compare {
		for i, m := range x.metrics {
			tot[i] = g.prevTotals[m]
		}
		checkVals("previous_totals", tot, x.prevTotal)
	}
	if slices.Contains(x.metrics, "users") {
		if g.usersEstimated == nil || *g.usersEstimated != usersEst {
			c.fail("users_estimated", "%s: users_estimated %v, want %v", name, g.usersEstimated, usersEst)
		}
	}

	// Order: by the sort keys, ties by period then dimension values, on
	// the served values (users estimates and floating point make the
	// oracle's own values unfit to decide near ties).
	keys := roSortKeys(q, x)
	cmp := func(a, b int) int {
		ra, rb := &g.rows[a], &g.rows[b]
		for _, k := range keys {
			var c int
			switch {
			case k.met >= 0:
				c = cmpF(ra.vals[k.met], rb.vals[k.met])
			case k.dim >= 0:
				c = strings.Compare(ra.dims[k.dim], rb.dims[k.dim])
			default:
				c = bucketOf[a] - bucketOf[b]
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		if c := bucketOf[a] - bucketOf[b]; c != 0 {
			return c
		}
		return slices.Compare(ra.dims, rb.dims)
	}
	for i := 1; i < len(g.rows); i++ {
		if cmp(i-1, i) > 0 {
			c.fail("order", "%s: row %d %s before row %d %s", name, i-1, g.rows[i-1].raw, i, g.rows[i].raw)
			break
		}
	}

	// The page asked for, in its format.
	if q.limit < 0 && q.offset < 0 && !q.csv {
		return
	}
	off, lim := max(q.offset, 0), q.limit
	if lim < 0 {
		lim = 1000
	}
	var wantPage []roGotRow
	if off < len(g.rows) {
		wantPage = g.rows[off:min(len(g.rows), off+lim)]
	}
	status, body, hdr := roFetch(e, q, q.params(), q.accept)
	if status != http.StatusOK {
		c.fail("status", "%s (page): %d %s", name, status, body)
		return
	}
	var page []roGotRow
	if q.csv {
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			c.fail("csv content type", "%s: %s", name, ct)
			return
		}
		if n := hdr.Get("X-Report-Row-Count"); n != strconv.Itoa(len(x.rows)) {
			c.fail("row_count", "%s (csv): X-Report-Row-Count %s, want %d", name, n, len(x.rows))
		}
		page, err = roDecodeCSV(body, q.gran != "", x.dims, x.metrics, q.compare)
	} else {
		var pg *roGot
		pg, err = roDecodeJSON(body, x.dims, x.metrics, q.compare)
		if err == nil {
			page = pg.rows
			if pg.rowCount != len(x.rows) || pg.limit != lim || pg.offset != off {
				c.fail("page envelope", "%s: row_count %d limit %d offset %d, want %d %d %d", name, pg.rowCount, pg.limit, pg.offset, len(x.rows), lim, off)
			}
			if !roMapsEqual(pg.totals, g.totals) {
				c.fail("page totals", "%s: totals %v, want those of the whole result %v", name, pg.totals, g.totals)
			}
		}
	}
	if err != nil {
		c.fail("decode", "%s (page): %v", name, err)
		return
	}
	same := len(page) == len(wantPage)
	for i := 0; same && i < len(page); i++ {
		a, b := page[i], wantPage[i]
		same = a.period == b.period && a.start == b.start && slices.Equal(a.dims, b.dims) && slices.Equal(a.vals, b.vals) &&
			(!q.compare || slices.Equal(a.prev, b.prev))
	}
	if !same {
		class := "page"
		if q.csv {
			class = "csv page"
		}
		first := func(rs []roGotRow) string {
			if len(rs) == 0 {
				return "none"
			}
			return rs[0].raw
		}
		c.fail(class, "%s: %d rows starting %s, want %d rows starting %s", name, len(page), first(page), len(wantPage), first(wantPage))
	}
}

func roMapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------
// Random queries

func roPick[T any](rng *rand.Rand, l []T) T { return l[rng.IntN(len(l))] }

// roSubset returns 1 to n distinct elements of l in random order.
func roSubset(rng *rand.Rand, l []string, n int) []string {
	p := rng.Perm(len(l))
	k := 1 + rng.IntN(min(n, len(l)))
	out := make([]string, k)
	for i := range k {
		out[i] = l[p[i]]
	}
	return out
}

// filterValues are the values a filter may test for a column: those
// stored, and of a page stored percent-encoded also its spelling as read
// (/café/ for /caf%C3%A9/).
func (d *roData) filterValues(col string) []string {
	vals := slices.Clone(d.values[col])
	if slices.Contains(roPageDims, col) {
		for _, v := range d.values[col] {
			if read, err := url.PathUnescape(v); err == nil && read != v && !strings.Contains(read, "#") {
				vals = append(vals, read)
			}
		}
	}
	return append(vals, "no-such-value")
}

// randomCond makes one condition on col.
func (d *roData) randomCond(rng *rand.Rand, col string) roCond {
	vals := d.filterValues(col)
	v := roPick(rng, vals)
	c := roCond{dim: col}
	switch rng.IntN(7) {
	case 0:
		c.op, c.val = "==", v
	case 1:
		c.op, c.val = "!=", v
	case 2:
		c.op = "=@"
		if len(v) > 2 {
			i := rng.IntN(len(v) - 1)
			v = roNoEndingBackslash(v[i:i+1+rng.IntN(len(v)-i)], v)
		}
		c.val = v
	case 3:
		c.op = "!@"
		if len(v) > 1 {
			v = roNoEndingBackslash(v[:1+rng.IntN(len(v)-1)], v)
		}
		c.val = v
	case 4, 5:
		c.op = "=~"
		if rng.IntN(2) == 0 {
			c.op = "!~"
		}
		pats := []string{"^" + regexp.QuoteMeta(v[:min(len(v), 2)]), regexp.QuoteMeta(v[len(v)/2:]) + "$", `(?i)^[a-f]`, `\.`, `^/(blog|docs)/`, `e,?x`, `^\(`}
		c.val = roPick(rng, pats)
	case 6:
		c.op = "[]"
		c.vals = roSubset(rng, vals, 3)
	}
	if c.op == "=~" || c.op == "!~" {
		c.re = regexp.MustCompile(c.val)
	}
	return c
}

// roNoEndingBackslash cuts a part of a value that ends with a backslash
// (`x\` of `/ x\y`) before it: the filter syntax cannot write a value
// ending with a backslash before a , or ; (`=@x\,medium==cpc` is the
// one value "x,medium==cpc"; docs/reports.md says only that a backslash
// escapes , and ;).
func roNoEndingBackslash(part, whole string) string {
	if t := strings.TrimRight(part, `\`); t != "" {
		return t
	}
	return whole
}

// randomFilter makes an AND of ORs over cols.
func (d *roData) randomFilter(rng *rand.Rand, cols []string) [][]roCond {
	var f [][]roCond
	for range 1 + rng.IntN(2) {
		var ors []roCond
		for range 1 + rng.IntN(2) {
			ors = append(ors, d.randomCond(rng, roPick(rng, cols)))
		}
		// A page outside the drill-down path has no page_path, which
		// matches no condition (TestRollupOracleCases); the oracle keeps
		// page_path conditions in OR groups of their own.
		if slices.ContainsFunc(ors, func(c roCond) bool { return c.dim == "page_path" }) {
			for i := range ors {
				if ors[i].dim != "page_path" {
					ors[i] = d.randomCond(rng, "page_path")
				}
			}
		}
		f = append(f, ors)
	}
	return f
}

var roPresets = []string{"today", "yesterday", "last_7_days", "last_14_days", "last_28_days", "last_30_days", "last_90_days", "this_week", "last_week", "this_month", "last_month"}

// randomQuery makes a valid query of either family.
func (d *roData) randomQuery(rng *rand.Rand) *roQuery {
	q := &roQuery{limit: -1, offset: -1}
	var cols []string    // columns a filter may test
	hourOK := false      // hour granularity is possible
	var metrics []string // the metrics to draw explicit lists from
	if rng.IntN(2) == 0 {
		q.family = "acquisition"
		q.report = roPick(rng, []string{"overview", "channel", "source", "medium", "source_medium", "campaign", "referrer",
			"landing_page", "country", "device", "browser", "os", "user_type", "query", "query", "overview"})
		metrics = roSessionMetrics
		switch q.report {
		case "overview":
			if rng.IntN(2) == 0 {
				src := roPick(rng, roSources[1:13])
				cols = slices.Clone(src.cols)
				if src.report == "source_medium" {
					cols = append(cols, "source_medium")
				}
			} else {
				hourOK = true
			}
		case "query":
			src := roPick(rng, roSources[1:13])
			avail := slices.Clone(src.cols)
			if src.report == "source_medium" {
				avail = append(avail, "source_medium")
			}
			q.dims = roSubset(rng, avail, 3)
			cols = avail
		case "source", "medium", "source_medium":
			cols = []string{q.report}
			if q.report == "source_medium" || rng.IntN(2) == 0 {
				cols = []string{"source", "medium", "source_medium"}
			}
		default:
			cols = []string{q.report}
		}
	} else {
		q.family = "behavior"
		q.report = roPick(rng, []string{"overview", "overview", "pages", "landing_pages", "exit_pages", "page_paths", "events",
			"event_categories", "event_actions", "filtered", "query", "query"})
		metrics = roPageMetrics
		switch q.report {
		case "overview":
			switch rng.IntN(4) {
			case 0:
				cols = []string{"page", "page_path"}
			case 1:
				metrics, hourOK = roSessionMetrics, true
				q.metrics = roSubset(rng, []string{"users", "new_users", "sessions", "engaged_sessions", "engagement_rate",
					"avg_session_duration", "pages_per_session", "events", "conversions", "conversion_rate", "goal_value"}, 5)
			case 2:
				metrics, cols = roEventMetrics, []string{"event_category", "event_action", "event_label"}
				q.metrics = roSubset(rng, roEventMetrics, 4)
			case 3:
				metrics, cols = []string{"hits"}, []string{"reason"}
				q.metrics = []string{"hits"}
			}
		case "pages", "exit_pages", "page_paths":
			cols = []string{"page", "page_path"}
		case "landing_pages":
			metrics, cols = roSessionMetrics, []string{"landing_page"}
		case "events":
			metrics, cols = roEventMetrics, []string{"event_category", "event_action", "event_label"}
		case "event_categories", "event_actions":
			metrics, cols = roEventMetrics, []string{"event_category", "event_action"}
		case "filtered":
			metrics, cols = []string{"hits"}, []string{"reason"}
		case "query":
			dimSets := []struct {
				dims, cols, metrics []string
			}{
				{[]string{"page"}, []string{"page", "page_path"}, roPageMetrics},
				{[]string{"page_path"}, []string{"page", "page_path"}, roPageMetrics},
				{[]string{"page_path", "page"}, []string{"page", "page_path"}, roPageMetrics},
				{[]string{"landing_page"}, []string{"landing_page"}, roSessionMetrics},
				{[]string{"event_category"}, []string{"event_category"}, roEventMetrics},
				{[]string{"event_action"}, []string{"event_category", "event_action"}, roEventMetrics},
				{[]string{"event_label"}, []string{"event_category", "event_action", "event_label"}, roEventMetrics},
				{[]string{"event_action", "event_category"}, []string{"event_category", "event_action", "event_label"}, roEventMetrics},
				{[]string{"event_label", "event_category", "event_action"}, []string{"event_category", "event_action", "event_label"}, roEventMetrics},
				{[]string{"reason"}, []string{"reason"}, []string{"hits"}},
			}
			ds := roPick(rng, dimSets)
			q.dims, cols, metrics = ds.dims, ds.cols, ds.metrics
		}
	}
	if q.metrics == nil && rng.IntN(2) == 0 {
		q.metrics = roSubset(rng, metrics, 6)
	}
	if len(cols) > 0 && (q.report == "overview" && rng.IntN(3) > 0 || rng.IntN(100) < 45) {
		q.filters = append(q.filters, d.randomFilter(rng, cols))
		if rng.IntN(4) == 0 {
			q.filters = append(q.filters, d.randomFilter(rng, cols))
		}
	}
	if q.family == "behavior" && q.report == "overview" && len(q.filters) > 0 && q.metrics == nil && !slices.Contains(cols, "page") {
		q.metrics = roSubset(rng, metrics, 4)
	}
	usesPath := q.report == "page_paths" || slices.Contains(q.dims, "page_path")
	for _, f := range q.filters {
		for _, ors := range f {
			for _, c := range ors {
				usesPath = usesPath || c.dim == "page_path"
			}
		}
	}
	if usesPath && rng.IntN(3) > 0 {
		q.path = roPick(rng, []string{"/", "/blog/", "/docs", "/docs/api/", "/nothing/", "/café/", "/caf%c3%a9"})
	}

	grans := []string{"", "", "", "day", "week", "month"}
	if hourOK && (q.metrics == nil || !slices.ContainsFunc(q.metrics, func(m string) bool { return !slices.Contains(roSessionMetrics, m) })) {
		grans = append(grans, "hour", "hour", "hour")
	}
	q.gran = roPick(rng, grans)
	days := int(d.today.Sub(d.first).Hours()/24) + 1
	if q.gran == "hour" && rng.IntN(2) == 0 {
		// Around the daylight-saving change.
		q.from = d.dst.AddDate(0, 0, -rng.IntN(3))
		q.to = d.dst.AddDate(0, 0, rng.IntN(3))
	} else if rng.IntN(5) == 0 {
		q.preset = roPick(rng, roPresets)
		if q.gran == "hour" && q.preset == "last_90_days" {
			q.preset = "last_28_days"
		}
	} else {
		q.from = d.first.AddDate(0, 0, rng.IntN(days+8)-6)
		q.to = q.from.AddDate(0, 0, rng.IntN(45))
	}
	q.compare = rng.IntN(10) < 3

	// Sort.
	if rng.IntN(5) < 2 {
		x := d.plan(q)
		fields := append(slices.Clone(x.dims), x.metrics...)
		if q.gran != "" {
			fields = append(fields, "period")
		}
		for _, f := range roSubset(rng, fields, 2) {
			if rng.IntN(2) == 0 {
				f = "-" + f
			}
			q.sort = append(q.sort, f)
		}
	}
	if rng.IntN(5) < 2 {
		q.limit = 1 + rng.IntN(10)
	}
	if rng.IntN(5) < 2 {
		q.offset = rng.IntN(12)
	}
	if rng.IntN(4) == 0 {
		q.csv = true
		q.accept = rng.IntN(3) == 0
	}
	return q
}

// ---------------------------------------------------------------------
// The test

type roScenario struct {
	name    string
	seed    uint64
	zone    string
	now     time.Time // UTC
	dst     string    // the day of the daylight-saving change
	queries int
	tweak   func(*envOptions)
}

var roScenarios = []roScenario{
	{name: "new_york_spring", seed: 11, zone: "America/New_York", now: time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), dst: "2026-03-08", queries: 180},
	{name: "sydney_autumn", seed: 12, zone: "Australia/Sydney", now: time.Date(2026, 4, 16, 4, 20, 0, 0, time.UTC), dst: "2026-04-05", queries: 180,
		tweak: func(o *envOptions) { o.engine.DayCacheBytes = 0 }},
	{name: "berlin_spring", seed: 13, zone: "Europe/Berlin", now: time.Date(2026, 4, 8, 13, 20, 0, 0, time.UTC), dst: "2026-03-29", queries: 180},
	{name: "result_cache_on", seed: 15, zone: "America/New_York", now: time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), dst: "2026-03-08", queries: 60,
		tweak: func(o *envOptions) { o.engine.CacheTTL, o.engine.FinalCacheTTL = time.Hour, time.Hour }},
	{name: "sydney_new_year", seed: 16, zone: "Australia/Sydney", now: time.Date(2026, 1, 12, 2, 45, 0, 0, time.UTC), dst: "2025-12-31", queries: 100},
	{name: "havana_spring", seed: 17, zone: "America/Havana", now: time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), dst: "2026-03-08", queries: 120},
	{name: "new_york_autumn", seed: 14, zone: "America/New_York", now: time.Date(2025, 11, 17, 16, 5, 0, 0, time.UTC), dst: "2025-11-02", queries: 120},
}

func roEnv(t *testing.T, d *roData, o envOptions) *env {
	t.Helper()
	srv := cqltest.Server(t)
	cfg := migratetest.Keyspace(t)
	session, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	property := gocql.MustRandomUUID()
	if err := reporttest.Write(context.Background(), session, property, d.rows()); err != nil {
		t.Fatalf("write rows: %v", err)
	}
	ds := &reporttest.Dataset{Property: property, Location: d.loc, Shards: d.shards, Now: d.now}
	return serve(t, ds, srv, cfg, o)
}

func roScenarioData(t *testing.T, sc roScenario) *roData {
	loc, err := time.LoadLocation(sc.zone)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := time.Parse(time.DateOnly, sc.dst)
	return roGenerate(sc.seed, loc, sc.now, 36, 450, 540, 3, dst)
}

// TestRollupOracle compares random queries of both families with the
// oracle.
func TestRollupOracle(t *testing.T) {
	for _, sc := range roScenarios {
		t.Run(sc.name, func(t *testing.T) {
			d := roScenarioData(t, sc)
			o := defaultOptions()
			if sc.tweak != nil {
				sc.tweak(&o)
			}
			e := roEnv(t, d, o)
			rng := rand.New(rand.NewPCG(sc.seed, 0x9e3779b9))
			c := &roChecker{t: t}
			for range sc.queries {
				c.check(e, d, d.randomQuery(rng))
			}
			c.report()
			t.Logf("%d sessions, %d rows; %d queries, %d values compared; %v", d.sessions, len(d.daily)+len(d.hourly), c.checked, c.compared, c.stats)
		})
	}
}

// roGetJSON asks q (as JSON) and decodes it.
func roGetJSON(t *testing.T, e *env, d *roData, q *roQuery) (*roGot, *roExpect) {
	t.Helper()
	x := d.expect(q)
	v := q.params()
	v.Del("format")
	status, body, _ := roFetch(e, q, v, false)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %s", q, status, body)
	}
	g, err := roDecodeJSON(body, x.dims, x.metrics, q.compare)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return g, x
}

func roRowKeys(rows []roGotRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.period+"|"+strings.Join(r.dims, "|"))
	}
	return out
}

// TestRollupOracleCases holds a minimal example of each mismatch class the
// oracle found (all fixed): a cached answer paged and labelled as its own
// request asks, an OR with page_path independent of its order, a day that
// has no midnight, an hour that occurs twice.
func TestRollupOracleCases(t *testing.T) {
	newYork, _ := time.LoadLocation("America/New_York")
	sydney, _ := time.LoadLocation("Australia/Sydney")
	small := func(loc *time.Location, now time.Time, dst string) *roData {
		day, _ := time.Parse(time.DateOnly, dst)
		return roGenerate(7, loc, now, 10, 60, 0, 2, day)
	}

	t.Run("cached result keeps its own page", func(t *testing.T) {
		d := small(newYork, time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), "2026-03-15")
		o := defaultOptions()
		o.engine.CacheTTL, o.engine.FinalCacheTTL = 5*time.Second, 5*time.Minute // the production defaults
		e := roEnv(t, d, o)
		q := &roQuery{family: "acquisition", report: "channel", from: d.first, to: d.today.AddDate(0, 0, -1),
			metrics: []string{"sessions"}, sort: []string{"channel"}, limit: 2, offset: 0}
		x := d.expect(q)
		var want []string
		for _, r := range x.rows {
			want = append(want, "|"+r.dims[0])
		}
		slices.Sort(want)
		if len(want) < 4 {
			t.Fatalf("only %d channels", len(want))
		}
		first, _ := roGetJSON(t, e, d, q)
		if got := roRowKeys(first.rows); !slices.Equal(got, want[:2]) {
			t.Fatalf("first page %q, want %q", got, want[:2])
		}
		q.offset = 2
		second, _ := roGetJSON(t, e, d, q)
		if got := roRowKeys(second.rows); !slices.Equal(got, want[2:4]) || second.offset != 2 {
			t.Errorf("second page %q (offset %d), want %q (offset 2)", got, second.offset, want[2:4])
		}
	})

	t.Run("cached result keeps its own preset", func(t *testing.T) {
		d := small(newYork, time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), "2026-03-15")
		o := defaultOptions()
		o.engine.CacheTTL, o.engine.FinalCacheTTL = 5*time.Second, 5*time.Minute
		e := roEnv(t, d, o)
		preset := &roQuery{family: "acquisition", report: "overview", preset: "last_7_days", metrics: []string{"sessions"}, limit: -1, offset: -1}
		from, to := roPreset("last_7_days", d.today)
		dates := &roQuery{family: "acquisition", report: "overview", from: from, to: to, metrics: []string{"sessions"}, limit: -1, offset: -1}
		a, _ := roGetJSON(t, e, d, preset)
		b, _ := roGetJSON(t, e, d, dates)
		if a.preset != "last_7_days" {
			t.Fatalf("preset query echoes %q", a.preset)
		}
		if b.preset != "" {
			t.Errorf("from=%s&to=%s echoes preset %q, want none", roFmt(from), roFmt(to), b.preset)
		}
	})

	t.Run("an OR with page_path does not depend on its order", func(t *testing.T) {
		d := small(newYork, time.Date(2026, 3, 20, 19, 20, 0, 0, time.UTC), "2026-03-15")
		e := roEnv(t, d, defaultOptions())
		page := roCond{dim: "page", op: "==", val: "/pricing"}
		drill := roCond{dim: "page_path", op: "==", val: "/blog/launch"}
		ask := func(ors ...roCond) []string {
			q := &roQuery{family: "behavior", report: "pages", from: d.first, to: d.today, path: "/blog/",
				metrics: []string{"pageviews"}, sort: []string{"page"}, filters: [][][]roCond{{ors}}, limit: -1, offset: -1}
			g, _ := roGetJSON(t, e, d, q)
			return roRowKeys(g.rows)
		}
		ab, ba := ask(page, drill), ask(drill, page)
		if !slices.Equal(ab, ba) || !slices.ContainsFunc(ab, func(k string) bool { return strings.HasSuffix(k, "/pricing") }) {
			t.Errorf("filter=page==/pricing,page_path==/blog/launch (path=/blog/) gives %q; the other order gives %q; want the same, with /pricing", ab, ba)
		}
	})

	t.Run("a day without midnight begins at 01:00", func(t *testing.T) {
		havana, _ := time.LoadLocation("America/Havana")
		// 23:30 on 2026-03-07 in Havana; 2026-03-08 begins at 05:00Z (01:00-04:00).
		d := small(havana, time.Date(2026, 3, 8, 4, 30, 0, 0, time.UTC), "2026-03-07")
		e := roEnv(t, d, defaultOptions())
		from, _ := time.Parse(time.DateOnly, "2026-03-06")
		q := &roQuery{family: "acquisition", report: "overview", from: from, to: from.AddDate(0, 0, 3), gran: "day", metrics: []string{"sessions"}, limit: -1, offset: -1}
		g, x := roGetJSON(t, e, d, q)
		if len(g.rows) != len(x.buckets) {
			t.Fatalf("%d periods, want %d (2026-03-06 and 2026-03-07)", len(g.rows), len(x.buckets))
		}
		for i, r := range g.rows {
			if r.period != x.buckets[i].label || r.start != x.buckets[i].start {
				t.Errorf("period %s starting %s, want %s starting %s", r.period, r.start, x.buckets[i].label, x.buckets[i].start)
			}
		}
	})

	t.Run("an hour the clock shortens is a period", func(t *testing.T) {
		chatham, _ := time.LoadLocation("Pacific/Chatham")
		// 2026-09-27: 02:45 +12:45 is followed by 03:45 +13:45.
		d := small(chatham, time.Date(2026, 10, 2, 4, 20, 0, 0, time.UTC), "2026-09-27")
		e := roEnv(t, d, defaultOptions())
		day, _ := time.Parse(time.DateOnly, "2026-09-27")
		q := &roQuery{family: "acquisition", report: "overview", from: day, to: day, gran: "hour", metrics: []string{"sessions"}, limit: -1, offset: -1}
		g, x := roGetJSON(t, e, d, q)
		if len(g.rows) != 24 || len(x.buckets) != 24 || x.buckets[3].start != "2026-09-27T03:45:00+13:45" {
			t.Fatalf("%d periods served, %d expected, the fourth starting %s; want 24, T03 from 03:45", len(g.rows), len(x.buckets), x.buckets[3].start)
		}
		for i, r := range g.rows {
			if r.period != x.buckets[i].label || r.start != x.buckets[i].start {
				t.Errorf("period %s starting %s, want %s starting %s", r.period, r.start, x.buckets[i].label, x.buckets[i].start)
			}
		}
	})

	t.Run("a repeated hour's period starts at its first occurrence", func(t *testing.T) {
		d := small(sydney, time.Date(2026, 4, 8, 4, 20, 0, 0, time.UTC), "2026-04-05")
		e := roEnv(t, d, defaultOptions())
		day, _ := time.Parse(time.DateOnly, "2026-04-05")
		q := &roQuery{family: "acquisition", report: "overview", from: day, to: day, gran: "hour", metrics: []string{"sessions"}, limit: -1, offset: -1}
		g, x := roGetJSON(t, e, d, q)
		if len(g.rows) != 24 || len(x.buckets) != 24 {
			t.Fatalf("%d periods served, %d expected; want 24 (hour 02 twice, one period)", len(g.rows), len(x.buckets))
		}
		for i, r := range g.rows {
			if r.period != x.buckets[i].label {
				t.Fatalf("period %d is %s, want %s", i, r.period, x.buckets[i].label)
			}
		}
		for i, r := range g.rows {
			if r.start != x.buckets[i].start {
				t.Errorf("%s starts %s, want %s", r.period, r.start, x.buckets[i].start)
			}
		}
	})
}
