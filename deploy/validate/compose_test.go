package validate

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeEnv is what an operator's .env provides; the file itself holds no
// secret, so loading it without these must fail.
var composeEnv = map[string]string{
	"IDENTITY_SECRET": "test-identity-secret-0123456789",
}

func composePath(t *testing.T) string {
	return filepath.Join(root(t), "deploy", "compose", "compose.yaml")
}

// loadCompose loads the compose file with the Compose specification's
// loader: schema validation, interpolation, merge keys, path resolution and
// the consistency checks (every depends_on, volume and network exists).
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	p, err := loadComposeErr(composePath(t), env)
	if err != nil {
		t.Fatalf("load %s: %v", composePath(t), err)
	}
	return p
}

func loadComposeErr(path string, env map[string]string) (*types.Project, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: b}},
		Environment: env,
	}
	return loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("acme-analytics", true)
		o.ResolvePaths = true
		o.Profiles = []string{"*"} // the on-demand tools too
	})
}

// TestComposeRequiresSecrets: no secret has a value in the file; each comes
// from the operator's environment (.env), required or empty, and without
// the identity secret compose refuses to start.
func TestComposeRequiresSecrets(t *testing.T) {
	_, err := loadComposeErr(composePath(t), map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "IDENTITY_SECRET") {
		t.Fatalf("loading without IDENTITY_SECRET: err = %v, want a refusal naming IDENTITY_SECRET", err)
	}
	// The file as written, before interpolation: every value given to a
	// secret-like variable must be a reference to the operator's environment.
	b, err := os.ReadFile(composePath(t))
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`^\s*(?:-\s*)?([A-Z][A-Z0-9_]*)\s*[:=]\s*(.*?)\s*$`)
	fromOperator := regexp.MustCompile(`^"?\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}"?$`)
	n := 0
	for i, line := range strings.Split(string(b), "\n") {
		m := entry.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(strings.TrimSpace(line), "#") || !secretLike.MatchString(m[1]) {
			continue
		}
		n++
		if !fromOperator.MatchString(m[2]) {
			t.Errorf("compose.yaml:%d: %s = %s; a secret must be ${VAR:?...} (or ${VAR:-} when optional), never a value", i+1, m[1], m[2])
		}
	}
	if n < 7 {
		t.Errorf("only %d secret variables found in compose", n)
	}
}

// TestCompose holds the compose deployment to the same rules as the
// Kubernetes one: real Cassandra (with a health check), Kafka in KRaft
// mode and Consul; the schema and topics made by one-shot jobs that the
// services wait for; every service built from the one Dockerfile at the
// repository root and configured by <BINARY>_<FLAG> variables; two
// collection instances; only the gateway published.
func TestCompose(t *testing.T) {
	p := loadCompose(t, composeEnv)
	repo := root(t)

	want := []string{"cassandra", "kafka", "consul", "migrate", "kafka-topics", "gateway", "config",
		"collection-1", "collection-2", "processing", "acquisition", "behavior", "simulate", "reprocess", "deadletters"}
	got := p.ServiceNames()
	sort.Strings(got)
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("no service %s (have %v)", s, got)
		}
	}

	cass := p.Services["cassandra"]
	if !strings.HasPrefix(cass.Image, "cassandra:") {
		t.Errorf("cassandra runs %s, want Apache Cassandra's image", cass.Image)
	}
	if cass.HealthCheck == nil || cass.HealthCheck.Disable || len(cass.HealthCheck.Test) == 0 {
		t.Errorf("cassandra has no health check")
	}
	kafka := p.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka runs %s, want Apache Kafka's image", kafka.Image)
	}
	if roles := val(kafka.Environment, "KAFKA_PROCESS_ROLES"); !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker") {
		t.Errorf("kafka is not a KRaft broker and controller (KAFKA_PROCESS_ROLES=%q)", roles)
	}
	for k := range kafka.Environment {
		if strings.Contains(k, "ZOOKEEPER") {
			t.Errorf("kafka refers to ZooKeeper (%s)", k)
		}
	}
	if val(kafka.Environment, "KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false" {
		t.Errorf("kafka creates topics automatically")
	}
	if !strings.HasPrefix(p.Services["consul"].Image, "hashicorp/consul:") {
		t.Errorf("consul runs %s", p.Services["consul"].Image)
	}
	for _, s := range []string{"cassandra", "kafka", "consul"} {
		if hc := p.Services[s].HealthCheck; hc == nil || hc.Disable {
			t.Errorf("%s has no health check; the services wait for it", s)
		}
	}

	// One-shot setup.
	mig := p.Services["migrate"]
	dependsOn(t, mig, "cassandra", types.ServiceConditionHealthy)
	dcs, err := ntsReplication(val(mig.Environment, "MIGRATE_CASSANDRA_REPLICATION"))
	if err != nil {
		t.Error(err)
	} else if dc := val(cass.Environment, "CASSANDRA_DC"); dcs[dc] == 0 {
		t.Errorf("the keyspace has no replica in Cassandra's data centre %q: %v", dc, dcs)
	}
	topics := p.Services["kafka-topics"]
	dependsOn(t, topics, "kafka", types.ServiceConditionHealthy)
	script := filepath.Join(repo, "deploy", "k8s", "base", "setup", "create-topics.sh")
	mounted := false
	for _, v := range topics.Volumes {
		if v.Source == script && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("kafka-topics does not mount %s read-only (the Kubernetes Job's script)", script)
	}
	if err := retentionWithinOffsetTTLs(t, val(topics.Environment, "HITS_RETENTION_MS")); err != nil {
		t.Error(err)
	}

	// The product.
	stages := dockerfileStages(t)
	advertised := map[string]string{}
	for name, s := range p.Services {
		binary := imageBinary(s.Image)
		if binary == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			checkComposeBuild(t, repo, s, binary, stages)
			if binary == "migrate" {
				return
			}
			switch binary {
			case "simulate":
			case "reprocess":
				dependsOn(t, s, "consul", types.ServiceConditionHealthy)
				dependsOn(t, s, "migrate", types.ServiceConditionCompletedSuccessfully)
			case "deadletters":
				dependsOn(t, s, "consul", types.ServiceConditionHealthy)
				dependsOn(t, s, "kafka-topics", types.ServiceConditionCompletedSuccessfully)
			default:
				for dep, cond := range map[string]string{
					"consul": types.ServiceConditionHealthy, "migrate": types.ServiceConditionCompletedSuccessfully,
					"kafka-topics": types.ServiceConditionCompletedSuccessfully,
				} {
					dependsOn(t, s, dep, cond)
				}
			}
			var names []string
			for k := range s.Environment {
				names = append(names, k)
			}
			sort.Strings(names)
			literal := func(n string) (string, bool) { v, ok := s.Environment[n]; return deref(v), ok && v != nil }
			// A secret's value is whatever the operator's environment gave.
			fromEnv := func(n string) bool {
				v := val(s.Environment, n)
				for _, e := range composeEnv {
					if v == e {
						return true
					}
				}
				return false
			}
			for _, err := range envRules(binary, names, literal, fromEnv) {
				t.Error(err)
			}
			prefix := binaries[binary].prefix
			if binaries[binary].port != 0 {
				host := val(s.Environment, prefix+"_ADVERTISE_HOST")
				if host != name {
					t.Errorf("%s_ADVERTISE_HOST = %q, want the service's own name %q", prefix, host, name)
				}
				if other, dup := advertised[host]; dup {
					t.Errorf("%s advertises the same address as %s", name, other)
				}
				advertised[host] = name
				if v := val(s.Environment, prefix+"_CONSUL_ADDR"); v != "consul:8500" {
					t.Errorf("%s_CONSUL_ADDR = %q, want consul:8500", prefix, v)
				}
			}
		})
	}
	if imageBinary(p.Services["collection-1"].Image) != "collection" || imageBinary(p.Services["collection-2"].Image) != "collection" {
		t.Errorf("collection-1 and collection-2 must run the collection image")
	}

	// Only the gateway is reachable from other hosts.
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			if name != "gateway" && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on all interfaces; only the gateway may", name, port.Target)
			}
		}
	}
	if len(p.Services["gateway"].Ports) != 1 || p.Services["gateway"].Ports[0].Target != 8080 {
		t.Errorf("the gateway must publish its port 8080")
	}
	// The token-signing keys come from config's address, not from
	// whatever registered as "config" in Consul.
	if v := val(p.Services["gateway"].Environment, "GATEWAY_JWKS_URL"); v != "http://config:8082/.well-known/jwks.json" {
		t.Errorf("GATEWAY_JWKS_URL = %q, want config's own address", v)
	}
}

func checkComposeBuild(t *testing.T, repo string, s types.ServiceConfig, binary string, stages []string) {
	t.Helper()
	if s.Build == nil {
		t.Fatalf("not built from deploy/docker/Dockerfile")
	}
	if s.Build.Context != repo {
		t.Errorf("build context %s, want the repository root %s (go.work must resolve)", s.Build.Context, repo)
	}
	if filepath.ToSlash(s.Build.Dockerfile) != "deploy/docker/Dockerfile" {
		t.Errorf("dockerfile %s, want deploy/docker/Dockerfile", s.Build.Dockerfile)
	}
	wantTarget := "service"
	if binary == "collection" {
		wantTarget = "collection"
	}
	if s.Build.Target != wantTarget || !slices.Contains(stages, s.Build.Target) {
		t.Errorf("build target %q, want %q (a stage of the Dockerfile: %v)", s.Build.Target, wantTarget, stages)
	}
	pkg := val(s.Build.Args, "PACKAGE")
	if filepath.Base(pkg) != binary || !strings.HasPrefix(pkg, "./") || !strings.Contains(pkg, "/cmd/") {
		t.Errorf("PACKAGE = %q does not build %s", pkg, binary)
		return
	}
	if _, err := os.Stat(filepath.Join(repo, pkg, "main.go")); err != nil {
		t.Errorf("PACKAGE %s: %v", pkg, err)
	}
}

func dependsOn(t *testing.T, s types.ServiceConfig, dep, condition string) {
	t.Helper()
	d, ok := s.DependsOn[dep]
	if !ok {
		t.Errorf("%s does not depend on %s", s.Name, dep)
	} else if d.Condition != condition {
		t.Errorf("%s waits for %s to be %s, want %s", s.Name, dep, d.Condition, condition)
	}
}

func val(m types.MappingWithEquals, k string) string { return deref(m[k]) }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
