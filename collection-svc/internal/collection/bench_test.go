package collection

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/benchdata"
	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
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
// kfake in the same process, so it and the load generator compete with the
// service for the same two cores. Run:
//
//	go test -run='^$' -bench=BenchmarkLoad -benchtime=100000x ./internal/collection
func BenchmarkLoad(b *testing.B) {
	single := benchdata.Batches(1024, 1)
	batch := benchdata.Batches(1024, 20)
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
			e := newEnv(b, envOptions{broker: benchBroker, handler: func(h http.Handler) http.Handler {
				// What service.Run wraps every handler in.
				log := slog.New(slog.NewJSONHandler(io.Discard, nil))
				return httpserver.Chain(h, httpserver.WithRequestID, httpserver.AccessLog(log, collect.HitPaths...),
					httpserver.Metrics(prometheus.NewRegistry()), httpserver.Recover(log))
			}})
			load(b, e.url+"/collect?tid="+tidShop, c.bodies, c.hits, c.conns)
		})
	}
}

// benchBroker configures kfake for the benchmark: it keeps a log segment
// as one in-memory slice that doubles as it grows, so with Kafka's default
// segments (100 MiB) it copied every byte stored about twice more than a
// broker writing to its page cache does. Segments of 8 MiB keep that
// copying small.
var benchBroker = []kfake.Opt{kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(8 << 20)})}

// load sends b.N requests from conns keep-alive connections, each sending
// its next request as soon as the previous one is answered, and reports
// hits/s and request latency percentiles.
//
// It speaks HTTP/1.1 over raw TCP with every request encoded in advance,
// as wrk and other load generators do, rather than through net/http's
// client: the generator shares the machine's two cores with what it
// measures, and net/http's client cost about as much CPU per request as the
// server it drove. Every response is still read whole and its status
// checked.
func load(b *testing.B, rawURL string, bodies [][]byte, hitsPerRequest, conns int) {
	u, err := url.Parse(rawURL)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([][]byte, len(bodies))
	for i, body := range bodies {
		reqs[i] = fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain;charset=UTF-8\r\n"+
			"User-Agent: %s\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: %d\r\n\r\n%s",
			u.RequestURI(), u.Host, benchdata.UserAgent, len(body), body)
	}

	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					break
				}
				if conn == nil {
					c, err := net.Dial("tcp", u.Host)
					if err != nil {
						fail(err)
						continue
					}
					conn, br = c, bufio.NewReaderSize(c, 4096)
				}
				t0 := time.Now()
				status, err := roundTrip(conn, br, reqs[i%int64(len(reqs))])
				if err != nil {
					fail(err)
					conn.Close()
					conn = nil
					continue
				}
				if status != http.StatusNoContent {
					fail(fmt.Errorf("status %d", status))
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
			if conn != nil {
				conn.Close()
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed, the first: %v", n, b.N, firstErr.Load())
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*p))] }
	b.ReportMetric(float64(b.N*hitsPerRequest)/elapsed.Seconds(), "hits/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N*hitsPerRequest), "cpu-µs/hit")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time this process has used, user and system: of the
// service, the broker and the load generator together. It varies much less
// from run to run than hits/s on a shared machine, so it shows what a change
// to the service's cost per hit does where the throughput cannot.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// roundTrip writes one encoded request and reads its response: the status
// line, the headers, and a body of Content-Length bytes (the only framing
// the servers measured here answer with).
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) (status int, err error) {
	if _, err := conn.Write(req); err != nil {
		return 0, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 204 No Content"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("bad header line %q", line)
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, fmt.Errorf("unexpected Transfer-Encoding %q", bytes.TrimSpace(value))
		}
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}
