package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
)

// TestAcceptanceBlackBoxMP is an outsider's audit of the Measurement API
// and the report API: it signs merchants up through the gateway, sends
// GA4-shaped server-side events (and browser hits to a second property),
// and compares the reports with its own calculation from the definitions
// of docs/processing.md and docs/reports.md, written without reading the
// services' code. Its calculator (mpaSessionize and the aggregations below)
// is deliberately independent of pkg/simulate's.
//
// It runs in parts: mpaSetUp (merchants, properties, the property's zone),
// sendTraffic (the events and hits, and the refusals checked on the way),
// waitForProcessing, then one subtest per kind of check, each reading the
// same stored traffic.
func TestAcceptanceBlackBoxMP(t *testing.T) {
	fx := mpaSetUp(t)
	events := fx.sendTraffic(t)

	// Property 2's days are UTC's: the day before too, should the test
	// run over midnight.
	nu := time.Now().UTC()
	fx.p2Range = url.Values{"property_id": {fx.p2.ID}, "from": {nu.AddDate(0, 0, -1).Format("2006-01-02")}, "to": {nu.Format("2006-01-02")}}
	fx.calc = mpaSessionize(events, fx.loc)
	fx.waitForProcessing(t)

	t.Run("acquisition", fx.checkAcquisition)
	t.Run("filters_sort_paging", fx.checkFiltersSortPaging)
	t.Run("behavior", fx.checkBehavior)
	t.Run("series", fx.checkSeries)
	t.Run("comparison", fx.checkComparison)
	t.Run("realtime", fx.checkRealtime)
	t.Run("isolation", fx.checkIsolation)
	t.Run("presets", fx.checkPresets)
	t.Run("csv", fx.checkCSV)
	t.Run("property_settings", fx.checkPropertySettings)
	t.Run("errors", fx.checkErrors)
}

// mpaFixture is what the parts of TestAcceptanceBlackBoxMP share: the
// stack's gateway, two merchants and their properties, property 1's zone
// and days, and the calculator's sessions of the traffic sent.
type mpaFixture struct {
	c         *mpaClient // bound to the parent test; a subtest uses client(t)
	tok, tok2 string     // merchant 1's and merchant 2's access tokens
	p1        mpaProperty
	p2        mpaProperty // merchant 1's browser property, in UTC
	p3        mpaProperty // merchant 2's
	secret    string      // p1's API secret
	loc       *time.Location
	midnight  time.Time // p1's last local midnight
	ln        time.Time // p1's local time at the start
	today     string
	yesterday string
	ranges    []mpaRange
	p2Range   url.Values // property 2's days (UTC): yesterday and today
	calc      *mpaCalc
}

// mpaRange is a report's date range as asked (q) and as the calculator
// reads it (from, to: property-local days).
type mpaRange struct {
	q        url.Values
	from, to string
}

// The metrics the audit asks of the acquisition and the page reports.
const (
	mpaAcqMetrics  = "users,new_users,sessions,engaged_sessions,bounces,bounce_rate,avg_session_duration,pages_per_session,conversions,conversion_rate,goal_value,engagement_rate,pageviews,events"
	mpaPageMetrics = "pageviews,unique_pageviews,avg_time_on_page,entrances,exits,exit_rate,bounces,bounce_rate"
)

// client is the fixture's client failing t rather than the parent test,
// as t.Fatalf must be called from the test's own goroutine.
func (fx *mpaFixture) client(t *testing.T) *mpaClient {
	c := *fx.c
	c.t = t
	return &c
}

// mpaSetUp starts the stack and signs up merchant 1 (a server-side
// property with goals and an API secret, and a browser property) and
// merchant 2 (one property).
func mpaSetUp(t *testing.T) *mpaFixture {
	stack, _ := startStack(t)
	ctx := context.Background()
	gw := stack.GatewayURL()
	c := &mpaClient{t: t, ctx: ctx, http: &http.Client{Timeout: 30 * time.Second}, gw: strings.TrimRight(gw, "/")}

	// The property's zone puts its local midnight between 1h55 and 2h55
	// ago, so that hits within the Measurement API's 4 hours fall on two
	// property-local days: yesterday and today.
	zone, loc, midnight := zoneWithMidnightAgo(t)
	ln := time.Now().In(loc)
	today := ln.Format("2006-01-02")
	yesterday := ln.AddDate(0, 0, -1).Format("2006-01-02")

	// Merchant 1: a server-side property (with goals) and a browser one.
	tok := c.signUp("bb-mp@shop.example")
	p1 := c.createProperty(tok, map[string]any{"name": "MP shop", "hostnames": []string{"shop.example"}, "time_zone": zone, "currency": "EUR"})
	p2 := c.createProperty(tok, map[string]any{"name": "Blog", "hostnames": []string{"blog.example"}, "time_zone": "UTC"})
	c.do("PUT", "/v1/properties/"+p1.ID+"/rules", tok, map[string]any{"goals": []map[string]any{
		{"id": "checkout", "name": "Checkout", "page_path": "^/checkout$", "value": 5},
		{"id": "purchase", "name": "Purchase", "event": map[string]any{"category": "purchase", "action": "purchase"}},
	}}, http.StatusOK, nil)
	var sec struct {
		Secret string `json:"secret"`
	}
	raw := c.do("POST", "/v1/properties/"+p1.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec)
	if sec.Secret == "" {
		t.Fatalf("api secret: no secret in %s", raw)
	}
	// Merchant 2, whose property merchant 1 must not see, nor they merchant 1's.
	tok2 := c.signUp("bb-other@shop.example")
	p3 := c.createProperty(tok2, map[string]any{"name": "Other", "hostnames": []string{"other.example"}})
	return &mpaFixture{
		c: c, tok: tok, tok2: tok2, p1: p1, p2: p2, p3: p3, secret: sec.Secret,
		loc: loc, midnight: midnight, ln: ln, today: today, yesterday: yesterday,
		ranges: []mpaRange{
			{url.Values{"range": {"today"}}, today, today},
			{url.Values{"range": {"yesterday"}}, yesterday, yesterday},
			{url.Values{"from": {yesterday}, "to": {today}}, yesterday, today},
			{url.Values{"range": {"last_7_days"}}, ln.AddDate(0, 0, -7).Format("2006-01-02"), yesterday},
		},
	}
}

// mpaEv is a Measurement API event of client cid.
func mpaEv(cid, name string, tm time.Time, params map[string]any) mpaEvent {
	return mpaEvent{cid: cid, name: name, t: tm, params: params}
}

// mpaPageView is a page_view of client cid at the URL loc, from ref.
func mpaPageView(cid string, tm time.Time, loc, ref string) mpaEvent {
	p := map[string]any{"page_location": loc, "page_title": "T " + loc, "engagement_time_msec": 1200}
	if ref != "" {
		p["page_referrer"] = ref
	}
	return mpaEv(cid, "page_view", tm, p)
}

// mpRequests is property 1's Measurement API traffic, as the calculator
// sees it and as sendTraffic sends it: requests of one client each, their
// comments saying what each client's events check.
func (fx *mpaFixture) mpRequests() [][]mpaEvent {
	at := func(d time.Duration) time.Time { return fx.midnight.Add(d) }
	// Short names keep the tables readable.
	ev, pv := mpaEv, mpaPageView
	m := time.Minute
	requests := [][]mpaEvent{
		// c1: yesterday from a newsletter, today from Google; one user on two days.
		{
			pv("c1", at(-50*m), "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=winter", ""),
			pv("c1", at(-49*m), "https://shop.example/products", ""),
			ev("c1", "add_to_cart", at(-49*m+30*time.Second), map[string]any{"value": 10.5, "currency": "eur", "items": []map[string]any{{"item_id": "sku-1", "price": 10.5}}}),
			ev("c1", "user_engagement", at(-48*m), map[string]any{"engagement_time_msec": 30000}),
		},
		{
			pv("c1", at(10*m), "https://shop.example/products", "https://www.google.com/search?q=shoes"),
			ev("c1", "user_engagement", at(10*m+40*time.Second), map[string]any{"engagement_time_msec": 40000}),
		},
		// c2: a referral yesterday that bounced.
		{pv("c2", at(-40*m), "https://shop.example/pricing", "https://news.example/a?x=1")},
		// c3: across midnight (two sessions), then a video event.
		{pv("c3", at(-5*m), "https://shop.example/blog/post-1", "")},
		{
			pv("c3", at(5*m), "https://shop.example/blog/post-2", ""),
			ev("c3", "video_play", at(6*m), map[string]any{"event_category": "video", "event_label": "intro", "value": 3}),
		},
		// c4: a paid click, then after 31 minutes a direct checkout with a purchase.
		{pv("c4", at(20*m), "https://shop.example/landing?gclid=abc123&utm_campaign=spring", "")},
		{
			pv("c4", at(51*m), "https://shop.example/checkout", ""),
			{cid: "c4", name: "purchase", t: at(52 * m), eventID: "ord-1001", params: map[string]any{"value": 99.99, "currency": "EUR", "transaction_id": "ord-1001"}},
		},
		// c5: a gap of exactly 30:00 continues the session.
		{pv("c5", at(30*m), "https://shop.example/a", "")},
		{pv("c5", at(60*m), "https://shop.example/b", "")},
		// c6: Facebook, one page and a non-interaction event: a bounce.
		{
			pv("c6", at(5*m), "https://shop.example/a", "https://www.facebook.com/"),
			ev("c6", "newsletter_view", at(6*m), map[string]any{"non_interaction": true}),
		},
		// c7: the campaign changes: two sessions.
		{pv("c7", at(65*m), "https://shop.example/?utm_source=partner&utm_medium=affiliate&utm_campaign=c1", "")},
		{pv("c7", at(67*m), "https://shop.example/?utm_source=partner&utm_medium=affiliate&utm_campaign=c2", "")},
		// c8: a campaign given apart from the URL (GA4's campaign_details).
		{
			ev("c8", "campaign_details", at(75*m), map[string]any{"source": "bing", "medium": "cpc", "campaign": "brand"}),
			pv("c8", at(75*m), "https://shop.example/shoes", ""),
		},
	}
	sec5 := 5 * time.Second
	requests = append(requests,
		// c12: an engagement ping after midnight does not extend
		// yesterday's session.
		[]mpaEvent{pv("c12", at(-3*m), "https://shop.example/night", "")},
		[]mpaEvent{ev("c12", "user_engagement", at(m), map[string]any{"engagement_time_msec": 60000})},
		// c13: a late hit becomes the session's first and takes over its
		// attribution and landing page.
		[]mpaEvent{pv("c13", at(40*m), "https://shop.example/x", "")},
		[]mpaEvent{pv("c13", at(38*m), "https://shop.example/y?utm_source=late&utm_medium=cpc&utm_campaign=l", "")},
		// c14: a late hit bridges two sessions into one.
		[]mpaEvent{pv("c14", at(10*m), "https://shop.example/p1", "")},
		[]mpaEvent{pv("c14", at(50*m), "https://shop.example/p3", "")},
		[]mpaEvent{pv("c14", at(30*m), "https://shop.example/p2", "")},
		// c15: a re-send of an event ID with another time is the same event.
		[]mpaEvent{
			pv("c15", at(44*m), "https://shop.example/cart", ""),
			{cid: "c15", name: "purchase", t: at(45 * m), eventID: "ord-2", params: map[string]any{"value": "50.10", "currency": "EUR"}},
		},
		[]mpaEvent{{cid: "c15", name: "purchase", t: at(46 * m), eventID: "ord-2", params: map[string]any{"value": "50.10", "currency": "EUR"}}},
		// c17: a referrer of the site itself, on its www. host, is no source.
		[]mpaEvent{pv("c17", at(33*m), "https://www.shop.example/www", "https://shop.example/elsewhere")},
		// c18: an engagement ping alone starts nothing.
		[]mpaEvent{ev("c18", "user_engagement", at(34*m), map[string]any{"engagement_time_msec": 1000})},
		// c20: values summed to a millionth; a string non_interaction.
		[]mpaEvent{
			pv("c20", at(36*m), "https://shop.example/sum", ""),
			ev("c20", "tip", at(36*m+sec5), map[string]any{"value": 0.1, "non_interaction": "1"}),
			ev("c20", "tip", at(36*m+2*sec5), map[string]any{"value": 0.2, "non_interaction": "1"}),
		},
	)
	// GA4's default channel group, one session each (today, 20 minutes on).
	channels := []struct{ loc, ref, channel string }{
		{"/?utm_source=instagram&utm_medium=cpc", "", "Paid Social"},
		{"/?utm_source=youtube&utm_medium=cpc", "", "Paid Video"},
		{"/?utm_source=amazon&utm_medium=ppc", "", "Paid Shopping"},
		{"/?utm_source=foo&utm_medium=cpc&utm_campaign=shopping_spree", "", "Paid Shopping"},
		{"/?utm_source=foo&utm_medium=cpc&utm_campaign=eu-cross-network", "", "Cross-network"},
		{"/?utm_source=foo&utm_medium=banner", "", "Display"},
		{"/?utm_source=foo&utm_medium=paidsocial", "", "Paid Other"},
		{"/?utm_source=bing", "", "Organic Search"},
		{"/?utm_source=foo&utm_medium=Social", "", "Organic Social"},
		{"/?utm_source=foo&utm_medium=sms", "", "SMS"},
		{"/?utm_source=foo&utm_medium=audio", "", "Audio"},
		{"/?utm_source=foo&utm_medium=web-push", "", "Mobile Push Notifications"},
		{"/?utm_source=foo&utm_medium=bar", "", "Unassigned"},
		{"/?utm_source=foo&utm_medium=app", "", "Referral"},
		{"/", "https://l.facebook.com/l.php?u=x", "Organic Social"},
		{"/", "https://old.reddit.com/r/golang/", "Organic Social"},
		{"/", "https://duckduckgo.com/", "Organic Search"},
		{"/", "https://search.yahoo.com/search?p=x", "Organic Search"},
		{"/", "https://search.brave.com/search?q=x", "Referral"},
		{"/", "https://www.youtube.com/watch?v=x", "Organic Video"},
		{"/", "https://www.ebay.de/itm/1", "Organic Shopping"},
		{"/", "https://t.co/abc", "Organic Social"},
	}
	for i, ch := range channels {
		cid := fmt.Sprintf("ch%02d", i)
		mpaChannels[cid] = ch.channel
		requests = append(requests, []mpaEvent{pv(cid, at(20*m+time.Duration(i)*time.Second), "https://shop.example"+ch.loc, ch.ref)})
	}
	// c21: a page's own query stays, in its order, the attribution goes;
	// c22: a session an event opens takes the source of its referrer and
	// has no landing page; c23: two actions of one category.
	requests = append(requests,
		[]mpaEvent{pv("c21", at(25*m), "https://shop.example/search?q=red+shoes&utm_source=x&page=2#top", "")},
		[]mpaEvent{ev("c22", "click", at(26*m), map[string]any{"page_location": "https://shop.example/a", "page_referrer": "https://www.bing.com/search?q=x"})},
		[]mpaEvent{
			pv("c23", at(27*m), "https://shop.example/video", ""),
			ev("c23", "video_play", at(27*m+sec5), map[string]any{"event_category": "video"}),
			ev("c23", "video_pause", at(27*m+2*sec5), map[string]any{"event_category": "video"}),
			ev("c23", "video_play", at(27*m+3*sec5), map[string]any{"event_category": "video"}),
		},
	)
	return requests
}

// sendTraffic sends property 1's Measurement API events and property 2's
// browser hits, checking the answers of the refused ones, and returns the
// events that must be stored, as the calculator sees them.
func (fx *mpaFixture) sendTraffic(t *testing.T) []mpaEvent {
	c, p1, p2, secret := fx.c, fx.p1, fx.p2, fx.secret
	at := func(d time.Duration) time.Time { return fx.midnight.Add(d) }
	ev, pv := mpaEv, mpaPageView
	m := time.Minute

	requests := fx.mpRequests()
	for i, r := range requests {
		c.sendMP(p1.TrackingID, secret, r, http.StatusNoContent)
		if i == 1 || i == 6 || i == 9 { // retried requests change nothing
			c.sendMP(p1.TrackingID, secret, r, http.StatusNoContent)
		}
	}
	// c10: one valid event, one reserved name: 400 with accepted 1, the
	// page_view stored.
	rejected := []mpaEvent{pv("c10", at(80*m), "https://shop.example/rejected", ""), ev("c10", "session_start", at(80*m), nil)}
	body := c.sendMP(p1.TrackingID, secret, rejected, http.StatusBadRequest)
	if !strings.Contains(body, `"accepted":1`) || !strings.Contains(body, "reserved_name") || !strings.Contains(body, "events[1].name") {
		t.Errorf("reserved name: want accepted 1 and reserved_name on events[1].name, got %s", body)
	}
	// c16: GA4's usual request: one timestamp_micros for all its events,
	// which are dated in the order sent.
	t16 := at(42 * m)
	if code, b := c.post("/mp/collect?tracking_id="+p1.TrackingID+"&api_secret="+url.QueryEscape(secret), "", map[string]any{
		"client_id": "c16", "timestamp_micros": t16.UnixMicro(),
		"events": []map[string]any{
			{"name": "page_view", "params": map[string]any{"page_location": "https://shop.example/req?utm_source=Partner&utm_medium=Email", "session_id": "123", "engagement_time_msec": 100}},
			{"name": "sign_up", "params": map[string]any{"method": "Google", "event_category": "account"}},
			{"name": "page_view", "params": map[string]any{"page_location": "https://shop.example/welcome"}},
		},
	}); code != http.StatusNoContent {
		t.Errorf("c16: %d %s", code, b)
	}
	extra := []mpaEvent{
		pv("c16", t16, "https://shop.example/req?utm_source=Partner&utm_medium=Email", ""),
		ev("c16", "sign_up", t16.Add(1), map[string]any{"event_category": "account"}),
		pv("c16", t16.Add(2), "https://shop.example/welcome", ""),
	}
	if b := c.sendMP(p1.TrackingID, secret, []mpaEvent{pv("c19", at(70*m), "https://evil.example/", "")}, http.StatusBadRequest); !strings.Contains(b, "foreign_host") {
		t.Errorf("foreign host: %s", b)
	}
	// c26: tags arriving within a direct session start a new one; c27: a
	// referrer within a session does not.
	c.sendMP(p1.TrackingID, secret, []mpaEvent{
		pv("c26", at(29*m), "https://shop.example/d", ""),
		pv("c26", at(30*m), "https://shop.example/d?utm_source=a&utm_medium=b", ""),
	}, http.StatusNoContent)
	c.sendMP(p1.TrackingID, secret, []mpaEvent{
		pv("c27", at(31*m), "https://shop.example/e", ""),
		pv("c27", at(32*m), "https://shop.example/f", "https://www.google.com/"),
	}, http.StatusNoContent)
	extra = append(extra,
		pv("c26", at(29*m), "https://shop.example/d", ""), pv("c26", at(30*m), "https://shop.example/d?utm_source=a&utm_medium=b", ""),
		pv("c27", at(31*m), "https://shop.example/e", ""), pv("c27", at(32*m), "https://shop.example/f", "https://www.google.com/"))
	// c28: two identical events in one request (the same item added to
	// the cart twice) are two events, as GA4 counts them.
	t28 := at(33 * m)
	if code, b := c.post("/mp/collect?tracking_id="+p1.TrackingID+"&api_secret="+url.QueryEscape(secret), "", map[string]any{
		"client_id": "c28", "timestamp_micros": t28.UnixMicro(),
		"events": []map[string]any{
			{"name": "page_view", "params": map[string]any{"page_location": "https://shop.example/item"}},
			{"name": "add_to_cart", "params": map[string]any{"item_id": "sku-9", "value": 4}},
			{"name": "add_to_cart", "params": map[string]any{"item_id": "sku-9", "value": 4}},
		},
	}); code != http.StatusNoContent {
		t.Errorf("c28: %d %s", code, b)
	}
	extra = append(extra,
		pv("c28", t28, "https://shop.example/item", ""),
		ev("c28", "add_to_cart", t28.Add(1), map[string]any{"value": 4}),
		ev("c28", "add_to_cart", t28.Add(2), map[string]any{"value": 4}))
	// c24: a page ten minutes ago, from a referrer; c25: a campaign a
	// spreadsheet would run as a formula.
	recent := pv("c24", time.Now().UTC().Add(-10*m), "https://shop.example/recent", "https://news.example/")
	c.sendMP(p1.TrackingID, secret, []mpaEvent{recent}, http.StatusNoContent)
	formula := pv("c25", at(28*m), "https://shop.example/?utm_source=x&utm_medium=y&utm_campaign=%3D1%2B2", "")
	c.sendMP(p1.TrackingID, secret, []mpaEvent{formula}, http.StatusNoContent)
	extra = append(extra, recent, formula)
	// The validation endpoint answers and stores nothing.
	if code, b := c.post("/debug/mp/collect?tracking_id="+p1.TrackingID+"&api_secret="+url.QueryEscape(secret), "", map[string]any{
		"client_id": "c99", "events": []map[string]any{{"name": "page_view", "params": map[string]any{"page_location": "https://shop.example/debug"}}},
	}); code != http.StatusOK || !strings.Contains(b, `"valid":true`) {
		t.Errorf("debug/mp/collect: %d %s", code, b)
	}
	// c9: an event now, without a timestamp: the realtime view's one user.
	live := pv("c9", time.Now().UTC(), "https://shop.example/live", "")
	c.sendMPNoTime(p1.TrackingID, secret, live)
	live.t = time.Now().UTC() // within a second of its receipt; only its day and minute matter
	events := append([]mpaEvent{rejected[0], live}, extra...)
	for _, r := range requests {
		events = append(events, r...)
	}
	// Refusals that must store nothing.
	bad := pv("c11", at(70*m), "https://shop.example/never", "")
	if b := c.sendMP(p1.TrackingID, "as_wrong", []mpaEvent{bad}, http.StatusForbidden); !strings.Contains(b, "bad_secret") {
		t.Errorf("wrong secret: %s", b)
	}
	bad.t = time.Now().Add(-5 * time.Hour)
	if b := c.sendMP(p1.TrackingID, secret, []mpaEvent{bad}, http.StatusBadRequest); !strings.Contains(b, "too_old") {
		t.Errorf("5 hours old: %s", b)
	}
	usd := ev("c11", "purchase", at(70*m), map[string]any{"value": 5, "currency": "USD"})
	if b := c.sendMP(p1.TrackingID, secret, []mpaEvent{usd}, http.StatusBadRequest); !strings.Contains(b, "events[0].params.currency") {
		t.Errorf("USD: %s", b)
	}
	if b := c.sendMP(p2.TrackingID, secret, []mpaEvent{bad}, http.StatusForbidden); !strings.Contains(b, "bad_secret") {
		t.Errorf("property 1's secret on property 2: %s", b)
	}

	// Property 2: browser hits now, one of them a crawler's.
	chrome := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	c.sendBrowser(p2.TrackingID, chrome, []map[string]any{
		{"t": "pageview", "cid": "b1", "hid": "b1-1", "dl": "https://blog.example/", "dt": "Blog"},
		{"t": "pageview", "cid": "b1", "hid": "b1-2", "dl": "https://blog.example/about", "dt": "About"},
		{"t": "pageview", "cid": "b2", "hid": "b2-1", "dl": "https://blog.example/", "dt": "Blog"},
	})
	c.sendBrowser(p2.TrackingID, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", []map[string]any{
		{"t": "pageview", "cid": "bot", "hid": "bot-1", "dl": "https://blog.example/"},
	})
	return events
}

// waitForProcessing polls until every session, pageview and event of
// property 1, and property 2's browser hits, are in the reports.
func (fx *mpaFixture) waitForProcessing(t *testing.T) {
	c, tok, p1, calc, today, yesterday, p2Range := fx.c, fx.tok, fx.p1, fx.calc, fx.today, fx.yesterday, fx.p2Range
	want := calc.acq(today, today, func(*mpaSession) string { return "" })[""]
	t.Logf("expected today: %v", want)
	eventually.NoError(t, 90*time.Second, "processing of the Measurement API events", func() error {
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions,pageviews,events"}})
		w := calc.acq(yesterday, today, func(*mpaSession) string { return "" })[""]
		for _, k := range []string{"sessions", "pageviews", "events"} {
			if num(a.Totals[k]) != w[k] {
				return fmt.Errorf("%s %v, want %v", k, a.Totals, w)
			}
		}
		return nil
	})
	eventually.NoError(t, 60*time.Second, "processing of the browser hits", func() error {
		a, _ := c.report(tok, "acquisition/overview", mpaWith(p2Range, "metrics", "sessions,pageviews"))
		if num(a.Totals["sessions"]) != 2 || num(a.Totals["pageviews"]) != 3 {
			return fmt.Errorf("totals %v", a.Totals)
		}
		return nil
	})
}

// checkAcquisition compares every acquisition report and the overview, by
// range, with the calculator.
func (fx *mpaFixture) checkAcquisition(t *testing.T) {
	c, tok, p1, calc := fx.client(t), fx.tok, fx.p1, fx.calc

	acqReports := map[string]func(*mpaSession) []string{
		"channel":       func(s *mpaSession) []string { return []string{s.channel} },
		"source":        func(s *mpaSession) []string { return []string{s.source} },
		"medium":        func(s *mpaSession) []string { return []string{s.medium} },
		"source_medium": func(s *mpaSession) []string { return []string{s.source, s.medium} },
		"campaign":      func(s *mpaSession) []string { return []string{s.campaign} },
		"referrer":      func(s *mpaSession) []string { return []string{s.referrer} },
		"landing_page":  func(s *mpaSession) []string { return []string{s.landing} },
		"user_type": func(s *mpaSession) []string {
			return []string{map[bool]string{true: "new", false: "returning"}[s.first]}
		},
		"device":  func(s *mpaSession) []string { return []string{"(not set)"} },
		"country": func(s *mpaSession) []string { return []string{"(not set)"} },
		"browser": func(s *mpaSession) []string { return []string{"(not set)"} },
		"os":      func(s *mpaSession) []string { return []string{"(not set)"} },
	}
	dimsOf := map[string][]string{"source_medium": {"source", "medium"}}
	for _, r := range fx.ranges {
		for rep, key := range acqReports {
			dims := dimsOf[rep]
			if dims == nil {
				dims = []string{rep}
			}
			q := mpaWith(r.q, "property_id", p1.ID, "metrics", mpaAcqMetrics)
			a, _ := c.report(tok, "acquisition/"+rep, q)
			name := fmt.Sprintf("acquisition/%s %s", rep, r.q.Encode())
			mpaCompare(t, name, a.Rows, dims, calc.acq(r.from, r.to, func(s *mpaSession) string { return strings.Join(key(s), "|") }))
			mpaCompareTotals(t, name, a.Totals, calc.acq(r.from, r.to, func(*mpaSession) string { return "" })[""])
		}
		a, _ := c.report(tok, "acquisition/overview", mpaWith(r.q, "property_id", p1.ID, "metrics", mpaAcqMetrics))
		mpaCompareTotals(t, "acquisition/overview "+r.q.Encode(), a.Totals, calc.acq(r.from, r.to, func(*mpaSession) string { return "" })[""])
	}
}

// checkFiltersSortPaging checks filters, their operators and combinations,
// sorting, paging and row_count.
func (fx *mpaFixture) checkFiltersSortPaging(t *testing.T) {
	c, tok, p1, calc, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.calc, fx.today, fx.yesterday

	// Dimensions of one rollup combined with a filter on another.
	{
		q := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "dimensions": {"source"}, "filter": {"medium==cpc"}, "metrics": {mpaAcqMetrics}}
		a, _ := c.report(tok, "acquisition/query", q)
		all := calc.sessionsIn(yesterday, today)
		var cpc []*mpaSession
		for _, s := range all {
			if s.medium == "cpc" {
				cpc = append(cpc, s)
			}
		}
		w := mpaAcqAgg(cpc, func(s *mpaSession) string { return s.source })
		mpaCompare(t, "query source filter medium==cpc", a.Rows, []string{"source"}, w)
		mpaCompareTotals(t, "query source filter medium==cpc", a.Totals, mpaAcqAgg(cpc, func(*mpaSession) string { return "" })[""])
	}
	// An OR and an AND of filters, sorting, paging, row_count.
	{
		q := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions,users"}, "filter": {"channel==Direct,channel==Email", "channel!=Email"}}
		a, _ := c.report(tok, "acquisition/channel", q)
		var sel []*mpaSession
		for _, s := range calc.sessionsIn(yesterday, today) {
			if s.channel == "Direct" {
				sel = append(sel, s)
			}
		}
		mpaCompare(t, "channel filter (Direct OR Email) AND !=Email", a.Rows, []string{"channel"}, mpaAcqAgg(sel, func(s *mpaSession) string { return s.channel }))

		all := calc.acq(yesterday, today, func(s *mpaSession) string { return s.landing })
		type kv struct {
			k string
			v float64
		}
		var order []kv
		for k, v := range all {
			order = append(order, kv{k, v["sessions"]})
		}
		sort.Slice(order, func(i, j int) bool {
			if order[i].v != order[j].v {
				return order[i].v > order[j].v
			}
			return order[i].k < order[j].k
		})
		q = url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions"}, "sort": {"-sessions,landing_page"}, "limit": {"2"}, "offset": {"1"}}
		a, rawAns := c.report(tok, "acquisition/landing_page", q)
		if got := num(rawAns["row_count"]); int(got) != len(order) {
			t.Errorf("landing_page row_count %v, want %d", got, len(order))
		}
		if len(a.Rows) != 2 {
			t.Errorf("landing_page limit 2 offset 1: %d rows", len(a.Rows))
		} else {
			for i, r := range a.Rows {
				if r["landing_page"] != order[i+1].k || num(r["sessions"]) != order[i+1].v {
					t.Errorf("landing_page sorted row %d: got %v, want %v", i+1, r, order[i+1])
				}
			}
		}
		if num(a.Totals["sessions"]) != calc.acq(yesterday, today, func(*mpaSession) string { return "" })[""]["sessions"] {
			t.Errorf("landing_page page of 2: totals %v are not the range's", a.Totals)
		}
	}
	// A page filter, and the events with a filter on the action.
	{
		a, _ := c.report(tok, "behavior/pages", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "filter": {"page=~^/blog/"}, "metrics": {mpaPageMetrics}})
		wp := calc.pages(yesterday, today, func(p string) (string, bool) { return p, strings.HasPrefix(p, "/blog/") })
		mpaCompare(t, "pages filter ^/blog/", a.Rows, []string{"page"}, wp)
		mpaCompareTotals(t, "pages filter ^/blog/", a.Totals, mpaSum(wp, mpaPageMetrics))
	}
	// Paging past the end, ascending sorts, filter operators.
	{
		all := calc.acq(yesterday, today, func(s *mpaSession) string { return s.channel })
		q := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions"}, "offset": {"100"}}
		a, raw := c.report(tok, "acquisition/channel", q)
		if len(a.Rows) != 0 || int(num(raw["row_count"])) != len(all) {
			t.Errorf("offset past the end: %d rows, row_count %v, want 0 and %d", len(a.Rows), raw["row_count"], len(all))
		}
		a, _ = c.report(tok, "acquisition/channel", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions"}, "sort": {"channel"}})
		var names []string
		for _, r := range a.Rows {
			names = append(names, r["channel"].(string))
		}
		if !sort.StringsAreSorted(names) || len(names) != len(all) {
			t.Errorf("sort=channel: %v", names)
		}
		a, _ = c.report(tok, "acquisition/channel", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions"}, "sort": {"sessions,-channel"}})
		for i := 1; i < len(a.Rows); i++ {
			p, r := a.Rows[i-1], a.Rows[i]
			if num(p["sessions"]) > num(r["sessions"]) || num(p["sessions"]) == num(r["sessions"]) && p["channel"].(string) < r["channel"].(string) {
				t.Errorf("sort=sessions,-channel: %v before %v", p, r)
			}
		}
		for f, keep := range map[string]func(*mpaSession) bool{
			"channel[]Direct|Email":          func(s *mpaSession) bool { return s.channel == "Direct" || s.channel == "Email" },
			"channel=@Paid":                  func(s *mpaSession) bool { return strings.Contains(s.channel, "Paid") },
			"channel!@Paid":                  func(s *mpaSession) bool { return !strings.Contains(s.channel, "Paid") },
			"channel!~^(Direct|Referral)$":   func(s *mpaSession) bool { return s.channel != "Direct" && s.channel != "Referral" },
			"channel=~(?i)^organic":          func(s *mpaSession) bool { return strings.HasPrefix(s.channel, "Organic") },
			"channel!=Direct;channel!=Email": func(s *mpaSession) bool { return s.channel != "Direct" && s.channel != "Email" },
		} {
			var sel []*mpaSession
			for _, s := range calc.sessionsIn(yesterday, today) {
				if keep(s) {
					sel = append(sel, s)
				}
			}
			a, _ := c.report(tok, "acquisition/channel", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"users,sessions,bounces"}, "filter": {f}})
			mpaCompare(t, "channel filter "+f, a.Rows, []string{"channel"}, mpaAcqAgg(sel, func(s *mpaSession) string { return s.channel }))
			mpaCompareTotals(t, "channel filter "+f, a.Totals, mpaAcqAgg(sel, func(*mpaSession) string { return "" })[""])
		}
	}
	// Landing pages and the events with a filter.
	{
		rng := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}}
		a, _ := c.report(tok, "behavior/landing_pages", mpaWith(rng, "filter", "landing_page=@/blog/", "metrics", "sessions,users"))
		bl := calc.acq(yesterday, today, func(s *mpaSession) string { return s.landing })
		for k := range bl {
			if !strings.Contains(k, "/blog/") {
				delete(bl, k)
			}
		}
		mpaCompare(t, "landing pages filter =@/blog/", a.Rows, []string{"landing_page"}, bl)
		a, _ = c.report(tok, "behavior/event_categories", mpaWith(rng, "filter", "event_action=~^video_", "metrics", "total_events,unique_events"))
		mpaCompare(t, "event categories filter on the action", a.Rows, []string{"event_category"}, map[string]map[string]float64{"video": {"total_events": 4, "unique_events": 3}})
	}
}

// checkBehavior compares the behavior reports, by range, and the behavior
// overview's and query's kinds of rows with the calculator.
func (fx *mpaFixture) checkBehavior(t *testing.T) {
	c, tok, p1, calc, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.calc, fx.today, fx.yesterday

	// Behavior reports.
	evMetrics := "total_events,unique_events,event_value,avg_event_value"
	for _, r := range fx.ranges[:3] {
		a, _ := c.report(tok, "behavior/pages", mpaWith(r.q, "property_id", p1.ID, "metrics", mpaPageMetrics))
		name := "behavior/pages " + r.q.Encode()
		wp := calc.pages(r.from, r.to, func(p string) (string, bool) { return p, true })
		mpaCompare(t, name, a.Rows, []string{"page"}, wp)
		mpaCompareTotals(t, name, a.Totals, mpaSum(wp, mpaPageMetrics))

		a, _ = c.report(tok, "behavior/overview", mpaWith(r.q, "property_id", p1.ID, "metrics", mpaPageMetrics))
		mpaCompareTotals(t, "behavior/overview "+r.q.Encode(), a.Totals, mpaSum(wp, mpaPageMetrics))

		a, _ = c.report(tok, "behavior/exit_pages", mpaWith(r.q, "property_id", p1.ID, "metrics", "exits,pageviews,exit_rate"))
		we := map[string]map[string]float64{}
		for k, v := range wp {
			if v["exits"] > 0 {
				we[k] = v
			}
		}
		mpaCompare(t, "behavior/exit_pages "+r.q.Encode(), a.Rows, []string{"page"}, we)
		mpaCompareTotals(t, "behavior/exit_pages "+r.q.Encode(), a.Totals, mpaSum(wp, "exits,pageviews,exit_rate"))

		a, _ = c.report(tok, "behavior/landing_pages", mpaWith(r.q, "property_id", p1.ID, "metrics", mpaAcqMetrics))
		mpaCompare(t, "behavior/landing_pages "+r.q.Encode(), a.Rows, []string{"landing_page"}, calc.acq(r.from, r.to, func(s *mpaSession) string { return s.landing }))

		a, _ = c.report(tok, "behavior/page_paths", mpaWith(r.q, "property_id", p1.ID, "metrics", "pageviews,unique_pageviews,entrances,exits", "path", "/blog/"))
		mpaCompare(t, "behavior/page_paths /blog/ "+r.q.Encode(), a.Rows, []string{"page_path"}, calc.pages(r.from, r.to, func(p string) (string, bool) {
			if !strings.HasPrefix(p, "/blog/") {
				return "", false
			}
			return p, true
		}))
		a, _ = c.report(tok, "behavior/page_paths", mpaWith(r.q, "property_id", p1.ID, "metrics", "pageviews,unique_pageviews,entrances,exits"))
		mpaCompare(t, "behavior/page_paths / "+r.q.Encode(), a.Rows, []string{"page_path"}, calc.pages(r.from, r.to, func(p string) (string, bool) {
			if i := strings.Index(p[1:], "/"); i >= 0 {
				return p[:i+2], true
			}
			return p, true
		}))

		for rep, lvl := range map[string][]string{"events": {"event_category", "event_action", "event_label"}, "event_categories": {"event_category"}, "event_actions": {"event_category", "event_action"}} {
			a, _ := c.report(tok, "behavior/"+rep, mpaWith(r.q, "property_id", p1.ID, "metrics", evMetrics))
			w := calc.events(r.from, r.to, len(lvl))
			mpaCompare(t, "behavior/"+rep+" "+r.q.Encode(), a.Rows, lvl, w)
			mpaCompareTotals(t, "behavior/"+rep+" "+r.q.Encode(), a.Totals, mpaSum(w, "total_events,event_value,avg_event_value"))
		}
		a, _ = c.report(tok, "behavior/filtered", mpaWith(r.q, "property_id", p1.ID))
		if len(a.Rows) != 0 {
			t.Errorf("behavior/filtered %s: %v, want none", r.q.Encode(), a.Rows)
		}
	}
	// The behavior overview's kinds of rows; landing pages in behavior's query.
	{
		rng := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}}
		a, _ := c.report(tok, "behavior/overview", mpaWith(rng, "metrics", "total_events,event_value"))
		mpaCompareTotals(t, "behavior overview of events", a.Totals, mpaSum(calc.events(yesterday, today, 3), "total_events,event_value"))
		a, _ = c.report(tok, "behavior/overview", mpaWith(rng, "metrics", "sessions,users,bounce_rate"))
		mpaCompareTotals(t, "behavior overview of sessions", a.Totals, mpaPick(calc.acq(yesterday, today, func(*mpaSession) string { return "" })[""], "sessions,users,bounce_rate"))
		a, _ = c.report(tok, "behavior/query", mpaWith(rng, "dimensions", "landing_page", "metrics", "sessions,bounce_rate,users"))
		mpaCompare(t, "behavior query landing_page", a.Rows, []string{"landing_page"}, calc.acq(yesterday, today, func(s *mpaSession) string { return s.landing }))
	}
}

// checkSeries compares the overviews' series by day, hour, week and month
// with the calculator.
func (fx *mpaFixture) checkSeries(t *testing.T) {
	c, tok, p1, calc, loc, ln, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.calc, fx.loc, fx.ln, fx.today, fx.yesterday

	// Series: days with zeros, hours of today, weeks.
	{
		from := ln.AddDate(0, 0, -3)
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "from": {from.Format("2006-01-02")}, "to": {today}, "granularity": {"day"}, "metrics": {"users,new_users,sessions,bounce_rate"}})
		var want []map[string]float64
		var labels []string
		for d := from; d.Format("2006-01-02") <= today; d = d.AddDate(0, 0, 1) {
			day := d.Format("2006-01-02")
			labels = append(labels, day)
			want = append(want, calc.acq(day, day, func(*mpaSession) string { return "" })[""])
		}
		mpaCompareSeries(t, "overview by day", a.Rows, labels, want, "users,new_users,sessions,bounce_rate")

		hour := time.Now().In(loc).Hour()
		a, _ = c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "range": {"today"}, "granularity": {"hour"}, "metrics": {"sessions,pageviews,bounces"}})
		if h := time.Now().In(loc).Hour(); h != hour && len(a.Rows) == h+1 {
			hour = h // the hour turned during the request
		}
		labels, want = nil, nil
		for h := 0; h <= hour; h++ {
			labels = append(labels, fmt.Sprintf("%sT%02d", today, h))
			var in []*mpaSession
			for _, s := range calc.sessionsIn(today, today) {
				if s.start.In(loc).Hour() == h {
					in = append(in, s)
				}
			}
			want = append(want, mpaAcqAgg(in, func(*mpaSession) string { return "" })[""])
		}
		mpaCompareSeries(t, "overview by hour", a.Rows, labels, want, "sessions,pageviews,bounces")

		a, _ = c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "granularity": {"week"}, "metrics": {"users,sessions"}})
		labels, want = nil, nil
		weeks := map[string][2]string{}
		for _, day := range []string{yesterday, today} {
			d, _ := time.Parse("2006-01-02", day)
			y, w := d.ISOWeek()
			l := fmt.Sprintf("%d-W%02d", y, w)
			if e, ok := weeks[l]; ok {
				weeks[l] = [2]string{e[0], day}
			} else {
				weeks[l] = [2]string{day, day}
				labels = append(labels, l)
			}
		}
		for _, l := range labels {
			want = append(want, calc.acq(weeks[l][0], weeks[l][1], func(*mpaSession) string { return "" })[""])
		}
		mpaCompareSeries(t, "overview by week", a.Rows, labels, want, "users,sessions")

		a, _ = c.report(tok, "behavior/overview", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "granularity": {"day"}, "metrics": {"pageviews,entrances"}})
		mpaCompareSeries(t, "behavior overview by day", a.Rows, []string{yesterday, today}, []map[string]float64{
			mpaSum(calc.pages(yesterday, yesterday, func(p string) (string, bool) { return p, true }), "pageviews,entrances"),
			mpaSum(calc.pages(today, today, func(p string) (string, bool) { return p, true }), "pageviews,entrances"),
		}, "pageviews,entrances")
	}
	// Months with zeros; users by hour.
	{
		first := time.Date(ln.Year(), ln.Month(), 1, 12, 0, 0, 0, loc).AddDate(0, -1, 0)
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "from": {first.Format("2006-01-02")}, "to": {today}, "granularity": {"month"}, "metrics": {"users,sessions"}})
		labels := []string{first.Format("2006-01"), ln.Format("2006-01")}
		wants := []map[string]float64{{}, calc.acq(ln.Format("2006-01")+"-01", today, func(*mpaSession) string { return "" })[""]}
		if yesterday[:7] != today[:7] {
			wants = []map[string]float64{calc.acq(yesterday, yesterday, func(*mpaSession) string { return "" })[""], calc.acq(today, today, func(*mpaSession) string { return "" })[""]}
		}
		mpaCompareSeries(t, "overview by month", a.Rows, labels, wants, "users,sessions")

		a, _ = c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "range": {"today"}, "granularity": {"hour"}, "metrics": {"users,new_users"}})
		for i, r := range a.Rows {
			var in []*mpaSession
			for _, s := range calc.sessionsIn(today, today) {
				if s.start.In(loc).Hour() == i {
					in = append(in, s)
				}
			}
			w := mpaAcqAgg(in, func(*mpaSession) string { return "" })[""]
			if num(r["users"]) != w["users"] || num(r["new_users"]) != w["new_users"] {
				t.Errorf("users by hour %v: %v, want %v", r["period"], r, mpaPick(w, "users,new_users"))
			}
		}
	}
}

// checkComparison compares reports compared with the previous period,
// tables and series, with the calculator.
func (fx *mpaFixture) checkComparison(t *testing.T) {
	c, tok, p1, calc, loc, ln, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.calc, fx.loc, fx.ln, fx.today, fx.yesterday

	// Comparison with the previous period: today against yesterday.
	{
		_, raw := c.report(tok, "acquisition/channel", url.Values{"property_id": {p1.ID}, "range": {"today"}, "compare": {"previous_period"}, "metrics": {"users,new_users,sessions,bounces"}})
		cur := calc.acq(today, today, func(s *mpaSession) string { return s.channel })
		prev := calc.acq(yesterday, yesterday, func(s *mpaSession) string { return s.channel })
		rows, _ := raw["rows"].([]any)
		if len(rows) != len(cur) {
			t.Errorf("channel compare: %d rows, want %d", len(rows), len(cur))
		}
		for _, r := range rows {
			row, _ := r.(map[string]any)
			ch, _ := row["channel"].(string)
			p, _ := row["previous"].(map[string]any)
			for _, k := range []string{"users", "new_users", "sessions", "bounces"} {
				if num(row[k]) != cur[ch][k] {
					t.Errorf("channel compare %s %s: %v, want %v", ch, k, row[k], cur[ch][k])
				}
				if num(p[k]) != prev[ch][k] {
					t.Errorf("channel compare %s previous %s: %v, want %v (row %v)", ch, k, p[k], prev[ch][k], row)
				}
			}
		}
		pt, _ := raw["previous_totals"].(map[string]any)
		mpaCompareTotals(t, "channel compare previous_totals", pt, mpaPick(calc.acq(yesterday, yesterday, func(*mpaSession) string { return "" })[""], "users,new_users,sessions,bounces"))
		pr, _ := raw["previous_range"].(map[string]any)
		if pr["from"] != yesterday || pr["to"] != yesterday {
			t.Errorf("previous_range %v, want %s..%s", pr, yesterday, yesterday)
		}
	}
	// A range reaching into the future has no periods not yet begun; a
	// series compared with the previous period matches periods by position.
	{
		tomorrow := ln.AddDate(0, 0, 1).Format("2006-01-02")
		a, raw := c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {tomorrow}, "granularity": {"day"}, "metrics": {"users,sessions"}, "compare": {"previous_period"}})
		mpaCompareSeries(t, "overview by day to tomorrow", a.Rows, []string{yesterday, today}, []map[string]float64{
			calc.acq(yesterday, yesterday, func(*mpaSession) string { return "" })[""],
			calc.acq(today, today, func(*mpaSession) string { return "" })[""],
		}, "users,sessions")
		pr, _ := raw["previous_range"].(map[string]any)
		if pr["from"] != ln.AddDate(0, 0, -4).Format("2006-01-02") || pr["to"] != ln.AddDate(0, 0, -2).Format("2006-01-02") {
			t.Errorf("previous_range of %s..%s: %v", yesterday, tomorrow, pr)
		}
		for i, r := range a.Rows {
			p, _ := r["previous"].(map[string]any)
			if num(p["sessions"]) != 0 || num(p["users"]) != 0 {
				t.Errorf("series row %d previous %v, want zeros", i, p)
			}
		}
		w := calc.acq(yesterday, today, func(*mpaSession) string { return "" })[""]
		mpaCompareTotals(t, "overview to tomorrow", a.Totals, mpaPick(w, "users,sessions"))

		_, raw = c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "range": {"today"}, "granularity": {"hour"}, "metrics": {"sessions"}, "compare": {"previous_period"}})
		rows, _ := raw["rows"].([]any)
		for i, r := range rows {
			row, _ := r.(map[string]any)
			var in float64
			for _, s := range calc.sessionsIn(yesterday, yesterday) {
				if s.start.In(loc).Hour() == i {
					in++
				}
			}
			p, _ := row["previous"].(map[string]any)
			if num(p["sessions"]) != in {
				t.Errorf("hour series compared: row %v previous sessions %v, want %v", row["period"], p["sessions"], in)
			}
		}
	}
}

// checkRealtime reads the realtime view of property 1 (c9 and c24) and of
// property 2, its lists and windows.
func (fx *mpaFixture) checkRealtime(t *testing.T) {
	c, tok, p1, p2 := fx.client(t), fx.tok, fx.p1, fx.p2

	// Realtime: only c9's event is within the last 30 minutes.
	{
		_, raw := c.report(tok, "realtime", url.Values{"property_id": {p1.ID}})
		if num(raw["active_users_5m"]) != 1 || num(raw["active_users_30m"]) != 2 || num(raw["pageviews"]) != 2 {
			t.Errorf("realtime of property 1: %v, want 1 user in 5 minutes, 2 users and 2 pageviews in 30", raw)
		}
		if src, _ := json.Marshal(raw["top_sources"]); !strings.Contains(string(src), `"news.example"`) {
			t.Errorf("realtime top sources: %s, want news.example among them", src)
		}
		var perMinute float64
		ms, _ := raw["per_minute"].([]any)
		for _, x := range ms {
			perMinute += num(x.(map[string]any)["pageviews"])
		}
		if len(ms) != 30 || perMinute != 2 {
			t.Errorf("realtime per minute: %d minutes, %v pageviews, want 30 and 2", len(ms), perMinute)
		}
	}
	// Realtime lists and windows.
	{
		_, raw := c.report(tok, "realtime", url.Values{"property_id": {p2.ID}, "window": {"5"}, "limit": {"1"}})
		if num(raw["pageviews"]) != 3 || num(raw["active_users_5m"]) != 2 {
			t.Errorf("realtime window 5: %v", raw)
		}
		if tp, _ := raw["top_pages"].([]any); len(tp) != 1 {
			t.Errorf("realtime limit 1: top pages %v", raw["top_pages"])
		}
		for v, key := range map[string]string{"pages": `"top_pages":[{"page":"/","pageviews":2},{"page":"/about","pageviews":1}]`, "sources": `"top_sources":[{"source":"(direct)","pageviews":3}]`, "minutes": `"per_minute":[`} {
			if status, body := c.get(tok, "/v1/reports/realtime/"+v, url.Values{"property_id": {p2.ID}}); status != 200 || !strings.Contains(body, key) {
				t.Errorf("realtime/%s: %d %s, want %s", v, status, body, key)
			}
		}
	}
}

// checkIsolation checks that each property holds its own traffic only, and
// each merchant sees their own.
func (fx *mpaFixture) checkIsolation(t *testing.T) {
	c, tok, tok2, p3, p2Range := fx.client(t), fx.tok, fx.tok2, fx.p3, fx.p2Range

	// Property 2 holds its own traffic only, and its bot among the filtered.
	a, _ := c.report(tok, "acquisition/overview", mpaWith(p2Range, "metrics", "users,sessions,bounce_rate,pageviews"))
	mpaCompareTotals(t, "property 2 overview", a.Totals, map[string]float64{"users": 2, "sessions": 2, "bounce_rate": 0.5, "pageviews": 3})
	a, _ = c.report(tok, "behavior/filtered", p2Range)
	mpaCompare(t, "property 2 filtered", a.Rows, []string{"reason"}, map[string]map[string]float64{"bot": {"hits": 1}})
	a, _ = c.report(tok2, "acquisition/overview", url.Values{"property_id": {p3.ID}, "range": {"today"}, "metrics": {"sessions"}})
	mpaCompareTotals(t, "merchant 2's property", a.Totals, map[string]float64{"sessions": 0})
}

// checkPresets checks the dates each range preset stands for in property
// 1's zone.
func (fx *mpaFixture) checkPresets(t *testing.T) {
	c, tok, p1, loc, ln, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.loc, fx.ln, fx.today, fx.yesterday

	// Presets: the dates each stands for in the property's zone.
	d := func(t time.Time) string { return t.Format("2006-01-02") }
	wd := (int(ln.Weekday()) + 6) % 7 // days since Monday
	monday := ln.AddDate(0, 0, -wd)
	first := time.Date(ln.Year(), ln.Month(), 1, 12, 0, 0, 0, loc)
	for preset, want := range map[string][2]string{
		"today":        {today, today},
		"yesterday":    {yesterday, yesterday},
		"last_7_days":  {d(ln.AddDate(0, 0, -7)), yesterday},
		"last_14_days": {d(ln.AddDate(0, 0, -14)), yesterday},
		"last_28_days": {d(ln.AddDate(0, 0, -28)), yesterday},
		"last_30_days": {d(ln.AddDate(0, 0, -30)), yesterday},
		"last_90_days": {d(ln.AddDate(0, 0, -90)), yesterday},
		"this_week":    {d(monday), today},
		"last_week":    {d(monday.AddDate(0, 0, -7)), d(monday.AddDate(0, 0, -1))},
		"this_month":   {d(first), today},
		"last_month":   {d(first.AddDate(0, -1, 0)), d(first.AddDate(0, 0, -1))},
	} {
		_, raw := c.report(tok, "acquisition/overview", url.Values{"property_id": {p1.ID}, "range": {preset}, "metrics": {"sessions"}})
		r, _ := raw["range"].(map[string]any)
		if r["from"] != want[0] || r["to"] != want[1] {
			t.Errorf("range=%s: %v, want %s..%s", preset, r, want[0], want[1])
		}
	}
}

// checkCSV reads reports as CSV: a table, a compared series, a campaign a
// spreadsheet would run as a formula.
func (fx *mpaFixture) checkCSV(t *testing.T) {
	c, tok, p1, calc, today, yesterday := fx.client(t), fx.tok, fx.p1, fx.calc, fx.today, fx.yesterday

	// A table; a series compared with the previous period.
	{
		all := calc.acq(yesterday, today, func(s *mpaSession) string { return s.channel })
		q := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}, "metrics": {"sessions"}, "format": {"csv"}}
		status, body := c.get(tok, "/v1/reports/acquisition/channel", q)
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if status != 200 || lines[0] != "channel,sessions" || len(lines) != len(all)+1 {
			t.Errorf("csv: %d %q", status, body)
		}
		status, body = c.get(tok, "/v1/reports/acquisition/overview", url.Values{"property_id": {p1.ID}, "range": {"today"}, "granularity": {"day"}, "metrics": {"sessions"}, "compare": {"previous_period"}, "format": {"csv"}})
		prev := mpaPick(calc.acq(yesterday, yesterday, func(*mpaSession) string { return "" })[""], "sessions")["sessions"]
		cur := mpaPick(calc.acq(today, today, func(*mpaSession) string { return "" })[""], "sessions")["sessions"]
		if w := fmt.Sprintf("period,period_start,sessions,previous_sessions\n%s,", today); status != 200 || !strings.HasPrefix(body, w) || !strings.HasSuffix(strings.TrimSpace(body), fmt.Sprintf(",%v,%v", cur, prev)) {
			t.Errorf("csv compared: %d %q, want %q... ,%v,%v", status, body, w, cur, prev)
		}
	}
	// A campaign a spreadsheet would run as a formula.
	{
		rng := url.Values{"property_id": {p1.ID}, "from": {yesterday}, "to": {today}}
		status, body := c.get(tok, "/v1/reports/acquisition/campaign", mpaWith(rng, "metrics", "sessions", "format", "csv", "filter", "campaign=@1"))
		if status != 200 || !strings.Contains(body, "\n'=1+2,1") {
			t.Errorf("csv of a formula: %d %q", status, body)
		}
	}
}

// checkPropertySettings sends traffic to a property with its own session
// timeout, referral exclusions and channels, and reads its reports.
func (fx *mpaFixture) checkPropertySettings(t *testing.T) {
	c, tok := fx.client(t), fx.tok
	ev, pv := mpaEv, mpaPageView

	// A property's own settings: a 10-minute timeout, a payment provider
	// excluded as a referrer, a custom channel; a page with a non-ASCII
	// path and an event category holding " / ".
	p4 := c.createProperty(tok, map[string]any{"name": "Settings", "hostnames": []string{"settings.example"}, "time_zone": "UTC"})
	c.do("PUT", "/v1/properties/"+p4.ID+"/rules", tok, map[string]any{
		"session_timeout_minutes": 10, "referral_exclusions": []string{"paypal.com"},
		"channels": []map[string]any{{"name": "Partners", "source": "^partner"}},
	}, http.StatusOK, nil)
	var sec4 struct {
		Secret string `json:"secret"`
	}
	c.do("POST", "/v1/properties/"+p4.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec4)
	n := time.Now().UTC()
	at := func(min int) time.Time { return n.Add(-time.Duration(min) * time.Minute) }
	page := func(cid string, min int, loc, ref string) mpaEvent {
		return pv(cid, at(min), "https://settings.example"+loc, ref)
	}
	for _, r := range [][]mpaEvent{
		{page("d1", 20, "/a", ""), page("d1", 9, "/b", "")},
		{page("d2", 19, "/a", "https://www.paypal.com/checkout"), page("d2", 18, "/thanks", "https://checkout.paypal.com/")},
		{page("d3", 17, "/?utm_source=partner-x&utm_medium=referral", "")},
		{page("d4", 16, "/caf%C3%A9", "https://paypal.com/"), page("d4", 15, "/café", "https://www.google.com/"),
			ev("d4", "play", at(14), map[string]any{"event_category": "Video / YouTube", "event_label": "intro"})},
	} {
		c.sendMP(p4.TrackingID, sec4.Secret, r, http.StatusNoContent)
	}
	rng := url.Values{"property_id": {p4.ID}, "from": {n.AddDate(0, 0, -1).Format("2006-01-02")}, "to": {n.Format("2006-01-02")}}
	eventually.NoError(t, 60*time.Second, "processing of the settings property", func() error {
		a, _ := c.report(tok, "acquisition/overview", mpaWith(rng, "metrics", "sessions,pageviews,events"))
		if num(a.Totals["pageviews"]) != 7 || num(a.Totals["events"]) != 1 {
			return fmt.Errorf("totals %v", a.Totals)
		}
		return nil
	})
	a, _ := c.report(tok, "acquisition/channel", mpaWith(rng, "metrics", "sessions,users"))
	mpaCompare(t, "settings: channels", a.Rows, []string{"channel"}, map[string]map[string]float64{
		"Direct": {"sessions": 4, "users": 3}, "Partners": {"sessions": 1, "users": 1}})
	a, _ = c.report(tok, "behavior/pages", mpaWith(rng, "metrics", "pageviews,unique_pageviews", "filter", "page==/café"))
	mpaCompare(t, "settings: page==/café", a.Rows, []string{"page"}, map[string]map[string]float64{"/caf%C3%A9": {"pageviews": 2, "unique_pageviews": 1}})
	a, _ = c.report(tok, "behavior/events", mpaWith(rng, "metrics", "total_events"))
	mpaCompare(t, "settings: events", a.Rows, []string{"event_category", "event_action", "event_label"}, map[string]map[string]float64{"Video / YouTube|play|intro": {"total_events": 1}})
}

// checkErrors checks the report API's error answers: their status and
// code.
func (fx *mpaFixture) checkErrors(t *testing.T) {
	c, tok, tok2, p1, p3 := fx.client(t), fx.tok, fx.tok2, fx.p1, fx.p3

	// Error answers.
	for _, e := range []struct {
		path   string
		token  string
		q      url.Values
		status int
		code   string
	}{
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "metrics": {"sessions,bogus"}}, 400, "unknown_metric"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"2026-02-30"}, "to": {"2026-03-01"}}, 400, "invalid_date"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"2026-03-01"}}, 400, "invalid_range"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"2026-03-02"}, "to": {"2026-03-01"}}, 400, "invalid_range"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "range": {"last_3_days"}}, 400, "invalid_range"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"2024-01-01"}, "to": {"2026-01-01"}}, 400, "range_too_long"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "start_date": {"2026-01-01"}}, 400, "unknown_parameter"},
		{"acquisition/query", tok, url.Values{"property_id": {p1.ID}, "dimensions": {"country,device"}}, 400, "incompatible_dimensions"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "granularity": {"hour"}}, 400, "hour_unavailable"},
		{"acquisition/nope", tok, url.Values{"property_id": {p1.ID}}, 404, "unknown_report"},
		{"acquisition/channel", tok, url.Values{"property_id": {"7d8f9e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"}}, 404, "property_not_found"},
		{"acquisition/channel", tok2, url.Values{"property_id": {p1.ID}}, 404, "property_not_found"},
		{"behavior/pages", tok, url.Values{"property_id": {p3.ID}}, 404, "property_not_found"},
		{"realtime", tok2, url.Values{"property_id": {p1.ID}}, 404, "property_not_found"},
		{"behavior/pages", tok, url.Values{"property_id": {p1.ID}, "metrics": {"sessions,pageviews"}}, 400, "unknown_metric"},
		{"behavior/overview", tok, url.Values{"property_id": {p1.ID}, "metrics": {"sessions,total_events"}}, 400, "incompatible_metrics"},
		{"acquisition/channel", "", url.Values{"property_id": {p1.ID}}, 401, "missing_token"},
		{"acquisition/channel", tok, url.Values{}, 400, "missing_parameter"},
		{"acquisition/channel", tok, url.Values{"property_id": {"abc"}}, 400, "invalid_parameter"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "limit": {"0"}}, 400, "invalid_limit"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "limit": {"10001"}}, 400, "invalid_limit"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "offset": {"-1"}}, 400, "invalid_offset"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "sort": {"bogus"}}, 400, "invalid_sort"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "compare": {"yes"}}, 400, "invalid_compare"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "granularity": {"year"}}, 400, "invalid_granularity"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"1969-12-31"}, "to": {"1970-01-02"}}, 400, "invalid_date"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "from": {"2026-3-1"}, "to": {"2026-03-02"}}, 400, "invalid_date"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "filter": {"channel~~x"}}, 400, "invalid_filter"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "filter": {"channel=~("}}, 400, "invalid_filter"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "filter": {"page==/a"}}, 400, "unknown_dimension"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "dimensions": {"source"}}, 400, "fixed_dimensions"},
		{"acquisition/query", tok, url.Values{"property_id": {p1.ID}, "dimensions": {"source,source"}}, 400, "duplicate_dimension"},
		{"acquisition/query", tok, url.Values{"property_id": {p1.ID}, "dimensions": {"source,medium,source_medium,channel"}}, 400, "too_many_dimensions"},
		{"acquisition/query", tok, url.Values{"property_id": {p1.ID}, "dimensions": {"page"}}, 400, "unknown_dimension"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "metrics": {"users,users"}}, 400, "duplicate_metric"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "path": {"/blog/"}}, 400, "unused_parameter"},
		{"behavior/page_paths", tok, url.Values{"property_id": {p1.ID}, "path": {"/a#b"}}, 400, "invalid_path"},
		{"realtime", tok, url.Values{"property_id": {p1.ID}, "window": {"31"}}, 400, "invalid_window"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID}, "format": {"xml"}}, 400, "invalid_parameter"},
		{"acquisition/channel", tok, url.Values{"property_id": {p1.ID, p1.ID}}, 400, "repeated_parameter"},
	} {
		status, body := c.get(e.token, "/v1/reports/"+e.path, e.q)
		if status != e.status || !strings.Contains(body, `"code":"`+e.code) {
			t.Errorf("%s %s: %d %s, want %d %s", e.path, e.q.Encode(), status, body, e.status, e.code)
		}
	}
}

// mpaEvent is one Measurement API event as sent.
type mpaEvent struct {
	cid, name string
	t         time.Time
	eventID   string
	params    map[string]any
}

type mpaClient struct {
	t    *testing.T
	ctx  context.Context
	http *http.Client
	gw   string
}

type mpaProperty struct {
	ID         string `json:"id"`
	TrackingID string `json:"tracking_id"`
}

// do calls the gateway with a JSON body and wants the status.
func (c *mpaClient) do(method, path, token string, body any, status int, out any) string {
	c.t.Helper()
	var j []byte
	if body != nil {
		j, _ = json.Marshal(body)
	}
	code, b := c.send(method, path, token, j)
	if code != status {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return string(b)
}

// send sends a request (a JSON body, or none) to the gateway and returns
// its answer, waiting out, for up to 30 seconds, a 503 (the gateway not
// yet holding config-svc's keys just after start: retried shortly) and
// the tenant's rate limit (a 429: retried after its Retry-After; the
// audits call more a second than a tenant may).
func (c *mpaClient) send(method, path, token string, body []byte) (int, []byte) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(c.ctx, method, c.gw+path, r)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var wait time.Duration
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			wait = 100 * time.Millisecond
		case http.StatusTooManyRequests:
			n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			wait = time.Duration(max(n, 1)) * time.Second
			if err != nil {
				wait = time.Second
			}
		}
		if wait == 0 || time.Now().Add(wait).After(deadline) {
			return resp.StatusCode, b
		}
		time.Sleep(wait)
	}
}

func (c *mpaClient) signUp(email string) string {
	c.t.Helper()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	c.do("POST", "/v1/signup", "", map[string]string{"email": email, "password": "correct horse battery", "company": "Company of " + email}, http.StatusCreated, &tok)
	return tok.AccessToken
}

func (c *mpaClient) createProperty(token string, body map[string]any) mpaProperty {
	c.t.Helper()
	var p mpaProperty
	c.do("POST", "/v1/properties", token, body, http.StatusCreated, &p)
	return p
}

func (c *mpaClient) post(path, ua string, body any) (int, string) {
	c.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(c.ctx, "POST", c.gw+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// sendMP sends events of one client in one request, each with its own
// timestamp_micros, as GA4's Measurement Protocol takes them.
func (c *mpaClient) sendMP(tid, secret string, evs []mpaEvent, status int) string {
	c.t.Helper()
	var list []map[string]any
	for _, e := range evs {
		ev := map[string]any{"name": e.name, "timestamp_micros": e.t.UnixMicro()}
		if e.params != nil {
			ev["params"] = e.params
		}
		if e.eventID != "" {
			ev["event_id"] = e.eventID
		}
		list = append(list, ev)
	}
	body := map[string]any{"client_id": evs[0].cid, "user_id": "u-" + evs[0].cid, "events": list}
	code, b := c.post("/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "python-requests/2.31", body)
	if code != status {
		c.t.Errorf("mp/collect %v: %d %s, want %d", evs, code, b, status)
	}
	return b
}

func (c *mpaClient) sendMPNoTime(tid, secret string, e mpaEvent) {
	c.t.Helper()
	body := map[string]any{"client_id": e.cid, "events": []map[string]any{{"name": e.name, "params": e.params}}}
	if code, b := c.post("/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "", body); code != http.StatusNoContent {
		c.t.Errorf("mp/collect %v: %d %s", e, code, b)
	}
}

func (c *mpaClient) sendBrowser(tid, ua string, hits []map[string]any) {
	c.t.Helper()
	if code, b := c.post("/collect?tid="+tid, ua, map[string]any{"hits": hits}); code != http.StatusNoContent {
		c.t.Errorf("collect: %d %s", code, b)
	}
}

// get calls the gateway (as send) with the query q.
func (c *mpaClient) get(token, path string, q url.Values) (int, string) {
	c.t.Helper()
	code, b := c.send("GET", path+"?"+q.Encode(), token, nil)
	return code, string(b)
}

// report reads a report through the gateway. An answer marked stale (a
// cached result, served because computing it failed just then: Cassandra
// slow on a loaded machine) is asked again, for up to 30 seconds: the
// audits compare current numbers.
func (c *mpaClient) report(token, path string, q url.Values) (reportAnswer, map[string]any) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := c.get(token, "/v1/reports/"+path, q)
		if status != http.StatusOK {
			c.t.Fatalf("GET %s?%s: %d %s", path, q.Encode(), status, body)
		}
		var a reportAnswer
		var raw map[string]any
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			c.t.Fatalf("GET %s: %v", path, err)
		}
		_ = json.Unmarshal([]byte(body), &raw)
		if !a.Stale || time.Now().After(deadline) {
			return a, raw
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mpaWith(q url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// The calculator: sessions from the events by docs/processing.md.

type mpaHit struct {
	mpaEvent
	kind                        string // pageview, event, ping
	page                        string // path and query without attribution parameters
	query                       url.Values
	ref                         string
	cat, act, label             string
	value                       float64
	nonInteraction              bool
	cSource, cMedium, cCampaign string
}

type mpaSession struct {
	cid, day                   string
	start, end                 time.Time
	hits                       []*mpaHit
	source, medium, campaign   string
	channel, referrer, landing string
	first                      bool
	pageviews, events          int
	bounce, engaged            bool
	conversions                int
	goalValue                  float64
}

type mpaCalc struct {
	sessions []*mpaSession
	loc      *time.Location
}

func mpaHitOf(e mpaEvent) *mpaHit {
	h := &mpaHit{mpaEvent: e, kind: "event", cat: e.name, act: e.name, label: "(not set)"}
	str := func(k string) string { s, _ := e.params[k].(string); return s }
	switch e.name {
	case "page_view":
		h.kind = "pageview"
	case "user_engagement":
		h.kind = "ping"
	}
	if l := str("page_location"); l != "" {
		u, _ := url.Parse(l)
		h.query = u.Query()
		// The page keeps its query as sent, less the attribution
		// parameters.
		var kept []string
		for _, kv := range strings.Split(u.RawQuery, "&") {
			switch name, _, _ := strings.Cut(kv, "="); name {
			case "", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "gbraid", "wbraid", "msclkid", "dclid", "fbclid":
			default:
				kept = append(kept, kv)
			}
		}
		h.page = u.EscapedPath()
		if len(kept) > 0 {
			h.page += "?" + strings.Join(kept, "&")
		}
	}
	h.ref = str("page_referrer")
	if c := str("event_category"); c != "" {
		h.cat = c
	}
	if l := str("event_label"); l != "" {
		h.label = l
	}
	if v, ok := e.params["value"].(string); ok {
		h.value, _ = strconv.ParseFloat(v, 64)
	} else if v, ok := e.params["value"].(float64); ok {
		h.value = v
	} else if v, ok := e.params["value"].(int); ok {
		h.value = float64(v)
	}
	h.nonInteraction = e.params["non_interaction"] == true || e.params["non_interaction"] == "1"
	if e.name == "campaign_details" {
		h.nonInteraction = true
		h.cSource, h.cMedium, h.cCampaign = str("source"), str("medium"), str("campaign")
	}
	return h
}

// tags are the hit's utm tags, each overridden by a campaign given apart.
func (h *mpaHit) tags() (source, medium, campaign string) {
	source, medium, campaign = h.query.Get("utm_source"), h.query.Get("utm_medium"), h.query.Get("utm_campaign")
	if h.cSource != "" {
		source = h.cSource
	}
	if h.cMedium != "" {
		medium = h.cMedium
	}
	if h.cCampaign != "" {
		campaign = h.cCampaign
	}
	return source, medium, campaign
}

// campaign is what the campaign rule of sessions compares.
func (h *mpaHit) campaign() string {
	g := func(k string) string { return h.query.Get(k) }
	s, m, c := h.tags()
	google := cmp.Or(g("gclid"), g("gbraid"), g("wbraid")) // Google's click IDs, in this order
	if s+m+c+google+g("msclkid") == "" {
		return ""
	}
	return strings.Join([]string{s, m, c, google, g("msclkid")}, "\x00")
}

func mpaSessionize(events []mpaEvent, loc *time.Location) *mpaCalc {
	by := map[string][]*mpaHit{}
	ids := map[string]bool{}
	for _, e := range events {
		if e.eventID != "" {
			if ids[e.cid+e.eventID] {
				continue
			}
			ids[e.cid+e.eventID] = true
		}
		by[e.cid] = append(by[e.cid], mpaHitOf(e))
	}
	calc := &mpaCalc{loc: loc}
	for _, hits := range by {
		for _, s := range mpaSplit(hits, loc, 30*time.Minute) {
			s.finish()
			calc.sessions = append(calc.sessions, s)
		}
	}
	return calc
}

// mpaSplit puts one visitor's hits in time order and into sessions by the
// three rules (a gap longer than timeout, the local date changing, a
// campaign differing from the session's); a ping that would start a
// session is ignored. The first session is marked first; finishing them
// (attribution, totals) is the caller's.
func mpaSplit(hits []*mpaHit, loc *time.Location, timeout time.Duration) []*mpaSession {
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].t.Before(hits[j].t) })
	var cur *mpaSession
	var all []*mpaSession
	for _, h := range hits {
		day := h.t.In(loc).Format("2006-01-02")
		split := cur == nil || h.t.Sub(cur.end) > timeout || day != cur.day
		if !split && h.campaign() != "" && h.campaign() != cur.hits[0].campaign() {
			split = true
		}
		if split {
			if h.kind == "ping" {
				continue
			}
			cur = &mpaSession{cid: h.cid, day: day, start: h.t}
			all = append(all, cur)
		}
		cur.hits = append(cur.hits, h)
		cur.end = h.t
	}
	for i, s := range all {
		s.first = i == 0
	}
	return all
}

// mpaOwnHost says whether a referrer is the property's own site
// (shop.example or a subdomain): no source.
func mpaOwnHost(ref string) bool {
	u, _ := url.Parse(ref)
	h := strings.ToLower(u.Hostname())
	return h == "shop.example" || strings.HasSuffix(h, ".shop.example")
}

// mpaChannels holds the channel the traffic table expects of some clients.
var mpaChannels = map[string]string{}

var mpaEngines = map[string]string{"google.com": "google", "bing.com": "bing", "duckduckgo.com": "duckduckgo", "search.yahoo.com": "yahoo"}
var mpaSocial = map[string]bool{"facebook.com": true}

func (s *mpaSession) finish() {
	s.attribute(nil)
	if ch, ok := mpaChannels[s.cid]; ok {
		s.channel = ch
	}
	s.tally(func(h *mpaHit) (string, float64, bool) {
		switch {
		case h.kind == "pageview" && h.page == "/checkout":
			return "checkout", 5, true
		case h.kind == "event" && h.cat == "purchase" && h.act == "purchase":
			return "purchase", h.value, true
		}
		return "", 0, false
	})
}

// attribute sets the session's source, medium, campaign, referrer and
// default channel from its first hit; a referrer on the property's own
// hosts or on one of excluded (or a subdomain) is none.
func (s *mpaSession) attribute(excluded []string) {
	f := s.hits[0]
	q := func(k string) string { return f.query.Get(k) }
	orNotSet := func(v string) string {
		if v == "" {
			return "(not set)"
		}
		return v
	}
	ref := f.ref
	if ref != "" {
		u, _ := url.Parse(ref)
		h := strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
		for _, x := range excluded {
			if h == x || strings.HasSuffix(h, "."+x) {
				ref = ""
			}
		}
	}
	s.referrer = "(none)"
	src, med, cmp := f.tags()
	switch {
	case q("gclid") != "" || q("gbraid") != "" || q("wbraid") != "":
		s.source, s.medium, s.campaign = "google", "cpc", orNotSet(q("utm_campaign"))
	case q("msclkid") != "":
		s.source, s.medium, s.campaign = "bing", "cpc", orNotSet(q("utm_campaign"))
	case src+med+cmp != "":
		s.source, s.medium, s.campaign = orNotSet(src), orNotSet(med), orNotSet(cmp)
	case ref != "" && !mpaOwnHost(ref):
		u, _ := url.Parse(ref)
		host := strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
		s.referrer = host
		if p := strings.TrimSuffix(u.Path, "/"); p != "" {
			s.referrer += u.Path
		}
		if e, ok := mpaEngines[host]; ok {
			s.source, s.medium, s.campaign = e, "organic", "(organic)"
		} else {
			s.source, s.medium, s.campaign = host, "referral", "(referral)"
		}
	default:
		s.source, s.medium, s.campaign = "(direct)", "(none)", "(direct)"
	}
	med = strings.ToLower(s.medium)
	paid := med == "cpc" || med == "ppc" || strings.HasPrefix(med, "paid")
	search := s.source == "google" || s.source == "bing"
	switch {
	case s.source == "(direct)":
		s.channel = "Direct"
	case search && paid:
		s.channel = "Paid Search"
	case paid:
		s.channel = "Paid Other"
	case mpaSocial[s.source]:
		s.channel = "Organic Social"
	case search:
		s.channel = "Organic Search"
	case med == "referral":
		s.channel = "Referral"
	case med == "email":
		s.channel = "Email"
	case med == "affiliate":
		s.channel = "Affiliates"
	default:
		s.channel = "Unassigned"
	}
}

// tally counts the session's pages, events and conversions, and its
// landing page, bounce and engagement; goal says which goal a hit
// completes, with its value (each counts once, at its first completion).
func (s *mpaSession) tally(goal func(*mpaHit) (id string, value float64, ok bool)) {
	s.landing = "(not set)"
	interaction := false
	goals := map[string]float64{}
	for _, h := range s.hits {
		switch h.kind {
		case "pageview":
			if s.pageviews == 0 {
				s.landing = h.page
			}
			s.pageviews++
		case "event":
			s.events++
			if !h.nonInteraction {
				interaction = true
			}
		}
		if id, v, ok := goal(h); ok {
			if _, done := goals[id]; !done {
				goals[id] = v
			}
		}
	}
	s.conversions = len(goals)
	for _, v := range goals {
		s.goalValue += v
	}
	s.bounce = s.pageviews == 1 && !interaction
	s.engaged = s.end.Sub(s.start) > 10*time.Second || s.pageviews >= 2 || s.conversions > 0
}

func (c *mpaCalc) sessionsIn(from, to string) []*mpaSession {
	var out []*mpaSession
	for _, s := range c.sessions {
		if s.day >= from && s.day <= to {
			out = append(out, s)
		}
	}
	return out
}

func (c *mpaCalc) acq(from, to string, key func(*mpaSession) string) map[string]map[string]float64 {
	return mpaAcqAgg(c.sessionsIn(from, to), key)
}

func mpaAcqAgg(sessions []*mpaSession, key func(*mpaSession) string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	users := map[string]map[string]bool{}
	dur := map[string]float64{}
	for _, s := range sessions {
		k := key(s)
		m := out[k]
		if m == nil {
			m = map[string]float64{}
			out[k], users[k] = m, map[string]bool{}
		}
		users[k][s.cid] = true
		m["sessions"]++
		if s.first {
			m["new_users"]++
		}
		if s.engaged {
			m["engaged_sessions"]++
		}
		if s.bounce {
			m["bounces"]++
		}
		m["pageviews"] += float64(s.pageviews)
		m["events"] += float64(s.events)
		m["conversions"] += float64(s.conversions)
		m["goal_value"] += s.goalValue
		dur[k] += s.end.Sub(s.start).Seconds()
	}
	for k, m := range out {
		m["users"] = float64(len(users[k]))
		m["bounce_rate"] = m["bounces"] / m["sessions"]
		m["engagement_rate"] = m["engaged_sessions"] / m["sessions"]
		m["avg_session_duration"] = dur[k] / m["sessions"]
		m["pages_per_session"] = m["pageviews"] / m["sessions"]
		m["conversion_rate"] = m["conversions"] / m["sessions"]
	}
	if len(sessions) == 0 && key(&mpaSession{}) == "" {
		out[""] = map[string]float64{}
	}
	return out
}

// pages aggregates the page metrics by group (a page, or a directory).
func (c *mpaCalc) pages(from, to string, group func(page string) (string, bool)) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	get := func(p string) map[string]float64 {
		if out[p] == nil {
			out[p] = map[string]float64{}
		}
		return out[p]
	}
	for _, s := range c.sessionsIn(from, to) {
		var pvs []*mpaHit
		for _, h := range s.hits {
			if h.kind == "pageview" {
				pvs = append(pvs, h)
			}
		}
		seen := map[string]bool{}
		for i, h := range pvs {
			g, ok := group(h.page)
			if !ok {
				continue
			}
			m := get(g)
			m["pageviews"]++
			if !seen[g] {
				seen[g] = true
				m["unique_pageviews"]++
			}
			if i+1 < len(pvs) {
				m["time"] += pvs[i+1].t.Sub(h.t).Seconds()
				m["measured"]++
			} else if s.end.After(h.t) {
				m["time"] += s.end.Sub(h.t).Seconds()
				m["measured"]++
			}
			if i == 0 {
				m["entrances"]++
				if s.bounce {
					m["bounces"]++
				}
			}
			if i == len(pvs)-1 {
				m["exits"]++
			}
		}
	}
	for _, m := range out {
		mpaPageRates(m)
	}
	return out
}

func mpaPageRates(m map[string]float64) {
	m["avg_time_on_page"] = mpaDiv(m["time"], m["measured"])
	m["exit_rate"] = mpaDiv(m["exits"], m["pageviews"])
	m["bounce_rate"] = mpaDiv(m["bounces"], m["entrances"])
	m["avg_event_value"] = mpaDiv(m["event_value"], m["total_events"])
}

func mpaDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// events aggregates the event metrics at a level: 1 category, 2 action, 3 label.
func (c *mpaCalc) events(from, to string, level int) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, s := range c.sessionsIn(from, to) {
		seen := map[string]bool{}
		for _, h := range s.hits {
			if h.kind != "event" {
				continue
			}
			k := strings.Join([]string{h.cat, h.act, h.label}[:level], "|")
			if out[k] == nil {
				out[k] = map[string]float64{}
			}
			m := out[k]
			m["total_events"]++
			m["event_value"] += h.value
			if !seen[k] {
				seen[k] = true
				m["unique_events"]++
			}
		}
	}
	for _, m := range out {
		mpaPageRates(m)
	}
	return out
}

// mpaSum adds rows up and computes their rates from the sums.
func mpaSum(rows map[string]map[string]float64, metrics string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range rows {
		for k, v := range m {
			out[k] += v
		}
	}
	mpaPageRates(out)
	return mpaPick(out, metrics)
}

func mpaPick(m map[string]float64, metrics string) map[string]float64 {
	out := map[string]float64{}
	for _, k := range strings.Split(metrics, ",") {
		out[k] = m[k]
	}
	return out
}

func mpaClose(a, b float64) bool { return math.Abs(a-b) <= 0.0005+1e-9*math.Abs(b) }

func mpaCompare(t *testing.T, name string, rows []map[string]any, dims []string, want map[string]map[string]float64) {
	t.Helper()
	got := rowsByDims(rows, dims)
	for k, w := range want {
		r, ok := got[k]
		if !ok {
			t.Errorf("%s: no row %q (rows %v)", name, k, rows)
			continue
		}
		for m, v := range w {
			if _, asked := r[m]; !asked {
				continue
			}
			if !mpaClose(num(r[m]), v) {
				t.Errorf("%s row %q: %s = %v, want %v", name, k, m, r[m], v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected row %q: %v", name, k, got[k])
		}
	}
}

func mpaCompareTotals(t *testing.T, name string, totals map[string]any, want map[string]float64) {
	t.Helper()
	for m, v := range want {
		g, asked := totals[m]
		if !asked {
			continue
		}
		if !mpaClose(num(g), v) {
			t.Errorf("%s totals: %s = %v, want %v", name, m, g, v)
		}
	}
}

func mpaCompareSeries(t *testing.T, name string, rows []map[string]any, labels []string, want []map[string]float64, metrics string) {
	t.Helper()
	if len(rows) != len(labels) {
		t.Errorf("%s: %d periods, want %d (%v): %v", name, len(rows), len(labels), labels, rows)
		return
	}
	for i, r := range rows {
		if r["period"] != labels[i] {
			t.Errorf("%s: period %d is %v, want %s", name, i, r["period"], labels[i])
		}
		for _, m := range strings.Split(metrics, ",") {
			if !mpaClose(num(r[m]), want[i][m]) {
				t.Errorf("%s %s: %s = %v, want %v", name, labels[i], m, r[m], want[i][m])
			}
		}
	}
}
