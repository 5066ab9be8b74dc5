package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
)

// TestAcceptanceBlackBoxCoverage audits what the other black-box tests read
// over one or two days only: ranges of many days, where users and new users
// are distinct counts merged across days (and across the whole final ISO
// weeks report-svc merges from cached days), averages (pages per session,
// session duration, time on page, bounce and exit rates) come from the
// range's summed parts, and a user back after days is returning. It reads
// the reports a merchant reads daily (overview, user_type, device, browser,
// os, country, landing pages, pages, exit pages) over presets and from/to
// ranges of up to 15 days, as series by day, week and hour, and compared
// with the previous period, and compares every number exactly with a
// calculator of its own written from docs/processing.md and
// docs/reports.md (users are exact below 512 distinct).
//
// Collection takes hits at most 4 hours old, so the traffic of the days
// before yesterday is put in the hits topic as collection would have
// queued it then (seedHits, with the enrichment collection gives the two
// user agents used), and only yesterday's last hour and today's traffic
// come through the gateway, as Measurement API requests with the visitor's
// user agent and country, whose enrichment the test thus also checks.
// The visitors are random with a fixed seed: many come back over days, on
// other devices some days, and into yesterday and today.
func TestAcceptanceBlackBoxCoverage(t *testing.T) {
	stack, cfg := startStack(t)
	c := &mpaClient{t: t, ctx: context.Background(), http: &http.Client{Timeout: 30 * time.Second}, gw: strings.TrimRight(stack.GatewayURL(), "/")}
	zone, loc, midnight := zoneWithMidnightAgo(t)
	day := func(n int) string { return midnight.In(loc).AddDate(0, 0, n).Format(time.DateOnly) }

	tok := c.signUp("bb-coverage@shop.example")
	p := c.createProperty(tok, map[string]any{"name": "Coverage", "hostnames": []string{"shop.example"}, "time_zone": zone})
	var sec struct {
		Secret string `json:"secret"`
	}
	c.do("POST", "/v1/properties/"+p.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec)

	hits := cvTraffic(midnight, loc)
	var seeded []rpHit
	for _, h := range hits {
		if !h.live {
			seeded = append(seeded, h.seed())
		}
	}
	// The past days first, processed before the visitors come back.
	seedHits(t, cfg, p, seeded)
	waitForProcessing(t, cfg, 90*time.Second)
	cvSendLive(t, c, p.TrackingID, sec.Secret, hits)
	waitForProcessing(t, cfg, 90*time.Second)

	calc := cvCalculate(hits, loc)
	all := [2]string{day(-14), day(0)}
	want := calc.acq(all[0], all[1], cvTotal)[""]
	t.Logf("%d hits (%d seeded), %d sessions, over %s..%s: %v", len(hits), len(seeded), len(calc.sessions), all[0], all[1], want)
	eventually.NoError(t, 60*time.Second, "every hit in the reports", func() error {
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {p.ID}, "from": {all[0]}, "to": {all[1]}, "metrics": {"sessions,pageviews,events"}})
		for _, m := range []string{"sessions", "pageviews", "events"} {
			if num(a.Totals[m]) != want[m] {
				return fmt.Errorf("totals %v, want %v", a.Totals, mpaPick(want, "sessions,pageviews,events"))
			}
		}
		return nil
	})

	ln := time.Now().In(loc)
	monday := ln.AddDate(0, 0, -((int(ln.Weekday()) + 6) % 7)).Format(time.DateOnly)
	lastMonday := ln.AddDate(0, 0, -((int(ln.Weekday())+6)%7)-7).Format(time.DateOnly)
	lastSunday := ln.AddDate(0, 0, -((int(ln.Weekday())+6)%7)-1).Format(time.DateOnly)
	for _, r := range []struct {
		q        url.Values
		from, to string
	}{
		{url.Values{"from": {all[0]}, "to": {all[1]}}, all[0], all[1]},
		{url.Values{"from": {day(-14)}, "to": {day(-2)}}, day(-14), day(-2)}, // final days only, a whole ISO week among them
		{url.Values{"from": {day(-4)}, "to": {day(0)}}, day(-4), day(0)},
		{url.Values{"range": {"last_7_days"}}, day(-7), day(-1)},
		{url.Values{"range": {"last_14_days"}}, day(-14), day(-1)},
		{url.Values{"range": {"last_28_days"}}, day(-28), day(-1)},
		{url.Values{"range": {"last_week"}}, lastMonday, lastSunday}, // a whole final ISO week
		{url.Values{"range": {"this_week"}}, monday, day(0)},
	} {
		cvCheckRange(t, c, tok, mpaWith(r.q, "property_id", p.ID), r.from, r.to, calc)
	}
	cvCheckFilters(t, c, tok, url.Values{"property_id": {p.ID}, "from": {all[0]}, "to": {all[1]}}, all[0], all[1], calc)
	cvCheckSeries(t, c, tok, p.ID, all, calc, loc)
	cvCheckComparison(t, c, tok, p.ID, day, calc)
}

// cvProfile is a visitor's context as sent and as the reports must show it.
type cvProfile struct {
	ua, country              string // the Measurement API's user_agent and user_location.country_id
	device, browser, os, geo string
}

// The user agents' device, browser and OS are those docs/collection.md's
// parser gives them (as TestAcceptanceBlackBoxRules reads them); the
// country is user_location's, upper-cased. The third, a server sending
// neither, is not set in any.
var cvProfiles = []cvProfile{
	{ua: drChrome, country: "de", device: "desktop", browser: "Chrome", os: "Windows", geo: "DE"},
	{ua: drIPhone, country: "FR", device: "mobile", browser: "Safari", os: "iOS", geo: "FR"},
	{device: "(not set)", browser: "(not set)", os: "(not set)", geo: "(not set)"},
}

// cvHit is a hit of the traffic: a pageview, an (interaction) event or an
// engagement ping; live ones are sent through the gateway, the others
// seeded.
type cvHit struct {
	cid, kind, page string
	t               time.Time
	prof            int
	live            bool
}

// seed is h as collection would have queued it.
func (h cvHit) seed() rpHit {
	pr := cvProfiles[h.prof]
	var r rpHit
	if h.kind == "pageview" {
		r = rpPV(h.cid, h.t, h.page, "", pr.ua, "192.0.2.0")
	} else {
		r = rpEv(h.cid, h.t, "shop", "add_to_cart", 1, pr.ua, "192.0.2.0")
	}
	r.device, r.browser, r.os, r.country = pr.device, pr.browser, pr.os, pr.geo
	return r
}

// cvTraffic is 40 visitors over the last 15 property-local days: visits
// on random days before yesterday (seeded), some a second time the same
// day after more than 30 minutes, with a device of their own most days;
// and visits in yesterday's last hour and today's first, through the
// gateway. A visit is one to four pageviews seconds to minutes apart, a
// single pageview sometimes followed by an event, or (live) a ping.
func cvTraffic(midnight time.Time, loc *time.Location) []cvHit {
	r := rand.New(rand.NewPCG(2026, 12))
	pages := []string{"/", "/shop", "/shop/shoes", "/blog/a", "/cart", "/about"}
	var hits []cvHit
	visit := func(cid string, at time.Time, prof int, live bool) time.Time {
		n := 1 + r.IntN(4)
		if r.IntN(10) < 4 {
			n = 1
		}
		for i := range n {
			if i > 0 {
				at = at.Add(time.Duration(5+r.IntN(240)) * time.Second)
			}
			hits = append(hits, cvHit{cid: cid, kind: "pageview", page: pages[r.IntN(len(pages))], t: at, prof: prof, live: live})
		}
		switch k := r.IntN(10); {
		case n == 1 && k < 3:
			at = at.Add(time.Duration(5+r.IntN(120)) * time.Second)
			hits = append(hits, cvHit{cid: cid, kind: "event", t: at, prof: prof, live: live})
		case n == 1 && k < 6 && live:
			at = at.Add(time.Duration(5+r.IntN(120)) * time.Second)
			hits = append(hits, cvHit{cid: cid, kind: "ping", t: at, prof: prof, live: live})
		}
		return at
	}
	for v := range 40 {
		cid := fmt.Sprintf("cv-%02d", v)
		prof := r.IntN(2)
		for n := -14; n <= -2; n++ {
			if r.IntN(10) >= 2 {
				continue
			}
			p := prof
			if r.IntN(10) == 0 {
				p = 1 - prof
			}
			start := time.Date(midnight.In(loc).Year(), midnight.In(loc).Month(), midnight.In(loc).Day()+n, 8, 0, 0, 0, loc).Add(time.Duration(r.IntN(600)) * time.Minute)
			end := visit(cid, start, p, false)
			if r.IntN(10) < 3 {
				visit(cid, end.Add(time.Duration(31+r.IntN(60))*time.Minute), p, false)
			}
		}
		p := prof
		if r.IntN(7) == 0 {
			p = 2
		}
		if r.IntN(20) < 7 { // yesterday, in its last 50 minutes
			visit(cid, midnight.Add(-50*time.Minute+time.Duration(r.IntN(1800))*time.Second), p, true)
		}
		if r.IntN(10) < 4 { // today, in its first 80 minutes
			visit(cid, midnight.Add(5*time.Minute+time.Duration(r.IntN(4500))*time.Second), p, true)
		}
	}
	// Across midnight: two sessions, yesterday's and today's.
	for _, d := range []time.Duration{-4 * time.Minute, -2 * time.Minute, 2 * time.Minute} {
		hits = append(hits, cvHit{cid: "cv-midnight", kind: "pageview", page: "/shop", t: midnight.Add(d), prof: 0, live: true})
	}
	return hits
}

// cvSendLive sends the live hits, a request per visitor and visit, as
// Measurement API events with their own times (queue times of up to four
// hours), the visitor's user agent and country.
func cvSendLive(t *testing.T, c *mpaClient, tid, secret string, hits []cvHit) {
	t.Helper()
	type key struct {
		cid  string
		prof int
	}
	reqs := map[key][]map[string]any{}
	var order []key
	for i, h := range hits {
		if !h.live {
			continue
		}
		params := map[string]any{"page_location": "https://shop.example" + h.page}
		name := "page_view"
		switch h.kind {
		case "event":
			name, params = "add_to_cart", map[string]any{"event_category": "shop", "value": 1}
		case "ping":
			name, params = "user_engagement", map[string]any{"engagement_time_msec": 5000}
		}
		k := key{h.cid, h.prof}
		if reqs[k] == nil {
			order = append(order, k)
		}
		reqs[k] = append(reqs[k], map[string]any{"name": name, "event_id": fmt.Sprintf("cv-%d", i), "timestamp_micros": h.t.UnixMicro(), "params": params})
	}
	for _, k := range order {
		pr := cvProfiles[k.prof]
		body := map[string]any{"client_id": k.cid, "events": reqs[k]}
		if pr.ua != "" {
			body["user_agent"] = pr.ua
		}
		if pr.country != "" {
			body["user_location"] = map[string]any{"country_id": pr.country}
		}
		if code, b := c.post("/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "python-requests/2.31", body); code != http.StatusNoContent {
			t.Errorf("mp/collect %s: %d %s", k.cid, code, b)
		}
	}
}

// The calculator, from docs/processing.md ("Sessions", "Users") and
// docs/reports.md ("Metrics").

type cvSession struct {
	cid, day   string
	hour       int
	start, end time.Time // first and last hit, pings included
	pageviews  []cvHit
	events     int
	prof       cvProfile
	first      bool // the user's first session
}

func (s *cvSession) bounce() bool { return len(s.pageviews) == 1 && s.events == 0 }
func (s *cvSession) engaged() bool {
	return s.end.Sub(s.start) > 10*time.Second || len(s.pageviews) >= 2
}

func (s *cvSession) landing() string {
	if len(s.pageviews) == 0 {
		return "(not set)"
	}
	return s.pageviews[0].page
}

type cvCalc struct{ sessions []*cvSession }

// cvCalculate sessionizes each visitor's hits in time order: a gap
// strictly over 30 minutes or another property-local date starts a
// session; a ping extends the session it falls in and starts none.
func cvCalculate(hits []cvHit, loc *time.Location) *cvCalc {
	by := map[string][]cvHit{}
	for _, h := range hits {
		by[h.cid] = append(by[h.cid], h)
	}
	calc := &cvCalc{}
	for _, hs := range by {
		sort.SliceStable(hs, func(i, j int) bool { return hs[i].t.Before(hs[j].t) })
		var cur *cvSession
		for _, h := range hs {
			d := h.t.In(loc).Format(time.DateOnly)
			split := cur == nil || h.t.Sub(cur.end) > 30*time.Minute || d != cur.day
			if h.kind == "ping" {
				if !split {
					cur.end = h.t
				}
				continue
			}
			if split {
				cur = &cvSession{cid: h.cid, day: d, hour: h.t.In(loc).Hour(), start: h.t, prof: cvProfiles[h.prof], first: cur == nil}
				calc.sessions = append(calc.sessions, cur)
			}
			cur.end = h.t
			if h.kind == "pageview" {
				cur.pageviews = append(cur.pageviews, h)
			} else {
				cur.events++
			}
		}
	}
	return calc
}

func (c *cvCalc) in(from, to string) []*cvSession {
	var out []*cvSession
	for _, s := range c.sessions {
		if s.day >= from && s.day <= to {
			out = append(out, s)
		}
	}
	return out
}

func cvTotal(*cvSession) string { return "" }

func cvUserType(s *cvSession) string {
	if s.first {
		return "new"
	}
	return "returning"
}

// acq is the session metrics of the range by key: users are distinct
// client IDs, new users those whose first session is in the range,
// averages and rates the range's sums divided.
func (c *cvCalc) acq(from, to string, key func(*cvSession) string) map[string]map[string]float64 {
	return cvAcq(c.in(from, to), key)
}

// cvAcq aggregates sessions by key with TestAcceptanceBlackBoxMP's
// aggregation of the session metrics, from this calculator's sessions.
func cvAcq(sessions []*cvSession, key func(*cvSession) string) map[string]map[string]float64 {
	of := map[*mpaSession]*cvSession{}
	var ms []*mpaSession
	for _, s := range sessions {
		m := &mpaSession{cid: s.cid, day: s.day, start: s.start, end: s.end, first: s.first,
			pageviews: len(s.pageviews), events: s.events, bounce: s.bounce(), engaged: s.engaged()}
		of[m] = s
		ms = append(ms, m)
	}
	return mpaAcqAgg(ms, func(m *mpaSession) string {
		if of[m] == nil {
			return "" // mpaAcqAgg's probe of an empty total
		}
		return key(of[m])
	})
}

// pages is the page metrics of the range by page, and their sum under "".
// Time on page runs to the session's next pageview, or for its last to its
// last hit when that is later; otherwise it is not measured.
func (c *cvCalc) pages(from, to string) (map[string]map[string]float64, map[string]float64) {
	out := map[string]map[string]float64{}
	sum := map[string]float64{}
	add := func(page, metric string, v float64) {
		if out[page] == nil {
			out[page] = map[string]float64{}
		}
		out[page][metric] += v
		sum[metric] += v
	}
	for _, s := range c.in(from, to) {
		seen := map[string]bool{}
		for i, pv := range s.pageviews {
			add(pv.page, "pageviews", 1)
			if !seen[pv.page] {
				seen[pv.page] = true
				add(pv.page, "unique_pageviews", 1)
			}
			next := s.end
			if i+1 < len(s.pageviews) {
				next = s.pageviews[i+1].t
			}
			if next.After(pv.t) {
				add(pv.page, "time", next.Sub(pv.t).Seconds())
				add(pv.page, "measured", 1)
			}
		}
		if len(s.pageviews) > 0 {
			add(s.landing(), "entrances", 1)
			add(s.pageviews[len(s.pageviews)-1].page, "exits", 1)
			if s.bounce() {
				add(s.landing(), "bounces", 1)
			}
		}
	}
	rates := func(m map[string]float64) {
		m["avg_time_on_page"] = cvRatio(m["time"], m["measured"])
		m["exit_rate"] = cvRatio(m["exits"], m["pageviews"])
		m["bounce_rate"] = cvRatio(m["bounces"], m["entrances"])
		for _, k := range []string{"pageviews", "unique_pageviews", "entrances", "exits", "bounces"} {
			m[k] += 0 // every metric, zeros included
		}
		delete(m, "time")
		delete(m, "measured")
	}
	for _, m := range out {
		rates(m)
	}
	rates(sum)
	return out, sum
}

// cvRatio is a rate or an average: 0 when its denominator is.
func cvRatio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

const (
	cvAcqMetrics  = "users,new_users,sessions,engaged_sessions,bounces,bounce_rate,engagement_rate,avg_session_duration,pages_per_session,pageviews,events,conversions,conversion_rate,goal_value"
	cvPageMetrics = "pageviews,unique_pageviews,avg_time_on_page,entrances,exits,exit_rate,bounces,bounce_rate"
)

// cvCheckRange compares the acquisition reports by user type, device,
// browser, OS, country and landing page, the overviews, and the pages,
// exit pages, landing pages and events of one range with the calculator.
func cvCheckRange(t *testing.T, c *mpaClient, tok string, q url.Values, from, to string, calc *cvCalc) {
	t.Helper()
	name := func(report string) string { return report + " " + q.Encode() }
	total := calc.acq(from, to, cvTotal)[""]
	a, _ := c.report(tok, "acquisition/overview", mpaWith(q, "metrics", cvAcqMetrics))
	mpaCompareTotals(t, name("acquisition/overview"), a.Totals, mpaPick(total, cvAcqMetrics))
	for _, r := range []struct {
		report string
		key    func(*cvSession) string
	}{
		{"user_type", cvUserType},
		{"device", func(s *cvSession) string { return s.prof.device }},
		{"browser", func(s *cvSession) string { return s.prof.browser }},
		{"os", func(s *cvSession) string { return s.prof.os }},
		{"country", func(s *cvSession) string { return s.prof.geo }},
		{"landing_page", (*cvSession).landing},
	} {
		a, _ := c.report(tok, "acquisition/"+r.report, mpaWith(q, "metrics", cvAcqMetrics, "limit", "10000"))
		mpaCompare(t, name("acquisition/"+r.report), a.Rows, []string{r.report}, calc.acq(from, to, r.key))
		mpaCompareTotals(t, name("acquisition/"+r.report), a.Totals, mpaPick(total, cvAcqMetrics))
	}
	a, _ = c.report(tok, "behavior/landing_pages", mpaWith(q, "metrics", cvAcqMetrics))
	mpaCompare(t, name("behavior/landing_pages"), a.Rows, []string{"landing_page"}, calc.acq(from, to, (*cvSession).landing))
	mpaCompareTotals(t, name("behavior/landing_pages"), a.Totals, mpaPick(total, cvAcqMetrics))

	pages, sum := calc.pages(from, to)
	a, _ = c.report(tok, "behavior/overview", mpaWith(q, "metrics", cvPageMetrics))
	mpaCompareTotals(t, name("behavior/overview"), a.Totals, mpaPick(sum, cvPageMetrics))
	a, _ = c.report(tok, "behavior/pages", mpaWith(q, "metrics", cvPageMetrics))
	mpaCompare(t, name("behavior/pages"), a.Rows, []string{"page"}, pages)
	mpaCompareTotals(t, name("behavior/pages"), a.Totals, mpaPick(sum, cvPageMetrics))
	exits := map[string]map[string]float64{}
	for k, m := range pages {
		if m["exits"] > 0 {
			exits[k] = m
		}
	}
	a, _ = c.report(tok, "behavior/exit_pages", mpaWith(q, "metrics", "exits,pageviews,exit_rate"))
	mpaCompare(t, name("behavior/exit_pages"), a.Rows, []string{"page"}, exits)
	mpaCompareTotals(t, name("behavior/exit_pages"), a.Totals, mpaPick(sum, "exits,pageviews,exit_rate"))

	// Every event is category shop, action add_to_cart, no label, value 1.
	events := map[string]map[string]float64{}
	for _, s := range calc.in(from, to) {
		if s.events == 0 {
			continue
		}
		m := events["shop|add_to_cart|(not set)"]
		if m == nil {
			m = map[string]float64{}
			events["shop|add_to_cart|(not set)"] = m
		}
		m["total_events"] += float64(s.events)
		m["unique_events"]++
		m["event_value"] += float64(s.events)
		m["avg_event_value"] = 1
	}
	a, _ = c.report(tok, "behavior/events", mpaWith(q, "metrics", "total_events,unique_events,event_value,avg_event_value"))
	mpaCompare(t, name("behavior/events"), a.Rows, []string{"event_category", "event_action", "event_label"}, events)
}

// cvCheckFilters compares filtered reports over a range: a filtered
// session report's totals merge the users of the matching rows (a user on
// a phone some days and a desktop others is one), the returning user
// type's rows alone, and a page filter's rows and totals.
func cvCheckFilters(t *testing.T, c *mpaClient, tok string, q url.Values, from, to string, calc *cvCalc) {
	t.Helper()
	var sel []*cvSession
	for _, s := range calc.in(from, to) {
		if s.prof.device == "desktop" || s.prof.device == "mobile" {
			sel = append(sel, s)
		}
	}
	a, _ := c.report(tok, "acquisition/device", mpaWith(q, "metrics", cvAcqMetrics, "filter", "device[]desktop|mobile"))
	mpaCompare(t, "device filter device[]desktop|mobile", a.Rows, []string{"device"}, cvAcq(sel, func(s *cvSession) string { return s.prof.device }))
	mpaCompareTotals(t, "device filter device[]desktop|mobile", a.Totals, mpaPick(cvAcq(sel, cvTotal)[""], cvAcqMetrics))

	returning := calc.acq(from, to, cvUserType)["returning"]
	a, _ = c.report(tok, "acquisition/user_type", mpaWith(q, "metrics", cvAcqMetrics, "filter", "user_type==returning"))
	mpaCompare(t, "user_type filter ==returning", a.Rows, []string{"user_type"}, map[string]map[string]float64{"returning": returning})
	mpaCompareTotals(t, "user_type filter ==returning", a.Totals, mpaPick(returning, cvAcqMetrics))

	pages, _ := calc.pages(from, to)
	want := map[string]map[string]float64{}
	for k, m := range pages {
		if strings.HasPrefix(k, "/shop") {
			want[k] = m
		}
	}
	a, _ = c.report(tok, "behavior/pages", mpaWith(q, "metrics", cvPageMetrics, "filter", "page=~^/shop"))
	mpaCompare(t, "pages filter page=~^/shop", a.Rows, []string{"page"}, want)
	sum := map[string]float64{}
	for _, m := range want {
		for _, k := range []string{"pageviews", "unique_pageviews", "entrances", "exits", "bounces"} {
			sum[k] += m[k]
		}
	}
	mpaCompareTotals(t, "pages filter page=~^/shop", a.Totals, sum)
}

// cvCheckSeries compares the overviews by day, ISO week, month and hour
// over the 15 days, and users by type and week.
func cvCheckSeries(t *testing.T, c *mpaClient, tok, pid string, rng [2]string, calc *cvCalc, loc *time.Location) {
	t.Helper()
	q := url.Values{"property_id": {pid}, "from": {rng[0]}, "to": {rng[1]}, "limit": {"10000"}}
	first, _ := time.ParseInLocation(time.DateOnly, rng[0], loc)
	var days []string
	weeks := map[string][2]string{} // ISO week: its first and last day in the range
	var weekLabels []string
	for d := first; d.Format(time.DateOnly) <= rng[1]; d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		days = append(days, day)
		y, w := d.ISOWeek()
		l := fmt.Sprintf("%d-W%02d", y, w)
		if _, ok := weeks[l]; !ok {
			weekLabels = append(weekLabels, l)
			weeks[l] = [2]string{day, day}
		}
		weeks[l] = [2]string{weeks[l][0], day}
	}
	const acqSeries = "users,new_users,sessions,bounce_rate,avg_session_duration,pages_per_session,engaged_sessions"
	var byDay, byWeek []map[string]float64
	var pagesByDay []map[string]float64
	for _, d := range days {
		byDay = append(byDay, mpaPick(cvOrZero(calc.acq(d, d, cvTotal)[""]), acqSeries))
		_, sum := calc.pages(d, d)
		pagesByDay = append(pagesByDay, sum)
	}
	for _, l := range weekLabels {
		byWeek = append(byWeek, mpaPick(cvOrZero(calc.acq(weeks[l][0], weeks[l][1], cvTotal)[""]), acqSeries))
	}
	// Calendar months, clipped to the range.
	var monthLabels []string
	var byMonth []map[string]float64
	for i := 0; i < len(days); {
		j := i
		for j+1 < len(days) && days[j+1][:7] == days[i][:7] {
			j++
		}
		monthLabels = append(monthLabels, days[i][:7])
		byMonth = append(byMonth, mpaPick(cvOrZero(calc.acq(days[i], days[j], cvTotal)[""]), acqSeries))
		i = j + 1
	}
	a, _ := c.report(tok, "acquisition/overview", mpaWith(q, "granularity", "month", "metrics", acqSeries))
	mpaCompareSeries(t, "acquisition/overview by month", a.Rows, monthLabels, byMonth, acqSeries)
	a, _ = c.report(tok, "acquisition/overview", mpaWith(q, "granularity", "day", "metrics", acqSeries))
	mpaCompareSeries(t, "acquisition/overview by day", a.Rows, days, byDay, acqSeries)
	a, _ = c.report(tok, "acquisition/overview", mpaWith(q, "granularity", "week", "metrics", acqSeries))
	mpaCompareSeries(t, "acquisition/overview by week", a.Rows, weekLabels, byWeek, acqSeries)
	const pageSeries = "pageviews,unique_pageviews,avg_time_on_page,entrances,exits,bounce_rate"
	a, _ = c.report(tok, "behavior/overview", mpaWith(q, "granularity", "day", "metrics", pageSeries))
	mpaCompareSeries(t, "behavior/overview by day", a.Rows, days, pagesByDay, pageSeries)

	// Users by type and week: a row per week and type with data.
	want := map[string]map[string]float64{}
	for _, l := range weekLabels {
		for k, m := range calc.acq(weeks[l][0], weeks[l][1], cvUserType) {
			want[l+"|"+k] = m
		}
	}
	a, _ = c.report(tok, "acquisition/user_type", mpaWith(q, "granularity", "week", "metrics", "users,new_users,sessions,bounces,avg_session_duration"))
	mpaCompare(t, "acquisition/user_type by week", a.Rows, []string{"period", "user_type"}, want)

	// By hour of session start: every hour of the 15 days that has begun,
	// zeros included (the zone has no daylight-saving change).
	const hourSeries = "users,new_users,sessions,pageviews,bounces,avg_session_duration"
	hourOf := func() int { return time.Now().In(loc).Hour() }
	before := hourOf()
	a, _ = c.report(tok, "acquisition/overview", mpaWith(q, "granularity", "hour", "metrics", hourSeries))
	last := before
	if h := hourOf(); h != before && len(a.Rows) == (len(days)-1)*24+h+1 {
		last = h // the hour turned during the request
	}
	var labels []string
	var byHour []map[string]float64
	for i, d := range days {
		for h := range 24 {
			if i == len(days)-1 && h > last {
				break
			}
			labels = append(labels, fmt.Sprintf("%sT%02d", d, h))
			var in []*cvSession
			for _, s := range calc.in(d, d) {
				if s.hour == h {
					in = append(in, s)
				}
			}
			byHour = append(byHour, mpaPick(cvOrZero(cvAcq(in, cvTotal)[""]), hourSeries))
		}
	}
	mpaCompareSeries(t, "acquisition/overview by hour", a.Rows, labels, byHour, hourSeries)
}

// cvCheckComparison compares the last seven days, today included, with
// the seven before: totals, and devices' previous values.
func cvCheckComparison(t *testing.T, c *mpaClient, tok, pid string, day func(int) string, calc *cvCalc) {
	t.Helper()
	q := url.Values{"property_id": {pid}, "from": {day(-6)}, "to": {day(0)}, "compare": {"previous_period"}}
	a, raw := c.report(tok, "acquisition/overview", mpaWith(q, "metrics", cvAcqMetrics))
	mpaCompareTotals(t, "overview compared", a.Totals, mpaPick(calc.acq(day(-6), day(0), cvTotal)[""], cvAcqMetrics))
	mpaCompareTotals(t, "overview compared: previous_totals", a.PreviousTotals, mpaPick(calc.acq(day(-13), day(-7), cvTotal)[""], cvAcqMetrics))
	if pr, _ := raw["previous_range"].(map[string]any); pr["from"] != day(-13) || pr["to"] != day(-7) {
		t.Errorf("previous_range %v, want %s..%s", pr, day(-13), day(-7))
	}
	_, raw = c.report(tok, "acquisition/device", mpaWith(q, "metrics", "users,new_users,sessions,pages_per_session"))
	cur := calc.acq(day(-6), day(0), func(s *cvSession) string { return s.prof.device })
	prev := calc.acq(day(-13), day(-7), func(s *cvSession) string { return s.prof.device })
	rows, _ := raw["rows"].([]any)
	if len(rows) != len(cur) {
		t.Errorf("device compared: %d rows, want %d: %v", len(rows), len(cur), rows)
	}
	for _, r := range rows {
		row, _ := r.(map[string]any)
		dev, _ := row["device"].(string)
		p, _ := row["previous"].(map[string]any)
		for _, m := range []string{"users", "new_users", "sessions", "pages_per_session"} {
			if !mpaClose(num(row[m]), cur[dev][m]) {
				t.Errorf("device compared %s: %s = %v, want %v", dev, m, row[m], cur[dev][m])
			}
			if !mpaClose(num(p[m]), prev[dev][m]) {
				t.Errorf("device compared %s: previous %s = %v, want %v", dev, m, p[m], prev[dev][m])
			}
		}
	}
}

// cvOrZero is m, or no metrics (all zero) for a period without sessions.
func cvOrZero(m map[string]float64) map[string]float64 {
	if m == nil {
		return map[string]float64{}
	}
	return m
}
