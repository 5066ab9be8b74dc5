package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

func register(t *testing.T, client *api.Client, service string, u *upstream) *discovery.Registration {
	t.Helper()
	host, portStr, _ := net.SplitHostPort(u.addr())
	port, _ := strconv.Atoi(portStr)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := discovery.Register(context.Background(), client, service, host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// served sends n hits and counts them by the instance that answered
// ("503" etc. for the gateway's own answers).
func served(t *testing.T, g *testGateway, method string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		r := do(t, g.request(t, method, "/collect?tid=UA-1", nil))
		if r.status == http.StatusOK {
			out[r.echo.Instance]++
		} else {
			out[strconv.Itoa(r.status)]++
		}
	}
	return out
}

// TestConsulDiscovery runs the gateway against the real Consul agent with
// real upstream instances registered there with readiness checks.
func TestConsulDiscovery(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client()
	is := newIssuer(t)
	config, behavior := newUpstream(t, "config"), newUpstream(t, "behavior")
	config.setJWKS(is.jwks())
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	register(t, client, "config", config)
	register(t, client, "behavior", behavior)
	regA, regB := register(t, client, "collection", a), register(t, client, "collection", b)

	g := startGateway(t, "-consul-addr="+agent.Addr(), "-hit-rate=0")

	t.Run("balances across the healthy instances", func(t *testing.T) {
		eventually.NoError(t, 10*time.Second, "both instances healthy and used", func() error {
			got := served(t, g, http.MethodGet, 10)
			if got["a"] != 5 || got["b"] != 5 {
				return errorf("served %v, want 5 each", got)
			}
			return nil
		})
	})

	t.Run("tokens verified with keys from a config instance found in Consul", func(t *testing.T) {
		eventually.NoError(t, 10*time.Second, "authenticated report", func() error {
			r := g.get(t, "/v1/reports/behavior/pages", "Authorization", "Bearer "+is.token(t, "t1"))
			if r.status != http.StatusOK || r.echo.TenantID != "t1" {
				return errorf("status %d, tenant %q", r.status, r.echo.TenantID)
			}
			return nil
		})
	})

	t.Run("traffic moves away from an unhealthy instance within seconds", func(t *testing.T) {
		a.ready.Store(false)
		start := time.Now()
		eventually.NoError(t, 10*time.Second, "all traffic on b", func() error {
			if got := served(t, g, http.MethodGet, 10); got["b"] != 10 {
				return errorf("served %v", got)
			}
			return nil
		})
		t.Logf("traffic left the unhealthy instance %v after its readiness failed (check interval 200ms)", time.Since(start).Round(time.Millisecond))
	})

	// Checks that all fail at once (a stalled machine, an overloaded
	// agent) are more likely the checker's trouble: the instances still
	// registered get the traffic rather than a 503 (discovery.Watch).
	t.Run("no instance passing: traffic goes on to the registered ones", func(t *testing.T) {
		b.ready.Store(false)
		eventually.NoError(t, 10*time.Second, "both instances used", func() error {
			if !strings.Contains(g.logs.String(), "no instance passes its checks") {
				return errorf("the fallback is not logged yet")
			}
			if got := served(t, g, http.MethodGet, 10); got["a"] != 5 || got["b"] != 5 {
				return errorf("served %v", got)
			}
			return nil
		})
	})

	t.Run("no instance registered: 503 with Retry-After", func(t *testing.T) {
		for _, reg := range []*discovery.Registration{regA, regB} {
			if err := reg.Deregister(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		eventually.NoError(t, 10*time.Second, "503", func() error {
			r := g.get(t, "/collect?tid=UA-1") // the pixel: the code is in X-Collect-Error
			if r.status != http.StatusServiceUnavailable || r.header.Get("X-Collect-Error") != "upstream_unavailable" || r.header.Get("Retry-After") == "" {
				return errorf("status %d %s, Retry-After %q", r.status, r.header.Get("X-Collect-Error"), r.header.Get("Retry-After"))
			}
			return nil
		})
	})

	t.Run("instances back", func(t *testing.T) {
		a.ready.Store(true)
		b.ready.Store(true)
		regA, regB = register(t, client, "collection", a), register(t, client, "collection", b)
		eventually.NoError(t, 10*time.Second, "both instances used again", func() error {
			if got := served(t, g, http.MethodGet, 10); got["a"] != 5 || got["b"] != 5 {
				return errorf("served %v", got)
			}
			return nil
		})
	})

	t.Run("Consul stopped: routing to the last known instances goes on", func(t *testing.T) {
		agent.Stop()
		eventually.NoError(t, 10*time.Second, "the gateway to notice", func() error {
			if !strings.Contains(g.logs.String(), "consul watch failed; keeping last known instances") {
				return errorf("no watch failure logged yet")
			}
			return nil
		})
		if got := served(t, g, http.MethodGet, 20); got["a"] != 10 || got["b"] != 10 {
			t.Fatalf("served %v with Consul down, want 10 each", got)
		}

		// An instance dies while Consul cannot say so: GETs are retried on
		// the other one at once; its breaker opens and takes it out for
		// the rest.
		a.srv.Close()
		if got := served(t, g, http.MethodGet, 20); got["b"] != 20 {
			t.Fatalf("GETs served %v after a died, want all 20 by b (retried)", got)
		}
		if !strings.Contains(g.logs.String(), `"to":"open"`) {
			t.Fatalf("a's breaker did not open:\n%s", g.logs)
		}
		if got := served(t, g, http.MethodPost, 20); got["b"] != 20 {
			t.Fatalf("POSTs served %v with a's breaker open, want all 20 by b", got)
		}
	})
}

// TestRegistersInConsul: the gateway registers itself with a health check
// and deregisters when it stops.
func TestRegistersInConsul(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client()
	g := startGateway(t, "-consul-addr="+agent.Addr())
	eventually.NoError(t, 10*time.Second, "gateway healthy in Consul", func() error {
		insts, _, err := discovery.Healthy(context.Background(), client, "gateway", 0, 0)
		if err != nil {
			return err
		}
		if len(insts) != 1 || "http://"+insts[0].Addr != g.url {
			return errorf("healthy gateways %v, want %s", insts, g.url)
		}
		return nil
	})
	g.stop()
	svcs, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range svcs {
		if s.Service == "gateway" {
			t.Fatalf("gateway %s still registered after shutdown", id)
		}
	}
}
