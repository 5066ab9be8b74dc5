package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/tenant"
)

// TestAcceptanceBlackBoxReprocess audits reprocessing from outside, as an
// operator runs it (docs/operations.md, "Running a reprocessing job") and
// as docs/processing.md defines it: a merchant changes the rules, the
// closed days are reprocessed with today's rules (every report then says
// what the new rules would have said had they always been in place), then
// with the rules of the time (every report as it was), through the API and
// the reprocess command, twice, resumed, while live traffic goes on; and
// the documented refusals.
//
// Only closed days (ended at least two days ago) can be reprocessed, and
// collection takes hits at most 4 hours old, so the traffic of the closed
// days is put in the hits topic as collection would have put it then
// (received then, stamped with the rules version of the time): processing
// archives and derives it as any hit.
func TestAcceptanceBlackBoxReprocess(t *testing.T) {
	stack, cfg := startStack(t, "DAY_CACHE_TTL=1ms", "CACHE_FINAL_TTL=1ms")
	ctx := context.Background()
	c := &mpaClient{t: t, ctx: ctx, http: &http.Client{Timeout: 30 * time.Second}, gw: strings.TrimRight(stack.GatewayURL(), "/")}
	zone, loc, midnight := zoneWithMidnightAgo(t)
	day := func(n int) string { return midnight.In(loc).AddDate(0, 0, n).Format("2006-01-02") }
	d4, d3 := day(-4), day(-3)

	tok := c.signUp("bb-reprocess@shop.example")
	p := c.createProperty(tok, map[string]any{"name": "Shop", "hostnames": []string{"shop.example"}, "time_zone": zone})
	var sec struct {
		Secret string `json:"secret"`
	}
	c.do("POST", "/v1/properties/"+p.ID+"/api-secrets", tok, map[string]any{"name": "backend"}, http.StatusCreated, &sec)

	// The closed days' traffic, under the rules of the time (version 1,
	// the defaults).
	const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
	const headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36"
	var seeded []rpHit
	for i, d := range []string{d4, d3} {
		base, _ := time.ParseInLocation("2006-01-02 15:04", d+" 10:00", loc)
		at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
		ua := headless
		if i == 1 {
			ua = chrome // the same visitor, its browser updated
		}
		seeded = append(seeded,
			// From an office network the new rules exclude.
			rpPV("office", at(0), "/a", "", chrome, "198.51.100.0"),
			rpPV("office", at(1), "/b", "", chrome, "198.51.100.0"),
			// A headless browser on the first day only: new on the second
			// day under the new rules.
			rpPV("headless", at(5), "/a", "", ua, "203.0.113.0"),
			// Back from the payment provider: Referral, then Direct.
			rpPV("payer", at(10), "/thanks", "https://www.paypal.com/checkout/done", chrome, "203.0.113.0"),
			// An admin page, excluded later: two pages, then a bounce.
			rpPV("admin", at(60), "/home", "", chrome, "192.0.2.0"),
			rpPV("admin", at(61), "/admin/settings", "", chrome, "192.0.2.0"),
			// A partner: Referral, then the custom channel Partners.
			rpPV("partner", at(70), "/?utm_source=partner-a.com&utm_medium=referral", "", chrome, "192.0.2.0"),
			// 40 minutes apart: two sessions, then one (timeout 60).
			rpPV("slow", at(120), "/a", "", chrome, "192.0.2.0"),
			rpPV("slow", at(160), "/b", "", chrome, "192.0.2.0"),
			// A checkout, a goal under the new rules, with a purchase.
			rpPV("buyer", at(180), "/cart", "https://www.google.com/search?q=shoes", chrome, "192.0.2.0"),
			rpPV("buyer", at(182), "/checkout", "", chrome, "192.0.2.0"),
			rpEv("buyer", at(183), "shop", "purchase", 20, chrome, "192.0.2.0"),
		)
	}
	seedHits(t, cfg, p, seeded)
	v1, v2 := rpRules{timeout: 30 * time.Minute}, rpRules{
		timeout:      60 * time.Minute,
		ip:           []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		userAgents:   []*regexp.Regexp{regexp.MustCompile("(?i)HeadlessChrome")},
		pageExclude:  []*regexp.Regexp{regexp.MustCompile("^/admin(/|$)")},
		referralExcl: []string{"paypal.com"},
		goals:        []rpGoal{{id: "checkout", page: regexp.MustCompile("^/checkout$"), value: 5}},
		channels:     []rpChannel{{name: "Partners", source: regexp.MustCompile("(?i)^partner-a\\.com$")}},
	}
	before, beforeFiltered := rpCalc(seeded, v1, loc)
	after, afterFiltered := rpCalc(seeded, v2, loc)
	check := func(what string, calc *mpaCalc, filtered map[string]float64) {
		t.Helper()
		rpCheckReports(t, c, tok, p.ID, what, calc, filtered, d4, d3)
	}
	// Live processing derives the closed days as the rules of the time say.
	rpWaitSessions(t, c, tok, p.ID, d4, d3, len(before.sessionsIn(d4, d3)))
	check("live processing", before, beforeFiltered)
	original := rpSnapshot(t, c, tok, p.ID, d4, d3)

	op := &rpOperator{t: t, stack: stack, cfg: cfg}
	job := func(from, to, rules string) string {
		return fmt.Sprintf(`{"property_id":%q,"from":%q,"to":%q,"rules":%q}`, p.ID, from, to, rules)
	}

	// The merchant changes the rules, and the jobs below are made at
	// once: processing's cached copy of the rules may not have the change
	// yet (its change feed is followed a few seconds after start-up), and
	// a job's "current" rules must still be the new ones.
	c.do("PUT", "/v1/properties/"+p.ID+"/rules", tok, map[string]any{
		"exclusions":              map[string]any{"ip": []string{"198.51.100.0/24"}, "user_agents": []string{"HeadlessChrome"}},
		"pages":                   map[string]any{"exclude": []string{"^/admin(/|$)"}},
		"session_timeout_minutes": 60,
		"referral_exclusions":     []string{"paypal.com"},
		"goals":                   []map[string]any{{"id": "checkout", "name": "Checkout", "page_path": "^/checkout$", "value": 5}},
		"channels":                []map[string]any{{"name": "Partners", "source": "^partner-a\\.com$"}},
	}, http.StatusOK, nil)

	// Refusals, as documented.
	for _, e := range []struct {
		body   string
		status int
		code   string
	}{
		{job(day(-1), day(0), "current"), 400, "invalid_job"},      // not closed
		{job(day(-500), day(-380), "current"), 400, "invalid_job"}, // past the archive's retention
		{job("2026-02-30", d3, "current"), 400, "invalid_job"},     // not a date
		{job(d3, d4, "current"), 400, "invalid_job"},               // backwards
		{job(d4, d3, "today"), 400, "invalid_job"},                 // no such rules
		{job(day(-400), d3, "current"), 400, "invalid_job"},        // longer than 366 days
		{strings.Replace(job(d4, d3, "current"), p.ID, "00000000-0000-0000-0000-000000000000", 1), 404, "not_found"},
	} {
		if status, body := op.call("POST", "/internal/v1/reprocess", e.body); status != e.status || !strings.Contains(body, `"code":"`+e.code+`"`) {
			t.Errorf("POST %s: %d %s, want %d %s", e.body, status, body, e.status, e.code)
		}
	}
	if out, err := op.command("-property="+p.ID, "-from="+day(-1), "-to="+day(0), "-rules=current"); err == nil || !strings.Contains(out, "day still open") {
		t.Errorf("reprocess of yesterday and today: %v %s, want a refusal", err, out)
	}

	// Live traffic today, while the jobs run: each hit counted once.
	live := 0
	sendLive := func(n int) {
		for i := 0; i < n; i++ {
			live++
			cid := fmt.Sprintf("live-%d", live)
			c.sendMP(p.TrackingID, sec.Secret, []mpaEvent{{cid: cid, name: "page_view", t: time.Now().Add(-time.Second),
				params: map[string]any{"page_location": "https://shop.example/live"}}}, http.StatusNoContent)
		}
	}

	// Through the API, with live traffic meanwhile.
	j := op.start(job(d4, d3, "current"))
	sendLive(5)
	op.wait(p.ID, j, 2)
	check("reprocessed with today's rules (API)", after, afterFiltered)
	withNew := rpSnapshot(t, c, tok, p.ID, d4, d3)

	// The same job again, by the command, and a resume of the one done.
	if out, err := op.command("-property="+p.ID, "-from="+d4, "-to="+d3, "-rules=current"); err != nil || !strings.Contains(out, "done, 2 of 2 days") {
		t.Errorf("reprocess command: %v %s", err, out)
	}
	sendLive(3)
	rpSameSnapshot(t, "the same job again (command)", withNew, rpSnapshot(t, c, tok, p.ID, d4, d3))
	if status, body := op.call("POST", "/internal/v1/reprocess/"+p.ID+"/"+j+"/resume", ""); status != http.StatusAccepted || !strings.Contains(body, `"status":"running"`) {
		t.Errorf("resume of a done job: %d %s", status, body)
	}
	op.wait(p.ID, j, 2)
	rpSameSnapshot(t, "a resumed job", withNew, rpSnapshot(t, c, tok, p.ID, d4, d3))

	// The rules of the time, over a long range: a second job and a resume
	// are refused while it runs, its progress grows to its days.
	long := op.start(job(day(-360), d3, "historical"))
	if status, body := op.call("POST", "/internal/v1/reprocess", job(d4, d3, "current")); status != http.StatusConflict || !strings.Contains(body, `"code":"job_running"`) {
		t.Errorf("a second job while one runs: %d %s, want 409 job_running", status, body)
	}
	if status, body := op.call("POST", "/internal/v1/reprocess/"+p.ID+"/"+long+"/resume", ""); status != http.StatusConflict || !strings.Contains(body, `"code":"job_running"`) {
		t.Errorf("a resume of a running job: %d %s, want 409 job_running", status, body)
	}
	if out, err := op.command("-property="+p.ID, "-from="+d4, "-to="+d3, "-rules=current"); err == nil || !strings.Contains(out, "a reprocessing job is running for the property") {
		t.Errorf("reprocess command while a job runs: %v %s, want a refusal", err, out)
	}
	sendLive(2)
	op.wait(p.ID, long, 358)
	check("reprocessed with the rules of the time", before, beforeFiltered)
	rpSameSnapshot(t, "reprocessed with the rules of the time", original, rpSnapshot(t, c, tok, p.ID, d4, d3))

	// Today: every live hit once.
	rpWaitSessions(t, c, tok, p.ID, day(0), day(0), live)
	var pages reportAnswer
	pages, _ = c.report(tok, "behavior/pages", url.Values{"property_id": {p.ID}, "from": {day(0)}, "to": {day(0)}})
	if len(pages.Rows) != 1 || pages.Rows[0]["page"] != "/live" || num(pages.Rows[0]["pageviews"]) != float64(live) {
		t.Errorf("today's pages: %v, want /live with %d pageviews", pages.Rows, live)
	}
}

// zoneWithMidnightAgo picks a fixed-offset zone whose local midnight was
// between 1h55 and 2h55 ago, so that hits within the 4 hours collection
// accepts fall on two property-local days: yesterday and today.
func zoneWithMidnightAgo(t *testing.T) (string, *time.Location, time.Time) {
	t.Helper()
	now := time.Now().UTC()
	target := 2
	if now.Minute() >= 55 {
		target = 1
	}
	off := ((target-now.Hour())%24 + 24) % 24
	if off > 11 {
		off -= 24
	}
	zone := "UTC"
	switch {
	case off > 0:
		zone = fmt.Sprintf("Etc/GMT-%d", off)
	case off < 0:
		zone = fmt.Sprintf("Etc/GMT+%d", -off)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	ln := now.In(loc)
	t.Logf("zone %s, local now %s", zone, ln.Format(time.DateTime))
	return zone, loc, time.Date(ln.Year(), ln.Month(), ln.Day(), 0, 0, 0, 0, loc).UTC()
}

// rpHit is a hit of the closed days as collection would have queued it.
type rpHit struct {
	mpaHit
	ua, ip string
	// The enrichment collection would have given it: device category
	// (desktop when empty), browser, OS and country (none when empty).
	device, browser, os, country string
	// The rules version collection stamped on it (1 when 0).
	version int
	// What collection flagged in flight (none when empty): a known
	// crawler's user agent, the IP exclusion rule of that version (as
	// written) the full address matched.
	bot bool
	ipx string
}

func rpPV(cid string, tm time.Time, page, ref, ua, ip string) rpHit {
	h := mpaHitOf(mpaEvent{cid: cid, name: "page_view", t: tm, params: map[string]any{"page_location": "https://shop.example" + page, "page_referrer": ref}})
	return rpHit{mpaHit: *h, ua: ua, ip: ip}
}

func rpEv(cid string, tm time.Time, cat, act string, value float64, ua, ip string) rpHit {
	h := mpaHitOf(mpaEvent{cid: cid, name: act, t: tm, params: map[string]any{"event_category": cat, "value": value, "page_location": "https://shop.example/checkout"}})
	return rpHit{mpaHit: *h, ua: ua, ip: ip}
}

// seedHits puts hits in the hits topic as collection queued them when they
// were received (stamped with their rules version, 1 unless set; flagged
// a bot, excluded by an IP rule, only when set).
func seedHits(t *testing.T, cfg localstack.Config, p mpaProperty, hits []rpHit) {
	t.Helper()
	kcfg := &kafka.Config{Brokers: "127.0.0.1:" + strconv.Itoa(cfg.KafkaPort)}
	prod, err := sarama.NewSyncProducer(kcfg.BrokerList(), kcfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i, s := range hits {
		u, _ := url.Parse(s.params["page_location"].(string))
		h := &hit.Hit{PropertyID: p.ID, TrackingID: p.TrackingID, ClientID: s.cid, Type: hit.TypePageview, Origin: hit.OriginBrowser,
			Time: s.t, ReceivedAt: s.t.Add(time.Second), URL: u.String(), Hostname: u.Host, Path: u.RequestURI(), Referrer: s.ref,
			UserAgent: s.ua, IP: s.ip, DeviceCategory: cmp.Or(s.device, "desktop"), Browser: s.browser, OS: s.os, Country: s.country, RuleVersion: cmp.Or(s.version, 1),
			Bot: s.bot, IPExcludedBy: s.ipx}
		if s.kind == "event" {
			h.Type, h.Category, h.Action, h.Value, h.HasValue = hit.TypeEvent, s.cat, s.act, s.value, true
		}
		h.ID = h.DeriveID("seed-" + strconv.Itoa(i))
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

// rpRules is what the calculator knows of a rules version.
type rpRules struct {
	timeout      time.Duration
	ip           []netip.Prefix
	userAgents   []*regexp.Regexp
	pageExclude  []*regexp.Regexp
	referralExcl []string
	goals        []rpGoal
	channels     []rpChannel
}

// rpGoal is a page goal worth value, or (page nil) an event goal of the
// category and action worth the event's own value.
type rpGoal struct {
	id    string
	page  *regexp.Regexp
	value float64
	event [2]string
}

// rpChannel is a custom channel rule: its patterns (nil: any) all match.
type rpChannel struct {
	name                     string
	source, medium, campaign *regexp.Regexp
}

// rpCalc derives sessions and filtered hits by docs/processing.md and
// docs/config.md ("Evaluation order") under one rules version.
func rpCalc(hits []rpHit, r rpRules, loc *time.Location) (*mpaCalc, map[string]float64) {
	filtered := map[string]float64{}
	by := map[string][]*mpaHit{}
	for i := range hits {
		h := &hits[i]
		ip, _ := netip.ParseAddr(h.ip)
		reason := ""
		for _, p := range r.ip {
			if p.Bits() <= 24 && p.Contains(ip) {
				reason = "ip"
			}
		}
		for _, re := range r.userAgents {
			if reason == "" && re.MatchString(h.ua) {
				reason = "user_agent"
			}
		}
		for _, re := range r.pageExclude {
			if reason == "" && (h.kind == "pageview" || h.page != "") && re.MatchString(strings.SplitN(h.page, "?", 2)[0]) {
				reason = "page"
			}
		}
		if reason != "" {
			filtered[reason]++
			continue
		}
		by[h.cid] = append(by[h.cid], &h.mpaHit)
	}
	calc := &mpaCalc{loc: loc}
	for _, hs := range by {
		for _, s := range mpaSplit(hs, loc, r.timeout) {
			rpFinish(s, r)
			calc.sessions = append(calc.sessions, s)
		}
	}
	return calc, filtered
}

// rpFinish attributes a session and counts its metrics under the rules.
func rpFinish(s *mpaSession, r rpRules) {
	s.attribute(r.referralExcl)
	r.customChannel(s)
	s.tally(r.goal)
}

// customChannel names the session's channel by the first custom channel
// rule it matches, if one does.
func (r rpRules) customChannel(s *mpaSession) {
	match := func(re *regexp.Regexp, v string) bool { return re == nil || re.MatchString(v) }
	for _, ch := range r.channels {
		if match(ch.source, s.source) && match(ch.medium, s.medium) && match(ch.campaign, s.campaign) {
			s.channel = ch.name
			return
		}
	}
}

// goal is the first goal h completes, with its value.
func (r rpRules) goal(h *mpaHit) (string, float64, bool) {
	for _, g := range r.goals {
		switch {
		case g.page != nil && h.kind == "pageview" && g.page.MatchString(strings.SplitN(h.page, "?", 2)[0]):
			return g.id, g.value, true
		case g.page == nil && h.kind == "event" && h.cat == g.event[0] && h.act == g.event[1]:
			return g.id, h.value, true
		}
	}
	return "", 0, false
}

const rpAcqMetrics = "sessions,users,new_users,engaged_sessions,bounce_rate,avg_session_duration,pages_per_session,conversions,goal_value"

// rpCheckReports compares the acquisition reports of each day and of both,
// the pages and the filtered hits, with the calculator.
func rpCheckReports(t *testing.T, c *mpaClient, tok, pid, what string, calc *mpaCalc, filtered map[string]float64, from, to string) {
	t.Helper()
	q := func(from, to string) url.Values {
		return url.Values{"property_id": {pid}, "from": {from}, "to": {to}, "limit": {"10000"}}
	}
	for _, r := range [][2]string{{from, from}, {to, to}, {from, to}} {
		for _, rep := range []struct {
			name string
			key  func(*mpaSession) string
		}{
			{"channel", func(s *mpaSession) string { return s.channel }},
			{"source", func(s *mpaSession) string { return s.source }},
			{"referrer", func(s *mpaSession) string { return s.referrer }},
			{"landing_page", func(s *mpaSession) string { return s.landing }},
		} {
			a, _ := c.report(tok, "acquisition/"+rep.name, q(r[0], r[1]))
			want := calc.acq(r[0], r[1], rep.key)
			mpaCompare(t, what+": "+rep.name+" "+r[0]+".."+r[1], a.Rows, []string{rep.name}, want)
		}
		a, _ := c.report(tok, "acquisition/overview", q(r[0], r[1]))
		mpaCompareTotals(t, what+": overview "+r[0]+".."+r[1], a.Totals, mpaPick(calc.acq(r[0], r[1], func(*mpaSession) string { return "" })[""], rpAcqMetrics))
	}
	a, _ := c.report(tok, "behavior/pages", q(from, to))
	mpaCompare(t, what+": pages", a.Rows, []string{"page"}, calc.pages(from, to, func(p string) (string, bool) { return p, true }))
	a, _ = c.report(tok, "behavior/filtered", q(from, to))
	want := map[string]map[string]float64{}
	for k, v := range filtered {
		want[k] = map[string]float64{"hits": v}
	}
	mpaCompare(t, what+": filtered", a.Rows, []string{"reason"}, want)
}

// rpWaitSessions waits until the range's reports count the sessions.
func rpWaitSessions(t *testing.T, c *mpaClient, tok, pid, from, to string, want int) {
	t.Helper()
	var got float64
	eventually.True(t, 60*time.Second, fmt.Sprintf("%d sessions from %s to %s", want, from, to), func() bool {
		a, _ := c.report(tok, "acquisition/overview", url.Values{"property_id": {pid}, "from": {from}, "to": {to}})
		got = num(a.Totals["sessions"])
		return got == float64(want)
	})
}

// rpSnapshot is every report of the range as read, for comparing states.
func rpSnapshot(t *testing.T, c *mpaClient, tok, pid, from, to string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, rep := range []string{"acquisition/channel", "acquisition/source_medium", "acquisition/landing_page", "acquisition/user_type", "acquisition/overview",
		"behavior/pages", "behavior/exit_pages", "behavior/events", "behavior/filtered"} {
		for _, g := range []string{"", "day"} {
			q := url.Values{"property_id": {pid}, "from": {from}, "to": {to}, "limit": {"10000"}}
			if g != "" {
				q.Set("granularity", g)
			}
			_, raw := c.report(tok, rep, q)
			delete(raw, "generated_at")
			delete(raw, "freshness")
			delete(raw, "cached") // whether it came from the result cache, not a number
			b, _ := json.Marshal(raw)
			out[rep+"?"+q.Encode()] = string(b)
		}
	}
	return out
}

func rpSameSnapshot(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s is\n%s\nwant\n%s", what, k, got[k], w)
		}
	}
}

// rpOperator calls processing's reprocessing API and runs the reprocess
// command, as docs/operations.md tells an operator to.
type rpOperator struct {
	t     *testing.T
	stack *localstack.Stack
	cfg   localstack.Config
}

func (o *rpOperator) call(method, path, body string) (int, string) {
	o.t.Helper()
	req, _ := http.NewRequest(method, "http://"+o.stack.Addr("processing")+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	tenant.Sign(req.Header, tenant.System("operator"), []byte(localstack.DevIdentitySecret), time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// start makes a job and returns its ID.
func (o *rpOperator) start(body string) string {
	o.t.Helper()
	status, b := o.call("POST", "/internal/v1/reprocess", body)
	var j rpJob
	if err := json.Unmarshal([]byte(b), &j); status != http.StatusAccepted || err != nil || j.JobID == "" || j.Status != "running" {
		o.t.Fatalf("POST %s: %d %s, want 202 and a running job", body, status, b)
	}
	return j.JobID
}

type rpJob struct {
	JobID     string `json:"job_id"`
	Status    string `json:"status"`
	DaysDone  int    `json:"days_done"`
	DaysTotal int    `json:"days_total"`
	Error     string `json:"error"`
}

// wait polls a job's progress until it is done: its days done never go
// back, and end at its days.
func (o *rpOperator) wait(pid, id string, days int) {
	o.t.Helper()
	var j rpJob
	last := 0
	eventually.True(o.t, 90*time.Second, "job "+id+" done", func() bool {
		status, b := o.call("GET", "/internal/v1/reprocess/"+pid+"/"+id, "")
		if status != http.StatusOK || json.Unmarshal([]byte(b), &j) != nil {
			o.t.Fatalf("GET job %s: %d %s", id, status, b)
		}
		if j.DaysDone < last || j.DaysTotal != days || j.Status == "failed" {
			o.t.Fatalf("job %s: %s (days done before: %d, want %d days)", id, b, last, days)
		}
		last = j.DaysDone
		return j.Status == "done"
	})
	if j.DaysDone != days {
		o.t.Errorf("job %s done with %d of %d days", id, j.DaysDone, days)
	}
}

// command runs the reprocess command against the stack.
func (o *rpOperator) command(args ...string) (string, error) {
	o.t.Helper()
	args = append(args, "-cassandra-hosts=127.0.0.1:"+strconv.Itoa(o.cfg.CQLPort), "-consul-addr="+o.stack.ConsulAddr(),
		"-identity-secret="+localstack.DevIdentitySecret)
	out, err := exec.Command(filepath.Join(o.cfg.BinDir, "reprocess"), args...).CombinedOutput()
	return string(out), err
}
