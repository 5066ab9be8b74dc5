package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/hashicorp/consul/api"
)

// TestRegisterWatchDeregister runs against the real Consul agent: an
// instance registers with an HTTP readiness check, a blocking-query watcher
// sees it healthy, still routes to it when its check turns critical (it is
// the only one: TestWatchRoutesToFailingInstancesWhenNonePass), and
// deregistration removes it.
func TestRegisterWatchDeregister(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var ready atomic.Bool
	ready.Store(true)
	host, port := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan []discovery.Instance, 16)
	go discovery.Watch(ctx, client, "demo", log, func(in []discovery.Instance) { updates <- in })

	reg, err := discovery.Register(ctx, client, "demo", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	want := net.JoinHostPort(host, strconv.Itoa(port))
	// Passing, not only routed to: a check is critical until it first
	// passes, and the watch routes to the one instance meanwhile.
	waitFor(t, updates, "instance healthy", func(in []discovery.Instance) bool {
		healthy, _, err := discovery.Healthy(ctx, client, "demo", 0, 0)
		return err == nil && len(healthy) == 1 && len(in) == 1 && in[0].Addr == want
	})

	ready.Store(false)
	waitFor(t, updates, "instance kept after turning critical, none other passing", func(in []discovery.Instance) bool {
		healthy, _, err := discovery.Healthy(ctx, client, "demo", 0, 0)
		return err == nil && len(healthy) == 0 && len(in) == 1
	})

	ready.Store(true)
	waitFor(t, updates, "instance passing again", func(in []discovery.Instance) bool {
		healthy, _, err := discovery.Healthy(ctx, client, "demo", 0, 0)
		return err == nil && len(healthy) == 1 && len(in) == 1
	})

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

// TestWaitPassing: WaitPassing returns only once Consul lists the instance
// passing, which its check (/readyz without the "consul" readiness check)
// decides, and returns ctx's error when ctx ends first.
func TestWaitPassing(t *testing.T) {
	agent := consultest.Start(t)
	client := agent.Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ready atomic.Bool
	var checked atomic.Value
	host, port := serve(t, func(w http.ResponseWriter, r *http.Request) {
		checked.Store(r.URL.RequestURI())
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := discovery.Register(ctx, client, "demo", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}

	short, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	if err := reg.WaitPassing(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitPassing with the check failing = %v, want the deadline's error", err)
	}
	passed := make(chan error, 1)
	go func() { passed <- reg.WaitPassing(ctx) }()
	eventually.True(t, 10*time.Second, "the check run", func() bool { return checked.Load() != nil })
	if got := checked.Load(); got != "/readyz?exclude=consul" {
		t.Fatalf("consul checks %v, want /readyz?exclude=consul", got)
	}
	select {
	case err := <-passed:
		t.Fatalf("WaitPassing returned %v while the check fails", err)
	case <-time.After(time.Second): // five runs of the check
	}
	ready.Store(true)
	select {
	case err := <-passed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitPassing did not return once the check passed")
	}
	healthy, _, err := discovery.Healthy(ctx, client, "demo", 0, 0)
	if err != nil || len(healthy) != 1 || healthy[0].ID != reg.ID() {
		t.Fatalf("after WaitPassing consul lists %v passing (%v)", healthy, err)
	}
}

// TestWatchRoutesToFailingInstancesWhenNonePass: of two instances, the
// one whose check fails is left out while the other passes; when both fail
// (checks timing out on a stalled machine, say), the watch routes to both
// rather than to none, and says so; when one passes again, to it alone;
// an instance in maintenance is never routed to.
func TestWatchRoutesToFailingInstancesWhenNonePass(t *testing.T) {
	client, log, logs, ctx := loggedAgent(t)

	type instance struct {
		ready atomic.Bool
		addr  string
		reg   *discovery.Registration
	}
	start := func() *instance {
		in := &instance{}
		in.ready.Store(true)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !in.ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		t.Cleanup(srv.Close)
		in.addr = srv.Listener.Addr().String()
		host, portStr, _ := net.SplitHostPort(in.addr)
		port, _ := strconv.Atoi(portStr)
		var err error
		if in.reg, err = discovery.Register(ctx, client, "pair", host, port, 200*time.Millisecond, log); err != nil {
			t.Fatal(err)
		}
		return in
	}
	a, b := start(), start()
	updates := make(chan []discovery.Instance, 64)
	go discovery.Watch(ctx, client, "pair", log, func(in []discovery.Instance) { updates <- in })
	is := func(want ...*instance) func([]discovery.Instance) bool {
		return func(in []discovery.Instance) bool {
			return len(in) == len(want) && !slices.ContainsFunc(want, func(w *instance) bool {
				return !slices.ContainsFunc(in, func(i discovery.Instance) bool { return i.Addr == w.addr })
			})
		}
	}
	waitFor(t, updates, "both passing", is(a, b))

	a.ready.Store(false)
	waitFor(t, updates, "b alone while it passes", is(b))
	b.ready.Store(false)
	waitFor(t, updates, "both again when neither passes", is(a, b))
	eventually.True(t, 5*time.Second, "the fallback logged", func() bool {
		return strings.Contains(logs.String(), "no instance passes its checks; routing to every registered one")
	})
	a.ready.Store(true)
	waitFor(t, updates, "a alone once it passes again", is(a))
	eventually.True(t, 5*time.Second, "the recovery logged", func() bool {
		return strings.Contains(logs.String(), "instances pass their checks again")
	})

	if err := client.Agent().EnableServiceMaintenance(b.reg.ID(), "test"); err != nil {
		t.Fatal(err)
	}
	a.ready.Store(false)
	waitFor(t, updates, "a alone, b in maintenance, when neither passes", is(a))
	if err := a.reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, updates, "none once a is deregistered and b in maintenance", is())
}

// TestWatchPanicsOnlyOverInstancesThatPassedBefore: an instance whose
// check has never passed (critical, as Consul holds every new check until
// its first run, up to an interval after the registration, and as one that
// is unready from the start stays) is starting, and no sign that checks
// fail: at a fresh start the watch routes to nothing, and logs nothing,
// until an instance passes. When every instance fails, it routes to those
// that passed before, each marked Failing, not to one that never passed;
// once one passes again, to it alone, not Failing.
func TestWatchPanicsOnlyOverInstancesThatPassedBefore(t *testing.T) {
	client, log, logs, ctx := loggedAgent(t)

	// A TTL check nobody updates stays as a new check is: critical, no
	// output, never passed.
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "fresh-1", Name: "fresh", Address: "127.0.0.1", Port: 1,
		Check: &api.AgentServiceCheck{CheckID: "fresh-1-ready", TTL: "1h"}}); err != nil {
		t.Fatal(err)
	}
	updates := make(chan []discovery.Instance, 64)
	go discovery.Watch(ctx, client, "fresh", log, func(in []discovery.Instance) { updates <- in })
	select {
	case in := <-updates:
		if len(in) != 0 {
			t.Fatalf("first update %v, want none routed while the one registered has never passed", in)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no first update")
	}

	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if _, err := discovery.Register(ctx, client, "fresh", host, port, 200*time.Millisecond, log); err != nil {
		t.Fatal(err)
	}
	waitFor(t, updates, "the new instance once it passes", func(in []discovery.Instance) bool {
		return len(in) == 1 && in[0].Addr == addr && !in[0].Failing
	})
	if strings.Contains(logs.String(), "no instance passes its checks") {
		t.Fatalf("panic routing over instances that had not passed yet:\n%s", logs)
	}

	ready.Store(false)
	waitFor(t, updates, "the one that passed before, failing, the one that never passed left out", func(in []discovery.Instance) bool {
		return len(in) == 1 && in[0].Addr == addr && in[0].Failing
	})
	eventually.True(t, 5*time.Second, "the fallback logged", func() bool {
		return strings.Contains(logs.String(), "no instance passes its checks; routing to every registered one")
	})
	ready.Store(true)
	waitFor(t, updates, "the passing one, not failing", func(in []discovery.Instance) bool {
		return len(in) == 1 && in[0].Addr == addr && !in[0].Failing
	})
}

// loggedAgent starts a Consul agent for a test and returns its client, a
// logger writing to logs, and a context that ends with the test.
func loggedAgent(t *testing.T) (*api.Client, *slog.Logger, *logtest.Buffer, context.Context) {
	t.Helper()
	logs := &logtest.Buffer{}
	return consultest.Start(t).Client(), slog.New(slog.NewTextHandler(logs, nil)), logs, t.Context()
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
	host, port := instance(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := discovery.Register(ctx, agent.Client(), "kept", host, port, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	go reg.Maintain(ctx, 100*time.Millisecond)

	agent.Stop()
	agent.Restart()
	eventually.NoError(t, 15*time.Second, "the instance back in consul after the agent restarted", func() error {
		return oneHealthy(ctx, agent, "kept")
	})
}

// oneHealthy says why name is not one healthy instance in consul.
func oneHealthy(ctx context.Context, agent *consultest.Agent, name string) error {
	insts, _, err := discovery.Healthy(ctx, agent.Client(), name, 0, 0)
	if err != nil {
		return err
	}
	if len(insts) != 1 {
		return fmt.Errorf("healthy instances %v, want one", insts)
	}
	return nil
}

// instance serves /readyz (always ready) and returns its host and port.
func instance(t *testing.T) (string, int) {
	t.Helper()
	return serve(t, func(http.ResponseWriter, *http.Request) {})
}

// serve runs an instance answering with handler on loopback, until the
// test ends, and returns its host and port.
func serve(t *testing.T, handler http.HandlerFunc) (string, int) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	return host, port
}

type registered struct {
	reg *discovery.Registration
	err error
}

func registerAsync(ctx context.Context, agent *consultest.Agent, name, host string, port int, interval time.Duration, logs *logtest.Buffer) <-chan registered {
	done := make(chan registered, 1)
	client := agent.Client()
	go func() {
		reg, err := discovery.Register(ctx, client, name, host, port, interval, slog.New(slog.NewTextHandler(logs, nil)))
		done <- registered{reg, err}
	}()
	return done
}

func waitForLog(t *testing.T, logs *logtest.Buffer, want string) {
	t.Helper()
	eventually.NoError(t, 15*time.Second, fmt.Sprintf("%q in the log", want), func() error {
		if s := logs.String(); !strings.Contains(s, want) {
			return fmt.Errorf("the log so far:\n%s", s)
		}
		return nil
	})
}

const retrying = `msg="register in consul failed; retrying"`

// TestRegisterWaitsForTheAgent registers while the agent is down, then
// starts the agent on its address: the registration goes through and the
// instance becomes healthy.
func TestRegisterWaitsForTheAgent(t *testing.T) {
	agent := consultest.Start(t)
	agent.Stop()
	host, port := instance(t)
	var logs logtest.Buffer
	done := registerAsync(context.Background(), agent, "late", host, port, 200*time.Millisecond, &logs)
	waitForLog(t, &logs, retrying)

	agent.Restart()
	var r registered
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Register did not return within 20s of the agent starting")
	}
	if r.err != nil {
		t.Fatalf("Register: %v", r.err)
	}
	if !strings.Contains(logs.String(), `msg="register in consul succeeded after failed attempts"`) {
		t.Errorf("no info line on registering after failures:\n%s", logs.String())
	}
	eventually.NoError(t, 15*time.Second, "the instance healthy in consul", func() error {
		return oneHealthy(context.Background(), agent, "late")
	})
}

// TestRegisterEndsWithCtx: cancelling a registration that waits for the
// agent returns at once with ctx's error.
func TestRegisterEndsWithCtx(t *testing.T) {
	agent := consultest.Start(t)
	agent.Stop()
	host, port := instance(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs logtest.Buffer
	done := registerAsync(ctx, agent, "never", host, port, 200*time.Millisecond, &logs)
	waitForLog(t, &logs, retrying)
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Register = %v, want context.Canceled", r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Register still waiting 2s after ctx was cancelled")
	}
}

// TestRegisterRefusedIsNotRetried: a registration the agent refuses (here
// an invalid check; in production an ACL token that may not register the
// name, 403) returns at once: waiting cannot change it.
func TestRegisterRefusedIsNotRetried(t *testing.T) {
	agent := consultest.Start(t)
	host, port := instance(t)
	var logs logtest.Buffer
	select {
	case r := <-registerAsync(context.Background(), agent, "invalid", host, port, 0, &logs):
		if r.err == nil || !retry.IsPermanent(r.err) || !strings.Contains(r.err.Error(), "400") {
			t.Fatalf("Register = %v, want the agent's 400, marked permanent", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Register is retrying a refusal")
	}
	if strings.Contains(logs.String(), retrying) {
		t.Errorf("logged a retry:\n%s", logs.String())
	}
}

// TestWatchFollowsARestartedAgent: an agent that restarts without its
// state (a dev agent; a cluster rebuilt) starts its index over, lower than
// the watch's. The watch must show the restarted agent's instances within
// seconds, not block on its old index until the query's wait (30s) runs out.
func TestWatchFollowsARestartedAgent(t *testing.T) {
	agent := consultest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Raft entries before the restart, so that the watch's index is above
	// the restarted agent's for a while.
	for i := range 20 {
		host, port := instance(t)
		if _, err := discovery.Register(ctx, agent.Client(), fmt.Sprintf("other%d", i), host, port, time.Second, log); err != nil {
			t.Fatal(err)
		}
	}
	host, port := instance(t)
	if _, err := discovery.Register(ctx, agent.Client(), "watched", host, port, 200*time.Millisecond, log); err != nil {
		t.Fatal(err)
	}
	updates := make(chan []discovery.Instance, 64)
	go discovery.Watch(ctx, agent.Client(), "watched", log, func(in []discovery.Instance) { updates <- in })
	waitFor(t, updates, "the instance healthy", func(in []discovery.Instance) bool { return len(in) == 1 })

	agent.Stop()
	agent.Restart()
	host, port = instance(t)
	if _, err := discovery.Register(ctx, agent.Client(), "watched", host, port, 200*time.Millisecond, log); err != nil {
		t.Fatal(err)
	}
	want := net.JoinHostPort(host, strconv.Itoa(port))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case in := <-updates:
			if len(in) == 1 && in[0].Addr == want {
				return
			}
		case <-deadline:
			t.Fatal("the watch did not show the instance registered with the restarted agent within 10s")
		}
	}
}
