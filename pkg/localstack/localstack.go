// Package localstack runs the whole product on one machine: the Consul
// agent, the Kafka-protocol broker, the CQL server and every service as its
// own process, each registered in Consul. The devstack command (make dev)
// and the acceptance test use it; the test also kills and restarts single
// processes to inject faults, and adds and stops instances of a service
// while it runs (scaling).
package localstack

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/acme/analytics/pkg/discovery"
	"github.com/hashicorp/consul/api"
)

// Config says where the binaries are and which ports to use.
type Config struct {
	BinDir  string // built binaries (make build)
	DataDir string // logs, the broker's and the CQL server's data, signing keys, e-mail
	// Ports: Consul's HTTP port (its server and serf ports are this minus
	// 200, 199 and 198), the broker's, the CQL server's, and the gateway's;
	// the other services' first instances take the next ports after the
	// gateway's, and the gateway's metrics the one after theirs (base+6).
	// The nth instance of a service (n > 1) takes its first instance's port
	// plus 10*(n-1): collection-2 is base+11, processing-3 base+23.
	ConsulPort, KafkaPort, CQLPort, ServicePortBase int
	// Collections, Processors, Acquisitions and Behaviors are the numbers
	// of instances of collection, processing, acquisition and behavior
	// started with the stack (at least 1 each); config and the gateway run
	// one. Stack.Add starts more while the stack runs.
	Collections, Processors, Acquisitions, Behaviors int
	// Env is extra environment for every service.
	Env []string
	Out io.Writer // progress lines; nil discards them
}

// service describes one product binary: its Consul name, the environment
// prefix of its flags, and its port as an offset from ServicePortBase (the
// offsets match the binaries' own default ports, 8080 to 8085).
type service struct {
	name, bin, envPrefix string
	portOffset           int
}

// services are started in this order and stopped in reverse.
var services = []service{
	{name: "config", bin: "config", envPrefix: "CONFIG", portOffset: 2},
	{name: "collection", bin: "collection", envPrefix: "COLLECTION", portOffset: 1},
	{name: "processing", bin: "processing", envPrefix: "PROCESSING", portOffset: 3},
	{name: "acquisition", bin: "acquisition", envPrefix: "ACQUISITION", portOffset: 4},
	{name: "behavior", bin: "behavior", envPrefix: "BEHAVIOR", portOffset: 5},
	{name: "gateway", bin: "gateway", envPrefix: "GATEWAY", portOffset: 0},
}

// MaxInstances bounds the instances of one service a stack runs, started
// with it or added, so that their ports (see Config) stay below Consul's.
const MaxInstances = 20

// DevIdentitySecret signs identity headers in the local stack only.
const DevIdentitySecret = "dev-identity-secret-not-for-production"

type process struct {
	name, bin, log string
	addr           string // a service instance's HTTP address
	args, env      []string
	cmd            *exec.Cmd
	done           chan struct{}
	stopped        bool // stopped on purpose (Kill, Terminate): not a failure
}

// Stack is a running local stack.
type Stack struct {
	c     Config
	mu    sync.Mutex
	procs []*process
	out   io.Writer
	addrs map[string]string
	// started counts the instances of each service started so far (added
	// ones too, stopped ones too): the next is named and placed after them.
	started map[string]int
}

// Start starts everything and returns once every service answers /healthz
// at the address Consul has for it. On error, what was started is stopped.
func Start(ctx context.Context, c Config) (*Stack, error) {
	for _, n := range []*int{&c.Collections, &c.Processors, &c.Acquisitions, &c.Behaviors} {
		if *n < 1 {
			*n = 1
		}
		if *n > MaxInstances {
			return nil, fmt.Errorf("%d instances of a service; the local stack runs at most %d", *n, MaxInstances)
		}
	}
	s := &Stack{c: c, out: c.Out, addrs: map[string]string{}, started: map[string]int{}}
	if s.out == nil {
		s.out = io.Discard
	}
	if err := os.MkdirAll(filepath.Join(c.DataDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := s.portsFree(); err != nil {
		return nil, err
	}
	err := s.startInfra(ctx)
	if err == nil {
		err = s.startServices()
	}
	if err == nil {
		err = s.check(ctx)
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Addr returns the address Consul has for a service (its first instance).
func (s *Stack) Addr(service string) string { return s.addrs[service] }

// InstanceAddr returns the HTTP address of one instance of a service by
// its process name (processing, processing-2, ...), running or not.
func (s *Stack) InstanceAddr(name string) (string, error) {
	p, err := s.find(name)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.addr == "" {
		return "", fmt.Errorf("%s is no service instance", name)
	}
	return p.addr, nil
}

// GatewayURL is the product's public base URL.
func (s *Stack) GatewayURL() string { return "http://" + s.addrs["gateway"] }

// ConsulAddr is the Consul agent's HTTP address.
func (s *Stack) ConsulAddr() string { return s.loopback(s.c.ConsulPort) }

// portsFree checks that every port the stack will listen on is free, so
// that a stack still running (or stopping) is reported as such instead of
// being mistaken for this one's processes.
func (s *Stack) portsFree() error {
	ports := []int{s.c.ConsulPort, s.c.ConsulPort - 200, s.c.ConsulPort - 199, s.c.ConsulPort - 198, s.c.KafkaPort, s.c.CQLPort}
	for _, svc := range services {
		for n := 1; n <= s.initial(svc.name); n++ {
			ports = append(ports, s.port(svc, n))
		}
	}
	for _, p := range ports {
		if err := s.portFree(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) portFree(port int) error {
	l, err := net.Listen("tcp", s.loopback(port))
	if err != nil {
		return fmt.Errorf("port %d is in use (is another stack still running or stopping?): %w", port, err)
	}
	return l.Close()
}

// initial is the number of instances of a service the stack starts with.
func (s *Stack) initial(name string) int {
	switch name {
	case "collection":
		return s.c.Collections
	case "processing":
		return s.c.Processors
	case "acquisition":
		return s.c.Acquisitions
	case "behavior":
		return s.c.Behaviors
	}
	return 1
}

// instance is the process name of a service's nth instance (from 1):
// the service's name, then name-2, name-3...
func instance(svc service, n int) string {
	if n == 1 {
		return svc.name
	}
	return svc.name + "-" + strconv.Itoa(n)
}

// port is the HTTP port of a service's nth instance (Config).
func (s *Stack) port(svc service, n int) int {
	return s.c.ServicePortBase + svc.portOffset + 10*(n-1)
}

func (s *Stack) startInfra(ctx context.Context) error {
	consul := filepath.Join(s.c.BinDir, "consul")
	if _, err := os.Stat(consul); err != nil {
		return fmt.Errorf("consul binary missing at %s; run `make consul` (or `make dev`, which builds it)", consul)
	}
	if err := s.start("consul", consul, s.consulArgs(), nil); err != nil {
		return err
	}
	if err := s.waitConsul(ctx); err != nil {
		return err
	}
	if err := s.start("kafka", filepath.Join(s.c.BinDir, "devbroker"), nil, []string{
		"DEVBROKER_ADDR=" + s.loopback(s.c.KafkaPort),
		"DEVBROKER_DATA_DIR=" + filepath.Join(s.c.DataDir, "kafka"),
	}); err != nil {
		return err
	}
	if err := s.waitFor(ctx, "kafka", s.dial(s.c.KafkaPort)); err != nil {
		return err
	}
	if err := s.start("cqlserver", filepath.Join(s.c.BinDir, "cqlserver"), nil, []string{
		"CQLSERVER_ADDR=" + s.loopback(s.c.CQLPort),
		"CQLSERVER_DATA_DIR=" + filepath.Join(s.c.DataDir, "cql"),
	}); err != nil {
		return err
	}
	return s.waitFor(ctx, "cqlserver", s.dial(s.c.CQLPort))
}

func (s *Stack) consulArgs() []string {
	p := s.c.ConsulPort
	hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, server = %d, serf_lan = %d, serf_wan = %d }`, p, p-200, p-199, p-198)
	return []string{"agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1", "-node=localstack", "-log-level=warn", "-hcl", hcl}
}

func (s *Stack) waitConsul(ctx context.Context) error {
	return s.waitFor(ctx, "consul", func() error {
		c, err := s.consul()
		if err != nil {
			return err
		}
		leader, err := c.Status().Leader()
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		return err
	})
}

func (s *Stack) serviceEnv(svc service, port int) []string {
	p := svc.envPrefix + "_"
	env := []string{
		p + "HTTP_ADDR=" + s.loopback(port),
		p + "CONSUL_ADDR=" + s.loopback(s.c.ConsulPort),
		p + "KAFKA_BROKERS=" + s.loopback(s.c.KafkaPort),
		p + "CASSANDRA_HOSTS=" + s.loopback(s.c.CQLPort),
		p + "LOG_FORMAT=text",
		p + "CONSUL_CHECK_INTERVAL=1s",
		// Development-only values; production passes real secrets and
		// trusts only its load balancer (see deploy/).
		p + "IDENTITY_SECRET=" + DevIdentitySecret,
		p + "CASSANDRA_MIGRATE=true",
		p + "SIGNING_KEYS_DIR=" + filepath.Join(s.c.DataDir, "signing-keys"),
		p + "DEV_GENERATE_KEY=true",
		// The demo traffic plays many visitors from this one machine: it
		// claims their IPs in X-Forwarded-For, which the gateway and
		// collection accept from loopback only here.
		p + "TRUSTED_PROXIES=127.0.0.1/32",
	}
	if svc.name == "gateway" {
		env = append(env, p+"METRICS_ADDR="+s.gatewayMetrics())
	}
	if svc.name == "config" {
		// Mail (password reset and verification links) as .eml files to
		// read, not sent.
		env = append(env, p+"MAIL_DIR="+s.MailDir(), p+"MAIL_FROM=Acme Analytics <no-reply@localhost.localdomain>")
		// Snippets load tracker.js from this stack's gateway, wherever
		// its ports are (the flag's default is the gateway's default port).
		env = append(env, p+"TRACKER_SCRIPT_URL=http://"+s.loopback(s.c.ServicePortBase)+"/tracker.js")
	}
	if svc.name == "processing" {
		// Visitors written within seconds rather than minutes: the
		// committed offsets, which tests wait for, then catch up soon
		// after the traffic stops (docs/processing.md: Visitors written
		// when due).
		env = append(env, p+"STATE_QUIET=1s", p+"STATE_MAX_DELAY=5s")
	}
	for _, e := range s.c.Env {
		env = append(env, p+e)
	}
	return env
}

func (s *Stack) startServices() error {
	for _, svc := range services {
		for n := 1; n <= s.initial(svc.name); n++ {
			if _, _, err := s.startInstance(svc); err != nil {
				return err
			}
		}
	}
	return nil
}

// startInstance starts the next instance of a service and returns its
// process name and address.
func (s *Stack) startInstance(svc service) (name, addr string, err error) {
	s.mu.Lock()
	n := s.started[svc.name] + 1
	if n > MaxInstances {
		s.mu.Unlock()
		return "", "", fmt.Errorf("%s: the local stack runs at most %d instances of a service", svc.name, MaxInstances)
	}
	s.started[svc.name] = n
	s.mu.Unlock()
	name, addr = instance(svc, n), s.loopback(s.port(svc, n))
	if err := s.start(name, filepath.Join(s.c.BinDir, svc.bin), nil, s.serviceEnv(svc, s.port(svc, n))); err != nil {
		return "", "", err
	}
	p, err := s.find(name)
	if err != nil {
		return "", "", err
	}
	s.mu.Lock()
	p.addr = addr
	s.mu.Unlock()
	return name, addr, nil
}

// Add starts one more instance of a service (collection, processing,
// acquisition, behavior...) while the stack runs and returns its process
// name (processing-2, ...), which Kill, Terminate and Restart take, once
// Consul lists it healthy and it answers /healthz: gateways watching Consul
// route to it from then on. (A processing instance is ready once it could
// reach the consumer group; it joins it, and the group rebalances, a moment
// later.)
func (s *Stack) Add(ctx context.Context, of string) (string, error) {
	i := slices.IndexFunc(services, func(svc service) bool { return svc.name == of })
	if i < 0 || of == "gateway" {
		// The gateway's address is the stack's public URL: one instance.
		return "", fmt.Errorf("no service %q to add an instance of", of)
	}
	svc := services[i]
	s.mu.Lock()
	n := s.started[svc.name] + 1
	s.mu.Unlock()
	if err := s.portFree(s.port(svc, n)); err != nil {
		return "", err
	}
	name, addr, err := s.startInstance(svc)
	if err != nil {
		return "", err
	}
	return name, s.waitInstances(ctx, name+" in consul", svc.name, func(insts []discovery.Instance) (string, error) {
		if !slices.ContainsFunc(insts, func(in discovery.Instance) bool { return in.Addr == addr }) {
			return "", fmt.Errorf("%d healthy instances, not %s yet", len(insts), addr)
		}
		return addr, nil
	})
}

// check waits until Consul reports every service healthy and then calls
// /healthz at each registered address.
func (s *Stack) check(ctx context.Context) error {
	for _, svc := range services {
		if err := s.WaitHealthy(ctx, svc.name, s.initial(svc.name)); err != nil {
			return err
		}
	}
	return nil
}

// WaitHealthy waits until Consul lists want healthy instances of service
// and the first answers /healthz.
func (s *Stack) WaitHealthy(ctx context.Context, service string, want int) error {
	return s.waitInstances(ctx, service+" in consul", service, func(insts []discovery.Instance) (string, error) {
		if len(insts) < want {
			return "", fmt.Errorf("%d healthy instances, want %d", len(insts), want)
		}
		s.mu.Lock()
		s.addrs[service] = insts[0].Addr
		s.mu.Unlock()
		return insts[0].Addr, nil
	})
}

// waitInstances polls the healthy instances Consul lists for service until
// pick accepts them, and the address it picks answers /healthz.
func (s *Stack) waitInstances(ctx context.Context, what, service string, pick func([]discovery.Instance) (string, error)) error {
	c, err := s.consul()
	if err != nil {
		return err
	}
	return s.waitFor(ctx, what, func() error {
		insts, _, err := discovery.Healthy(ctx, c, service, 0, 0)
		if err != nil {
			return err
		}
		addr, err := pick(insts)
		if err != nil {
			return err
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz of %s answered %d", addr, resp.StatusCode)
		}
		return nil
	})
}

// gatewayMetrics is the gateway's metrics address: the port after the
// other services'.
func (s *Stack) gatewayMetrics() string { return s.loopback(s.c.ServicePortBase + 6) }

// GatewayMetricsURL is the gateway's /metrics (on its own address).
func (s *Stack) GatewayMetricsURL() string { return "http://" + s.gatewayMetrics() + "/metrics" }

// PrintSummary writes where everything is.
func (s *Stack) PrintSummary(w io.Writer) {
	fmt.Fprintln(w, "\nThe stack is up. Every service below answered /healthz at its Consul address.")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  gateway (public entry)\thttp://%s\t(metrics: http://%s/metrics)\n", s.addrs["gateway"], s.gatewayMetrics())
	for _, svc := range services {
		if svc.name == "gateway" {
			continue
		}
		fmt.Fprintf(tw, "  %s\thttp://%s\t(metrics: /metrics)\n", svc.name, s.addrs[svc.name])
		s.mu.Lock()
		n := s.started[svc.name]
		s.mu.Unlock()
		for i := 2; i <= n; i++ {
			fmt.Fprintf(tw, "  %s\thttp://%s\t(metrics: /metrics)\n", instance(svc, i), s.loopback(s.port(svc, i)))
		}
	}
	fmt.Fprintf(tw, "  consul UI\thttp://%s/ui\n", s.loopback(s.c.ConsulPort))
	fmt.Fprintf(tw, "  kafka broker\t%s\n", s.loopback(s.c.KafkaPort))
	fmt.Fprintf(tw, "  cql server\t%s\n", s.loopback(s.c.CQLPort))
	fmt.Fprintf(tw, "  logs\t%s\n", filepath.Join(s.c.DataDir, "logs"))
	fmt.Fprintf(tw, "  e-mail (links: reset, verification, invitation, address claim)\t%s\t(one .eml file per message; nothing is sent)\n", s.MailDir())
	tw.Flush()
}

// MailDir is the pickup directory config-svc writes its e-mail into.
func (s *Stack) MailDir() string { return filepath.Join(s.c.DataDir, "mail") }

func (s *Stack) start(name, bin string, args, env []string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s binary missing at %s; run `make build`", name, bin)
	}
	p := &process{name: name, bin: bin, args: args, env: env, log: filepath.Join(s.c.DataDir, "logs", name+".log")}
	if err := s.exec(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return nil
}

func (s *Stack) exec(p *process) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log for %s: %w", p.name, err)
	}
	fmt.Fprintf(f, "\n==== %s started at %s ====\n", p.name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so Ctrl-C reaches only the parent, which
	// then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	s.mu.Lock()
	p.cmd, p.done, p.stopped = cmd, done, false
	s.mu.Unlock()
	fmt.Fprintf(s.out, "started %-12s pid %d\n", p.name, cmd.Process.Pid)
	return nil
}

func (s *Stack) find(name string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no process %q", name)
}

// Kill sends SIGKILL to a process (a crash) and waits for it to exit.
func (s *Stack) Kill(name string) error { return s.signal(name, syscall.SIGKILL) }

// Terminate sends SIGTERM to a process (a graceful stop) and waits.
func (s *Stack) Terminate(name string) error { return s.signal(name, syscall.SIGTERM) }

func (s *Stack) signal(name string, sig syscall.Signal) error {
	p, err := s.find(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	p.stopped = true
	s.mu.Unlock()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 30s after %v; killed", name, sig)
	}
}

// Restart starts a stopped process again with the same command (and so
// the broker and the CQL server on their port and data directory) and
// returns once it is ready: Consul with a leader, the broker and the CQL
// server accepting connections (the CQL server listens only once it has
// recovered its data directory), a service instance at once (it answers
// /healthz from its first moment; WaitHealthy waits for Consul's view).
func (s *Stack) Restart(ctx context.Context, name string) error {
	p, err := s.find(name)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	if err := s.exec(p); err != nil {
		return err
	}
	switch name {
	case "consul":
		return s.waitConsul(ctx)
	case "kafka":
		return s.waitFor(ctx, name, s.dial(s.c.KafkaPort))
	case "cqlserver":
		return s.waitFor(ctx, name, s.dial(s.c.CQLPort))
	}
	return nil
}

// Exited returns a channel that receives the name of the first process
// that exits.
func (s *Stack) Exited() <-chan string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan string, len(s.procs))
	for _, p := range s.procs {
		done := p.done
		go func() { <-done; ch <- p.name }()
	}
	return ch
}

// Processes returns the names of the running processes, in start order.
func (s *Stack) Processes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.procs {
		if !p.stopped {
			out = append(out, p.name)
		}
	}
	return out
}

// PeakMemory returns the peak resident memory of a running process, in
// bytes (VmHWM on Linux).
func (s *Stack) PeakMemory(name string) (int64, error) {
	p, err := s.find(name)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of %s: %w", name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM of %s: %w", name, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM for %s", name)
}

// LogPath returns the log file of a process.
func (s *Stack) LogPath(name string) string { return filepath.Join(s.c.DataDir, "logs", name+".log") }

// Stop sends SIGTERM in reverse start order and waits for each process,
// killing one that takes longer than 20 seconds.
func (s *Stack) Stop() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			fmt.Fprintf(s.out, "%s did not stop within 20s; killing it\n", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// waitFor polls ready until it succeeds, a process exits, or 60 seconds
// pass.
func (s *Stack) waitFor(ctx context.Context, what string, ready func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = ready(); last == nil {
			return nil
		}
		s.mu.Lock()
		var running []*process
		for _, p := range s.procs {
			if !p.stopped {
				running = append(running, p)
			}
		}
		s.mu.Unlock()
		for _, p := range running {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited while waiting for %s; the end of %s:\n%s", p.name, what, p.log, logTail(p.log, 10))
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

// logTail returns the last n lines of the log at path, so that a process
// that exits says why even when its log is gone by the time anyone looks
// (a test's temporary directory).
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (s *Stack) dial(port int) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", s.loopback(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

func (s *Stack) consul() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.loopback(s.c.ConsulPort)
	return api.NewClient(cfg)
}

func (s *Stack) loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
