package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/logging"
)

// startupConfig is a service's configuration, without Consul unless
// consulAddr is set. Its HTTP address has port 0, for runAsync; start
// gives it a port known beforehand.
func startupConfig(t *testing.T, consulAddr string, drainDelay time.Duration) Config {
	t.Helper()
	cfg := Config{Name: "demo", HTTP: httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second},
		Log: logging.Config{Format: "text", Level: "error"}, DrainDelay: drainDelay}
	if consulAddr != "" {
		cfg.Discovery = discovery.Config{Addr: consulAddr, AdvertiseHost: "127.0.0.1", CheckInterval: 200 * time.Millisecond}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs, in the background until ctx is done, the service that New
// makes of cfg and build completes (routes, setup functions, components,
// closers), on an HTTP address whose port is known beforehand, and so
// are the metrics' if cfg has a metrics address: ports free a moment ago,
// as Run reports no address it bound. It returns once the service
// answers /healthz or Run has returned, with the service (its Config
// holds the addresses) and Run's result to come.
//
// Such a port can be taken by another listener before Run binds it (on a
// busy machine); then Run fails at once with "address already in use",
// and a new service is built and run on other ports
// (consultest.StartRetrying): build must be able to run more than once.
// A Service is not run twice, as Run registers its metrics.
func start(t *testing.T, ctx context.Context, cfg Config, build func(svc *Service)) (*Service, <-chan error) {
	t.Helper()
	var svc *Service
	done := make(chan error, 1)
	consultest.StartRetrying(t, "service start-up", func() error {
		ports := consultest.FreePorts(t, 2)
		c := cfg
		c.HTTP.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
		if c.MetricsAddr != "" {
			c.MetricsAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
		}
		svc = New(c, io.Discard)
		build(svc)
		ran := make(chan error, 1)
		go func() { ran <- svc.Run(ctx) }()
		var runErr error
		stopped := false
		eventually.NoError(t, 10*time.Second, "the service listening on "+c.HTTP.Addr, func() error {
			select {
			case runErr = <-ran:
				stopped = true
				return nil
			default:
			}
			resp, err := http.Get("http://" + c.HTTP.Addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
		switch {
		case !stopped:
			go func() { done <- <-ran }()
		case errors.Is(runErr, syscall.EADDRINUSE):
			return fmt.Errorf("Run: %w", runErr)
		default:
			done <- runErr
		}
		return nil
	})
	return svc, done
}

type answer struct {
	code       int
	body       string
	retryAfter string
}

// get returns the answer to GET url, waiting (with a deadline) for the
// listener if it is not up yet.
func get(t *testing.T, url string) answer {
	t.Helper()
	var a answer
	eventually.NoError(t, 10*time.Second, "GET "+url, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a = answer{resp.StatusCode, string(b), resp.Header.Get("Retry-After")}
		return nil
	})
	return a
}

// failing returns the readiness checks /readyz reports failing.
func failing(t *testing.T, base string) []string {
	t.Helper()
	a := get(t, base+"/readyz")
	if a.code == http.StatusOK {
		return nil
	}
	var body struct{ Failing []string }
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || a.code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz answered %d %q", a.code, a.body)
	}
	return body.Failing
}

// runAsync runs svc in the background until ctx is done, for a test that
// need not know its address beforehand: on port 0 no other listener can
// take it.
func runAsync(svc *Service, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return done
}

func wantReturn(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return nil
	}
}

// TestRunServesProbesWhileStarting: while a setup function waits for a
// dependency, the process is alive, not ready, and its routes answer 503
// starting; once it returns, the routes it added serve, its component runs
// and the instance is ready.
func TestRunServesProbesWhileStarting(t *testing.T) {
	dependency := make(chan struct{})
	var componentRan atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	svc, done := start(t, ctx, startupConfig(t, "", 0), func(svc *Service) {
		svc.Mux.HandleFunc("GET /early", func(w http.ResponseWriter, r *http.Request) {})
		svc.Setup(func(ctx context.Context) error {
			select {
			case <-dependency:
			case <-ctx.Done():
				return ctx.Err()
			}
			svc.Mux.HandleFunc("GET /late", func(w http.ResponseWriter, r *http.Request) {})
			svc.Go(func(ctx context.Context) error { componentRan.Store(true); <-ctx.Done(); return nil })
			return nil
		})
	})
	base := "http://" + svc.Config.HTTP.Addr

	if a := get(t, base+"/healthz"); a.code != http.StatusOK {
		t.Fatalf("/healthz while starting: %d, want 200", a.code)
	}
	if got := failing(t, base); !slices.Equal(got, []string{"startup"}) {
		t.Fatalf("/readyz while starting fails %v, want [startup]", got)
	}
	for _, path := range []string{"/early", "/late", "/nowhere"} {
		if a := get(t, base+path); a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, `"starting"`) || a.retryAfter == "" {
			t.Errorf("GET %s while starting: %d %q (Retry-After %q), want 503 starting with Retry-After", path, a.code, a.body, a.retryAfter)
		}
	}
	if a := get(t, base+"/metrics"); a.code != http.StatusOK {
		t.Errorf("/metrics while starting: %d, want 200", a.code)
	}
	if componentRan.Load() {
		t.Fatal("a component added by setup ran before setup returned")
	}

	close(dependency)
	eventually.True(t, 15*time.Second, "ready", func() bool { return failing(t, base) == nil })
	for path, want := range map[string]int{"/early": 200, "/late": 200, "/nowhere": 404} {
		if a := get(t, base+path); a.code != want {
			t.Errorf("GET %s once started: %d, want %d", path, a.code, want)
		}
	}
	eventually.True(t, 15*time.Second, "the component to run", componentRan.Load)
	cancel()
	if err := wantReturn(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunStopsDuringStartup: a stop while a setup function waits returns
// nil at once (no drain delay: nothing was routed to an instance never
// ready), runs the closers and never starts the components.
func TestRunStopsDuringStartup(t *testing.T) {
	var closed []string
	waiting := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	svc, done := start(t, ctx, startupConfig(t, "", time.Minute), func(svc *Service) {
		svc.OnClose(func() { closed = append(closed, "before Run") })
		svc.Setup(func(ctx context.Context) error {
			svc.OnClose(func() { closed = append(closed, "from setup") })
			close(waiting)
			<-ctx.Done()
			return fmt.Errorf("connect to cassandra: %w", ctx.Err())
		})
		svc.Setup(func(context.Context) error { t.Error("a second setup function ran after the first failed"); return nil })
		svc.Go(func(context.Context) error { t.Error("a component ran though start-up never finished"); return nil })
	})
	base := "http://" + svc.Config.HTTP.Addr
	<-waiting
	if a := get(t, base+"/healthz"); a.code != http.StatusOK {
		t.Fatalf("/healthz while starting: %d", a.code)
	}
	cancel()
	if err := wantReturn(t, done, 5*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil for a stop during start-up", err)
	}
	if want := []string{"from setup", "before Run"}; !slices.Equal(closed, want) {
		t.Fatalf("closers ran %v, want %v", closed, want)
	}
}

// TestRunSetupFails: a setup error stops the service and is Run's error.
func TestRunSetupFails(t *testing.T) {
	svc := New(startupConfig(t, "", time.Minute), io.Discard)
	refused := errors.New("password incorrect")
	svc.Setup(func(context.Context) error { return refused })
	closed := false
	svc.OnClose(func() { closed = true })
	if err := wantReturn(t, runAsync(svc, context.Background()), 5*time.Second); !errors.Is(err, refused) {
		t.Fatalf("Run = %v, want the setup error", err)
	}
	if !closed {
		t.Fatal("closers did not run")
	}
}

// TestRunWaitsForConsul starts a service while its Consul agent is down:
// the service serves, unready because not discoverable, registers once the
// agent is started on its address, becomes healthy in Consul, and leaves
// it on shutdown.
func TestRunWaitsForConsul(t *testing.T) {
	agent := consultest.Start(t)
	agent.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, done := start(t, ctx, startupConfig(t, agent.Addr(), 10*time.Millisecond), func(svc *Service) {
		svc.Mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {})
	})
	base := "http://" + svc.Config.HTTP.Addr

	eventually.True(t, 15*time.Second, "start-up done", func() bool { return get(t, base+"/hello").code == http.StatusOK })
	if got := failing(t, base); !slices.Equal(got, []string{"consul"}) {
		t.Fatalf("/readyz before registering fails %v, want [consul]", got)
	}

	agent.Restart()
	healthy := func() int {
		insts, _, err := discovery.Healthy(context.Background(), agent.Client(), "demo", 0, 0)
		if err != nil {
			return -1
		}
		return len(insts)
	}
	eventually.True(t, 15*time.Second, "the instance healthy in consul", func() bool { return healthy() == 1 })
	eventually.True(t, 5*time.Second, "/readyz passing once consul passes the instance", func() bool { return failing(t, base) == nil })
	cancel()
	if err := wantReturn(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := healthy(); n != 0 {
		t.Fatalf("%d instances in consul after shutdown, want 0", n)
	}
}

// TestRunReadyOnlyOnceConsulPassesIt: registered, and every other check
// passing, an instance is not ready until Consul's check has passed it:
// Kubernetes would retire an old instance for one no gateway routes to.
// Consul's check leaves the "consul" readiness check out, and once the
// instance passes there it is ready, with Consul listing it passing.
func TestRunReadyOnlyOnceConsulPassesIt(t *testing.T) {
	agent := consultest.Start(t)
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"first check an hour away", time.Hour}, {"checked every 200ms", 200 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := startupConfig(t, agent.Addr(), 10*time.Millisecond)
			cfg.Discovery.CheckInterval = tc.interval
			svc, done := start(t, ctx, cfg, func(*Service) {})
			base := "http://" + svc.Config.HTTP.Addr
			id := "demo-127.0.0.1-" + strings.TrimPrefix(svc.Config.HTTP.Addr, "127.0.0.1:")
			eventually.NoError(t, 15*time.Second, "the instance registered", func() error {
				svcs, err := agent.Client().Agent().Services()
				if err != nil {
					return err
				}
				if svcs[id] == nil {
					return fmt.Errorf("%s not among %d services", id, len(svcs))
				}
				return nil
			})
			// What Consul checks (TestWaitPassing: /readyz?exclude=consul).
			if a := get(t, base+"/readyz?exclude=consul"); a.code != http.StatusOK {
				t.Fatalf("/readyz?exclude=consul answers %d %s", a.code, a.body)
			}
			if tc.interval == time.Hour {
				// Consul runs a new check first at a random moment of
				// its interval: the instance is critical there for now.
				for range 5 {
					if got := failing(t, base); !slices.Equal(got, []string{"consul"}) {
						t.Fatalf("/readyz before consul passed the instance fails %v, want [consul]", got)
					}
					time.Sleep(100 * time.Millisecond)
				}
				if a := get(t, base+"/readyz"); !strings.Contains(a.body, "waiting for its check to pass") {
					t.Fatalf("/readyz says %s, want why", a.body)
				}
				return
			}
			eventually.True(t, 15*time.Second, "the instance ready", func() bool { return failing(t, base) == nil })
			insts, _, err := discovery.Healthy(context.Background(), agent.Client(), "demo", 0, 0)
			if err != nil || !slices.ContainsFunc(insts, func(in discovery.Instance) bool { return in.ID == id }) {
				t.Fatalf("ready, and consul lists %v passing (%v), want %s among them", insts, err, id)
			}
			cancel()
			if err := wantReturn(t, done, 10*time.Second); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestRunStopsWhileWaitingForConsul: a stop while the agent is down
// returns at once, without the drain delay of an instance never ready.
func TestRunStopsWhileWaitingForConsul(t *testing.T) {
	agent := consultest.Start(t)
	agent.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	svc, done := start(t, ctx, startupConfig(t, agent.Addr(), time.Minute), func(*Service) {})
	base := "http://" + svc.Config.HTTP.Addr
	eventually.True(t, 15*time.Second, "waiting for consul", func() bool { return slices.Equal(failing(t, base), []string{"consul"}) })
	cancel()
	if err := wantReturn(t, done, 5*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunEndsWhenConsulRefuses: a registration the agent refuses (here an
// invalid check interval; in production a token without the right, 403)
// is not waited for: Run stops with the agent's answer and a hint.
func TestRunEndsWhenConsulRefuses(t *testing.T) {
	agent := consultest.Start(t)
	cfg := startupConfig(t, agent.Addr(), time.Minute)
	cfg.Discovery.CheckInterval = 0 // past Validate: the agent answers 400
	svc := New(cfg, io.Discard)
	err := wantReturn(t, runAsync(svc, context.Background()), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Fatalf("Run = %v, want the agent's refusal and the hint", err)
	}
}
