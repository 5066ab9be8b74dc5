package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/simulate"
)

// TestAcceptanceBlackBox is an outside grader's audit of the browser hit
// path: it signs a merchant up through the gateway, sets rules, sends
// hand-made visitors by GET and POST /collect as docs/collection.md says, and
// compares the acquisition and behavior reports of yesterday, today and both
// with a small calculator of its own written from the brief and the docs'
// definitions (docs/processing.md), not from the product's code.
//
// The property's time zone is chosen so that its midnight was about two hours
// ago (zoneWithMidnightAgo): hits dated up to four hours back by qt fall on
// both local days.
func TestAcceptanceBlackBox(t *testing.T) {
	stack, cfg := startStack(t)
	gw := stack.GatewayURL()
	client := &http.Client{Timeout: 30 * time.Second}

	start := time.Now()
	zone, loc, midnight := zoneWithMidnightAgo(t)
	midnight = midnight.In(loc) // the calculator formats local days and hours of times derived from it
	t.Logf("time zone %s: local midnight %s, %s ago", zone, midnight.Format(time.RFC3339), start.Sub(midnight).Round(time.Second))

	api := &bbAPI{mpaClient: &mpaClient{t: t, ctx: context.Background(), http: client, gw: gw}}
	api.token = api.signUp(fmt.Sprintf("bbox-%d@shop.example", start.UnixNano()))
	prop := api.createProperty(api.token, map[string]any{
		"name": "Shop", "hostnames": []string{"shop.example"}, "time_zone": zone, "currency": "EUR",
	})
	rules := func(referralExclusions, userAgents string) json.RawMessage {
		return json.RawMessage(`{
			"exclusions": {"ip": ["203.0.113.0/24"], "user_agents": [` + userAgents + `]},
			"bot_filtering": true,
			"referral_exclusions": [` + referralExclusions + `],
			"pages": {"exclude": ["^/admin(/|$)"]},
			"page_path": {"strip_query": true, "keep_params": ["id"], "lowercase": true, "default_page": "index.html", "strip_trailing_slash": true},
			"channels": [{"name": "Partners", "source": "^partner-"}],
			"goals": [
				{"id": "signup", "name": "Signed up", "page_path": "^/welcome$", "value": 5},
				{"id": "purchase", "name": "Purchase", "event": {"category": "shop", "action": "purchase"}}
			]
		}`)
	}
	api.do("PUT", "/v1/properties/"+prop.ID+"/rules", api.token, rules(`"paypal.com"`, `"^InternalMonitor/"`), http.StatusOK, nil)
	api.waitForRulesAtCollection(prop.TrackingID, "InternalMonitor/1.0")
	m := &simulate.Merchant{Gateway: gw, AccessToken: api.token, PropertyID: prop.ID}
	yesterday, today := bbDay(midnight.Add(-time.Second), loc), bbDay(midnight, loc)

	// A property in a zone a half or three quarters of an hour off the
	// hour, when one had its midnight a while ago, with the same rules
	// but sessions that time out after 7 minutes: its local midnight, not
	// UTC's or the hour's, splits sessions and dates hits (bbFarTraffic).
	farZone, farMidnight, farOK := zoneWithOddMidnightAgo(t)
	var far mpaProperty
	if farOK {
		far = api.createProperty(api.token, map[string]any{
			"name": "Far", "hostnames": []string{"shop.example"}, "time_zone": farZone, "currency": "EUR",
		})
		farRules := strings.Replace(string(rules(`"paypal.com"`, `"^InternalMonitor/"`)), `"bot_filtering": true,`, `"bot_filtering": true, "session_timeout_minutes": 7,`, 1)
		api.do("PUT", "/v1/properties/"+far.ID+"/rules", api.token, json.RawMessage(farRules), http.StatusOK, nil)
	}
	farSends := bbFarTraffic()
	both := url.Values{"from": {yesterday}, "to": {today}}

	// A cookieless property: a visitor is its address and user agent, one
	// day at a time (docs/collection.md, "Cookieless properties"); its
	// sessions time out after 5 minutes.
	cookieless := api.createProperty(api.token, map[string]any{
		"name": "Cookieless", "hostnames": []string{"cookie.example"}, "time_zone": zone, "cookieless": true,
	})
	api.do("PUT", "/v1/properties/"+cookieless.ID+"/rules", api.token, json.RawMessage(`{"session_timeout_minutes": 5}`), http.StatusOK, nil)
	chrome := &bbVisitor{cid: "ignored-a", ua: bbChrome, ip: "198.51.100.200"}
	for _, s := range []bbSend{
		{v: chrome, host: "cookie.example", hits: []bbHit{{at: bbMin(-10), t: "pageview", page: "/x", hid: "c1"}}},
		{v: &bbVisitor{cid: "ignored-b", ua: bbChrome, ip: "198.51.100.200"}, host: "cookie.example", hits: []bbHit{{at: bbMin(10), t: "pageview", page: "/x", hid: "c2"}}},
		{v: &bbVisitor{ua: bbChrome, ip: "198.51.100.200"}, host: "cookie.example", get: true, hits: []bbHit{{at: bbMin(12), t: "pageview", page: "/y", hid: "c3"}}},
		{v: &bbVisitor{ua: bbIPhone, ip: "198.51.100.200"}, host: "cookie.example", get: true, hits: []bbHit{{at: bbMin(20), t: "pageview", page: "/x", hid: "c4"}}},
		{v: chrome, host: "cookie.example", hits: []bbHit{{at: bbMin(10), t: "pageview", page: "/x", hid: "c2"}}}, // re-sent
	} {
		api.send(cookieless.TrackingID, midnight, s)
	}

	// A user-agent exclusion is in the rules' newest version only: once a
	// hit of it is filtered, processing has them. (The poll asks the query
	// report, whose answers the result cache keeps apart from the
	// filtered report's, compared below.)
	sends := bbTraffic()
	var last time.Time
	lastErr := errors.New("not asked yet")
	waitForUserAgentHits := func(sent func(bbSend) bool) {
		t.Helper()
		want := 0.0
		for _, s := range sends {
			if sent(s) && s.v.excluded == "user_agent" {
				want += float64(len(s.hits))
			}
		}
		eventually.NoError(t, 60*time.Second, "the user-agent-excluded hits in the filtered report", func() error {
			if time.Since(last) < 250*time.Millisecond { // within the tenant's rate limit
				return lastErr
			}
			last = time.Now()
			a := getReport(context.Background(), t, client, m, "/v1/reports/behavior/query", url.Values{"dimensions": {"reason"}, "metrics": {"hits"}, "from": both["from"], "to": both["to"]})
			for _, r := range a.Rows {
				if r["reason"] == "user_agent" && num(r["hits"]) == want {
					return nil
				}
			}
			lastErr = fmt.Errorf("rows %v, want %v user_agent hits", a.Rows, want)
			return lastErr
		})
	}

	// Late hits and re-sends go once the rest is processed, so that they
	// change sessions already written, after processing restarted, and
	// after a rules change that derives a live session again.
	for _, s := range sends {
		if !s.late {
			api.send(prop.TrackingID, midnight, s)
		}
	}
	for _, s := range farSends {
		if farOK && !s.late {
			api.send(far.TrackingID, farMidnight, s)
		}
	}
	waitForUserAgentHits(func(s bbSend) bool { return !s.late })
	waitForProcessing(t, cfg, 60*time.Second)
	// The late hits meet a processor that knows their visitors only from
	// their saved state: the one that wrote it is killed.
	must(t, stack.Kill("processing"))
	eventually.NoError(t, 10*time.Second, "processing restarted", func() error { return stack.Restart(context.Background(), "processing") })
	api.do("PUT", "/v1/properties/"+prop.ID+"/rules", api.token, rules(`"paypal.com", "partner-blog.example"`, `"^InternalMonitor/", "^Probe2/"`), http.StatusOK, nil)
	api.waitForRulesAtCollection(prop.TrackingID, "Probe2/1.0")
	for _, s := range sends {
		if s.probe {
			api.send(prop.TrackingID, midnight, s)
		}
	}
	waitForUserAgentHits(func(s bbSend) bool { return !s.late || s.probe })
	for _, s := range sends {
		if s.late && !s.probe {
			api.send(prop.TrackingID, midnight, s)
		}
	}
	for _, s := range farSends {
		if farOK && s.late {
			api.send(far.TrackingID, farMidnight, s)
		}
	}
	// Realtime: hits of the last minutes, dated from now, to a property of
	// their own: the main traffic's latest hits fall within the last 30
	// minutes too when the property's midnight was less than about two
	// hours and twenty minutes ago (zoneWithMidnightAgo's choice depends on the hour).
	live := api.createProperty(api.token, map[string]any{"name": "Live", "hostnames": []string{"live.example"}, "time_zone": zone})
	ago := func(d time.Duration) time.Duration { return time.Since(midnight) - d }
	realtime := []bbSend{
		{v: &bbVisitor{cid: "bbox-rt-1", ua: bbChrome, ip: "198.51.100.91"}, hits: []bbHit{{at: ago(2 * time.Minute), t: "pageview", page: "/rt-a", ref: "https://www.google.com/", hid: "rt1"}}},
		{v: &bbVisitor{cid: "bbox-rt-2", ua: bbChrome, ip: "198.51.100.92"}, hits: []bbHit{
			{at: ago(12 * time.Minute), t: "pageview", page: "/rt-b", hid: "rt2"},
			{at: ago(time.Minute), t: "engagement", page: "/rt-b", et: 600000, hid: "rt3"},
		}},
		{v: &bbVisitor{cid: "bbox-rt-3", ua: bbChrome, ip: "198.51.100.93"}, hits: []bbHit{{at: ago(40 * time.Minute), t: "pageview", page: "/rt-c", hid: "rt4"}}},
		{v: &bbVisitor{cid: "bbox-rt-4", ua: bbChrome, ip: "198.51.100.94"}, hits: []bbHit{{at: ago(20 * time.Minute), t: "pageview", page: "/rt-a", hid: "rt5"}}},
		{v: &bbVisitor{cid: "bbox-rt-5", ua: "Googlebot/2.1 (+http://www.google.com/bot.html)", ip: "198.51.100.95", excluded: "bot"}, hits: []bbHit{{at: ago(time.Minute), t: "pageview", page: "/rt-a", hid: "rt6"}}},
	}
	for _, s := range realtime {
		s.host = "live.example"
		api.send(live.TrackingID, midnight, s)
	}
	// The cookieless property's timeout, learnt by now: exactly 5:00 after
	// a hit continues its session, 5:01 starts another.
	api.send(cookieless.TrackingID, midnight, bbSend{v: &bbVisitor{ua: bbChrome, ip: "198.51.100.201"}, host: "cookie.example", hits: []bbHit{
		{at: bbMin(30), t: "pageview", page: "/x", hid: "c5"},
		{at: bbMin(35), t: "pageview", page: "/y", hid: "c6"},
		{at: bbMin(40) + time.Second, t: "pageview", page: "/x", hid: "c7"},
	}})
	waitForProcessing(t, cfg, 60*time.Second)

	calc := bbCalculate(t, sends, midnight, 30*time.Minute)
	cm := &simulate.Merchant{Gateway: gw, AccessToken: api.token, PropertyID: cookieless.ID}
	for _, r := range []struct {
		name string
		q    url.Values
		want map[string]float64
	}{
		{"yesterday", url.Values{"range": {"yesterday"}}, map[string]float64{"users": 1, "new_users": 1, "sessions": 1, "pageviews": 1}},
		{"today", url.Values{"range": {"today"}}, map[string]float64{"users": 3, "new_users": 3, "sessions": 4, "pageviews": 6}},
		{"both days", both, map[string]float64{"users": 4, "new_users": 4, "sessions": 5, "pageviews": 7}},
	} {
		q := maps.Clone(r.q)
		q.Set("metrics", "users,new_users,sessions,pageviews")
		a := getReport(context.Background(), t, client, cm, "/v1/reports/acquisition/overview", q)
		for metric, want := range r.want {
			if got := num(a.Totals[metric]); got != want {
				t.Errorf("cookieless %s: %s = %v, expected %v", r.name, metric, got, want)
			}
		}
	}

	// The realtime view: active users by any hit of theirs (the ping too),
	// pageviews, pages and sources of the last 30 minutes; bots none.
	var rt realtimeView
	api.do("GET", "/v1/reports/realtime?property_id="+live.ID, api.token, nil, http.StatusOK, &rt)
	if got := fmt.Sprint(rt.Active5, rt.Active30, rt.Pageviews, rt.TopPages, rt.TopSources); got != "2 3 3 [{/rt-a 2} {/rt-b 1}] [{(direct) 2} {google 1}]" {
		t.Errorf("realtime: active in 5 and 30 minutes, pageviews, pages, sources: %s, expected 2 3 3 [{/rt-a 2} {/rt-b 1}] [{(direct) 2} {google 1}]", got)
	}

	// Today against the previous period, yesterday.
	a := getReport(context.Background(), t, client, m, "/v1/reports/acquisition/overview", url.Values{"range": {"today"}, "compare": {"previous_period"}, "metrics": {"users,new_users,sessions,bounces,pageviews,conversions,goal_value"}})
	for metric, want := range calc.view(false).acq["total"][""] {
		if got, ok := a.PreviousTotals[metric]; ok && math.Abs(num(got)-want) > bbTolerance(metric) {
			t.Errorf("today compared: previous_totals %s = %v, expected yesterday's %v", metric, got, want)
		}
	}
	if len(a.PreviousTotals) != 7 {
		t.Errorf("today compared: previous_totals %v", a.PreviousTotals)
	}
	bbCompareDays(t, client, m, "", calc, yesterday, today)

	if !farOK {
		return
	}
	farCalc := bbCalculate(t, farSends, farMidnight, 7*time.Minute)
	fm := &simulate.Merchant{Gateway: gw, AccessToken: api.token, PropertyID: far.ID}
	farLoc := farMidnight.Location()
	bbCompareDays(t, client, fm, "far ", farCalc, bbDay(farMidnight.Add(-time.Second), farLoc), bbDay(farMidnight, farLoc))
}

// bbCompareDays compares every report of yesterday, today and both with
// the calculator's.
func bbCompareDays(t *testing.T, client *http.Client, m *simulate.Merchant, prefix string, calc *bbCalc, yesterday, today string) {
	t.Helper()
	for _, r := range []struct {
		name string
		days []bool // today?
		q    url.Values
	}{
		{"yesterday", []bool{false}, url.Values{"range": {"yesterday"}}},
		{"today", []bool{true}, url.Values{"range": {"today"}}},
		{"both days", []bool{false, true}, url.Values{"from": {yesterday}, "to": {today}}},
	} {
		bbCompareAll(t, client, m, prefix+r.name, r.q, calc.view(r.days...))
	}
}

// zoneWithOddMidnightAgo picks a zone whose offset is not a whole number
// of hours and whose local midnight was between 40 minutes and 3 hours 20
// minutes ago, so that bbFarTraffic's hits, 25 minutes either side of it,
// can be dated there by qt; ok is false when no such zone has its
// midnight then (about half of the day).
func zoneWithOddMidnightAgo(t *testing.T) (zone string, midnight time.Time, ok bool) {
	t.Helper()
	now := time.Now()
	for _, z := range []string{"Asia/Kathmandu", "Asia/Kolkata", "Asia/Tehran", "Asia/Kabul", "Asia/Yangon",
		"Australia/Darwin", "Australia/Adelaide", "Australia/Eucla", "Pacific/Chatham", "Pacific/Marquesas", "America/St_Johns"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		if _, off := now.In(loc).Zone(); off%3600 == 0 {
			continue // whole hours in this season
		}
		ln := now.In(loc)
		m := time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
		if ago := now.Sub(m); ago >= 40*time.Minute && ago <= 3*time.Hour+20*time.Minute {
			t.Logf("far zone %s: local midnight %s, %s ago", z, m.Format(time.RFC3339), ago.Round(time.Second))
			return z, m, true
		}
	}
	t.Logf("no zone off the hour had its midnight 40 minutes to 3 hours 20 minutes ago: the far property is not checked")
	return "", time.Time{}, false
}

// bbFarTraffic is the far property's traffic: the session timeout of 7
// minutes at its edges and at the local midnight, and hits sent late
// into and before a day's sessions.
func bbFarTraffic() []bbSend {
	m := time.Minute
	pv := func(at time.Duration, page, hid string) bbHit {
		return bbHit{at: at, t: "pageview", page: page, hid: hid}
	}
	v := func(cid string) *bbVisitor { return &bbVisitor{cid: cid, ua: bbChrome, ip: "198.51.100.120"} }
	f5, f7 := v("far-5"), v("far-7")
	return []bbSend{
		// Exactly 7:00 continues, 7:01 ends (the property's timeout).
		{v: v("far-1"), hits: []bbHit{pv(m, "/a", "f1a"), pv(8*m, "/b", "f1b"), pv(15*m+time.Second, "/c", "f1c")}},
		// The local midnight ends a session within the timeout.
		{v: v("far-2"), hits: []bbHit{pv(-3*m, "/n1", "f2a"), pv(2*m, "/n2", "f2b")}},
		// 7:00 apart across midnight: two sessions, the second at T00.
		{v: v("far-3"), hits: []bbHit{pv(-7*m, "/y1", "f3a"), pv(0, "/z", "f3b")}},
		// A hit of yesterday sent after today's: yesterday's session is
		// the user's first.
		{v: v("far-4"), hits: []bbHit{pv(4*m, "/t", "f4a")}},
		{v: v("far-4"), late: true, hits: []bbHit{pv(-4*m, "/l", "f4b")}},
		// Out of order: the late pageview lands, the late event measures
		// the last page.
		{v: f5, hits: []bbHit{pv(12*m, "/o2", "f5b")}},
		{v: f5, late: true, hits: []bbHit{
			pv(10*m, "/o1", "f5a"),
			{at: 14 * m, t: "event", page: "/o2", ec: "ui", ea: "open", hid: "f5c"},
		}},
		// A ping 7:00 after the last hit extends the session, 7:01 after
		// it joins none.
		{v: v("far-6"), hits: []bbHit{
			pv(5*m, "/r", "f6a"),
			{at: 12 * m, t: "engagement", page: "/r", et: 420000, hid: "f6b"},
			{at: 19*m + time.Second, t: "engagement", page: "/r", et: 1000, hid: "f6c"},
		}},
		// Excluded hits count on the local day of their time.
		{v: &bbVisitor{cid: "far-8", ua: bbChrome, ip: "203.0.113.20", excluded: "ip"}, hits: []bbHit{pv(-2*m, "/x", "f8a"), pv(2*m, "/x", "f8b")}},
		{v: v("far-9"), hits: []bbHit{pv(-m, "/admin/", "f9a"), pv(3*m, "/admin/", "f9b"), pv(4*m, "/in", "f9c")}},
		// A late hit within the timeout of each of two sessions makes them
		// one. (Gaps between the hits of two requests are not exact to the
		// millisecond: qt counts from the receipt.)
		{v: f7, hits: []bbHit{pv(16*m, "/p1", "f7a"), pv(29*m, "/p3", "f7c")}},
		{v: f7, late: true, hits: []bbHit{pv(22*m+30*time.Second, "/p2", "f7b")}},
	}
}

func bbDay(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

const bbChrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// bbHit is one hit of a visitor, dated by its offset from the property's
// local midnight (negative: yesterday).
type bbHit struct {
	at         time.Duration
	t          string // pageview, event, engagement
	page       string // path and query of dl on https://shop.example
	ref        string
	ec, ea, el string
	ev         string
	ni         bool
	et         int
	hid        string
	extra      map[string]string // other parameters (cs, exd...)
	qt         int64             // a queue time to send instead of at's
	rejected   bool              // collection refuses it: in no report
}

type bbVisitor struct {
	cid, ua, ip string
	excluded    string // the filtered-hits reason its hits get, or ""
	rederived   bool   // has hits under the changed rules: its live sessions are derived under them
}

// bbSend is one request: a batch (POST) or one pixel per hit (GET).
type bbSend struct {
	v      *bbVisitor
	hits   []bbHit
	get    bool
	host   string // of dl: shop.example when empty
	status int    // the answer expected when not the usual
	head   bool   // by HEAD /collect: the pixel's headers, no hit
	late   bool   // sent after the others are processed, and the rules changed
	probe  bool   // late: the first, a hit only the changed rules exclude
}

func bbMin(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

// bbTraffic is the hand-made traffic: each visitor tests rules of
// docs/processing.md, named beside it.
func bbTraffic() []bbSend {
	n := 0
	hid := func() string { n++; return fmt.Sprintf("bbox-hit-%03d", n) }
	pv := func(at time.Duration, page, ref string) bbHit {
		return bbHit{at: at, t: "pageview", page: page, ref: ref, hid: hid()}
	}
	ev := func(at time.Duration, page, cat, act, label, value string, ni bool) bbHit {
		return bbHit{at: at, t: "event", page: page, ec: cat, ea: act, el: label, ev: value, ni: ni, hid: hid()}
	}
	ping := func(at time.Duration, page string, et int) bbHit {
		return bbHit{at: at, t: "engagement", page: page, et: et, hid: hid()}
	}
	visitor := func(i int, ua, ip, excluded string) *bbVisitor {
		return &bbVisitor{cid: fmt.Sprintf("bbox-visitor-%02d", i), ua: ua, ip: ip, excluded: excluded}
	}
	v := make([]*bbVisitor, 90)
	for i := range v {
		v[i] = visitor(i, bbChrome, fmt.Sprintf("198.51.100.%d", 10+i), "")
	}
	v[7] = visitor(7, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "198.51.100.17", "bot")
	v[8] = visitor(8, bbChrome, "203.0.113.5", "ip")
	v[9] = visitor(9, "InternalMonitor/1.0", "198.51.100.19", "user_agent")
	v[19].ua = bbIPhone
	v[61].rederived = true
	v[63] = visitor(63, "Probe2/1.0", "198.51.100.73", "user_agent")
	v[66] = visitor(66, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "203.0.113.7", "ip")
	v[67] = visitor(67, "internalmonitor/2.0", "198.51.100.77", "user_agent")
	dup := pv(bbMin(95), "/dup", "")
	resent := dup
	resent.at = bbMin(96) // a re-send dated anew keeps its event ID
	ipExcluded := pv(bbMin(67), "/", "")

	v6 := bbSend{v: v[6], hits: []bbHit{
		// utm tags: google / cpc is Paid Search
		pv(bbMin(60), "/pricing?utm_source=google&utm_medium=cpc&utm_campaign=brand", ""),
		// an event goal worth the event's value, once per session (first value)
		ev(bbMin(61), "/pricing?utm_source=google&utm_medium=cpc&utm_campaign=brand", "shop", "purchase", "", "49.99", false),
		ev(bbMin(62), "/pricing?utm_source=google&utm_medium=cpc&utm_campaign=brand", "shop", "purchase", "", "10", false),
		// a page goal with a fixed value
		pv(bbMin(63), "/welcome", "https://shop.example/pricing"),
	}}
	return []bbSend{
		// The user-agent exclusion first: the test waits for it.
		{v: v[9], hits: []bbHit{pv(bbMin(68), "/", "")}},
		// Inactivity: exactly 30:00 continues, 30:01 ends (one batch: exact gaps).
		{v: v[1], hits: []bbHit{
			pv(bbMin(10), "/", "https://www.google.com/"),
			pv(bbMin(40), "/b", "https://shop.example/"),
			pv(bbMin(70)+time.Second, "/c", "https://shop.example/b"),
		}},
		// Midnight ends a session; new yesterday, returning today.
		{v: v[2], hits: []bbHit{
			pv(bbMin(-20), "/products?utm_source=newsletter&utm_medium=email&utm_campaign=dec", ""),
			pv(bbMin(5), "/cart", "https://shop.example/products"),
		}},
		// Campaign changes: same campaign with another utm_content does not
		// split; gclid and msclkid do.
		{v: v[3], hits: []bbHit{
			pv(bbMin(20), "/landing?utm_source=facebook&utm_medium=cpc&utm_campaign=winter", ""),
			pv(bbMin(22), "/shoes", "https://shop.example/landing"),
			pv(bbMin(24), "/landing?utm_source=facebook&utm_medium=cpc&utm_campaign=winter&utm_content=b", "https://shop.example/shoes"),
			pv(bbMin(26), "/promo?gclid=abc123", ""),
			ev(bbMin(27), "/promo?gclid=abc123", "video", "play", "", "3", false),
			pv(bbMin(29), "/promo?msclkid=xyz789", ""),
		}},
		// An external referral; a referral exclusion and a subdomain of the
		// site neither attribute nor split; after 31 minutes the excluded
		// referrer's session is Direct.
		{v: v[4], hits: []bbHit{
			pv(bbMin(30), "/", "https://news.example.org/article?id=7"),
			pv(bbMin(35), "/thanks", "https://checkout.paypal.com/pay"),
			pv(bbMin(40), "/welcome", "https://blog.shop.example/post"),
			pv(bbMin(71), "/", "https://www.paypal.com/"),
		}},
		// Organic Social; a non-interaction event and a ping keep the bounce
		// and measure the time on page; a ping after the timeout is ignored.
		// By the pixel.
		{v: v[5], get: true, hits: []bbHit{
			pv(bbMin(50), "/blog/post", "https://l.facebook.com/"),
			withRef(ev(bbMin(51), "/blog/post", "scroll", "depth", "75%", "", true), "https://l.facebook.com/"),
			ping(bbMin(53), "/blog/post", 180000),
			ping(bbMin(90), "/blog/post", 60000),
		}},
		v6,
		{v: v6.v, hits: v6.hits, late: true}, // re-sent: the same event IDs count once
		{v: v[7], hits: []bbHit{pv(bbMin(-30), "/", ""), pv(bbMin(65), "/", ""), pv(bbMin(66), "/pricing", "https://shop.example/")}},
		{v: v[8], get: true, hits: []bbHit{ipExcluded}},
		{v: v[8], get: true, late: true, hits: []bbHit{ipExcluded}}, // an excluded hit re-sent counts once
		// A late hit lands between two others; utm_term and utm_content
		// alone are no campaign.
		{v: v[10], hits: []bbHit{pv(bbMin(80), "/a", ""), pv(bbMin(84), "/c?utm_term=blue&utm_content=z", "https://shop.example/b")}},
		{v: v[10], late: true, hits: []bbHit{pv(bbMin(82), "/b", "https://shop.example/a")}},
		// A late hit becomes the session's first: it takes over attribution
		// and the landing page.
		{v: v[11], hits: []bbHit{pv(bbMin(90), "/x", "")}},
		{v: v[11], get: true, late: true, hits: []bbHit{pv(bbMin(88), "/y", "https://www.bing.com/search?q=shoes")}},
		// Yesterday only: Organic Search, a non-interaction event, a bounce.
		{v: v[12], get: true, hits: []bbHit{
			pv(bbMin(-40), "/", "https://duckduckgo.com/"),
			ev(bbMin(-39), "/", "ui", "hover", "menu", "", true),
		}},
		// A session of one event: no landing page, no bounce.
		{v: v[13], hits: []bbHit{ev(bbMin(100), "/x", "outbound", "click", "https://x.example/", "", false)}},
		// An interaction event before the first pageview: the pageview's
		// page lands (query kept); a page goal matches the path without
		// its query.
		{v: v[14], hits: []bbHit{
			ev(bbMin(102), "/start", "cta", "click", "", "", false),
			pv(bbMin(103), "/welcome?ref=mail", ""),
		}},
		// A late hit before midnight makes yesterday's session the user's
		// first: today's is returning, and the user new yesterday.
		{v: v[15], hits: []bbHit{pv(bbMin(15), "/today", "https://news.example.org/")}},
		{v: v[15], late: true, hits: []bbHit{pv(bbMin(-10), "/yest", "https://duckduckgo.com/")}},
		// One second apart across midnight: two sessions, two days.
		{v: v[16], hits: []bbHit{pv(-time.Second, "/late", ""), pv(0, "/early", "")}},
		// A ping extends the session: 30:00 after it continues.
		{v: v[17], hits: []bbHit{
			pv(bbMin(5), "/read", ""),
			ping(bbMin(30), "/read", 1500000),
			pv(bbMin(60), "/next", "https://shop.example/read"),
		}},
		// A ping after midnight joins no session (a session never spans
		// two days; pings start none).
		{v: v[18], hits: []bbHit{pv(bbMin(-5), "/night", ""), ping(bbMin(2), "/night", 420000)}},
		// cs overrides utm_source field by field; channels match
		// case-insensitively; an exception is a non-interaction event.
		// By the pixel, from a phone.
		{v: v[19], get: true, hits: []bbHit{
			withExtra(pv(bbMin(45), "/deal?utm_source=partner&utm_medium=Email&utm_campaign=Xmas", ""), map[string]string{"cs": "Mailchimp"}),
			withExtra(bbHit{at: bbMin(46), t: "exception", page: "/deal", hid: hid()}, map[string]string{"exd": "TypeError: x is undefined", "exf": "0"}),
		}},
		// A campaign back to the first one's is a change too: three sessions.
		{v: v[20], hits: []bbHit{
			pv(bbMin(105), "/p?utm_source=a&utm_medium=social&utm_campaign=x", ""),
			pv(bbMin(106), "/p?utm_source=b&utm_medium=social&utm_campaign=x", ""),
			pv(bbMin(107), "/p?utm_source=a&utm_medium=social&utm_campaign=x", ""),
		}},
		// A hit twice in one batch, and re-sent later with another time.
		{v: v[21], hits: []bbHit{dup, dup}},
		{v: v[21], get: true, late: true, hits: []bbHit{resent}},
		// Event values summed to a millionth; an exponent.
		{v: v[22], hits: []bbHit{
			pv(bbMin(108), "/calc", ""),
			ev(bbMin(108)+10*time.Second, "/calc", "calc", "add", "", "0.1", false),
			ev(bbMin(108)+20*time.Second, "/calc", "calc", "add", "", "0.2", false),
			ev(bbMin(108)+30*time.Second, "/calc", "calc", "big", "", "1e3", false),
		}},
		// A late hit bridges two sessions: one session, the first's source.
		{v: v[23], hits: []bbHit{pv(bbMin(60), "/m1", "https://www.google.com/"), pv(bbMin(100), "/m2", "https://news.example.org/")}},
		{v: v[23], late: true, hits: []bbHit{pv(bbMin(80), "/m3", "https://shop.example/m1")}},
		// A late hit with another campaign starts a session that takes the
		// next one's hits.
		{v: v[24], hits: []bbHit{pv(bbMin(10), "/c1?utm_source=x&utm_medium=cpc&utm_campaign=a", ""), pv(bbMin(50), "/c2", "")}},
		{v: v[24], late: true, hits: []bbHit{pv(bbMin(30), "/c3?utm_source=y&utm_medium=cpc&utm_campaign=b", "")}},
		// An excluded page is as if never sent: the session starts at the
		// next page (the site itself as referrer: Direct) ...
		{v: v[25], hits: []bbHit{pv(bbMin(20), "/admin/login", "https://www.google.com/"), pv(bbMin(21), "/shop", "https://shop.example/admin/login")}},
		// ... and does not keep a session alive.
		{v: v[26], hits: []bbHit{pv(bbMin(62), "/a1", ""), pv(bbMin(80), "/admin/x", "https://shop.example/a1"), pv(bbMin(93), "/a2", "https://shop.example/admin/x")}},
		// A ping exactly 30:00 after a hit joins its session; 30:01 does not.
		{v: v[27], hits: []bbHit{pv(bbMin(10), "/p30", ""), ping(bbMin(40), "/p30", 1800000), ping(bbMin(70)+time.Second, "/p30", 1000)}},
		// A non-interaction event after the timeout starts a session.
		{v: v[28], hits: []bbHit{pv(bbMin(5), "/n1", ""), ev(bbMin(36), "/n1", "video", "progress", "50%", "", true)}},
		// Two pageviews of one time keep the order they were sent in.
		{v: v[29], hits: []bbHit{pv(bbMin(33), "/t1", ""), pv(bbMin(33), "/t2", "https://shop.example/t1")}},
		// A timing hit is a non-interaction event valued by its time.
		{v: v[30], get: true, hits: []bbHit{
			pv(bbMin(12), "/perf", ""),
			withExtra(bbHit{at: bbMin(12) + 5*time.Second, t: "timing", page: "/perf", hid: hid()}, map[string]string{"utc": "perf", "utv": "load", "utt": "1234"}),
		}},
		// A non-ASCII path; a referrer's host in capitals with www. and a
		// query: host in lower case, path kept, no query.
		{v: v[31], hits: []bbHit{pv(bbMin(14), "/café", "https://WWW.News.Example.org/Path/Deep?q=1")}},
		// dp names the page, dl's tags attribute (trimmed, case kept).
		{v: v[32], get: true, hits: []bbHit{withExtra(pv(bbMin(16), "/?utm_source=%20tw%20&utm_medium=social&utm_campaign=%20Spring%20Sale%20", ""), map[string]string{"dp": "/virtual"})}},
		// Google on a country domain is the search engine google.
		{v: v[33], hits: []bbHit{pv(bbMin(18), "/s", "https://www.google.de/search?q=x")}},
		// A campaign after a session without one splits it; the same gclid
		// again does not, another one does.
		{v: v[34], hits: []bbHit{
			pv(bbMin(40), "/d1", ""),
			pv(bbMin(41), "/d2?utm_source=newsletter&utm_medium=email&utm_campaign=jan", "https://mail.google.com/"),
			pv(bbMin(43), "/g?gclid=A1", ""),
			pv(bbMin(44), "/g?gclid=A1", "https://shop.example/g"),
			pv(bbMin(45), "/g?gclid=B2", ""),
		}},
		// A custom channel rule comes before the default group.
		{v: v[35], hits: []bbHit{pv(bbMin(47), "/partner?utm_source=partner-a&utm_medium=cpc", "")}},
		// Engaged means longer than 10 seconds: exactly 10 is not.
		{v: v[36], hits: []bbHit{pv(bbMin(55), "/ten", ""), ev(bbMin(55)+10*time.Second, "/ten", "ui", "seen", "", "", true)}},
		{v: v[37], hits: []bbHit{pv(bbMin(56), "/eleven", ""), ping(bbMin(56)+11*time.Second, "/eleven", 11000)}},
		// A ping before any pageview or event is in no session.
		{v: v[38], hits: []bbHit{ping(bbMin(70), "/early-ping", 5000), pv(bbMin(71), "/after-ping", "")}},
		// A late ping extends its session and the last page's time.
		{v: v[39], hits: []bbHit{pv(bbMin(40), "/l1", ""), pv(bbMin(42), "/l2", "https://shop.example/l1")}},
		{v: v[39], late: true, hits: []bbHit{ping(bbMin(45), "/l2", 180000)}},
		// A late goal completion before the one counted becomes the
		// session's first: its value is the conversion's.
		{v: v[40], hits: []bbHit{pv(bbMin(4), "/buy", ""), ev(bbMin(10), "/buy", "shop", "purchase", "", "20", false)}},
		{v: v[40], late: true, hits: []bbHit{ev(bbMin(6), "/buy", "shop", "purchase", "", "50", false)}},
		// One event ID from two visitors is two hits: IDs are per client.
		{v: v[41], hits: []bbHit{{at: bbMin(57), t: "pageview", page: "/same-id", hid: "1"}}},
		{v: v[42], hits: []bbHit{{at: bbMin(58), t: "pageview", page: "/same-id", hid: "1"}}},
		// An event without category; a category holding " / ".
		{v: v[43], hits: []bbHit{
			pv(bbMin(59), "/ev", ""),
			ev(bbMin(59)+20*time.Second, "/ev", "", "signup_click", "", "", false),
			ev(bbMin(59)+30*time.Second, "/ev", "Video / YouTube", "play", "intro / part 1", "2.5", false),
		}},
		// A source holding " / ".
		{v: v[44], hits: []bbHit{pv(bbMin(61), "/nl?utm_source=news%20/%20letter&utm_medium=email&utm_campaign=w", "")}},
		// A % that is no escape is taken as itself.
		{v: v[45], hits: []bbHit{pv(bbMin(63), "/sale-50%-off", "")}},
		// dh and dp without dl: the tags come from dp.
		// GA4's channel group, top-down.
		{v: v[50], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=gdn&utm_medium=display&utm_campaign=c", "")}},
		{v: v[51], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=google&utm_medium=cpc&utm_campaign=pmax-cross-network", "")}},
		{v: v[52], hits: []bbHit{pv(bbMin(66), "/ch", "https://www.youtube.com/watch?v=1")}},
		{v: v[53], hits: []bbHit{pv(bbMin(66), "/ch", "https://www.amazon.de/")}},
		{v: v[54], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=sms&utm_medium=text", "")}},
		{v: v[55], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=net&utm_medium=affiliate", "")}},
		{v: v[56], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=y&utm_medium=cpc&utm_campaign=summer-shopping", "")}},
		{v: v[57], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=app&utm_medium=push", "")}},
		{v: v[58], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=foo&utm_medium=bar", "")}},
		{v: v[59], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=yt&utm_medium=video", "")}},
		{v: v[60], hits: []bbHit{pv(bbMin(66), "/ch?utm_source=(direct)", "")}},
		// A rules change (a referral exclusion added) derives a visitor's
		// live session again with its next hit, not another's.
		{v: v[61], hits: []bbHit{pv(bbMin(100), "/r1", "https://partner-blog.example/post")}},
		{v: v[61], late: true, hits: []bbHit{pv(bbMin(102), "/r2", "https://shop.example/r1")}},
		{v: v[62], hits: []bbHit{pv(bbMin(100), "/r1", "https://partner-blog.example/post")}},
		{v: v[63], late: true, probe: true, hits: []bbHit{pv(bbMin(101), "/", "")}},
		// A late interaction event before a bounced pageview: no bounce any
		// more, the landing page kept.
		{v: v[64], hits: []bbHit{pv(bbMin(75), "/bx", "https://www.bing.com/")}},
		{v: v[64], late: true, hits: []bbHit{ev(bbMin(74), "/bx", "ui", "open", "", "", false)}},
		// A late hit with a campaign splits a session it falls in.
		{v: v[65], hits: []bbHit{pv(bbMin(10), "/s1", ""), pv(bbMin(20), "/s3", "https://shop.example/s1")}},
		{v: v[65], late: true, hits: []bbHit{pv(bbMin(15), "/s2?utm_source=late&utm_medium=email&utm_campaign=z", "")}},
		// The first exclusion that matches names the reason: a crawler from
		// an excluded address is ip; user-agent patterns ignore case.
		{v: v[66], hits: []bbHit{pv(bbMin(76), "/", "")}},
		{v: v[67], hits: []bbHit{pv(bbMin(76), "/", "")}},
		// A page on www. of the site, its referrer the site: Direct.
		{v: v[68], hits: []bbHit{pv(bbMin(77), "/w", "https://shop.example/")}, host: "www.shop.example"},
		// The oldest queue time accepted: exactly four hours.
		{v: v[69], hits: []bbHit{{t: "pageview", page: "/oldest", qt: 4 * 3600 * 1000, hid: hid()}}},
		// Campaign values are trimmed: the same campaign spelt with spaces
		// around is no change; another case is.
		{v: v[70], hits: []bbHit{
			pv(bbMin(78), "/t?utm_source=tw&utm_medium=social", ""),
			pv(bbMin(79), "/t?utm_source=%20tw%20&utm_medium=social%20", ""),
			pv(bbMin(80), "/t?utm_source=TW&utm_medium=social", ""),
		}},
		// gclid with utm tags: google / cpc and the tags' campaign; the same
		// tags without the click ID are another campaign.
		{v: v[71], hits: []bbHit{
			pv(bbMin(81), "/ads?gclid=G7&utm_source=adwords&utm_medium=ppc&utm_campaign=brand", ""),
			pv(bbMin(82), "/ads?gclid=G7&utm_source=adwords&utm_medium=ppc&utm_campaign=brand", ""),
			pv(bbMin(83), "/ads?utm_source=adwords&utm_medium=ppc&utm_campaign=brand", ""),
		}},
		// A fragment's tags are no tags; an app's referrer is a referral, a
		// relative one none; one with space around is read without it.
		{v: v[72], hits: []bbHit{pv(bbMin(84), "/f#utm_source=x&utm_medium=email", "android-app://com.slack/")}},
		{v: v[73], hits: []bbHit{pv(bbMin(84), "/f", "/relative/path")}},
		{v: v[74], hits: []bbHit{pv(bbMin(84), "/f", " https://news.example.org/spaced ")}},
		// A batch with rejected hits stores its valid ones (400): an event
		// without action, a foreign host, a queue time over four hours.
		{v: v[75], status: http.StatusBadRequest, hits: []bbHit{
			pv(bbMin(85), "/kept", ""),
			{at: bbMin(86), t: "event", page: "/kept", ec: "no-action", hid: hid(), rejected: true},
			withExtra(bbHit{at: bbMin(86), t: "pageview", page: "/kept", hid: hid(), rejected: true}, map[string]string{"dh": "evil.example"}),
			{t: "pageview", page: "/kept", qt: 4*3600*1000 + 1, hid: hid(), rejected: true},
		}},
		// The page_path clean-up makes one page of several spellings.
		{v: v[76], hits: []bbHit{
			pv(bbMin(87), "/Docs/Index.html?id=3&x=1", ""),
			pv(bbMin(88), "/docs/?id=3", "https://shop.example/Docs/Index.html?id=3&x=1"),
			pv(bbMin(89), "/Docs/Guide/", "https://shop.example/docs/?id=3"),
			pv(bbMin(90), "/index.html", "https://shop.example/Docs/Guide/"),
		}},
		// A late hit becomes the user's first session: new-ness moves to
		// its row, the session that was first is returning.
		{v: v[77], hits: []bbHit{pv(bbMin(60), "/n", "https://www.google.com/"), pv(bbMin(100), "/n2", "")}},
		{v: v[77], late: true, hits: []bbHit{pv(bbMin(20), "/n0?utm_source=digest&utm_medium=email", "")}},
		// An excluded hit is no session: the visitor's first is the one
		// from home, new then; a dropped page yesterday is none either.
		{v: &bbVisitor{cid: "bbox-visitor-78", ua: bbChrome, ip: "203.0.113.9", excluded: "ip"}, get: true, hits: []bbHit{pv(bbMin(10), "/office", "")}},
		{v: v[78], hits: []bbHit{pv(bbMin(20), "/home", "")}},
		{v: v[79], hits: []bbHit{pv(bbMin(-25), "/admin/", "")}},
		{v: v[79], hits: []bbHit{pv(bbMin(25), "/back", "")}},
		// A dropped page between two: the first's time runs to the second.
		{v: v[81], hits: []bbHit{pv(bbMin(92), "/k1", ""), pv(bbMin(97), "/admin/panel", ""), pv(bbMin(102), "/k2", "")}},
		// A refund as a negative purchase: the goal is worth the event's
		// (negative) value.
		{v: v[82], hits: []bbHit{pv(bbMin(93), "/refund", ""), ev(bbMin(94), "/refund", "shop", "purchase", "refund", "-5", false)}},
		// Without event IDs: a pixel loaded twice in a second is one hit;
		// twins in one batch are two, and stay two when it is re-sent.
		{v: v[83], get: true, hits: []bbHit{{at: bbMin(95), t: "pageview", page: "/nohid"}}},
		{v: v[83], get: true, hits: []bbHit{{at: bbMin(95), t: "pageview", page: "/nohid"}}},
		{v: v[84], hits: []bbHit{{at: bbMin(96), t: "pageview", page: "/twin"}, {at: bbMin(96), t: "pageview", page: "/twin"}}},
		{v: v[84], late: true, hits: []bbHit{{at: bbMin(96), t: "pageview", page: "/twin"}, {at: bbMin(96), t: "pageview", page: "/twin"}}},
		// A link checker's HEAD of the pixel is no hit.
		{v: v[80], get: true, head: true, hits: []bbHit{{at: bbMin(91), t: "pageview", page: "/head", hid: hid(), rejected: true}}},
		{v: v[46], get: true, hits: []bbHit{withExtra(bbHit{at: bbMin(64), t: "pageview", hid: hid()}, map[string]string{"dh": "shop.example", "dp": "/dh-only?utm_source=q&utm_medium=cpc"})}},
	}
}

func withRef(h bbHit, ref string) bbHit { h.ref = ref; return h }

func withExtra(h bbHit, extra map[string]string) bbHit { h.extra = extra; return h }

const bbIPhone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"

// bbAPI is the Measurement API audit's client (the gateway, retrying a 503
// just after start) with the merchant's token and the browser's requests.
type bbAPI struct {
	*mpaClient
	token string
}

// waitForRulesAtCollection asks the validation endpoint until every
// collection instance (ten answers in a row) says the new rules exclude a
// hit of the excluded user agent.
func (a *bbAPI) waitForRulesAtCollection(tid, userAgent string) {
	a.t.Helper()
	a.waitForCollection("collection has the new rules", 30*time.Second, tid, "https://shop.example/", userAgent, func(answer string) bool {
		return strings.Contains(answer, `"user_agent_excluded"`)
	})
}

// waitForCollection asks collection's validation endpoint about a pageview
// of page with the user agent (Go's own when empty) until ok accepts its
// answer steadily.
func (c *mpaClient) waitForCollection(what string, timeout time.Duration, tid, page, userAgent string, ok func(answer string) bool) {
	c.t.Helper()
	c.steadily(what, timeout, func() (bool, string, error) {
		q := url.Values{"v": {"1"}, "tid": {tid}, "t": {"pageview"}, "cid": {"probe"}, "dl": {page}}
		req, _ := http.NewRequest("GET", c.gw+"/debug/collect?"+q.Encode(), nil)
		if userAgent != "" {
			req.Header.Set("User-Agent", userAgent)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return false, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return ok(string(b)), resp.Status + ": " + string(b), nil
	})
}

// waitForSecret asks the Measurement API's validation endpoint until it
// steadily calls an event sent with secret valid: a new secret reaches
// every collection instance through config-svc's change feed, and an
// instance that cached the property before it refuses the secret until
// then. (The endpoint answers 200 either way, as GA4's does: the verdict
// is in the body.)
func (c *mpaClient) waitForSecret(tid, secret string) {
	c.t.Helper()
	c.steadily("collection knows the new API secret", 30*time.Second, func() (bool, string, error) {
		code, b := c.post("/debug/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "",
			map[string]any{"client_id": "probe", "events": []map[string]any{{"name": "page_view", "params": map[string]any{"page_location": "https://shop.example/"}}}})
		var res struct {
			Valid bool `json:"valid"`
		}
		_ = json.Unmarshal([]byte(b), &res)
		return code == http.StatusOK && res.Valid, fmt.Sprintf("%d %s", code, b), nil
	})
}

// steadily calls probe until it answers ok ten times in a row, which
// every collection instance behind the gateway's round robin is then all
// but sure to have answered.
func (c *mpaClient) steadily(what string, timeout time.Duration, probe func() (ok bool, answer string, err error)) {
	c.t.Helper()
	inARow := 0
	eventually.NoError(c.t, timeout, what, func() error {
		ok, answer, err := probe()
		if err != nil || !ok {
			inARow = 0
			return cmp.Or(err, errors.New(answer))
		}
		if inARow++; inARow < 10 {
			return fmt.Errorf("%d answers in a row", inARow)
		}
		return nil
	})
}

// send sends one request, dating each hit by qt against the clock read once
// for the request, so that the gaps within a request are exact.
func (a *bbAPI) send(tid string, midnight time.Time, s bbSend) {
	a.t.Helper()
	now := time.Now()
	host := s.host
	if host == "" {
		host = "shop.example"
	}
	for i, h := range s.hits {
		if h.qt > 0 { // dated by its queue time: the calculator reads the time it gets
			s.hits[i].at = now.Add(-time.Duration(h.qt) * time.Millisecond).Sub(midnight)
		}
	}
	params := func(h bbHit) map[string]string {
		p := map[string]string{"v": "1", "t": h.t,
			"qt": strconv.FormatInt(now.Sub(midnight.Add(h.at)).Milliseconds(), 10)}
		if h.qt > 0 {
			p["qt"] = strconv.FormatInt(h.qt, 10)
		}
		if s.v.cid != "" {
			p["cid"] = s.v.cid
		}
		if h.hid != "" {
			p["hid"] = h.hid
		}
		if h.page != "" {
			p["dl"] = "https://" + host + h.page
		}
		for k, v := range map[string]string{"dr": h.ref, "ec": h.ec, "ea": h.ea, "el": h.el, "ev": h.ev} {
			if v != "" {
				p[k] = v
			}
		}
		if h.ni {
			p["ni"] = "1"
		}
		if h.t == "engagement" {
			p["et"] = strconv.Itoa(h.et)
		}
		for k, v := range h.extra {
			p[k] = v
		}
		return p
	}
	do := func(req *http.Request, want int) {
		req.Header.Set("User-Agent", s.v.ua)
		req.Header.Set("X-Forwarded-For", s.v.ip)
		resp, err := a.http.Do(req)
		if err != nil {
			a.t.Fatalf("send %s: %v", s.v.cid, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		accepted := 0
		for _, h := range s.hits {
			if !h.rejected {
				accepted++
			}
		}
		if want == http.StatusBadRequest && !bytes.Contains(b, []byte(fmt.Sprintf(`"accepted":%d`, accepted))) {
			a.t.Errorf("send %s: %s, want %d accepted", s.v.cid, b, accepted)
		}
		if resp.StatusCode != want || (want != http.StatusBadRequest && resp.Header.Get("X-Collect-Error") != "") {
			a.t.Fatalf("send %s: %s %s: %s", s.v.cid, resp.Status, resp.Header.Get("X-Collect-Error"), b)
		}
	}
	if s.get {
		for _, h := range s.hits {
			q := url.Values{"tid": {tid}}
			for k, v := range params(h) {
				q.Set(k, v)
			}
			method := "GET"
			if s.head {
				method = "HEAD"
			}
			req, _ := http.NewRequest(method, a.gw+"/collect?"+q.Encode(), nil)
			do(req, http.StatusOK)
		}
		return
	}
	// As a tracker writes JSON: numbers as numbers, ni as a boolean.
	var batch struct {
		Hits []map[string]any `json:"hits"`
	}
	for _, h := range s.hits {
		hit := map[string]any{}
		for k, v := range params(h) {
			switch k {
			case "v", "qt", "et", "ev":
				hit[k] = json.Number(v)
			case "ni":
				hit[k] = true
			default:
				hit[k] = v
			}
		}
		batch.Hits = append(batch.Hits, hit)
	}
	b, _ := json.Marshal(batch)
	req, _ := http.NewRequest("POST", a.gw+"/collect?tid="+tid, bytes.NewReader(b))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	want := http.StatusNoContent
	if s.status != 0 {
		want = s.status
	}
	do(req, want)
}

// The calculator: sessions from the brief's and docs/processing.md's rules.

type bbSession struct {
	cid                      string
	today                    bool
	first                    bool // the user's first session
	start, end               time.Duration
	source, medium, campaign string
	channel, referrer        string
	landing, exit            string
	pageviews, events        int
	interaction              bool
	conversions              int
	goalValue                float64
	device, hour, day        string
	week, month              string
	pages                    []bbPageview
	evs                      []bbHit
}

type bbPageview struct {
	page     string
	measured bool
	time     float64
}

type bbCalc struct {
	sessions []*bbSession
	filtered map[bool]map[string]int // today → reason → hits
}

// bbPageOf is a pageview's page: dp, else dl's path and query, in
// collection's canonical form, without attribution parameters.
func bbPageOf(h bbHit) string {
	page := h.page
	if dp := h.extra["dp"]; dp != "" {
		page = dp
	}
	page, _, _ = strings.Cut(page, "#")
	var b strings.Builder
	for i, c := range []byte(page) {
		isHex := func(j int) bool {
			return j < len(page) && strings.ContainsRune("0123456789ABCDEFabcdef", rune(page[j]))
		}
		if c == '%' && !(isHex(i+1) && isHex(i+2)) {
			b.WriteString("%25")
			continue
		}
		if c >= 0x80 || c == ' ' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return bbClean(b.String())
}

// bbClean is the property's page_path clean-up (docs/config.md): strip_query
// keeping id (and the attribution parameters, which the page dimension then
// drops: docs/processing.md), lowercase (not the escapes), default_page
// index.html, strip_trailing_slash.
func bbClean(page string) string {
	path, query, _ := strings.Cut(page, "?")
	var keep []string
	for _, kv := range strings.Split(query, "&") {
		if name, _, _ := strings.Cut(kv, "="); name == "id" {
			keep = append(keep, kv)
		}
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '%' && i+2 < len(path) {
			b.WriteString(path[i : i+3])
			i += 2
			continue
		}
		b.WriteString(strings.ToLower(path[i : i+1]))
	}
	path = b.String()
	strip := func() {
		if path != "/" {
			path = strings.TrimSuffix(path, "/")
		}
	}
	for before := ""; before != path; {
		before = path
		strip()
		if strings.HasSuffix(path, "/index.html") {
			path = strings.TrimSuffix(path, "index.html")
		}
	}
	strip()
	if len(keep) == 0 {
		return path
	}
	return path + "?" + strings.Join(keep, "&")
}

// bbExcludedPage says whether the rules' pages.exclude drops the page.
func bbExcludedPage(page string) bool {
	path, _, _ := strings.Cut(page, "?")
	return path == "/admin" || strings.HasPrefix(path, "/admin/")
}

func bbQuery(page string) url.Values {
	page, _, _ = strings.Cut(page, "#")
	_, query, _ := strings.Cut(page, "?")
	q, _ := url.ParseQuery(query)
	return q
}

// bbTags are a hit's campaign tags: its location's, overridden field by
// field by the parameters sent apart (cs, cm, cn, gclid).
func bbTags(h bbHit) url.Values {
	q := bbQuery(h.page)
	if len(q) == 0 && h.extra["dp"] != "" {
		q = bbQuery(h.extra["dp"])
	}
	for param, tag := range map[string]string{"cs": "utm_source", "cm": "utm_medium", "cn": "utm_campaign", "gclid": "gclid"} {
		if v := h.extra[param]; v != "" {
			q.Set(tag, v)
		}
	}
	for k := range q {
		q.Set(k, strings.TrimSpace(q.Get(k)))
	}
	return q
}

// bbCampaign is a hit's campaign data: empty when it has none.
func bbCampaign(h bbHit) string {
	q := bbTags(h)
	c := []string{q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign"), q.Get("gclid"), q.Get("msclkid")}
	if strings.Join(c, "") == "" {
		return ""
	}
	return strings.Join(c, "\x00")
}

// bbExternal is a referrer's host and path when it is external.
func bbExternal(ref string, rederived bool) (host, path string, ok bool) {
	u, err := url.Parse(strings.TrimSpace(ref))
	// An Android app's referrer (android-app://com.slack/) names the app as
	// its host: a referral from it, as GA shows it.
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "android-app") || u.Host == "" {
		return "", "", false
	}
	host = strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
	excluded := []string{"shop.example", "paypal.com"}
	if rederived {
		excluded = append(excluded, "partner-blog.example")
	}
	for _, own := range excluded {
		if host == own || strings.HasSuffix(host, "."+own) {
			return "", "", false
		}
	}
	path = u.Path
	if path == "/" {
		path = ""
	}
	return host, path, true
}

func bbAttribute(s *bbSession, h bbHit, rederived bool) {
	q := bbTags(h)
	notSet := func(v string) string {
		if v == "" {
			return "(not set)"
		}
		return v
	}
	s.referrer = "(none)"
	host, path, external := bbExternal(h.ref, rederived)
	if external {
		s.referrer = host + path
	}
	switch {
	case q.Get("gclid") != "":
		s.source, s.medium, s.campaign = "google", "cpc", notSet(q.Get("utm_campaign"))
	case q.Get("msclkid") != "":
		s.source, s.medium, s.campaign = "bing", "cpc", notSet(q.Get("utm_campaign"))
	case q.Get("utm_source")+q.Get("utm_medium")+q.Get("utm_campaign") != "":
		s.source, s.medium, s.campaign = notSet(q.Get("utm_source")), notSet(q.Get("utm_medium")), notSet(q.Get("utm_campaign"))
	case external:
		engines := map[string]string{"google.com": "google", "google.de": "google", "bing.com": "bing", "duckduckgo.com": "duckduckgo"}
		if e, ok := engines[host]; ok {
			s.source, s.medium, s.campaign = e, "organic", "(organic)"
		} else {
			s.source, s.medium, s.campaign = host, "referral", "(referral)"
		}
	default:
		s.source, s.medium, s.campaign = "(direct)", "(none)", "(direct)"
	}
	s.channel = bbChannel(s.source, s.medium, s.campaign)
}

// bbChannel is GA4's default channel group (docs/processing.md's table)
// over the few sites this test's traffic names, after the property's
// custom channel.
func bbChannel(source, medium, campaign string) string {
	source, medium, campaign = strings.ToLower(source), strings.ToLower(medium), strings.ToLower(campaign)
	site := func(names ...string) bool {
		for _, n := range names {
			if source == n || strings.HasSuffix(source, "."+n) {
				return true
			}
		}
		return false
	}
	search := site("google", "bing", "duckduckgo")
	social := site("facebook", "facebook.com")
	video := site("youtube.com")
	shopping := site("amazon.de", "amazon.com", "stripe.com") // stripe.com: Google's list has it as a shopping site
	shopCampaign := regexp.MustCompile(`^(.*(([^a-df-z]|^)shop|shopping).*)$`).MatchString(campaign)
	paid := regexp.MustCompile(`^(.*cp.*|ppc|retargeting|paid.*)$`).MatchString(medium)
	in := func(v string, set ...string) bool { return slices.Contains(set, v) }
	switch {
	case strings.HasPrefix(source, "partner-"): // the property's custom channel
		return "Partners"
	case source == "(direct)" && in(medium, "(none)", "(not set)"):
		return "Direct"
	case strings.Contains(campaign, "cross-network"):
		return "Cross-network"
	case (shopping || shopCampaign) && paid:
		return "Paid Shopping"
	case search && paid:
		return "Paid Search"
	case social && paid:
		return "Paid Social"
	case video && paid:
		return "Paid Video"
	case in(medium, "display", "banner", "expandable", "interstitial", "cpm"):
		return "Display"
	case paid:
		return "Paid Other"
	case shopping || shopCampaign:
		return "Organic Shopping"
	case social || in(medium, "social", "social-network", "social-media", "sm", "social network", "social media"):
		return "Organic Social"
	case video || strings.Contains(medium, "video"):
		return "Organic Video"
	case search || medium == "organic":
		return "Organic Search"
	case in(medium, "referral", "app", "link"):
		return "Referral"
	case in(source, "email", "e-mail", "e_mail", "e mail") || in(medium, "email", "e-mail", "e_mail", "e mail"):
		return "Email"
	case medium == "affiliate":
		return "Affiliates"
	case medium == "audio":
		return "Audio"
	case source == "sms" || medium == "sms":
		return "SMS"
	case strings.HasSuffix(medium, "push") || strings.Contains(medium, "mobile") || strings.Contains(medium, "notification") || source == "firebase":
		return "Mobile Push Notifications"
	}
	return "Unassigned"
}

func bbCalculate(t *testing.T, sends []bbSend, midnight time.Time, timeout time.Duration) *bbCalc {
	c := &bbCalc{filtered: map[bool]map[string]int{false: {}, true: {}}}
	seen := map[string]bool{}
	// A visitor is its client ID, whatever address or user agent each of
	// its requests had.
	byVisitor := map[string][]bbHit{}
	visitorOf := map[string]*bbVisitor{}
	var order []string
	for _, s := range sends {
		twins := map[string]int{}
		for _, h := range s.hits {
			// A hit is its event ID; without one, its content to the
			// second, the n-th twin of a request apart from the others.
			id := "hid " + h.hid
			if h.hid == "" {
				content := fmt.Sprint(h.t, h.at.Truncate(time.Second), h.page, h.ref, h.ec, h.ea, h.el, h.ev, h.et, h.extra)
				id = fmt.Sprintf("content %s #%d", content, twins[content])
				twins[content]++
			}
			if seen[s.v.cid+"/"+id] || h.rejected {
				continue
			}
			seen[s.v.cid+"/"+id] = true
			if s.v.excluded != "" {
				c.filtered[h.at >= 0][s.v.excluded]++
				continue
			}
			if h.t == "timing" { // docs/collection.md: a non-interaction event
				h.t, h.ec, h.ea, h.el, h.ev, h.ni = "event", h.extra["utc"], h.extra["utv"], h.extra["utl"], h.extra["utt"], true
			}
			if page := bbPageOf(h); (h.t == "pageview" || page != "") && bbExcludedPage(page) { // every hit on the page
				c.filtered[h.at >= 0]["page"]++
				continue
			}
			if h.t == "exception" { // docs/collection.md: a non-interaction event
				fatal := "fatal"
				if h.extra["exf"] == "0" {
					fatal = "non-fatal"
				}
				h.t, h.ec, h.ea, h.el, h.ni = "event", "exception", h.extra["exd"], fatal, true
			}
			if byVisitor[s.v.cid] == nil {
				order = append(order, s.v.cid)
				visitorOf[s.v.cid] = s.v
			}
			byVisitor[s.v.cid] = append(byVisitor[s.v.cid], h)
		}
	}
	for _, cid := range order {
		v, hits := visitorOf[cid], byVisitor[cid]
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].at < hits[j].at })
		var sessions [][]bbHit
		var campaign string
		for _, h := range hits {
			var cur []bbHit
			if len(sessions) > 0 {
				cur = sessions[len(sessions)-1]
			}
			joins := cur != nil && h.at-cur[len(cur)-1].at <= timeout && (h.at >= 0) == (cur[0].at >= 0)
			if h.t == "engagement" {
				if joins {
					sessions[len(sessions)-1] = append(cur, h)
				}
				continue
			}
			if hc := bbCampaign(h); joins && hc != "" && hc != campaign {
				joins = false
			}
			if joins {
				sessions[len(sessions)-1] = append(cur, h)
				continue
			}
			sessions = append(sessions, []bbHit{h})
			campaign = bbCampaign(h)
		}
		for i, hs := range sessions {
			s := &bbSession{cid: v.cid, today: hs[0].at >= 0, first: i == 0, start: hs[0].at, end: hs[len(hs)-1].at,
				landing: "(not set)", exit: "(not set)", device: "desktop",
				hour: midnight.Add(hs[0].at).Format("2006-01-02T15"), day: midnight.Add(hs[0].at).Format("2006-01-02"),
				month: midnight.Add(hs[0].at).Format("2006-01")}
			y, w := midnight.Add(hs[0].at).ISOWeek()
			s.week = fmt.Sprintf("%d-W%02d", y, w)
			if strings.Contains(v.ua, "iPhone") {
				s.device = "mobile"
			}
			bbAttribute(s, hs[0], v.rederived)
			goals := map[string]bool{}
			for j, h := range hs {
				switch h.t {
				case "pageview":
					page := bbPageOf(h)
					if s.pageviews == 0 {
						s.landing = page
					}
					s.exit = page
					s.pageviews++
					pv := bbPageview{page: page}
					for _, next := range hs[j+1:] {
						if next.t == "pageview" {
							pv.measured, pv.time = true, (next.at - h.at).Seconds()
							break
						}
					}
					if !pv.measured && j < len(hs)-1 {
						pv.measured, pv.time = true, (s.end - h.at).Seconds()
					}
					s.pages = append(s.pages, pv)
					if path, _, _ := strings.Cut(page, "?"); path == "/welcome" && !goals["signup"] { // the goal's pattern sees no query
						goals["signup"] = true
						s.conversions++
						s.goalValue += 5
					}
				case "event":
					s.events++
					s.evs = append(s.evs, h)
					if !h.ni {
						s.interaction = true
					}
					if h.ec == "shop" && h.ea == "purchase" && !goals["purchase"] {
						goals["purchase"] = true
						s.conversions++
						f, _ := strconv.ParseFloat(h.ev, 64)
						s.goalValue += f
					}
				}
			}
			c.sessions = append(c.sessions, s)
		}
	}
	for _, s := range c.sessions {
		t.Logf("expected session %s day-today=%v %v..%v %s/%s/%s %s landing %s exit %s pv %d ev %d conv %d %.2f",
			s.cid, s.today, s.start, s.end, s.source, s.medium, s.campaign, s.channel, s.landing, s.exit, s.pageviews, s.events, s.conversions, s.goalValue)
	}
	return c
}

// bbRows are a report's expected rows: dimension values (joined by \x00)
// → metric → value.
type bbRows map[string]map[string]float64

type bbView struct {
	acq      map[string]bbRows // report → rows; "total" has the key ""
	pages    bbRows
	events   bbRows
	filtered bbRows
}

type bbAcc struct {
	users                                        map[string]bool
	newUsers, sessions, engaged, bounces, pv, ev int
	conversions                                  int
	duration, value                              float64
}

func (a *bbAcc) metrics() map[string]float64 {
	n := float64(a.sessions)
	rate := func(x float64) float64 {
		if n == 0 {
			return 0
		}
		return x / n
	}
	return map[string]float64{
		"users": float64(len(a.users)), "new_users": float64(a.newUsers), "sessions": n,
		"engaged_sessions": float64(a.engaged), "bounces": float64(a.bounces), "bounce_rate": rate(float64(a.bounces)),
		"avg_session_duration": rate(a.duration), "pages_per_session": rate(float64(a.pv)), "pageviews": float64(a.pv),
		"events": float64(a.ev), "conversions": float64(a.conversions), "conversion_rate": rate(float64(a.conversions)),
		"goal_value": a.value,
	}
}

func (c *bbCalc) view(days ...bool) bbView {
	in := map[bool]bool{}
	for _, d := range days {
		in[d] = true
	}
	acc := map[string]map[string]*bbAcc{}
	add := func(report, key string, s *bbSession) {
		if acc[report] == nil {
			acc[report] = map[string]*bbAcc{}
		}
		a := acc[report][key]
		if a == nil {
			a = &bbAcc{users: map[string]bool{}}
			acc[report][key] = a
		}
		a.users[s.cid] = true
		if s.first {
			a.newUsers++
		}
		a.sessions++
		dur := (s.end - s.start).Seconds()
		if dur > 10 || s.pageviews >= 2 || s.conversions > 0 {
			a.engaged++
		}
		if s.pageviews == 1 && !s.interaction {
			a.bounces++
		}
		a.pv += s.pageviews
		a.ev += s.events
		a.conversions += s.conversions
		a.duration += dur
		a.value += s.goalValue
	}
	type pageAcc struct {
		pv, upv, entrances, exits, bounces, measured int
		time                                         float64
	}
	pages := map[string]*pageAcc{}
	page := func(p string) *pageAcc {
		if pages[p] == nil {
			pages[p] = &pageAcc{}
		}
		return pages[p]
	}
	type eventAcc struct {
		total, unique int
		value         float64
	}
	events := map[string]*eventAcc{}
	for _, s := range c.sessions {
		if !in[s.today] {
			continue
		}
		userType := "returning"
		if s.first {
			userType = "new"
		}
		add("total", "", s)
		add("channel", s.channel, s)
		add("source_medium", s.source+"\x00"+s.medium, s)
		add("campaign", s.campaign, s)
		add("referrer", s.referrer, s)
		add("landing_page", s.landing, s)
		add("user_type", userType, s)
		add("device", s.device, s)
		add("hour", s.hour, s)
		add("day", s.day, s)
		add("week", s.week, s)
		add("month", s.month, s)
		viewed := map[string]bool{}
		for _, pv := range s.pages {
			p := page(pv.page)
			p.pv++
			if !viewed[pv.page] {
				viewed[pv.page] = true
				p.upv++
			}
			if pv.measured {
				p.measured++
				p.time += pv.time
			}
		}
		if s.pageviews > 0 {
			page(s.landing).entrances++
			page(s.exit).exits++
			if s.pageviews == 1 && !s.interaction {
				page(s.landing).bounces++
			}
		}
		counted := map[string]bool{}
		for _, h := range s.evs {
			label, category := h.el, h.ec
			if label == "" {
				label = "(not set)"
			}
			if category == "" {
				category = "(not set)"
			}
			key := category + "\x00" + h.ea + "\x00" + label
			e := events[key]
			if e == nil {
				e = &eventAcc{}
				events[key] = e
			}
			e.total++
			if !counted[key] {
				counted[key] = true
				e.unique++
			}
			f, _ := strconv.ParseFloat(h.ev, 64)
			e.value += f
		}
	}
	v := bbView{acq: map[string]bbRows{}, pages: bbRows{}, events: bbRows{}, filtered: bbRows{}}
	for report, rows := range acc {
		v.acq[report] = bbRows{}
		for k, a := range rows {
			v.acq[report][k] = a.metrics()
		}
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for k, p := range pages {
		v.pages[k] = map[string]float64{
			"pageviews": float64(p.pv), "unique_pageviews": float64(p.upv), "entrances": float64(p.entrances),
			"exits": float64(p.exits), "bounces": float64(p.bounces), "bounce_rate": ratio(float64(p.bounces), float64(p.entrances)),
			"exit_rate": ratio(float64(p.exits), float64(p.pv)), "avg_time_on_page": ratio(p.time, float64(p.measured)),
			"measured_time": p.time, "measured": float64(p.measured),
		}
	}
	for k, e := range events {
		v.events[k] = map[string]float64{"total_events": float64(e.total), "unique_events": float64(e.unique),
			"event_value": e.value, "avg_event_value": ratio(e.value, float64(e.total))}
	}
	for d := range in {
		for reason, n := range c.filtered[d] {
			if v.filtered[reason] == nil {
				v.filtered[reason] = map[string]float64{"hits": 0}
			}
			v.filtered[reason]["hits"] += float64(n)
		}
	}
	return v
}

// bbTolerance is how far a reported metric may be from the calculator's:
// times carry the milliseconds between the requests of the pixel.
func bbTolerance(metric string) float64 {
	switch metric {
	case "avg_session_duration", "avg_time_on_page":
		return 0.5
	case "goal_value", "event_value", "avg_event_value":
		return 1e-6
	}
	return 1e-4
}

// bbCompareAll reads every report of a range and compares it with the view.
func bbCompareAll(t *testing.T, client *http.Client, m *simulate.Merchant, rangeName string, q url.Values, v bbView) {
	t.Helper()
	acqMetrics := "users,new_users,sessions,engaged_sessions,bounces,bounce_rate,avg_session_duration,pages_per_session,pageviews,events,conversions,conversion_rate,goal_value"
	pageMetrics := "pageviews,unique_pageviews,entrances,exits,bounces,bounce_rate,exit_rate,avg_time_on_page"
	eventMetrics := "total_events,unique_events,event_value,avg_event_value"
	total := func(rows bbRows) bbRows {
		out := bbRows{"": {}}
		for _, r := range rows {
			for k, x := range r {
				out[""][k] += x
			}
		}
		return out
	}
	check := func(path, metrics string, dims []string, want bbRows, totals map[string]float64, extra ...string) {
		t.Helper()
		qq := url.Values{"metrics": {metrics}}
		for i := 0; i < len(extra); i += 2 {
			qq.Set(extra[i], extra[i+1])
		}
		for k, vs := range q {
			qq[k] = vs
		}
		a := getReport(context.Background(), t, client, m, path, qq)
		got := bbRows{}
		for _, r := range a.Rows {
			var key []string
			for _, d := range dims {
				s, _ := r[d].(string)
				key = append(key, s)
			}
			row := map[string]float64{}
			for _, name := range strings.Split(metrics, ",") {
				row[name] = num(r[name])
			}
			got[strings.Join(key, "\x00")] = row
		}
		t.Logf("%s %s: %d rows", rangeName, path, len(a.Rows))
		keys := map[string]bool{}
		if dims == nil && len(a.Rows) == 0 {
			want = nil // an overview may answer its totals alone
		}
		for k := range want {
			keys[k] = true
		}
		for k := range got {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			w, g := want[k], got[k]
			name := strings.ReplaceAll(k, "\x00", " / ")
			if w == nil && len(dims) == 1 && dims[0] == "period" {
				w = map[string]float64{} // a series has every period, zeros included
			}
			if w == nil || g == nil {
				t.Errorf("%s %s: row %q: expected %v, reported %v", rangeName, path, name, w, g)
				continue
			}
			for _, metric := range strings.Split(metrics, ",") {
				if math.Abs(w[metric]-g[metric]) > bbTolerance(metric) {
					t.Errorf("%s %s: row %q: %s = %v, expected %v", rangeName, path, name, metric, g[metric], w[metric])
				}
			}
		}
		if totals != nil {
			for _, metric := range strings.Split(metrics, ",") {
				if g := num(a.Totals[metric]); math.Abs(totals[metric]-g) > bbTolerance(metric) {
					t.Errorf("%s %s: totals: %s = %v, expected %v", rangeName, path, metric, g, totals[metric])
				}
			}
		}
	}
	acq := func(report string) bbRows {
		if r := v.acq[report]; r != nil {
			return r
		}
		return bbRows{}
	}
	totals := acq("total")[""]
	if totals == nil {
		totals = (&bbAcc{users: map[string]bool{}}).metrics()
	}
	check("/v1/reports/acquisition/overview", acqMetrics, nil, bbRows{"": totals}, totals)
	for _, r := range []struct{ report, dims string }{
		{"channel", "channel"}, {"source_medium", "source,medium"}, {"campaign", "campaign"},
		{"referrer", "referrer"}, {"landing_page", "landing_page"}, {"user_type", "user_type"}, {"device", "device"},
	} {
		check("/v1/reports/acquisition/"+r.report, acqMetrics, strings.Split(r.dims, ","), acq(r.report), totals)
	}
	for _, g := range []string{"day", "week", "month"} {
		check("/v1/reports/acquisition/overview", acqMetrics, []string{"period"}, acq(g), totals, "granularity", g)
	}
	check("/v1/reports/acquisition/overview", "sessions,new_users,bounces,pageviews,conversions", []string{"period"}, acq("hour"), nil, "granularity", "hour")
	check("/v1/reports/behavior/landing_pages", acqMetrics, []string{"landing_page"}, acq("landing_page"), nil)
	pageTotals := total(v.pages)[""]
	bbRates(pageTotals)
	check("/v1/reports/behavior/pages", pageMetrics, []string{"page"}, v.pages, pageTotals)
	check("/v1/reports/behavior/overview", pageMetrics, nil, bbRows{"": pageTotals}, pageTotals)
	exits := bbRows{}
	for k, r := range v.pages {
		if r["exits"] > 0 {
			exits[k] = r
		}
	}
	check("/v1/reports/behavior/exit_pages", "exits,pageviews,exit_rate", []string{"page"}, exits, pageTotals)
	eventTotals := total(v.events)[""]
	eventTotals["avg_event_value"] = 0
	if eventTotals["total_events"] > 0 {
		eventTotals["avg_event_value"] = eventTotals["event_value"] / eventTotals["total_events"]
	}
	check("/v1/reports/behavior/events", eventMetrics, []string{"event_category", "event_action", "event_label"}, v.events, eventTotals)
	check("/v1/reports/behavior/filtered", "hits", []string{"reason"}, v.filtered, total(v.filtered)[""])
}

// bbRates computes a page total's rates and average from its summed parts
// (the measured time and count are the calculator's own columns).
func bbRates(p map[string]float64) {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	p["bounce_rate"] = ratio(p["bounces"], p["entrances"])
	p["exit_rate"] = ratio(p["exits"], p["pageviews"])
	p["avg_time_on_page"] = ratio(p["measured_time"], p["measured"])
}

// realtimeView is the realtime report's answer, as the black-box audits
// read it.
type realtimeView struct {
	Active5   float64 `json:"active_users_5m"`
	Active30  float64 `json:"active_users_30m"`
	Pageviews float64 `json:"pageviews"`
	TopPages  []struct {
		Page      string  `json:"page"`
		Pageviews float64 `json:"pageviews"`
	} `json:"top_pages"`
	TopSources []struct {
		Source    string  `json:"source"`
		Pageviews float64 `json:"pageviews"`
	} `json:"top_sources"`
}
