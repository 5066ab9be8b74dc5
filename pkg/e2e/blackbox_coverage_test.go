package e2e

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/localstack"
)

// TestAcceptanceBlackBoxCoverage audits what the other black-box tests read
// over one or two days only: ranges of many days, where users and new users
// are distinct counts merged across days (and across the whole final ISO
// weeks report-svc merges from cached days), averages (pages per session,
// session duration, time on page, bounce and exit rates) come from the
// range's summed parts, and a user back after days is returning. It reads
// the reports a merchant reads daily (overview, user_type, device, browser,
// os, country, landing pages, channel, source, medium, source_medium,
// campaign, referrer, pages, page paths, exit pages, events by level,
// filtered hits) over presets (up to last_90_days, this and last month)
// and from/to ranges of up to 15 days, as series by day, week and hour,
// and compared with the previous period, and compares every number exactly
// with a calculator of its own written from the brief, docs/processing.md
// and docs/reports.md (users are exact below 512 distinct).
//
// The visitors arrive by every kind of source over the days (search
// engines, social and other sites, utm tags, a campaign changed mid-visit,
// gclid, direct), so that a returning user is counted under several
// channels; the property has a page goal and an event goal (conversions,
// conversion rate and goal value over ranges) and excludes a user agent
// and an admin area (filtered hits by reason, seeded hits included:
// processing applies the rules to them as to any hit).
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
	st := cvStart(t)
	c, cfg, loc, midnight, day := st.c, st.cfg, st.loc, st.midnight, st.day
	tok := c.signUp("bb-coverage@shop.example")
	p, secret := st.property(tok, "Coverage", "shop.example")
	// The rules of every hit: two goals, a user agent and an area excluded.
	var put struct {
		Version int `json:"version"`
	}
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, map[string]any{
		"exclusions": map[string]any{"user_agents": []string{"^AcmeQA/"}},
		"pages":      map[string]any{"exclude": []string{"^/admin(/|$)"}},
		"goals": []map[string]any{
			{"id": "cart", "name": "Cart", "page_path": "^/cart$", "value": 5},
			{"id": "purchase", "name": "Purchase", "event": map[string]any{"category": "shop", "action": "purchase"}},
		},
	}, http.StatusOK, &put)

	hits := cvTraffic(midnight, loc)
	var seeded []rpHit
	for _, h := range hits {
		if !h.live {
			seeded = append(seeded, h.seed(cvProfiles[h.prof], put.Version))
		}
	}
	// The past days first, processed before the visitors come back;
	// received under the rules above (processing, which has not met the
	// property before, reads its rules at its first hit).
	seedHits(t, cfg, p, seeded)
	waitForProcessing(t, cfg, 90*time.Second)
	drWaitRules(t, c, p.TrackingID, cvProfiles[cvQA].ua, true) // collection stamps the live hits with them
	cvSendLive(t, c, p.TrackingID, secret, hits, cvProfiles)
	waitForProcessing(t, cfg, 90*time.Second)

	calc := cvCalculate(hits, loc)
	all := [2]string{day(-14), day(0)}
	want := calc.acq(all[0], all[1], cvTotal)[""]
	t.Logf("%d hits (%d seeded), %d sessions, over %s..%s: %v", len(hits), len(seeded), len(calc.sessions), all[0], all[1], want)
	channels := map[string]map[string]bool{}
	byChannel := map[string]int{}
	for _, s := range calc.sessions {
		byChannel[s.channel]++
		if channels[s.cid] == nil {
			channels[s.cid] = map[string]bool{}
		}
		channels[s.cid][s.channel] = true
	}
	several := 0
	for _, chs := range channels {
		if len(chs) > 1 {
			several++
		}
	}
	t.Logf("sessions by channel %v; %d of %d users came by several channels; filtered %v", byChannel, several, len(channels), calc.filteredIn(all[0], all[1]))
	eventually.NoError(t, 60*time.Second, "every hit in the reports", func() error {
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {p.ID}, "from": {all[0]}, "to": {all[1]}, "metrics": {"sessions,pageviews,events"}})
		for _, m := range []string{"sessions", "pageviews", "events"} {
			if num(a.Totals[m]) != want[m] {
				return fmt.Errorf("totals %v, want %v", a.Totals, mpaPick(want, "sessions,pageviews,events"))
			}
		}
		return nil
	})

	// The presets' dates, from the same local day as the hits': the zone
	// puts local midnight about two hours back (zoneWithMidnightAgo), so
	// neither the day nor the month turns while the test runs; should it
	// have, the presets are skipped below rather than compared with
	// another day's dates.
	ln := midnight.In(loc).Add(time.Hour)
	monday := ln.AddDate(0, 0, -((int(ln.Weekday()) + 6) % 7)).Format(time.DateOnly)
	lastMonday := ln.AddDate(0, 0, -((int(ln.Weekday())+6)%7)-7).Format(time.DateOnly)
	lastSunday := ln.AddDate(0, 0, -((int(ln.Weekday())+6)%7)-1).Format(time.DateOnly)
	first := time.Date(ln.Year(), ln.Month(), 1, 12, 0, 0, 0, loc)
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
		{url.Values{"range": {"last_30_days"}}, day(-30), day(-1)},
		{url.Values{"range": {"last_90_days"}}, day(-90), day(-1)},
		{url.Values{"range": {"this_month"}}, first.Format(time.DateOnly), day(0)},
		{url.Values{"range": {"last_month"}}, first.AddDate(0, -1, 0).Format(time.DateOnly), first.AddDate(0, 0, -1).Format(time.DateOnly)},
	} {
		q := mpaWith(r.q, "property_id", p.ID)
		if r.q.Has("range") {
			if now := time.Now().In(loc).Format(time.DateOnly); now != day(0) {
				t.Logf("range=%s skipped: the local day turned (%s, the hits' today %s)", r.q.Get("range"), now, day(0))
				continue
			}
			_, raw := c.report(tok, "acquisition/overview", mpaWith(q, "metrics", "sessions"))
			if rg, _ := raw["range"].(map[string]any); rg["from"] != r.from || rg["to"] != r.to {
				t.Errorf("range=%s: %v, want %s..%s", r.q.Get("range"), rg, r.from, r.to)
			}
		}
		cvCheckRange(t, c, tok, q, r.from, r.to, calc)
	}
	cvCheckFilters(t, c, tok, url.Values{"property_id": {p.ID}, "from": {all[0]}, "to": {all[1]}}, all[0], all[1], calc)
	cvCheckSeries(t, c, tok, p.ID, all, calc, loc)
	cvCheckComparison(t, c, tok, p.ID, day, calc)
}

// cvStack is the stack a coverage audit runs on, in a zone whose local
// midnight was about two hours ago (zoneWithMidnightAgo).
type cvStack struct {
	cfg      localstack.Config
	c        *mpaClient
	zone     string
	loc      *time.Location
	midnight time.Time
}

func cvStart(t *testing.T) *cvStack {
	t.Helper()
	stack, cfg := startStack(t)
	c := &mpaClient{t: t, ctx: context.Background(), http: &http.Client{Timeout: 30 * time.Second}, gw: strings.TrimRight(stack.GatewayURL(), "/")}
	zone, loc, midnight := zoneWithMidnightAgo(t)
	return &cvStack{cfg: cfg, c: c, zone: zone, loc: loc, midnight: midnight}
}

// day is the property-local date n days from the hits' today.
func (st *cvStack) day(n int) string {
	return st.midnight.In(st.loc).AddDate(0, 0, n).Format(time.DateOnly)
}

// property creates a property in the zone with the hostnames, and a
// Measurement API secret for it.
func (st *cvStack) property(tok, name string, hostnames ...string) (mpaProperty, string) {
	p := st.c.createProperty(tok, map[string]any{"name": name, "hostnames": hostnames, "time_zone": st.zone})
	var sec struct {
		Secret string `json:"secret"`
	}
	st.c.do("POST", "/v1/properties/"+p.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec)
	return p, sec.Secret
}

// cvProfile is a visitor's context as sent and as the reports must show it.
type cvProfile struct {
	ua, country              string // the Measurement API's user_agent and user_location.country_id
	ip                       string // its ip_override (none when empty; seeded: 192.0.2.0)
	device, browser, os, geo string
	bot                      bool // collection flags ua as a known crawler
}

// The user agents' device, browser and OS are those docs/collection.md's
// parser gives them (as TestAcceptanceBlackBoxRules reads them); the
// country is user_location's, upper-cased. The third, a server sending
// neither, is not set in any. The fourth, cvQA, is the merchant's own
// checks, which the property's rules exclude.
var cvProfiles = []cvProfile{
	{ua: drChrome, country: "de", device: "desktop", browser: "Chrome", os: "Windows", geo: "DE"},
	{ua: drIPhone, country: "FR", device: "mobile", browser: "Safari", os: "iOS", geo: "FR"},
	{device: "(not set)", browser: "(not set)", os: "(not set)", geo: "(not set)"},
	{ua: "AcmeQA/9 (uptime)", device: "desktop"},
}

const cvQA = 3

// cvHit is a hit of the traffic: a pageview (its location's query holding
// attribution tags, its referrer), an (interaction) event or an engagement
// ping; live ones are sent through the gateway, the others seeded.
type cvHit struct {
	cid, kind, page string
	host            string  // the page's, shop.example when empty
	query, ref      string  // a pageview's: "?utm_source=…", a referrer URL
	cat, act        string  // an event's category and action (its name)
	value           float64 // an event's
	t               time.Time
	prof            int
	live            bool
	// stale: collected by an instance that had not learnt of the rules
	// change yet (stamped with the version before).
	stale bool
}

// event is h as a Measurement API event: what is sent, and what the
// calculator reads.
func (h cvHit) event() mpaEvent {
	switch h.kind {
	case "event":
		return mpaEvent{cid: h.cid, name: h.act, t: h.t, params: map[string]any{"event_category": h.cat, "value": h.value}}
	case "ping":
		return mpaEvent{cid: h.cid, name: "user_engagement", t: h.t, params: map[string]any{"engagement_time_msec": 5000}}
	}
	params := map[string]any{"page_location": "https://" + cmp.Or(h.host, "shop.example") + h.page + h.query}
	if h.ref != "" {
		params["page_referrer"] = h.ref
	}
	return mpaEvent{cid: h.cid, name: "page_view", t: h.t, params: params}
}

// seed is h of a visitor with the profile as collection would have queued
// it, under the rules version: its address truncated to /24 (/48), the
// bot flag set; the IP rule matched is the caller's.
func (h cvHit) seed(pr cvProfile, version int) rpHit {
	ip := "192.0.2.0"
	if pr.ip != "" {
		a, bits := netip.MustParseAddr(pr.ip), 24
		if a.Is6() {
			bits = 48
		}
		ip = netip.PrefixFrom(a, bits).Masked().Addr().String()
	}
	var r rpHit
	if h.kind == "pageview" {
		r = rpPV(h.cid, h.t, h.page+h.query, h.ref, pr.ua, ip)
		r.params["page_location"] = h.event().params["page_location"]
	} else {
		r = rpEv(h.cid, h.t, h.cat, h.act, h.value, pr.ua, ip)
	}
	r.device, r.browser, r.os, r.country = pr.device, pr.browser, pr.os, pr.geo
	r.version, r.bot = version, pr.bot
	return r
}

// excluded is the reason the property's rules exclude h for, or "".
func (h cvHit) excluded() string {
	switch {
	case h.prof == cvQA:
		return "user_agent"
	case h.page == "/admin" || strings.HasPrefix(h.page, "/admin/"): // every hit on the page
		return "page"
	}
	return ""
}

// cvArrivals are the ways a visit arrives: its landing page's tags (%d is
// a click ID of the visit's own) or its referrer.
var cvArrivals = []struct{ query, ref string }{
	{}, {}, {}, // direct
	{ref: "https://www.google.com/search?q=shoes"},
	{ref: "https://www.bing.com/search?q=shoes"},
	{ref: "https://duckduckgo.com/"},
	{ref: "https://m.facebook.com/"},
	{ref: "https://www.youtube.com/watch?v=x1"},
	{ref: "https://news.example/reviews/shoes?from=feed"},
	{ref: "https://blog.other.example/"},
	{query: "?utm_source=newsletter&utm_medium=email&utm_campaign=winter"},
	{query: "?utm_source=facebook&utm_medium=paid_social&utm_campaign=winter"},
	{query: "?utm_source=coupons&utm_medium=affiliate&utm_campaign=spring"},
	{query: "?utm_source=partnerblog"},
	{query: "?gclid=g%d&utm_campaign=brand"},
}

// cvTraffic is 40 visitors over the last 15 property-local days: visits
// on random days before yesterday (seeded), some a second time the same
// day after more than 30 minutes, with a device of their own most days;
// and visits in yesterday's last hour and today's first, through the
// gateway. A visit is one to four pageviews seconds to minutes apart, a
// single pageview sometimes followed by an event, or (live) a ping. Each
// visit arrives its own way (cvArrivals), so that a visitor comes by
// several channels over the days; a later pageview of a tagged visit may
// carry its tags again (the same session), a pageview may carry another
// campaign (a new session) or a referrer (none: only a session's first
// hit attributes it). A purchase may follow a view of the cart (both
// goals), and some visits end on an excluded admin page. The merchant's
// checks (cvQA) visit too, every hit excluded.
func cvTraffic(midnight time.Time, loc *time.Location) []cvHit {
	g := &cvGen{r: rand.New(rand.NewPCG(2026, 12)), arrivals: cvArrivals, again: []string{"https://www.google.com/search?q=again"}}
	r, visit := g.r, g.visit
	for v := range 41 {
		cid := fmt.Sprintf("cv-%02d", v)
		prof := r.IntN(2)
		if v == 40 {
			cid, prof = "cv-qa", cvQA
		}
		for n := -14; n <= -2; n++ {
			if r.IntN(10) >= 2 && v < 40 {
				continue
			}
			p := prof
			if r.IntN(10) == 0 && v < 40 {
				p = 1 - prof
			}
			start := time.Date(midnight.In(loc).Year(), midnight.In(loc).Month(), midnight.In(loc).Day()+n, 8, 0, 0, 0, loc).Add(time.Duration(r.IntN(600)) * time.Minute)
			end := visit(cid, start, p, false)
			if r.IntN(10) < 3 {
				visit(cid, end.Add(time.Duration(31+r.IntN(60))*time.Minute), p, false)
			}
		}
		p := prof
		if r.IntN(7) == 0 && v < 40 {
			p = 2
		}
		if r.IntN(20) < 7 || v == 40 { // yesterday, in its last 50 minutes
			visit(cid, midnight.Add(-50*time.Minute+time.Duration(r.IntN(1800))*time.Second), p, true)
		}
		if r.IntN(10) < 4 || v == 40 { // today, in its first 80 minutes
			visit(cid, midnight.Add(5*time.Minute+time.Duration(r.IntN(4500))*time.Second), p, true)
		}
	}
	// Across midnight: two sessions, yesterday's and today's.
	for _, d := range []time.Duration{-4 * time.Minute, -2 * time.Minute, 2 * time.Minute} {
		g.hits = append(g.hits, cvHit{cid: "cv-midnight", kind: "pageview", page: "/shop", t: midnight.Add(d), prof: 0, live: true})
	}
	return g.hits
}

// cvGen makes visits (cvTraffic's) from a seeded random source: each
// arrives one of its ways (%d in a query is a click ID of the visit's
// own), and a later pageview of a visit may carry one of the referrers
// again.
type cvGen struct {
	r        *rand.Rand
	arrivals []struct{ query, ref string }
	again    []string
	hits     []cvHit
	clicks   int
}

// visit adds a visit of the visitor with the profile from at, and returns
// the time of its last hit.
func (g *cvGen) visit(cid string, at time.Time, prof int, live bool) time.Time {
	r := g.r
	pages := []string{"/", "/shop", "/shop/shoes", "/blog/a", "/cart", "/about"}
	arr := g.arrivals[r.IntN(len(g.arrivals))]
	if strings.Contains(arr.query, "%d") {
		g.clicks++
		arr.query = strings.ReplaceAll(arr.query, "%d", strconv.Itoa(g.clicks))
	}
	n := 1 + r.IntN(4)
	if r.IntN(10) < 4 {
		n = 1
	}
	for i := range n {
		pv := cvHit{cid: cid, kind: "pageview", page: pages[r.IntN(len(pages))], prof: prof, live: live}
		if i == 0 {
			pv.query, pv.ref = arr.query, arr.ref
		} else {
			at = at.Add(time.Duration(5+r.IntN(240)) * time.Second)
			switch k := r.IntN(12); {
			case k < 4 && arr.query != "":
				pv.query = arr.query // the same campaign: the same session
			case k == 4:
				pv.query = "?utm_source=newsletter&utm_medium=email&utm_campaign=spring" // another: a new session
			case k == 5:
				pv.ref = g.again[0] // no new session
				if len(g.again) > 1 {
					pv.ref = g.again[r.IntN(len(g.again))]
				}
			}
		}
		pv.t = at
		g.hits = append(g.hits, pv)
		if pv.page == "/cart" && r.IntN(2) == 0 {
			at = at.Add(time.Duration(5+r.IntN(60)) * time.Second)
			g.hits = append(g.hits, cvHit{cid: cid, kind: "event", cat: "shop", act: "purchase", value: []float64{19.99, 45, 120.5}[r.IntN(3)], t: at, prof: prof, live: live})
		}
	}
	switch k := r.IntN(10); {
	case n == 1 && k < 3:
		at = at.Add(time.Duration(5+r.IntN(120)) * time.Second)
		g.hits = append(g.hits, cvHit{cid: cid, kind: "event", cat: "shop", act: "add_to_cart", value: 1, t: at, prof: prof, live: live})
	case n == 1 && k < 6 && live:
		at = at.Add(time.Duration(5+r.IntN(120)) * time.Second)
		g.hits = append(g.hits, cvHit{cid: cid, kind: "ping", t: at, prof: prof, live: live})
	case k == 9:
		at = at.Add(time.Duration(5+r.IntN(60)) * time.Second)
		g.hits = append(g.hits, cvHit{cid: cid, kind: "pageview", page: "/admin/orders", t: at, prof: prof, live: live})
	}
	return at
}

// cvSendLive sends the live hits, a request per visitor and visit, as
// Measurement API events with their own times (queue times of up to four
// hours), the visitor's user agent, country and address (its profile's).
func cvSendLive(t *testing.T, c *mpaClient, tid, secret string, hits []cvHit, profiles []cvProfile) {
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
		k := key{h.cid, h.prof}
		if reqs[k] == nil {
			order = append(order, k)
		}
		e := h.event()
		reqs[k] = append(reqs[k], map[string]any{"name": e.name, "event_id": fmt.Sprintf("cv-%d", i), "timestamp_micros": h.t.UnixMicro(), "params": e.params})
	}
	for _, k := range order {
		pr := profiles[k.prof]
		body := map[string]any{"client_id": k.cid, "events": reqs[k]}
		if pr.ip != "" {
			body["ip_override"] = pr.ip
		}
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

// The calculator, from docs/processing.md ("Sessions", "Attribution and
// channels", "Users") and docs/reports.md ("Metrics"): sessions split and
// attributed by TestAcceptanceBlackBoxMP's calculator (mpaSplit,
// attribute, tally), channels by GA4's default channel group as
// TestAcceptanceBlackBox's calculator has it (bbChannel).

// cvSession is a session, with its local hour and its visitor's context.
type cvSession struct {
	*mpaSession
	hour int
	prof cvProfile
}

type cvCalc struct {
	sessions []*cvSession
	all      *mpaCalc                      // the same sessions, for the page and event reports
	filtered map[string]map[string]float64 // day, reason: excluded hits
}

// cvGoal is the property's goals: a view of the cart worth 5, a purchase
// worth its event's value.
func cvGoal(h *mpaHit) (string, float64, bool) {
	switch {
	case h.kind == "pageview" && h.page == "/cart":
		return "cart", 5, true
	case h.kind == "event" && h.cat == "shop" && h.act == "purchase":
		return "purchase", h.value, true
	}
	return "", 0, false
}

// cvCalculate counts the excluded hits by reason on their local day and
// sessionizes each visitor's other hits in time order: a gap strictly
// over 30 minutes, another property-local date or another campaign starts
// a session; a ping extends the session it falls in and starts none.
func cvCalculate(hits []cvHit, loc *time.Location) *cvCalc {
	calc := &cvCalc{all: &mpaCalc{loc: loc}, filtered: map[string]map[string]float64{}}
	by := map[string][]*mpaHit{}
	prof := map[*mpaHit]int{}
	for _, h := range hits {
		if reason := h.excluded(); reason != "" {
			calc.exclude(h, reason, loc)
			continue
		}
		m := mpaHitOf(h.event())
		prof[m] = h.prof
		by[h.cid] = append(by[h.cid], m)
	}
	for _, hs := range by {
		for _, s := range mpaSplit(hs, loc, 30*time.Minute) {
			s.attribute(nil)
			s.channel = bbChannel(s.source, s.medium, s.campaign)
			s.tally(cvGoal)
			calc.add(s, cvProfiles[prof[s.hits[0]]], loc)
		}
	}
	return calc
}

// exclude counts h among the filtered hits of its local day.
func (c *cvCalc) exclude(h cvHit, reason string, loc *time.Location) {
	d := h.t.In(loc).Format(time.DateOnly)
	if c.filtered[d] == nil {
		c.filtered[d] = map[string]float64{}
	}
	c.filtered[d][reason]++
}

// add adds a finished session of a visitor with the profile.
func (c *cvCalc) add(s *mpaSession, prof cvProfile, loc *time.Location) {
	c.all.sessions = append(c.all.sessions, s)
	c.sessions = append(c.sessions, &cvSession{mpaSession: s, hour: s.start.In(loc).Hour(), prof: prof})
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

func cvLanding(s *cvSession) string { return s.landing }

func cvChannel(s *cvSession) string { return s.channel }

// acq is the session metrics of the range by key: users are distinct
// client IDs, new users those whose first session is in the range,
// averages and rates the range's sums divided.
func (c *cvCalc) acq(from, to string, key func(*cvSession) string) map[string]map[string]float64 {
	return cvAcq(c.in(from, to), key)
}

// cvAcq aggregates sessions by key with TestAcceptanceBlackBoxMP's
// aggregation of the session metrics.
func cvAcq(sessions []*cvSession, key func(*cvSession) string) map[string]map[string]float64 {
	of := map[*mpaSession]*cvSession{}
	var ms []*mpaSession
	for _, s := range sessions {
		of[s.mpaSession] = s
		ms = append(ms, s.mpaSession)
	}
	return mpaAcqAgg(ms, func(m *mpaSession) string {
		if of[m] == nil {
			return "" // mpaAcqAgg's probe of an empty total
		}
		return key(of[m])
	})
}

// pages is the page metrics of the range by page, every metric present
// (zeros included), and their sum with its rates. Time on page runs to the
// session's next pageview, or for its last to its last hit when that is
// later; otherwise it is not measured.
func (c *cvCalc) pages(from, to string) (map[string]map[string]float64, map[string]float64) {
	rows := c.all.pages(from, to, func(p string) (string, bool) { return p, true })
	for _, m := range rows {
		for _, k := range strings.Split(cvPageMetrics, ",") {
			m[k] += 0
		}
	}
	return rows, mpaSum(rows, cvPageMetrics)
}

// cvDrill groups pages as the page_paths report's drill-down below dir
// does: a page in a subdirectory of dir under that subdirectory, one in
// dir itself as it is, one outside dir in none.
func cvDrill(dir string) func(string) (string, bool) {
	return func(p string) (string, bool) {
		if !strings.HasPrefix(p, dir) {
			return "", false
		}
		if i := strings.Index(p[len(dir):], "/"); i >= 0 {
			return p[:len(dir)+i+1], true
		}
		return p, true
	}
}

// filteredIn is the excluded hits of the range by reason.
func (c *cvCalc) filteredIn(from, to string) map[string]map[string]float64 {
	return drFilteredIn(c.filtered, from, to)
}

const (
	cvAcqMetrics  = "users,new_users,sessions,engaged_sessions,bounces,bounce_rate,engagement_rate,avg_session_duration,pages_per_session,pageviews,events,conversions,conversion_rate,goal_value"
	cvPageMetrics = "pageviews,unique_pageviews,avg_time_on_page,entrances,exits,exit_rate,bounces,bounce_rate"
)

// cvCheckRange compares the acquisition reports by user type, device,
// browser, OS, country, landing page, channel, source, medium, source and
// medium, campaign and referrer, the overviews, and the pages, page paths,
// exit pages, landing pages, events and filtered hits of one range with
// the calculator.
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
		{"landing_page", cvLanding},
		{"channel", cvChannel},
		{"source", func(s *cvSession) string { return s.source }},
		{"medium", func(s *cvSession) string { return s.medium }},
		{"source_medium", func(s *cvSession) string { return s.source + "|" + s.medium }},
		{"campaign", func(s *cvSession) string { return s.campaign }},
		{"referrer", func(s *cvSession) string { return s.referrer }},
	} {
		dims := []string{r.report}
		if r.report == "source_medium" {
			dims = []string{"source", "medium"}
		}
		a, _ := c.report(tok, "acquisition/"+r.report, mpaWith(q, "metrics", cvAcqMetrics, "limit", "10000"))
		mpaCompare(t, name("acquisition/"+r.report), a.Rows, dims, calc.acq(from, to, r.key))
		mpaCompareTotals(t, name("acquisition/"+r.report), a.Totals, mpaPick(total, cvAcqMetrics))
	}
	a, _ = c.report(tok, "behavior/landing_pages", mpaWith(q, "metrics", cvAcqMetrics))
	mpaCompare(t, name("behavior/landing_pages"), a.Rows, []string{"landing_page"}, calc.acq(from, to, cvLanding))
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

	for _, dir := range []string{"/", "/shop/"} {
		want := calc.all.pages(from, to, cvDrill(dir))
		a, _ = c.report(tok, "behavior/page_paths", mpaWith(q, "metrics", cvPageMetrics, "path", dir))
		mpaCompare(t, name("behavior/page_paths "+dir), a.Rows, []string{"page_path"}, want)
		mpaCompareTotals(t, name("behavior/page_paths "+dir), a.Totals, mpaSum(want, cvPageMetrics))
	}

	const evMetrics = "total_events,unique_events,event_value,avg_event_value"
	for _, r := range []struct {
		report string
		dims   []string
	}{
		{"event_categories", []string{"event_category"}},
		{"event_actions", []string{"event_category", "event_action"}},
		{"events", []string{"event_category", "event_action", "event_label"}},
	} {
		want := calc.all.events(from, to, len(r.dims))
		a, _ = c.report(tok, "behavior/"+r.report, mpaWith(q, "metrics", evMetrics))
		mpaCompare(t, name("behavior/"+r.report), a.Rows, r.dims, want)
		mpaCompareTotals(t, name("behavior/"+r.report), a.Totals, mpaSum(want, "total_events,event_value,avg_event_value"))
	}

	want := calc.filteredIn(from, to)
	a, _ = c.report(tok, "behavior/filtered", q)
	mpaCompare(t, name("behavior/filtered"), a.Rows, []string{"reason"}, want)
	mpaCompareTotals(t, name("behavior/filtered"), a.Totals, mpaSum(want, "hits"))
}

// cvCheckFilters compares filtered reports over a range: a filtered
// session report's totals merge the users of the matching rows (a user on
// a phone some days and a desktop others is one, and so is one who came
// by search engines some days and by ads others), the returning user
// type's rows alone, and a page filter's rows and totals.
func cvCheckFilters(t *testing.T, c *mpaClient, tok string, q url.Values, from, to string, calc *cvCalc) {
	t.Helper()
	for _, f := range []struct {
		report, filter string
		key            func(*cvSession) string
		in             []string
	}{
		{"device", "device[]desktop|mobile", func(s *cvSession) string { return s.prof.device }, []string{"desktop", "mobile"}},
		// a user who came by search engines and by ads is one
		{"channel", "channel[]Organic Search|Paid Search", cvChannel, []string{"Organic Search", "Paid Search"}},
	} {
		var sel []*cvSession
		for _, s := range calc.in(from, to) {
			if slices.Contains(f.in, f.key(s)) {
				sel = append(sel, s)
			}
		}
		a, _ := c.report(tok, "acquisition/"+f.report, mpaWith(q, "metrics", cvAcqMetrics, "filter", f.filter))
		mpaCompare(t, f.report+" filter "+f.filter, a.Rows, []string{f.report}, cvAcq(sel, f.key))
		mpaCompareTotals(t, f.report+" filter "+f.filter, a.Totals, mpaPick(cvAcq(sel, cvTotal)[""], cvAcqMetrics))
	}

	returning := calc.acq(from, to, cvUserType)["returning"]
	a, _ := c.report(tok, "acquisition/user_type", mpaWith(q, "metrics", cvAcqMetrics, "filter", "user_type==returning"))
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
// over the 15 days, and users, sessions and conversions by type and by
// channel and week.
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

	// Users by type and by channel and week: a row per week and value
	// with data.
	for _, r := range []struct {
		report string
		key    func(*cvSession) string
	}{{"user_type", cvUserType}, {"channel", cvChannel}} {
		want := map[string]map[string]float64{}
		for _, l := range weekLabels {
			for k, m := range calc.acq(weeks[l][0], weeks[l][1], r.key) {
				want[l+"|"+k] = m
			}
		}
		a, _ = c.report(tok, "acquisition/"+r.report, mpaWith(q, "granularity", "week", "metrics", "users,new_users,sessions,bounces,avg_session_duration,conversions,goal_value"))
		mpaCompare(t, "acquisition/"+r.report+" by week", a.Rows, []string{"period", r.report}, want)
	}

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
// the seven before: totals, and devices' and channels' previous values.
func cvCheckComparison(t *testing.T, c *mpaClient, tok, pid string, day func(int) string, calc *cvCalc) {
	t.Helper()
	q := url.Values{"property_id": {pid}, "from": {day(-6)}, "to": {day(0)}, "compare": {"previous_period"}}
	a, raw := c.report(tok, "acquisition/overview", mpaWith(q, "metrics", cvAcqMetrics))
	mpaCompareTotals(t, "overview compared", a.Totals, mpaPick(calc.acq(day(-6), day(0), cvTotal)[""], cvAcqMetrics))
	mpaCompareTotals(t, "overview compared: previous_totals", a.PreviousTotals, mpaPick(calc.acq(day(-13), day(-7), cvTotal)[""], cvAcqMetrics))
	if pr, _ := raw["previous_range"].(map[string]any); pr["from"] != day(-13) || pr["to"] != day(-7) {
		t.Errorf("previous_range %v, want %s..%s", pr, day(-13), day(-7))
	}
	// The rows are the range's values, each with its previous values
	// (zeros for a value without data then).
	for _, r := range []struct {
		report string
		key    func(*cvSession) string
	}{{"device", func(s *cvSession) string { return s.prof.device }}, {"channel", cvChannel}} {
		_, raw = c.report(tok, "acquisition/"+r.report, mpaWith(q, "metrics", "users,new_users,sessions,pages_per_session,conversions"))
		cur := calc.acq(day(-6), day(0), r.key)
		prev := calc.acq(day(-13), day(-7), r.key)
		rows, _ := raw["rows"].([]any)
		if len(rows) != len(cur) {
			t.Errorf("%s compared: %d rows, want %d: %v", r.report, len(rows), len(cur), rows)
		}
		for _, x := range rows {
			row, _ := x.(map[string]any)
			v, _ := row[r.report].(string)
			p, _ := row["previous"].(map[string]any)
			for _, m := range []string{"users", "new_users", "sessions", "pages_per_session", "conversions"} {
				if !mpaClose(num(row[m]), cur[v][m]) {
					t.Errorf("%s compared %s: %s = %v, want %v", r.report, v, m, row[m], cur[v][m])
				}
				if !mpaClose(num(p[m]), prev[v][m]) {
					t.Errorf("%s compared %s: previous %s = %v, want %v", r.report, v, m, p[m], prev[v][m])
				}
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

// TestAcceptanceBlackBoxCoverageRules audits over many days what
// TestAcceptanceBlackBoxCoverage leaves out: the property's exclusion
// rules (filtered hits by reason ip, country, foreign_host and bot),
// attribution's edge cases (Bing's msclkid, Google's gbraid and wbraid,
// referral exclusions, self-referrals, custom channel rules evaluated
// before the default group), a change of the rules in the middle of the
// range, and users past 512 distinct, where they are estimates.
//
// The rules change on the seventh day before today (docs/config.md,
// "Rules"; docs/processing.md, "Rules version"): the first version
// excludes an office network and a single address, one country, and lets
// bots in; its hostnames hold a legacy host (its pages accepted, its
// referrers the site's own). The second, for the hits received from then
// on, stops excluding the address, excludes a second country, filters
// bots, drops the legacy host (a referral from then on), adds a referral
// exclusion, a longer session timeout, a goal and a custom channel ahead
// of the others. Each hit counts under the version it was received under:
// a report over a range spanning the change adds up each day as its own
// version derived it. The past days are seeded as collection queued them
// (the bot flag, the IP rule the full address matched in flight, the
// address truncated), yesterday's last hour and today's first come
// through the gateway with the visitor's address (ip_override), so that
// collection's own flagging and matching is checked too; and a hit of the
// legacy host that a collection instance not yet aware of the change let
// in after its visitor's hit under the new version is foreign_host.
//
// A second property has 700 visitors of one pageview each over 13 days,
// 150 of them back another day: over ranges of more than 512 distinct
// users, users are a HyperLogLog estimate (docs/reports.md, "Users and
// their error"), compared within five standard errors and within the
// exact bounds new_users and sessions, and the answer says it is
// estimated; below, they are exact and it says they are not.
func TestAcceptanceBlackBoxCoverageRules(t *testing.T) {
	st := cvStart(t)
	c, cfg, loc, midnight, day := st.c, st.cfg, st.loc, st.midnight, st.day
	tok := c.signUp("bb-coverage-rules@shop.example")
	p, secret := st.property(tok, "Coverage rules", "shop.example", "legacy.example")
	var put struct {
		Version int `json:"version"`
	}
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, cvrRulesDoc(false), http.StatusOK, &put)
	vers := cvrVersions()
	vers[0].stamp = put.Version
	c.do("PATCH", "/v1/properties/"+p.ID, tok, map[string]any{"hostnames": []string{"shop.example"}}, http.StatusOK, nil)
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, cvrRulesDoc(true), http.StatusOK, &put)
	vers[1].stamp = put.Version
	users, _ := st.property(tok, "Coverage users", "shop.example")

	change := day(-7)
	hits := cvrTraffic(midnight, loc)
	var seeded []rpHit
	for _, h := range hits {
		if !h.live {
			seeded = append(seeded, vers[cvrVersionOf(h, change, loc)].seed(h, vers[0].stamp))
		}
	}
	uhits := cvUsersTraffic(midnight, loc)
	// The past days first, processed before the visitors come back.
	seedHits(t, cfg, p, seeded)
	seedHits(t, cfg, users, uhits)
	waitForProcessing(t, cfg, 90*time.Second)
	drWaitRules(t, c, p.TrackingID, "ProbeTwo/1", true) // collection stamps the live hits with the second version
	cvSendLive(t, c, p.TrackingID, secret, hits, cvrProfiles)
	waitForProcessing(t, cfg, 90*time.Second)

	calc := cvrCalculate(hits, vers, change, loc)
	all := [2]string{day(-14), day(0)}
	want := calc.acq(all[0], all[1], cvTotal)[""]
	byChannel := map[string]int{}
	for _, s := range calc.sessions {
		byChannel[s.channel]++
	}
	t.Logf("rules: %d hits (%d seeded), %d sessions by channel %v; filtered %v", len(hits), len(seeded), len(calc.sessions), byChannel, calc.filteredIn(all[0], all[1]))
	eventually.NoError(t, 60*time.Second, "every hit in the reports", func() error {
		for _, w := range []struct {
			pid      string
			from, to string
			want     map[string]float64
		}{
			{p.ID, all[0], all[1], want},
			{users.ID, day(-14), day(-2), map[string]float64{"sessions": float64(len(uhits)), "pageviews": float64(len(uhits)), "events": 0}},
		} {
			a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {w.pid}, "from": {w.from}, "to": {w.to}, "metrics": {"sessions,pageviews,events"}})
			for _, m := range []string{"sessions", "pageviews", "events"} {
				if num(a.Totals[m]) != w.want[m] {
					return fmt.Errorf("%s totals %v, want %v", w.pid, a.Totals, mpaPick(w.want, "sessions,pageviews,events"))
				}
			}
		}
		return nil
	})
	for _, r := range [][2]string{
		all,
		{day(-14), day(-8)}, // the first version's days only
		{day(-9), day(-4)},  // across the change
		{change, day(0)},    // the second version's
	} {
		cvCheckRange(t, c, tok, url.Values{"property_id": {p.ID}, "from": {r[0]}, "to": {r[1]}}, r[0], r[1], calc)
	}
	cvCheckUsers(t, c, tok, users.ID, uhits, day, loc)
}

// cvrRulesDoc is the rules property's first version, or its second.
func cvrRulesDoc(second bool) map[string]any {
	if !second {
		return map[string]any{
			"exclusions":          map[string]any{"ip": []string{"198.51.100.0/24", "203.0.113.7"}, "countries": []string{"KP"}},
			"bot_filtering":       false,
			"referral_exclusions": []string{"paypal.com"},
			"goals":               []map[string]any{{"id": "cart", "name": "Cart", "page_path": "^/cart$", "value": 5}},
			"channels": []map[string]any{
				{"name": "Partners", "source": "^partner-"},
				{"name": "Newsletter", "medium": "^email$", "campaign": "^news"},
			},
		}
	}
	return map[string]any{
		"exclusions":              map[string]any{"ip": []string{"198.51.100.0/24"}, "user_agents": []string{"^ProbeTwo/"}, "countries": []string{"KP", "RU"}},
		"bot_filtering":           true,
		"session_timeout_minutes": 45,
		"referral_exclusions":     []string{"paypal.com", "checkout.stripe.com"},
		"goals": []map[string]any{
			{"id": "cart", "name": "Cart", "page_path": "^/cart$", "value": 7},
			{"id": "purchase", "name": "Purchase", "event": map[string]any{"category": "shop", "action": "purchase"}},
		},
		"channels": []map[string]any{
			{"name": "Search Ads", "source": "^(google|bing)$", "medium": "^cpc$"},
			{"name": "Partners", "source": "^partner-"},
			{"name": "Newsletter", "medium": "^email$", "campaign": "^news"},
		},
	}
}

// cvrVersion is what the calculator knows of one of cvrRulesDoc's
// versions: its number once saved, its exclusions and hostnames, and the
// rules of sessions (rpRules: its own hosts beyond shop.example are among
// the referral exclusions, which they act as).
type cvrVersion struct {
	rpRules
	stamp     int
	countries []string
	hosts     []string
	bots      bool
}

func cvrVersions() [2]cvrVersion {
	ci := func(re string) *regexp.Regexp { return regexp.MustCompile("(?i)" + re) }
	partners := rpChannel{name: "Partners", source: ci("^partner-")}
	newsletter := rpChannel{name: "Newsletter", medium: ci("^email$"), campaign: ci("^news")}
	cart := func(v float64) rpGoal { return rpGoal{id: "cart", page: regexp.MustCompile("^/cart$"), value: v} }
	return [2]cvrVersion{
		{rpRules: rpRules{timeout: 30 * time.Minute, ip: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.7/32")},
			referralExcl: []string{"paypal.com", "legacy.example"}, goals: []rpGoal{cart(5)}, channels: []rpChannel{partners, newsletter}},
			countries: []string{"KP"}, hosts: []string{"shop.example", "legacy.example"}},
		{rpRules: rpRules{timeout: 45 * time.Minute, ip: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			referralExcl: []string{"paypal.com", "checkout.stripe.com"}, goals: []rpGoal{cart(7), {id: "purchase", event: [2]string{"shop", "purchase"}}},
			channels: []rpChannel{{name: "Search Ads", source: ci("^(google|bing)$"), medium: ci("^cpc$")}, partners, newsletter}},
			countries: []string{"KP", "RU"}, hosts: []string{"shop.example"}, bots: true},
	}
}

// cvrVersionOf is the version a hit counts under: the second from the
// day of the change on (each visit is within a day, and the days before
// are closed when it comes: docs/processing.md, "Rules version").
func cvrVersionOf(h cvHit, change string, loc *time.Location) int {
	if h.t.In(loc).Format(time.DateOnly) >= change {
		return 1
	}
	return 0
}

// ipRule is the IP rule (as written) the visitor's full address matches,
// or "".
func (v cvrVersion) ipRule(pr cvProfile) string {
	a, err := netip.ParseAddr(pr.ip)
	if err != nil {
		return ""
	}
	for _, p := range v.ip {
		if p.Contains(a) {
			if p.IsSingleIP() {
				return p.Addr().String()
			}
			return p.String()
		}
	}
	return ""
}

// excluded is the reason the version excludes h for, first match first
// (docs/config.md, "Evaluation order"), or "".
func (v cvrVersion) excluded(h cvHit, pr cvProfile) string {
	switch {
	case v.ipRule(pr) != "":
		return "ip"
	case slices.Contains(v.countries, pr.geo):
		return "country"
	case h.kind == "pageview" && !drHostExcluded(cmp.Or(h.host, "shop.example"), v.hosts, nil):
		return "foreign_host"
	case v.bots && pr.bot:
		return "bot"
	}
	return ""
}

// seed is h as collection queued it under this version: flagged with the
// IP rule it matched; a stale hit stamped with the version before.
func (v cvrVersion) seed(h cvHit, before int) rpHit {
	pr := cvrProfiles[h.prof]
	r := h.seed(pr, v.stamp)
	r.ipx = v.ipRule(pr)
	if h.stale {
		r.version = before
	}
	return r
}

// cvrProfiles are the rules property's visitors: two ordinary (one on
// IPv6), the office network, the single address only the first version
// excludes, a crawler, a country both versions exclude, one only the
// second does, and a crawler from the office (ip before bot).
var cvrProfiles = []cvProfile{
	{ua: drChrome, country: "de", ip: "192.0.2.44", device: "desktop", browser: "Chrome", os: "Windows", geo: "DE"},
	{ua: drIPhone, country: "FR", ip: "2001:db8:5::7", device: "mobile", browser: "Safari", os: "iOS", geo: "FR"},
	{ua: drChrome, country: "de", ip: "198.51.100.23", device: "desktop", browser: "Chrome", os: "Windows", geo: "DE"},
	{ua: drChrome, country: "fr", ip: "203.0.113.7", device: "desktop", browser: "Chrome", os: "Windows", geo: "FR"},
	{ua: drGoogbot, ip: "192.0.2.50", device: "other", browser: "Googlebot", os: "(not set)", geo: "(not set)", bot: true},
	{ua: drIPhone, country: "kp", ip: "192.0.2.60", device: "mobile", browser: "Safari", os: "iOS", geo: "KP"},
	{ua: drChrome, country: "RU", ip: "192.0.2.70", device: "desktop", browser: "Chrome", os: "Windows", geo: "RU"},
	{ua: drGoogbot, ip: "198.51.100.80", device: "other", browser: "Googlebot", os: "(not set)", geo: "(not set)", bot: true},
}

// cvrArrivals are the rules property's ways in: click IDs (Bing's beating
// the tags beside it, Google's three, gclid first), referral exclusions,
// the site's own hosts, the legacy host, custom channels, and a few plain.
var cvrArrivals = []struct{ query, ref string }{
	{}, {},
	{ref: "https://www.google.com/search?q=shoes"},
	{ref: "https://www.facebook.com/"},
	{query: "?msclkid=m%d"},
	{query: "?msclkid=m%d&utm_source=newsletter&utm_medium=email&utm_campaign=spring"},
	{query: "?gbraid=b%d&utm_campaign=ios"},
	{query: "?wbraid=w%d"},
	{query: "?gclid=g%d&gbraid=b%d"},
	{ref: "https://www.paypal.com/checkout/done"},
	{ref: "https://checkout.stripe.com/pay/cs_1"},
	{ref: "https://www.shop.example/cart"},
	{ref: "https://blog.shop.example/post"},
	{ref: "https://legacy.example/old-shop"},
	{query: "?utm_source=partner-a&utm_medium=referral"},
	{query: "?utm_source=news&utm_medium=email&utm_campaign=newsletter-june"},
	{query: "?utm_source=news&utm_medium=email&utm_campaign=promo"},
}

// cvrTraffic is 30 visitors over the 15 days as cvTraffic's, each with a
// profile of cvrProfiles (two of each, the rest ordinary), arriving by
// cvrArrivals; a later
// pageview may come back from the payment provider or the site itself (no
// new session). Some visits before the change are on the legacy host. And
// one visitor on the day of the change: a pageview, then one of the legacy
// host a minute later, stale.
func cvrTraffic(midnight time.Time, loc *time.Location) []cvHit {
	g := &cvGen{r: rand.New(rand.NewPCG(2026, 28)), arrivals: cvrArrivals,
		again: []string{"https://www.paypal.com/checkout/done", "https://www.shop.example/cart", "https://www.google.com/search?q=again"}}
	r := g.r
	ln := midnight.In(loc)
	for v := range 30 {
		cid := fmt.Sprintf("cvr-%02d", v)
		prof := v % len(cvrProfiles) // each profile twice, then ordinary visitors
		if v >= 2*len(cvrProfiles) {
			prof = r.IntN(2)
		}
		for n := -14; n <= -2; n++ {
			if r.IntN(10) >= 2 {
				continue
			}
			p := prof
			if prof < 2 && r.IntN(10) == 0 {
				p = 1 - prof
			}
			start := time.Date(ln.Year(), ln.Month(), ln.Day()+n, 8, 0, 0, 0, loc).Add(time.Duration(r.IntN(600)) * time.Minute)
			i := len(g.hits)
			end := g.visit(cid, start, p, false)
			if n < -7 && r.IntN(6) == 0 {
				for j := i; j < len(g.hits); j++ {
					g.hits[j].host = "legacy.example"
				}
			}
			if r.IntN(10) < 3 {
				g.visit(cid, end.Add(time.Duration(31+r.IntN(60))*time.Minute), p, false)
			}
		}
		if r.IntN(20) < 7 { // yesterday, in its last 50 minutes
			g.visit(cid, midnight.Add(-50*time.Minute+time.Duration(r.IntN(1800))*time.Second), prof, true)
		}
		if r.IntN(10) < 4 { // today, in its first 80 minutes
			g.visit(cid, midnight.Add(5*time.Minute+time.Duration(r.IntN(4500))*time.Second), prof, true)
		}
	}
	at := time.Date(ln.Year(), ln.Month(), ln.Day()-7, 10, 0, 0, 0, loc)
	g.hits = append(g.hits,
		cvHit{cid: "cvr-stale", kind: "pageview", page: "/", ref: "https://www.google.com/search?q=shoes", t: at},
		cvHit{cid: "cvr-stale", kind: "pageview", page: "/old", host: "legacy.example", t: at.Add(time.Minute), stale: true})
	return g.hits
}

// cvrCalculate is cvCalculate under the rules property's versions: each
// hit excluded (or not) by the version it counts under, each visitor's
// sessions of each version split by its timeout and attributed by its
// rules (channel: its custom rules, then the default group).
func cvrCalculate(hits []cvHit, vers [2]cvrVersion, change string, loc *time.Location) *cvCalc {
	calc := &cvCalc{all: &mpaCalc{loc: loc}, filtered: map[string]map[string]float64{}}
	by := map[string]*[2][]*mpaHit{}
	var cids []string
	prof := map[*mpaHit]int{}
	for _, h := range hits {
		v := cvrVersionOf(h, change, loc)
		if reason := vers[v].excluded(h, cvrProfiles[h.prof]); reason != "" {
			calc.exclude(h, reason, loc)
			continue
		}
		m := mpaHitOf(h.event())
		prof[m] = h.prof
		if by[h.cid] == nil {
			by[h.cid] = &[2][]*mpaHit{}
			cids = append(cids, h.cid)
		}
		by[h.cid][v] = append(by[h.cid][v], m)
	}
	for _, cid := range cids {
		n := 0
		for v, hs := range by[cid] {
			for _, s := range mpaSplit(hs, loc, vers[v].timeout) {
				s.first = n == 0
				n++
				s.attribute(vers[v].referralExcl)
				s.channel = bbChannel(s.source, s.medium, s.campaign)
				vers[v].customChannel(s)
				s.tally(vers[v].goal)
				calc.add(s, cvrProfiles[prof[s.hits[0]]], loc)
			}
		}
	}
	return calc
}

// cvUsersTraffic is the users property's 700 visitors, a pageview each on
// a random day before yesterday, the first 150 a second one on another
// day, in time order.
func cvUsersTraffic(midnight time.Time, loc *time.Location) []rpHit {
	r := rand.New(rand.NewPCG(2026, 512))
	ln := midnight.In(loc)
	var hits []rpHit
	for v := range 700 {
		d := r.IntN(13)
		days := []int{d}
		if v < 150 {
			d2 := r.IntN(12)
			if d2 >= d {
				d2++
			}
			days = append(days, d2)
		}
		for _, d := range days {
			at := time.Date(ln.Year(), ln.Month(), ln.Day()-14+d, 8, 0, 0, 0, loc).Add(time.Duration(r.IntN(36000)) * time.Second)
			hits = append(hits, rpPV(fmt.Sprintf("cvu-%03d", v), at, "/", "", drChrome, "192.0.2.0"))
		}
	}
	slices.SortStableFunc(hits, func(a, b rpHit) int { return a.t.Compare(b.t) })
	return hits
}

// cvCheckUsers compares users, new users and sessions over ranges of the
// users property: exact, and said not estimated, up to 512 distinct
// users; beyond, within five standard errors of the true count and
// within new_users and sessions (docs/reports.md), said estimated with
// its standard error. By day and for new users (by user type) always
// exact.
func cvCheckUsers(t *testing.T, c *mpaClient, tok, pid string, hits []rpHit, day func(int) string, loc *time.Location) {
	t.Helper()
	first := map[string]string{}
	for _, h := range hits {
		if d := h.t.In(loc).Format(time.DateOnly); first[h.cid] == "" || d < first[h.cid] {
			first[h.cid] = d
		}
	}
	count := func(from, to string) map[string]float64 {
		users := map[string]bool{}
		m := map[string]float64{}
		for _, h := range hits {
			if d := h.t.In(loc).Format(time.DateOnly); d >= from && d <= to {
				users[h.cid] = true
				m["sessions"]++ // one pageview a day each
			}
		}
		for cid := range users {
			if first[cid] >= from && first[cid] <= to {
				m["new_users"]++
			}
		}
		m["users"] = float64(len(users))
		return m
	}
	const metrics = "users,new_users,sessions"
	estimated := 0
	for _, r := range [][2]string{{day(-14), day(-2)}, {day(-11), day(-2)}, {day(-14), day(-9)}, {day(-5), day(-5)}} {
		want := count(r[0], r[1])
		name := fmt.Sprintf("users %s..%s", r[0], r[1])
		a, raw := c.report(tok, "acquisition/overview", url.Values{"property_id": {pid}, "from": {r[0]}, "to": {r[1]}, "metrics": {metrics}})
		mpaCompareTotals(t, name, a.Totals, mpaPick(want, "new_users,sessions"))
		got, est := num(a.Totals["users"]), raw["users_estimated"] == true
		if want["users"] <= 512 {
			if got != want["users"] || est {
				t.Errorf("%s: users %v (estimated %v), want exactly %v", name, got, raw["users_estimated"], want["users"])
			}
			continue
		}
		estimated++
		tol := 5 * 0.0081 * want["users"]
		lo, hi := max(want["new_users"], want["users"]-tol), min(want["sessions"], want["users"]+tol)
		if got < lo || got > hi || math.Trunc(got) != got || !est || num(raw["users_standard_error"]) != 0.0081 {
			t.Errorf("%s: users %v (estimated %v, standard error %v), want %v within [%v, %v], estimated, standard error 0.0081",
				name, got, raw["users_estimated"], raw["users_standard_error"], want["users"], lo, hi)
		}
		t.Logf("%s: users %v estimated for %v (new users %v, sessions %v)", name, got, want["users"], want["new_users"], want["sessions"])
		a, _ = c.report(tok, "acquisition/user_type", url.Values{"property_id": {pid}, "from": {r[0]}, "to": {r[1]}, "metrics": {metrics}, "filter": {"user_type==new"}})
		mpaCompare(t, name+" new", a.Rows, []string{"user_type"}, map[string]map[string]float64{"new": {"users": want["new_users"], "new_users": want["new_users"], "sessions": want["new_users"]}})
	}
	if estimated == 0 {
		t.Errorf("no range of more than 512 users")
	}
	var days []string
	var byDay []map[string]float64
	for n := -14; n <= -2; n++ {
		days = append(days, day(n))
		byDay = append(byDay, count(day(n), day(n)))
	}
	a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {pid}, "from": {day(-14)}, "to": {day(-2)}, "metrics": {metrics}, "granularity": {"day"}})
	mpaCompareSeries(t, "users by day", a.Rows, days, byDay, metrics)
}
