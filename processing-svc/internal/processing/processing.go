// Package processing wires the processing service: it turns the hit stream into sessions, users, pageviews, events and report rollups: its configuration and its lifecycle.
package processing

import (
	"context"
	"flag"
	"io"

	"github.com/acme/analytics/pkg/service"
)

// Config is the complete configuration of the processing binary.
type Config struct {
	Service service.Config
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "processing"
	c.Service.RegisterFlags(fs, "127.0.0.1:8083")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error { return c.Service.Validate() }

// Run serves until ctx is done, logging to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	return svc.Run(ctx)
}
