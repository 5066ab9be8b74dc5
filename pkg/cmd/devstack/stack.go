package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/acme/analytics/pkg/discovery"
	"github.com/hashicorp/consul/api"
)

type stackConfig struct {
	binDir, dataDir                string
	consulPort, kafkaPort, cqlPort int
	servicePortBase                int
	check                          bool
}

// service describes one product binary: its Consul name, the environment
// prefix of its flags, and its port as an offset from -service-port-base
// (the offsets match the binaries' own default ports, 8080 to 8085).
type service struct {
	name, bin, envPrefix string
	portOffset           int
}

// services are started in this order and stopped in reverse: the gateway
// last in, first out.
var services = []service{
	{name: "config", bin: "config", envPrefix: "CONFIG", portOffset: 2},
	{name: "collection", bin: "collection", envPrefix: "COLLECTION", portOffset: 1},
	{name: "processing", bin: "processing", envPrefix: "PROCESSING", portOffset: 3},
	{name: "acquisition", bin: "acquisition", envPrefix: "ACQUISITION", portOffset: 4},
	{name: "behavior", bin: "behavior", envPrefix: "BEHAVIOR", portOffset: 5},
	{name: "gateway", bin: "gateway", envPrefix: "GATEWAY", portOffset: 0},
}

type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

type stack struct {
	c     stackConfig
	procs []*process
	out   io.Writer
}

func newStack(c stackConfig) *stack { return &stack{c: c, out: os.Stdout} }

func (s *stack) run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(s.c.dataDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	defer s.stopAll()
	if err := s.startInfra(ctx); err != nil {
		return err
	}
	if err := s.startServices(ctx); err != nil {
		return err
	}
	addrs, err := s.checkServices(ctx)
	if err != nil {
		return err
	}
	s.printSummary(addrs)
	if s.c.check {
		fmt.Fprintln(s.out, "devstack check passed: every service is healthy through its Consul registration")
		return nil
	}
	fmt.Fprintln(s.out, "\nPress Ctrl-C to stop everything.")
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.out, "\nstopping...")
		return nil
	case p := <-s.anyExit():
		return fmt.Errorf("%s exited unexpectedly; see %s", p.name, p.log)
	}
}

func (s *stack) startInfra(ctx context.Context) error {
	consul := filepath.Join(s.c.binDir, "consul")
	if _, err := os.Stat(consul); err != nil {
		return fmt.Errorf("consul binary missing at %s; run `make consul` (or `make dev`, which builds it)", consul)
	}
	p := s.c.consulPort
	hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, server = %d, serf_lan = %d, serf_wan = %d }`, p, p-200, p-199, p-198)
	if err := s.start("consul", consul, []string{"agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1", "-node=devstack", "-log-level=warn", "-hcl", hcl}, nil); err != nil {
		return err
	}
	if err := s.waitFor(ctx, "consul", func() error {
		c, err := s.consul()
		if err != nil {
			return err
		}
		leader, err := c.Status().Leader()
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		return err
	}); err != nil {
		return err
	}

	if err := s.start("kafka", filepath.Join(s.c.binDir, "devbroker"), nil, []string{
		"DEVBROKER_ADDR=" + s.loopback(s.c.kafkaPort),
		"DEVBROKER_DATA_DIR=" + filepath.Join(s.c.dataDir, "kafka"),
	}); err != nil {
		return err
	}
	if err := s.waitFor(ctx, "kafka", s.dial(s.c.kafkaPort)); err != nil {
		return err
	}

	cql := filepath.Join(s.c.binDir, "cqlserver")
	if _, err := os.Stat(cql); err != nil {
		fmt.Fprintln(s.out, "note: no CQL server binary; the stack runs without storage")
		return nil
	}
	if err := s.start("cqlserver", cql, nil, []string{
		"CQLSERVER_ADDR=" + s.loopback(s.c.cqlPort),
		"CQLSERVER_DATA_DIR=" + filepath.Join(s.c.dataDir, "cql"),
	}); err != nil {
		return err
	}
	return s.waitFor(ctx, "cqlserver", s.dial(s.c.cqlPort))
}

func (s *stack) startServices(ctx context.Context) error {
	for _, svc := range services {
		env := []string{
			svc.envPrefix + "_HTTP_ADDR=" + s.loopback(s.c.servicePortBase+svc.portOffset),
			svc.envPrefix + "_CONSUL_ADDR=" + s.loopback(s.c.consulPort),
			svc.envPrefix + "_KAFKA_BROKERS=" + s.loopback(s.c.kafkaPort),
			svc.envPrefix + "_CASSANDRA_HOSTS=" + s.loopback(s.c.cqlPort),
			svc.envPrefix + "_LOG_FORMAT=text",
			svc.envPrefix + "_CONSUL_CHECK_INTERVAL=1s",
			// Development-only values; production passes real secrets
			// (see deploy/).
			svc.envPrefix + "_IDENTITY_SECRET=dev-identity-secret-not-for-production",
			svc.envPrefix + "_CASSANDRA_MIGRATE=true",
			svc.envPrefix + "_SIGNING_KEYS_DIR=" + filepath.Join(s.c.dataDir, "signing-keys"),
			svc.envPrefix + "_DEV_GENERATE_KEY=true",
		}
		if err := s.start(svc.name, filepath.Join(s.c.binDir, svc.bin), nil, env); err != nil {
			return err
		}
	}
	return nil
}

// checkServices waits until Consul reports every service healthy and then
// calls /healthz at each registered address.
func (s *stack) checkServices(ctx context.Context) (map[string]string, error) {
	c, err := s.consul()
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, svc := range services {
		err := s.waitFor(ctx, svc.name+" in consul", func() error {
			insts, _, err := discovery.Healthy(ctx, c, svc.name, 0, 0)
			if err != nil {
				return err
			}
			if len(insts) == 0 {
				return errors.New("no healthy instance")
			}
			resp, err := http.Get("http://" + insts[0].Addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/healthz answered %d", resp.StatusCode)
			}
			addrs[svc.name] = insts[0].Addr
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

func (s *stack) printSummary(addrs map[string]string) {
	fmt.Fprintln(s.out, "\nThe stack is up. Every service below answered /healthz at its Consul address.")
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  gateway (public entry)\thttp://%s\n", addrs["gateway"])
	for _, svc := range services {
		if svc.name != "gateway" {
			fmt.Fprintf(tw, "  %s\thttp://%s\t(metrics: /metrics)\n", svc.name, addrs[svc.name])
		}
	}
	fmt.Fprintf(tw, "  consul UI\thttp://%s/ui\n", s.loopback(s.c.consulPort))
	fmt.Fprintf(tw, "  kafka broker\t%s\n", s.loopback(s.c.kafkaPort))
	fmt.Fprintf(tw, "  cql server\t%s\n", s.loopback(s.c.cqlPort))
	fmt.Fprintf(tw, "  logs\t%s\n", filepath.Join(s.c.dataDir, "logs"))
	tw.Flush()
}

func (s *stack) start(name, bin string, args, env []string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s binary missing at %s; run `make build`", name, bin)
	}
	logPath := filepath.Join(s.c.dataDir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log for %s: %w", name, err)
	}
	fmt.Fprintf(f, "\n==== %s started by devstack at %s ====\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so Ctrl-C reaches only devstack, which
	// then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.procs = append(s.procs, p)
	fmt.Fprintf(s.out, "started %-12s pid %d\n", name, cmd.Process.Pid)
	return nil
}

// stopAll sends SIGTERM in reverse start order and waits for each process,
// killing one that takes longer than 20 seconds.
func (s *stack) stopAll() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			fmt.Fprintf(s.out, "%s did not stop within 20s; killing it\n", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	s.procs = nil
}

func (s *stack) anyExit() <-chan *process {
	ch := make(chan *process, len(s.procs))
	for _, p := range s.procs {
		go func() { <-p.done; ch <- p }()
	}
	return ch
}

// waitFor polls ready until it succeeds, the process named exits, or 60
// seconds pass.
func (s *stack) waitFor(ctx context.Context, what string, ready func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = ready(); last == nil {
			return nil
		}
		for _, p := range s.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited while waiting for %s; see %s", p.name, what, p.log)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after 60s: %v", what, last)
}

func (s *stack) dial(port int) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", s.loopback(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

func (s *stack) consul() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.loopback(s.c.consulPort)
	return api.NewClient(cfg)
}

func (s *stack) loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
