package collection

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkLoad is the load generator of docs/benchmarks.md: real HTTP
// over loopback from this process, against
//
//   - noop: a plain net/http handler that reads the body and answers 204;
//   - single: the collection service (with the service middleware, the
//     real producer, acks=all and idempotence) and one hit per request;
//   - batch20: the same with 20 hits per request;
//
// each reporting hits/s and the p50/p99 latency of a request. The broker is
// kfake in the same process, so it competes for the same two cores. Run:
//
//	go test -run='^$' -bench=BenchmarkLoad -benchtime=100000x ./internal/collection
func BenchmarkLoad(b *testing.B) {
	single := bodies(1)
	batch := bodies(20)
	b.Run("noop", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		defer srv.Close()
		load(b, srv.URL+"/collect?tid="+tidShop, single, 1, 64)
	})
	for _, c := range []struct {
		name        string
		bodies      [][]byte
		hits, conns int
	}{
		{"single", single, 1, 256},
		{"batch20", batch, 20, 128},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, envOptions{handler: func(h http.Handler) http.Handler {
				// What service.Run wraps every handler in.
				log := slog.New(slog.NewJSONHandler(io.Discard, nil))
				return httpserver.Chain(h, httpserver.WithRequestID, httpserver.AccessLog(log),
					httpserver.Metrics(prometheus.NewRegistry()), httpserver.Recover(log))
			}})
			load(b, e.url+"/collect?tid="+tidShop, c.bodies, c.hits, c.conns)
		})
	}
}

// bodies returns 1024 distinct batches of n hits, each hit with its own
// client event ID, as the tracker sends them.
func bodies(n int) [][]byte {
	out := make([][]byte, 1024)
	for i := range out {
		var b bytes.Buffer
		b.WriteString(`{"hits":[`)
		for j := range n {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"v":1,"t":"pageview","cid":"%08x","hid":"%04x%04x%08x","dl":"https://shop.example/products/item-%d?utm_source=news","dt":"Product %d","dr":"https://www.google.com/","sr":"1920x1080","ul":"en-US"}`,
				i*7919, i, j, time.Now().UnixNano()&0xffffffff, j, i)
		}
		b.WriteString("]}")
		out[i] = b.Bytes()
	}
	return out
}

// load sends b.N requests from conns keep-alive connections and reports
// hits/s and request latency percentiles.
func load(b *testing.B, url string, bodies [][]byte, hitsPerRequest, conns int) {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DialContext:         (&net.Dialer{}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				req, _ := http.NewRequest("POST", url, bytes.NewReader(bodies[i%int64(len(bodies))]))
				req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
				req.Header.Set("User-Agent", chromeUA)
				req.Header.Set("X-Forwarded-For", "203.0.113.7")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					failed.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*p))] }
	b.ReportMetric(float64(b.N*hitsPerRequest)/elapsed.Seconds(), "hits/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
