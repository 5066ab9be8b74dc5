// Command devstack runs the whole product on one machine for development:
// the Consul agent, the Kafka-protocol broker, the CQL server and every
// service as its own process, each service registered in Consul. It prints
// where to look, and on Ctrl-C stops the services first (so nothing in
// flight is lost) and then the infrastructure.
//
// With -check it starts everything, verifies that each service answers
// /healthz at the address Consul has for it, stops, and exits non-zero on any
// failure; `make test` runs it that way on its own ports.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/acme/analytics/pkg/flagenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c stackConfig
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.StringVar(&c.binDir, "bin", "bin", "directory holding the built binaries (make build)")
	fs.StringVar(&c.dataDir, "data-dir", ".dev", "directory for logs and the broker's and CQL server's data")
	fs.IntVar(&c.consulPort, "consul-port", 8500, "Consul HTTP port (its server and serf ports are this minus 200, 199 and 198)")
	fs.IntVar(&c.kafkaPort, "kafka-port", 9092, "Kafka broker port")
	fs.IntVar(&c.cqlPort, "cql-port", 9042, "CQL server port")
	fs.IntVar(&c.servicePortBase, "service-port-base", 8080, "HTTP port of the gateway; the other services take the next ports")
	fs.BoolVar(&c.check, "check", false, "start everything, check every service through Consul, stop, and exit")
	if err := flagenv.Parse(fs, "DEVSTACK", args); err != nil {
		return err
	}
	var err error
	if c.binDir, err = filepath.Abs(c.binDir); err != nil {
		return err
	}
	if c.dataDir, err = filepath.Abs(c.dataDir); err != nil {
		return err
	}
	s := newStack(c)
	return s.run(ctx)
}
