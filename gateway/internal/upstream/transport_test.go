package upstream

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/acme/analytics/pkg/discovery"
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
