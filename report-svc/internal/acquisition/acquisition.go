// Package acquisition wires the acquisition report service (how users
// arrive): its configuration and its lifecycle. The reports themselves are
// package query's; package api serves them.
package acquisition

import (
	"context"
	"flag"
	"io"

	"github.com/acme/analytics/report-svc/internal/query"
	"github.com/acme/analytics/report-svc/internal/server"
)

// Config is the complete configuration of the acquisition binary.
type Config struct {
	server.Config
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, "acquisition", "127.0.0.1:8084")
}

// Run serves until ctx is done, logging to w.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	return server.Run(ctx, query.Acquisition, cfg.Config, w)
}
