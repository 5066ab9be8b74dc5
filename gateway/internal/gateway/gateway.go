// Package gateway wires the gateway: the single entry point that checks JWTs and routes to healthy upstreams found in Consul: its configuration and its lifecycle.
package gateway

import (
	"context"
	"flag"
	"io"

	"github.com/acme/analytics/pkg/service"
)

// Config is the complete configuration of the gateway binary.
type Config struct {
	Service service.Config
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "gateway"
	c.Service.RegisterFlags(fs, "127.0.0.1:8080")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error { return c.Service.Validate() }

// Run serves until ctx is done, logging to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	return svc.Run(ctx)
}
