package localstack

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A process that exits while the stack starts is reported with the end of
// its log, which a test's temporary directory does not keep.
func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.log")
	var lines []string
	for i := 1; i <= 15; i++ {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := logTail(path, 3), "line 13\nline 14\nline 15"; got != want {
		t.Errorf("logTail = %q, want %q", got, want)
	}
	if got := logTail(path, 100); got != strings.Join(lines, "\n") {
		t.Errorf("logTail of a short log = %q, want it whole", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "missing.log"), 3); !strings.Contains(got, "cannot read it") {
		t.Errorf("logTail of a missing log = %q", got)
	}
}

// Every instance a stack may run has a port of its own, apart from the
// gateway's metrics and from Consul's, the broker's and the CQL server's
// in the layout the acceptance tests use (base+500, +600, +700).
func TestInstancePorts(t *testing.T) {
	const base = 20000
	s := &Stack{c: Config{ServicePortBase: base, ConsulPort: base + 500, KafkaPort: base + 600, CQLPort: base + 700}}
	taken := map[int]string{
		s.c.ConsulPort: "consul", s.c.ConsulPort - 200: "consul server", s.c.ConsulPort - 199: "consul serf lan",
		s.c.ConsulPort - 198: "consul serf wan", s.c.KafkaPort: "kafka", s.c.CQLPort: "cql", base + 6: "gateway metrics",
	}
	for _, svc := range services {
		for n := 1; n <= MaxInstances; n++ {
			name, port := instance(svc, n), s.port(svc, n)
			if other, ok := taken[port]; ok {
				t.Fatalf("%s and %s both on port %d", name, other, port)
			}
			taken[port] = name
		}
	}
	for _, c := range []struct {
		svc  string
		n    int
		name string
		port int
	}{
		{"collection", 1, "collection", base + 1},
		{"collection", 2, "collection-2", base + 11},
		{"processing", 3, "processing-3", base + 23},
		{"behavior", 2, "behavior-2", base + 15},
	} {
		svc := services[slices.IndexFunc(services, func(s service) bool { return s.name == c.svc })]
		if got, port := instance(svc, c.n), s.port(svc, c.n); got != c.name || port != c.port {
			t.Errorf("instance %d of %s = %s on %d, want %s on %d", c.n, c.svc, got, port, c.name, c.port)
		}
	}
}
