// Package service is the lifecycle every binary of the product shares: flags
// for logging, HTTP and Consul; /healthz, /readyz and /metrics, served from
// the moment the process starts; a start-up that may wait for the
// service's dependencies (Cassandra, Kafka) while the process is seen
// alive but not ready; registration in Consul, waiting for the agent if
// need be; and a shutdown that takes the instance out of discovery and
// readiness first, then drains in-flight requests and background
// components within a bounded time.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/logging"
	"github.com/acme/analytics/pkg/metrics"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Config is the part of every service's configuration that this package
// owns.
type Config struct {
	Name      string // Consul service name and log attribute; set by the binary
	HTTP      httpserver.Config
	Log       logging.Config
	Discovery discovery.Config
	// DrainDelay is how long the instance keeps serving once shutdown
	// begins (readiness failing, out of Consul), so that gateways watching
	// Consul and load balancers checking readiness stop routing to it
	// before its listener closes. It applies with or without Consul.
	DrainDelay time.Duration
	// MetricsAddr, when set, serves /metrics on this address alone instead
	// of on the service's HTTP address: for a binary whose HTTP address is
	// public (the gateway). A binary sets its default before RegisterFlags.
	MetricsAddr string
}

// RegisterFlags registers the shared flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet, defaultAddr string) {
	c.HTTP.RegisterFlags(fs, defaultAddr)
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve /metrics on this address (host:port) instead of -http-addr; empty: on -http-addr")
	c.Log.RegisterFlags(fs)
	c.Discovery.RegisterFlags(fs)
	fs.DurationVar(&c.DrainDelay, "drain-delay", time.Second, "how long to keep serving after shutdown begins (readiness failing, out of Consul), before closing the listener")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("service name is empty")
	}
	for _, v := range []func() error{c.HTTP.Validate, c.Log.Validate, c.Discovery.Validate} {
		if err := v(); err != nil {
			return err
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("-metrics-addr %q is not host:port: %w", c.MetricsAddr, err)
		}
	}
	return nil
}

// Component is a long-running part of a service. It runs until ctx is done
// and then returns after finishing its in-flight work; a non-nil error stops
// the whole service. At shutdown ctx is done only once the HTTP server has
// drained, so a component keeps serving the requests in flight.
type Component func(ctx context.Context) error

// Service is a running binary's shared parts, handed to the service's own
// code to register routes, checks, metrics and components.
type Service struct {
	Config   Config
	Log      *slog.Logger
	Registry *prometheus.Registry
	Health   *httpserver.Health
	Mux      *http.ServeMux

	metrics    *http.ServeMux // /metrics alone, when Config.MetricsAddr is set
	setups     []func(ctx context.Context) error
	components []Component
	closers    []func()
	quiet      []string    // paths and route patterns whose successful requests log at debug
	started    atomic.Bool // the setup functions have returned: every route answers
}

// New builds a Service that logs to w.
func New(c Config, w io.Writer) *Service {
	log := logging.New(c.Log, w).With(slog.String("service", c.Name))
	s := &Service{
		Config:   c,
		Log:      log,
		Registry: metrics.NewRegistry(),
		Health:   httpserver.NewHealth(),
		Mux:      http.NewServeMux(),
	}
	s.Health.Register(s.Mux)
	if c.MetricsAddr == "" {
		s.Mux.Handle("GET /metrics", metrics.Handler(s.Registry))
	} else {
		s.metrics = http.NewServeMux()
		s.metrics.Handle("GET /metrics", metrics.Handler(s.Registry))
	}
	return s
}

// Setup adds fn to the service's start-up, for what needs a dependency
// that may not be there yet (a Cassandra session from
// cassandra.ConnectRetry, a Kafka producer): Run calls the setup functions
// in order once its HTTP server answers, so that while fn waits the
// process is seen alive (/healthz) and not ready (/readyz fails with
// "startup"), and every route but the probes and /metrics answers 503
// starting. fn adds the routes, checks, components and closers that need
// what it waited for (Go, OnClose and Mux may be used from fn). Once every
// setup function has returned nil, the components start and the instance
// registers in Consul.
//
// ctx is Run's: it is done when shutdown begins (a signal, a component
// failing), not when fn returns, so fn may hand it to what must notice
// shutdown. fn must return soon after ctx is done: Run waits for it, at
// most -shutdown-timeout, before its shutdown goes on. An error from fn
// stops the service and is Run's error, unless it wraps ctx's error once
// ctx is done: a stop during start-up is a stop, not a failure.
func (s *Service) Setup(fn func(ctx context.Context) error) { s.setups = append(s.setups, fn) }

// Go adds a component that runs alongside the HTTP server, from the end of
// start-up.
func (s *Service) Go(c Component) { s.components = append(s.components, c) }

// OnClose registers fn to run after every component and the HTTP server have
// stopped (close clients, flush producers). They run in reverse order.
func (s *Service) OnClose(fn func()) { s.closers = append(s.closers, fn) }

// QuietAccessLog makes the access log record the successful requests to
// paths at debug level rather than info: for high-volume paths, such as
// the hit endpoints, and routes, such as config-svc's internal reads. Each
// is an exact path or a route's ServeMux pattern as registered on Mux
// (httpserver.AccessLog). Call it before Run.
func (s *Service) QuietAccessLog(paths ...string) { s.quiet = append(s.quiet, paths...) }

// Run serves until ctx is done or a component fails, then shuts down.
//
// Start-up: the HTTP server (and the -metrics-addr listener) serve at
// once, /healthz answering and /readyz failing; the setup functions run
// (Setup), waiting for the dependencies they need; then the components
// start, every route answers, and the instance registers in Consul,
// waiting for the agent while it cannot be reached (discovery.Register).
// /readyz passes once start-up is done, the instance is registered and
// Consul has passed its check once (so the gateways find it), and every
// check passes.
//
// Shutdown: readiness fails and the instance leaves Consul, the drain delay
// passes (skipped when the instance was never ready: nothing routes to it),
// the HTTP server drains, components stop, closers run. Components run
// until the HTTP server has drained (a request in flight may need them);
// the drain and their stop together are bounded by the shutdown timeout
// (components get at least minComponentStop). A stop during start-up
// returns nil, as a stop after it does.
func (s *Service) Run(ctx context.Context) error {
	begun := time.Now()
	var consul *api.Client
	if s.Config.Discovery.Enabled() {
		client, err := s.Config.Discovery.Client()
		if err != nil {
			return err
		}
		consul = client
	}
	handler := httpserver.Chain(s.whileStarting(s.Mux),
		httpserver.WithRequestID,
		httpserver.AccessLog(s.Log, s.quiet...),
		httpserver.Metrics(s.Registry),
		// Innermost, so a panic becomes a 500 that the access log and the
		// metrics see.
		httpserver.Recover(s.Log),
	)
	srv, err := httpserver.Listen(s.Config.HTTP, handler, s.Log)
	if err != nil {
		return err
	}
	var msrv *httpserver.Server
	if s.metrics != nil {
		msrv, err = httpserver.Listen(httpserver.Config{Addr: s.Config.MetricsAddr, ShutdownTimeout: time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}, s.metrics, s.Log)
		if err != nil {
			srv.Close()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	// While a setup function runs it may still add closers and use what
	// they close: then they are left to the exiting process.
	setupRunning := false
	defer func() {
		if setupRunning {
			return
		}
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
	}()

	// registered: Consul has the instance; discoverable: its check has
	// passed there once, so the gateways route to it.
	var registered, discoverable atomic.Bool
	s.Health.Add("startup", func(context.Context) error {
		if !s.started.Load() {
			return errors.New("starting: waiting for its dependencies")
		}
		return nil
	})
	if consul != nil {
		// Ready only once discoverable: a rollout (maxUnavailable 0)
		// must not retire an old instance for a new one nobody can find,
		// which a new instance is until Consul's first run of its check,
		// up to a check interval after it registers. Consul's check
		// leaves this one out (discovery.Register), or it would wait for
		// itself. Once passed, it stays passed: readiness then follows
		// the other checks, and a Consul agent's trouble does not make
		// every instance unready at once.
		s.Health.Add(discovery.ReadinessCheck, func(context.Context) error {
			switch {
			case !registered.Load():
				return fmt.Errorf("not registered in consul yet (agent at %s)", s.Config.Discovery.Addr)
			case !discoverable.Load():
				return fmt.Errorf("registered in consul, waiting for its check to pass there (every %s)", s.Config.Discovery.CheckInterval)
			}
			return nil
		})
	}

	// The HTTP server and the components outlive ctx: at shutdown the
	// server drains first, and the components stop after it, since the
	// requests in flight may need them (collection's dead-letter queue,
	// the gateway's discovery watches and its /metrics listener).
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Run(httpCtx) }()

	compCtx, stopComponents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopComponents()
	g, gctx := errgroup.WithContext(compCtx)
	if msrv != nil {
		g.Go(func() error { return msrv.Run(gctx) })
	}

	// The setup functions' ctx: done as soon as shutdown begins, whatever
	// begins it.
	setupCtx, beginShutdown := context.WithCancel(ctx)
	defer beginShutdown()
	// stopped drops a setup error that only says its ctx ended: the
	// cause of the shutdown (a signal, a component) is reported apart.
	stopped := func(err error) error {
		if setupCtx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return nil
		}
		return err
	}
	setupErr := make(chan error, 1)
	setupRunning = true
	go func() { setupErr <- s.setUp(setupCtx) }()

	var startResult, httpResult error
	httpStopped := false
	select {
	case <-ctx.Done():
	case <-gctx.Done(): // the metrics listener failed
	case httpResult = <-httpErr:
		httpStopped = true
	case err := <-setupErr:
		setupRunning = false
		startResult = stopped(err)
	}
	started := !setupRunning && startResult == nil && ctx.Err() == nil

	// Re-registration stops when shutdown begins, before the instance
	// deregisters, so that it cannot put the instance back.
	maintainCtx, stopMaintain := context.WithCancel(gctx)
	defer stopMaintain()
	maintained := make(chan struct{})
	regFailed := make(chan error, 1)
	var reg *discovery.Registration
	if started {
		answerUnrouted(s.Mux)
		s.started.Store(true)
		for _, c := range s.components {
			g.Go(func() error { return c(gctx) })
		}
		s.Log.Info("started", slog.Duration("took", time.Since(begun).Round(time.Millisecond)))
		if consul != nil {
			go func() {
				defer close(maintained)
				var err error
				if reg, err = s.keepRegistered(maintainCtx, consul, srv.Addr().Port, &registered, &discoverable); err != nil {
					regFailed <- err
				}
			}()
		} else {
			close(maintained)
		}
		select {
		case <-ctx.Done():
		case <-gctx.Done(): // a component failed
		case httpResult = <-httpErr:
			httpStopped = true
		case startResult = <-regFailed:
		}
	} else {
		close(maintained)
	}

	if started {
		s.Log.Info("shutting down")
	} else {
		s.Log.Info("shutting down during start-up")
	}
	beginShutdown()
	s.Health.Drain()
	if setupRunning {
		select {
		case err := <-setupErr:
			setupRunning = false
			startResult = stopped(err)
		case <-time.After(s.Config.HTTP.ShutdownTimeout):
			startResult = errors.New("start-up did not stop within -shutdown-timeout")
		}
	}
	stopMaintain()
	<-maintained // reg is set, if at all, before maintained closes
	if reg != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := reg.Deregister(dctx); err != nil {
			s.Log.Warn("deregistration failed; Consul removes the instance when its check fails", slog.Any("error", err))
		}
		cancel()
	}
	// Registered or not: without Consul (the gateway's static upstreams)
	// a load balancer's health check still has to notice the failing
	// readiness before the listener closes. An instance that never could
	// be ready (start-up unfinished, or not yet in Consul) has nothing
	// routed to it to drain.
	couldBeReady := started && (consul == nil || reg != nil)
	if couldBeReady && !httpStopped && s.Config.DrainDelay > 0 {
		time.Sleep(s.Config.DrainDelay)
	}
	stopHTTP()
	// -shutdown-timeout bounds the HTTP drain and the components' stop
	// together, so that drain delay + shutdown timeout + a margin is the
	// whole shutdown (what terminationGracePeriodSeconds is sized by).
	deadline := time.Now().Add(s.Config.HTTP.ShutdownTimeout)
	if !httpStopped {
		select {
		case httpResult = <-httpErr:
		case <-time.After(s.Config.HTTP.ShutdownTimeout + time.Second):
			httpResult = errors.New("http server did not stop in time")
		}
	}
	stopComponents()
	compErr := make(chan error, 1)
	go func() { compErr <- g.Wait() }()
	var compResult error
	select {
	case compResult = <-compErr:
	case <-time.After(max(time.Until(deadline), minComponentStop)):
		// Closers run all the same (flush the producers); the process
		// is about to exit.
		compResult = errors.New("components did not stop within -shutdown-timeout")
	}
	if err := errors.Join(startResult, compResult, httpResult); err != nil {
		return err
	}
	s.Log.Info("stopped")
	return nil
}

// keepRegistered registers the instance in Consul, waiting for the agent
// (discovery.Register), sets discoverable once Consul lists it passing,
// and keeps it registered until ctx is done. It returns the registration,
// nil if none was made, and the agent's refusal, nil when ctx ended first.
func (s *Service) keepRegistered(ctx context.Context, consul *api.Client, port int, registered, discoverable *atomic.Bool) (*discovery.Registration, error) {
	reg, err := discovery.Register(ctx, consul, s.Config.Name, s.Config.Discovery.AdvertiseHost, port,
		s.Config.Discovery.CheckInterval, s.Log.With(slog.String("consul_addr", s.Config.Discovery.Addr)))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("%w (the Consul agent at %s refused it: may the service's ACL token, CONSUL_HTTP_TOKEN, register %q?)",
			err, s.Config.Discovery.Addr, s.Config.Name)
	}
	registered.Store(true)
	go func() {
		if reg.WaitPassing(ctx) == nil {
			discoverable.Store(true)
			s.Log.Info("passing in consul", slog.String("service_id", reg.ID()))
		}
	}()
	reg.Maintain(ctx, max(s.Config.Discovery.CheckInterval, time.Second))
	return reg, nil
}

// setUp runs the setup functions in order, stopping at the first error.
func (s *Service) setUp(ctx context.Context) error {
	for _, fn := range s.setups {
		if err := fn(ctx); err != nil {
			return err
		}
	}
	return nil
}

// whileStarting answers every request but the probes and /metrics with
// 503 until start-up is done: until then the routes may not be registered
// yet, or may need what start-up waits for. Nothing routes such requests
// here (the instance is not ready and not in Consul); a client that calls
// the instance directly is told to come back.
func (s *Service) whileStarting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.started.Load() {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
			default:
				w.Header().Set("Retry-After", "1")
				httpserver.WriteError(w, http.StatusServiceUnavailable, "starting", "the service is starting (waiting for its dependencies); retry shortly")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// minComponentStop is the least time components have to finish once
// cancelled, even when the HTTP drain used the whole shutdown timeout.
const minComponentStop = 2 * time.Second

// Flagged is a configuration that registers its flags and validates
// itself once parsed.
type Flagged interface {
	RegisterFlags(fs *flag.FlagSet)
	Validate() error
}

// Commanded is a Flagged configuration that also takes arguments after its
// flags: a command and its operands (configctl). Main hands them to SetArgs
// before Validate, and -help shows ArgsUsage after the binary's name. Any
// other configuration refuses an argument after its flags.
//
// A command that parses flags after itself (`deadletters list -help`) makes
// Validate return an error wrapping flag.ErrHelp when they ask for help:
// Main then prints the help, as for -help before the command, and exits 0.
type Commanded interface {
	Flagged
	ArgsUsage() string // e.g. "changes [since]"
	SetArgs(args []string)
}

// Main is the body of every cmd/<name>/main.go: it parses cfg from the
// process arguments with environment fallbacks under envPrefix, validates
// it, and calls run with a context cancelled on SIGINT or SIGTERM. Any error
// exits 1 with a one-line message; -help prints every flag and exits 0.
//
// -check-config parses and validates as a start would and exits without
// calling run: it prints every problem found, one a line, and exits 2, or
// prints "ok" and exits 0. deploy/validate runs every binary so with each
// manifest's environment.
func Main(name, envPrefix string, cfg Flagged, run func(ctx context.Context) error) {
	err := parseAndRun(name, envPrefix, cfg, os.Args[1:], os.Stdout, run)
	if errors.Is(err, errConfigInvalid) {
		os.Exit(2) // the problems are printed
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// CheckConfigFlag is the flag that makes Main only check the configuration.
const CheckConfigFlag = "check-config"

// errConfigInvalid is parseAndRun's error when -check-config found
// problems, once it has printed them.
var errConfigInvalid = errors.New("invalid configuration")

// parseAndRun is Main short of exiting; -help and -check-config write to
// stdout.
func parseAndRun(name, envPrefix string, cfg Flagged, args []string, stdout io.Writer, run func(ctx context.Context) error) error {
	fs, check := newFlagSet(name, cfg)
	// Errors are reported in one line by Main; the full usage is printed
	// only when asked for.
	fs.SetOutput(io.Discard)
	cmd, commanded := cfg.(Commanded)
	parse := flagenv.Parse
	if commanded {
		parse = flagenv.ParseArgs
	}
	err := parse(fs, envPrefix, args)
	help := func() error {
		fmt.Fprintf(stdout, "Usage of %s (every flag can also be set by the environment variable shown):\n", name)
		if commanded {
			fmt.Fprintf(stdout, "  %s [flags] %s\n", name, cmd.ArgsUsage())
		}
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		return help()
	}
	if *check || checkRequested(args) {
		return checkConfig(cfg, fs, err, stdout)
	}
	if err != nil {
		return fmt.Errorf("%w (see -help)", err)
	}
	if err := validate(cfg, fs); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -help after a command
			return help()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

// validate hands a command the arguments left after fs's flags and runs
// cfg's validation, as a start and -check-config both do.
func validate(cfg Flagged, fs *flag.FlagSet) error {
	if cmd, ok := cfg.(Commanded); ok {
		cmd.SetArgs(fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// FlagSet returns the flags Main parses for cfg: cfg's own and
// -check-config. A binary's test of its -help output uses it.
func FlagSet(name string, cfg Flagged) *flag.FlagSet {
	fs, _ := newFlagSet(name, cfg)
	return fs
}

func newFlagSet(name string, cfg Flagged) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	check := fs.Bool(CheckConfigFlag, false, "parse the flags and the environment as a start would, validate them, print every problem or ok, and exit (0: ok, 2: invalid) without starting or connecting to anything")
	return fs, check
}

// checkRequested reports whether args ask for -check-config, for when they
// fail to parse before it is reached (an unknown flag before it).
func checkRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-" + CheckConfigFlag, "--" + CheckConfigFlag, "-" + CheckConfigFlag + "=true", "--" + CheckConfigFlag + "=true":
			return true
		}
	}
	return false
}

// checkConfig is -check-config: it writes every problem, one a line, the
// parse's (parseErr: each variable flagenv refused) and then Validate's,
// and returns errConfigInvalid; or writes ok and returns nil. Validate runs
// even after a variable was refused (its flag keeps its default), so that
// one run shows every problem it can.
func checkConfig(cfg Flagged, fs *flag.FlagSet, parseErr error, stdout io.Writer) error {
	var problems []string
	var envErrs flagenv.EnvErrors
	switch {
	case errors.As(parseErr, &envErrs):
		for _, e := range envErrs {
			problems = append(problems, e.Error())
		}
	case parseErr != nil:
		// The command line did not parse: the flags after the bad one
		// are unset, and Validate would report what is not there.
		fmt.Fprintf(stdout, "%v\n", parseErr)
		return errConfigInvalid
	}
	if err := validate(cfg, fs); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	return errConfigInvalid
}
