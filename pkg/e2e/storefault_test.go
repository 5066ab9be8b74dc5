package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/simulate"
)

// Bounds of the storage drill, from docs/reports.md: a report answers
// within -compute-timeout (10s) whatever the store does, and once the store
// is back a report is computed again when the breaker's open period
// (-breaker-open-timeout, 5s) ends and its probe read succeeds, which takes
// the driver's reconnection (gocql's control connection retries every
// second): two open periods at worst.
const (
	reportAnswerLimit = 12 * time.Second // -compute-timeout and the gateway's hop
	reportRecovery    = 15 * time.Second
	// processingRecovery bounds how long processing takes to write again
	// once the store is back: its retry's backoff (up to 5s), the driver
	// reconnecting and the next flush (-flush-interval, 2s).
	processingRecovery = 15 * time.Second
)

// TestAcceptanceWithStoreFaults plays the plan while the CQL server (our
// Cassandra) is stopped with SIGTERM and, later, killed with SIGKILL just
// after processing's flush was acknowledged, each time restarted on its
// port and data directory 3 seconds later, and then the Kafka broker (which
// keeps its topics and offsets in its data directory) is restarted.
// Collection does not use the store, so hits go on being accepted through
// its outages and are processed once it is back: processing must write
// again within processingRecovery of each restart. Meanwhile a reader asks
// for the pages report through the gateway without pause, each request
// with a filter of its own so that none is answered from the result cache:
// each answer must come within reportAnswerLimit and be either numbers no
// greater than the plan's (never fewer than an answer computed before) or
// 503 store_unavailable or report_timeout, and after each restart a fresh
// report must be served within reportRecovery. Then every rollup and
// report must match the plan exactly.
func TestAcceptanceWithStoreFaults(t *testing.T) {
	stack, cfg := startStack(t)
	visitors, play := size(t)
	// The drill's steps wait for processing between them: they need
	// about 20 seconds of traffic.
	play = max(play, 25*time.Second)
	var r *reportReader
	flushes := func() int64 { return processingFlushes(t, stack.Addr("processing")) }
	// wrote waits for processing's next successful flush after now.
	wrote := func(after string) {
		t.Helper()
		start, n := time.Now(), flushes()
		for flushes() == n {
			if time.Since(start) > processingRecovery {
				t.Errorf("processing has not written for %v after %s", processingRecovery, after)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("processing wrote %v after %s", time.Since(start).Round(10*time.Millisecond), after)
	}
	outage := func(what string, stop func(string) error, name string, down time.Duration) {
		t.Logf("fault: %s %s for %v", what, name, down)
		must(t, stop(name))
		r.mark(what+" "+name, false)
		time.Sleep(down)
		must(t, stack.Restart(context.Background(), name))
		r.mark("restarted "+name, true)
	}
	run(t, stack, cfg, visitors, play, variant{
		setUp: func(ctx context.Context, m *simulate.Merchant) {
			r = startReportReader(m)
		},
		faults: func(context.Context) {
			time.Sleep(2 * time.Second)
			wrote("the traffic began")
			outage("SIGTERM", stack.Terminate, "cqlserver", 3*time.Second)
			wrote("the CQL server's restart")
			// A crash just as a flush was acknowledged: what the server
			// acknowledged must be there after it restarts.
			wrote("the last flush")
			outage("SIGKILL", stack.Kill, "cqlserver", 3*time.Second)
			wrote("the CQL server's restart")
			outage("SIGTERM", stack.Terminate, "kafka", time.Second)
		},
		played: func(e *simulate.Expectation) {
			var pageviews int64
			for _, d := range e.SortedDays() {
				pageviews += e.Row(d, "total", "").Pageviews
			}
			r.check(t, pageviews)
		},
	})
}

// processingFlushes reads processing's count of successful flushes from
// its /metrics.
func processingFlushes(t *testing.T, addr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("processing's metrics: %v", err)
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `processing_flushes_total{result="ok"} `); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int64(n)
		}
	}
	return 0
}

// reportReader reads the pages report's total pageviews over the plan's
// days through the gateway, one request after another, each with a filter
// no page matches against (so that no answer comes from the result cache
// of an earlier one and every read reaches the store).
type reportReader struct {
	m         *simulate.Merchant
	startedAt time.Time
	from      string
	to        string
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	reads     []reportRead
	events    []readerEvent
}

type reportRead struct {
	at, took  time.Duration // since the reader started
	status    int
	code      string // the error's code
	stale     bool
	computed  time.Time
	pageviews int64
	err       error
}

type readerEvent struct {
	at      time.Duration
	what    string
	restart bool // the store (or broker) is back: a fresh answer is due
}

func startReportReader(m *simulate.Merchant) *reportReader {
	// The plan's days are around today in the property's zone; a day
	// either side covers every hit's day.
	now := time.Now()
	start := now
	r := &reportReader{m: m, startedAt: start, from: now.AddDate(0, 0, -3).Format(time.DateOnly), to: now.AddDate(0, 0, 2).Format(time.DateOnly),
		stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second} // the gateway's -report-timeout
	go func() {
		defer close(r.done)
		for i := 0; ; i++ {
			select {
			case <-r.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			at := time.Since(start)
			rd := r.read(client, i)
			rd.at, rd.took = at, time.Since(start)-at
			r.mu.Lock()
			r.reads = append(r.reads, rd)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *reportReader) read(client *http.Client, i int) reportRead {
	q := url.Values{"property_id": {r.m.PropertyID}, "from": {r.from}, "to": {r.to}, "metrics": {"pageviews"},
		"filter": {fmt.Sprintf("page!@/drill-%d-no-such-page", i)}}
	req, _ := http.NewRequest("GET", r.m.Gateway+"/v1/reports/behavior/pages?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+r.m.AccessToken)
	resp, err := client.Do(req)
	if err != nil {
		return reportRead{err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	rd := reportRead{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		rd.code = e.Error.Code
		if rd.code == "" {
			rd.err = fmt.Errorf("%s: %.200s", resp.Status, body)
		}
		return rd
	}
	var a struct {
		Totals    map[string]any `json:"totals"`
		Stale     bool           `json:"stale"`
		Freshness struct {
			ComputedAt time.Time `json:"computed_at"`
		} `json:"freshness"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		rd.err = fmt.Errorf("decode: %v: %.200s", err, body)
		return rd
	}
	rd.stale, rd.computed, rd.pageviews = a.Stale, a.Freshness.ComputedAt, int64(num(a.Totals["pageviews"]))
	return rd
}

func (r *reportReader) mark(what string, restart bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, readerEvent{at: time.Since(r.startedAt), what: what, restart: restart})
}

// check stops the reader once it has answered freshly after the last
// restart (or reportRecovery has passed) and checks every answer.
func (r *reportReader) check(t *testing.T, pageviews int64) {
	t.Helper()
	deadline := time.Now().Add(reportRecovery)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		var last time.Duration
		if len(r.events) > 0 {
			last = r.events[len(r.events)-1].at
		}
		fresh := false
		for _, rd := range r.reads {
			fresh = fresh || rd.at > last && rd.status == http.StatusOK && !rd.stale
		}
		r.mu.Unlock()
		if fresh {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	byStatus := map[string]int{}
	var fresh []reportRead
	for _, rd := range r.reads {
		key := fmt.Sprint(rd.status)
		switch {
		case rd.err != nil:
			key = "error"
			t.Errorf("report read at %v: %v", rd.at, rd.err)
		case rd.status == http.StatusOK:
			if rd.stale {
				key += " stale"
			} else {
				fresh = append(fresh, rd)
			}
			if rd.pageviews > pageviews {
				t.Errorf("report read at %v (stale %v): %d pageviews, more than the %d planned", rd.at, rd.stale, rd.pageviews, pageviews)
			}
		case rd.status == http.StatusServiceUnavailable && (rd.code == "store_unavailable" || rd.code == "report_timeout"):
			key += " " + rd.code
		default:
			key += " " + rd.code
			t.Errorf("report read at %v: %d %s, not an answer or 503 store_unavailable or report_timeout", rd.at, rd.status, rd.code)
		}
		byStatus[key]++
		if rd.took > reportAnswerLimit {
			t.Errorf("report read at %v took %v, longer than %v", rd.at, rd.took, reportAnswerLimit)
		}
	}
	var slowest time.Duration
	for _, rd := range r.reads {
		slowest = max(slowest, rd.took)
	}
	t.Logf("report reads: %d, by answer %v, the slowest in %v", len(r.reads), byStatus, slowest.Round(time.Millisecond))
	// The answers as they changed, and the faults between them.
	var changes []string
	prev, ev := "", 0
	for _, rd := range r.reads {
		for ; ev < len(r.events) && r.events[ev].at <= rd.at; ev++ {
			changes = append(changes, fmt.Sprintf("%v %s", r.events[ev].at.Round(100*time.Millisecond), r.events[ev].what))
		}
		a := fmt.Sprintf("%d %s", rd.status, rd.code)
		if rd.stale {
			a += " stale"
		}
		if a != prev {
			changes = append(changes, fmt.Sprintf("%v %s", rd.at.Round(100*time.Millisecond), a))
			prev = a
		}
	}
	t.Logf("answers: %s", strings.Join(changes, "; "))
	// Fresh answers never go back: pageviews only grow.
	sort.SliceStable(fresh, func(i, j int) bool { return fresh[i].computed.Before(fresh[j].computed) })
	for i := 1; i < len(fresh); i++ {
		if fresh[i].pageviews < fresh[i-1].pageviews {
			t.Errorf("report computed at %v: %d pageviews, fewer than the %d computed at %v",
				fresh[i].computed, fresh[i].pageviews, fresh[i-1].pageviews, fresh[i-1].computed)
		}
	}
	// After each restart a fresh answer comes within reportRecovery.
	for _, ev := range r.events {
		if !ev.restart {
			continue
		}
		recovered := time.Duration(-1)
		for _, rd := range r.reads {
			if rd.at >= ev.at && rd.status == http.StatusOK && !rd.stale {
				recovered = rd.at + rd.took - ev.at
				break
			}
		}
		switch {
		case recovered < 0:
			t.Errorf("%s at %v: no fresh report after it", ev.what, ev.at)
		case recovered > reportRecovery:
			t.Errorf("%s at %v: the first fresh report %v later, past %v", ev.what, ev.at, recovered, reportRecovery)
		default:
			t.Logf("%s at %v: fresh report %v later", ev.what, ev.at, recovered.Round(time.Millisecond))
		}
	}
}
