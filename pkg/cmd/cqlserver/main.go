// Command cqlserver runs the in-memory CQL server (package cqlserver) for
// the local stack: services connect to it with gocql as they would to
// Cassandra. With -data-dir, schema and data survive restarts.
//
// It is a development tool: production runs Apache Cassandra (see deploy/).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/logging"
	"github.com/acme/analytics/pkg/service"
)

type config struct {
	Addr    string
	DataDir string
	Log     logging.Config
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:9042", "host:port to serve CQL (native protocol v4) on")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory that keeps schema and data across restarts (empty: memory only)")
	c.Log.RegisterFlags(fs)
}

func (c *config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("-addr %q is not host:port: %w", c.Addr, err)
	}
	return c.Log.Validate()
}

func main() {
	var cfg config
	service.Main("cqlserver", "CQLSERVER", &cfg, func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	srv, err := cqlserver.New(cqlserver.Config{Addr: cfg.Addr, DataDir: cfg.DataDir, Logger: logging.New(cfg.Log, os.Stderr)})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	return srv.Run(ctx) // closes, and flushes the data dir, on SIGINT/SIGTERM
}
