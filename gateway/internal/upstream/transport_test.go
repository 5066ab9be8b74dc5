package upstream

import (
	"bufio"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTransportDependencyOutageKeepsBreakerClosed: an instance answering
// 503 with Retry-After (its broker or store is down, as for every
// instance) stays in rotation; 503s without it count against its breaker.
func TestTransportDependencyOutageKeepsBreakerClosed(t *testing.T) {
	var retryAfter atomic.Bool
	retryAfter.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if retryAfter.Load() {
			w.Header().Set("Retry-After", "5")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	pool := newTestPool(t, 3)
	pool.Update([]discovery.Instance{{ID: "a", Addr: strings.TrimPrefix(srv.URL, "http://")}})
	tr := &Transport{Pools: map[string]*Pool{"svc": pool}, Base: http.DefaultTransport, Metrics: pool.metrics}
	do := func() error {
		req, _ := http.NewRequest("POST", "http://svc/collect", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for i := 0; i < 10; i++ {
		if err := do(); err != nil {
			t.Fatalf("request %d: %v (a dependency outage opened the instance's breaker)", i, err)
		}
	}
	retryAfter.Store(false)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = do()
	}
	if err == nil {
		t.Fatal("plain 503s never opened the breaker")
	}
}

// recorder is an upstream instance that records the bodies it was sent.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, r.Method+" "+string(b))
	rec.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rec *recorder) got() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.bodies...)
}

// stream is a request body that can be read once, as a client's is at the
// gateway (no GetBody to rewind it).
func stream(t *testing.T, method, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://svc/collect", io.NopCloser(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	return req
}

// TestTransportRetriesWhatWasNeverSent: a POST with a body whose
// connection to an instance is refused (a crashed instance still listed)
// goes to another instance, with its whole body.
func TestTransportRetriesWhatWasNeverSent(t *testing.T) {
	rec := &recorder{}
	live := httptest.NewServer(rec)
	defer live.Close()
	pool := newTestPool(t, 100)
	pool.Update([]discovery.Instance{{ID: "dead", Addr: consultest.RefusedAddr(t)}, {ID: "live", Addr: strings.TrimPrefix(live.URL, "http://")}})
	tr := &Transport{Pools: map[string]*Pool{"svc": pool}, Base: NewBaseTransport(), Metrics: pool.metrics}

	var want []string
	for i := range 4 { // round robin: some of them meet the dead instance first
		body := strings.Repeat("v=1&t=pageview&", 100) + strconv.Itoa(i)
		want = append(want, "POST "+body)
		resp, err := tr.RoundTrip(stream(t, http.MethodPost, body))
		if err != nil {
			t.Fatalf("POST %d: %v, want it retried on the live instance", i, err)
		}
		resp.Body.Close()
	}
	if got := rec.got(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("live instance got %d requests %.200q, want %d %.200q", len(got), got, len(want), want)
	}
	// Round robin moves on at the retry's pick too, so the count of
	// requests that met the dead instance first depends on the order.
	if got := testutil.ToFloat64(pool.metrics.retries.WithLabelValues("svc")); got < 1 {
		t.Fatalf("retries = %v, want at least 1", got)
	}
}

// TestTransportNeverResendsWhatMayHaveArrived: an instance that takes a
// POST and drops the connection without an answer may have acted on it, so
// the POST is not sent again; a GET without a body is.
func TestTransportNeverResendsWhatMayHaveArrived(t *testing.T) {
	var cut atomic.Int64
	cutter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		cut.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer cutter.Close()
	rec := &recorder{}
	live := httptest.NewServer(rec)
	defer live.Close()
	pool := newTestPool(t, 100)
	pool.Update([]discovery.Instance{{ID: "cutter", Addr: strings.TrimPrefix(cutter.URL, "http://")}, {ID: "live", Addr: strings.TrimPrefix(live.URL, "http://")}})
	tr := &Transport{Pools: map[string]*Pool{"svc": pool}, Base: NewBaseTransport(), Metrics: pool.metrics}

	failed := 0
	for i := range 4 {
		resp, err := tr.RoundTrip(stream(t, http.MethodPost, "hit "+strconv.Itoa(i)))
		if err != nil {
			failed++
			continue
		}
		resp.Body.Close()
	}
	if failed != 2 || cut.Load() != 2 || len(rec.got()) != 2 {
		t.Fatalf("POSTs: %d failed, %d cut, live got %q; want 2 failed (not resent), 2 cut, 2 at the live instance", failed, cut.Load(), rec.got())
	}
	for i := range 4 {
		req, _ := http.NewRequest(http.MethodGet, "http://svc/collect", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("GET %d: %v, want it retried on the live instance", i, err)
		}
		resp.Body.Close()
	}
	if cut.Load() == 2 || len(rec.got()) != 6 {
		t.Fatalf("GETs: %d cut, %d answered by the live instance; want some cut, and all 4 answered by the live instance", cut.Load()-2, len(rec.got())-2)
	}
}

// TestTransportPassesUpgrades: a 101 Switching Protocols answer reaches the
// client through a ReverseProxy, which needs the response body to be the
// connection (an io.ReadWriteCloser) to splice the two.
func TestTransportPassesUpgrades(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString(line)
		_ = brw.Flush()
	}))
	defer srv.Close()
	pool := newTestPool(t, 3)
	pool.Update([]discovery.Instance{{ID: "a", Addr: strings.TrimPrefix(srv.URL, "http://")}})
	tr := &Transport{Pools: map[string]*Pool{"svc": pool}, Base: NewBaseTransport(), Metrics: pool.metrics}
	proxy := &httputil.ReverseProxy{Transport: tr, Rewrite: func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "svc" }}
	front := httptest.NewServer(proxy)
	defer front.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "hello\n")
	if got, err := br.ReadString('\n'); got != "hello\n" {
		t.Fatalf("echoed %q (%v), want %q", got, err, "hello\n")
	}
	if got := testutil.ToFloat64(pool.metrics.requests.WithLabelValues("svc", "success")); got != 1 {
		t.Errorf("%v successes counted, want 1", got)
	}
}

// BenchmarkTransportWithBody is the transport's cost for an answer with a
// body (the pixel's), the upstream's bytes and HTTP aside.
func BenchmarkTransportWithBody(b *testing.B) {
	pool := NewPool("svc", BreakerConfig{Failures: 5, OpenTimeout: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	pool.Update([]discovery.Instance{{ID: "a", Addr: "a:1"}})
	tr := &Transport{Pools: map[string]*Pool{"svc": pool}, Base: bodyAnswer{}, Metrics: pool.metrics,
		ClientFault: func(*http.Request, error) bool { return false }}
	req, _ := http.NewRequest(http.MethodGet, "http://svc/collect", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// bodyAnswer answers every request 200 with a body of a few bytes.
type bodyAnswer struct{}

func (bodyAnswer) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("GIF89a"))}, nil
}
