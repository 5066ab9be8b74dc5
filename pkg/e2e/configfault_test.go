package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/simulate"
)

// Bounds of the config-svc drill, from docs/config.md ("Serving the
// pipeline"): configclient retries the change feed on a backoff of 100 ms
// doubling to 5 s, so an outage longer than configDown has it at its
// longest wait; once config-svc is back, each client finds it in Consul
// (health checks every second here) and reads the feed at its next try.
const (
	configDown = 8 * time.Second
	// feedRecovery bounds how long after config-svc's return every
	// client follows the feed again: the 5 s backoff, Consul's view of
	// the restarted instances and config-svc's own start.
	feedRecovery = 15 * time.Second
	// rulesReach bounds how long a rules change takes to reach the
	// pipeline ("well under a second"; the tests require 5 s).
	rulesReach = 5 * time.Second
	// probeAnswer bounds a hit's answer: collection answers a known
	// property from its cache, without waiting for config-svc.
	probeAnswer = 2 * time.Second
)

// configclientServices are the instances that follow config-svc's feed
// with pkg/configclient, and whose metrics the drill watches.
var configclientServices = []string{"collection", "collection-2", "processing", "acquisition", "behavior"}

// TestAcceptanceWithConfigOutage plays the plan while config-svc, both of
// its instances (one killed with SIGKILL, the other stopped with
// SIGTERM), is down for configDown, then started again. Shortly before,
// the rules of a second property of the merchant (the probe) gain a goal:
// its hits before the change are no conversions, those sent during and
// after the outage (a pixel every 250 ms through the gateway and to each
// collection instance directly) must all be. docs/config.md ("When
// config-svc is down") says what must hold meanwhile: collection accepts
// the hits of both properties at once (a 2xx without X-Collect-Error, no
// 503), processing goes on writing with the rules it knows, every report
// read through the gateway is answered from the store (the property is
// cached: never 503 config_unavailable), each configclient reports
// configclient_feed_connected 0 and counts configclient_stale_served_total,
// logs the outage once, and follows the feed again within feedRecovery of
// config-svc's return. Then every rollup and report of the plan, and the
// probe's sessions and conversions, must match exactly.
func TestAcceptanceWithConfigOutage(t *testing.T) {
	stack, cfg := startStack(t)
	visitors, play := size(t)
	// The drill's steps wait for processing and for the rules change:
	// they need about 20 seconds of traffic.
	play = max(play, 25*time.Second)
	var (
		r  *reportReader
		pr *configProbe
	)
	flushes := func() int64 { return processingFlushes(t, stack.Addr("processing")) }
	run(t, stack, cfg, visitors, play, variant{
		setUp: func(ctx context.Context, m *simulate.Merchant) {
			// A second instance, so that "every instance" is more than one.
			if _, err := stack.Add(ctx, "config"); err != nil {
				t.Fatalf("add a config-svc instance: %v", err)
			}
			pr = newConfigProbe(t, stack, m)
			r = startReportReader(m)
		},
		faults: func(context.Context) {
			time.Sleep(2 * time.Second)
			eventually.NoError(t, processingRecovery, "processing writes", func() error {
				if n := flushes(); n < 1 {
					return fmt.Errorf("%d flushes", n)
				}
				return nil
			})
			// The probe's first hits, before the change: no conversions.
			// They also have every collection instance and processing
			// look the probe up, so that its document and its rule history
			// (without the goal) are cached when the change comes.
			for range 2 {
				pr.sendAll("before the rules change", false)
			}
			pr.changeRules()
			// The change reaches the pipeline within rulesReach; wait that
			// long before the outage, with no probe hit meanwhile, so that
			// processing's copy of the probe's rule history is the one
			// without the goal, due for a refetch that config-svc will not
			// answer (docs/config.md: the document's version then serves).
			time.Sleep(rulesReach)
			before := pr.scrape()
			logged := pr.feedWarnings()
			flushed := flushes()

			t.Log("fault: SIGKILL config-2, SIGTERM config")
			must(t, stack.Kill("config-2"))
			must(t, stack.Terminate("config"))
			down := time.Now()
			r.mark("config-svc stopped", false)
			disconnected := map[string]time.Duration{}
			unknownSent := false
			for time.Since(down) < configDown {
				pr.sendAll("during the outage", true)
				if !unknownSent && time.Since(down) > 2*time.Second {
					// A tracking ID no instance has seen cannot be looked
					// up: 503, not dead-lettered as unknown (nor accepted).
					pr.sendUnknown()
					unknownSent = true
				}
				for svc, m := range pr.scrape() {
					if _, ok := disconnected[svc]; !ok && m.connected == 0 {
						disconnected[svc] = time.Since(down)
					}
				}
				time.Sleep(250 * time.Millisecond)
			}
			during := pr.scrape()
			if n := flushes(); n <= flushed {
				t.Errorf("processing wrote nothing while config-svc was down (%d flushes before, %d after %v)", flushed, n, configDown)
			} else {
				t.Logf("processing flushed %d times while config-svc was down", n-flushed)
			}

			must(t, stack.Restart(context.Background(), "config"))
			must(t, stack.Restart(context.Background(), "config-2"))
			back := time.Now()
			r.mark("config-svc restarted", true)
			reconnected := map[string]time.Duration{}
			for len(reconnected) < len(configclientServices) && time.Since(back) < feedRecovery {
				pr.sendAll("after the outage", true)
				for svc, m := range pr.scrape() {
					if _, ok := reconnected[svc]; !ok && m.connected == 1 {
						reconnected[svc] = time.Since(back)
					}
				}
				time.Sleep(250 * time.Millisecond)
			}
			for _, svc := range configclientServices {
				d, ok := disconnected[svc]
				switch {
				case !ok:
					t.Errorf("%s: configclient_feed_connected never 0 while config-svc was down", svc)
				default:
					t.Logf("%s: configclient_feed_connected 0 %v after config-svc stopped", svc, d.Round(10*time.Millisecond))
				}
				if d, ok := reconnected[svc]; ok {
					t.Logf("%s: configclient_feed_connected 1 %v after config-svc restarted", svc, d.Round(10*time.Millisecond))
				} else {
					t.Errorf("%s: configclient_feed_connected not back to 1 within %v of config-svc's return", svc, feedRecovery)
				}
				// The lookups answered from cached copies while config-svc
				// was down (every hit's in collection and processing, the
				// behavior service's for the report reader).
				if svc != "acquisition" {
					if n := during[svc].stale - before[svc].stale; n <= 0 {
						t.Errorf("%s: configclient_stale_served_total did not count while config-svc was down (%v before, %v after %v)", svc, before[svc].stale, during[svc].stale, configDown)
					} else {
						t.Logf("%s: configclient_stale_served_total counted %v lookups while config-svc was down", svc, n)
					}
				}
			}
			warned := pr.feedWarnings()
			for _, svc := range configclientServices {
				if d := warned[svc] - logged[svc]; d != 1 {
					t.Errorf("%s logged %d feed warnings (%q) for the outage, want 1", svc, d, feedWarning)
				}
			}
			must(t, stack.WaitHealthy(context.Background(), "config", 2))
			// The probe's hits since the change were stamped with its new
			// version, which processing's rule history lacked until
			// config-svc was back: the document's version served them, no
			// hit fell back to another version (docs/config.md).
			if n := metricSum(t, stack.Addr("processing"), "processing_rule_fallbacks_total"); n != 0 {
				t.Errorf("processing_rule_fallbacks_total = %v, want 0", n)
			}
		},
		played: func(e *simulate.Expectation) {
			var pageviews int64
			for _, d := range e.SortedDays() {
				pageviews += e.Row(d, "total", "").Pageviews
			}
			r.check(t, pageviews)
			// The plan's property stays cached in the report services:
			// every read is answered from the store, none 503.
			r.mu.Lock()
			for _, rd := range r.reads {
				if rd.err == nil && (rd.status != http.StatusOK || rd.stale) {
					t.Errorf("report read at %v: %d %s (stale %v); the property is cached, the store up: want fresh numbers", rd.at, rd.status, rd.code, rd.stale)
				}
			}
			r.mu.Unlock()
		},
	})
	pr.check()
}

// configProbe is the drill's second property, with traffic of its own:
// one pixel hit per new visitor, each a session with one pageview of
// /drill/goal, which the rules change makes a goal.
type configProbe struct {
	t       *testing.T
	stack   *localstack.Stack
	m       *simulate.Merchant
	id, tid string
	client  *http.Client
	n       int
	// Hits accepted before the rules change, and since.
	before, after int64
	slowest       time.Duration
}

func newConfigProbe(t *testing.T, stack *localstack.Stack, m *simulate.Merchant) *configProbe {
	t.Helper()
	c := &mpaClient{t: t, ctx: context.Background(), http: &http.Client{Timeout: 30 * time.Second}, gw: m.Gateway}
	p := c.createProperty(m.AccessToken, map[string]any{"name": "Drill probe", "hostnames": []string{"probe.example"}, "time_zone": "UTC", "currency": "EUR"})
	return &configProbe{t: t, stack: stack, m: m, id: p.ID, tid: p.TrackingID, client: &http.Client{Timeout: 30 * time.Second}}
}

// changeRules adds the goal: a new rules version.
func (p *configProbe) changeRules() {
	p.t.Helper()
	c := &mpaClient{t: p.t, ctx: context.Background(), http: p.client, gw: p.m.Gateway}
	c.do("PUT", "/v1/properties/"+p.id+"/rules", p.m.AccessToken, map[string]any{
		"goals": []map[string]any{{"id": "drill", "name": "Drill goal", "page_path": "^/drill/goal$"}},
	}, http.StatusOK, nil)
	p.t.Log("the probe's rules gained a goal")
}

// sendAll sends one hit through the gateway and one to each collection
// instance directly, each once: a known property's hit must be accepted
// at once, whatever config-svc does.
func (p *configProbe) sendAll(when string, goal bool) {
	p.t.Helper()
	targets := []string{p.stack.GatewayURL()}
	for _, name := range []string{"collection", "collection-2"} {
		addr, err := p.stack.InstanceAddr(name)
		if err != nil {
			p.t.Fatal(err)
		}
		targets = append(targets, "http://"+addr)
	}
	for _, base := range targets {
		p.n++
		q := url.Values{"v": {"1"}, "t": {"pageview"}, "tid": {p.tid}, "cid": {fmt.Sprintf("%d.%d", 1000+p.n, 77)},
			"hid": {fmt.Sprintf("drill-%d", p.n)}, "dl": {"https://probe.example/drill/goal"}, "dt": {"Drill"}}
		req, _ := http.NewRequest("GET", base+"/collect?"+q.Encode(), nil)
		req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", 1+p.n%250))
		start := time.Now()
		resp, err := p.client.Do(req)
		took := time.Since(start)
		p.slowest = max(p.slowest, took)
		if err != nil {
			p.t.Errorf("probe hit %d to %s %s: %v", p.n, base, when, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 || resp.Header.Get("X-Collect-Error") != "" || took > probeAnswer {
			p.t.Errorf("probe hit %d to %s %s: %s %q in %v; a known property's hit must be accepted at once", p.n, base, when, resp.Status, resp.Header.Get("X-Collect-Error"), took)
			continue
		}
		if goal {
			p.after++
		} else {
			p.before++
		}
	}
}

// sendUnknown sends a hit of a tracking ID nobody has: while config-svc
// is down collection cannot tell it unknown, and answers 503 with
// Retry-After (docs/collection.md) rather than dead-lettering the hit.
func (p *configProbe) sendUnknown() {
	p.t.Helper()
	tid := []byte(configclient.TrackingIDPrefix)
	for range configclient.TrackingIDLength {
		tid = append(tid, configclient.TrackingIDAlphabet[rand.IntN(len(configclient.TrackingIDAlphabet))])
	}
	q := url.Values{"v": {"1"}, "t": {"pageview"}, "tid": {string(tid)}, "cid": {"1.99"}, "hid": {"drill-unknown"}, "dl": {"https://probe.example/"}}
	start := time.Now()
	resp, err := p.client.Get(p.stack.GatewayURL() + "/collect?" + q.Encode())
	if err != nil {
		p.t.Errorf("a hit of an unknown tracking ID during the outage: %v", err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		p.t.Errorf("a hit of an unknown tracking ID during the outage: %s (Retry-After %q), want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
		return
	}
	p.t.Logf("a hit of an unknown tracking ID during the outage: %s in %v", resp.Status, time.Since(start).Round(time.Millisecond))
}

// metricSum sums a metric's samples in an instance's /metrics.
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("metrics of %s: %v", addr, err)
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(rest)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// configMetrics is what one instance's /metrics says of its configclient.
type configMetrics struct{ connected, stale float64 }

func (p *configProbe) scrape() map[string]configMetrics {
	out := map[string]configMetrics{}
	for _, svc := range configclientServices {
		addr, err := p.stack.InstanceAddr(svc)
		if err != nil {
			p.t.Fatal(err)
		}
		m := configMetrics{connected: -1, stale: -1}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			p.t.Errorf("%s's metrics: %v", svc, err)
			out[svc] = m
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "configclient_feed_connected "); ok {
				m.connected, _ = strconv.ParseFloat(v, 64)
			}
			if v, ok := strings.CutPrefix(line, "configclient_stale_served_total "); ok {
				m.stale, _ = strconv.ParseFloat(v, 64)
			}
		}
		out[svc] = m
	}
	return out
}

// feedWarning is configclient's log line when it cannot follow the feed.
const feedWarning = "cannot follow config-svc's change feed"

// feedWarnings counts the feed's warning in each instance's log so far.
func (p *configProbe) feedWarnings() map[string]int {
	out := map[string]int{}
	for _, svc := range configclientServices {
		b, err := os.ReadFile(p.stack.LogPath(svc))
		if err != nil {
			p.t.Errorf("read %s's log: %v", svc, err)
			continue
		}
		out[svc] = strings.Count(string(b), feedWarning)
	}
	return out
}

// check waits for the probe's report to show every hit a session and
// every hit since the rules change a conversion.
func (p *configProbe) check() {
	p.t.Helper()
	p.t.Logf("probe: %d hits before the rules change, %d during and after the outage, the slowest answered in %v", p.before, p.after, p.slowest.Round(time.Millisecond))
	today := time.Now().UTC()
	q := url.Values{"from": {today.AddDate(0, 0, -1).Format(time.DateOnly)}, "to": {today.AddDate(0, 0, 1).Format(time.DateOnly)}, "metrics": {"sessions,conversions"}}
	m := *p.m
	m.PropertyID = p.id
	eventually.NoError(p.t, 30*time.Second, "the probe's report", func() error {
		a := getReport(context.Background(), p.t, p.client, &m, "/v1/reports/acquisition/overview", q)
		sessions, conversions := num(a.Totals["sessions"]), num(a.Totals["conversions"])
		if sessions != float64(p.before+p.after) || conversions != float64(p.after) {
			return fmt.Errorf("sessions %v, conversions %v; want %d sessions, %d conversions (the hits since the rules change)",
				sessions, conversions, p.before+p.after, p.after)
		}
		return nil
	})
}
