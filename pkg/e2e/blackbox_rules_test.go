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
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/localstack"
)

// TestAcceptanceBlackBoxRules is a ground-truth drill of the rules a merchant
// configures (docs/config.md), written from the docs alone: a merchant signs
// up through the gateway, sets every kind of rule on a property in a zone
// far from UTC, sends browser hits (GET and POST /collect, queue times) and
// Measurement API events chosen on each rule's edges, changes some rules
// mid-traffic, and compares every acquisition and behavior report, the
// filtered hits by reason and the realtime view with a calculator of its
// own (drCalc), which knows the rules only as the docs state them.
func TestAcceptanceBlackBoxRules(t *testing.T) {
	// A reprocessed (final) day is read at once, not from report-svc's
	// caches of final days.
	stack, cfg := startStack(t, "DAY_CACHE_TTL=1ms", "CACHE_FINAL_TTL=1ms")
	gw := strings.TrimRight(stack.GatewayURL(), "/")
	c := &mpaClient{t: t, ctx: context.Background(), http: &http.Client{Timeout: 30 * time.Second}, gw: gw}

	t0 := time.Now()
	zone, loc := drZone(t, t0)
	anchor := t0.Truncate(time.Minute).Add(-30 * time.Second) // whole minutes of hits are 30 s off any zone's midnight

	tok := c.signUp(fmt.Sprintf("drill-%d@shop.example", t0.UnixNano()))
	p := c.createProperty(tok, map[string]any{"name": "Drill", "hostnames": []string{"shop.example", "legacy.example"}, "time_zone": zone, "currency": "EUR"})
	var sec struct {
		Secret string `json:"secret"`
	}
	c.do("POST", "/v1/properties/"+p.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec)

	drValidate(t, c, tok, p.ID)
	v1 := drRulesDoc(false)
	var versions []int // the versions of the rules 1 and 2
	var put struct {
		Version int `json:"version"`
	}
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, v1, http.StatusOK, &put)
	versions = append(versions, put.Version)
	drWaitRules(t, c, p.TrackingID, "AcmeQA/9", true)

	reqs := drTraffic(anchor, loc)
	for _, r := range reqs {
		if r.phase == 1 && !r.stopped {
			drSend(t, c, p.TrackingID, sec.Secret, anchor, r)
		}
	}
	waitForProcessing(t, cfg, 90*time.Second)
	// Hits received under version 1 and processed only once processing
	// knows the later versions: the version stamped at receipt decides.
	must(t, stack.Terminate("processing"))
	for _, r := range reqs {
		if r.phase == 1 && r.stopped {
			drSend(t, c, p.TrackingID, sec.Secret, anchor, r)
		}
	}

	// The rules change: a new version takes effect for hits received from
	// now on, whatever their own time.
	between := time.Now().UTC()
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, drRulesDoc(true), http.StatusOK, &put)
	versions = append(versions, put.Version)
	for _, at := range []struct {
		q    string
		want string
	}{{"?at=" + between.Format(time.RFC3339Nano), `"session_timeout_minutes":10`}, {"", `"session_timeout_minutes":15`}} {
		if got := c.do("GET", "/v1/properties/"+p.ID+"/rules"+at.q, tok, nil, http.StatusOK, nil); !strings.Contains(got, at.want) {
			t.Errorf("rules%s: %s, want %s", at.q, got, at.want)
		}
	}
	drWaitRules(t, c, p.TrackingID, "ProbeTwo/1", true)
	// and a new hostname, which makes a rules version of its own
	c.do("PATCH", "/v1/properties/"+p.ID, tok, map[string]any{"hostnames": []string{"shop.example", "shop2.example", "www.shop3.example"}}, http.StatusOK, nil)
	drWaitHost(t, c, p.TrackingID, "https://www.shop2.example/")
	for _, r := range reqs {
		if r.phase == 2 {
			drSend(t, c, p.TrackingID, sec.Secret, anchor, r)
		}
	}
	// A batch sent again: its hits count once.
	for _, r := range reqs {
		if r.resend {
			drSend(t, c, p.TrackingID, sec.Secret, anchor, r)
		}
	}
	// Realtime: hits of the last minutes.
	rt := drRealtimeTraffic(anchor, time.Now())
	for _, r := range rt {
		drSend(t, c, p.TrackingID, sec.Secret, anchor, r)
	}
	must(t, stack.Restart(context.Background(), "processing"))
	waitForProcessing(t, cfg, 90*time.Second)

	all := append(slices.Clone(reqs), rt...)
	drEnrich(t, c, p.TrackingID, all)
	calc := drCalculate(all, anchor, loc)
	for _, s := range calc.sessions {
		t.Logf("session %s %s %s/%s/%s %s ref=%s landing=%s exit=%s pv=%d ev=%d bounce=%v engaged=%v goals=%v dur=%v dev=%v %s",
			s.cid, s.day, s.source, s.medium, s.campaign, s.channel, s.referrer, s.landing, s.exit, s.pageviews, s.events, s.bounce(), s.engaged(), s.goals, s.end.Sub(s.start), s.device, s.country)
	}
	t.Logf("filtered %v", calc.filtered)
	today := time.Now().In(loc).Format(time.DateOnly)
	yesterday := time.Now().In(loc).AddDate(0, 0, -1).Format(time.DateOnly)
	cmp := &drCompare{t: t, c: c, tok: tok, prop: p.ID}
	for _, rg := range []struct{ name, from, to string }{{"yesterday", yesterday, yesterday}, {"today", today, today}, {"both", yesterday, today}} {
		cmp.all(rg.name, rg.from, rg.to, calc)
	}
	cmp.hours(today, calc, loc)
	cmp.realtime(calc)
	drReprocess(t, stack, cfg, cmp, p, loc, versions)
	t.Logf("drill: %d requests, %d hits; %d figures compared, %d disagreements", len(all), calc.hits, cmp.figures, cmp.bad)
}

// drZone picks a zone far from UTC whose local midnight fell within the
// hours the drill's hits span, if one did; else the farthest ahead.
func drZone(t *testing.T, now time.Time) (string, *time.Location) {
	t.Helper()
	for _, z := range []string{"Pacific/Kiritimati", "Pacific/Tongatapu", "Pacific/Chatham", "Pacific/Auckland", "Asia/Kathmandu",
		"Pacific/Marquesas", "Pacific/Pago_Pago", "America/St_Johns", "Asia/Kolkata", "Australia/Eucla", "America/Adak", "Asia/Tokyo"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		ln := now.In(loc)
		m := time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
		if ago := now.Sub(m); ago >= 50*time.Minute && ago <= 3*time.Hour {
			t.Logf("zone %s: local midnight %s ago", z, ago.Round(time.Second))
			return z, loc
		}
	}
	loc, _ := time.LoadLocation("Pacific/Kiritimati")
	t.Logf("zone Pacific/Kiritimati: no far zone had its midnight within the drill's hours")
	return "Pacific/Kiritimati", loc
}

// The rules, as the merchant writes them (version 1), and version 2: one
// more excluded address, a second user-agent exclusion, bot filtering off
// and one more referral exclusion.
func drRulesDoc(v2 bool) map[string]any {
	ips := []string{"198.51.100.16/30", "203.0.113.7", "2001:db8:1::/48"}
	uas := []string{"^AcmeQA/"}
	refs := []string{"paypal.com"}
	bots := true
	timeout := 10
	lowercase := true
	exclude := []string{`^/admin(/|$)`}
	goals := []map[string]any{
		{"id": "signup", "name": "Signed up", "page_path": "^/welcome$", "value": 5},
		{"id": "purchase", "name": "Purchase", "event": map[string]any{"category": "shop", "action": "purchase"}},
		{"id": "lead", "name": "Lead", "event": map[string]any{"action": "lead"}, "value": 2.5},
		{"id": "product", "name": "Product", "page_path": "^/product/:id$", "value": 1},
		{"id": "video", "name": "Video", "event": map[string]any{"category": "video"}},
		{"id": "free", "name": "Free", "event": map[string]any{"action": "free"}, "value": 0},
		{"id": "admin", "name": "Admin done", "page_path": "^/admin/done$", "value": 7},
	}
	channels := []map[string]any{
		{"name": "Partners", "source": "^partner-"},
		{"name": "Newsletter", "medium": "^email$", "campaign": "^news"},
		{"name": "Brand", "campaign": "^brand$"},
	}
	if v2 {
		timeout = 15
		goals = append(goals, map[string]any{"id": "docs", "name": "Docs", "page_path": "^/docs$", "value": 3})
		lowercase = false
		exclude = append(exclude, `^/thanks(/|$)`)
		channels = append([]map[string]any{{"name": "Search Ads", "source": "^google$", "medium": "^cpc$"}}, channels...)
		ips = append(ips, "198.51.100.20")
		uas = append(uas, "^ProbeTwo/")
		refs = append(refs, "partner-blog.example", "www.payments.example")
		bots = false
	}
	return map[string]any{
		"exclusions": map[string]any{"ip": ips, "user_agents": uas, "countries": []string{"KP"}},
		"page_path": map[string]any{"strip_query": true, "keep_params": []string{"id"}, "lowercase": lowercase, "default_page": "index.html",
			"replacements": []map[string]any{{"pattern": `^/product/\d+`, "replace": "/product/:id"}}, "strip_trailing_slash": true},
		"pages": map[string]any{
			"include": []string{`^/$`, `^/(shop|product|checkout|welcome|docs|landing|thanks|admin|blog)(/|$)`, `^/caf%C3%A9$`},
			"exclude": exclude,
		},
		"bot_filtering":           bots,
		"session_timeout_minutes": timeout,
		"referral_exclusions":     refs,
		"goals":                   goals,
		"channels":                channels,
	}
}

// drWaitRules waits until collection's validation endpoint says (or does
// not say) that the user agent is excluded, ten answers in a row.
func drWaitRules(t *testing.T, c *mpaClient, tid, ua string, excluded bool) {
	t.Helper()
	c.waitForCollection("collection has the rules", 60*time.Second, tid, "https://shop.example/", ua, func(answer string) bool {
		return strings.Contains(answer, `"user_agent_excluded"`) == excluded
	})
}

// drWaitHost waits until collection's validation endpoint accepts a hit of
// the page, ten answers in a row.
func drWaitHost(t *testing.T, c *mpaClient, tid, page string) {
	t.Helper()
	c.waitForCollection("collection has the hostnames", 60*time.Second, tid, page, "", func(answer string) bool {
		return strings.HasPrefix(answer, `{"valid":true`)
	})
}

const (
	drChrome  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	drIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	drGoogbot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

// drVisitor is a visitor and what the docs say its hits are enriched with.
type drVisitor struct {
	cid             string
	ua, ip, country string
	mp              bool
	device          [3]string // device category, browser, OS
}

type drHit struct {
	t          string // pageview, event, engagement
	at         time.Duration
	host, path string
	ref        string
	ec, ea, el string
	ev         string
	ni         bool
	hid        string
	rejected   bool // collection refuses it (foreign host)
	mpName     string
	extra      map[string]string // more /collect parameters or Measurement API params
	noLocation bool              // a Measurement API event without page_location
	// filled by the calculator
	v     *drVisitor
	phase int
	tm    time.Time
}

type drReq struct {
	v     *drVisitor
	phase int
	// stopped: sent while processing is stopped, before the rules change
	stopped bool
	// current: derived under today's rules (reprocessing), knowing of
	// the address only what a hit stores (docs/config.md, "Evaluation
	// order", ip)
	current bool
	get     bool
	resend  bool
	hits    []drHit
}

var drSeq int

func drID() string { drSeq++; return fmt.Sprintf("dr-%d", drSeq) }

func drPV(at time.Duration, path, ref string) drHit {
	return drHit{t: "pageview", at: at, path: path, ref: ref, hid: drID()}
}

func drEv(at time.Duration, ec, ea, el, ev string) drHit {
	return drHit{t: "event", at: at, path: "/shop", ec: ec, ea: ea, el: el, ev: ev, hid: drID()}
}

func drPing(at time.Duration) drHit {
	return drHit{t: "engagement", at: at, path: "/shop", hid: drID()}
}

func min_(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

func drTraffic(anchor time.Time, loc *time.Location) []drReq {
	chrome := func(cid, ip string) *drVisitor {
		return &drVisitor{cid: cid, ua: drChrome, ip: ip, device: [3]string{"desktop", "Chrome", "Windows"}}
	}
	iphone := func(cid, ip string) *drVisitor {
		return &drVisitor{cid: cid, ua: drIPhone, ip: ip, device: [3]string{"mobile", "Safari", "iOS"}}
	}
	one := func(v *drVisitor, phase int, hits ...drHit) drReq { return drReq{v: v, phase: phase, hits: hits} }
	var r []drReq
	add := func(x ...drReq) { r = append(r, x...) }

	// IP exclusions: a /30's first and last address and its neighbours,
	// a single address and its neighbour, an IPv6 /48's first and last.
	for i, ip := range []string{"198.51.100.15", "198.51.100.16", "198.51.100.19", "198.51.100.20", "203.0.113.7", "203.0.113.8",
		"2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:2::"} {
		add(one(chrome("ip-"+strconv.Itoa(i), ip), 1, drPV(min_(-200+float64(i)), "/", "")))
	}
	// The neighbour .20 comes back after version 2 excludes it: that hit
	// is excluded, the first stays.
	add(one(chrome("ip-3", "198.51.100.20"), 2, drPV(min_(-60), "/shop", "")))

	// User agents: the exclusion is case-insensitive and anchored; it
	// comes before the bot check.
	add(one(&drVisitor{cid: "ua-1", ua: "acmeqa/2.0", ip: "192.0.2.1", device: [3]string{"?", "?", "?"}}, 1, drPV(min_(-190), "/", "")))
	add(one(&drVisitor{cid: "ua-2", ua: "AcmeQA/1 (compatible; Googlebot/2.1)", ip: "192.0.2.2", device: [3]string{"?", "?", "?"}}, 1, drPV(min_(-189), "/", "")))
	add(one(&drVisitor{cid: "ua-3", ua: drChrome + " AcmeQA/1", ip: "192.0.2.3", device: [3]string{"?", "?", "?"}}, 1, drPV(min_(-188), "/", "")))
	// ProbeTwo is excluded from version 2 on only.
	probe := &drVisitor{cid: "ua-4", ua: "ProbeTwo/1 " + drChrome, ip: "192.0.2.4", device: [3]string{"?", "?", "?"}}
	add(one(probe, 1, drPV(min_(-187), "/", "")), one(probe, 2, drPV(min_(-186), "/shop", "")))

	// Bots: filtered under version 1; under version 2 (filtering off) a
	// bot's hit counts, even one dated before the change by its queue time.
	bot := &drVisitor{cid: "bot-1", ua: drGoogbot, ip: "192.0.2.10", device: [3]string{"other", "?", "?"}}
	add(one(bot, 1, drPV(min_(-180), "/", "")), one(bot, 2, drPV(min_(-150), "/shop", "")))

	// Countries (Measurement API with the visitor's country, any case).
	mpv := func(cid, country string) *drVisitor {
		return &drVisitor{cid: cid, mp: true, country: country, device: [3]string{"(not set)", "(not set)", "(not set)"}}
	}
	mpPV := func(at time.Duration, path, ref string) drHit {
		h := drPV(at, path, ref)
		h.mpName = "page_view"
		return h
	}
	mpEv := func(at time.Duration, name, cat, value string) drHit {
		if cat == "" {
			cat = name // GA4's events without a category: the name is both
		}
		h := drEv(at, cat, name, "", value)
		h.mpName = name
		return h
	}
	add(one(mpv("geo-1", "kp"), 1, mpPV(min_(-175), "/shop", "")))
	add(one(mpv("geo-2", "KR"), 1, mpPV(min_(-174), "/shop", "https://www.bing.com/")))
	// A server's hit with the visitor's address excluded, and one without.
	v := mpv("mpip-1", "")
	v.ip = "198.51.100.17"
	add(one(v, 1, mpPV(min_(-173), "/", "")))
	add(one(mpv("mpip-2", ""), 1, mpPV(min_(-172), "/", "")))

	// Foreign hosts are refused at collection; subdomains, www., case and
	// ports are the site.
	fh := chrome("host-1", "192.0.2.20")
	foreign := drPV(min_(-170), "/shop", "")
	foreign.host, foreign.rejected = "evil.example", true
	sub := drPV(min_(-169), "/blog/a", "")
	sub.host = "blog.shop.example"
	www := drPV(min_(-168), "/blog/b", "")
	www.host = "WWW.Shop.Example:8443"
	add(one(fh, 1, foreign, sub, www))

	// Page clean-up: one page in several spellings; a page rule drops a
	// pageview, not the visit.
	pc := chrome("page-1", "192.0.2.30")
	add(one(pc, 1,
		drPV(min_(-165), "/DOCS/Index.html/", ""),
		drPV(min_(-164), "/docs/", ""),
		drPV(min_(-163), "/docs/index.html?utm_term=x&b=2", ""),
		drPV(min_(-162), "/Product/123?color=red&id=9#top", ""),
		drPV(min_(-161), "/product/456?ID=1", ""),
		drPV(min_(-160), "/admin/settings", ""),
		drEv(min_(-159.5), "admin", "save", "", "1"),
		drPV(min_(-159), "/other", ""),
		drPingAt(min_(-158), "/docs"),
	))
	// A visit that lands on an excluded page takes its source from its
	// next hit (the site itself: Direct), and its landing page too.
	add(one(chrome("page-2", "192.0.2.31"), 1,
		drPV(min_(-157), "/admin/?utm_source=google&utm_medium=cpc", ""),
		drPV(min_(-156), "/shop", ""),
	))
	// The page rules drop every hit on the page, its events and pings too:
	// a visit of only those is no session.
	ev := drEv(min_(-155), "video", "play", "intro", "")
	ev.path = "/admin"
	ping := drPingAt(min_(-154.5), "/admin")
	add(one(chrome("page-3", "192.0.2.32"), 1, drPV(min_(-155.5), "/admin", ""), ev, ping))

	// Goals: a page goal reached in several spellings, once per session;
	// event goals with and without a value of their own.
	add(one(chrome("goal-1", "192.0.2.40"), 1,
		drPV(min_(-150), "/welcome?id=3", "https://www.google.com/search?q=x"),
		drPV(min_(-149), "/WELCOME/", ""),
		drEv(min_(-148), "shop", "purchase", "", "20"),
		drEv(min_(-147), "shop", "purchase", "", "30"),
		drEv(min_(-146), "Shop", "purchase", "", "7"),
		drEv(min_(-145), "form", "lead", "", "100"),
	))
	add(one(iphone("goal-2", "192.0.2.41"), 1,
		drPV(min_(-144), "/checkout", "https://m.facebook.com/"),
		drEv(min_(-143), "shop", "purchase", "", ""),
		drEv(min_(-142), "forms", "lead", "x", ""),
	))
	// A server's purchase joins the browser's session of its client ID.
	mpBuyer := chrome("goal-3", "192.0.2.42")
	add(one(mpBuyer, 1, drPV(min_(-140), "/checkout?id=5", "")))
	srv := &drVisitor{cid: "goal-3", mp: true, device: [3]string{"(not set)", "(not set)", "(not set)"}}
	add(drReq{v: srv, phase: 1, hits: []drHit{mpEv(min_(-139), "purchase", "shop", "12.5"), mpEv(min_(-138.5), "sign_up", "", "")}})

	// Channels: custom rules before the default group, case-insensitive.
	for i, c := range []struct{ page, ref string }{
		{"/landing?utm_source=partner-x&utm_medium=cpc", ""},                              // Partners, not Paid Other
		{"/landing?utm_source=google&utm_medium=cpc&utm_campaign=brand", ""},              // Paid Search
		{"/landing?utm_source=news&utm_medium=EMAIL&utm_campaign=Newsletter-Dec&x=1", ""}, // Newsletter
		{"/landing?utm_source=news&utm_medium=email&utm_campaign=promo", ""},              // Email
		{"/landing?gclid=abc&utm_source=bing&utm_medium=cpc", ""},                         // google / cpc
		{"/", "https://www.paypal.com/checkout/done"},                                     // Direct
		{"/", "https://checkout.paypal.com/"},                                             // Direct
		{"/", "https://paypal.com.evil.example/x?y=1"},                                    // Referral
		{"/", "https://blog.shop.example/post"},                                           // own host: Direct
		{"/landing?utm_source=Partner-Y&utm_medium=referral", ""},                         // Partners
		{"/", "https://news.example/a/b?x=1"},                                             // Referral
	} {
		add(one(chrome("ch-"+strconv.Itoa(i), "192.0.2."+strconv.Itoa(50+i)), 1, drPV(min_(-135+float64(i)), c.page, c.ref)))
	}
	// Campaigns split sessions; a hit without one does not, nor does a
	// referrer, a referral-excluded one included, in mid-session.
	add(one(chrome("camp-1", "192.0.2.70"), 1,
		drPV(min_(-120), "/landing?utm_source=a&utm_medium=cpc", ""),
		drPV(min_(-119), "/shop", "https://www.google.com/"),
		drPV(min_(-118), "/shop?utm_source=b&utm_medium=cpc", ""),
		drPV(min_(-117), "/checkout", "https://www.paypal.com/"),
		drPV(min_(-116), "/thanks?utm_source=b&utm_medium=cpc", ""),
		drPV(min_(-115), "/thanks?utm_source=B&utm_medium=cpc", ""),
	))
	// The timeout (10 minutes): exactly 10:00 continues, 10:01 does not;
	// a ping extends a session, and one outside every session is ignored.
	add(one(iphone("time-1", "192.0.2.80"), 1,
		drPV(min_(-110), "/", ""),
		drPV(min_(-100), "/shop", ""),
		drPV(min_(-100+10+1.0/60), "/checkout", ""),
		drPingAt(min_(-88), "/checkout"),
		drPingAt(min_(-70), "/checkout"),
		drEv(min_(-69), "video", "play", "", "3"),
		drEv(min_(-68), "video", "progress", "", ""), // non-interaction below
	))
	r[len(r)-1].hits[len(r[len(r)-1].hits)-1].ni = true
	// A non-interaction event does not cancel a bounce.
	add(one(chrome("bounce-1", "192.0.2.81"), 1, drPV(min_(-66), "/shop", ""), func() drHit {
		h := drEv(min_(-65), "video", "progress", "", "2")
		h.ni = true
		return h
	}()))
	// Pixels: GET /collect.
	add(drReq{v: chrome("pixel-1", "192.0.2.82"), phase: 1, get: true, hits: []drHit{drPV(min_(-64), "/shop?id=1&utm_source=pix", ""), drEv(min_(-63), "shop", "purchase", "lbl", "4.25")}})

	// A referral exclusion added in version 2: a visitor with a live
	// session from that site and a later hit is derived again (Direct);
	// one without a later hit keeps its Referral... (docs/processing.md,
	// "Rules version").
	rv := chrome("rederive-1", "192.0.2.90")
	add(one(rv, 1, drPV(min_(-50), "/blog/x", "https://partner-blog.example/post")), one(rv, 2, drPV(min_(-45), "/blog/y", "")))
	add(one(chrome("rederive-2", "192.0.2.91"), 1, drPV(min_(-49), "/blog/x", "https://partner-blog.example/post")))
	// and a session that begins after the change from that site is Direct.
	add(one(chrome("rederive-3", "192.0.2.92"), 2, drPV(min_(-44), "/blog/x", "https://partner-blog.example/post")))

	// Late hits (phase 2, with queue times) landing in sessions written
	// already: one becomes a session's first hit and takes attribution.
	late := chrome("late-1", "192.0.2.95")
	add(one(late, 1, drPV(min_(-100), "/shop", ""), drPV(min_(-98), "/checkout", "")))
	add(one(late, 2, drPV(min_(-103), "/landing?utm_source=news&utm_medium=email&utm_campaign=news-1", "")))
	// A batch re-sent: its hits count once.
	rs := one(chrome("resend-1", "192.0.2.96"), 1, drPV(min_(-40), "/shop", ""), drEv(min_(-39), "shop", "purchase", "", "10"))
	add(rs)
	rs.resend, rs.phase = true, 2
	r = append(r, rs)

	// A session timeout lengthened by version 2 (10 to 15 minutes): a
	// visitor with a later hit is derived again under it.
	tc := chrome("tc-1", "192.0.2.100")
	add(one(tc, 1, drPV(min_(-80), "/shop", ""), drPV(min_(-68), "/checkout", "")), one(tc, 2, drPV(min_(-60), "/shop/c", "")))
	// but not one whose later hit version 2 excludes: its sessions are
	// derived under the latest version among their own hits
	tc4 := chrome("tc-4", "192.0.2.134")
	add(one(tc4, 1, drPV(min_(-80), "/shop", ""), drPV(min_(-68), "/checkout", "")), one(tc4, 2, drPV(min_(-60), "/thanks", "")))
	add(one(chrome("tc-2", "192.0.2.101"), 1, drPV(min_(-80), "/shop", ""), drPV(min_(-68), "/checkout", "")))
	// A goal added by version 2: a page viewed before the change does not
	// complete it, even in a visit derived again after it (a hit's goals
	// are its own version's), one viewed after does (rt-2).
	gd := chrome("gd-1", "192.0.2.102")
	add(one(gd, 1, drPV(min_(-75), "/docs/", "")), one(gd, 2, drPV(min_(-74), "/shop", "")))
	add(one(chrome("gd-2", "192.0.2.103"), 1, drPV(min_(-75), "/docs/", "")))
	// A dropped pageview is as if never sent: it does not keep a session
	// alive.
	add(one(chrome("pd-1", "192.0.2.104"), 1, drPV(min_(-85), "/shop", ""), drPV(min_(-80), "/other", ""), drPV(min_(-74), "/shop?id=2", "")))
	// Percent-escapes, a query's case, the default page at the root.
	add(one(chrome("caf-1", "192.0.2.105"), 1, drPV(min_(-95), "/Caf%c3%a9/", ""), drPV(min_(-94), "/Shop?id=AbC&Q=1", ""), drPV(min_(-93), "/index.html?id=2", "")))
	// A server's bot, and a server's visitor address in an IPv6 prefix.
	mbot := mpv("mpbot-1", "")
	mbot.ua = drGoogbot
	add(one(mbot, 1, mpPV(min_(-92), "/shop", "")))
	m6 := mpv("mpip-3", "")
	m6.ip = "2001:db8:1::5"
	add(one(m6, 1, mpPV(min_(-91), "/shop", "")))

	// Campaigns set apart from the location (cs, cm) override its tags
	// field by field; a tag's name percent-encoded is still the tag.
	cs := drPV(min_(-97), "/landing?utm_source=a&utm_medium=cpc&utm_campaign=brand", "")
	cs.extra = map[string]string{"cs": "b"}
	add(one(chrome("cs-1", "192.0.2.106"), 1, cs))
	add(one(chrome("enc-1", "192.0.2.107"), 1, drPV(min_(-96.5), "/landing?%75tm_source=enc&utm_medium=cpc", ""), drPV(min_(-96), "/shop?%69d=4&x=1", "")))
	// Referrers: a referral exclusion in another case, an app, the site on
	// another port.
	add(one(chrome("ref-1", "192.0.2.108"), 1, drPV(min_(-90.5), "/", "https://WWW.PayPal.com/x")))
	add(one(chrome("ref-2", "192.0.2.109"), 1, drPV(min_(-90), "/", "android-app://com.slack/")))
	add(one(chrome("ref-3", "192.0.2.110"), 1, drPV(min_(-89.5), "/", "https://shop.example:8443/x")))
	// Tags read as a browser reads a query; a campaign that is the same
	// once read does not split the session.
	add(one(chrome("q-1", "192.0.2.135"), 1, drPV(min_(-64.5), "/landing?utm_source=a;b&utm_medium=cp%c&utm_campaign=50%off+now", ""), drPV(min_(-64), "/shop?utm_source=a%3Bb&utm_medium=cp%25c&utm_campaign=50%25off%20now", "")))
	add(one(chrome("q-2", "192.0.2.136"), 1, drPV(min_(-63.5), "/landing?utm_source=%20First%20&utm_source=second&utm_medium=cpc", ""), drPV(min_(-63), "/shop?utm_source=First&utm_medium=cpc", "")))
	// A server's event without a page: never a foreign host.
	add(one(mpv("mpnoloc-1", ""), 1, func() drHit { h := mpEv(min_(-62.5), "sign_up", "", ""); h.noLocation = true; return h }()))
	// A dropped pageview with a campaign does not split a session.
	add(one(chrome("pd-2", "192.0.2.111"), 1, drPV(min_(-89), "/shop", ""), drPV(min_(-88.5), "/admin?utm_source=z", ""), drPV(min_(-88), "/checkout", "")))
	// Version 2's timeout at its edge: exactly 15:00 continues, 15:01 not.
	add(one(iphone("tc-3", "192.0.2.112"), 2, drPV(min_(-87), "/shop", ""), drPV(min_(-72), "/checkout", ""), drPV(min_(-72+15+1.0/60), "/checkout/2", "")))
	// A server's campaign_details starts an attributed session before its
	// purchase; a server's user agent and mapped address meet the rules.
	cd := mpEv(min_(-86), "campaign_details", "", "")
	cd.extra = map[string]string{"source": "news", "medium": "email", "campaign": "news-mp"}
	cd.ni = true
	add(drReq{v: mpv("mpcd-1", "DE"), phase: 1, hits: []drHit{cd, mpEv(min_(-86)+time.Second, "purchase", "shop", "9")}})
	mua := mpv("mpua-1", "")
	mua.ua = "AcmeQA/3"
	add(one(mua, 1, mpPV(min_(-85.5), "/shop", "")))
	mmap := mpv("mpip-4", "")
	mmap.ip = "::ffff:198.51.100.18"
	add(one(mmap, 1, mpPV(min_(-85), "/shop", "")))

	// Values: summed to a millionth; an event goal's value is the event's,
	// negative too.
	add(one(chrome("val-1", "192.0.2.153"), 1, drPV(min_(-61), "/shop", ""), drEv(min_(-60.9), "shop", "purchase", "", "0.1"),
		drEv(min_(-60.8), "misc", "tip", "", "0.2"), drEv(min_(-60.7), "misc", "tip", "", "0.1234567"), drEv(min_(-60.6), "misc", "tip", "", "1e-7")))
	add(one(chrome("val-2", "192.0.2.154"), 1, drPV(min_(-61), "/shop", ""), drEv(min_(-60.5), "shop", "purchase", "refund", "-5")))
	// A goal of a fixed value 0, and one on a page the page rules drop.
	add(one(chrome("g0-1", "192.0.2.113"), 1, drPV(min_(-84), "/shop", ""), drEv(min_(-83.5), "promo", "free", "", "50"), drPV(min_(-83), "/admin/done", "")))
	// A custom channel rule added by version 2, before the others: a live
	// session with a later hit is derived again under it.
	chg := chrome("chg-1", "192.0.2.114")
	add(one(chg, 1, drPV(min_(-82), "/landing?gclid=xyz", "")), one(chg, 2, drPV(min_(-81), "/shop", "")))
	add(one(chrome("chg-2", "192.0.2.115"), 1, drPV(min_(-82), "/landing?gclid=xyz2", "")))
	// Hostnames changed (a rules version too): the new host's hits are
	// refused before and accepted after; its referrals stop being
	// referrals, in a live session with a later hit too.
	hn := chrome("hn-1", "192.0.2.116")
	add(one(hn, 1, drPV(min_(-79), "/blog/z", "https://shop2.example/page")), one(hn, 2, drPV(min_(-78), "/blog/w", "")))
	hn2 := chrome("hn-2", "192.0.2.117")
	h2a := drPV(min_(-77), "/shop", "")
	h2a.host, h2a.rejected = "shop2.example", true
	h2b := drPV(min_(-76), "/shop?id=7", "")
	h2b.host = "www.shop2.example"
	add(one(hn2, 1, drPV(min_(-77.5), "/", ""), h2a), one(hn2, 2, h2b))
	// A hostname saved with www. covers its parent and subdomains, as
	// hosts and as referrers; so does a referral exclusion saved so.
	h3 := drPV(min_(-76.5), "/shop", "")
	h3.host = "shop3.example"
	add(one(chrome("hn-3", "192.0.2.118"), 2, h3))
	// A host removed by version 2: its hits before count, after are refused.
	lg := chrome("lg-1", "192.0.2.138")
	lg1 := drPV(min_(-74.5), "/shop", "")
	lg1.host = "legacy.example"
	lg2 := drPV(min_(-74), "/checkout", "")
	lg3 := drPV(min_(-73.5), "/thanks", "")
	lg3.host, lg3.rejected = "legacy.example", true
	add(one(lg, 1, lg1), one(lg, 2, lg2, lg3))
	add(one(chrome("hn-4", "192.0.2.119"), 2, drPV(min_(-76), "/shop", "https://blog.shop3.example/x")))
	add(one(chrome("px-1", "192.0.2.150"), 1, drPV(min_(-75.5), "/shop", "https://payments.example/x")))
	add(one(chrome("px-2", "192.0.2.151"), 2, drPV(min_(-75.5), "/shop", "https://payments.example/x")))
	add(one(chrome("px-3", "192.0.2.152"), 2, drPV(min_(-75), "/shop", "https://checkout.payments.example/")))

	// Version 2 turns lowercase off and drops /thanks: each pageview's
	// page is its own version's.
	pc2 := chrome("pc2-1", "192.0.2.133")
	add(one(pc2, 1, drPV(min_(-67), "/Shop/A", ""), drPV(min_(-66.5), "/Thanks", "")), one(pc2, 2, drPV(min_(-66), "/Shop/A", ""), drPV(min_(-65.5), "/shop/B/", ""), drPV(min_(-65), "/thanks", "")))

	// Received under version 1 while processing is stopped, processed
	// after the change.
	for _, x := range []drReq{
		one(&drVisitor{cid: "st-1", ua: drGoogbot, ip: "192.0.2.130", device: [3]string{"?", "?", "?"}}, 1, drPV(min_(-70), "/shop", "")),
		one(chrome("st-2", "198.51.100.20"), 1, drPV(min_(-69.5), "/shop", "")),
		one(&drVisitor{cid: "st-3", ua: "ProbeTwo/1 " + drChrome, ip: "192.0.2.131", device: [3]string{"?", "?", "?"}}, 1, drPV(min_(-69), "/shop", "")),
		one(chrome("st-4", "192.0.2.132"), 1, drPV(min_(-68.5), "/docs", "https://partner-blog.example/p")),
		// a host version 2 no longer has: let in by version 1, its own
		one(chrome("st-5", "192.0.2.137"), 1, func() drHit { h := drPV(min_(-68.2), "/shop", ""); h.host = "legacy.example"; return h }()),
	} {
		x.stopped = true
		add(x)
	}

	// Midnight: a visitor across the property's midnight, and excluded
	// hits on both sides of it, if one fell within the hours sent.
	ln := anchor.In(loc)
	mid := time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc)
	if off := mid.Sub(anchor); off > -3*time.Hour && off < -40*time.Minute {
		add(one(chrome("mid-1", "192.0.2.99"), 1, drPV(off-2*time.Minute-30*time.Second, "/shop", ""), drPV(off+2*time.Minute+30*time.Second, "/checkout", "")))
		add(one(chrome("mid-2", "198.51.100.16"), 1, drPV(off-3*time.Minute-30*time.Second, "/shop", ""), drPingAt(off-time.Minute-30*time.Second, "/shop"), drPV(off+3*time.Minute+30*time.Second, "/checkout", "")))
	}
	return r
}

func drPingAt(at time.Duration, path string) drHit {
	h := drPing(at)
	h.path = path
	return h
}

// drRealtimeTraffic is the hits of the last minutes, for the realtime view.
func drRealtimeTraffic(anchor, now time.Time) []drReq {
	off := now.Sub(anchor)
	chrome := func(cid, ip string) *drVisitor {
		return &drVisitor{cid: cid, ua: drChrome, ip: ip, device: [3]string{"desktop", "Chrome", "Windows"}}
	}
	return []drReq{
		{v: chrome("rt-1", "192.0.2.120"), phase: 2, hits: []drHit{drPV(off-time.Minute, "/shop", "https://www.google.com/")}},
		{v: chrome("rt-2", "192.0.2.121"), phase: 2, hits: []drHit{drPV(off-12*time.Minute, "/docs/", ""), drPingAt(off-90*time.Second, "/docs")}},
		{v: chrome("rt-3", "192.0.2.122"), phase: 2, hits: []drHit{drPV(off-20*time.Minute, "/shop", ""), drPV(off-19*time.Minute, "/admin", "")}},
		{v: chrome("rt-4", "198.51.100.18"), phase: 2, hits: []drHit{drPV(off-2*time.Minute, "/shop", "")}},                                                                 // excluded address
		{v: &drVisitor{cid: "rt-5", ua: drGoogbot, ip: "192.0.2.123", device: [3]string{"other", "?", "?"}}, phase: 2, hits: []drHit{drPV(off-2*time.Minute, "/shop", "")}}, // a bot, counted under version 2
	}
}

// drSend sends one request: a browser's batch (POST), pixels (GET) or a
// Measurement API request, each hit dated by its queue time (or time).
func drSend(t *testing.T, c *mpaClient, tid, secret string, anchor time.Time, r drReq) {
	t.Helper()
	now := time.Now()
	if r.v.mp {
		var evs []map[string]any
		for _, h := range r.hits {
			params := map[string]any{}
			host := h.host
			if host == "" {
				host = "shop.example"
			}
			if !h.noLocation {
				params["page_location"] = "https://" + host + h.path
			}
			if h.ref != "" {
				params["page_referrer"] = h.ref
			}
			if h.ec != "" && h.mpName != "page_view" {
				params["event_category"] = h.ec
			}
			if h.el != "" {
				params["event_label"] = h.el
			}
			if h.ev != "" {
				f, _ := strconv.ParseFloat(h.ev, 64)
				params["value"] = f
			}
			if h.ni {
				params["non_interaction"] = "true"
			}
			for k, v := range h.extra {
				params[k] = v
			}
			evs = append(evs, map[string]any{"name": h.mpName, "event_id": h.hid, "timestamp_micros": anchor.Add(h.at).UnixMicro(), "params": params})
		}
		body := map[string]any{"client_id": r.v.cid, "user_id": "u-" + r.v.cid, "events": evs}
		if r.v.ip != "" {
			body["ip_override"] = r.v.ip
		}
		if r.v.ua != "" {
			body["user_agent"] = r.v.ua
		}
		if r.v.country != "" {
			body["user_location"] = map[string]any{"country_id": r.v.country}
		}
		code, b := c.post("/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "python-requests/2.31", body)
		if code != http.StatusNoContent {
			t.Errorf("mp/collect %s: %d %s", r.v.cid, code, b)
		}
		return
	}
	params := func(h drHit) map[string]string {
		host := h.host
		if host == "" {
			host = "shop.example"
		}
		p := map[string]string{"v": "1", "t": h.t, "cid": r.v.cid, "hid": h.hid, "dl": "https://" + host + h.path,
			"qt": strconv.FormatInt(now.Sub(anchor.Add(h.at)).Milliseconds(), 10)}
		for k, v := range map[string]string{"dr": h.ref, "ec": h.ec, "ea": h.ea, "el": h.el, "ev": h.ev} {
			if v != "" {
				p[k] = v
			}
		}
		if h.ni {
			p["ni"] = "1"
		}
		for k, v := range h.extra {
			p[k] = v
		}
		if h.t == "engagement" {
			p["et"] = "5000"
		}
		return p
	}
	do := func(req *http.Request, want int) {
		req.Header.Set("User-Agent", r.v.ua)
		req.Header.Set("X-Forwarded-For", r.v.ip)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatalf("send %s: %v", r.v.cid, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Errorf("send %s: %s %s: %s", r.v.cid, resp.Status, resp.Header.Get("X-Collect-Error"), b)
		}
	}
	if r.get {
		for _, h := range r.hits {
			q := url.Values{"tid": {tid}}
			for k, v := range params(h) {
				q.Set(k, v)
			}
			req, _ := http.NewRequest("GET", c.gw+"/collect?"+q.Encode(), nil)
			do(req, http.StatusOK)
		}
		return
	}
	var batch struct {
		Hits []map[string]any `json:"hits"`
	}
	want := http.StatusNoContent
	for _, h := range r.hits {
		m := map[string]any{}
		for k, v := range params(h) {
			m[k] = v
		}
		if h.rejected {
			want = http.StatusBadRequest
		}
		batch.Hits = append(batch.Hits, m)
	}
	b, _ := json.Marshal(batch)
	req, _ := http.NewRequest("POST", c.gw+"/collect?tid="+tid, bytes.NewReader(b))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	do(req, want)
}

// drEnrich fills in the device, browser and OS of the visitors whose user
// agent the docs leave to the parser library (a crawler's, a browser's with
// a token appended) from collection's validation endpoint, which answers
// the hit as it would be queued, enriched: the reports must then agree
// with it.
func drEnrich(t *testing.T, c *mpaClient, tid string, reqs []drReq) {
	t.Helper()
	for _, r := range reqs {
		v := r.v
		if !slices.Contains(v.device[:], "?") {
			continue
		}
		q := url.Values{"v": {"1"}, "tid": {tid}, "t": {"pageview"}, "cid": {"probe"}, "dl": {"https://shop.example/"}}
		req, _ := http.NewRequest("GET", c.gw+"/debug/collect?"+q.Encode(), nil)
		req.Header.Set("User-Agent", v.ua)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Hits []struct {
				Hit struct {
					DC string `json:"dc"`
					BR string `json:"br"`
					OS string `json:"os"`
				} `json:"hit"`
			} `json:"hits"`
		}
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || len(a.Hits) != 1 {
			t.Fatalf("debug/collect for %q: %v %+v", v.ua, err, a)
		}
		h := a.Hits[0].Hit
		v.device = [3]string{drOr(h.DC), drOr(h.BR), drOr(h.OS)}
		t.Logf("user agent %q: %v", v.ua, v.device)
	}
}

// The calculator, from docs/config.md and docs/processing.md.

type drRules struct {
	timeout   time.Duration
	docsGoal  bool
	own       []string
	ips       []netip.Prefix
	uas       []*regexp.Regexp
	bots      bool
	referrals []string
}

func drRulesOf(v2 bool) drRules {
	r := drRules{bots: !v2, referrals: []string{"paypal.com"}, timeout: 10 * time.Minute, docsGoal: v2, own: []string{"shop.example"}}
	if v2 {
		r.timeout = 15 * time.Minute
		r.own = append(r.own, "shop2.example", "shop3.example")
	}
	for _, s := range []string{"198.51.100.16/30", "203.0.113.7/32", "2001:db8:1::/48"} {
		r.ips = append(r.ips, netip.MustParsePrefix(s))
	}
	r.uas = []*regexp.Regexp{regexp.MustCompile(`(?i)^AcmeQA/`)}
	if v2 {
		r.ips = append(r.ips, netip.MustParsePrefix("198.51.100.20/32"))
		r.uas = append(r.uas, regexp.MustCompile(`(?i)^ProbeTwo/`))
		r.referrals = append(r.referrals, "partner-blog.example", "payments.example")
	}
	return r
}

type drSession struct {
	cid                      string
	first                    bool
	day, hour                string
	start, end               time.Time
	hits                     []*drHit
	source, medium, campaign string
	channel, referrer        string
	landing, exit            string
	pageviews, events        int
	interaction              bool
	goals                    map[string]float64
	device                   [3]string
	country                  string
	pages                    []drPage
}

type drPage struct {
	page     string
	measured bool
	secs     float64
}

type drCalc struct {
	hits     int
	sessions []*drSession
	filtered map[string]map[string]float64 // day → reason → hits
	kept     []*drHit                      // for realtime
	loc      *time.Location
}

var drAttribution = []string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id", "gclid", "gbraid", "wbraid", "msclkid", "dclid", "fbclid"}

// drClean is docs/config.md's page path clean-up, then the attribution
// parameters left out of the page dimension. It returns the page and the
// path without query that page rules and goals see.
func drClean(raw string, v2 bool) (page, path string) {
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	path, query, _ := strings.Cut(raw, "?")
	var kept []string
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			name, _, _ := strings.Cut(kv, "=")
			if n, err := url.QueryUnescape(name); err == nil {
				name = n // names are matched as a query parser reads them
			}
			if name == "id" || strings.HasPrefix(strings.ToLower(name), "utm_") || slices.Contains(drAttribution, strings.ToLower(name)) {
				kept = append(kept, kv)
			}
		}
	}
	// collection's canonical form writes escapes in upper case, and
	// lowercase leaves them so
	if !v2 { // version 2 turns lowercase off
		path = regexp.MustCompile(`%[0-9a-fA-F]{2}`).ReplaceAllStringFunc(strings.ToLower(path), strings.ToUpper)
	} else {
		path = regexp.MustCompile(`%[0-9a-fA-F]{2}`).ReplaceAllStringFunc(path, strings.ToUpper)
	}
	for {
		before := path
		if len(path) > 1 {
			path = strings.TrimSuffix(path, "/")
		}
		if strings.HasSuffix(path, "/index.html") {
			path = strings.TrimSuffix(path, "index.html")
		}
		if path == before {
			break
		}
	}
	path = regexp.MustCompile(`^/product/\d+`).ReplaceAllString(path, "/product/:id")
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	var pageQuery []string
	for _, kv := range kept {
		name, _, _ := strings.Cut(kv, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if !slices.Contains(drAttribution, strings.ToLower(name)) && !strings.HasPrefix(strings.ToLower(name), "utm_") {
			pageQuery = append(pageQuery, kv)
		}
	}
	page = path
	if len(pageQuery) > 0 {
		page += "?" + strings.Join(pageQuery, "&")
	}
	return page, path
}

func drPageDropped(path string, v2 bool) bool {
	if v2 && regexp.MustCompile(`^/thanks(/|$)`).MatchString(path) {
		return true
	}
	in := path == "/caf%C3%A9" || regexp.MustCompile(`^/$`).MatchString(path) || regexp.MustCompile(`^/(shop|product|checkout|welcome|docs|landing|thanks|admin|blog)(/|$)`).MatchString(path)
	return !in || regexp.MustCompile(`^/admin(/|$)`).MatchString(path)
}

// drQuery reads a query as docs/processing.md says attribution reads it
// (a browser's URLSearchParams): pairs split at & only, + a space, a %
// escaping nothing itself, the first of a repeated name, values trimmed.
func drQuery(q string) url.Values {
	v := url.Values{}
	dec := func(s string) string {
		s = strings.ReplaceAll(s, "+", " ")
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '%' && i+2 < len(s)+0 && i+2 <= len(s)-1 {
				if x, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
					b.WriteByte(byte(x))
					i += 2
					continue
				}
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
	for _, kv := range strings.Split(q, "&") {
		if kv == "" {
			continue
		}
		k, val, _ := strings.Cut(kv, "=")
		k = dec(k)
		if _, ok := v[k]; !ok {
			v.Set(k, strings.TrimSpace(dec(val)))
		}
	}
	return v
}

func drTags(h *drHit) url.Values {
	_, q, _ := strings.Cut(h.path, "?")
	if i := strings.IndexByte(q, '#'); i >= 0 {
		q = q[:i]
	}
	v := drQuery(q)
	for k, tag := range map[string]string{"cs": "utm_source", "cm": "utm_medium", "cn": "utm_campaign", "source": "utm_source", "medium": "utm_medium", "campaign": "utm_campaign"} {
		if x := h.extra[k]; x != "" {
			v.Set(tag, x) // a campaign sent apart overrides the location's, field by field
		}
	}
	return v
}

func drCampaign(h *drHit) [5]string {
	q := drTags(h)
	google := cmp.Or(q.Get("gclid"), q.Get("gbraid"), q.Get("wbraid")) // Google's click IDs, in this order
	return [5]string{q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign"), google, q.Get("msclkid")}
}

func drHostExcluded(host string, own, list []string) bool {
	host = strings.TrimPrefix(strings.ToLower(host), "www.")
	for _, d := range append(slices.Clone(own), list...) {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

func drChannel(source, medium, campaign string) string {
	s, m, c := strings.ToLower(source), strings.ToLower(medium), strings.ToLower(campaign)
	switch {
	case strings.HasPrefix(s, "partner-"):
		return "Partners"
	case m == "email" && strings.HasPrefix(c, "news"):
		return "Newsletter"
	case c == "brand":
		return "Brand"
	}
	paid := regexp.MustCompile(`^(.*cp.*|ppc|retargeting|paid.*)$`).MatchString(m)
	search := s == "google" || s == "bing"
	social := s == "facebook.com" || strings.HasSuffix(s, ".facebook.com")
	switch {
	case s == "(direct)" && (m == "(none)" || m == "(not set)"):
		return "Direct"
	case search && paid:
		return "Paid Search"
	case paid:
		return "Paid Other"
	case social:
		return "Organic Social"
	case search || m == "organic":
		return "Organic Search"
	case m == "referral":
		return "Referral"
	case s == "email" || m == "email":
		return "Email"
	}
	return "Unassigned"
}

func drCalculate(reqs []drReq, anchor time.Time, loc *time.Location) *drCalc {
	calc := &drCalc{filtered: map[string]map[string]float64{}, loc: loc}
	byCID := map[string][]*drHit{}
	seen := map[string]bool{}
	phase := map[string]int{}
	for _, r := range reqs {
		rules := drRulesOf(r.phase == 2)
		for i := range r.hits {
			h := r.hits[i]
			if h.rejected || seen[h.hid] {
				continue
			}
			seen[h.hid] = true
			h.v, h.phase, h.tm = r.v, r.phase, anchor.Add(h.at)
			calc.hits++
			reason := ""
			ip, _ := netip.ParseAddr(r.v.ip)
			ip = ip.Unmap() // an IPv4-mapped address is the IPv4 address
			ipExcluded := r.v.ip != "" && slices.ContainsFunc(rules.ips, func(p netip.Prefix) bool { return p.Contains(ip) })
			if r.current {
				// the rule the full address matched at collection (under
				// version 1), if today's rules still have it, or the
				// stored, truncated address wholly inside a prefix
				v1 := drRulesOf(false)
				i := slices.IndexFunc(v1.ips, func(p netip.Prefix) bool { return p.Contains(ip) })
				stored := netip.PrefixFrom(ip, 24)
				if ip.Is6() {
					stored = netip.PrefixFrom(ip, 48)
				}
				stored = stored.Masked()
				ipExcluded = r.v.ip != "" && (i >= 0 && slices.Contains(rules.ips, v1.ips[i]) ||
					slices.ContainsFunc(rules.ips, func(p netip.Prefix) bool { return p.Bits() <= stored.Bits() && p.Contains(stored.Addr()) }))
			}
			switch {
			case ipExcluded:
				reason = "ip"
			case r.v.ua != "" && slices.ContainsFunc(rules.uas, func(re *regexp.Regexp) bool { return re.MatchString(r.v.ua) }):
				reason = "user_agent"
			case strings.EqualFold(r.v.country, "KP"):
				reason = "country"
			case r.current && h.host != "" && !drHostExcluded(h.host, rules.own, nil):
				reason = "foreign_host" // let in by the hostnames of the time
			case rules.bots && strings.Contains(r.v.ua, "Googlebot"):
				reason = "bot"
			case !h.noLocation: // every hit on a page: pageviews, events, pings
				if _, path := drClean(h.path, r.phase == 2); drPageDropped(path, r.phase == 2) {
					reason = "page"
				}
			}
			if reason != "" {
				day := h.tm.In(loc).Format(time.DateOnly)
				if calc.filtered[day] == nil {
					calc.filtered[day] = map[string]float64{}
				}
				calc.filtered[day][reason]++
				continue
			}
			hh := h
			byCID[r.v.cid] = append(byCID[r.v.cid], &hh)
			phase[r.v.cid] = max(phase[r.v.cid], r.phase)
			calc.kept = append(calc.kept, &hh)
		}
	}
	cids := slices.Sorted(func(yield func(string) bool) {
		for k := range byCID {
			if !yield(k) {
				return
			}
		}
	})
	for _, cid := range cids {
		hits := byCID[cid]
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].tm.Before(hits[j].tm) })
		rules := drRulesOf(phase[cid] == 2)
		var sessions []*drSession
		var cur *drSession
		for _, h := range hits {
			day := h.tm.In(loc).Format(time.DateOnly)
			if cur != nil && h.tm.Sub(cur.end) <= rules.timeout && day == cur.day {
				c := drCampaign(h)
				if h.t == "engagement" || c == ([5]string{}) || c == drCampaign(cur.hits[0]) {
					cur.hits = append(cur.hits, h)
					cur.end = h.tm
					continue
				}
			}
			if h.t == "engagement" {
				continue // a ping outside every session
			}
			cur = &drSession{cid: cid, day: day, hour: h.tm.In(loc).Format("2006-01-02T15"), start: h.tm, end: h.tm, hits: []*drHit{h}, first: len(sessions) == 0}
			sessions = append(sessions, cur)
		}
		for _, s := range sessions {
			s.finish(rules)
		}
		calc.sessions = append(calc.sessions, sessions...)
	}
	return calc
}

func (s *drSession) finish(rules drRules) {
	f := s.hits[0]
	s.device, s.country = f.v.device, "(not set)"
	if f.v.country != "" {
		s.country = strings.ToUpper(f.v.country)
	}
	q := drTags(f)
	s.referrer = "(none)"
	switch {
	case q.Get("gclid") != "" || q.Get("gbraid") != "" || q.Get("wbraid") != "":
		s.source, s.medium, s.campaign = "google", "cpc", drOr(q.Get("utm_campaign"))
	case q.Get("utm_source") != "" || q.Get("utm_medium") != "" || q.Get("utm_campaign") != "":
		s.source, s.medium, s.campaign = drOr(q.Get("utm_source")), drOr(q.Get("utm_medium")), drOr(q.Get("utm_campaign"))
	default:
		s.source, s.medium, s.campaign = "(direct)", "(none)", "(direct)"
	}
	if u, err := url.Parse(f.ref); err == nil && f.ref != "" && !drHostExcluded(u.Hostname(), rules.own, rules.referrals) {
		host := strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
		s.referrer = host
		if u.Path != "" && u.Path != "/" {
			s.referrer += u.Path
		}
		if s.source == "(direct)" {
			switch host {
			case "google.com", "bing.com":
				s.source, s.medium, s.campaign = strings.TrimSuffix(host, ".com"), "organic", "(organic)"
			default:
				s.source, s.medium, s.campaign = host, "referral", "(referral)"
			}
		}
	}
	s.channel = drChannel(s.source, s.medium, s.campaign)
	if rules.docsGoal && s.source == "google" && s.medium == "cpc" { // version 2's first custom rule
		s.channel = "Search Ads"
	}
	s.goals = map[string]float64{}
	goal := func(id string, v float64) {
		if _, ok := s.goals[id]; !ok {
			s.goals[id] = v
		}
	}
	var last *drHit
	for _, h := range s.hits {
		switch h.t {
		case "pageview":
			page, path := drClean(h.path, h.phase == 2) // a hit's page is its own version's
			if n := len(s.pages); n > 0 {
				s.pages[n-1].measured, s.pages[n-1].secs = true, h.tm.Sub(last.tm).Seconds()
			}
			s.pages = append(s.pages, drPage{page: page})
			s.pageviews++
			last = h
			if path == "/welcome" {
				goal("signup", 5)
			}
			if path == "/admin/done" {
				goal("admin", 7) // never: the page rules drop the page first
			}
			if path == "/product/:id" {
				goal("product", 1)
			}
			if path == "/docs" && drRulesOf(h.phase == 2).docsGoal { // a hit's goals are its own version's
				goal("docs", 3)
			}
		case "event":
			s.events++
			if !h.ni {
				s.interaction = true
			}
			ev, _ := strconv.ParseFloat(h.ev, 64)
			ev = drRound(ev)
			if h.ec == "shop" && h.ea == "purchase" {
				goal("purchase", ev)
			}
			if h.ea == "lead" {
				goal("lead", 2.5)
			}
			if h.ec == "video" {
				goal("video", ev)
			}
			if h.ea == "free" {
				goal("free", 0) // a fixed value of 0 is a value
			}
		}
	}
	if n := len(s.pages); n > 0 {
		s.landing, s.exit = s.pages[0].page, s.pages[n-1].page
		if end := s.hits[len(s.hits)-1]; end != last {
			s.pages[n-1].measured, s.pages[n-1].secs = true, end.tm.Sub(last.tm).Seconds()
		}
	} else {
		s.landing = "(not set)"
	}
}

func drOr(v string) string {
	if v == "" {
		return "(not set)"
	}
	return v
}

func (s *drSession) bounce() bool { return s.pageviews == 1 && !s.interaction }

func (s *drSession) engaged() bool {
	return s.end.Sub(s.start) > 10*time.Second || s.pageviews >= 2 || len(s.goals) > 0
}

// acq is the acquisition rows of the sessions of [from, to] by key.
func (c *drCalc) acq(from, to string, key func(*drSession) string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	users := map[string]map[string]bool{}
	for _, s := range c.sessions {
		if s.day < from || s.day > to {
			continue
		}
		k := key(s)
		m := out[k]
		if m == nil {
			m = map[string]float64{}
			out[k], users[k] = m, map[string]bool{}
		}
		users[k][s.cid] = true
		m["users"] = float64(len(users[k]))
		m["sessions"]++
		if s.first {
			m["new_users"]++
		}
		if s.engaged() {
			m["engaged_sessions"]++
		}
		if s.bounce() {
			m["bounces"]++
		}
		m["duration"] += s.end.Sub(s.start).Seconds()
		m["pageviews"] += float64(s.pageviews)
		m["conversions"] += float64(len(s.goals))
		for _, v := range s.goals {
			m["goal_value"] = drRound(m["goal_value"] + v)
		}
	}
	for _, m := range out {
		m["bounce_rate"] = mpaDiv(m["bounces"], m["sessions"])
		m["avg_session_duration"] = mpaDiv(m["duration"], m["sessions"])
		m["pages_per_session"] = mpaDiv(m["pageviews"], m["sessions"])
		m["conversion_rate"] = mpaDiv(m["conversions"], m["sessions"])
		m["engagement_rate"] = mpaDiv(m["engaged_sessions"], m["sessions"])
	}
	return out
}

func (c *drCalc) pages(from, to string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	row := func(p string) map[string]float64 {
		if out[p] == nil {
			out[p] = map[string]float64{}
		}
		return out[p]
	}
	for _, s := range c.sessions {
		if s.day < from || s.day > to || len(s.pages) == 0 {
			continue
		}
		viewed := map[string]bool{}
		for _, p := range s.pages {
			m := row(p.page)
			m["pageviews"]++
			if !viewed[p.page] {
				viewed[p.page] = true
				m["unique_pageviews"]++
			}
			if p.measured {
				m["measured"]++
				m["time"] += p.secs
			}
		}
		row(s.landing)["entrances"]++
		row(s.exit)["exits"]++
		if s.bounce() {
			row(s.landing)["bounces"]++
		}
	}
	for _, m := range out {
		drPageRates(m)
	}
	return out
}

func drPageRates(m map[string]float64) {
	m["avg_time_on_page"] = mpaDiv(m["time"], m["measured"])
	m["exit_rate"] = mpaDiv(m["exits"], m["pageviews"])
	m["bounce_rate"] = mpaDiv(m["bounces"], m["entrances"])
}

// events is the events rows at a level (1 category, 2 + action, 3 + label).
func (c *drCalc) events(from, to string, level int) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, s := range c.sessions {
		if s.day < from || s.day > to {
			continue
		}
		seen := map[string]bool{}
		for _, h := range s.hits {
			if h.t != "event" {
				continue
			}
			parts := []string{drOr(h.ec), drOr(h.ea), drOr(h.el)}[:level]
			k := strings.Join(parts, "\x00")
			m := out[k]
			if m == nil {
				m = map[string]float64{}
				out[k] = m
			}
			m["total_events"]++
			v, _ := strconv.ParseFloat(h.ev, 64)
			m["event_value"] = drRound(m["event_value"] + drRound(v))
			if !seen[k] {
				seen[k] = true
				m["unique_events"]++
			}
		}
	}
	for _, m := range out {
		m["avg_event_value"] = mpaDiv(m["event_value"], m["total_events"])
	}
	return out
}

// drRound is docs/processing.md's rounding of values and sums to six
// decimals.
func drRound(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// The comparison.

type drCompare struct {
	t         *testing.T
	c         *mpaClient
	tok, prop string
	figures   int
	bad       int
}

func (d *drCompare) get(path string, q url.Values) reportAnswer {
	q.Set("property_id", d.prop)
	q.Set("limit", "10000")
	a, _ := d.c.report(d.tok, path, q)
	return a
}

func (d *drCompare) figure(name string, got any, want float64) {
	d.t.Helper()
	d.figures++
	g, ok := got.(float64)
	tol := 0.0005 + 1e-9*math.Abs(want)
	if strings.HasSuffix(name, " goal_value") || strings.HasSuffix(name, " event_value") {
		tol = 1e-9 // values and their sums are rounded to a millionth
	}
	if strings.HasSuffix(name, "avg_session_duration") || strings.HasSuffix(name, "avg_time_on_page") {
		// a browser hit's time is its receipt less its queue time: the
		// requests' own latencies move it by a few milliseconds
		tol = 0.05
	}
	if !ok || math.Abs(g-want) > tol {
		d.bad++
		d.t.Errorf("%s: got %v, calculated %v", name, got, want)
	}
}

// rows compares a report's rows (keyed by its dimensions joined with NUL)
// and totals with the calculated ones, for the metrics given.
func (d *drCompare) rows(name string, a reportAnswer, dims []string, want map[string]map[string]float64, metrics []string, skip func(key string) bool) {
	d.t.Helper()
	got := map[string]map[string]any{}
	for _, r := range a.Rows {
		var parts []string
		for _, dim := range dims {
			parts = append(parts, fmt.Sprint(r[dim]))
		}
		got[strings.Join(parts, "\x00")] = r
	}
	for k, w := range want {
		if skip != nil && skip(k) {
			continue
		}
		g, ok := got[k]
		if !ok {
			allZero := true
			for _, m := range metrics {
				allZero = allZero && w[m] == 0
			}
			if !allZero {
				d.bad++
				d.t.Errorf("%s: row %q missing; calculated %v", name, strings.ReplaceAll(k, "\x00", " / "), drPick(w, metrics))
			}
			continue
		}
		for _, m := range metrics {
			d.figure(fmt.Sprintf("%s %q %s", name, strings.ReplaceAll(k, "\x00", " / "), m), g[m], w[m])
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && (skip == nil || !skip(k)) {
			d.bad++
			d.t.Errorf("%s: row %q not calculated: %v", name, strings.ReplaceAll(k, "\x00", " / "), g)
		}
	}
}

// drFilteredIn adds up the excluded hits of the days from to to (byDay:
// day, reason, hits) by reason, as the filtered report's rows.
func drFilteredIn(byDay map[string]map[string]float64, from, to string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for day, reasons := range byDay {
		if day < from || day > to {
			continue
		}
		for reason, n := range reasons {
			if out[reason] == nil {
				out[reason] = map[string]float64{}
			}
			out[reason]["hits"] += n
		}
	}
	return out
}

func drPick(m map[string]float64, metrics []string) map[string]float64 {
	out := map[string]float64{}
	for _, k := range metrics {
		out[k] = m[k]
	}
	return out
}

func drSum(rows map[string]map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for _, r := range rows {
		for k, v := range r {
			out[k] += v
			if k == "event_value" || k == "goal_value" {
				out[k] = drRound(out[k])
			}
		}
	}
	return out
}

var drAcqMetrics = []string{"users", "new_users", "sessions", "engaged_sessions", "bounce_rate", "avg_session_duration", "pages_per_session", "conversions", "conversion_rate", "goal_value"}

func (d *drCompare) all(rg, from, to string, calc *drCalc) {
	d.t.Helper()
	q := func() url.Values { return url.Values{"from": {from}, "to": {to}} }
	// Acquisition: every named report and the overview.
	total := calc.acq(from, to, func(*drSession) string { return "" })
	if len(total) == 0 {
		total = map[string]map[string]float64{"": {}}
	}
	a := d.get("acquisition/overview", q())
	for _, m := range drAcqMetrics {
		d.figure(rg+" acquisition overview "+m, a.Totals[m], total[""][m])
	}
	unknown := func(k string) bool { return strings.Contains(k, "?") }
	hasUnknown := func(known map[string]bool) bool {
		for k := range known {
			if unknown(k) {
				return true
			}
		}
		return false
	}
	for _, r := range []struct {
		report string
		dims   []string
		key    func(*drSession) string
		skip   func(string) bool
	}{
		{"channel", []string{"channel"}, func(s *drSession) string { return s.channel }, nil},
		{"source", []string{"source"}, func(s *drSession) string { return s.source }, nil},
		{"medium", []string{"medium"}, func(s *drSession) string { return s.medium }, nil},
		{"source_medium", []string{"source", "medium"}, func(s *drSession) string { return s.source + "\x00" + s.medium }, nil},
		{"campaign", []string{"campaign"}, func(s *drSession) string { return s.campaign }, nil},
		{"referrer", []string{"referrer"}, func(s *drSession) string { return s.referrer }, nil},
		{"landing_page", []string{"landing_page"}, func(s *drSession) string { return s.landing }, nil},
		{"country", []string{"country"}, func(s *drSession) string { return s.country }, nil},
		{"device", []string{"device"}, func(s *drSession) string { return s.device[0] }, unknown},
		{"browser", []string{"browser"}, func(s *drSession) string { return s.device[1] }, unknown},
		{"os", []string{"os"}, func(s *drSession) string { return s.device[2] }, unknown},
		{"user_type", []string{"user_type"}, func(s *drSession) string {
			if s.first {
				return "new"
			}
			return "returning"
		}, nil},
	} {
		skip := r.skip
		if skip != nil {
			// the rows of sessions whose dimension the docs do not
			// name (a bot's browser) are compared only in the totals
			known := map[string]bool{}
			for k := range calc.acq(from, to, r.key) {
				known[k] = true
			}
			skip = func(k string) bool { return unknown(k) || !known[k] && hasUnknown(known) }
		}
		a := d.get("acquisition/"+r.report, q())
		d.rows(rg+" "+r.report, a, r.dims, calc.acq(from, to, r.key), drAcqMetrics, skip)
		for _, m := range drAcqMetrics {
			d.figure(rg+" "+r.report+" totals "+m, a.Totals[m], total[""][m])
		}
	}
	// Behavior.
	pages := calc.pages(from, to)
	pm := []string{"pageviews", "unique_pageviews", "avg_time_on_page", "entrances", "exits", "exit_rate", "bounce_rate"}
	pt := drSum(pages)
	drPageRates(pt)
	a = d.get("behavior/overview", q())
	for _, m := range pm {
		d.figure(rg+" behavior overview "+m, a.Totals[m], pt[m])
	}
	a = d.get("behavior/pages", q())
	d.rows(rg+" pages", a, []string{"page"}, pages, pm, nil)
	exits := map[string]map[string]float64{}
	for k, m := range pages {
		if m["exits"] > 0 {
			exits[k] = m
		}
	}
	a = d.get("behavior/exit_pages", q())
	d.rows(rg+" exit_pages", a, []string{"page"}, exits, []string{"exits", "pageviews", "exit_rate"}, nil)
	for _, m := range []string{"exits", "pageviews", "exit_rate"} {
		d.figure(rg+" exit_pages totals "+m, a.Totals[m], pt[m])
	}
	a = d.get("behavior/page_paths", q())
	d.figure(rg+" page_paths totals pageviews", a.Totals["pageviews"], pt["pageviews"])
	lm := []string{"sessions", "users", "new_users", "bounce_rate", "pages_per_session", "avg_session_duration", "conversions", "conversion_rate", "goal_value"}
	a = d.get("behavior/landing_pages", q())
	d.rows(rg+" landing_pages", a, []string{"landing_page"}, calc.acq(from, to, func(s *drSession) string { return s.landing }), lm, nil)
	em := []string{"total_events", "unique_events", "event_value", "avg_event_value"}
	for level, r := range []struct {
		report string
		dims   []string
	}{{"event_categories", []string{"event_category"}}, {"event_actions", []string{"event_category", "event_action"}}, {"events", []string{"event_category", "event_action", "event_label"}}} {
		want := calc.events(from, to, level+1)
		a = d.get("behavior/"+r.report, q())
		d.rows(rg+" "+r.report, a, r.dims, want, em, nil)
		tot := drSum(want)
		tot["avg_event_value"] = mpaDiv(tot["event_value"], tot["total_events"])
		for _, m := range []string{"total_events", "event_value", "avg_event_value"} {
			d.figure(rg+" "+r.report+" totals "+m, a.Totals[m], tot[m])
		}
	}
	// Filtered hits by reason.
	filtered := drFilteredIn(calc.filtered, from, to)
	a = d.get("behavior/filtered", q())
	d.rows(rg+" filtered", a, []string{"reason"}, filtered, []string{"hits"}, nil)
}

// hours compares today's sessions by local hour of their start.
func (d *drCompare) hours(today string, calc *drCalc, loc *time.Location) {
	d.t.Helper()
	want := calc.acq(today, today, func(s *drSession) string { return s.hour })
	a := d.get("acquisition/overview", url.Values{"range": {"today"}, "granularity": {"hour"}, "metrics": {"sessions,new_users,conversions"}})
	got := map[string]map[string]any{}
	for _, r := range a.Rows {
		got[fmt.Sprint(r["period"])] = r
	}
	for h, w := range want {
		for _, m := range []string{"sessions", "new_users", "conversions"} {
			d.figure("today by hour "+h+" "+m, got[h][m], w[m])
		}
	}
	for h, g := range got {
		if _, ok := want[h]; !ok && (num(g["sessions"]) != 0 || num(g["conversions"]) != 0) {
			d.bad++
			d.t.Errorf("today by hour: %s not calculated: %v", h, g)
		}
	}
}

// realtimeTop compares one of the realtime view's top lists (at most ten
// entries) with the calculated one, when that has no more than ten.
func (d *drCompare) realtimeTop(name string, got, want map[string]float64) {
	d.t.Helper()
	if len(want) > 10 {
		return
	}
	for k, v := range want {
		d.figure("realtime "+name+" "+k, got[k], v)
	}
	if len(got) != len(want) {
		d.bad++
		d.t.Errorf("realtime %s %v, calculated %v", name, got, want)
	}
}

// realtime compares the realtime view, unless a minute turned while it was
// read (the view's windows are UTC minutes).
func (d *drCompare) realtime(calc *drCalc) {
	d.t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		before := time.Now()
		var rt realtimeView
		d.c.do("GET", "/v1/reports/realtime?property_id="+d.prop, d.tok, nil, http.StatusOK, &rt)
		after := time.Now()
		if before.Truncate(time.Minute) != after.Truncate(time.Minute) {
			continue
		}
		cur := before.UTC().Truncate(time.Minute)
		in := func(h *drHit, n int) bool {
			m := h.tm.UTC().Truncate(time.Minute)
			return !m.After(cur) && cur.Sub(m) < time.Duration(n)*time.Minute
		}
		a5, a30 := map[string]bool{}, map[string]bool{}
		pv := 0.0
		pages, sources := map[string]float64{}, map[string]float64{}
		for _, s := range calc.sessions {
			for _, h := range s.hits {
				if in(h, 5) {
					a5[h.v.cid] = true
				}
				if in(h, 30) {
					a30[h.v.cid] = true
					if h.t == "pageview" {
						pv++
						page, _ := drClean(h.path, h.phase == 2)
						pages[page]++
						sources[s.source]++
					}
				}
			}
		}
		d.figure("realtime active_users_5m", rt.Active5, float64(len(a5)))
		d.figure("realtime active_users_30m", rt.Active30, float64(len(a30)))
		d.figure("realtime pageviews", rt.Pageviews, pv)
		gotPages := map[string]float64{}
		for _, p := range rt.TopPages {
			gotPages[p.Page] = p.Pageviews
		}
		gotSources := map[string]float64{}
		for _, s := range rt.TopSources {
			gotSources[s.Source] = s.Pageviews
		}
		d.realtimeTop("top_pages", gotPages, pages)
		d.realtimeTop("top_sources", gotSources, sources)
		return
	}
	d.t.Errorf("realtime: a minute turned during every read")
}

// drReprocess checks reprocessing (docs/processing.md, "Reprocessing") of
// a closed day. Only days that ended at least a day ago are reprocessed and
// collection takes hits at most 4 hours old, so no day a drill's hits fall
// on can close within the drill: the closed day's hits are put in the hits
// topic as collection would have queued them then (received then, stamped
// with version 1 of the rules, the rule an address matched named, the
// address truncated), and live processing derives them as any hit. Then
// the day is reprocessed with today's rules, and with the rules of the time.
func drReprocess(t *testing.T, stack *localstack.Stack, cfg localstack.Config, cmp *drCompare, p mpaProperty, loc *time.Location, versions []int) {
	t.Helper()
	if len(versions) != 2 || versions[0] == 0 {
		t.Fatalf("rules versions %v", versions)
	}
	day := time.Now().In(loc).AddDate(0, 0, -3)
	anchor := time.Date(day.Year(), day.Month(), day.Day(), 10, 0, 30, 0, loc)
	d3 := day.Format(time.DateOnly)
	chrome := func(cid, ip string) *drVisitor {
		return &drVisitor{cid: cid, ua: drChrome, ip: ip, device: [3]string{"desktop", "Chrome", "Windows"}}
	}
	one := func(v *drVisitor, hits ...drHit) drReq { return drReq{v: v, phase: 1, hits: hits} }
	gclid := drPV(min_(40), "/landing?gclid=r1", "")
	seeded := []drReq{
		one(chrome("rp-ip-1", "198.51.100.16"), drPV(min_(1), "/", "")),         // a rule of both versions, by name
		one(chrome("rp-ip-2", "198.51.100.20"), drPV(min_(2), "/", "")),         // today's /32 cannot match a /24-truncated address
		one(chrome("rp-ip-3", "2001:db8:1::5"), drPV(min_(3), "/", "")),         // the /48 rule, by name and by the stored /48
		one(chrome("rp-ip-4", "2001:db8:1:2::9"), drPV(min_(3.5), "/shop", "")), // likewise
		one(&drVisitor{cid: "rp-ua-1", ua: "ProbeTwo/1 " + drChrome, ip: "192.0.2.140", device: [3]string{"desktop", "ProbeTwo", "Windows"}}, drPV(min_(4), "/", "")),
		one(&drVisitor{cid: "rp-bot-1", ua: drGoogbot, ip: "192.0.2.141", device: [3]string{"other", "Googlebot", "(not set)"}}, drPV(min_(5), "/shop", "")),
		one(chrome("rp-pg-1", "192.0.2.142"), drPV(min_(6), "/shop", ""), drPV(min_(7), "/Thanks", "")),
		one(chrome("rp-goal-1", "192.0.2.143"), drPV(min_(8), "/docs/", ""), drEv(min_(9), "shop", "purchase", "", "15")),
		one(chrome("rp-ref-1", "192.0.2.144"), drPV(min_(10), "/blog/x", "https://partner-blog.example/post")),
		one(chrome("rp-ref-2", "192.0.2.145"), drPV(min_(11), "/blog/x", "https://shop2.example/page")),
		one(chrome("rp-to-1", "192.0.2.146"), drPV(min_(20), "/shop", ""), drPV(min_(32), "/checkout", "")),
		one(chrome("rp-ch-1", "192.0.2.147"), gclid),
		one(chrome("rp-ch-2", "192.0.2.148"), drPV(min_(50), "/landing?utm_source=news&utm_medium=email&utm_campaign=news-r", "https://www.paypal.com/")),
		one(chrome("rp-host-1", "192.0.2.149"), func() drHit { h := drPV(min_(55), "/shop", ""); h.host = "legacy.example"; return h }()),
	}
	drSeed(t, cfg, p, anchor, versions[0], seeded)
	waitForProcessing(t, cfg, 90*time.Second)
	historical := drCalculate(seeded, anchor, loc)
	cmp.all("closed day, live", d3, d3, historical)

	current := make([]drReq, len(seeded))
	for i, r := range seeded {
		r.phase, r.current = 2, true
		current[i] = r
	}
	// legacy.example, a hostname of version 1, is none of today's: its
	// hits are foreign under today's rules (docs/config.md, "Hostnames").
	op := &rpOperator{t: t, stack: stack, cfg: cfg}
	job := func(rules string) string {
		return fmt.Sprintf(`{"property_id":%q,"from":%q,"to":%q,"rules":%q}`, p.ID, d3, d3, rules)
	}
	op.wait(p.ID, op.start(job("current")), 1)
	cur := drCalculate(current, anchor, loc)
	t.Logf("closed day: filtered under the rules of the time %v, under today's %v; sessions %d and %d", historical.filtered, cur.filtered, len(historical.sessions), len(cur.sessions))
	cmp.all("closed day, today's rules", d3, d3, cur)
	op.wait(p.ID, op.start(job("historical")), 1)
	cmp.all("closed day, the rules of the time", d3, d3, historical)
}

// drSeed puts hits in the hits topic as collection would have queued them
// when they happened: received a second after their time, stamped with the
// rules version, the IP rule of that version an address matched, the
// address truncated (standard: /24, /48), the bot flag of a crawler.
func drSeed(t *testing.T, cfg localstack.Config, p mpaProperty, anchor time.Time, version int, reqs []drReq) {
	t.Helper()
	kcfg := &kafka.Config{Brokers: "127.0.0.1:" + strconv.Itoa(cfg.KafkaPort)}
	prod, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	v1 := drRulesOf(false)
	for _, r := range reqs {
		for _, dh := range r.hits {
			host := dh.host
			if host == "" {
				host = "shop.example"
			}
			u, _ := url.Parse("https://" + host + dh.path)
			tm := anchor.Add(dh.at)
			ip := netip.MustParseAddr(r.v.ip)
			stored := netip.PrefixFrom(ip, 24)
			if ip.Is6() {
				stored = netip.PrefixFrom(ip, 48)
			}
			h := &hit.Hit{PropertyID: p.ID, TrackingID: p.TrackingID, ClientID: r.v.cid, Type: hit.Type(dh.t), Origin: hit.OriginBrowser,
				Time: tm, ReceivedAt: tm.Add(time.Second), URL: u.String(), Hostname: u.Host, Path: u.RequestURI(), Referrer: dh.ref,
				Category: dh.ec, Action: dh.ea, Label: dh.el, UserAgent: r.v.ua, IP: stored.Masked().Addr().String(),
				DeviceCategory: r.v.device[0], Browser: r.v.device[1], RuleVersion: version,
				Bot: strings.Contains(r.v.ua, "Googlebot")}
			if r.v.device[2] != "(not set)" {
				h.OS = r.v.device[2]
			}
			if h.Bot {
				h.BotName = "Googlebot"
			}
			if dh.ev != "" {
				h.Value, _ = strconv.ParseFloat(dh.ev, 64)
				h.HasValue = true
			}
			for i, pr := range v1.ips {
				if pr.Contains(ip) {
					h.IPExcludedBy = []string{"198.51.100.16/30", "203.0.113.7", "2001:db8:1::/48"}[i] // as written
				}
			}
			h.ID = h.DeriveID(dh.hid)
			enc, err := hit.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(h.Key(1)),
				Value: sarama.ByteEncoder(hit.AppendRecord(nil, [][]byte{enc}))}); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
	}
}

// drValidate checks docs/config.md's validation of a rule document, case by
// case, through POST .../rules/validate: what it refuses (400
// invalid_field, the field's path and, where the docs give it, the fix in
// the message) and what it accepts.
func drValidate(t *testing.T, c *mpaClient, tok, pid string) {
	t.Helper()
	for _, v := range []struct {
		doc, field, hint string // field "" : accepted
	}{
		{`{"exclusions": {"ip": ["10.1.2.3/8"]}}`, "exclusions.ip[0]", `"10.0.0.0/8"`},
		{`{"exclusions": {"ip": ["10.0.0.0/7"]}}`, "exclusions.ip[0]", ""},
		{`{"exclusions": {"ip": ["2001:db8::/15"]}}`, "exclusions.ip[0]", ""},
		{`{"exclusions": {"ip": ["::ffff:10.0.0.1"]}}`, "exclusions.ip[0]", `"10.0.0.1"`},
		{`{"exclusions": {"ip": ["10.0.0.1", "10.0.0.1"]}}`, "exclusions.ip[1]", ""},
		{`{"exclusions": {"ip": ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32"]}}`, "", ""},
		{`{"exclusions": {"user_agents": ["bot|"]}}`, "exclusions.user_agents[0]", ""},
		{`{"exclusions": {"user_agents": [".*"]}}`, "exclusions.user_agents[0]", ""},
		{`{"exclusions": {"countries": ["de"]}}`, "exclusions.countries[0]", `DE`},
		{`{"exclusions": {"countries": ["Germany"]}}`, "exclusions.countries[0]", ""},
		{`{"exclusions": {"countries": ["XK"]}}`, "", ""},
		{`{"page_path": {"keep_params": ["id"]}}`, "page_path.keep_params", ""},
		{`{"page_path": {"strip_query": true, "keep_params": ["a=b"]}}`, "page_path.keep_params[0]", ""},
		{`{"page_path": {"replacements": [{"pattern": "^/p/(\\d+)", "replace": "/x/$1x"}]}}`, "page_path.replacements[0].replace", ""},
		{`{"page_path": {"replacements": [{"pattern": "^/p/(\\d+)", "replace": "/x/${2}"}]}}`, "page_path.replacements[0].replace", ""},
		{`{"page_path": {"replacements": [{"pattern": "^/p/(\\d+)", "replace": "/x/${1}"}]}}`, "", ""},
		{`{"page_path": {"default_page": "a/b"}}`, "page_path.default_page", ""},
		{`{"page_path": {"default_page": ".."}}`, "page_path.default_page", ""},
		{`{"pages": {"exclude": ["^/café$"]}}`, "pages.exclude[0]", "%C3%A9"},
		{`{"pages": {"exclude": ["^/caf%c3%a9$"]}}`, "pages.exclude[0]", ""},
		{`{"pages": {"exclude": ["(?i)^/caf%c3%a9$"]}}`, "", ""},
		{`{"pages": {"exclude": ["^/a\\?b"]}}`, "pages.exclude[0]", ""},
		{`{"page_path": {"lowercase": true}, "pages": {"exclude": ["^/Admin"]}}`, "pages.exclude[0]", ""},
		{`{"page_path": {"lowercase": true}, "pages": {"exclude": ["^/admin[^A]"]}}`, "", ""},
		{`{"pages": {"include": ["^/a", "^/a"]}}`, "pages.include[1]", ""},
		{`{"session_timeout_minutes": 0}`, "session_timeout_minutes", ""},
		{`{"session_timeout_minutes": 481}`, "session_timeout_minutes", ""},
		{`{"session_timeout_minutes": 480}`, "", ""},
		{`{"session_timeout_minutes": 1}`, "", ""},
		{`{"referral_exclusions": ["com"]}`, "referral_exclusions[0]", ""},
		{`{"referral_exclusions": ["localhost"]}`, "", ""},
		{`{"referral_exclusions": ["paypal.com", "www.paypal.com"]}`, "referral_exclusions[1]", ""},
		{`{"referral_exclusions": ["https://paypal.com/"]}`, "referral_exclusions[0]", ""},
		{`{"referral_exclusions": ["paypal.com:443"]}`, "referral_exclusions[0]", ""},
		{`{"referral_exclusions": ["*.paypal.com"]}`, "referral_exclusions[0]", ""},
		{`{"goals": [{"id": "Sign Up", "name": "x", "page_path": "^/a$"}]}`, "goals[0].id", ""},
		{`{"goals": [{"id": "a", "name": "x", "page_path": "^/a$", "value": 1000000001}]}`, "goals[0].value", ""},
		{`{"goals": [{"id": "a", "name": "x", "page_path": "^/a$", "value": -1}]}`, "goals[0].value", ""},
		{`{"goals": [{"id": "a", "name": "x", "page_path": "^/a$", "value": 1000000000}]}`, "", ""},
		{`{"goals": [{"id": "a", "name": "x", "page_path": "^/a$", "event": {"action": "b"}}]}`, "goals[0]", ""},
		{`{"goals": [{"id": "a", "name": "x"}]}`, "goals[0]", ""},
		{`{"goals": [{"id": "a", "name": "x", "event": {}}]}`, "goals[0].event", ""},
		{`{"goals": [{"id": "a", "name": "x", "page_path": "^/a$"}, {"id": "a", "name": "y", "page_path": "^/b$"}]}`, "goals[1].id", ""},
		{`{"goals": [{"id": "a", "name": "two\nlines", "page_path": "^/a$"}]}`, "goals[0].name", ""},
		{`{"goals": [{"id": "a", "page_path": "^/a$"}]}`, "goals[0].name", ""},
		{`{"channels": [{"name": "X"}]}`, "channels[0]", ""},
		{`{"channels": [{"name": "X", "source": "^a$", "medium": "^b$", "campaign": "^c$"}]}`, "", ""},
		{`{"Goals": []}`, "Goals", ""},
	} {
		code, body := c.send("POST", "/v1/properties/"+pid+"/rules/validate", tok, []byte(v.doc))
		var e struct {
			Error struct{ Code, Field, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		switch {
		case v.field == "" && code != http.StatusOK:
			t.Errorf("validate %s: %d %s, documented as valid", v.doc, code, body)
		case v.field != "" && (code != http.StatusBadRequest || e.Error.Field != v.field || !strings.Contains(e.Error.Message, v.hint)):
			t.Errorf("validate %s: %d %s, documented as refused (field %s%s)", v.doc, code, body, v.field, map[bool]string{true: ", naming " + v.hint}[v.hint != ""])
		}
	}
}
