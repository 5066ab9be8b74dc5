package simulate

import (
	"cmp"
	"sort"
	"time"

	"github.com/acme/analytics/pkg/rollup"
)

// Metrics are the expected values of one report row. Durations are in
// milliseconds of the plan's clock; the hits' times reach collection as a
// queue time, so compare them with a small tolerance per session.
type Metrics struct {
	Sessions, Bounces, Engaged, NewUsers, Pageviews, Events, Conversions int64
	ConversionValue                                                      float64
	DurationMS                                                           int64
	UniquePageviews, Entrances, Exits                                    int64
	TimeOnPageMS, TimeOnPageViews                                        int64
	UniqueEvents                                                         int64
	EventValue                                                           float64
	Users                                                                map[string]bool
}

// Expectation is what every report must say for the plan's traffic, by
// property-local day ("2006-01-02"), report and dimension value as stored;
// the report names and the encoding of a value of several parts
// (rollup.JoinDimension) are those of pkg/rollup, and the source and
// medium reports, which the report services add up from source_medium's
// rows, are there too.
type Expectation struct {
	loc  *time.Location
	Days map[string]map[string]map[string]*Metrics
	// Filtered counts the hits each exclusion reason must have filtered,
	// by day and reason.
	Filtered map[string]map[string]int64
	// DeadLetters counts the hits collection must reject, by reason class.
	DeadLetters map[string]int64
	// Users are all the users of the plan (not bots or internal traffic).
	Users map[string]bool
	// Cases counts the expected sessions that exercise a definition easy
	// to get wrong, by the Case names, so a run can say what it covered.
	Cases map[string]int
}

// What some of the plan's sessions exercise (Expectation.Cases).
const (
	CaseEventFirst             = "first hit an event, then the landing pageview"
	CaseNonInteractionBounce   = "one pageview and only non-interaction events: a bounce"
	CaseNonInteractionAndClick = "one pageview, non-interaction and interaction events: no bounce"
	CaseGapAtTimeout           = "a gap of exactly the timeout inside the session"
	CaseGapOverTimeout         = "started by a hit a second past the timeout"
)

func newExpectation(loc *time.Location) *Expectation {
	return &Expectation{loc: loc, Days: map[string]map[string]map[string]*Metrics{},
		Filtered: map[string]map[string]int64{}, DeadLetters: map[string]int64{}, Users: map[string]bool{}, Cases: map[string]int{}}
}

func (e *Expectation) day(t time.Time) string { return t.In(e.loc).Format(time.DateOnly) }

// Row returns the expected row (created empty when absent).
func (e *Expectation) Row(day, report, dim string) *Metrics {
	d := e.Days[day]
	if d == nil {
		d = map[string]map[string]*Metrics{}
		e.Days[day] = d
	}
	r := d[report]
	if r == nil {
		r = map[string]*Metrics{}
		d[report] = r
	}
	m := r[dim]
	if m == nil {
		m = &Metrics{Users: map[string]bool{}}
		r[dim] = m
	}
	return m
}

// SortedDays returns the days with expectations, oldest first.
func (e *Expectation) SortedDays() []string {
	var out []string
	for d := range e.Days {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (e *Expectation) filtered(hits []planned, reason string) {
	for _, h := range hits {
		d := e.day(h.t)
		if e.Filtered[d] == nil {
			e.Filtered[d] = map[string]int64{}
		}
		e.Filtered[d][reason]++
	}
}

// visit is one expected session.
type visit struct {
	client, device, browser           string
	src                               source
	hits                              []planned
	first                             bool
	source, medium, campaign, channel string
	referrer                          string
}

// sessions cuts a planned visit into the sessions the definitions make of
// it, records each, and returns whether the visitor's next session is
// still its first (never, once one is recorded).
//
// The planned visit is one session by design, except where the plan put a
// boundary in it: the property's local midnight, a pause of more than the
// session timeout, and an ad click (gclid) in the middle of a visit. After
// such a boundary the new session's attribution comes from its own first
// hit: an internal page reached from the site itself is Direct; the ad
// click is google / cpc, Paid Search.
func (e *Expectation) sessions(client, device, browser string, src source, hits []planned, first bool) bool {
	cur := visit{client: client, device: device, browser: browser, first: first,
		source: src.src, medium: src.medium, campaign: src.campaign, channel: src.channel, referrer: src.referrerDimension}
	direct := visit{client: client, device: device, browser: browser, source: "(direct)", medium: "(none)", campaign: "(direct)", channel: "Direct", referrer: "(none)"}
	for i, h := range hits {
		if i > 0 && len(cur.hits) > 0 {
			prev := cur.hits[len(cur.hits)-1]
			gap := h.t.Sub(prev.t)
			// The ad click comes first: when it is also the first hit after
			// midnight, the new session is still its own, Paid Search.
			switch {
			case h.campaign == "gclid":
				e.record(cur)
				cur = visit{client: client, device: device, browser: browser, source: "google", medium: "cpc", campaign: "(not set)", channel: "Paid Search", referrer: "(none)"}
			case (e.day(h.t) != e.day(prev.t) || gap > SessionTimeout) && h.typ == "engagement":
				continue // an engagement ping outside every session is ignored
			case e.day(h.t) != e.day(prev.t):
				e.record(cur)
				cur = direct
			case gap > SessionTimeout:
				e.record(cur)
				cur = direct
				e.Cases[CaseGapOverTimeout]++
			case gap == SessionTimeout:
				e.Cases[CaseGapAtTimeout]++ // still the same session
			}
		}
		cur.hits = append(cur.hits, h)
	}
	e.record(cur)
	return false
}

// record adds one session to every report it belongs to.
func (e *Expectation) record(v visit) {
	if len(v.hits) == 0 {
		return
	}
	start, end := v.hits[0].t, v.hits[len(v.hits)-1].t
	day := e.day(start)
	e.Users[v.client] = true
	var pvs []planned
	interaction, nonInteraction := false, false
	goals := map[string]float64{}
	for _, h := range v.hits {
		switch h.typ {
		case "pageview":
			pvs = append(pvs, h)
			if h.path == GoalPurchasePath {
				if _, ok := goals["purchase"]; !ok {
					goals["purchase"] = GoalPurchaseValue
				}
			}
		case "event":
			if h.nonInteraction {
				nonInteraction = true
			} else {
				interaction = true
			}
			if h.cat == GoalSignupCat && h.act == GoalSignupAction {
				if _, ok := goals["signup"]; !ok {
					goals["signup"] = h.value
				}
			}
		}
	}
	var conv float64
	for _, v := range goals {
		conv += v
	}
	s := Metrics{Sessions: 1, Pageviews: int64(len(pvs)), DurationMS: end.Sub(start).Milliseconds(),
		Conversions: int64(len(goals)), ConversionValue: conv}
	for _, h := range v.hits {
		if h.typ == "event" {
			s.Events++
		}
	}
	if len(pvs) == 1 && !interaction {
		s.Bounces = 1
	}
	switch {
	case len(pvs) > 0 && v.hits[0].typ == "event":
		e.Cases[CaseEventFirst]++
	case len(pvs) == 1 && nonInteraction && interaction:
		e.Cases[CaseNonInteractionAndClick]++
	case len(pvs) == 1 && nonInteraction:
		e.Cases[CaseNonInteractionBounce]++
	}
	if len(pvs) >= 2 || len(goals) > 0 || end.Sub(start) > 10*time.Second {
		s.Engaged = 1
	}
	userType := "returning"
	if v.first {
		s.NewUsers = 1
		userType = "new"
	}
	landing, exit := "(not set)", "(not set)"
	if len(pvs) > 0 {
		landing, exit = pvs[0].path, pvs[len(pvs)-1].path
	}
	for _, d := range [][2]string{
		// source and medium are reports the API serves (read from the
		// source_medium rows since 2026-12-06), not rows processing stores.
		{"total", ""}, {"channel", v.channel}, {"source", v.source}, {"medium", v.medium},
		{"source_medium", rollup.JoinDimension(v.source, v.medium)}, {"campaign", v.campaign}, {"referrer", v.referrer},
		{"landing_page", landing}, {"device", v.device}, {"browser", v.browser}, {"user_type", userType},
		{"country", "(not set)"}, // the plan's IPs are documentation ranges, in no country
	} {
		m := e.Row(day, d[0], d[1])
		m.add(s)
		m.Users[v.client] = true
	}
	viewed := map[string]bool{}
	for i, pv := range pvs {
		m := e.Row(day, "page", pv.path)
		m.Pageviews++
		if !viewed[pv.path] {
			viewed[pv.path] = true
			m.UniquePageviews++
		}
		switch {
		case i+1 < len(pvs):
			m.TimeOnPageMS += pvs[i+1].t.Sub(pv.t).Milliseconds()
			m.TimeOnPageViews++
		case end.After(pv.t):
			m.TimeOnPageMS += end.Sub(pv.t).Milliseconds()
			m.TimeOnPageViews++
		}
	}
	if len(pvs) > 0 {
		l := e.Row(day, "page", landing)
		l.Entrances++
		l.Sessions++
		l.Bounces += s.Bounces
		e.Row(day, "page", exit).Exits++
	}
	seen := map[string]bool{}
	for _, h := range v.hits {
		if h.typ != "event" {
			continue
		}
		cat, label := cmp.Or(h.cat, "(not set)"), cmp.Or(h.label, "(not set)")
		for _, k := range [][2]string{{"event_category", cat}, {"event_action", rollup.JoinDimension(cat, h.act)}, {"event", rollup.JoinDimension(cat, h.act, label)}} {
			m := e.Row(day, k[0], k[1])
			m.Events++
			m.EventValue += h.value
			if !seen[k[0]+k[1]] {
				seen[k[0]+k[1]] = true
				m.UniqueEvents++
			}
		}
	}
}

func (m *Metrics) add(o Metrics) {
	m.Sessions += o.Sessions
	m.Bounces += o.Bounces
	m.Engaged += o.Engaged
	m.NewUsers += o.NewUsers
	m.Pageviews += o.Pageviews
	m.Events += o.Events
	m.Conversions += o.Conversions
	m.ConversionValue += o.ConversionValue
	m.DurationMS += o.DurationMS
}
