package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
)

// TestRegisterWatchDeregister runs against the real Consul agent: an
// instance registers with an HTTP readiness check, a blocking-query watcher
// sees it healthy, then sees it disappear when its check turns critical, and
// deregistration removes it.
func TestRegisterWatchDeregister(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan []discovery.Instance, 16)
	go discovery.Watch(ctx, client, "demo", log, func(in []discovery.Instance) { updates <- in })

	reg, err := discovery.Register(ctx, client, "demo", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	want := srv.Listener.Addr().String()
	waitFor(t, updates, "instance healthy", func(in []discovery.Instance) bool { return len(in) == 1 && in[0].Addr == want })

	ready.Store(false)
	waitFor(t, updates, "instance removed after turning critical", func(in []discovery.Instance) bool { return len(in) == 0 })

	ready.Store(true)
	waitFor(t, updates, "instance back after recovering", func(in []discovery.Instance) bool { return len(in) == 1 })

	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, updates, "instance gone after deregistration", func(in []discovery.Instance) bool { return len(in) == 0 })
	svcs, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs[reg.ID()]; ok {
		t.Fatalf("service %s still registered with the agent", reg.ID())
	}
}

func waitFor(t *testing.T, updates <-chan []discovery.Instance, what string, ok func([]discovery.Instance) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case in := <-updates:
			if ok(in) {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestMaintainReregistersAfterAgentRestart: a dev agent loses every
// registration when it restarts; Maintain puts the instance back.
func TestMaintainReregistersAfterAgentRestart(t *testing.T) {
	agent := consultest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := discovery.Register(ctx, agent.Client(), "kept", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	go reg.Maintain(ctx, 100*time.Millisecond)

	agent.Stop()
	agent.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		insts, _, err := discovery.Healthy(ctx, agent.Client(), "kept", 0, 0)
		if err == nil && len(insts) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not back in consul after the agent restarted (%v, %v)", insts, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
