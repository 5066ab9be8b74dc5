package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/simulate"
)

// TestAcceptanceBlackBoxEdges audits traffic on the edges the other
// black-box audits leave out, with a calculator of its own written from the
// brief ("Sessions, channels and users") and docs/processing.md
// (edCalculate), comparing every acquisition and behavior report of
// yesterday, today and both:
//
//   - hand-made browser hits (edTraffic, edHourTraffic): a gap one
//     millisecond over the timeout, hits of one batch out of order and of
//     one time, engaged at exactly 10 s and 1 ms more, a page seen twice, a
//     campaign by gclid after the same values by utm tags, self-referrals
//     with tags, a referral exclusion as first hit and mid-session, case in
//     utm values against the default channel group and custom rules,
//     referrers by category, ni=0, events-only sessions, late pageviews into
//     written sessions, pings bridging two sessions, a reused event ID, and
//     the start of a local hour;
//   - the same by the Measurement API, and there edges exact across requests
//     (edExactTraffic: timestamp_micros dates an event to its microsecond);
//   - random visitors (edRandomTraffic; E2E_EDGES_SEED repeats a run) by
//     browser and Measurement API under a 30-minute timeout, by browser
//     under a 2-minute one, and in Pacific/Kiritimati and Etc/GMT+12.
//
// The main properties' zone is off the whole hour when one such zone had
// its midnight a while ago (Asia/Kathmandu, Australia/Adelaide...), so that
// days and hours are that zone's.
func TestAcceptanceBlackBoxEdges(t *testing.T) {
	stack, cfg := startStack(t)
	gw := stack.GatewayURL()
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()

	zone, midnight, ok := zoneWithOddMidnightAgo(t)
	if !ok {
		var loc *time.Location
		zone, loc, midnight = zoneWithMidnightAgo(t)
		midnight = midnight.In(loc)
	}
	loc := midnight.Location()
	t.Logf("time zone %s: local midnight %s, %s ago", zone, midnight.Format(time.RFC3339), start.Sub(midnight).Round(time.Second))

	api := &bbAPI{mpaClient: &mpaClient{t: t, ctx: context.Background(), http: client, gw: gw}}
	api.token = api.signUp(fmt.Sprintf("edges-%d@shop.example", start.UnixNano()))
	propertyIn := func(zone, name string, timeoutMinutes int) mpaProperty {
		p := api.createProperty(api.token, map[string]any{
			"name": name, "hostnames": []string{"shop.example"}, "time_zone": zone, "currency": "EUR",
		})
		var rules struct {
			Version int `json:"version"`
		}
		api.do("PUT", "/v1/properties/"+p.ID+"/rules", api.token, json.RawMessage(`{
			"session_timeout_minutes": `+strconv.Itoa(timeoutMinutes)+`,
			"referral_exclusions": ["pay.example"],
			"channels": [{"name": "Newsletter", "medium": "^newsletter$"}, {"name": "Partner ads", "source": "^partner$", "medium": "^cpc$"}]
		}`), http.StatusOK, &rules)
		// Hits are derived under the version collection stamps on them.
		rv := fmt.Sprintf(`"rv":%d`, rules.Version)
		api.waitForCollection("collection has the rules", 30*time.Second, p.TrackingID, "https://shop.example/", bbChrome, func(answer string) bool {
			return rules.Version > 0 && strings.Contains(answer, rv)
		})
		return p
	}
	property := func(name string, timeoutMinutes int) mpaProperty { return propertyIn(zone, name, timeoutMinutes) }
	prop, edgesServer := property("Edges", 30), property("Edges server", 30)
	random, server, short := property("Random", 30), property("Random server", 30), property("Random short", 2)
	secretOf := func(p mpaProperty) string {
		var secret struct {
			Secret string `json:"secret"`
		}
		api.do("POST", "/v1/properties/"+p.ID+"/api-secrets", api.token, map[string]any{"name": "backend"}, http.StatusCreated, &secret)
		return secret.Secret
	}
	serverSecret, edgesSecret := secretOf(server), secretOf(edgesServer)
	// The events are sent once every collection instance takes the new
	// secrets (a send before would be refused, 403 bad_secret).
	api.waitForSecret(server.TrackingID, serverSecret)
	api.waitForSecret(edgesServer.TrackingID, edgesSecret)

	// Random traffic (E2E_EDGES_SEED repeats a run's) checks the rules
	// together: out of order, late, re-sent, by batch and by pixel.
	seed := time.Now().UnixNano()
	if s := os.Getenv("E2E_EDGES_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("random traffic: E2E_EDGES_SEED=%d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	randomSends, shortSends := edRandomTraffic(r, midnight, 30*time.Minute), edRandomTraffic(r, midnight, 2*time.Minute)

	// The zones furthest from UTC: their today and yesterday are not UTC's.
	type farZone struct {
		prop     mpaProperty
		midnight time.Time
		sends    []bbSend
	}
	var farZones []farZone
	for _, z := range []string{"Pacific/Kiritimati", "Etc/GMT+12"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().In(loc)
		m := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
		farZones = append(farZones, farZone{propertyIn(z, "Far "+z, 30), m, edNowTraffic(r, now.Sub(m))})
	}

	sends := append(edTraffic(), edHourTraffic(t, midnight, time.Now())...)
	exact := edExactTraffic(t, midnight, time.Now()) // the Measurement API's, dated to the microsecond
	for _, phase := range []bool{false, true} {
		for _, s := range sends {
			if s.late == phase {
				api.send(prop.TrackingID, midnight, s)
				api.sendMP(edgesServer.TrackingID, edgesSecret, midnight, s)
			}
		}
		for _, s := range exact {
			if s.late == phase {
				api.sendMP(edgesServer.TrackingID, edgesSecret, midnight, s)
			}
		}
		for _, s := range randomSends {
			if s.late == phase {
				api.send(random.TrackingID, midnight, s)
				api.sendMP(server.TrackingID, serverSecret, midnight, s)
			}
		}
		for _, f := range farZones {
			for _, s := range f.sends {
				if s.late == phase {
					api.send(f.prop.TrackingID, f.midnight, s)
				}
			}
		}
		for _, s := range shortSends {
			if s.late == phase {
				api.send(short.TrackingID, midnight, s)
			}
		}
		waitForProcessing(t, cfg, 60*time.Second)
	}

	yesterday, today := bbDay(midnight.Add(-time.Second), loc), bbDay(midnight, loc)
	// check compares a property's reports with the calculator's numbers
	// of what it was sent.
	check := func(name, propertyID string, calc *bbCalc) {
		t.Helper()
		edLog(t, name, calc)
		m := &simulate.Merchant{Gateway: gw, AccessToken: api.token, PropertyID: propertyID}
		bbCompareDays(t, client, m, name+" ", calc, yesterday, today)
		edCompareMore(t, client, m, calc, url.Values{"from": {yesterday}, "to": {today}})
	}
	randomCalc := edCalculate(randomSends, midnight, 30*time.Minute)
	check("edges", prop.ID, edCalculate(sends, midnight, 30*time.Minute))
	check("random", random.ID, randomCalc)
	check("edges server", edgesServer.ID, edCalculate(append(slices.Clone(sends), exact...), midnight, 30*time.Minute))
	check("random server", server.ID, randomCalc)
	check("random short", short.ID, edCalculate(shortSends, midnight, 2*time.Minute))
	for _, f := range farZones {
		fm := &simulate.Merchant{Gateway: gw, AccessToken: api.token, PropertyID: f.prop.ID}
		loc := f.midnight.Location()
		bbCompareDays(t, client, fm, loc.String()+" ", edCalculate(f.sends, f.midnight, 30*time.Minute), bbDay(f.midnight.Add(-time.Second), loc), bbDay(f.midnight, loc))
	}
}

// edNowTraffic is a few random visitors of the last 90 minutes, dated from
// a local midnight sinceMidnight ago.
func edNowTraffic(r *rand.Rand, sinceMidnight time.Duration) []bbSend {
	var sends []bbSend
	// Whole hours later, so that hits stay off the hours' starts: from
	// [-35m, +38m] to within 20 minutes to 2 hours 33 minutes ago.
	shift := (sinceMidnight - 58*time.Minute).Truncate(time.Hour)
	if sinceMidnight < 58*time.Minute {
		shift -= time.Hour
	}
	for _, s := range edRandomTraffic(r, time.Time{}.Add(time.Hour), 30*time.Minute)[:12] {
		s.v = &bbVisitor{cid: "now-" + s.v.cid, ua: s.v.ua, ip: s.v.ip}
		hits := slices.Clone(s.hits)
		for i := range hits {
			hits[i].at += shift
		}
		s.hits = hits
		sends = append(sends, s)
	}
	return sends
}

// sendMP sends a request's hits as the Measurement API's events, dated by
// timestamp_micros: a page_view, an event named by its action, a
// user_engagement; the visitor's user agent as the request's.
func (a *bbAPI) sendMP(tid, secret string, midnight time.Time, s bbSend) {
	a.t.Helper()
	var events []map[string]any
	for _, h := range s.hits {
		params := map[string]any{"page_location": "https://shop.example" + h.page}
		e := map[string]any{"event_id": h.hid, "timestamp_micros": midnight.Add(h.at).UnixMicro(), "params": params}
		switch h.t {
		case "pageview":
			e["name"] = "page_view"
			if h.ref != "" {
				params["page_referrer"] = h.ref
			}
		case "engagement":
			e["name"] = "user_engagement"
			params["engagement_time_msec"] = h.et
		case "event":
			e["name"] = h.ea
			params["event_category"] = h.ec
			if h.ev != "" {
				params["value"] = json.Number(h.ev)
			}
			if h.ni {
				params["non_interaction"] = true
			}
		}
		events = append(events, e)
	}
	body := map[string]any{"client_id": s.v.cid, "user_agent": s.v.ua, "events": events}
	if code, answer := a.post("/mp/collect?tracking_id="+tid+"&api_secret="+url.QueryEscape(secret), "", body); code != http.StatusNoContent && code != http.StatusOK {
		a.t.Fatalf("mp/collect %s: %d %s", s.v.cid, code, answer)
	}
}

// edRandomTraffic is 80 random visitors within 35 minutes before the local
// midnight and 38 after: pageviews, events and pings of a few pages,
// referrers and campaigns, each visitor's hits in up to three requests in
// no order of time (the later ones sent late, once the first are
// processed), some by the pixel, some sent twice. Times are whole seconds
// and kept off the edges where the milliseconds between a request and its
// receipt would decide (a gap of 30:00, a duration of 10 s, a local hour's
// start, midnight), which the hand-made cases check within one request.
func edRandomTraffic(r *rand.Rand, midnight time.Time, timeout time.Duration) []bbSend {
	var sends []bbSend
	for i := 0; i < 80; i++ {
		v := &bbVisitor{cid: fmt.Sprintf("random-%d-%02d", timeout/time.Minute, i), ua: bbChrome, ip: fmt.Sprintf("198.51.100.%d", 10+i)}
		if i%9 == 4 {
			v.ua = bbIPhone
		}
		hits := edRandomHits(r, i, midnight, timeout)
		for edOnEdge(hits, midnight, timeout) {
			hits = edRandomHits(r, i, midnight, timeout)
		}
		parts := 1 + r.IntN(3)
		reqs := make([][]bbHit, parts)
		for _, h := range hits {
			j := r.IntN(parts)
			reqs[j] = append(reqs[j], h)
		}
		for j, hs := range reqs {
			if len(hs) == 0 {
				continue
			}
			s := bbSend{v: v, hits: hs, late: j > 0, get: r.IntN(5) == 0}
			sends = append(sends, s)
			if r.IntN(10) == 0 {
				s.late = true
				sends = append(sends, s) // re-sent
			}
		}
	}
	return sends
}

// edRandomHits draws visitor i's hits, at distinct whole seconds, none
// within 3 seconds of a local hour's start (midnight's too).
func edRandomHits(r *rand.Rand, i int, midnight time.Time, timeout time.Duration) []bbHit {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	n := 1 + r.IntN(7)
	taken := map[int]bool{}
	var hits []bbHit
	// Within five timeouts of a random second, so that they split and
	// join as often under a short timeout as under 30 minutes.
	spread := min(73*60, int(5*timeout/time.Second))
	from := -35*60 + r.IntN(73*60-spread+1)
	for len(hits) < n {
		sec := from + r.IntN(spread)
		local := midnight.Add(time.Duration(sec) * time.Second).In(midnight.Location())
		if taken[sec] || local.Minute() == 0 && local.Second() < 3 || local.Minute() == 59 && local.Second() > 56 {
			continue
		}
		taken[sec] = true
		h := bbHit{at: time.Duration(sec) * time.Second, hid: fmt.Sprintf("r%02d-%d", i, len(hits)), page: pick("/", "/a", "/b?x=1", "/c")}
		switch k := r.IntN(20); {
		case k < 12:
			h.t = "pageview"
			h.ref = pick("", "", "https://www.google.com/", "https://t.co/x", "https://news.example.org/a", "https://shop.example/p", "https://www.pay.example/")
			if tags := pick("", "", "", "", "utm_source=news&utm_medium=email&utm_campaign=w", "utm_source=Google&utm_medium=CPC&utm_campaign=b",
				"gclid=R1", "gclid=R2", "utm_source=news&utm_medium=newsletter"); tags != "" {
				sep := "?"
				if strings.Contains(h.page, "?") {
					sep = "&"
				}
				h.page += sep + tags
			}
		case k < 17:
			h.t, h.ec, h.ea, h.ev, h.ni = "event", pick("ui", "media"), pick("click", "play"), pick("", "1.5", "2"), r.IntN(3) == 0
		default:
			h.t, h.et = "engagement", 1000+r.IntN(9000)
		}
		hits = append(hits, h)
	}
	return hits
}

// edOnEdge reports whether the milliseconds of a receipt could decide a
// rule for the hits: two within 2 seconds of the timeout apart, or a
// session lasting within a second of 10 s.
func edOnEdge(hits []bbHit, midnight time.Time, timeout time.Duration) bool {
	sorted := slices.Clone(hits)
	slices.SortFunc(sorted, func(a, b bbHit) int { return int(a.at - b.at) })
	for j := 1; j < len(sorted); j++ {
		if gap := sorted[j].at - sorted[j-1].at; gap >= timeout-2*time.Second && gap <= timeout+2*time.Second {
			return true
		}
	}
	for _, s := range edCalculate([]bbSend{{v: &bbVisitor{cid: "probe"}, hits: hits}}, midnight, timeout).sessions {
		if d := s.end - s.start; d >= 9*time.Second && d <= 11*time.Second {
			return true
		}
	}
	return false
}

// edExactTraffic is traffic of the Measurement API, whose events are dated
// to the microsecond the sender gives, so that edges are exact across
// requests too: 1 ms before midnight and a local hour, a gap of exactly the
// timeout and 1 ms more between a request and a later one, a late ping
// exactly the timeout after a session's last hit.
func edExactTraffic(t *testing.T, midnight, now time.Time) []bbSend {
	t.Helper()
	ms, m := time.Millisecond, time.Minute
	v := func(i int) *bbVisitor {
		return &bbVisitor{cid: fmt.Sprintf("edge-exact-%d", i), ua: bbChrome}
	}
	pv := func(at time.Duration, page, hid string) bbHit {
		return bbHit{at: at, t: "pageview", page: page, hid: hid}
	}
	v3, v4, v5 := v(3), v(4), v(5) // v5: when the day is 66 minutes old
	sends := []bbSend{
		{v: v(1), hits: []bbHit{pv(-ms, "/x-before", "x1")}},
		{v: v(2), hits: []bbHit{pv(-ms, "/x-before", "x2"), pv(0, "/x-at", "x3")}},
		{v: v3, hits: []bbHit{pv(2*m, "/x-t0", "x4")}},
		{v: v3, late: true, hits: []bbHit{pv(32*m, "/x-t1", "x5")}},
		{v: v4, hits: []bbHit{pv(3*m, "/x-t2", "x6")}},
		{v: v4, late: true, hits: []bbHit{pv(33*m+ms, "/x-t3", "x7")}},
	}
	if now.Sub(midnight) > 66*m {
		sends = append(sends,
			bbSend{v: v5, hits: []bbHit{pv(4*m, "/x-p", "x8")}},
			bbSend{v: v5, late: true, hits: []bbHit{
				{at: 34 * m, t: "engagement", page: "/x-p", et: 1000, hid: "x9"},
				{at: 64*m + ms, t: "engagement", page: "/x-p", et: 1000, hid: "x10"},
			}},
		)
	}
	h := now.Add(-10 * m).In(midnight.Location())
	h = time.Date(h.Year(), h.Month(), h.Day(), h.Hour(), 0, 0, 0, h.Location())
	if h.After(midnight) && now.Sub(h) < 3*time.Hour {
		at := h.Sub(midnight)
		sends = append(sends,
			bbSend{v: v(6), hits: []bbHit{pv(at-ms, "/x-hour-before", "x11")}},
			bbSend{v: v(7), hits: []bbHit{pv(at, "/x-hour-at", "x12"), pv(at+ms, "/x-hour-at2", "x13")}},
		)
	}
	return sends
}

// edHourTraffic dates hits around the start of a local hour, the latest
// that began 10 minutes to 2 hours 45 minutes ago and an hour or more after
// midnight (in a zone off the hour, not a UTC hour): a session starts in the
// hour of its first hit and stays there, a late hit before the hour moves a
// session to the hour before, and pings 25 minutes from two pageviews keep
// them one session.
func edHourTraffic(t *testing.T, midnight, now time.Time) []bbSend {
	t.Helper()
	h := now.Add(-10 * time.Minute).Truncate(time.Second).In(midnight.Location())
	h = time.Date(h.Year(), h.Month(), h.Day(), h.Hour(), 0, 0, 0, h.Location())
	if h.Before(midnight.Add(time.Hour)) || now.Sub(h) > 2*time.Hour+45*time.Minute {
		t.Logf("no local hour an hour or more after midnight began 10 minutes to 2 hours 45 minutes ago: hour boundaries and bridging pings are not checked")
		return nil
	}
	at := h.Sub(midnight)
	t.Logf("hour boundary %s", h.Format(time.RFC3339))
	v := func(i int) *bbVisitor {
		return &bbVisitor{cid: fmt.Sprintf("edge-hour-%d", i), ua: bbChrome, ip: fmt.Sprintf("198.51.100.%d", 200+i)}
	}
	pv := func(d time.Duration, page, hid string) bbHit {
		return bbHit{at: at + d, t: "pageview", page: page, hid: hid}
	}
	pvs := func(from time.Duration, n int, page string) []bbHit {
		var hs []bbHit
		for i := range n {
			hs = append(hs, pv(from+time.Duration(i)*time.Second, page, fmt.Sprintf("%s-%d", page, i)))
		}
		return hs
	}
	late := v(4)
	ping := func(d time.Duration, hid string) bbHit {
		return bbHit{at: at + d, t: "engagement", page: "/k", et: 1000, hid: hid}
	}
	k1, k2 := v(5), v(6)
	return []bbSend{
		// A ping is a hit: one 25 minutes after a pageview and 25 before
		// the next keeps them one session, whether it comes in order or
		// late, between two sessions written apart.
		{v: k1, hits: []bbHit{pv(-55*time.Minute, "/k1", "k1"), ping(-30*time.Minute, "k2"), pv(-5*time.Minute, "/k2", "k3")}},
		{v: k2, hits: []bbHit{pv(-55*time.Minute, "/k3", "k4"), pv(-5*time.Minute, "/k4", "k5")}},
		{v: k2, late: true, hits: []bbHit{ping(-30*time.Minute, "k6")}},
		// Each visitor's pageviews tell its hour apart: 3 + 8 in the hour
		// before, 4 in the hour. (Not closer to the hour than seconds: qt
		// dates a hit from its receipt, a few milliseconds after it was
		// sent.)
		{v: v(2), hits: pvs(-2*time.Second, 3, "/h-s-before")},
		{v: v(3), hits: pvs(0, 4, "/h-at")},
		{v: late, hits: pvs(time.Minute, 7, "/h-after")},
		{v: late, late: true, hits: pvs(-time.Minute, 1, "/h-late")},
	}
}

// edCompareMore compares the reports bbCompareAll leaves out over the
// range: the source and medium reports (sums of sessions over the other
// part) and the event categories and actions (unique events: sessions with
// an event of the category, or of the action).
func edCompareMore(t *testing.T, client *http.Client, m *simulate.Merchant, calc *bbCalc, q url.Values) {
	t.Helper()
	type acc struct {
		users         map[string]bool
		sessions      float64
		total, unique float64
		value         float64
	}
	want := map[string]map[string]*acc{}
	add := func(report, key, cid string) *acc {
		if want[report] == nil {
			want[report] = map[string]*acc{}
		}
		a := want[report][key]
		if a == nil {
			a = &acc{users: map[string]bool{}}
			want[report][key] = a
		}
		a.users[cid] = true
		return a
	}
	for _, s := range calc.sessions {
		add("source", s.source, s.cid).sessions++
		add("medium", s.medium, s.cid).sessions++
		seen := map[string]bool{}
		for _, h := range s.evs {
			cat := h.ec
			if cat == "" {
				cat = "(not set)"
			}
			for report, key := range map[string]string{"event_categories": cat, "event_actions": cat + "\x00" + h.ea} {
				a := add(report, key, s.cid)
				a.total++
				var f float64
				fmt.Sscan(h.ev, &f)
				a.value += f
				if !seen[report+key] {
					seen[report+key] = true
					a.unique++
				}
			}
		}
	}
	for _, r := range []struct{ path, dims, metrics string }{
		{"/v1/reports/acquisition/source", "source", "users,sessions"},
		{"/v1/reports/acquisition/medium", "medium", "users,sessions"},
		{"/v1/reports/behavior/event_categories", "event_category", "total_events,unique_events,event_value"},
		{"/v1/reports/behavior/event_actions", "event_category,event_action", "total_events,unique_events,event_value"},
	} {
		qq := url.Values{"metrics": {r.metrics}}
		for k, vs := range q {
			qq[k] = vs
		}
		report := r.path[strings.LastIndex(r.path, "/")+1:]
		a := getReport(context.Background(), t, client, m, r.path, qq)
		got := map[string]map[string]any{}
		for _, row := range a.Rows {
			var key []string
			for _, d := range strings.Split(r.dims, ",") {
				key = append(key, fmt.Sprint(row[d]))
			}
			got[strings.Join(key, "\x00")] = row
		}
		for key, w := range want[report] {
			g := got[key]
			if g == nil {
				t.Errorf("edges %s: row %q missing", report, key)
				continue
			}
			delete(got, key)
			exp := map[string]float64{"users": float64(len(w.users)), "sessions": w.sessions, "total_events": w.total, "unique_events": w.unique, "event_value": w.value}
			for _, metric := range strings.Split(r.metrics, ",") {
				if d := num(g[metric]) - exp[metric]; d > 1e-6 || d < -1e-6 {
					t.Errorf("edges %s: row %q: %s = %v, expected %v", report, key, metric, g[metric], exp[metric])
				}
			}
		}
		for key, g := range got {
			t.Errorf("edges %s: row %q not expected: %v", report, key, g)
		}
	}
}

// edTraffic is the audit's traffic, dated from the property's local
// midnight: within 35 minutes before it and 38 after, which collection
// accepts (4 hours back) whenever zoneWithOddMidnightAgo's or
// zoneWithMidnightAgo's midnight was.
func edTraffic() []bbSend {
	n := 0
	hid := func() string { n++; return fmt.Sprintf("edge-hit-%03d", n) }
	pv := func(at time.Duration, page, ref string) bbHit {
		return bbHit{at: at, t: "pageview", page: page, ref: ref, hid: hid()}
	}
	ev := func(at time.Duration, page, cat, act, value string, ni bool) bbHit {
		return bbHit{at: at, t: "event", page: page, ec: cat, ea: act, ev: value, ni: ni, hid: hid()}
	}
	ping := func(at time.Duration, page string) bbHit {
		return bbHit{at: at, t: "engagement", page: page, et: 1000, hid: hid()}
	}
	i := 0
	v := func() *bbVisitor {
		i++
		return &bbVisitor{cid: fmt.Sprintf("edge-visitor-%02d", i), ua: bbChrome, ip: fmt.Sprintf("198.51.100.%d", 100+i)}
	}
	m, ms := time.Minute, time.Millisecond
	tagged := func(at time.Duration, query string) bbSend {
		return bbSend{v: v(), hits: []bbHit{pv(at, "/c?"+query, "")}}
	}
	reused := v()
	sends := []bbSend{
		// Exactly 30:00 continues; 30:00.001 is strictly longer and ends
		// the session (one batch: exact gaps to the millisecond).
		{v: v(), hits: []bbHit{pv(30*time.Second, "/t0", ""), pv(30*m+30*time.Second, "/t1", "")}},
		{v: v(), hits: []bbHit{pv(2*m, "/t2", ""), pv(32*m+ms, "/t3", "")}},
		// A batch out of order: sessions come from the hits sorted by time,
		// so the bing referral lands on /o1 and /o3 is the exit.
		{v: v(), hits: []bbHit{
			pv(12*m, "/o3", "https://shop.example/o2"),
			ev(11*m, "/o2", "ui", "click", "", false),
			pv(5*m, "/o1", "https://www.bing.com/search?q=shoes"),
			pv(8*m, "/o2", "https://shop.example/o1"),
		}},
		// Two pageviews of one time in one batch are dated in the order
		// sent (docs/collection.md), whatever their IDs: /x1 lands.
		{v: v(), hits: []bbHit{
			{at: 3 * m, t: "pageview", page: "/x1", hid: "zz-last-id"},
			{at: 3 * m, t: "pageview", page: "/x2", hid: "aa-first-id"},
		}},
		// Engaged means longer than 10 s: a ping at exactly 10.000 s is not,
		// at 10.001 s is; both bounce (a ping is no interaction) and
		// measure their page.
		{v: v(), hits: []bbHit{pv(3*m, "/e10", ""), ping(3*m+10*time.Second, "/e10")}},
		{v: v(), hits: []bbHit{pv(4*m, "/e11", ""), ping(4*m+10*time.Second+ms, "/e11")}},
		// A page seen twice: two pageviews, one unique, its entrance and
		// exit; both views measured (the last by the event after it).
		{v: v(), hits: []bbHit{
			pv(6*m, "/a", "https://duckduckgo.com/"),
			pv(7*m, "/b", "https://shop.example/a"),
			pv(8*m, "/a", "https://shop.example/b"),
			ev(9*m, "/a", "scroll", "depth", "", true),
		}},
		// The same campaign values, first by utm tags, then by gclid: the
		// campaign data differ, so a new session (both google / cpc /
		// brand, Paid Search); the gclid again continues it.
		{v: v(), hits: []bbHit{
			pv(13*m, "/g?utm_source=google&utm_medium=cpc&utm_campaign=brand", ""),
			pv(14*m, "/g?gclid=XYZ&utm_campaign=brand", ""),
			pv(15*m, "/g2?gclid=XYZ&utm_campaign=brand", "https://shop.example/g"),
		}},
		// Self-referral with tags: the tags attribute, the referrer is
		// (none); the custom channel's pattern ignores case. A referral
		// exclusion mid-session neither splits nor attributes.
		{v: v(), hits: []bbHit{
			pv(16*m, "/s?utm_source=news&utm_medium=NewsLetter&utm_campaign=dec", "https://shop.example/home"),
			pv(17*m, "/s2", "https://www.pay.example/checkout"),
		}},
		// A referral exclusion as first hit is Direct.
		{v: v(), hits: []bbHit{pv(18*m, "/p", "https://checkout.pay.example/done")}},
		// ni=0 is an interaction: no bounce. By the pixel.
		{v: v(), get: true, hits: []bbHit{pv(19*m, "/ni", ""), withExtra(ev(19*m+5*time.Second, "/ni", "ui", "open", "", false), map[string]string{"ni": "0"})}},
		// An events-only session yesterday, the user's first (new, no
		// landing page, no bounce); today's session is returning.
		{v: v(), hits: []bbHit{ev(-30*m, "/v", "video", "play", "2", false), ev(-29*m, "/v", "video", "play", "3", false), pv(m, "/v", "")}},
		// A session starting just before midnight, off the hour there.
		{v: v(), hits: []bbHit{pv(-20*m, "/late-night", "https://t.co/abc"), pv(-10*m, "/late-night2", "https://shop.example/late-night")}},
		// Referrers by category (GA4's source categories).
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.instagram.com/")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.youtube.com/watch?v=1")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.ecosia.org/search?q=x")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://Blog.Example.net/Post/1?x=y")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://m.facebook.com/story")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://lnkd.in/abc")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.twitch.tv/x")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.ebay.co.uk/itm/1")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://search.yahoo.com/search?p=x")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://yandex.ru/search/?text=x")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "https://www.google.co.uk/")}},
		{v: v(), hits: []bbHit{pv(20*m, "/r", "http://google.com")}},
		// Empty tags are none; an empty source with a paid medium is
		// (not set) / cpc; white space around a value is no part of it.
		tagged(26*m, "utm_source=&utm_medium=&utm_campaign="),
		tagged(26*m, "utm_source=&utm_medium=cpc"),
		tagged(26*m, "utm_source=%09Bing%20&utm_medium=%0Acpc"),
		// An events-only session that a ping makes longer than 10 s:
		// engaged, no bounce.
		{v: v(), hits: []bbHit{ev(27*m, "/eo", "ui", "load", "", true), ping(27*m+20*time.Second, "/eo")}},
		// utm keys are case-sensitive: UTM_SOURCE is no tag (Direct), but
		// the page drops it as an attribution parameter (any case).
		{v: v(), hits: []bbHit{pv(21*m, "/u?UTM_SOURCE=abc&UTM_MEDIUM=cpc&keep=1", "")}},
		// Case and odd values against the default channel group.
		tagged(22*m, "utm_source=Google&utm_medium=CPC"),
		tagged(22*m, "utm_source=newsletter-x&utm_medium=cpc&utm_campaign=WORKSHOP"),
		tagged(22*m, "utm_source=brand&utm_medium=email&utm_campaign=eShop-Days"),
		tagged(22*m, "utm_source=x&utm_medium=Web-Push"),
		tagged(22*m, "utm_source=Firebase&utm_medium=notif"),
		tagged(23*m, "utm_source=google&utm_medium=CPM"),
		tagged(23*m, "utm_source=dsp&utm_medium=CPM"),
		tagged(23*m, "utm_source=IG&utm_medium=Paid"),
		tagged(23*m, "utm_source=google&utm_medium=cpc&utm_campaign=Cross-Network-Q1"),
		tagged(24*m, "utm_source=SMS"),
		tagged(24*m, "utm_source=google"),
		tagged(24*m, "utm_campaign=spring"),
		tagged(24*m, "utm_source=podcast&utm_medium=AUDIO"),
		tagged(25*m, "utm_source=partner&utm_medium=Affiliate"),
		tagged(25*m, "utm_source=weekly&utm_medium=e-mail"),
		tagged(25*m, "utm_source=(direct)&utm_medium=(none)"),
		tagged(25*m, "utm_source=a&utm_medium=b&utm_campaign=50%25+off"),
		tagged(26*m, "q=1&utm_source=a&utm_medium=referral"),
		// Hosts that only end like the site's or the exclusion's are
		// other sites; the site's own host in capitals or with a port is
		// the site.
		{v: v(), hits: []bbHit{pv(30*m, "/h", "https://myshop.example/x")}},
		{v: v(), hits: []bbHit{pv(30*m, "/h", "https://shop.example.evil.test/")}},
		{v: v(), hits: []bbHit{pv(30*m, "/h", "https://notpay.example/")}},
		{v: v(), hits: []bbHit{pv(30*m, "/h", "https://SHOP.EXAMPLE/x")}},
		{v: v(), hits: []bbHit{pv(30*m, "/h", "https://shop.example:8443/x")}},
		// A page on the site's host in capitals with a port is the site's:
		// its referrer on the site is none.
		{v: v(), host: "SHOP.Example:8443", hits: []bbHit{pv(30*m, "/hp", "https://shop.example/")}},
		// An empty query and a fragment are no part of the page; a query
		// of attribution parameters alone leaves none.
		{v: v(), hits: []bbHit{pv(31*m, "/e?", ""), pv(31*m+time.Second, "/e?utm_term=x", ""), pv(31*m+2*time.Second, "/e?a=1#f?b=2", "")}},
		// gclid and msclkid together: Google's click ID first.
		{v: v(), hits: []bbHit{pv(31*m, "/gm?msclkid=M1&gclid=G1", "")}},
		// A non-interaction event alone: a session, no page, no bounce.
		{v: v(), hits: []bbHit{ev(32*m, "/n", "ui", "seen", "", true)}},
		// Two actions of one category in a session: one unique event of
		// the category, one of each action.
		{v: v(), hits: []bbHit{pv(32*m, "/cat", ""), ev(32*m+time.Second, "/cat", "media", "play", "1", false), ev(32*m+2*time.Second, "/cat", "media", "pause", "", false), ev(32*m+3*time.Second, "/cat", "media", "play", "", false)}},
		// A custom rule of two patterns needs both; a referrer never
		// starts a session, and tags beat it (the referrer is still the
		// session's referrer).
		tagged(33*m, "utm_source=Partner&utm_medium=CPC"),
		tagged(33*m, "utm_source=partner&utm_medium=ppc"),
		{v: v(), hits: []bbHit{pv(33*m, "/m?utm_source=mail&utm_medium=email", "https://www.google.com/search?q=x")}},
		{v: v(), hits: []bbHit{pv(33*m, "/d", ""), pv(34*m, "/d2", "https://www.google.com/")}},
		// A pageview just before midnight and an interaction event just
		// after: yesterday's session bounces, today's has no page.
		{v: v(), hits: []bbHit{pv(-10*time.Second, "/mn", ""), ev(5*time.Second, "/mn", "ui", "open", "", false)}},
		// A non-interaction event before the only pageview: it lands
		// there, and bounces.
		{v: v(), hits: []bbHit{ev(36*m, "/nb", "ui", "seen", "", true), pv(37*m, "/nb", "")}},
		// Late pageviews into sessions already written: the first
		// pageview of an events-only session (after its event, and before
		// another's) becomes its landing page; one between two views of a
		// page splits the first view's time and keeps one unique view.
		{v: v(), hits: []bbHit{ev(28*m, "/lv", "ui", "open", "", false)}},
		{v: v(), hits: []bbHit{ev(28*m, "/lw", "ui", "seen", "", true)}},
		{v: v(), hits: []bbHit{pv(10*m, "/la", ""), pv(12*m, "/la", "https://shop.example/la")}},
		// ... and a late pageview of yesterday into an events-only
		// session there, the visitor back today.
		{v: v(), hits: []bbHit{ev(-20*m, "/ly", "ui", "open", "", true), pv(8*m, "/lt", "")}},
		// An event ID used again by its client with other content is the
		// hit it names, counted once: the first.
		{v: reused, hits: []bbHit{{at: 27 * m, t: "pageview", page: "/d1", hid: "edge-reused"}}},
		{v: reused, late: true, hits: []bbHit{{at: 28 * m, t: "pageview", page: "/d2", hid: "edge-reused"}, pv(29*m, "/d3", "")}},
		// A late hit: an interaction event before a visitor's pageview
		// keeps its landing page and cancels its bounce.
		{v: v(), hits: []bbHit{pv(35*m, "/lb", "https://www.google.com/")}},
	}
	lb := sends[len(sends)-1].v
	visitorOf := func(page string) *bbVisitor {
		for _, s := range sends {
			if s.hits[0].page == page {
				return s.v
			}
		}
		panic(page)
	}
	return append(sends,
		bbSend{v: lb, late: true, hits: []bbHit{ev(34*m, "/lb", "ui", "open", "", false)}},
		bbSend{v: visitorOf("/lv"), late: true, hits: []bbHit{pv(29*m, "/lv", "")}},
		bbSend{v: visitorOf("/lw"), late: true, hits: []bbHit{pv(27*m, "/lw", "https://www.bing.com/")}},
		bbSend{v: visitorOf("/la"), late: true, hits: []bbHit{pv(11*m, "/lb2", "https://shop.example/la")}},
		bbSend{v: visitorOf("/ly"), late: true, hits: []bbHit{pv(-19*m, "/ly", "https://t.co/x")}},
	)
}

// edCalculate derives the sessions of the traffic from the brief's and
// docs/processing.md's rules, written apart from bbCalculate: its own
// sessionizing, attribution (own host shop.example and the exclusion
// pay.example), page dimension (no clean-up rules: the attribution
// parameters dropped) and channels (the custom Newsletter rule, then GA4's
// default channel group with the few sites the traffic names).
func edCalculate(sends []bbSend, midnight time.Time, timeout time.Duration) *bbCalc {
	loc := midnight.Location()
	seen := map[string]bool{}
	byVisitor := map[string][]bbHit{}
	device := map[string]string{} // of the visitor's user agent
	var order []string
	for _, s := range sends {
		for _, h := range s.hits {
			if key := s.v.cid + "/" + h.hid; !seen[key] {
				seen[key] = true
				if byVisitor[s.v.cid] == nil {
					order = append(order, s.v.cid)
					device[s.v.cid] = "desktop"
					if strings.Contains(s.v.ua, "iPhone") {
						device[s.v.cid] = "mobile"
					}
				}
				byVisitor[s.v.cid] = append(byVisitor[s.v.cid], h)
			}
		}
	}
	day := func(at time.Duration) string { return midnight.Add(at).In(loc).Format("2006-01-02") }
	c := &bbCalc{filtered: map[bool]map[string]int{false: {}, true: {}}}
	for _, cid := range order {
		hits := byVisitor[cid]
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].at < hits[j].at }) // ties: in the order sent
		var sessions [][]bbHit
		for _, h := range hits {
			n := len(sessions)
			joins := n > 0
			if joins {
				cur := sessions[n-1]
				last := cur[len(cur)-1]
				joins = h.at-last.at <= timeout && day(h.at) == day(last.at)
				if camp := edCampaign(h); joins && h.t != "engagement" && camp != "" && camp != edCampaign(cur[0]) {
					joins = false
				}
			}
			switch {
			case joins:
				sessions[n-1] = append(sessions[n-1], h)
			case h.t != "engagement":
				sessions = append(sessions, []bbHit{h})
			}
		}
		for i, hs := range sessions {
			first := midnight.Add(hs[0].at).In(loc)
			y, w := first.ISOWeek()
			s := &bbSession{cid: cid, today: hs[0].at >= 0, first: i == 0, start: hs[0].at, end: hs[len(hs)-1].at,
				landing: "(not set)", exit: "(not set)", device: device[cid],
				hour: first.Format("2006-01-02T15"), day: first.Format("2006-01-02"), week: fmt.Sprintf("%d-W%02d", y, w), month: first.Format("2006-01")}
			edAttribute(s, hs[0])
			for j, h := range hs {
				switch h.t {
				case "pageview":
					page := edPage(h.page)
					if s.pageviews == 0 {
						s.landing = page
					}
					s.exit = page
					s.pageviews++
					pv := bbPageview{page: page}
					if j < len(hs)-1 { // until the next pageview, else the session's last hit
						pv.measured, pv.time = true, (s.end - h.at).Seconds()
						for _, next := range hs[j+1:] {
							if next.t == "pageview" {
								pv.time = (next.at - h.at).Seconds()
								break
							}
						}
					}
					s.pages = append(s.pages, pv)
				case "event":
					s.events++
					s.evs = append(s.evs, h)
					if !h.ni {
						s.interaction = true
					}
				}
			}
			c.sessions = append(c.sessions, s)
		}
	}
	return c
}

// edLog logs the calculator's sessions, for a failure's reader.
func edLog(t *testing.T, name string, c *bbCalc) {
	t.Helper()
	for _, s := range c.sessions {
		t.Logf("%s: expected session %s %v..%v %s / %s / %s %s referrer %s landing %s exit %s pv %d ev %d",
			name, s.cid, s.start, s.end, s.source, s.medium, s.campaign, s.channel, s.referrer, s.landing, s.exit, s.pageviews, s.events)
	}
}

// edTags are a page's utm tags and click IDs, trimmed; names are
// case-sensitive.
func edTags(page string) url.Values {
	_, query, _ := strings.Cut(page, "?")
	q, _ := url.ParseQuery(query)
	for k := range q {
		q.Set(k, strings.TrimSpace(q.Get(k)))
	}
	return q
}

// edCampaign is a hit's campaign data, "" when it has none.
func edCampaign(h bbHit) string {
	q := edTags(h.page)
	c := []string{q.Get("utm_source"), q.Get("utm_medium"), q.Get("utm_campaign"), q.Get("gclid"), q.Get("msclkid")}
	if strings.Join(c, "") == "" {
		return ""
	}
	return strings.Join(c, "\x00")
}

// edPage is the page dimension: path and query without the attribution
// parameters (any case).
func edPage(page string) string {
	page, _, _ = strings.Cut(page, "#")
	path, query, _ := strings.Cut(page, "?")
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		name, _, _ := strings.Cut(kv, "=")
		name = strings.ToLower(name)
		if kv == "" || strings.HasPrefix(name, "utm_") || slices.Contains([]string{"gclid", "gbraid", "wbraid", "msclkid", "dclid", "fbclid"}, name) {
			continue
		}
		kept = append(kept, kv)
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}

func edAttribute(s *bbSession, h bbHit) {
	q := edTags(h.page)
	notSet := func(v string) string {
		if v == "" {
			return "(not set)"
		}
		return v
	}
	s.referrer = "(none)"
	host, external := "", false
	if u, err := url.Parse(h.ref); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		host = strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
		external = true
		for _, own := range []string{"shop.example", "pay.example"} {
			if host == own || strings.HasSuffix(host, "."+own) {
				external = false
			}
		}
		if external {
			s.referrer = host
			if u.Path != "/" {
				s.referrer += u.Path
			}
		}
	}
	engines := map[string]string{"google.com": "google", "google.co.uk": "google", "bing.com": "bing", "duckduckgo.com": "duckduckgo",
		"ecosia.org": "ecosia", "search.yahoo.com": "yahoo", "yandex.ru": "yandex"}
	switch {
	case q.Get("gclid") != "":
		s.source, s.medium, s.campaign = "google", "cpc", notSet(q.Get("utm_campaign"))
	case q.Get("msclkid") != "":
		s.source, s.medium, s.campaign = "bing", "cpc", notSet(q.Get("utm_campaign"))
	case q.Get("utm_source")+q.Get("utm_medium")+q.Get("utm_campaign") != "":
		s.source, s.medium, s.campaign = notSet(q.Get("utm_source")), notSet(q.Get("utm_medium")), notSet(q.Get("utm_campaign"))
	case external && engines[host] != "":
		s.source, s.medium, s.campaign = engines[host], "organic", "(organic)"
	case external:
		s.source, s.medium, s.campaign = host, "referral", "(referral)"
	default:
		s.source, s.medium, s.campaign = "(direct)", "(none)", "(direct)"
	}
	s.channel = edChannel(s.source, s.medium, s.campaign)
}

// edChannel is the custom rule, then GA4's default channel group
// (case-insensitive, first match wins) over the sites the traffic names.
func edChannel(source, medium, campaign string) string {
	src, med, camp := strings.ToLower(source), strings.ToLower(medium), strings.ToLower(campaign)
	in := func(v string, set ...string) bool { return slices.Contains(set, v) }
	search := in(src, "google", "bing", "duckduckgo", "ecosia", "yahoo", "yandex")
	social := in(src, "t.co", "instagram.com", "ig", "m.facebook.com", "lnkd.in")
	video := in(src, "youtube.com", "twitch.tv")
	shopping := in(src, "ebay.co.uk")
	shopCampaign := regexp.MustCompile(`^(.*(([^a-df-z]|^)shop|shopping).*)$`).MatchString(camp)
	paid := regexp.MustCompile(`^(.*cp.*|ppc|retargeting|paid.*)$`).MatchString(med)
	switch {
	case med == "newsletter":
		return "Newsletter"
	case src == "partner" && med == "cpc":
		return "Partner ads"
	case src == "(direct)" && in(med, "(none)", "(not set)"):
		return "Direct"
	case strings.Contains(camp, "cross-network"):
		return "Cross-network"
	case (shopping || shopCampaign) && paid:
		return "Paid Shopping"
	case search && paid:
		return "Paid Search"
	case social && paid:
		return "Paid Social"
	case video && paid:
		return "Paid Video"
	case in(med, "display", "banner", "expandable", "interstitial", "cpm"):
		return "Display"
	case paid:
		return "Paid Other"
	case shopping || shopCampaign:
		return "Organic Shopping"
	case social || in(med, "social", "social-network", "social-media", "sm", "social network", "social media"):
		return "Organic Social"
	case video || strings.Contains(med, "video"):
		return "Organic Video"
	case search || med == "organic":
		return "Organic Search"
	case in(med, "referral", "app", "link"):
		return "Referral"
	case in(src, "email", "e-mail", "e_mail", "e mail") || in(med, "email", "e-mail", "e_mail", "e mail"):
		return "Email"
	case med == "affiliate":
		return "Affiliates"
	case med == "audio":
		return "Audio"
	case src == "sms" || med == "sms":
		return "SMS"
	case strings.HasSuffix(med, "push") || strings.Contains(med, "mobile") || strings.Contains(med, "notification") || src == "firebase":
		return "Mobile Push Notifications"
	}
	return "Unassigned"
}
