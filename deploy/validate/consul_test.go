package validate

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConsulTokens runs deploy/k8s/secrets/consul-tokens.sh against the
// real Consul agent (a dev agent with ACLs on, default deny, as the Helm
// values have it) and checks what each token it makes may do: register its
// own service and no other (so no pod can pose as config-svc), read the
// catalogue; the reprocess Job's only read, the deadletters Job's only
// config-svc's instances. A second run makes nothing. It
// needs the agent, so it runs only with DEPLOY_VALIDATE_BIN set to a
// directory holding it (make dev-check: bin/, where `make consul` links it).
func TestConsulTokens(t *testing.T) {
	dir := os.Getenv("DEPLOY_VALIDATE_BIN")
	if dir == "" {
		t.Skip("set DEPLOY_VALIDATE_BIN to a directory holding the consul binary (make consul links bin/consul)")
	}
	bin, err := filepath.Abs(filepath.Join(dir, "consul"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no consul binary in DEPLOY_VALIDATE_BIN: %v", err)
	}
	const management = "0f6c7a46-2d58-4c33-9b2e-5f6f3a1c9d01" // the management token
	addr := startConsulWithACLs(t, bin, management)

	secrets := t.TempDir()
	script := filepath.Join(root(t), "deploy", "k8s", "secrets", "consul-tokens.sh")
	run := func() string {
		t.Helper()
		cmd := exec.Command(script, secrets)
		cmd.Env = append(os.Environ(), "CONSUL="+bin, "CONSUL_HTTP_ADDR="+addr, "CONSUL_HTTP_TOKEN="+management)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("consul-tokens.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	token := func(name string) string {
		b, err := os.ReadFile(filepath.Join(secrets, "consul-tokens", name))
		if err != nil || len(b) != 36 {
			t.Fatalf("token of %s: %q, %v", name, b, err)
		}
		return string(b)
	}
	call := func(method, path, tok, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Consul-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	register := func(tok, service string) int {
		return call("PUT", "/v1/agent/service/register", tok, fmt.Sprintf(`{"ID": "%s-test", "Name": %q, "Port": 8080}`, service, service))
	}
	for _, svc := range services {
		tok := token(svc)
		if code := register(tok, svc); code != http.StatusOK {
			t.Errorf("%s's token registering %s: %d, want 200", svc, svc, code)
		}
		other := "config"
		if svc == "config" {
			other = "gateway"
		}
		if code := register(tok, other); code != http.StatusForbidden {
			t.Errorf("%s's token registering %s: %d, want 403", svc, other, code)
		}
		if code := call("GET", "/v1/health/service/config?passing=1", tok, ""); code != http.StatusOK {
			t.Errorf("%s's token reading the catalogue: %d, want 200", svc, code)
		}
	}
	if code := register(token("reprocess"), "config"); code != http.StatusForbidden {
		t.Errorf("reprocess's token registering config: %d, want 403", code)
	}
	// deadletters finds config-svc's instances (registered above) and
	// sees no other service's.
	dl := token("deadletters")
	if code := register(dl, "config"); code != http.StatusForbidden {
		t.Errorf("deadletters's token registering config: %d, want 403", code)
	}
	for svc, want := range map[string]int{"config": 1, "gateway": 0, "processing": 0} {
		if got := instances(t, addr, dl, svc); got != want {
			t.Errorf("deadletters's token reading %s's healthy instances: %d, want %d", svc, got, want)
		}
	}
	if got := instances(t, addr, token("reprocess"), "gateway"); got != 1 {
		t.Errorf("reprocess's token reading gateway's instances: %d, want 1", got)
	}
	before := token("collection")
	if out := run(); strings.Contains(out, "made ") || token("collection") != before {
		t.Errorf("a second run made tokens again:\n%s", out)
	}
}

// instances is how many instances of service the agent at addr lists for
// token, as the deadletters' discovery asks (/v1/health/service): Consul
// leaves out what the token may not read, with 200 all the same.
func instances(t *testing.T, addr, token, service string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/v1/health/service/"+service, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Consul-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var entries []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health of %s: %d, %v", service, resp.StatusCode, err)
	}
	return len(entries)
}

// startConsulWithACLs starts a dev agent on free loopback ports with ACLs
// on and default deny, management token root, and returns its HTTP address
// once it has a leader. Its ports are chosen free a moment before it binds
// them, so another process can take one in between: a start that fails
// with "address already in use" is tried again on new ports (three starts
// at most), as pkg/consultest's StartRetrying does for the other tests
// (this module does not depend on pkg).
func startConsulWithACLs(t *testing.T, bin, root string) string {
	t.Helper()
	for try := 1; ; try++ {
		addr, out, err := startConsulOnce(t, bin, root)
		if err == nil {
			return addr
		}
		if try == 3 || !strings.Contains(out, "address already in use") {
			t.Fatalf("%v:\n%s", err, out)
		}
		t.Logf("consul start %d: a port was taken meanwhile; again on other ports", try)
	}
}

// startConsulOnce is one start of startConsulWithACLs: the agent's HTTP
// address, or its output and why it did not come up (it is stopped then).
func startConsulOnce(t *testing.T, bin, root string) (addr, output string, err error) {
	t.Helper()
	var ports [4]int
	var held []net.Listener // all held until all are found, so none repeats
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range held {
		l.Close()
	}
	hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, server = %d, serf_lan = %d, serf_wan = %d }
acl { enabled = true, default_policy = "deny", tokens { initial_management = %q } }`, ports[0], ports[1], ports[2], ports[3], root)
	var out strings.Builder // read only once the agent has exited
	cmd := exec.Command(bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1", "-log-level=warn", "-hcl", hcl)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			return "", out.String(), fmt.Errorf("consul exited during start-up")
		default:
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status/leader", nil)
		req.Header.Set("X-Consul-Token", root)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b := make([]byte, 64)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Trim(string(b[:n]), "\" \n") != "" {
				t.Cleanup(stop)
				return addr, "", nil
			}
		}
	}
	stop()
	return "", out.String(), fmt.Errorf("consul did not elect a leader within 30s")
}
