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
	"path/filepath"
	"strconv"
	"time"

	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/pkg/simulate"
)

// demoLive is how many of the demo's visitors browse live, so that the
// realtime view has active users (the plans' traffic is 1.5 to 3 hours
// old); they send under a hit a second, next to the plans' replay.
const demoLive = 10

type config struct {
	Stack       localstack.Config
	Check, Demo bool
}

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Stack.BinDir, "bin", "bin", "directory holding the built binaries (make build)")
	fs.StringVar(&c.Stack.DataDir, "data-dir", ".dev", "directory for logs, signing keys, e-mail (mail/) and the broker's and CQL server's data")
	fs.IntVar(&c.Stack.ConsulPort, "consul-port", 8500, "Consul HTTP port (its server and serf ports are this minus 200, 199 and 198)")
	fs.IntVar(&c.Stack.KafkaPort, "kafka-port", 9092, "Kafka broker port")
	fs.IntVar(&c.Stack.CQLPort, "cql-port", 9042, "CQL server port")
	fs.IntVar(&c.Stack.ServicePortBase, "service-port-base", 8080, "HTTP port of the gateway; the other services take the next ports")
	fs.IntVar(&c.Stack.Collections, "collections", 2, "collection instances")
	fs.IntVar(&c.Stack.Processors, "processors", 1, "processing instances (they share the hits topic's 12 partitions)")
	fs.IntVar(&c.Stack.Acquisitions, "acquisitions", 1, "acquisition report instances")
	fs.IntVar(&c.Stack.Behaviors, "behaviors", 1, "behavior report instances")
	fs.BoolVar(&c.Demo, "demo", true, "play demo traffic (bin/simulate -loop -live) once the stack is up")
	fs.BoolVar(&c.Check, "check", false, "start everything, check every service through Consul, stop, and exit")
}

// Validate makes the directories absolute: the services run in other
// working directories.
func (c *config) Validate() error {
	var err error
	if c.Stack.BinDir, err = filepath.Abs(c.Stack.BinDir); err != nil {
		return fmt.Errorf("-bin: %w", err)
	}
	if c.Stack.DataDir, err = filepath.Abs(c.Stack.DataDir); err != nil {
		return fmt.Errorf("-data-dir: %w", err)
	}
	return nil
}

func main() {
	var cfg config
	service.Main("devstack", "DEVSTACK", &cfg, func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	c, check, demo := cfg.Stack, cfg.Check, cfg.Demo
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
		// The demo merchant's address is chosen here, so that it can be
		// printed with its password: a newcomer signs in with them to read
		// the demo's reports. A new one per run: a property kept from an
		// earlier run would have another plan's time zone.
		email := fmt.Sprintf("demo-%d@shop.example", time.Now().Unix())
		sim := exec.CommandContext(ctx, filepath.Join(c.BinDir, "simulate"), "-loop", "-gateway", s.GatewayURL(), "-visitors", "100", "-duration", "5m", "-live", strconv.Itoa(demoLive), "-email", email)
		log, err := os.Create(filepath.Join(c.DataDir, "logs", "simulate.log"))
		if err != nil {
			return err
		}
		defer log.Close()
		sim.Stdout, sim.Stderr = log, log
		// Interrupted, not killed, when the stack stops: simulate then logs
		// what its live visitors sent.
		sim.Cancel = func() error { return sim.Process.Signal(os.Interrupt) }
		sim.WaitDelay = 10 * time.Second
		if err := sim.Start(); err != nil {
			return fmt.Errorf("start demo traffic: %w", err)
		}
		go func() { demoDone <- sim.Wait() }()
		fmt.Printf("  demo traffic\tbin/simulate: plans of the past 3 hours, each played in 5 minutes, and %d visitors browsing live; log in %s\n", demoLive, log.Name())
		fmt.Printf("  demo merchant\t%s, password %s\n", email, simulate.Password)
	}
	fmt.Println("\nReports: sign in as the demo merchant (POST /v1/login; README, \"Running locally\") and call the gateway")
	fmt.Println("(docs/reports.md, \"Examples\"; /v1/reports/realtime shows the live visitors); or look at each service's /metrics.")
	fmt.Println("Press Ctrl-C to stop everything.")
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping...")
		if demo {
			<-demoDone // the traffic stops before the services it goes to
		}
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
