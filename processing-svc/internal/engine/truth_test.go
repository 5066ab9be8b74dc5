package engine

// A ground-truth audit of the acquisition and behavior numbers, written
// from the design brief's definitions (/work/shared/DESIGN.md, "Sessions,
// channels and users") and docs/processing.md where the brief is silent,
// not from the session, derive, attribution or rules packages, nor from the
// oracle of oracle_test.go (nothing of it is called here).
//
// Where TestOracleRollups draws random traffic in two zones, this test
// plays hand-made adversarial visitors (each named for the definition it
// attacks) in zones far from UTC (Pacific/Kiritimati, UTC+14;
// America/St_Johns, UTC-3:30, on its fall-back night), with bot filtering
// on and off, and compares with the calculator:
//   - every rollup_daily row of every report the engine writes, including
//     country, device, browser and os (which the random oracle leaves out),
//     with its users counted from the stored sketch;
//   - rollup_hourly and filtered_hits;
//   - report-level numbers over date ranges, merged the way docs/reports.md
//     says a report merges rows (sums over days, users from the union of
//     the days' sketches): users over several days counted once, a user
//     whose first visit was before the range not new in it.
//
// TestGroundTruthRandom does the same with random visitors over a week
// (truthVisitors), drawn from the kinds of hit the hand-made ones attack.
// It ran clean for 30 seeds in each zone, live and reprocessed, when
// written (session 35); three run in `make unit`.

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/sketch"
)

// ---------------------------------------------------------------------------
// Traffic: one property, hostname shop.example, referral exclusion
// pay.example, goals /thanks (worth 5) and the event shop/purchase (worth
// its value), exclusions by IP, user agent, country, host and page.

// trHit describes a hit in the property's local wall time of day d (0..3)
// of the run, or at an absolute instant (at).
type trHit struct {
	day              int
	clock            string // "15:04:05" or "15:04:05.000"
	at               time.Time
	typ              hit.Type
	page             string // path and query on shop.example
	host             string // page host when not shop.example
	ref              string
	cat, act, label  string
	value            float64
	nonInteraction   bool
	params           map[string]string
	late             time.Duration // received this long after its time
	eventID          string        // client event ID; "" = derived from the position
	resend           time.Duration // re-sent (same event ID) this long after it was first received
	resendShift      time.Duration // the re-send's time differs by this much (a different queue time)
	bot              bool
	ua, country, ipx string
	device, browser  string
}

type trVisitor struct {
	client string
	what   string // the definition it attacks
	hits   []trHit
}

func pv(day int, clock, page, ref string) trHit {
	return trHit{day: day, clock: clock, typ: hit.TypePageview, page: page, ref: ref}
}

func ev(day int, clock, cat, act, label string) trHit {
	return trHit{day: day, clock: clock, typ: hit.TypeEvent, page: "/", cat: cat, act: act, label: label}
}

func ping(day int, clock string) trHit {
	return trHit{day: day, clock: clock, typ: hit.TypeEngagement, page: "/"}
}

func with(h trHit, f func(*trHit)) trHit { f(&h); return h }

const (
	trUTM     = "utm_source=news&utm_medium=email&utm_campaign="
	trGoogle  = "https://www.google.com/"
	trFB      = "https://www.facebook.com/groups/1"
	trNews    = "https://news.example/a?x=1"
	trOwn     = "https://www.shop.example/old"
	trOwnSub  = "https://blog.shop.example/x"
	trPay     = "https://pay.example/return"
	trPaySub  = "https://secure.pay.example/ok"
	trLookLik = "https://shop.example.evil.test/x"
)

func trVisitors(loc *time.Location) []trVisitor {
	// The first run day is local day 0; St John's falls back on day 2
	// (1 November 2026, 02:00 NDT -> 01:00 NST).
	fallBack := func(clock string, dst bool) time.Time {
		t, _ := time.Parse("15:04", clock)
		off := -150 * time.Minute // NDT
		if !dst {
			off = -210 * time.Minute // NST
		}
		return time.Date(2026, 11, 1, t.Hour(), t.Minute(), 0, 0, time.UTC).Add(-off)
	}
	return []trVisitor{
		{"gap-30m00", "a gap of exactly 30:00 continues, 30:01 splits", []trHit{
			pv(0, "10:00:00", "/", ""), pv(0, "10:30:00", "/products", ""), pv(0, "11:00:01", "/cart", "")}},
		{"gap-30m00-001", "a gap of 30:00.001 splits", []trHit{
			pv(0, "10:00:00", "/", trNews), pv(0, "10:30:00.001", "/products", trOwn)}},
		{"midnight", "local midnight ends a session; a ping after it is in no session", []trHit{
			pv(0, "23:50:00", "/", trGoogle), pv(1, "00:05:00", "/products", trOwn), ping(1, "00:10:00"),
			pv(1, "23:59:59.999", "/a", ""), ping(2, "00:00:00"), pv(2, "00:00:00", "/b", "")}},
		{"campaign-change", "a new campaign splits; no campaign and utm_term do not", []trHit{
			pv(0, "12:00:00", "/?"+trUTM+"a", ""), pv(0, "12:05:00", "/products", trOwn),
			pv(0, "12:10:00", "/?"+trUTM+"b", ""), pv(0, "12:15:00", "/x?"+trUTM+"b&utm_term=z", ""),
			pv(0, "12:20:00", "/y", trGoogle)}},
		{"no-carry-over", "a session after a campaign session, without tags, is Direct", []trHit{
			pv(0, "10:00:00", "/?"+trUTM+"a", ""), pv(0, "11:00:00", "/", ""), pv(1, "11:00:00", "/", trOwnSub)}},
		{"gclid-vs-utm", "gclid beats utm (campaign name kept); a new gclid splits", []trHit{
			pv(0, "13:00:00", "/?gclid=G1&"+trUTM+"c", trGoogle), pv(0, "13:05:00", "/p?gclid=G2", trGoogle),
			pv(0, "13:06:00", "/p?msclkid=M1", "https://www.bing.com/")}},
		{"ios-click-ids", "gbraid and wbraid are google / cpc as gclid is, gclid first; a new one splits; never part of the page", []trHit{
			pv(0, "16:00:00", "/landing?gbraid=B1", ""), pv(0, "16:02:00", "/landing?gbraid=B1", trOwn),
			pv(0, "16:04:00", "/p?wbraid=W1&"+trUTM+"ios", ""), pv(0, "16:06:00", "/p?gclid=G3&wbraid=W1", trOwn),
			pv(0, "16:08:00", "/q?gclid=G3", trOwn), pv(0, "16:10:00", "/q?GBRAID=X&id=2", trOwn)}},
		{"own-host-start", "own host and exclusions never set attribution nor start a session", []trHit{
			pv(0, "09:00:00", "/", trOwn), pv(0, "09:40:00", "/", trOwnSub), pv(0, "09:45:00", "/a", trPay),
			pv(0, "10:30:00", "/b", trPaySub), pv(0, "10:31:00", "/c", trLookLik)}},
		{"exclusion-mid", "an excluded referrer mid-session keeps the session's google attribution", []trHit{
			pv(0, "14:00:00", "/", trGoogle), pv(0, "14:10:00", "/thanks", trPay), pv(0, "14:12:00", "/thanks", trNews)}},
		{"referral-mid", "a new external referrer mid-session does not split", []trHit{
			pv(0, "15:00:00", "/", trFB), pv(0, "15:05:00", "/a", trNews)}},
		{"returning", "first visit on day 0, back on day 2: returning", []trHit{
			pv(0, "08:00:00", "/", ""), pv(2, "08:00:00", "/products", trGoogle)}},
		{"every-day", "a user on all four days is one user over the range", []trHit{
			pv(0, "18:00:00", "/", ""), pv(1, "18:00:00", "/", ""), pv(2, "18:00:00", "/", ""), pv(3, "18:00:00", "/", "")}},
		{"late-first", "a late hit becomes the session's first and takes over attribution", []trHit{
			pv(1, "16:00:00", "/a", trOwn), pv(1, "16:20:00", "/b", trOwn),
			with(pv(1, "15:45:00", "/?"+trUTM+"late", ""), func(h *trHit) { h.late = 3*time.Hour + 50*time.Minute }),
			with(ev(1, "16:10:00", "video", "play", "intro"), func(h *trHit) { h.late = 2 * time.Hour })}},
		{"late-bridge", "a late hit 30:00 from both sides merges two sessions", []trHit{
			pv(1, "10:00:00", "/", trNews), pv(1, "11:00:00", "/b", ""),
			with(pv(1, "10:30:00", "/a", ""), func(h *trHit) { h.late = 4 * time.Hour })}},
		{"late-split", "a late hit with a new campaign splits a session in two", []trHit{
			pv(1, "12:00:00", "/", ""), pv(1, "12:20:00", "/b", ""),
			with(pv(1, "12:10:00", "/?"+trUTM+"split", ""), func(h *trHit) { h.late = time.Hour })}},
		{"late-new-user-day", "a late hit on day 0 makes day 0 the user's first", []trHit{
			pv(1, "00:30:00", "/", trGoogle),
			with(pv(0, "22:00:00", "/early", trNews), func(h *trHit) { h.late = 3 * time.Hour })}},
		{"duplicates", "a re-sent event ID counts once, with the same or a different time", []trHit{
			with(pv(0, "17:00:00", "/", ""), func(h *trHit) { h.resend = time.Minute }),
			with(pv(0, "17:01:00", "/a", ""), func(h *trHit) { h.resend = 20 * time.Minute; h.resendShift = 3 * time.Second }),
			with(ev(0, "17:02:00", "shop", "purchase", "order"), func(h *trHit) { h.value = 20.5; h.resend = 2 * time.Hour }),
			// Re-sent two hours later without a queue time: dated when
			// received, it would start a session of its own.
			with(pv(0, "17:03:00", "/b", ""), func(h *trHit) { h.resend = 2 * time.Hour; h.resendShift = 2*time.Hour + 500*time.Millisecond })}},
		{"ping-only", "engagement pings alone are no session and no user", []trHit{
			ping(0, "05:00:00"), ping(0, "05:00:30")}},
		{"same-instant", "a pageview and an event at the same millisecond, a non-interaction event with a campaign first", []trHit{
			with(ev(3, "20:00:00", "video", "progress", "10%"), func(h *trHit) { h.nonInteraction = true; h.page = "/?" + trUTM + "ni" }),
			pv(3, "20:00:05", "/w", ""), ev(3, "20:00:05", "ui", "click", "")}},
		{"bot", "a known crawler: filtered when the switch is on", []trHit{
			with(pv(0, "06:00:00", "/", trGoogle), func(h *trHit) { h.bot = true }),
			with(pv(0, "06:01:00", "/a", ""), func(h *trHit) { h.bot = true })}},
		{"excluded", "each exclusion rule drops its hit, which then neither extends nor starts a session", []trHit{
			pv(0, "10:00:00", "/", ""),
			with(pv(0, "10:20:00", "/a", ""), func(h *trHit) { h.ipx = "198.51.100.0/24" }),
			with(pv(0, "10:21:00", "/b", ""), func(h *trHit) { h.ua = "Mozilla/5.0 InternalMonitor/1.0" }),
			with(pv(0, "10:22:00", "/c", ""), func(h *trHit) { h.country = "AQ" }),
			with(pv(0, "10:23:00", "/d", ""), func(h *trHit) { h.host = "evil.example" }),
			pv(0, "10:25:00", "/admin/users", ""),
			with(pv(0, "10:26:00", "/admin/x", ""), func(h *trHit) { h.bot = true }),
			pv(0, "10:50:00", "/e", "")}},
		{"events-only", "a session of events only: no landing page, no bounce", []trHit{
			ev(0, "11:00:00", "video", "play", ""),
			with(ev(0, "11:00:05", "", "scroll", "75%"), func(h *trHit) { h.nonInteraction = true; h.value = 0.1 })}},
		{"pv-ping", "one pageview and a ping: a bounce, engaged, time on page measured", []trHit{
			pv(0, "12:00:00", "/", ""), ping(0, "12:00:45")}},
		{"pv-ping-short", "one pageview and a ping 10 s later: a bounce, not engaged", []trHit{
			pv(0, "12:00:00", "/", ""), ping(0, "12:00:10")}},
		{"pv-noninteraction", "one pageview and a non-interaction event: a bounce", []trHit{
			pv(0, "12:00:00", "/", ""), with(ev(0, "12:00:03", "ui", "scroll", ""), func(h *trHit) { h.nonInteraction = true })}},
		{"pv-click", "one pageview and a click: no bounce", []trHit{
			pv(0, "12:00:00", "/", ""), ev(0, "12:00:03", "ui", "click", "")}},
		{"ping-bridge", "a ping keeps a session alive; a ping past the timeout is ignored", []trHit{
			pv(0, "19:00:00", "/", ""), ping(0, "19:25:00"), pv(0, "19:50:00", "/a", ""), ping(0, "20:21:00")}},
		{"goals", "each goal once per session, with its first value; a conversion makes the session engaged", []trHit{
			pv(0, "20:00:00", "/thanks", ""), pv(0, "20:00:01", "/thanks", ""),
			with(ev(0, "20:00:02", "shop", "purchase", "order"), func(h *trHit) { h.value = 20.5 }),
			with(ev(0, "20:00:03", "shop", "purchase", "order"), func(h *trHit) { h.value = 30 })}},
		{"goal-event-only", "an events-only session with a conversion: engaged at 0 s", []trHit{
			with(ev(1, "20:00:00", "shop", "purchase", ""), func(h *trHit) { h.value = 7 })}},
		{"campaign-params", "a campaign sent apart (cs/cm, campaign_*) counts as utm tags", []trHit{
			with(pv(0, "21:00:00", "/", ""), func(h *trHit) {
				h.params = map[string]string{hit.ParamCampaignSource: "partner", hit.ParamCampaignMedium: "affiliate"}
			}),
			with(pv(0, "21:05:00", "/a", ""), func(h *trHit) {
				h.params = map[string]string{hit.ParamCampaignSource: "partner", hit.ParamCampaignMedium: "affiliate"}
			}),
			with(pv(0, "21:10:00", "/b?"+trUTM+"x", ""), func(h *trHit) {
				h.params = map[string]string{hit.ParamCampaignSource: "partner", hit.ParamCampaignMedium: "affiliate"}
			}),
			with(pv(0, "21:15:00", "/c", ""), func(h *trHit) { h.params = map[string]string{hit.ParamGCLID: "G9"} })}},
		{"enrichment", "country, device and browser are the session's first hit's", []trHit{
			with(pv(0, "07:00:00", "/", ""), func(h *trHit) { h.country, h.device, h.browser = "NZ", "mobile", "Safari" }),
			with(pv(0, "07:01:00", "/a", ""), func(h *trHit) { h.country, h.device, h.browser = "FR", "desktop", "Chrome" })}},
		{"fall-back", "St John's repeated hour: 01:50 NDT and 01:10 NST are 20 minutes apart", []trHit{
			{at: fallBack("01:50", true), typ: hit.TypePageview, page: "/dst"},
			{at: fallBack("01:10", false), typ: hit.TypePageview, page: "/dst2"},
			{at: fallBack("01:35", false), typ: hit.TypePageview, page: "/dst3", ref: trNews}}},
		{"event-dims", "events by category, action and label; (not set) parts", []trHit{
			pv(3, "09:00:00", "/v", ""),
			with(ev(3, "09:00:10", "video", "play", "intro"), func(h *trHit) { h.value = 1.5 }),
			with(ev(3, "09:00:20", "video", "play", "intro"), func(h *trHit) { h.value = 1e-7 }),
			ev(3, "09:00:30", "video", "play", ""), ev(3, "09:00:40", "", "signup", "")}},
	}
}

// trProperty is the property under test.
func trProperty(t *testing.T, loc *time.Location, botFiltering bool) *Property {
	t.Helper()
	r := rules.Defaults()
	r.BotFiltering = botFiltering
	r.ReferralExclusions = []string{"pay.example"}
	r.Exclusions = rules.Exclusions{IP: []string{"198.51.100.0/24"}, UserAgents: []string{"InternalMonitor"}, Countries: []string{"AQ"}}
	r.Pages.Exclude = []string{"^/admin"}
	five := 5.0
	r.Goals = []rules.Goal{
		{ID: "thanks", Name: "Thanks", PagePath: "^/thanks$", Value: &five},
		{ID: "purchase", Name: "Purchase", Event: &rules.EventMatch{Category: "shop", Action: "purchase"}},
	}
	c, err := rules.Compile(r, 1, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	return &Property{ID: propID, TenantID: "t", Location: loc, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c }}
}

// trBuild turns the visitors into hits as sent, re-sends included.
func trBuild(t *testing.T, loc *time.Location, day0 time.Time, vs []trVisitor) []*hit.Hit {
	var out []*hit.Hit
	for _, v := range vs {
		for i, x := range v.hits {
			at := x.at
			if at.IsZero() {
				c, err := time.Parse("15:04:05.000", x.clock)
				if err != nil {
					c, err = time.Parse("15:04:05", x.clock)
				}
				if err != nil {
					t.Fatal(err)
				}
				y, m, d := day0.AddDate(0, 0, x.day).Date()
				at = time.Date(y, m, d, c.Hour(), c.Minute(), c.Second(), c.Nanosecond(), loc)
			}
			host := cmp.Or(x.host, "shop.example")
			h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: v.client, Type: x.typ,
				Origin: hit.OriginBrowser, Time: at, ReceivedAt: at.Add(500*time.Millisecond + x.late),
				URL: "https://" + host + x.page, Hostname: host, Path: x.page, Referrer: x.ref,
				Category: x.cat, Action: x.act, Label: x.label, Value: x.value, HasValue: x.value != 0,
				Country: cmp.Or(x.country, "DE"), DeviceCategory: cmp.Or(x.device, "desktop"), Browser: cmp.Or(x.browser, "Firefox"),
				OS: "Linux", UserAgent: cmp.Or(x.ua, "Mozilla/5.0 Firefox/140.0"), Bot: x.bot, IPExcludedBy: x.ipx, RuleVersion: 1}
			if x.nonInteraction || x.params != nil {
				h.Params = map[string]string{}
				for k, v := range x.params {
					h.Params[k] = v
				}
				if x.nonInteraction {
					h.Params["non_interaction"] = "1"
				}
			}
			if x.typ == hit.TypeEngagement {
				h.EngagementMS = 1000
			}
			h.ID = h.DeriveID(cmp.Or(x.eventID, fmt.Sprintf("%s-%d", v.client, i)))
			out = append(out, h)
			if x.resend > 0 {
				again := *h
				again.ReceivedAt = h.ReceivedAt.Add(x.resend)
				again.Time = h.Time.Add(x.resendShift)
				out = append(out, &again)
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The calculator, from the definitions.

type tcSession struct {
	client                       string
	hits                         []*hit.Hit
	campaign                     tcCampaign
	day                          time.Time // local date, as midnight UTC
	hour                         int
	first                        bool
	source, medium, camp         string
	channel, referrer            string
	landing, exit                string
	country, device, browser, os string
	pageviews, events            int64
	bounce, engaged              bool
	durationMS                   int64
	conversions                  int64
	convValue                    float64
}

// tcCampaign: utm_source, utm_medium, utm_campaign, the Google click ID
// (gclid, else gbraid, else wbraid), msclkid.
type tcCampaign [5]string

func tcDay(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// tcCampaignOf reads the tags of the page URL, then lets those sent apart
// override them field by field.
func tcCampaignOf(h *hit.Hit) tcCampaign {
	var c tcCampaign
	if u, err := url.Parse(h.URL); err == nil {
		q := u.Query()
		for i, k := range []string{"utm_source", "utm_medium", "utm_campaign", "gclid", "msclkid"} {
			c[i] = strings.TrimSpace(q.Get(k))
		}
		if c[3] == "" {
			c[3] = strings.TrimSpace(q.Get("gbraid"))
		}
		if c[3] == "" {
			c[3] = strings.TrimSpace(q.Get("wbraid"))
		}
	}
	for i, k := range []string{"campaign_source", "campaign_medium", "campaign_name", "gclid"} {
		j := i
		if k == "gclid" {
			j = 3
		}
		if v := strings.TrimSpace(h.Params[k]); v != "" {
			c[j] = v
		}
	}
	return c
}

// tcExternal returns the referrer's host (lower case, no www.) and path
// when it is neither the property's own site nor an excluded one.
func tcExternal(raw string) (host, path string, ok bool) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" {
		return "", "", false
	}
	host = strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
	for _, d := range []string{"shop.example", "pay.example"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return "", "", false
		}
	}
	path = u.EscapedPath()
	if path == "/" {
		path = ""
	}
	return host, path, true
}

// tcChannel is GA4's default channel group for the sources this traffic
// has (search sites google, bing; social site facebook.com).
func tcChannel(source, medium, campaign string) string {
	paid := medium == "cpc" || medium == "ppc" || strings.HasPrefix(medium, "paid")
	search := source == "google" || source == "bing"
	social := source == "facebook.com"
	switch {
	case source == "(direct)" && medium == "(none)":
		return "Direct"
	case search && paid:
		return "Paid Search"
	case paid:
		return "Paid Other"
	case social:
		return "Organic Social"
	case search || medium == "organic":
		return "Organic Search"
	case medium == "referral":
		return "Referral"
	case medium == "email" || source == "email":
		return "Email"
	case medium == "affiliate":
		return "Affiliates"
	}
	return "Unassigned"
}

// tcPage is the page dimension: the path without attribution parameters.
func tcPage(h *hit.Hit) string {
	path, q, ok := strings.Cut(h.Path, "?")
	if !ok {
		return path
	}
	var kept []string
	for _, kv := range strings.Split(q, "&") {
		name, _, _ := strings.Cut(kv, "=")
		n := strings.ToLower(name)
		if strings.HasPrefix(n, "utm_") || n == "gclid" || n == "gbraid" || n == "wbraid" || n == "msclkid" || n == "dclid" || n == "fbclid" {
			continue
		}
		kept = append(kept, kv)
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}

// tcExclusion is the first exclusion rule a hit meets.
func tcExclusion(h *hit.Hit, botFiltering bool) string {
	switch {
	case h.IPExcludedBy != "":
		return "ip"
	case strings.Contains(h.UserAgent, "InternalMonitor"):
		return "user_agent"
	case h.Country == "AQ":
		return "country"
	case h.Hostname != "shop.example":
		return "foreign_host"
	case botFiltering && h.Bot:
		return "bot"
	case h.Type == hit.TypePageview && strings.HasPrefix(h.Path, "/admin"):
		return "page"
	}
	return ""
}

type tcKey struct {
	day       time.Time
	report    string
	dimension string
}

type tcResult struct {
	sessions map[string][]*tcSession
	daily    map[tcKey]*rollup.Metrics
	users    map[tcKey]map[string]bool
	hourly   map[tcKey]*rollup.Metrics
	filtered map[tcKey]int64
}

func tcCalculate(sent []*hit.Hit, loc *time.Location, botFiltering bool) *tcResult {
	const timeout = 30 * time.Minute
	res := &tcResult{sessions: map[string][]*tcSession{}, daily: map[tcKey]*rollup.Metrics{}, users: map[tcKey]map[string]bool{},
		hourly: map[tcKey]*rollup.Metrics{}, filtered: map[tcKey]int64{}}
	// Duplicates: the first received copy of an event ID counts.
	recv := append([]*hit.Hit(nil), sent...)
	sort.SliceStable(recv, func(i, j int) bool { return recv[i].ReceivedAt.Before(recv[j].ReceivedAt) })
	seen := map[string]bool{}
	byClient := map[string][]*hit.Hit{}
	for _, h := range recv {
		if seen[h.ID] {
			continue
		}
		seen[h.ID] = true
		if r := tcExclusion(h, botFiltering); r != "" {
			res.filtered[tcKey{tcDay(h.Time, loc), "filtered", r}]++
			continue
		}
		byClient[h.ClientID] = append(byClient[h.ClientID], h)
	}
	for client, hits := range byClient {
		sort.SliceStable(hits, func(i, j int) bool {
			if !hits[i].Time.Equal(hits[j].Time) {
				return hits[i].Time.Before(hits[j].Time)
			}
			return hits[i].ID < hits[j].ID
		})
		var cur *tcSession
		var out []*tcSession
		for _, h := range hits {
			starter := h.Type == hit.TypePageview || h.Type == hit.TypeEvent
			cont := cur != nil && h.Time.Sub(cur.hits[len(cur.hits)-1].Time) <= timeout &&
				tcDay(h.Time, loc).Equal(tcDay(cur.hits[len(cur.hits)-1].Time, loc))
			c := tcCampaignOf(h)
			if cont && starter && c != (tcCampaign{}) && c != cur.campaign {
				cont = false
			}
			switch {
			case cont:
				cur.hits = append(cur.hits, h)
			case starter:
				cur = &tcSession{client: client, hits: []*hit.Hit{h}, campaign: c}
				out = append(out, cur)
			}
		}
		for i, s := range out {
			s.first = i == 0
			tcMeasure(s, loc)
		}
		res.sessions[client] = out
	}
	for client, ss := range res.sessions {
		for _, s := range ss {
			res.add(client, s)
		}
	}
	return res
}

func tcMeasure(s *tcSession, loc *time.Location) {
	f := s.hits[0]
	s.day, s.hour = tcDay(f.Time, loc), f.Time.In(loc).Hour()
	s.country, s.device, s.browser, s.os = f.Country, f.DeviceCategory, f.Browser, f.OS
	c := s.campaign
	notSet := func(v string) string { return cmp.Or(v, "(not set)") }
	host, path, external := tcExternal(f.Referrer)
	s.referrer = "(none)"
	if external {
		s.referrer = host + path
	}
	switch {
	case c[3] != "":
		s.source, s.medium, s.camp = "google", "cpc", notSet(c[2])
	case c[4] != "":
		s.source, s.medium, s.camp = "bing", "cpc", notSet(c[2])
	case c[0] != "" || c[1] != "" || c[2] != "":
		s.source, s.medium, s.camp = notSet(c[0]), notSet(c[1]), notSet(c[2])
	case external && (host == "google.com" || host == "bing.com"):
		s.source, s.medium, s.camp = strings.TrimSuffix(host, ".com"), "organic", "(organic)"
	case external:
		s.source, s.medium, s.camp = host, "referral", "(referral)"
	default:
		s.source, s.medium, s.camp = "(direct)", "(none)", "(direct)"
	}
	s.channel = tcChannel(s.source, s.medium, s.camp)
	s.landing, s.exit = "(not set)", "(not set)"
	interaction := false
	goals := map[string]bool{}
	for _, h := range s.hits {
		switch h.Type {
		case hit.TypePageview:
			if s.pageviews == 0 {
				s.landing = tcPage(h)
			}
			s.exit = tcPage(h)
			s.pageviews++
			if strings.SplitN(tcPage(h), "?", 2)[0] == "/thanks" && !goals["thanks"] {
				goals["thanks"] = true
				s.conversions++
				s.convValue = rollup.AddValue(s.convValue, 5)
			}
		case hit.TypeEvent:
			s.events++
			if h.Params["non_interaction"] != "1" {
				interaction = true
			}
			if h.Category == "shop" && h.Action == "purchase" && !goals["purchase"] {
				goals["purchase"] = true
				s.conversions++
				s.convValue = rollup.AddValue(s.convValue, h.Value)
			}
		}
	}
	s.durationMS = s.hits[len(s.hits)-1].Time.Sub(f.Time).Milliseconds()
	s.bounce = s.pageviews == 1 && !interaction
	s.engaged = s.durationMS > 10000 || s.pageviews >= 2 || s.conversions > 0
}

func (r *tcResult) row(k tcKey, client string) *rollup.Metrics {
	if r.daily[k] == nil {
		r.daily[k] = &rollup.Metrics{}
		r.users[k] = map[string]bool{}
	}
	r.users[k][client] = true
	return r.daily[k]
}

func (r *tcResult) add(client string, s *tcSession) {
	sm := rollup.Metrics{Sessions: 1, DurationMS: s.durationMS, Pageviews: s.pageviews, Events: s.events,
		Conversions: s.conversions, ConversionValue: s.convValue}
	if s.bounce {
		sm.Bounces = 1
	}
	if s.engaged {
		sm.EngagedSessions = 1
	}
	userType := "returning"
	if s.first {
		sm.NewUsers, userType = 1, "new"
	}
	for _, d := range [][2]string{{"total", ""}, {"channel", s.channel},
		{"source_medium", s.source + " / " + s.medium}, {"campaign", s.camp}, {"referrer", s.referrer},
		{"landing_page", s.landing}, {"country", s.country}, {"device", s.device}, {"browser", s.browser}, {"os", s.os},
		{"user_type", userType}} {
		r.row(tcKey{s.day, d[0], d[1]}, client).Add(sm, 1)
	}
	hk := tcKey{s.day, "hour", fmt.Sprint(s.hour)}
	if r.hourly[hk] == nil {
		r.hourly[hk] = &rollup.Metrics{}
	}
	r.hourly[hk].Add(sm, 1)

	// Pages: time on page runs to the next pageview, or for the last one
	// to a later hit of the session.
	var pvs []*hit.Hit
	for _, h := range s.hits {
		if h.Type == hit.TypePageview {
			pvs = append(pvs, h)
		}
	}
	last := s.hits[len(s.hits)-1].Time
	viewed := map[string]bool{}
	for i, h := range pvs {
		p := tcPage(h)
		m := r.row(tcKey{s.day, "page", p}, client)
		m.Pageviews++
		if !viewed[p] {
			viewed[p] = true
			m.UniquePageviews++
		}
		switch {
		case i+1 < len(pvs):
			m.TimeOnPageMS += pvs[i+1].Time.Sub(h.Time).Milliseconds()
			m.TimeOnPageViews++
		case last.After(h.Time):
			m.TimeOnPageMS += last.Sub(h.Time).Milliseconds()
			m.TimeOnPageViews++
		}
	}
	if len(pvs) > 0 {
		m := r.row(tcKey{s.day, "page", s.landing}, client)
		m.Entrances++
		if s.bounce {
			m.Bounces++
		}
		r.row(tcKey{s.day, "page", s.exit}, client).Exits++
	}
	counted := map[tcKey]bool{}
	for _, h := range s.hits {
		if h.Type != hit.TypeEvent {
			continue
		}
		c, l := cmp.Or(h.Category, "(not set)"), cmp.Or(h.Label, "(not set)")
		for _, k := range []tcKey{{s.day, "event_category", c}, {s.day, "event_action", c + " / " + h.Action},
			{s.day, "event", c + " / " + h.Action + " / " + l}} {
			m := r.row(k, client)
			m.Events++
			m.EventValue = rollup.AddValue(m.EventValue, h.Value)
			if !counted[k] {
				counted[k] = true
				m.UniqueEvents++
			}
		}
	}
}

// tcRange is what a report over local days [from, to] shows: per report
// and dimension value, the summed metrics and the distinct users.
func (r *tcResult) tcRange(from, to time.Time) (map[tcKey]rollup.Metrics, map[tcKey]int) {
	ms, us := map[tcKey]rollup.Metrics{}, map[tcKey]map[string]bool{}
	for k, m := range r.daily {
		if k.day.Before(from) || k.day.After(to) {
			continue
		}
		rk := tcKey{report: k.report, dimension: k.dimension}
		cur := ms[rk]
		cur.Add(*m, 1)
		ms[rk] = cur
		if us[rk] == nil {
			us[rk] = map[string]bool{}
		}
		for c := range r.users[k] {
			us[rk][c] = true
		}
	}
	n := map[tcKey]int{}
	for k, u := range us {
		n[k] = len(u)
	}
	return ms, n
}

// ---------------------------------------------------------------------------
// What the system stored, read as a report reads it.

var trReports = []string{"total", "channel", "source_medium", "campaign", "referrer", "landing_page",
	"country", "device", "browser", "os", "user_type", "page", "event_category", "event_action", "event"}

// trMask keeps the metrics each kind of report serves.
func trMask(report string, m rollup.Metrics) rollup.Metrics {
	switch report {
	case "page":
		return rollup.Metrics{Pageviews: m.Pageviews, UniquePageviews: m.UniquePageviews, Entrances: m.Entrances, Exits: m.Exits,
			Bounces: m.Bounces, TimeOnPageMS: m.TimeOnPageMS, TimeOnPageViews: m.TimeOnPageViews}
	case "event_category", "event_action", "event":
		return rollup.Metrics{Events: m.Events, UniqueEvents: m.UniqueEvents, EventValue: rollup.RoundValue(m.EventValue)}
	}
	return rollup.Metrics{NewUsers: m.NewUsers, Sessions: m.Sessions, EngagedSessions: m.EngagedSessions, Bounces: m.Bounces,
		DurationMS: m.DurationMS, Pageviews: m.Pageviews, Events: m.Events, Conversions: m.Conversions,
		ConversionValue: rollup.RoundValue(m.ConversionValue)}
}

// trDimension reads a stored dimension value of several parts as the
// calculator writes it (parts joined with " / "; this traffic has no part
// that needs escaping).
func trDimension(report, v string) string {
	switch report {
	case "source_medium", "event_action":
		return strings.Join(rollup.SplitDimension(v, 2), " / ")
	case "event":
		return strings.Join(rollup.SplitDimension(v, 3), " / ")
	}
	return v
}

type trStored struct {
	metrics map[tcKey]rollup.Metrics
	users   map[tcKey]*sketch.Set
}

func trRead(t *testing.T, part *Partition, days []time.Time) *trStored {
	t.Helper()
	s := part.cfg.Session
	st := &trStored{metrics: map[tcKey]rollup.Metrics{}, users: map[tcKey]*sketch.Set{}}
	for _, day := range days {
		for _, report := range trReports {
			eachDaily(t, s, day, report, func(r *rollup.Row) {
				k := tcKey{day, report, trDimension(report, r.Dimension)}
				m := st.metrics[k]
				m.Add(trMask(report, r.Metrics), 1)
				st.metrics[k] = m
				if st.users[k] == nil {
					st.users[k] = &sketch.Set{}
				}
				if err := st.users[k].Merge(&r.Users); err != nil {
					t.Fatal(err)
				}
			})
		}
		iter := s.Query("SELECT hour, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, events, conversions, conversion_value FROM rollup_hourly WHERE property_id = ? AND day = ?", propID, day).Iter()
		for {
			var hour int16
			var m rollup.Metrics
			if !iter.Scan(&hour, &m.NewUsers, &m.Sessions, &m.EngagedSessions, &m.Bounces, &m.DurationMS, &m.Pageviews, &m.Events, &m.Conversions, &m.ConversionValue) {
				break
			}
			k := tcKey{day, "hour", fmt.Sprint(hour)}
			cur := st.metrics[k]
			cur.Add(trMask("hour", m), 1)
			st.metrics[k] = cur
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		iter = s.Query("SELECT reason, hits FROM filtered_hits WHERE property_id = ? AND day = ?", propID, day).Iter()
		var reason string
		var n int64
		for iter.Scan(&reason, &n) {
			k := tcKey{day, "filtered", reason}
			cur := st.metrics[k]
			cur.Events += n
			st.metrics[k] = cur
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// ---------------------------------------------------------------------------
// The test

// TestGroundTruth runs the adversarial visitors through live processing
// and, again, through reprocessing of every day from the archive (with
// what live processing derived dropped first), in each zone, with bot
// filtering on and off.
func TestGroundTruth(t *testing.T) {
	for _, zone := range []string{"Pacific/Kiritimati", "America/St_Johns"} {
		for _, bots := range []bool{true, false} {
			for _, reprocess := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/bot_filtering=%v/reprocess=%v", zone, bots, reprocess), func(t *testing.T) {
					loc, err := time.LoadLocation(zone)
					if err != nil {
						t.Skipf("zone %s: %v", zone, err)
					}
					groundTruth(t, loc, trVisitors(loc), 4, tcSelfCheck, bots, reprocess)
				})
			}
		}
	}
}

// TestGroundTruthRandom runs random visitors (truthVisitors) through live
// processing and reprocessing, in a zone on its fall-back night and one
// with a whole-hour offset, bots filtered or not, and compares with the
// same calculator.
func TestGroundTruthRandom(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		for _, zone := range []string{"America/St_Johns", "Europe/Berlin"} {
			for _, reprocess := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/seed=%d/reprocess=%v", zone, seed, reprocess), func(t *testing.T) {
					loc, err := time.LoadLocation(zone)
					if err != nil {
						t.Skipf("zone %s: %v", zone, err)
					}
					day0 := time.Date(2026, 10, 30, 0, 0, 0, 0, loc)
					bots := seed%2 == 1 // filtered at odd seeds
					groundTruth(t, loc, truthVisitors(seed, 60, loc, day0), 8, nil, bots, reprocess)
				})
			}
		}
	}
}

// truthVisitors draws n visitors of one to four visits each over several
// days from day0 (some returning within the hour, some a day later), each
// visit of up to eight hits: pageviews, events (some non-interaction, some
// purchases), engagement pings, the first hit sometimes a ping or an
// event; gaps of exactly the timeout and a millisecond more, hits at the
// same instant; entries from search, social, a news site, the site itself,
// the referral exclusion, utm tags, click IDs and a campaign sent apart;
// bots, hits up to 3 h 50 min late, re-sends (some with another time),
// hits each exclusion rule drops, and hits from another country, device
// and browser than their session's first.
func truthVisitors(seed uint64, n int, loc *time.Location, day0 time.Time) []trVisitor {
	rng := rand.New(rand.NewPCG(seed, 99))
	entries := []struct{ q, ref string }{
		{"", ""}, {"", trGoogle}, {"", trFB}, {"", trNews}, {"", trOwn}, {"", trOwnSub}, {"", trPay},
		{trUTM + "a", ""}, {trUTM + "b", trGoogle}, {"gclid=G" + strconv.Itoa(rng.IntN(3)), trGoogle}, {"msclkid=M1", ""},
		{"utm_source=partner&utm_medium=affiliate", trFB},
	}
	pages := []string{"/", "/products", "/p?id=3", "/thanks", "/cart", "/blog/x"}
	var out []trVisitor
	for v := range n {
		var hs []trHit
		bot := rng.IntN(100) < 3
		country := []string{"FR", "NZ", "US"}[rng.IntN(3)]
		visits := 1 + rng.IntN(4)
		at := time.Date(day0.Year(), day0.Month(), day0.Day(), 0, 0, 0, 0, loc).Add(time.Duration(rng.IntN(24*3600)) * time.Second)
		for vi := range visits {
			if vi > 0 {
				switch rng.IntN(4) {
				case 0:
					at = at.Add(30*time.Minute + time.Duration(rng.IntN(3600))*time.Second)
				case 1:
					at = at.Add(time.Duration(3+rng.IntN(20)) * time.Hour)
				default:
					at = at.Add(time.Duration(rng.IntN(50)) * time.Minute)
				}
			}
			e := entries[rng.IntN(len(entries))]
			cur := joinQuery(pages[rng.IntN(len(pages))], e.q)
			ref := e.ref
			for i := range 1 + rng.IntN(8) {
				if i > 0 {
					switch x := rng.IntN(100); {
					case x < 5: // the same instant
					case x < 12:
						at = at.Add(30 * time.Minute)
					case x < 15:
						at = at.Add(30*time.Minute + time.Millisecond)
					case x < 20:
						at = at.Add(10 * time.Second)
					default:
						at = at.Add(time.Duration(1+rng.IntN(600)) * time.Second)
					}
				}
				h := trHit{at: at, typ: hit.TypePageview, page: cur, ref: ref, bot: bot}
				switch x := rng.IntN(100); {
				case i == 0 && x < 8:
					h.typ = hit.TypeEngagement
				case i == 0 && x < 15:
					h.typ, h.cat, h.act = hit.TypeEvent, "video", "play"
					h.nonInteraction = rng.IntN(2) == 0
				case i > 0 && x < 25:
					h.typ, h.cat, h.act, h.label = hit.TypeEvent, "ui", "click", "x"
					h.nonInteraction = rng.IntN(3) == 0
					if rng.IntN(4) == 0 {
						h.cat, h.act, h.value = "shop", "purchase", float64(1+rng.IntN(50))
					}
				case i > 0 && x < 45:
					h.typ = hit.TypeEngagement
				case i > 0:
					cur = pages[rng.IntN(len(pages))]
					if rng.IntN(10) == 0 {
						e2 := entries[rng.IntN(len(entries))]
						cur = joinQuery(cur, e2.q)
						h.ref = e2.ref
					} else {
						h.ref = "https://shop.example/"
					}
					h.page = cur
					ref = h.ref
				}
				if h.typ != hit.TypePageview {
					h.ref = ""
				}
				if rng.IntN(100) < 5 {
					h.params = map[string]string{hit.ParamCampaignSource: "partner", hit.ParamCampaignMedium: "affiliate"}
				}
				if rng.IntN(100) < 10 {
					h.late = time.Duration(1+rng.IntN(230)) * time.Minute
				}
				if rng.IntN(100) < 3 {
					h.resend = time.Duration(1+rng.IntN(100)) * time.Minute
					if rng.IntN(2) == 0 {
						h.resendShift = time.Duration(rng.IntN(120)-60) * time.Second
					}
				}
				// What the property's rules exclude, and enrichment
				// that differs from the visitor's first hit's.
				switch x := rng.IntN(100); {
				case x < 2:
					h.ipx = "198.51.100.0/24"
				case x < 4:
					h.ua = "Mozilla/5.0 InternalMonitor/1.0"
				case x < 6:
					h.country = "AQ"
				case x < 7:
					h.host = "evil.example"
				case x < 8 && h.typ == hit.TypePageview:
					h.page = "/admin/users"
				case x < 14:
					h.country, h.device, h.browser = country, "mobile", "Safari"
				}
				hs = append(hs, h)
			}
		}
		out = append(out, trVisitor{client: fmt.Sprintf("r%03d", v), hits: hs})
	}
	return out
}

// groundTruth plays vs, whose hits fall within days days of day0 (Oct 30
// in loc), and compares every stored row of those days, and reports over
// ranges of the first four, with the calculator, which check, if not nil,
// first holds to what is known of vs.
func groundTruth(t *testing.T, loc *time.Location, vs []trVisitor, days int, check func(*testing.T, *tcResult), botFiltering, reprocess bool) {
	ctx := context.Background()
	day0 := time.Date(2026, 10, 30, 0, 0, 0, 0, loc)
	sent := trBuild(t, loc, day0, vs)
	want := tcCalculate(sent, loc, botFiltering)
	if check != nil {
		check(t, want)
	}

	// The system: hits in the order received, a few at a time, flushed.
	sort.SliceStable(sent, func(i, j int) bool { return sent[i].ReceivedAt.Before(sent[j].ReceivedAt) })
	var msgs []Message
	for i, h := range sent {
		b, err := hit.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, Message{Offset: int64(i), Value: b})
	}
	s := connect(t)
	prop := trProperty(t, loc, botFiltering)
	part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{prop}})
	for rest := msgs; len(rest) > 0; {
		n := min(3, len(rest))
		if err := part.Apply(ctx, rest[:n]); err != nil {
			t.Fatal(err)
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if st := part.Stats(); st.TooLate != 0 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v: no hit of this traffic is too late or undecodable", st)
	}

	var stored []time.Time
	for d := -1; d <= days; d++ {
		stored = append(stored, tcDay(day0, loc).AddDate(0, 0, d))
	}
	if reprocess {
		for _, table := range []string{"rollup_daily", "rollup_hourly", "filtered_hits", "sessions_by_hour", "pageviews_by_hour", "events_by_hour"} {
			if err := s.Query("TRUNCATE " + table).Exec(); err != nil {
				t.Fatalf("truncate %s: %v", table, err)
			}
		}
		from, to := stored[1], stored[len(stored)-2]
		rp := &Reprocessor{Session: s, Now: func() time.Time { return to.AddDate(0, 0, 10) }}
		if err := rp.Run(ctx, prop, from, to, RulesHistorical, nil, func(Progress) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	got := trRead(t, part, stored)

	// Every stored row, day by day.
	wantRows := map[tcKey]rollup.Metrics{}
	wantUsers := map[tcKey]int{}
	for k, m := range want.daily {
		wantRows[k] = trMask(k.report, *m)
		wantUsers[k] = len(want.users[k])
	}
	for k, m := range want.hourly {
		wantRows[k] = trMask("hour", *m)
	}
	for k, n := range want.filtered {
		wantRows[k] = rollup.Metrics{Events: n}
	}
	gotUsers := map[tcKey]int{}
	for k, u := range got.users {
		gotUsers[k] = int(u.Count())
	}
	trSessionUsersOnly(wantUsers)
	trSessionUsersOnly(gotUsers)
	trCompare(t, "day", wantRows, got.metrics, wantUsers, gotUsers, want)

	// Reports over ranges: the whole run, the run without its first day
	// (users whose first visit was before it are not new), and one day.
	first, last := tcDay(day0, loc), tcDay(day0, loc).AddDate(0, 0, 3)
	for _, r := range [][2]time.Time{{first, last}, {first.AddDate(0, 0, 1), last}, {first.AddDate(0, 0, 2), first.AddDate(0, 0, 2)}} {
		wm, wu := want.tcRange(r[0], r[1])
		gm, gu := map[tcKey]rollup.Metrics{}, map[tcKey]int{}
		merged := map[tcKey]*sketch.Set{}
		for k, m := range got.metrics {
			if k.report == "hour" || k.report == "filtered" || k.day.Before(r[0]) || k.day.After(r[1]) {
				continue
			}
			rk := tcKey{report: k.report, dimension: k.dimension}
			cur := gm[rk]
			cur.Add(m, 1)
			gm[rk] = cur
			if merged[rk] == nil {
				merged[rk] = &sketch.Set{}
			}
			if err := merged[rk].Merge(got.users[k]); err != nil {
				t.Fatal(err)
			}
		}
		for k, u := range merged {
			gu[k] = int(u.Count())
		}
		trSessionUsersOnly(wu)
		trSessionUsersOnly(gu)
		for k, m := range wm {
			wm[k] = trMask(k.report, m)
		}
		trCompare(t, fmt.Sprintf("range %s..%s", r[0].Format(time.DateOnly), r[1].Format(time.DateOnly)), wm, gm, wu, gu, want)
	}
}

// trSessionUsersOnly drops the users of page and event rows: no report
// serves users of them (docs/reports.md, "Metrics").
func trSessionUsersOnly(users map[tcKey]int) {
	for k := range users {
		switch k.report {
		case "page", "event_category", "event_action", "event":
			delete(users, k)
		}
	}
}

// trCompare reports every row whose metrics or users differ, with the
// visitors of the calculator behind it.
func trCompare(t *testing.T, what string, want, got map[tcKey]rollup.Metrics, wantUsers, gotUsers map[tcKey]int, calc *tcResult) {
	t.Helper()
	keys := map[tcKey]bool{}
	for k := range want {
		keys[k] = true
	}
	for k, m := range got {
		if m != (rollup.Metrics{}) || gotUsers[k] != 0 {
			keys[k] = true
		}
	}
	var sorted []tcKey
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		return cmp.Or(a.day.Compare(b.day), cmp.Compare(a.report, b.report), cmp.Compare(a.dimension, b.dimension)) < 0
	})
	bad := 0
	for _, k := range sorted {
		w, g := want[k], got[k]
		if w == g && wantUsers[k] == gotUsers[k] {
			continue
		}
		bad++
		if bad > 40 {
			continue
		}
		var who []string
		for c := range calc.users[k] {
			who = append(who, c)
		}
		sort.Strings(who)
		t.Errorf("%s %s %s %q:\n  got  %+v users %d\n  want %+v users %d\n  visitors %v", what, k.day.Format(time.DateOnly), k.report, k.dimension,
			g, gotUsers[k], w, wantUsers[k], who)
	}
	if bad > 40 {
		t.Errorf("%s: %d rows differ (first 40 shown)", what, bad)
	}
}

// tcSelfCheck holds the calculator to hand-counted values of the
// definitions, so that it cannot agree with the system by sharing a
// mistake with it.
func tcSelfCheck(t *testing.T, r *tcResult) {
	t.Helper()
	n := func(client string) int { return len(r.sessions[client]) }
	for client, want := range map[string]int{
		"gap-30m00": 2, "gap-30m00-001": 2, "midnight": 4, "campaign-change": 2, "no-carry-over": 3, "gclid-vs-utm": 3, "ios-click-ids": 3,
		"own-host-start": 3, "exclusion-mid": 1, "referral-mid": 1, "returning": 2, "every-day": 4, "late-first": 1,
		"late-bridge": 1, "late-split": 2, "late-new-user-day": 2, "duplicates": 1, "excluded": 2, "events-only": 1,
		"pv-ping": 1, "ping-bridge": 1, "fall-back": 1, "goals": 1, "campaign-params": 3, "ping-only": 0, "same-instant": 1, "enrichment": 1, "event-dims": 1,
	} {
		if got := n(client); got != want {
			t.Errorf("calculator: %s has %d sessions, want %d", client, got, want)
		}
	}
	s := func(client string, i int) *tcSession { return r.sessions[client][i] }
	checks := []struct {
		name string
		ok   bool
	}{
		{"own host and exclusions at start are Direct", s("own-host-start", 0).channel == "Direct" && s("own-host-start", 1).channel == "Direct" && s("own-host-start", 2).channel == "Direct"},
		{"excluded referrer mid-session keeps google", s("exclusion-mid", 0).source == "google" && s("exclusion-mid", 0).conversions == 1},
		{"no carry-over", s("no-carry-over", 1).channel == "Direct" && s("no-carry-over", 0).channel == "Email"},
		{"gclid beats utm", s("gclid-vs-utm", 0).source == "google" && s("gclid-vs-utm", 0).medium == "cpc" && s("gclid-vs-utm", 0).camp == "c"},
		{"msclkid", s("gclid-vs-utm", 2).source == "bing" && s("gclid-vs-utm", 2).camp == "(not set)"},
		{"gbraid is google / cpc, landing without it", s("ios-click-ids", 0).channel == "Paid Search" && s("ios-click-ids", 0).camp == "(not set)" &&
			s("ios-click-ids", 0).landing == "/landing" && s("ios-click-ids", 0).pageviews == 2},
		{"wbraid beats utm", s("ios-click-ids", 1).source == "google" && s("ios-click-ids", 1).medium == "cpc" && s("ios-click-ids", 1).camp == "ios"},
		{"gclid before wbraid", s("ios-click-ids", 2).source == "google" && s("ios-click-ids", 2).landing == "/p" && s("ios-click-ids", 2).pageviews == 3},
		{"late first hit takes attribution", s("late-first", 0).camp == "late" && s("late-first", 0).landing == "/"},
		{"late-new-user-day first on day 0", s("late-new-user-day", 0).first && s("late-new-user-day", 0).source == "news.example"},
		{"pv+ping bounce engaged", s("pv-ping", 0).bounce && s("pv-ping", 0).engaged},
		{"pv+ping 10s not engaged", s("pv-ping-short", 0).bounce && !s("pv-ping-short", 0).engaged},
		{"pv+non-interaction bounce", s("pv-noninteraction", 0).bounce},
		{"pv+click no bounce", !s("pv-click", 0).bounce},
		{"events-only", !s("events-only", 0).bounce && s("events-only", 0).landing == "(not set)"},
		{"goals once each", s("goals", 0).conversions == 2 && s("goals", 0).convValue == 25.5},
		{"goal makes engaged", s("goal-event-only", 0).engaged},
		{"campaign params", s("campaign-params", 0).channel == "Affiliates" && s("campaign-params", 2).source == "google"},
		{"enrichment of the first hit", s("enrichment", 0).country == "NZ" && s("enrichment", 0).device == "mobile"},
		{"duplicate purchase once", s("duplicates", 0).events == 1 && s("duplicates", 0).pageviews == 3},
		{"non-interaction event starts with its campaign", s("same-instant", 0).camp == "ni" && s("same-instant", 0).landing == "/w" && !s("same-instant", 0).bounce},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("calculator: %s does not hold", c.name)
		}
	}
}
