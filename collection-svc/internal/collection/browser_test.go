package collection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// ensureChromium returns when Debian's chromium is installed, installing
// it when missing. Outside CI a machine that cannot install it skips the
// test; under CI (CI=true) it fails.
func ensureChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if _, err := exec.LookPath("apt-get"); err == nil {
		install := exec.Command("apt-get", "install", "-y", "-qq", "chromium")
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := install.CombinedOutput(); err != nil {
			t.Logf("apt-get install chromium: %v\n%s", err, out)
			update := exec.Command("apt-get", "update", "-qq")
			if out, err := update.CombinedOutput(); err != nil {
				t.Logf("apt-get update: %v\n%s", err, out)
			}
			install = exec.Command("apt-get", "install", "-y", "-qq", "chromium")
			install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := install.CombinedOutput(); err != nil {
				t.Logf("apt-get install chromium: %v\n%s", err, out)
			}
		}
	}
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing and could not be installed; CI must run the browser test (apt-get install chromium)", chromiumPath)
	}
	t.Skipf("%s is missing and could not be installed (apt-get install chromium); the tracker's browser test needs it and always runs under CI=true", chromiumPath)
}

// TestTrackerInHeadlessChromium loads a page with the snippet in a real
// browser and checks the hits the tracker produces in the broker: the
// pageview on load, a queued custom event, an SPA navigation, an event
// through the API, an outbound click and the engagement ping when the page
// is left.
func TestTrackerInHeadlessChromium(t *testing.T) {
	ensureChromium(t)
	e := newEnv(t, envOptions{})
	hits := e.read(hit.TopicHits)

	page := http.NewServeMux()
	var pageURL, otherURL, longTitle, longOutbound string
	page.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Home</title>
<script>window.at=window.at||function(){(at.q=at.q||[]).push(arguments)};at('event','video','play','intro',3);</script>
<script async src="%s/tracker.js" data-tid="%s"></script>
</head><body><a id="out" href="%s/elsewhere">elsewhere</a></body></html>`, e.url, tidBrowser, otherURL)
	})
	page.HandleFunc("GET /optout", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Opted out</title>
<script>window.at=window.at||function(){(at.q=at.q||[]).push(arguments)};at('optout');</script>
<script async src="%s/tracker.js" data-tid="%s"></script>
</head><body></body></html>`, e.url, tidBrowser)
	})
	page.HandleFunc("GET /long", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>%s</title>
<script async src="%s/tracker.js" data-tid="%s"></script>
</head><body><a id="longout" href="%s">elsewhere</a></body></html>`, longTitle, e.url, tidBrowser, longOutbound)
	})
	page.HandleFunc("GET /elsewhere", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!doctype html><title>Elsewhere</title>")
	})
	pageSrv := httptest.NewServer(page)
	defer pageSrv.Close()
	// The same server under two host names: localhost is the property's
	// site, 127.0.0.1 another site (for the outbound link).
	pageURL = strings.Replace(pageSrv.URL, "127.0.0.1", "localhost", 1)
	otherURL = pageSrv.URL
	// Fields over collection's limits in bytes, which the tracker cuts at
	// a character's end: a title of 600 three-byte characters (1800 bytes
	// in 600 UTF-16 units; the limit is 1500 bytes), an outbound link of
	// 600 bytes and an event label of four-byte characters (surrogate
	// pairs in JavaScript; the limits are 500 bytes).
	longTitle = strings.Repeat("語", 600)
	longOutbound = otherURL + "/elsewhere?q=" + strings.Repeat("x", 600)

	ctx := newBrowser(t)
	byType := func(typ hit.Type, match func(*hit.Hit) bool) func(*sarama.ConsumerMessage) bool {
		return func(m *sarama.ConsumerMessage) bool {
			h, err := hit.Unmarshal(m.Value)
			return err == nil && h.TrackingID == tidBrowser && h.Type == typ && match(h)
		}
	}
	wait := func(what string, typ hit.Type, match func(*hit.Hit) bool) *hit.Hit {
		t.Helper()
		t.Logf("waiting for %s", what)
		return hitsOf(t, hits.waitFor(t, 1, byType(typ, match)))[0]
	}

	// Arrive from another site: every hit of the page carries its referrer,
	// so a session whose first hit is the queued event keeps its source.
	res, err := chromedp.Call(ctx, cdppage.Navigate, cdppage.NavigateParams{URL: pageURL + "/", Referrer: "http://news.example/post"})
	if err == nil && res.ErrorText != "" {
		err = errors.New(res.ErrorText)
	}
	if err != nil {
		t.Fatalf("load the page: %v", err)
	}
	load := wait("the pageview on load", hit.TypePageview, func(h *hit.Hit) bool { return h.Path == "/" })
	queued := wait("the event queued before load", hit.TypeEvent, func(h *hit.Hit) bool { return h.Action == "play" })

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`history.pushState({}, '', '/spa/next?x=1'), true`)); err != nil {
		t.Fatal(err)
	}
	spa := wait("the SPA pageview", hit.TypePageview, func(h *hit.Hit) bool { return h.Path == "/spa/next?x=1" })

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`at('event', {category: 'cta', action: 'buy', label: 'hero', value: 5, nonInteraction: true}), true`)); err != nil {
		t.Fatal(err)
	}
	api := wait("the API event", hit.TypeEvent, func(h *hit.Hit) bool { return h.Action == "buy" })

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#out"))); err != nil {
		t.Fatal(err)
	}
	outbound := wait("the outbound click", hit.TypeEvent, func(h *hit.Hit) bool { return h.Category == "outbound" })
	ping := wait("the engagement ping of the SPA page", hit.TypeEngagement, func(h *hit.Hit) bool { return h.Path == "/spa/next?x=1" })

	checks := []struct {
		what      string
		got, want string
	}{
		{"load: title", load.Title, "Home"},
		{"load: referrer", load.Referrer, "http://news.example/"},
		{"queued event: the page's referrer", queued.Referrer, "http://news.example/"},
		{"load: host", load.Hostname, "localhost"},
		{"load: device", load.Browser + "/" + load.OS + "/" + load.DeviceCategory, "Chrome/Linux/desktop"},
		{"load: bot", fmt.Sprint(load.Bot), "false"},
		{"load: ip truncated", load.IP, "127.0.0.0"},
		{"queued event", queued.Category + "/" + queued.Action + "/" + queued.Label + "/" + fmt.Sprint(queued.Value), "video/play/intro/3"},
		{"spa: referrer is the previous page", spa.Referrer, pageURL + "/"},
		{"api event", api.Category + "/" + api.Action + "/" + api.Label + "/" + fmt.Sprint(api.Value), "cta/buy/hero/5"},
		{"api event: non-interaction", api.Params["non_interaction"], "1"},
		{"api event: the SPA page's referrer", api.Referrer, pageURL + "/"},
		{"outbound: label", outbound.Label, otherURL + "/elsewhere"},
		{"outbound: action", outbound.Action, "click"},
		{"ping: engaged", fmt.Sprint(ping.EngagementMS > 0), "true"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	// An opt-out queued before the script loaded holds for the load's
	// pageview: none comes for /optout, though an event after opting in
	// again does.
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/optout")); err != nil {
		t.Fatalf("load the opt-out page: %v", err)
	}
	for loaded := false; !loaded; { // the tracker has replaced the queue
		var err error
		if loaded, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(window.at && !window.at.q)`)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`at('optin'), at('event', 'marker', 'after-optin'), true`)); err != nil {
		t.Fatal(err)
	}
	wait("the event after opting in again", hit.TypeEvent, func(h *hit.Hit) bool { return h.Action == "after-optin" })
	for _, m := range hits.waitFor(t, 0, byType(hit.TypePageview, func(h *hit.Hit) bool { return h.Path == "/optout" })) {
		t.Errorf("a pageview of the opted-out page was sent: offset %d", m.Offset)
	}

	// Fields longer than the tracker's limits (collection's, or less, so
	// that a whole hit is within collection's) are cut to them, in bytes
	// and at a character's end, so that the hits are accepted: a title to
	// 1,000 bytes.
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/long")); err != nil {
		t.Fatalf("load the page with long fields: %v", err)
	}
	long := wait("the pageview with a long title", hit.TypePageview, func(h *hit.Hit) bool { return h.Path == "/long" })
	eq(t, "long title", long.Title, strings.Repeat("語", 333))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`at('event', 'long', 'emoji', 'a' + '\u{1F600}'.repeat(200)), true`)); err != nil {
		t.Fatal(err)
	}
	emoji := wait("the event with a long label", hit.TypeEvent, func(h *hit.Hit) bool { return h.Action == "emoji" })
	eq(t, "long label", emoji.Label, "a"+strings.Repeat("\U0001F600", 124))
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#longout"))); err != nil {
		t.Fatal(err)
	}
	longOut := wait("the outbound click with a long URL", hit.TypeEvent, func(h *hit.Hit) bool {
		return h.Category == "outbound" && strings.Contains(h.Label, "?q=")
	})
	eq(t, "long outbound label", longOut.Label, longOutbound[:500])

	// One visitor: the first-party cookie keeps the client ID.
	for _, h := range []*hit.Hit{queued, spa, api, outbound, ping} {
		if h.ClientID != load.ClientID || len(load.ClientID) != 32 {
			t.Errorf("client IDs differ or are malformed: %q vs %q", h.ClientID, load.ClientID)
		}
	}
}

// recorder goes in a test page before the tracker: it keeps in
// window.sent every hit the tracker hands to sendBeacon, and in
// window.errors every uncaught error, so that a test sees exactly what the
// tracker sent (and what it did not) the moment it did, without waiting
// for collection, whose topic cannot show that a hit never comes.
const recorder = `<script>window.sent = []; window.errors = [];
addEventListener('error', function (e) { errors.push(e.message); });
(function (b) { navigator.sendBeacon = function (u, d) { sent.push(JSON.parse(d).hits[0]); return b.call(navigator, u, d); }; })(navigator.sendBeacon);</script>`

// sentHit is a hit as recorder kept it, its location cut to path and query.
type sentHit struct{ T, Path, Title, Referrer, Category, Action string }

func (h sentHit) String() string {
	return fmt.Sprintf("%s %s (%q, from %q) %s/%s", h.T, h.Path, h.Title, h.Referrer, h.Category, h.Action)
}

// sent returns the hits the tracker has sent from the page so far.
func sent(t *testing.T, ctx context.Context) []sentHit {
	t.Helper()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]sentHit](`sent.map(function (h) {
		var u = new URL(h.dl);
		return {T: h.t, Path: u.pathname + u.search, Title: h.dt || '', Referrer: h.dr || '', Category: h.ec || '', Action: h.ea || ''};
	})`))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitSent polls the page until the tracker has sent a hit that match
// accepts, and returns all it has sent.
func waitSent(t *testing.T, ctx context.Context, what string, match func(sentHit) bool) []sentHit {
	t.Helper()
	t.Logf("waiting for the tracker to send %s", what)
	var got []sentHit
	eventually.NoError(t, 10*time.Second, "the tracker to send "+what, func() error {
		got = sent(t, ctx)
		if !slices.ContainsFunc(got, match) {
			return fmt.Errorf("it sent %v", got)
		}
		return nil
	})
	return got
}

// eval runs JavaScript in the page for its effects.
func eval(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js+`; true`)); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
}

// recordedPage starts collection and a server of one page at path for a
// tracker test, with the browser property's hostname (localhost). page is
// a format given, in order, recorder, collection's URL, the property's
// tracking ID and the page server's URL under another host name (a site of
// its own, for outbound links); use indexed verbs (%[2]s). It returns the
// hits topic and the page server's URL under localhost.
func recordedPage(t *testing.T, path, page string) (*topicReader, string) {
	t.Helper()
	ensureChromium(t)
	e := newEnv(t, envOptions{})
	hits := e.read(hit.TopicHits)
	mux := http.NewServeMux()
	var otherURL string
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, recorder, e.url, tidBrowser, otherURL)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	otherURL = srv.URL
	return hits, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
}

// TestTrackerCommandsInHeadlessChromium checks, hit by hit, what the
// tracker sends for what merchants write and visitors do: at('pageview')
// in the snippet, as GA's has it, is no second pageview; at('pageview',
// path, title) is a virtual pageview with the ping and referrer of an SPA
// navigation; an SPA pageview has the title the router sets after
// pushState, and is not lost when the page is left at once; at('event',
// name) and GA4's at('event', name, params) are events collection
// accepts, with the fields the Measurement API gives an event of that name
// and params; a right click on a link is no outbound click, and a click on
// a link in SVG throws nothing.
func TestTrackerCommandsInHeadlessChromium(t *testing.T) {
	hits, pageURL := recordedPage(t, "/app", `<!doctype html><html><head><title>App</title>%[1]s
<script>window.aux = []; addEventListener('auxclick', function (e) { aux.push(e.button); });
window.at=window.at||function(){(at.q=at.q||[]).push(arguments)};at('pageview');at('event','sign_up');</script>
<script async src="%[2]s/tracker.js" data-tid="%[3]s"></script>
</head><body><p><a id="out" href="%[4]s/elsewhere">elsewhere</a></p>
<svg width="40" height="40"><a href="%[4]s/elsewhere" onclick="event.preventDefault()"><rect id="svglink" width="40" height="40"/></a></svg>
</body></html>`)
	ctx := newBrowser(t)
	is := func(typ, path string) func(sentHit) bool {
		return func(h sentHit) bool { return h.T == typ && h.Path == path }
	}
	count := func(hits []sentHit, match func(sentHit) bool) (n int) {
		for _, h := range hits {
			if match(h) {
				n++
			}
		}
		return n
	}
	stored := func(what string, match func(*hit.Hit) bool) *hit.Hit {
		t.Helper()
		t.Logf("waiting for collection to store %s", what)
		return hitsOf(t, hits.waitFor(t, 1, func(m *sarama.ConsumerMessage) bool {
			h, err := hit.Unmarshal(m.Value)
			return err == nil && h.TrackingID == tidBrowser && match(h)
		}))[0]
	}

	// The load: one pageview, though the snippet queued at('pageview'),
	// then the queued event named as GA4 names them.
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/app")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	got := waitSent(t, ctx, "the queued event", is("event", "/app"))
	if want := []sentHit{{T: "pageview", Path: "/app", Title: "App"}, {T: "event", Path: "/app", Title: "App", Category: "sign_up", Action: "sign_up"}}; !slices.Equal(got, want) {
		t.Fatalf("on load the tracker sent %v, want %v", got, want)
	}
	eval(t, ctx, `at('pageview')`)
	if n := len(sent(t, ctx)); n != 2 {
		t.Errorf("at('pageview') on the page already counted sent a hit: %v", sent(t, ctx))
	}
	signUp := stored("the event named sign_up", func(h *hit.Hit) bool { return h.Type == hit.TypeEvent && h.Action == "sign_up" })
	eq(t, "at('event', 'sign_up'): category", signUp.Category, "sign_up")

	// GA4's name and params: the name is the action, the category its
	// event_category or else the name; event_label, value and
	// non_interaction are the event's fields, and other params are not
	// sent (the tracker sends no custom parameters).
	eval(t, ctx, `at('event', 'sign_up', {method: 'Google', value: 3, non_interaction: true});
		at('event', 'play', {event_category: 'Videos', event_label: 'intro', value: 0.5})`)
	// A value collection would refuse is left out, so that the event
	// counts; a number in a string is sent as the number.
	eval(t, ctx, `at('event', 'cta', 'click', 'comma', '12,50'); at('event', 'cta', 'click', 'huge', 1e16);
		at('event', 'cta', 'click', 'string', ' 2.5 ')`)
	fields, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`sent.slice(2).map(function (h) {
		var o = {}, k;
		for (k in h) if (!/^(v|t|hid|cid|dl|dt|dr|sr|ul)$/.test(k)) o[k] = h[k];
		return JSON.stringify(o);
	})`))
	if want := []string{`{"ec":"sign_up","ea":"sign_up","ev":3,"ni":1}`, `{"ec":"Videos","ea":"play","el":"intro","ev":0.5}`,
		`{"ec":"cta","ea":"click","el":"comma"}`, `{"ec":"cta","ea":"click","el":"huge"}`, `{"ec":"cta","ea":"click","el":"string","ev":2.5}`}; err != nil || !slices.Equal(fields, want) {
		t.Fatalf("at('event', name, params) sent events with the fields %q (%v), want %q", fields, err, want)
	}
	signUp = stored("sign_up with its value", func(h *hit.Hit) bool { return h.Action == "sign_up" && h.HasValue })
	if signUp.Category != "sign_up" || signUp.Value != 3 || signUp.Params["non_interaction"] != "1" || len(signUp.Params) != 1 {
		t.Errorf("at('event', 'sign_up', {method, value: 3, non_interaction: true}) stored as %q/%q value %v params %v, want sign_up/sign_up value 3 params only non_interaction", signUp.Category, signUp.Action, signUp.Value, signUp.Params)
	}
	stored("the event whose value had a decimal comma", func(h *hit.Hit) bool { return h.Label == "comma" && !h.HasValue })
	play := stored("the play event", func(h *hit.Hit) bool { return h.Action == "play" })
	if play.Category != "Videos" || play.Label != "intro" || play.Value != 0.5 {
		t.Errorf("at('event', 'play', {event_category: 'Videos', event_label: 'intro', value: 0.5}) stored as %q/%q/%q value %v, want Videos/play/intro 0.5", play.Category, play.Action, play.Label, play.Value)
	}

	// Clicks: right (the menu's "copy link" is no visit), on a link in
	// SVG, then middle (opens the link: counted).
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("#out")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseClickNode(nodes[0], chromedp.ButtonRight)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#svglink"))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseClickNode(nodes[0], chromedp.ButtonMiddle)); err != nil {
		t.Fatal(err)
	}
	got = waitSent(t, ctx, "the middle click's outbound event", func(h sentHit) bool { return h.Category == "outbound" })
	if n := count(got, func(h sentHit) bool { return h.Category == "outbound" }); n != 1 {
		t.Errorf("%d outbound events for a right, an SVG and a middle click, want the middle one: %v", n, got)
	}
	aux, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`aux`))
	if err != nil || !slices.Equal(aux, []int{2, 1}) {
		t.Errorf("the page saw auxclick with buttons %v (%v), want 2 then 1: the test clicked other than it says", aux, err)
	}
	errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`errors`))
	if err != nil || len(errs) > 0 {
		t.Errorf("errors in the page: %q %v", errs, err)
	}

	// A virtual pageview: the ping of the page shown until then, which is
	// its referrer.
	eval(t, ctx, `at('pageview', '/virtual/step2?x=1', 'Step 2')`)
	got = waitSent(t, ctx, "the virtual pageview", is("pageview", "/virtual/step2?x=1"))
	if n := len(got); n < 2 || !is("engagement", "/app")(got[n-2]) || got[n-1].Title != "Step 2" || got[n-1].Referrer != pageURL+"/app" {
		t.Errorf("a virtual pageview: the tracker sent %v, want the ping of /app then the pageview titled Step 2 from /app", got)
	}
	// An event after it is on the virtual page, as its ping is.
	eval(t, ctx, `at('event', 'wizard', 'next')`)
	got = waitSent(t, ctx, "the event on the virtual page", func(h sentHit) bool { return h.Action == "next" })
	if h := got[len(got)-1]; h.Path != "/virtual/step2?x=1" {
		t.Errorf("an event after a virtual pageview: %v, want it on the virtual page", h)
	}
	virtual := stored("the virtual pageview", func(h *hit.Hit) bool { return h.Type == hit.TypePageview && h.Path == "/virtual/step2?x=1" })
	eq(t, "virtual pageview: title", virtual.Title, "Step 2")
	eq(t, "virtual pageview: referrer", virtual.Referrer, pageURL+"/app")

	// An SPA navigation whose router sets the title after pushState.
	eval(t, ctx, `history.pushState({}, '', '/spa/titled'); setTimeout(function () { document.title = 'Titled'; }, 20)`)
	got = waitSent(t, ctx, "the SPA pageview", is("pageview", "/spa/titled"))
	if h := got[len(got)-1]; h.Title != "Titled" || h.Referrer != pageURL+"/virtual/step2?x=1" {
		t.Errorf("the SPA pageview: %v, want the title set after pushState and the virtual page as referrer", h)
	}
	stored("the SPA pageview with its title", func(h *hit.Hit) bool { return h.Path == "/spa/titled" && h.Title == "Titled" })

	// Left at once after pushState: the pageview waiting for its title is
	// sent as the page is hidden, once.
	left, err := chromedp.Run(ctx, chromedp.Evaluate[int](`history.pushState({}, '', '/spa/left'); dispatchEvent(new PageTransitionEvent('pagehide'));
		sent.filter(function (h) { return h.t == 'pageview' && /\/spa\/left$/.test(h.dl); }).length`))
	if err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Errorf("pageviews of /spa/left sent by the time pagehide returned: %d, want 1", left)
	}
	eval(t, ctx, `history.pushState({}, '', '/spa/after')`)
	got = waitSent(t, ctx, "the pageview after", is("pageview", "/spa/after")) // its wait outlasts /spa/left's
	if n := count(got, is("pageview", "/spa/left")); n != 1 {
		t.Errorf("pageviews of /spa/left: %d, want 1: %v", n, got)
	}

	// Back to the page from the back/forward cache (the event as the
	// browser fires it): a pageview from the site, not from the page
	// before it, which would carry a source, half an hour later, again.
	eval(t, ctx, `dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))`)
	got = waitSent(t, ctx, "the pageview of the page restored", func(h sentHit) bool {
		return h.T == "pageview" && h.Path == "/spa/after" && count(sent(t, ctx), is("pageview", "/spa/after")) == 2
	})
	if h := got[len(got)-1]; h.Referrer != "" {
		t.Errorf("the pageview of a page restored from the back/forward cache: %v, want no referrer", h)
	}
}

// TestTrackerPageviewsOfARouter checks the pageviews of what routers and
// code ported from GA do: a bad at('pageview', ...) queued before load
// stops neither the load's pageview, the commands after it nor later
// navigations, and after load throws nothing into the page; GA's object
// form is no pageview of "[object Object]"; a router's at('pageview', path)
// for the URL it has just pushed, or is about to push, is one pageview,
// titled as the call says; and a navigation 250 ms after another waits its
// own 300 ms for its title.
func TestTrackerPageviewsOfARouter(t *testing.T) {
	_, pageURL := recordedPage(t, "/app", `<!doctype html><html><head><title>App</title>%[1]s
<script>window.at=window.at||function(){(at.q=at.q||[]).push(arguments)};
at('pageview', 'http://[');at('event','queued','after the bad one');</script>
<script async src="%[2]s/tracker.js" data-tid="%[3]s"></script>
</head><body></body></html>`)
	ctx := newBrowser(t)
	is := func(typ, path string) func(sentHit) bool {
		return func(h sentHit) bool { return h.T == typ && h.Path == path }
	}
	pageviews := func(path string) (n int) {
		for _, h := range sent(t, ctx) {
			if is("pageview", path)(h) {
				n++
			}
		}
		return n
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/app")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	waitSent(t, ctx, "the event queued after the bad pageview", func(h sentHit) bool { return h.Category == "queued" })
	eval(t, ctx, `at('pageview', 'http://[')`) // eval fails on a throw
	eval(t, ctx, `at('pageview', {page: '/object'})`)
	eval(t, ctx, `history.pushState({}, '', '/spa/one')`)
	got := waitSent(t, ctx, "the pageview of a navigation after the bad pageviews", is("pageview", "/spa/one"))
	for _, h := range got {
		if h.T == "pageview" && h.Path != "/app" && h.Path != "/spa/one" {
			t.Errorf("the tracker sent %v for a bad at('pageview', ...)", h)
		}
	}
	if errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`errors`)); err != nil || len(errs) > 0 {
		t.Errorf("errors in the page: %q %v", errs, err)
	}

	// pushState then at('pageview', path, title), as GA's
	// ga('send', 'pageview', path) is ported: one pageview, with the
	// call's title.
	eval(t, ctx, `history.pushState({}, '', '/checkout'); at('pageview', '/checkout#step', 'Checkout')`)
	got = waitSent(t, ctx, "the pageview of /checkout", is("pageview", "/checkout"))
	if h := got[slices.IndexFunc(got, is("pageview", "/checkout"))]; h.Title != "Checkout" || h.Referrer != pageURL+"/spa/one" {
		t.Errorf("the pageview of /checkout: %v, want titled Checkout from /spa/one", h)
	}
	// The other way round.
	eval(t, ctx, `at('pageview', '/paid'); history.pushState({}, '', '/paid')`)
	waitSent(t, ctx, "the pageview of /paid", is("pageview", "/paid"))
	eval(t, ctx, `history.pushState({}, '', '/spa/two')`)
	waitSent(t, ctx, "the pageview of /spa/two", is("pageview", "/spa/two")) // after /checkout's and /paid's waits
	if n, m := pageviews("/checkout"), pageviews("/paid"); n != 1 || m != 1 {
		t.Errorf("pageviews of /checkout: %d, of /paid: %d, want one each: %v", n, m, sent(t, ctx))
	}

	// GA's ga('send', 'pageview', location.pathname), ported, on a page
	// whose URL has a query (a campaign's landing page): the page shown,
	// no second pageview without its query.
	eval(t, ctx, `history.pushState({}, '', '/landing?utm_source=news&q=1'); at('pageview', location.pathname)`)
	eval(t, ctx, `history.pushState({}, '', '/spa/three')`)
	waitSent(t, ctx, "the pageview of /spa/three", is("pageview", "/spa/three"))
	if n, m := pageviews("/landing?utm_source=news&q=1"), pageviews("/landing"); n != 1 || m != 0 {
		t.Errorf("pageviews of the landing page: %d with its query, %d without, want one with: %v", n, m, sent(t, ctx))
	}

	// Two navigations 250 ms apart: the second's pageview waits 300 ms
	// for the title its router sets 100 ms after pushState.
	eval(t, ctx, `history.pushState({}, '', '/spa/a'); setTimeout(function () {
		history.pushState({}, '', '/spa/b'); setTimeout(function () { document.title = 'B'; }, 100);
	}, 250)`)
	got = waitSent(t, ctx, "the pageview of /spa/b", is("pageview", "/spa/b"))
	if h := got[slices.IndexFunc(got, is("pageview", "/spa/b"))]; h.Title != "B" {
		t.Errorf("the pageview of /spa/b 250 ms after /spa/a: %v, want the title set 100 ms after its pushState", h)
	}
}

// TestTrackerWaitsForAPrerenderedPage: a page prerendered (Speculation
// Rules) sends nothing until it is shown, then its pageview (of the URL it
// has then) and the commands made meanwhile, in order. Chromium does not
// prerender while a DevTools client attached to page targets, as chromedp
// is, drives it (Preload.prerenderStatusUpdated says
// PrerenderingDisabledByDevTools), so the page stubs document.prerendering
// before the tracker loads and fires prerenderingchange itself, as
// activation does. (A real prerendered page is also hidden until then,
// which the tracker's engagement timing covers already.)
func TestTrackerWaitsForAPrerenderedPage(t *testing.T) {
	hits, pageURL := recordedPage(t, "/pre", `<!doctype html><html><head><title>Pre</title>%[1]s
<script>window.shown = false; Object.defineProperty(document, 'prerendering', {configurable: true, get: function () { return !shown; }});
window.at=window.at||function(){(at.q=at.q||[]).push(arguments)};at('event','pre','queued');</script>
<script src="%[2]s/tracker.js" data-tid="%[3]s"></script>
<script>at('event', 'pre', 'meanwhile'); history.replaceState({}, '', '/pre?route=1');</script>
</head><body></body></html>`)
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/pre")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	if got := sent(t, ctx); len(got) != 0 {
		t.Fatalf("while prerendered the tracker sent %v, want nothing", got)
	}
	eval(t, ctx, `shown = true; document.dispatchEvent(new Event('prerenderingchange'))`)
	want := []sentHit{
		{T: "pageview", Path: "/pre?route=1", Title: "Pre"},
		{T: "event", Path: "/pre?route=1", Title: "Pre", Category: "pre", Action: "queued"},
		{T: "event", Path: "/pre?route=1", Title: "Pre", Category: "pre", Action: "meanwhile"},
	}
	if got := sent(t, ctx); !slices.Equal(got, want) {
		t.Fatalf("once shown the tracker sent %v, want %v", got, want)
	}
	hits.waitFor(t, 1, func(m *sarama.ConsumerMessage) bool {
		h, err := hit.Unmarshal(m.Value)
		return err == nil && h.TrackingID == tidBrowser && h.Type == hit.TypePageview && h.Path == "/pre?route=1"
	})
}

// newBrowser starts headless Chromium for the test, with a time limit on
// what the test does with it. Chromium now and then exits as it starts
// (chromedp: "chrome failed to start", with nothing on its standard error
// but the container's usual D-Bus complaints): such a start is tried
// again, up to three times, with a profile of its own each time.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	for attempt := 1; ; attempt++ {
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(chromiumPath),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.UserDataDir(t.TempDir()),
			chromedp.UserAgent(linuxChromeUA),
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		// Started without a time limit: the context of the
		// first call is the browser's own, and its end would close it.
		err := chromedp.Do(ctx)
		if err == nil {
			t.Cleanup(cancelAlloc)
			t.Cleanup(cancel)
			ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
			t.Cleanup(cancelTimeout)
			return ctx
		}
		cancel()
		cancelAlloc()
		if attempt == 3 || !strings.Contains(err.Error(), "chrome failed to start") {
			t.Fatalf("start chromium (attempt %d): %v", attempt, err)
		}
		t.Logf("chromium exited as it started (attempt %d), starting it again: %v", attempt, err)
	}
}

// TestTrackerRetriesAFailedFetch checks that a hit the tracker sends with
// fetch (here because sendBeacon refuses it) and that collection answers
// 503 is sent again, with the same hid and its queue time.
func TestTrackerRetriesAFailedFetch(t *testing.T) {
	ensureChromium(t)
	var refused, sent atomic.Int32
	e := newEnv(t, envOptions{handler: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && r.URL.Path == "/collect" {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				if bytes.Contains(b, []byte(`"t":"pageview"`)) && bytes.Contains(b, []byte("/retry")) && sent.Add(1) == 1 {
					refused.Add(1)
					// As collection answers when the broker is down.
					w.Header().Set("Access-Control-Allow-Origin", "*")
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}})
	hits := e.read(hit.TopicHits)
	page := http.NewServeMux()
	page.HandleFunc("GET /retry", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Retry</title>
<script>navigator.sendBeacon = function () { return false; };</script>
<script async src="%s/tracker.js" data-tid="%s"></script>
</head><body></body></html>`, e.url, tidBrowser)
	})
	pageSrv := httptest.NewServer(page)
	defer pageSrv.Close()
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(strings.Replace(pageSrv.URL, "127.0.0.1", "localhost", 1)+"/retry")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	msgs := hits.waitFor(t, 1, func(m *sarama.ConsumerMessage) bool {
		h, err := hit.Unmarshal(m.Value)
		return err == nil && h.TrackingID == tidBrowser && h.Path == "/retry"
	})
	h := hitsOf(t, msgs)[0]
	if refused.Load() != 1 || sent.Load() != 2 {
		t.Errorf("%d sends, %d refused; want the refused one sent again", sent.Load(), refused.Load())
	}
	if qt := h.ReceivedAt.Sub(h.Time); qt < 900*time.Millisecond {
		t.Errorf("the retried hit has a queue time of %s, want the second it waited", qt)
	}
}

const linuxChromeUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
