// Package consultest runs the real Consul agent (`consul agent -dev`) on
// free loopback ports for tests.
//
// The binary is built once by `make consul` (deploy/tools/consul) and found
// through $CONSUL_BIN, the repository's bin/consul, or the versioned copy in
// the Go bin directory. A missing binary fails the test with the command that
// builds it: an integration test must not quietly skip its integration.
//
// It also hands out loopback addresses for tests: ports free a moment ago
// (FreePorts), with StartRetrying to start on them again when one was
// taken in between; an address where a connection is refused
// (RefusedAddr); and a held port that a server can listen on later
// (Reserve).
package consultest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Version is the Consul version that deploy/tools/consul builds.
const Version = "1.22.7"

// Binary returns the path of the Consul agent binary.
func Binary() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		return p, nil
	}
	var candidates []string
	if root, err := repoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "bin", "consul"))
	}
	gobin := os.Getenv("GOBIN")
	if gobin == "" {
		if gp := os.Getenv("GOPATH"); gp != "" {
			gobin = filepath.Join(filepath.SplitList(gp)[0], "bin")
		} else if home, err := os.UserHomeDir(); err == nil {
			gobin = filepath.Join(home, "go", "bin")
		}
	}
	if gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "consul-"+Version))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("consul agent binary not found (looked at $CONSUL_BIN and %v); build it with `make consul`", candidates)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// Agent is a running dev-mode Consul agent.
type Agent struct {
	t      testing.TB
	bin    string
	ports  ports
	mu     sync.Mutex
	cmd    *exec.Cmd
	waited chan struct{}
	out    *bytes.Buffer

	clientOnce sync.Once
	client     *api.Client
}

type ports struct{ http, server, serfLAN, serfWAN int }

// Start starts an agent and stops it when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	var a *Agent
	StartRetrying(t, "consul agent start-up", func() error {
		p := FreePorts(t, 4)
		a = &Agent{t: t, bin: bin, ports: ports{http: p[0], server: p[1], serfLAN: p[2], serfWAN: p[3]}}
		if err := a.start(); err != nil {
			a.Stop() // one that did not elect a leader in time is still running
			return err
		}
		return nil
	})
	t.Cleanup(a.Stop)
	return a
}

// errPortTaken: the agent exited during start-up because a port it was
// given was taken. It wraps syscall.EADDRINUSE, which StartRetrying takes
// as a reason to try other ports.
var errPortTaken = fmt.Errorf("a port of the agent's was taken: %w", syscall.EADDRINUSE)

// Addr returns the agent's HTTP address (host:port).
func (a *Agent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports.http)) }

// Client returns an API client for the agent, the same one at every call:
// each new client has its own pool of keep-alive connections, and a test
// that polled with a client per call would pass the agent's limit of
// connections per client address (http_max_conns_per_client, 200) and be
// answered 429.
func (a *Agent) Client() *api.Client {
	a.clientOnce.Do(func() {
		cfg := api.DefaultConfig()
		cfg.Address = a.Addr()
		c, err := api.NewClient(cfg)
		if err != nil {
			a.t.Fatalf("consul client: %v", err)
		}
		a.client = c
	})
	return a.client
}

// Stop stops the agent (all dev-mode state is lost). It is safe to call
// more than once.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.waited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.waited
	}
	a.cmd = nil
}

// Restart starts the agent again on the same ports (after Stop) and waits
// until it has elected itself leader.
func (a *Agent) Restart() {
	a.t.Helper()
	if err := a.start(); err != nil {
		a.t.Fatal(err)
	}
}

// start starts the agent on its ports and waits until it has elected
// itself leader. An agent that exits during start-up because a port was
// taken returns an error wrapping errPortTaken.
func (a *Agent) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return errors.New("consultest: Restart while running; Stop first")
	}
	hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, server = %d, serf_lan = %d, serf_wan = %d }`,
		a.ports.http, a.ports.server, a.ports.serfLAN, a.ports.serfWAN)
	a.out = &bytes.Buffer{}
	cmd := exec.Command(a.bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-node=test-"+strconv.Itoa(a.ports.http), "-log-level=warn", "-hcl", hcl)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul agent: %w", err)
	}
	a.cmd = cmd
	a.waited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(a.waited) }()

	cfg := api.DefaultConfig()
	cfg.Address = a.Addr()
	client, _ := api.NewClient(cfg)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.waited: // the output is complete
			if strings.Contains(a.out.String(), "address already in use") {
				return fmt.Errorf("consul agent exited during start-up: %w:\n%s", errPortTaken, a.out)
			}
			return fmt.Errorf("consul agent exited during start-up:\n%s", a.out)
		default:
		}
		if leader, err := client.Status().Leader(); err == nil && leader != "" {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("consul agent did not elect a leader within 30s:\n%s", a.out)
}

// StartRetrying calls start until it returns nil. start starts something
// on ports it chooses anew each call (FreePorts): they are free when
// chosen but bound only as the thing starts, and on a busy machine another
// listener can take one in between. A start whose error wraps
// syscall.EADDRINUSE is tried again, three tries in all; the third such
// failure, or any other, fails the test. what names the start in the log.
//
// Where the code started can serve on a listener handed to it, Reserve's
// is better: no other listener can take its port at all.
func StartRetrying(t testing.TB, what string, start func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%s: %v; trying other ports", what, err)
	}
}

// RefusedAddr returns a loopback address (host:port) where a connection
// is refused until the test ends. A socket holds the port, bound but not
// listening, so no listener can take it: a port freed by closing a
// listener can be handed to the next one bound anywhere on the machine (a
// test's own server started a moment later, another package's test), and
// a request meant to be refused was answered there.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	return Reserve(t).Addr()
}

// Port is a loopback port held for a test by a socket bound but not
// listening: connections to it are refused and no listener can take it,
// until Listen makes that socket a listener. It is for a server that a
// test starts on an address its client was given before (a client that
// waits for the server): a port freed for the server could be taken by
// another listener in between.
type Port struct {
	addr string
	mu   sync.Mutex
	fd   int // -1 once Listen has taken it
}

// Reserve holds a loopback port until the test ends or Listen is called.
func Reserve(t testing.TB) *Port {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket to hold a port: %v", err)
	}
	syscall.CloseOnExec(fd)
	p := &Port{fd: fd}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fd >= 0 {
			_ = syscall.Close(p.fd)
			p.fd = -1
		}
	})
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind a port to hold: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("held port: %v", err)
	}
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	return p
}

// Addr returns the port's address (host:port).
func (p *Port) Addr() string { return p.addr }

// Listen returns a listener on the port, made of the socket that held it,
// so that no other listener could take the port in between. The listener
// is the caller's to close. It can be called once.
func (p *Port) Listen() (net.Listener, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil, fmt.Errorf("listen on %s: the held port was listened on already or released", p.addr)
	}
	if err := syscall.Listen(p.fd, syscall.SOMAXCONN); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.addr, err)
	}
	f := os.NewFile(uintptr(p.fd), p.addr)
	p.fd = -1
	defer f.Close() // the listener holds a copy of the socket
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.addr, err)
	}
	return ln, nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. Each is held until all are found: ports found one at a time
// can repeat, as the kernel may hand a just-closed port out again.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}
