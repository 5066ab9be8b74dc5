// Package gateway wires the gateway, the single public entry point: its
// configuration (flags), the upstream pools fed by Consul watches or static
// addresses, token checking, the request pipeline of package proxy, and its
// lifecycle under pkg/service.
package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/acme/analytics/gateway/internal/auth"
	"github.com/acme/analytics/gateway/internal/proxy"
	"github.com/acme/analytics/gateway/internal/upstream"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/service"
	"github.com/prometheus/client_golang/prometheus"
)

// MinIdentitySecret is the shortest identity secret accepted.
const MinIdentitySecret = 16

// Config is the complete configuration of the gateway binary.
type Config struct {
	Service         service.Config
	IdentitySecret  string
	StaticUpstreams string
	BreakerFailures uint
	BreakerTimeout  time.Duration
	Auth            auth.Config
	Proxy           proxy.Config

	static map[string][]string // parsed StaticUpstreams
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "gateway"
	// The gateway's HTTP address is the public one: its metrics are served
	// apart, for the scraper only.
	c.Service.MetricsAddr = "127.0.0.1:9080"
	c.Service.RegisterFlags(fs, "127.0.0.1:8080")
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "secret shared with every service, signing the identity headers sent upstream (required, at least 16 bytes)")
	fs.StringVar(&c.StaticUpstreams, "static-upstreams", "collection=127.0.0.1:8081,config=127.0.0.1:8082,acquisition=127.0.0.1:8084,behavior=127.0.0.1:8085",
		"upstream instances used when -consul-addr is empty: comma-separated name=host:port, a name repeated for several instances")
	fs.UintVar(&c.BreakerFailures, "breaker-failures", 5, "consecutive failures (no connection, timeout, 502/503/504) that open an instance's circuit breaker")
	fs.DurationVar(&c.BreakerTimeout, "breaker-open-timeout", 5*time.Second, "how long an open breaker keeps its instance out before one probe request; also the Retry-After of a 503")
	c.Auth.RegisterFlags(fs)
	c.Proxy.RegisterFlags(fs)
	// Longer than every service's 15 s: the longest route's time limit
	// (-report-timeout, 30 s) and a few seconds (Validate).
	shutdown := fs.Lookup("shutdown-timeout")
	c.Service.HTTP.ShutdownTimeout = 35 * time.Second
	shutdown.DefValue = c.Service.HTTP.ShutdownTimeout.String()
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if err := c.Service.Validate(); err != nil {
		return err
	}
	if len(c.IdentitySecret) < MinIdentitySecret {
		return fmt.Errorf("-identity-secret must be at least %d bytes (the same value every service is given)", MinIdentitySecret)
	}
	if c.BreakerFailures < 1 || c.BreakerFailures > 1000 {
		return errors.New("-breaker-failures must be between 1 and 1000")
	}
	if c.BreakerTimeout < 100*time.Millisecond {
		return errors.New("-breaker-open-timeout must be at least 100ms")
	}
	if err := c.Auth.Validate(); err != nil {
		return err
	}
	if err := c.Proxy.Validate(); err != nil {
		return err
	}
	if longest := max(c.Proxy.CollectTimeout, c.Proxy.APITimeout, c.Proxy.ReportTimeout); c.Service.HTTP.ShutdownTimeout < longest {
		return fmt.Errorf("-shutdown-timeout (%v) must be at least the longest of -collect-timeout, -api-timeout and -report-timeout (%v), or a request in flight when the gateway stops is cut off", c.Service.HTTP.ShutdownTimeout, longest)
	}
	static, err := parseStatic(c.StaticUpstreams)
	if err != nil {
		return err
	}
	c.static = static
	return nil
}

func parseStatic(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("-static-upstreams: %q is not name=host:port", part)
		}
		if !slices.Contains(proxy.Upstreams, name) {
			return nil, fmt.Errorf("-static-upstreams: unknown upstream %q (known: %s)", name, strings.Join(proxy.Upstreams, ", "))
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("-static-upstreams: %q of %s is not host:port", addr, name)
		}
		out[name] = append(out[name], addr)
	}
	return out, nil
}

// Run serves until ctx is done, logging to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	g, err := New(cfg, svc.Log, svc.Registry)
	if err != nil {
		return err
	}
	g.Register(svc.Mux)
	// Hits pass through here one request per hit or batch: their
	// successful requests log at debug, as in collection.
	svc.QuietAccessLog("/collect", "/mp/collect")
	svc.Health.Add("upstreams", g.Ready)
	svc.Go(g.Run)
	return svc.Run(ctx)
}

// Gateway is the assembled gateway, apart from its HTTP server.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	pools   map[string]*upstream.Pool
	auth    *auth.Authenticator
	handler *proxy.Handler
}

// New assembles a gateway from a validated cfg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, pools: map[string]*upstream.Pool{}}
	m := upstream.NewMetrics(reg)
	bc := upstream.BreakerConfig{Failures: uint32(cfg.BreakerFailures), OpenTimeout: cfg.BreakerTimeout}
	for _, name := range proxy.Upstreams {
		g.pools[name] = upstream.NewPool(name, bc, log, m)
	}
	if !cfg.Service.Discovery.Enabled() {
		for _, name := range proxy.Upstreams {
			addrs := cfg.static[name]
			if len(addrs) == 0 {
				log.Warn("no static instance of an upstream; its routes answer 503", slog.String("upstream", name))
			}
			insts := make([]discovery.Instance, len(addrs))
			for i, a := range addrs {
				insts[i] = discovery.Instance{ID: a, Addr: a}
			}
			g.pools[name].Update(insts)
		}
	}

	base := upstream.NewBaseTransport()
	transport := &upstream.Transport{Pools: g.pools, Base: base, Metrics: m, ClientFault: proxy.ClientFault}
	jwksClient := &http.Client{Timeout: 10 * time.Second}
	var err error
	g.auth, err = auth.New(cfg.Auth, g.configJWKS(transport), jwksClient, log, reg)
	if err != nil {
		return nil, err
	}
	g.handler = proxy.New(proxy.Options{
		Config:         cfg.Proxy,
		Auth:           g.auth,
		Transport:      transport,
		IdentitySecret: []byte(cfg.IdentitySecret),
		RetryAfter:     cfg.BreakerTimeout,
		Log:            log,
		Registry:       reg,
	})
	return g, nil
}

// configJWKS fetches the JWKS from a healthy config instance, through the
// same pools and breakers as the requests routed there.
func (g *Gateway) configJWKS(t http.RoundTripper) authtoken.Source {
	client := &http.Client{Transport: t, Timeout: 10 * time.Second}
	return authtoken.URLSource(client, "http://"+proxy.ConfigSvc+authtoken.JWKSPath)
}

// Register mounts the gateway's routes on mux.
func (g *Gateway) Register(mux *http.ServeMux) { g.handler.Register(mux) }

// Ready reports whether every upstream pool has its first instance list, so
// that the gateway does not take traffic it would answer 503 for only
// because it has not heard from Consul yet.
func (g *Gateway) Ready(context.Context) error {
	var waiting []string
	for _, name := range proxy.Upstreams {
		if !g.pools[name].Synced() {
			waiting = append(waiting, name)
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("no instance list yet for %s", strings.Join(waiting, ", "))
	}
	return nil
}

// Run runs the background work until ctx is done: one Consul watch per
// upstream (unless static), the key refreshes, the rate-limit sweeps.
func (g *Gateway) Run(ctx context.Context) error {
	var tasks []func(context.Context) error
	if g.cfg.Service.Discovery.Enabled() {
		client, err := g.cfg.Service.Discovery.Client()
		if err != nil {
			return err
		}
		for _, name := range proxy.Upstreams {
			pool := g.pools[name]
			tasks = append(tasks, func(ctx context.Context) error {
				return discovery.Watch(ctx, client, name, g.log, pool.Update)
			})
		}
	}
	tasks = append(tasks, g.auth.Run, g.handler.Run)
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() { errs <- t(ctx) }()
	}
	var err error
	for range tasks {
		err = errors.Join(err, <-errs)
	}
	return err
}
