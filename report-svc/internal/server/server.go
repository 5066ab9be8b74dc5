// Package server is what the acquisition and behavior binaries share: their
// configuration (Cassandra, circuit breaker, caches, identity, config-svc)
// and their lifecycle. Each binary serves one report family over the same
// query engine (package query).
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/report-svc/internal/api"
	"github.com/acme/analytics/report-svc/internal/query"
	"github.com/acme/analytics/report-svc/internal/store"
)

// Config is the complete configuration of a report binary.
type Config struct {
	Service        service.Config
	Cassandra      cassandra.Config
	Store          store.Config
	Engine         query.Config
	ConfigSvc      configclient.Config
	IdentitySecret string
}

// RegisterFlags registers every flag on fs; name is the binary (and its
// Consul service), addr its default listen address.
func (c *Config) RegisterFlags(fs *flag.FlagSet, name, addr string) {
	c.Service.Name = name
	c.Service.RegisterFlags(fs, addr)
	c.Cassandra.RegisterFlags(fs)
	c.Store.RegisterFlags(fs)
	c.Engine.RegisterFlags(fs)
	c.ConfigSvc.RegisterFlags(fs)
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "shared secret that verifies the gateway's signed identity headers and signs calls to config-svc (required, at least 16 bytes)")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if len(c.IdentitySecret) < 16 {
		return errors.New("-identity-secret is required and must be at least 16 bytes (the gateway's shared secret)")
	}
	for _, v := range []func() error{c.Service.Validate, c.Cassandra.Validate, c.Store.Validate, c.Engine.Validate} {
		if err := v(); err != nil {
			return err
		}
	}
	if c.ConfigSvc.BaseURL == "" && !c.Service.Discovery.Enabled() {
		return errors.New("config-svc: give -config-svc-url, or a Consul agent (-consul-addr) to find it")
	}
	return nil
}

// Run serves family until ctx is done, logging to w. The behavior family
// also serves realtime. It waits for Cassandra at start, serving /healthz
// meanwhile (service.Setup).
func Run(ctx context.Context, family *query.Family, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	svc.Setup(func(ctx context.Context) error { return setUp(ctx, svc, family, cfg) })
	return svc.Run(ctx)
}

// setUp connects to Cassandra (waiting for it) and adds the report API
// and the config client to svc.
func setUp(ctx context.Context, svc *service.Service, family *query.Family, cfg Config) error {
	session, err := migrate.Open(ctx, &cfg.Cassandra, svc.Log)
	if err != nil {
		return err
	}
	svc.OnClose(session.Close)

	cc := cfg.ConfigSvc
	cc.Caller = cfg.Service.Name
	cc.IdentitySecret = []byte(cfg.IdentitySecret)
	cc.Log = svc.Log
	cc.Registerer = svc.Registry
	if err := cc.Locate(&cfg.Service.Discovery); err != nil {
		return err
	}
	props, err := configclient.New(cc)
	if err != nil {
		return err
	}
	svc.Go(props.Run)

	st := store.New(session, cfg.Store, svc.Registry)
	engine := query.New(st, cfg.Engine, time.Now, svc.Registry)
	h := &api.Handler{
		Family:     family,
		Engine:     engine,
		Properties: ConfigLookup{Client: props},
		Realtime:   family == query.Behavior,
		Log:        svc.Log,
		Now:        time.Now,
	}
	h.Register(svc.Mux, []byte(cfg.IdentitySecret))
	// Readiness does not depend on Cassandra: while it is down, cached
	// results are still served (marked stale), and taking every instance
	// out of discovery would turn that into the gateway's 503.
	svc.Log.Info("serving reports", slog.String("family", family.Name), slog.Bool("realtime", h.Realtime))
	return nil
}

// ConfigLookup adapts config-svc's client to api.PropertyLookup.
type ConfigLookup struct {
	Client *configclient.Client
}

// Lookup returns the property's tenant and time zone.
func (l ConfigLookup) Lookup(ctx context.Context, propertyID string) (api.PropertyInfo, error) {
	p, err := l.Client.ByID(ctx, propertyID)
	switch {
	case errors.Is(err, configclient.ErrNotFound):
		return api.PropertyInfo{}, api.ErrPropertyNotFound
	case err != nil:
		return api.PropertyInfo{}, fmt.Errorf("%w: %w", api.ErrLookupUnavailable, err)
	}
	return api.PropertyInfo{TenantID: p.TenantID, Location: p.Location()}, nil
}
