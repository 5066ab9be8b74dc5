// Command cqlserver runs the in-memory CQL server (package cqlserver) for
// the local stack: services connect to it with gocql as they would to
// Cassandra. With -data-dir, schema and data survive restarts.
//
// It is a development tool: production runs Apache Cassandra (see deploy/).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/flagenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cqlserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cqlserver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9042", "host:port to serve CQL (native protocol v4) on")
	dataDir := fs.String("data-dir", "", "directory that keeps schema and data across restarts (empty: memory only)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := flagenv.Parse(fs, "CQLSERVER", args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fmt.Errorf("-addr %q is not host:port: %w", *addr, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q is not one of debug, info, warn, error", *logLevel)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	srv, err := cqlserver.New(cqlserver.Config{Addr: *addr, DataDir: *dataDir, Logger: log})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	return srv.Run(ctx) // closes, and flushes the data dir, on SIGINT/SIGTERM
}
