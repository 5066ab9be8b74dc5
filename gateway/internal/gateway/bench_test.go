package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
)

// BenchmarkGateway measures the gateway in front of a trivial upstream
// against the upstream alone, in one run: requests per second and latency
// percentiles at 1 and 8 concurrent clients, and the latency the gateway
// adds (its p50/p99 minus the direct ones at the same concurrency).
//
//	go test -run '^$' -bench BenchmarkGateway ./internal/gateway/
//
// Everything shares the machine: client, gateway and upstream compete for
// the same cores, so the figures are a floor for a dedicated host.
func BenchmarkGateway(b *testing.B) {
	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	defer trivial.Close()
	is := newIssuer(b)
	config := newUpstream(b, "config")
	config.setJWKS(is.jwks())
	// Production settings (access log at info, successful hits at debug,
	// limits on) with limits high enough never to refuse.
	g := startGatewayLogging(b, io.Discard, "-consul-addr=",
		"-static-upstreams=collection="+trivial.Listener.Addr().String()+",behavior="+trivial.Listener.Addr().String()+",config="+config.addr(),
		"-hit-rate=1e9", "-hit-burst=1000000000", "-tenant-rate=1e9", "-tenant-burst=1000000000")
	token := "Bearer " + is.token(b, "t1")
	eventually.NoError(b, 10*time.Second, "keys fetched", func() error {
		r := g.get(b, "/v1/reports/behavior/pages", "Authorization", token)
		if r.status != http.StatusOK {
			return errorf("status %d", r.status)
		}
		return nil
	})

	targets := []struct {
		name, url, auth string
	}{
		{"direct", trivial.URL + "/collect?tid=UA-1", ""},
		{"gateway-collect", g.url + "/collect?tid=UA-1", ""},
		{"gateway-report-jwt", g.url + "/v1/reports/behavior/pages", token},
	}
	direct := map[int][2]time.Duration{} // concurrency -> p50, p99 of the last direct run
	for _, conc := range []int{1, 8} {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/c%d", tg.name, conc), func(b *testing.B) {
				p50, p99 := load(b, conc, tg.url, tg.auth)
				b.ReportMetric(micros(p50), "p50-µs")
				b.ReportMetric(micros(p99), "p99-µs")
				if tg.name == "direct" {
					direct[conc] = [2]time.Duration{p50, p99}
				} else if d, ok := direct[conc]; ok {
					b.ReportMetric(micros(p50-d[0]), "added-p50-µs")
					b.ReportMetric(micros(p99-d[1]), "added-p99-µs")
				}
			})
		}
	}
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}

// load sends b.N GET requests from conc workers and returns the latency
// percentiles; it reports requests per second.
func load(b *testing.B, conc int, url, auth string) (p50, p99 time.Duration) {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		all     = make([]time.Duration, 0, b.N)
		failure atomic.Value
		wg      sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/conc+1)
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				t0 := time.Now()
				resp, err := benchClient.Do(req)
				if err != nil {
					failure.Store(err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					failure.Store(fmt.Sprintf("status %d", resp.StatusCode))
					return
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failure.Load(); f != nil {
		b.Fatalf("request failed: %v", f)
	}
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	return all[len(all)/2], all[len(all)*99/100]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
