package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/simulate"
)

// BenchmarkSystem plays traffic through the whole local stack as fast as
// it takes it for a fixed time (E2E_BENCH_DURATION, 60s by default) and
// prints one table: hits/s accepted at the gateway and processed, the
// freshness of processed hits, report latency under that ingest load,
// each process's peak memory, and the ceiling of the same ingest path on
// this machine (the same requests to a do-nothing HTTP handler).
func BenchmarkSystem(b *testing.B) {
	bin := os.Getenv("E2E_BIN_DIR")
	if bin == "" {
		b.Skip("E2E_BIN_DIR is not set: run `make bench`")
	}
	dur := time.Minute
	if v := os.Getenv("E2E_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		dur = d
	}
	workers := 32 // concurrent requests: each waits for the broker's acknowledgement
	if v := os.Getenv("E2E_BENCH_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("E2E_BENCH_WORKERS=%q: want a positive number", v)
		}
		workers = n
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	plan := simulate.New(simulate.Config{Seed: 42, Visitors: 20000, End: time.Now(), ExcludedCIDR: "203.0.113.0/24"})

	ceiling := measureCeiling(b, client, plan, dur/4, workers)

	base := 30000 + int(time.Now().UnixNano()%5000)
	cfg := localstack.Config{BinDir: bin, DataDir: b.TempDir(), ConsulPort: base + 500, KafkaPort: base + 600, CQLPort: base + 700,
		ServicePortBase: base, Collections: 2, Env: []string{"HIT_RATE=10000000", "HIT_BURST=10000000"}}
	stack, err := localstack.Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer stack.Stop()
	m, err := simulate.SignUp(context.Background(), client, stack.GatewayURL(), "bench@shop.example", plan.Config)
	if err != nil {
		b.Fatal(err)
	}
	processing := "http://" + stack.Addr("processing") + "/metrics"
	before := scrape(b, processing)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	start := time.Now()
	latencies := make(chan []time.Duration, 1)
	go func() { latencies <- readReports(ctx, client, m) }()
	res, _ := simulate.Play(ctx, client, m, plan, 0, workers)
	cancel()
	ingest := time.Since(start)
	reportTimes := <-latencies
	accepted := res.Accepted

	// Wait for processing to catch up with what was accepted.
	var processed float64
	deadline := time.Now().Add(5 * time.Minute)
	for {
		after := scrape(b, processing)
		processed = after.sum("processing_hits_total") - before.sum("processing_hits_total")
		if processed >= float64(accepted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	caughtUp := time.Since(start)
	fresh := scrape(b, processing).histogram("processing_freshness_seconds")

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nSystem benchmark: %s of traffic, %d workers, 2 collection instances\n", dur, workers)
	fmt.Fprintf(tw, "ingest ceiling (do-nothing handler, same requests)\t%.0f req/s\n", ceiling)
	fmt.Fprintf(tw, "hits/s accepted at the gateway\t%.0f\t(%d hits, %d rejected as planned, %d failed)\n", float64(accepted)/ingest.Seconds(), accepted, res.Rejected, res.Failed)
	fmt.Fprintf(tw, "hits/s processed\t%.0f\t(%.0f hits until caught up after %s)\n", processed/caughtUp.Seconds(), processed, caughtUp.Round(time.Second))
	fmt.Fprintf(tw, "freshness p50 / p99\t%s / %s\t(accepted → written to the rollups)\n", seconds(fresh.quantile(0.5)), seconds(fresh.quantile(0.99)))
	fmt.Fprintf(tw, "report latency p50 / p99 under ingest\t%s / %s\t(%d reports through the gateway, 4 clients)\n", pct(reportTimes, 0.5), pct(reportTimes, 0.99), len(reportTimes))
	for _, name := range stack.Processes() {
		if mem, err := stack.PeakMemory(name); err == nil {
			fmt.Fprintf(tw, "peak memory %s\t%.0f MiB\n", name, float64(mem)/(1<<20))
		}
	}
	tw.Flush()
}

// readReports reads reports through the gateway with 4 clients until ctx
// is done, cycling through reports and ranges (so some answers come from
// the result cache and some not, as a dashboard's would), and returns
// each request's latency.
func readReports(ctx context.Context, client *http.Client, m *simulate.Merchant) []time.Duration {
	paths := []string{
		"/v1/reports/acquisition/channel", "/v1/reports/acquisition/source_medium", "/v1/reports/acquisition/overview?granularity=hour",
		"/v1/reports/acquisition/landing_page", "/v1/reports/behavior/pages", "/v1/reports/behavior/events", "/v1/reports/realtime",
	}
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ctx.Err() == nil; i++ {
				p := paths[i%len(paths)]
				sep := "?"
				if strings.Contains(p, "?") {
					sep = "&"
				}
				q := "property_id=" + m.PropertyID
				if !strings.HasPrefix(p, "/v1/reports/realtime") {
					// Realtime takes no range: it would answer 400
					// unknown_parameter, and only 200s are timed.
					q += "&range=" + []string{"today", "last_7_days", "this_month"}[i/len(paths)%3]
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", m.Gateway+p+sep+q, nil)
				req.Header.Set("Authorization", "Bearer "+m.AccessToken)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					out = append(out, time.Since(t0))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func pct(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))].Round(100 * time.Microsecond).String()
}

func seconds(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// measureCeiling sends the plan's requests to a do-nothing handler for d.
func measureCeiling(b *testing.B, client *http.Client, plan *simulate.Plan, d time.Duration, workers int) float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	go srv.Serve(ln)
	defer srv.Close()
	var n atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				h := plan.Hits[i%len(plan.Hits)]
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/collect?"+h.Params.Encode(), nil)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// metrics is a scrape of a Prometheus text endpoint: sample name (with
// labels) to value.
type metrics map[string]float64

func scrape(b testing.TB, url string) metrics {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := metrics{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func (m metrics) sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// sumWith sums the samples of a metric whose labels contain every one of
// labels (`code="200"`, or a prefix of a label's value: `route="GET /v1/`).
func (m metrics) sumWith(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+"{")
		if !ok {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if all {
			s += v
		}
	}
	return s
}

type histogram struct{ bounds, counts []float64 }

func (m metrics) histogram(name string) histogram {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+"_bucket{le=\"")
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, "\"}"), 64)
		if err != nil {
			le = math.Inf(1)
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	var h histogram
	for _, b := range bs {
		h.bounds, h.counts = append(h.bounds, b.le), append(h.counts, b.n)
	}
	return h
}

// quantile interpolates linearly within the bucket holding q, as
// Prometheus's histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return math.NaN()
	}
	rank := q * h.counts[len(h.counts)-1]
	prevBound, prevCount := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.bounds[i], 1) {
				return prevBound
			}
			return prevBound + (h.bounds[i]-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = h.bounds[i], c
	}
	return prevBound
}
