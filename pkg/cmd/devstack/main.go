// Command devstack runs the whole product on one machine for development
// (make dev): the Consul agent, the Kafka-protocol broker, the CQL server
// and every service as its own process, each registered in Consul, plus
// demo traffic. It prints where to look, and on Ctrl-C stops the services
// first (so nothing in flight is lost) and then the infrastructure.
//
// With -check it starts everything, verifies that each service answers
// /healthz at the address Consul has for it, stops, and exits non-zero on
// any failure; `make test` runs it that way on its own ports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/localstack"
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
	var c localstack.Config
	var check, demo bool
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.StringVar(&c.BinDir, "bin", "bin", "directory holding the built binaries (make build)")
	fs.StringVar(&c.DataDir, "data-dir", ".dev", "directory for logs, signing keys and the broker's and CQL server's data")
	fs.IntVar(&c.ConsulPort, "consul-port", 8500, "Consul HTTP port (its server and serf ports are this minus 200, 199 and 198)")
	fs.IntVar(&c.KafkaPort, "kafka-port", 9092, "Kafka broker port")
	fs.IntVar(&c.CQLPort, "cql-port", 9042, "CQL server port")
	fs.IntVar(&c.ServicePortBase, "service-port-base", 8080, "HTTP port of the gateway; the other services take the next ports")
	fs.IntVar(&c.Collections, "collections", 2, "collection instances")
	fs.BoolVar(&demo, "demo", true, "play demo traffic (bin/simulate -loop) once the stack is up")
	fs.BoolVar(&check, "check", false, "start everything, check every service through Consul, stop, and exit")
	if err := flagenv.Parse(fs, "DEVSTACK", args); err != nil {
		return err
	}
	var err error
	if c.BinDir, err = filepath.Abs(c.BinDir); err != nil {
		return err
	}
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return err
	}
	c.Out = os.Stdout
	s, err := localstack.Start(ctx, c)
	if err != nil {
		return err
	}
	defer s.Stop()
	s.PrintSummary(os.Stdout)
	if check {
		fmt.Println("devstack check passed: every service is healthy through its Consul registration")
		return nil
	}
	exited := s.Exited()
	demoDone := make(chan error, 1)
	if demo {
		sim := exec.CommandContext(ctx, filepath.Join(c.BinDir, "simulate"), "-loop", "-gateway", s.GatewayURL(), "-visitors", "100", "-duration", "5m")
		log, err := os.Create(filepath.Join(c.DataDir, "logs", "simulate.log"))
		if err != nil {
			return err
		}
		defer log.Close()
		sim.Stdout, sim.Stderr = log, log
		if err := sim.Start(); err != nil {
			return fmt.Errorf("start demo traffic: %w", err)
		}
		go func() { demoDone <- sim.Wait() }()
		fmt.Printf("  demo traffic\tbin/simulate, log in %s\n", log.Name())
	}
	fmt.Println("\nReports: sign in (see README) and call the gateway; or look at each service's /metrics.")
	fmt.Println("Press Ctrl-C to stop everything.")
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping...")
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited unexpectedly; see %s", name, s.LogPath(name))
	case err := <-demoDone:
		if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			return fmt.Errorf("demo traffic stopped: %w; see %s", err, filepath.Join(c.DataDir, "logs", "simulate.log"))
		}
		<-ctx.Done()
		return nil
	}
}
