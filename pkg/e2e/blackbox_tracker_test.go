package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestAcceptanceBlackBoxTracker is a grader's audit of tracker.js through
// to the reports: it pastes the snippet of docs/collection.md into pages a
// test server serves, browses them in headless Chromium as visitors do
// (several pages with real time between them, a bounce, an SPA navigation,
// events, an outbound link, a campaign and referrers, a second visitor, a
// returning visit, Do-Not-Track, opt-outs, a cookieless property), and
// compares the acquisition, behavior and realtime reports with what the
// definitions of docs/processing.md and docs/reports.md make of what it
// did. Written from the docs only; times are checked against the bounds
// the test's own clock gives them.
func TestAcceptanceBlackBoxTracker(t *testing.T) {
	tkChromium(t)
	stack, _ := startStack(t)
	ctx := context.Background()
	gw := strings.TrimRight(stack.GatewayURL(), "/")
	c := &mpaClient{t: t, ctx: ctx, http: &http.Client{Timeout: 30 * time.Second}, gw: gw}

	// A zone whose day does not end during the test.
	zone := "UTC"
	for _, z := range []string{"UTC", "Asia/Tokyo", "America/New_York"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		if h := time.Now().In(loc).Hour(); h >= 1 && h <= 22 {
			zone = z
			break
		}
	}

	// The pages: one server, three host names. localhost is the shop,
	// blog.localhost the cookieless blog (Chromium resolves both to
	// loopback), 127.0.0.1 another site.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	shop, blog, other := "http://localhost:"+port, "http://blog.localhost:"+port, "http://127.0.0.1:"+port

	tok := c.signUp("bb-tracker@shop.example")
	var p1, p2 struct {
		ID         string `json:"id"`
		TrackingID string `json:"tracking_id"`
		Snippet    string `json:"snippet"`
		Cookieless bool   `json:"cookieless"`
	}
	c.do("POST", "/v1/properties", tok, map[string]any{"name": "Shop", "hostnames": []string{"localhost"}, "time_zone": zone}, http.StatusCreated, &p1)
	c.do("POST", "/v1/properties", tok, map[string]any{"name": "Blog", "hostnames": []string{"blog.localhost"}, "time_zone": zone, "cookieless": true}, http.StatusCreated, &p2)
	// The blog's pages carry the snippet config-svc gives, which loads
	// tracker.js from the stack's gateway.
	blogSnippet := `<script>window.at=typeof at=='function'?at:function(){(at.q=at.q||[]).push(arguments)}</script>
<script async src="` + gw + `/tracker.js" data-tid="` + p2.TrackingID + `" data-cookieless></script>`
	if !p2.Cookieless || p2.Snippet != blogSnippet {
		t.Fatalf("the cookieless property's snippet is %q (cookieless %v), want %q", p2.Snippet, p2.Cookieless, blogSnippet)
	}
	// The snippet as docs/collection.md gives it, COLLECTION_HOST being the gateway.
	snippet := `<script>window.at=window.at||function(){(at.q=at.q||[]).push(arguments)}</script>
<script async src="` + gw + `/tracker.js" data-tid="` + p1.TrackingID + `"></script>`
	page := func(w http.ResponseWriter, title, head, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><head><title>%s</title>\n%s\n</head><body>%s</body></html>", title, head, body)
	}
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		switch {
		case host == "127.0.0.1":
			page(w, "Elsewhere", "", "another site")
		case host == "blog.localhost":
			page(w, "Blog "+r.URL.Path, blogSnippet, `<a id="next" href="/post-2">next</a>`)
		case r.URL.Path == "/products":
			// A GA-style at('pageview') copied into the page: ignored.
			page(w, "Products", snippet+`<script>at('pageview')</script>`, `<a id="out" href="`+other+`/elsewhere">elsewhere</a>`)
		case r.URL.Path == "/disabled":
			page(w, "Disabled", `<script>window['at-disable-`+p1.TrackingID+`'] = true</script>`+snippet, "")
		case r.URL.Path == "/optout":
			page(w, "Opt-out", snippet+`<script>at('optout')</script>`, `<a id="next" href="/optout-next">next</a>`)
		default:
			// The page counts the times it is shown again from the
			// back/forward cache. The landing page has the snippet twice
			// (a theme's and a tag manager's): it counts once.
			tags := snippet
			if r.URL.Path == "/landing" {
				tags += snippet
			}
			page(w, "Shop "+r.URL.Path, tags+`<script>addEventListener('pageshow', function (e) { if (e.persisted) window.restored = (window.restored || 0) + 1 })</script>`,
				`<a id="products" href="/products">products</a>`)
		}
	})

	// The browsing. Each step's span is when it began and when the browser
	// had done it; a hit it caused was received within the span, or up to
	// slack after it (a beacon on its way). Two seconds: on a machine that
	// make test keeps busy, a beacon once arrived 1.004 s after its step
	// (a session 4 ms shorter than the bound of a 1 s slack allowed).
	const slack = 2 * time.Second
	const spaTitleWait = 300 * time.Millisecond      // docs/collection.md, "SPA titles"
	pause := func(d time.Duration) { time.Sleep(d) } // real time on a page, not a wait for the product

	// An SPA pageview is sent after its title wait: its hit comes up to
	// that much later than the step.
	spa := func(s tkSpan) tkSpan { s.end = s.end.Add(spaTitleWait); return s }

	// Visitor A: from a newsletter (and news.example), five pageviews of
	// which three by the history API, a fragment change (none), events, an
	// outbound link.
	a := tkOpen(t, "")
	sLanding := a.navigate(shop+"/landing?utm_source=newsletter&utm_medium=email&utm_campaign=dec", "http://news.example/post", "")
	pause(3 * time.Second)
	sProducts := a.click("#products", shop+"/products")
	pause(2 * time.Second)
	sShoes := spa(a.eval(`history.pushState({}, '', '/products/shoes'), true`))
	pause(2 * time.Second)
	sRed := spa(a.eval(`history.replaceState({}, '', '/products/shoes?color=red'), true`))
	pause(time.Second)
	a.eval(`location.hash = '#reviews', true`)
	pause(time.Second)
	sBackToProducts := spa(a.eval(`history.go(-2), true`))
	pause(time.Second)
	if got := a.evalString(`location.pathname`); got != "/products" {
		t.Fatalf("history.go(-2) led to %s", got)
	}
	a.eval(`at('event', 'video', 'play', 'intro', 3), true`)
	pause(time.Second)
	sOut := a.click("#out", other+"/elsewhere")
	pause(time.Second)
	// Back later from a partner's campaign: a new session of a returning
	// user, with an event and a virtual pageview.
	sBack := a.navigate(shop+"/?utm_source=partner&utm_medium=affiliate&utm_campaign=spring", "", "")
	pause(2 * time.Second)
	a.eval(`at('event', 'sign_up', {method: 'Google', value: 2}), true`)
	// A value written with a decimal comma: the event counts, without it.
	a.eval(`at('event', 'cta', 'click', 'hero', '12,50'), true`)
	pause(time.Second)
	sStep2 := spa(a.eval(`at('pageview', '/checkout/step2'), true`))
	pause(time.Second)
	sStep2End := a.navigate("about:blank", "", "")
	if got := a.cookie(shop + "/"); !strings.Contains(got, "_at_cid=") {
		t.Errorf("the shop's visitor has no _at_cid cookie: %q", got)
	}
	a.close()

	// Visitor B from Google bounces (a non-interaction event changes
	// nothing), then a page whose tag is disabled by window['at-disable-…'];
	// with the cookie cleared, B is a new visitor, who goes to /products
	// and back (the back/forward cache shows /pricing again: a pageview).
	b := tkOpen(t, "")
	sPricing := b.navigate(shop+"/pricing", "https://www.google.com/", cdppage.ReferrerPolicyOrigin)
	pause(time.Second)
	b.eval(`at('event', {category: 'scroll', action: '75%', nonInteraction: true}), true`)
	pause(time.Second)
	sPricingEnd := b.navigate(shop+"/disabled", "", "")
	b.eval(`at('event', 'disabled', 'click'), true`)
	if _, err := chromedp.Call(b.ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	sPricing2 := b.navigate(shop+"/pricing", "", "")
	pause(time.Second)
	sBProducts := b.click("#products", shop+"/products")
	pause(time.Second)
	sBBack := b.eval(`history.back(), true`)
	b.waitLoaded(shop + "/pricing")
	sBBack.end = time.Now()
	if got := b.evalString(`String(window.restored)`); got != "1" {
		t.Errorf("going back to /pricing did not show it from the back/forward cache (restored %s)", got)
	}
	pause(time.Second)
	sPricing2End := b.navigate("about:blank", "", "")
	b.close()

	// Do-Not-Track: nothing is sent.
	dnt := tkOpen(t, "", `{"enable_do_not_track": true}`)
	dnt.navigate(shop+"/dnt", "", "")
	if v := dnt.evalString(`String(navigator.doNotTrack)`); v != "1" {
		t.Errorf("the Do-Not-Track profile's navigator.doNotTrack is %q", v)
	}
	dnt.eval(`at('event', 'dnt', 'click'), true`)
	dnt.navigate("about:blank", "", "")
	dnt.close()

	// at('optout') holds for the page and, kept in localStorage, the next.
	o := tkOpen(t, "")
	o.navigate(shop+"/optout", "", "")
	o.click("#next", shop+"/optout-next")
	o.eval(`at('event', 'optout', 'click'), true`)
	o.navigate("about:blank", "", "")
	o.close()

	// The cookieless blog: two readers with different browsers on one address.
	e := tkOpen(t, "")
	sPost1 := e.navigate(blog+"/post-1", "", "")
	pause(2 * time.Second)
	sPost2 := e.click("#next", blog+"/post-2")
	pause(time.Second)
	if got := e.evalString(`document.cookie`); strings.Contains(got, "_at_cid") {
		t.Errorf("the cookieless property's tag set a cookie: %q", got)
	}
	sPost2End := e.navigate("about:blank", "", "")
	e.close()
	f := tkOpen(t, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
	sF := f.navigate(blog+"/post-1", "", "")
	sFEnd := f.navigate("about:blank", "", "")
	f.close()

	// What the reports must say. Times: from one hit to another, within
	// the spans' bounds.
	between := func(from, to tkSpan) [2]float64 {
		return [2]float64{max(0, to.start.Sub(from.end.Add(slack)).Seconds()), to.end.Add(slack).Sub(from.start).Seconds()}
	}
	sum := func(rs ...[2]float64) [2]float64 {
		var s [2]float64
		for _, r := range rs {
			s[0] += r[0]
			s[1] += r[1]
		}
		return s
	}
	scale := func(r [2]float64, k float64) [2]float64 { return [2]float64{r[0] * k, r[1] * k} }
	// Session 1 (A): /landing, /products, /products/shoes,
	// /products/shoes?color=red, /products again, then the outbound click
	// and the ping of leaving. Session 2 (A): / and /checkout/step2.
	// Sessions 3 and 4 (B, then B with a new cookie): /pricing.
	topLanding := between(sLanding, sProducts)
	topProducts1 := between(sProducts, sShoes)
	topShoes := between(sShoes, sRed)
	topRed := between(sRed, sBackToProducts)
	topProducts2 := between(sBackToProducts, sOut)
	dur1 := between(sLanding, sOut)
	topHome := between(sBack, sStep2)
	topStep2 := between(sStep2, sStep2End)
	dur2 := between(sBack, sStep2End)
	dur3 := between(sPricing, sPricingEnd)
	topBPricing1 := between(sPricing2, sBProducts)
	topBProducts := between(sBProducts, sBBack)
	topBPricing2 := between(sBBack, sPricing2End)
	dur4 := between(sPricing2, sPricing2End)
	t.Logf("expected seconds: sessions %.2f %.2f %.2f %.2f", dur1, dur2, dur3, dur4)

	outboundLabel := other + "/elsewhere"
	sess := func(users, newUsers, sessions, bounces, pageviews, engaged, events float64) map[string]float64 {
		return map[string]float64{"users": users, "new_users": newUsers, "sessions": sessions, "bounces": bounces, "bounce_rate": mpaDiv(bounces, sessions),
			"pages_per_session": mpaDiv(pageviews, sessions), "engaged_sessions": engaged, "pageviews": pageviews, "events": events}
	}
	acqMetrics := "users,new_users,sessions,bounces,bounce_rate,pages_per_session,engaged_sessions,pageviews,events,avg_session_duration"
	type check struct {
		path string
		dims []string
		want map[string]map[string]float64
		// times: metric bounds by row ("" for the totals)
		times  map[string]map[string][2]float64
		totals map[string]float64
	}
	pg := func(pv, upv, ent, exits, bounces float64) map[string]float64 {
		return map[string]float64{"pageviews": pv, "unique_pageviews": upv, "entrances": ent, "exits": exits,
			"exit_rate": mpaDiv(exits, pv), "bounce_rate": mpaDiv(bounces, ent)}
	}
	avgDur := func(rs ...[2]float64) map[string][2]float64 {
		return map[string][2]float64{"avg_session_duration": scale(sum(rs...), 1/float64(len(rs)))}
	}
	avgTop := func(rs ...[2]float64) map[string][2]float64 {
		return map[string][2]float64{"avg_time_on_page": scale(sum(rs...), 1/float64(len(rs)))}
	}
	s1, s2, s3, s4 := sess(1, 1, 1, 0, 5, 1, 2), sess(1, 0, 1, 0, 2, 1, 2), sess(1, 1, 1, 1, 1, 0, 1), sess(1, 1, 1, 0, 3, 1, 0)
	all := sess(3, 3, 4, 1, 11, 3, 5)
	checks := []check{
		{path: "acquisition/overview", totals: all, times: map[string]map[string][2]float64{"": avgDur(dur1, dur2, dur3, dur4)}},
		{path: "acquisition/channel", dims: []string{"channel"}, want: map[string]map[string]float64{
			"Email": s1, "Affiliates": s2, "Organic Search": s3, "Direct": s4},
			times: map[string]map[string][2]float64{"Email": avgDur(dur1), "Affiliates": avgDur(dur2), "Organic Search": avgDur(dur3), "Direct": avgDur(dur4)}},
		{path: "acquisition/source_medium", dims: []string{"source", "medium"}, want: map[string]map[string]float64{
			"newsletter|email": s1, "partner|affiliate": s2, "google|organic": s3, "(direct)|(none)": s4}},
		{path: "acquisition/campaign", dims: []string{"campaign"}, want: map[string]map[string]float64{
			"dec": s1, "spring": s2, "(organic)": s3, "(direct)": s4}},
		{path: "acquisition/referrer", dims: []string{"referrer"}, want: map[string]map[string]float64{
			"news.example": s1, "(none)": sess(2, 1, 2, 0, 5, 2, 2), "google.com": s3}},
		{path: "acquisition/landing_page", dims: []string{"landing_page"}, want: map[string]map[string]float64{
			"/landing": s1, "/": s2, "/pricing": sess(2, 2, 2, 1, 4, 1, 1)}},
		{path: "acquisition/user_type", dims: []string{"user_type"}, want: map[string]map[string]float64{
			"new": sess(3, 3, 3, 1, 9, 2, 3), "returning": s2}},
		{path: "acquisition/device", dims: []string{"device"}, want: map[string]map[string]float64{"desktop": all}},
		{path: "acquisition/browser", dims: []string{"browser"}, want: map[string]map[string]float64{"Chrome": all}},
		{path: "acquisition/os", dims: []string{"os"}, want: map[string]map[string]float64{"Linux": all}},
		{path: "behavior/pages", dims: []string{"page"}, want: map[string]map[string]float64{
			"/landing": pg(1, 1, 1, 0, 0), "/products": pg(3, 2, 0, 1, 0), "/products/shoes": pg(1, 1, 0, 0, 0),
			"/products/shoes?color=red": pg(1, 1, 0, 0, 0), "/": pg(1, 1, 1, 0, 0), "/checkout/step2": pg(1, 1, 0, 1, 0),
			"/pricing": pg(3, 2, 2, 2, 1)},
			times: map[string]map[string][2]float64{"/landing": avgTop(topLanding), "/products": avgTop(topProducts1, topProducts2, topBProducts),
				"/products/shoes": avgTop(topShoes), "/products/shoes?color=red": avgTop(topRed), "/": avgTop(topHome),
				"/checkout/step2": avgTop(topStep2), "/pricing": avgTop(dur3, topBPricing1, topBPricing2),
				"": avgTop(topLanding, topProducts1, topShoes, topRed, topProducts2, topHome, topStep2, dur3, topBPricing1, topBProducts, topBPricing2)},
			totals: map[string]float64{"pageviews": 11, "unique_pageviews": 9, "entrances": 4, "exits": 4, "bounce_rate": 0.25}},
		{path: "behavior/exit_pages", dims: []string{"page"}, want: map[string]map[string]float64{
			"/products": {"exits": 1, "pageviews": 3}, "/checkout/step2": {"exits": 1, "pageviews": 1}, "/pricing": {"exits": 2, "pageviews": 3}}},
		{path: "behavior/landing_pages", dims: []string{"landing_page"}, want: map[string]map[string]float64{
			"/landing": s1, "/": s2, "/pricing": sess(2, 2, 2, 1, 4, 1, 1)},
			times: map[string]map[string][2]float64{"/landing": avgDur(dur1), "/": avgDur(dur2), "/pricing": avgDur(dur3, dur4)}},
		{path: "behavior/events", dims: []string{"event_category", "event_action", "event_label"}, want: map[string]map[string]float64{
			"video|play|intro":                {"total_events": 1, "unique_events": 1, "event_value": 3},
			"outbound|click|" + outboundLabel: {"total_events": 1, "unique_events": 1, "event_value": 0},
			"sign_up|sign_up|(not set)":       {"total_events": 1, "unique_events": 1, "event_value": 2},
			"cta|click|hero":                  {"total_events": 1, "unique_events": 1, "event_value": 0},
			"scroll|75%|(not set)":            {"total_events": 1, "unique_events": 1, "event_value": 0}}},
	}

	// The cookieless blog: two visitors (one address, two browsers), one of
	// two pages (engaged), one who bounces.
	blogChecks := []check{
		{path: "acquisition/overview", totals: sess(2, 2, 2, 1, 3, 1, 0)},
		{path: "behavior/pages", dims: []string{"page"}, want: map[string]map[string]float64{"/post-1": pg(2, 2, 2, 1, 1), "/post-2": pg(1, 1, 0, 1, 0)},
			times: map[string]map[string][2]float64{"/post-1": avgTop(between(sPost1, sPost2), between(sF, sFEnd)), "/post-2": avgTop(between(sPost2, sPost2End))}},
	}
	wantRealtime := tkRealtime{Active5: 3, Active30: 3, Pageviews: 11, PerMinute: 11,
		Pages:   map[string]float64{"/landing": 1, "/products": 3, "/products/shoes": 1, "/products/shoes?color=red": 1, "/": 1, "/checkout/step2": 1, "/pricing": 3},
		Sources: map[string]float64{"newsletter": 5, "partner": 2, "google": 1, "(direct)": 3}}

	compare := func() error {
		var errs []string
		for _, p := range []struct {
			id     string
			checks []check
		}{{p1.ID, checks}, {p2.ID, blogChecks}} {
			for _, ch := range p.checks {
				q := url.Values{"property_id": {p.id}, "range": {"today"}, "limit": {"1000"}}
				if strings.HasPrefix(ch.path, "acquisition/") {
					q.Set("metrics", acqMetrics)
				}
				name := p.id[:8] + " " + ch.path
				status, body := c.get(tok, "/v1/reports/"+ch.path, q)
				var ans reportAnswer
				if status != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil {
					errs = append(errs, fmt.Sprintf("%s: %d %s", name, status, body))
					continue
				}
				rows := rowsByDims(ans.Rows, ch.dims)
				if ch.want != nil {
					errs = append(errs, tkDiff(name, rows, tkExact(ch.want), true)...)
				}
				rows[""] = ans.Totals
				errs = append(errs, tkDiff(name, rows, tkExact(map[string]map[string]float64{"": ch.totals}), false)...)
				errs = append(errs, tkDiff(name, rows, ch.times, false)...)
			}
		}
		// Realtime: the visitors who sent anything, their pageviews.
		status, body := c.get(tok, "/v1/reports/realtime", url.Values{"property_id": {p1.ID}})
		var rt struct {
			tkRealtime
			TopPages []struct {
				Page      string
				Pageviews float64
			} `json:"top_pages"`
			TopSources []struct {
				Source    string
				Pageviews float64
			} `json:"top_sources"`
			Minutes []struct{ Pageviews float64 } `json:"per_minute"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &rt) != nil {
			errs = append(errs, fmt.Sprintf("realtime: %d %s", status, body))
		} else {
			rt.Pages, rt.Sources = map[string]float64{}, map[string]float64{}
			for _, p := range rt.TopPages {
				rt.Pages[p.Page] = p.Pageviews
			}
			for _, s := range rt.TopSources {
				rt.Sources[s.Source] = s.Pageviews
			}
			for _, m := range rt.Minutes {
				rt.PerMinute += m.Pageviews
			}
			if fmt.Sprint(rt.tkRealtime) != fmt.Sprint(wantRealtime) {
				errs = append(errs, fmt.Sprintf("realtime: %+v, want %+v (%s)", rt.tkRealtime, wantRealtime, body))
			}
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "\n"))
		}
		return nil
	}
	eventually.NoError(t, 45*time.Second, "the reports to say what the visits did", compare)
}

// tkChromium skips the test without Debian's chromium (collection-svc's
// browser test installs it; CI runs that first), and fails under CI.
func tkChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("/usr/bin/chromium is missing: %v", err)
		}
		t.Skip("/usr/bin/chromium is missing (apt-get install chromium)")
	}
}

// tkSpan is when a browser step began and when the browser had done it.
type tkSpan struct{ start, end time.Time }

// tkBrowser is one visitor: a headless Chromium with a profile of its own.
type tkBrowser struct {
	t      *testing.T
	ctx    context.Context
	cancel func()
}

// tkOpen starts a browser with a fresh profile; ua empty is a current
// Chrome on Linux, prefs (optional) the profile's Preferences file.
func tkOpen(t *testing.T, ua string, prefs ...string) *tkBrowser {
	t.Helper()
	if ua == "" {
		ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	}
	// Chromium now and then exits as it starts ("chrome failed to
	// start"): such a start is tried again, up to three times, with a
	// profile of its own each time.
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		if len(prefs) > 0 {
			if err := os.MkdirAll(filepath.Join(dir, "Default"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "Default", "Preferences"), []byte(prefs[0]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath("/usr/bin/chromium"),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.UserDataDir(dir),
			chromedp.UserAgent(ua),
		)
		ctx, cancel := chromedp.NewContext(actx)
		// Started now, not in the first step's span, and without the time
		// limit: the context of the first call is the browser's own.
		if err := chromedp.Do(ctx); err != nil {
			cancel()
			cancelAlloc()
			if attempt == 3 || !strings.Contains(err.Error(), "chrome failed to start") {
				t.Fatalf("start chromium (attempt %d): %v", attempt, err)
			}
			t.Logf("chromium exited as it started (attempt %d), starting it again: %v", attempt, err)
			continue
		}
		ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
		b := &tkBrowser{t: t, ctx: ctx, cancel: func() { cancelTimeout(); cancel(); cancelAlloc() }}
		t.Cleanup(b.cancel)
		return b
	}
}

func (b *tkBrowser) close() { b.cancel() }

// navigate loads url as typed (no referrer) or from ref, and waits until
// the page's tracker has run (it replaced the queue).
func (b *tkBrowser) navigate(u, ref string, policy cdppage.ReferrerPolicy) tkSpan {
	b.t.Helper()
	s := tkSpan{start: time.Now()}
	res, err := chromedp.Call(b.ctx, cdppage.Navigate, cdppage.NavigateParams{URL: u, Referrer: ref, ReferrerPolicy: policy})
	if err == nil && res.ErrorText != "" {
		err = errors.New(res.ErrorText)
	}
	if err != nil {
		b.t.Fatalf("load %s: %v", u, err)
	}
	b.waitLoaded(u)
	s.end = time.Now()
	return s
}

// click clicks a link and waits until the page it leads to is loaded.
func (b *tkBrowser) click(sel, u string) tkSpan {
	b.t.Helper()
	s := tkSpan{start: time.Now()}
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
	b.waitLoaded(u)
	s.end = time.Now()
	return s
}

// waitLoaded waits until the browser shows u, loaded, and its tracker (if
// it has one) has run.
func (b *tkBrowser) waitLoaded(u string) {
	b.t.Helper()
	eventually.NoError(b.t, 15*time.Second, "the browser to show "+u, func() error {
		state, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.href + ' ' + document.readyState + ' ' +
			(!document.querySelector('script[src$="/tracker.js"]') || !!(window.at && !window.at.q))`))
		if err != nil {
			return err
		}
		if want := u + " complete true"; state != want && !(u == "about:blank" && strings.HasPrefix(state, "about:blank complete")) {
			return fmt.Errorf("the browser shows %q", state)
		}
		return nil
	})
}

func (b *tkBrowser) eval(js string) tkSpan {
	b.t.Helper()
	s := tkSpan{start: time.Now()}
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js)); err != nil {
		b.t.Fatalf("%s: %v", js, err)
	}
	s.end = time.Now()
	return s
}

func (b *tkBrowser) evalString(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// cookie returns the browser's cookies for u, as name=value pairs.
func (b *tkBrowser) cookie(u string) string {
	b.t.Helper()
	cs, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
	if err != nil {
		b.t.Fatalf("cookies of %s: %v", u, err)
	}
	var parts []string
	for _, c := range cs.Cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// tkRealtime is what the test reads of the realtime view.
type tkRealtime struct {
	Active5        float64 `json:"active_users_5m"`
	Active30       float64 `json:"active_users_30m"`
	Pageviews      float64 `json:"pageviews"`
	PerMinute      float64 // the sum over the minutes
	Pages, Sources map[string]float64
}

// rowsByDims keys a report's rows by their dimension values joined with |.
func rowsByDims(rows []map[string]any, dims []string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range rows {
		var parts []string
		for _, d := range dims {
			s, _ := r[d].(string)
			parts = append(parts, s)
		}
		out[strings.Join(parts, "|")] = r
	}
	return out
}

// tkExact makes bounds of exact values.
func tkExact(want map[string]map[string]float64) map[string]map[string][2]float64 {
	out := map[string]map[string][2]float64{}
	for k, ms := range want {
		out[k] = map[string][2]float64{}
		for m, v := range ms {
			out[k][m] = [2]float64{v, v}
		}
	}
	return out
}

// tkDiff lists how got differs from want: each metric the row has within
// its bounds (inclusive, to mpaClose's tolerance); with all, a row want
// does not name is a difference too.
func tkDiff(name string, got map[string]map[string]any, want map[string]map[string][2]float64, all bool) []string {
	var errs []string
	for k, ms := range want {
		r, ok := got[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: no row %q", name, k))
			continue
		}
		for m, b := range ms {
			g, asked := r[m]
			if v := num(g); asked && (v < b[0] && !mpaClose(v, b[0]) || v > b[1] && !mpaClose(v, b[1])) {
				want := fmt.Sprintf("between %.3f and %.3f", b[0], b[1])
				if b[0] == b[1] {
					want = fmt.Sprint(b[0])
				}
				errs = append(errs, fmt.Sprintf("%s row %q: %s = %v, want %s", name, k, m, g, want))
			}
		}
	}
	var extra []string
	for k := range got {
		if _, ok := want[k]; all && !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		errs = append(errs, fmt.Sprintf("%s: unexpected row %q: %v", name, k, got[k]))
	}
	return errs
}
