package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/logging"
)

// TestRunRegistersServesAndDrains runs a service against the real Consul
// agent: it registers and becomes healthy, serves the shared endpoints, and
// on shutdown leaves Consul and lets an in-flight request finish, with its
// components (the metrics listener among them) running until it has.
func TestRunRegistersServesAndDrains(t *testing.T) {
	agent := consultest.Start(t)
	cfg := Config{
		Name:        "demo",
		HTTP:        httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		Log:         logging.Config{Format: "text", Level: "error"},
		Discovery:   discovery.Config{Addr: agent.Addr(), AdvertiseHost: "127.0.0.1", CheckInterval: 200 * time.Millisecond},
		DrainDelay:  10 * time.Millisecond,
		MetricsAddr: "127.0.0.1:0", // start gives it a port
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The slow request needs the component to answer it, as a request to
	// collection needs its dead-letter queue: the component must outlive
	// the drain.
	work := make(chan chan string)
	started := make(chan struct{})
	release := make(chan struct{})
	componentStopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	svc, runErr := start(t, ctx, cfg, func(svc *Service) {
		svc.Mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			reply := make(chan string, 1)
			select {
			case work <- reply:
				io.WriteString(w, <-reply)
			case <-time.After(5 * time.Second):
				io.WriteString(w, "component gone")
			}
		})
		svc.Go(func(ctx context.Context) error {
			defer close(componentStopped)
			for {
				select {
				case reply := <-work:
					reply <- "done"
				case <-ctx.Done():
					return nil
				}
			}
		})
	})
	metricsAddr := svc.Config.MetricsAddr

	var addr string
	eventually.NoError(t, 15*time.Second, "the service healthy in Consul", func() error {
		insts, _, err := discovery.Healthy(context.Background(), agent.Client(), "demo", 0, 0)
		if err != nil {
			return err
		}
		if len(insts) != 1 {
			return fmt.Errorf("healthy instances %v, want one", insts)
		}
		addr = insts[0].Addr
		return nil
	})
	// Ready a moment after Consul passes it: the instance waits to see
	// itself passing there.
	eventually.NoError(t, 5*time.Second, "the service ready", func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		return nil
	})
	for _, u := range []string{"http://" + addr + "/healthz", "http://" + metricsAddr + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", u, resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.HasSuffix(u, "/metrics") && !strings.Contains(string(body), "go_goroutines") {
			t.Fatal("/metrics lacks the Go collector")
		}
	}

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	cancel()
	// The instance leaves Consul while the request is still in flight.
	eventually.NoError(t, 10*time.Second, "the service out of Consul after shutdown began", func() error {
		insts, _, err := discovery.Healthy(context.Background(), agent.Client(), "demo", 0, 0)
		if err != nil {
			return err
		}
		if len(insts) != 0 {
			return fmt.Errorf("still healthy: %v", insts)
		}
		return nil
	})
	select {
	case <-componentStopped:
		t.Fatal("component stopped while a request was still in flight")
	default:
	}
	// The metrics listener is a component too: Prometheus still scrapes
	// during the drain.
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Fatalf("GET /metrics during the drain: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /metrics during the drain: %d", resp.StatusCode)
		}
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request got %q, want it drained to completion", got)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-componentStopped:
	default:
		t.Fatal("Run returned before its component stopped")
	}
}

func TestParseAndRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-nope"}, nil, "flag provided but not defined: -nope (see -help)"},
		{"bad value", []string{"-http-addr=nonsense"}, nil, `invalid configuration: -http-addr "nonsense" is not host:port`},
		{"bad env", nil, map[string]string{"DEMO_LOG_LEVEL": "loud"}, `-log-level must be debug, info, warn or error, got "loud"`},
		{"bad duration", []string{"-shutdown-timeout=soon"}, nil, `invalid value "soon" for flag -shutdown-timeout`},
		{"argument", []string{"-log-level=debug", "serve"}, nil, `unexpected argument "serve"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg testConfig
			ran := false
			err := parseAndRun("demo", "DEMO", &cfg, tt.args, io.Discard, func(context.Context) error { ran = true; return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error = %v; want one line containing %q", err, tt.want)
			}
			if ran {
				t.Fatal("run was called despite the configuration error")
			}
		})
	}
}

// TestParseAndRunCheckConfig checks -check-config: the flags and the
// environment parsed as a start would, every problem printed one a line
// (each refused variable and then Validate's error) or ok, and nothing run.
func TestParseAndRunCheckConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // lines of the output
		invalid bool
	}{
		{"ok", []string{"-check-config"}, map[string]string{"DEMO_LOG_LEVEL": "warn"}, []string{"ok"}, false},
		{"by the environment", nil, map[string]string{"DEMO_CHECK_CONFIG": "true"}, []string{"ok"}, false},
		{"every problem", []string{"-check-config"},
			map[string]string{"DEMO_DRAIN_DELAY": "soon", "DEMO_SHUTDOWN_TIMEOUT": "", "DEMO_HTTP_ADDR": "nonsense"},
			[]string{`invalid value "soon" for DEMO_DRAIN_DELAY`, `invalid value "" for DEMO_SHUTDOWN_TIMEOUT`,
				`invalid configuration: -http-addr "nonsense" is not host:port`}, true},
		{"validation", []string{"-check-config", "-consul-addr=consul"}, nil, []string{`invalid configuration: -consul-addr "consul" is not host:port`}, true},
		{"unknown flag first", []string{"-nope", "-check-config"}, nil, []string{"flag provided but not defined: -nope"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg testConfig
			var out strings.Builder
			ran := false
			err := parseAndRun("demo", "DEMO", &cfg, tt.args, &out, func(context.Context) error { ran = true; return nil })
			if got := errors.Is(err, errConfigInvalid); got != tt.invalid || (err != nil && !got) {
				t.Fatalf("error = %v, want invalid %v", err, tt.invalid)
			}
			if ran {
				t.Fatal("-check-config ran the binary")
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("output:\n%s\nwant %d lines: %q", out.String(), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d = %q, want it to begin %q", i+1, lines[i], w)
				}
			}
		})
	}
}

type testConfig struct{ Service Config }

func (c *testConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "demo"
	c.Service.RegisterFlags(fs, "127.0.0.1:0")
}
func (c *testConfig) Validate() error { return c.Service.Validate() }

// TestParseAndRunHelp checks -help: every flag with its variable on stdout,
// no error (Main exits 0) and nothing run; a command's usage line too for a
// configuration that takes one.
func TestParseAndRunHelp(t *testing.T) {
	for _, tt := range []struct {
		cfg  Flagged
		want []string
	}{
		{&testConfig{}, []string{"Usage of demo (every flag", "-http-addr", "(env DEMO_HTTP_ADDR)"}},
		{&commandConfig{}, []string{"Usage of demo (every flag", "  demo [flags] get <key> | list\n", "(env DEMO_LOG_LEVEL)"}},
		// A command whose flags after it ask for help.
		{&commandConfig{helpAfter: true}, []string{"Usage of demo (every flag", "  demo [flags] get <key> | list\n", "(env DEMO_LOG_LEVEL)"}},
	} {
		var out strings.Builder
		ran := false
		args := []string{"-help"}
		if c, ok := tt.cfg.(*commandConfig); ok && c.helpAfter {
			args = []string{"list", "-help"}
		}
		if err := parseAndRun("demo", "DEMO", tt.cfg, args, &out, func(context.Context) error { ran = true; return nil }); err != nil {
			t.Fatalf("%T: -help: %v", tt.cfg, err)
		}
		if ran {
			t.Fatalf("%T: -help ran the binary", tt.cfg)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%T: -help output lacks %q:\n%s", tt.cfg, w, out.String())
			}
		}
	}
}

// TestParseAndRunCommand checks that a Commanded configuration gets the
// arguments after its flags (those included that look like flags) before
// Validate.
func TestParseAndRunCommand(t *testing.T) {
	t.Setenv("DEMO_LOG_LEVEL", "warn")
	var cfg commandConfig
	err := parseAndRun("demo", "DEMO", &cfg, []string{"-log-format", "text", "get", "-k"}, io.Discard, func(context.Context) error {
		if got, want := strings.Join(cfg.args, " "), "get -k"; got != want {
			t.Errorf("args = %q, want %q", got, want)
		}
		if cfg.Log.Format != "text" || cfg.Log.Level != "warn" {
			t.Errorf("log config = %+v, want the flag's format and the environment's level", cfg.Log)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg = commandConfig{}
	err = parseAndRun("demo", "DEMO", &cfg, nil, io.Discard, func(context.Context) error { return nil })
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "no command") {
		t.Fatalf("error = %v; want one line saying there is no command", err)
	}
}

type commandConfig struct {
	Log       logging.Config
	args      []string
	helpAfter bool // Validate finds -help after the command, as deadletters' does
}

func (c *commandConfig) RegisterFlags(fs *flag.FlagSet) { c.Log.RegisterFlags(fs) }
func (c *commandConfig) ArgsUsage() string              { return "get <key> | list" }
func (c *commandConfig) SetArgs(args []string)          { c.args = args }
func (c *commandConfig) Validate() error {
	if len(c.args) == 0 {
		return errors.New("no command")
	}
	if c.helpAfter && slices.Contains(c.args[1:], "-help") {
		return fmt.Errorf("after %s: %w", c.args[0], flag.ErrHelp)
	}
	return c.Log.Validate()
}

// TestMetricsOnTheirOwnAddress checks -metrics-addr: /metrics is served
// there and no longer on the service's (public) address.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	cfg := Config{
		Name:        "demo",
		HTTP:        httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second},
		Log:         logging.Config{Format: "text", Level: "error"},
		MetricsAddr: "127.0.0.1:0", // start gives both a port
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, runErr := start(t, ctx, cfg, func(*Service) {})
	httpAddr, metricsAddr := svc.Config.HTTP.Addr, svc.Config.MetricsAddr
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	get := func(url string) (code int, body string) {
		t.Helper()
		eventually.NoError(t, 5*time.Second, "GET "+url, func() error {
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			return nil
		})
		return code, body
	}
	if code, body := get("http://" + metricsAddr + "/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics on -metrics-addr: %d %.100s", code, body)
	}
	if code, _ := get("http://" + httpAddr + "/healthz"); code != 200 {
		t.Fatalf("GET /healthz on -http-addr: %d", code)
	}
	if code, _ := get("http://" + httpAddr + "/metrics"); code != 404 {
		t.Fatalf("GET /metrics on -http-addr: %d, want 404 (served on -metrics-addr only)", code)
	}
}

func TestMetricsAddrIsValidated(t *testing.T) {
	cfg := Config{Name: "demo", HTTP: httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second},
		Log: logging.Config{Format: "text", Level: "error"}, MetricsAddr: "9090"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "-metrics-addr") {
		t.Fatalf("Validate: %v, want an error naming -metrics-addr", err)
	}
}

// TestComponentsStopWithinShutdownTimeout checks that a component that
// does not return once cancelled cannot hold the shutdown past the
// shutdown timeout (and its minimum for components).
func TestComponentsStopWithinShutdownTimeout(t *testing.T) {
	cfg := Config{Name: "demo", HTTP: httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second},
		Log: logging.Config{Format: "text", Level: "error"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := New(cfg, io.Discard)
	stuck := make(chan struct{})
	defer close(stuck)
	running := make(chan struct{})
	svc.Go(func(context.Context) error { close(running); <-stuck; return nil })
	closed := make(chan struct{})
	svc.OnClose(func() { close(closed) })

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	<-running // components start once start-up is done
	cancel()
	select {
	case err := <-runErr:
		if err == nil || !strings.Contains(err.Error(), "components did not stop") {
			t.Fatalf("Run: %v, want the components' timeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still waiting for a stuck component")
	}
	select {
	case <-closed:
	default:
		t.Fatal("closers did not run after the components' timeout")
	}
}

// TestDrainDelayWithoutConsul checks that an instance not registered in
// Consul (the gateway with static upstreams, behind a load balancer) also
// keeps serving, with readiness failing, for the drain delay.
func TestDrainDelayWithoutConsul(t *testing.T) {
	cfg := Config{Name: "demo", HTTP: httpserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second},
		Log: logging.Config{Format: "text", Level: "error"}, DrainDelay: 2 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, runErr := start(t, ctx, cfg, func(*Service) {})
	addr := svc.Config.HTTP.Addr

	get := func(path string) (int, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	eventually.True(t, 5*time.Second, "the service ready", func() bool {
		code, err := get("/readyz")
		return err == nil && code == 200
	})
	cancel()
	for {
		code, err := get("/readyz")
		if err != nil {
			t.Fatalf("GET /readyz after shutdown began: %v; want 503 for the drain delay", err)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
	}
	if code, err := get("/healthz"); err != nil || code != 200 {
		t.Fatalf("GET /healthz during the drain delay: %d %v, want 200", code, err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
