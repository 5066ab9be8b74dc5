package validate

import (
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// A run is one binary as deploy/ starts it: its environment, exactly, and
// its arguments.
type run struct {
	where  string // e.g. "k8s overlays/small Deployment gateway"
	binary string
	env    map[string]string
	args   []string
}

// TestEnvValuesValid runs each built binary with -check-config in exactly
// the environment that deploy/ gives it, for every compose service, every
// container of the Kubernetes base and both overlays (as kustomize builds
// them) and the Job templates (each with every set of values of
// jobTemplates): each must answer ok. So a value
// the binary would refuse at start-up (a duration out of its flag's range,
// a bool given as "", an address without a port, a CIDR list that does
// not parse, a combination its validation refuses) fails here, not in a
// rollout. TestEnvMatchesFlags checks the names; this, the values.
//
// The values are what the binary would get: literals as given, with
// Kubernetes' $(VAR) references expanded; ConfigMap keys from the built
// ConfigMaps (the overlays' configMapGenerator literals merged in);
// status.podIP and status.hostIP as 10.0.1.7 and 10.0.0.3; resource fields
// from the container's resources; Secrets and the operator's values as the
// placeholders of secretPlaceholder, composeEnv and jobTemplates.
// Compose's interpolation is resolved from .env.example (what an operator
// copies to .env) with composeEnv for the secrets it leaves empty. Nothing
// is started: -check-config connects to nothing.
//
// It needs the binaries, so it runs only with DEPLOY_VALIDATE_BIN set to
// their directory, e.g. after `make build`:
//
//	DEPLOY_VALIDATE_BIN=$PWD/bin bash -c 'cd deploy/validate && GOWORK=off go test -run TestEnvValuesValid .'
func TestEnvValuesValid(t *testing.T) {
	dir := binDir(t, "to check the values deploy/ gives them")
	runs := append(composeRuns(t), k8sRuns(t)...)
	if len(runs) < 20 {
		t.Fatalf("found only %d binaries to check in deploy/", len(runs))
	}
	for _, r := range runs {
		t.Run(r.where, func(t *testing.T) {
			path := filepath.Join(dir, r.binary)
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%s is not built", path)
			}
			if msg, ok := checkConfig(path, r); !ok {
				t.Errorf("%s refuses the configuration %s gives it:\n%s", r.binary, r.where, msg)
			}
		})
	}
}

// checkConfig runs the binary with -check-config in r's environment alone
// and reports whether it answered ok, and else what it said.
func checkConfig(path string, r run) (string, bool) {
	cmd := exec.Command(path, append([]string{"-check-config"}, r.args...)...)
	cmd.Env = make([]string, 0, len(r.env))
	for _, k := range slices.Sorted(maps.Keys(r.env)) {
		cmd.Env = append(cmd.Env, k+"="+r.env[k])
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		return fmt.Sprintf("%s(%v)", out, err), false
	}
	return "", true
}

// secretPlaceholder is the value that stands for a Secret's key: one of the
// form the binaries expect (an identity secret of at least 16 bytes, a
// Consul ACL token is a UUID), never a real one.
func secretPlaceholder(ref *corev1.SecretKeySelector) (string, error) {
	switch {
	case ref.Name == "analytics-identity" && ref.Key == "identity-secret":
		return composeEnv["IDENTITY_SECRET"], nil
	case ref.Name == "analytics-consul":
		return "00000000-0000-4000-8000-000000000000", nil
	case ref.Key == "username":
		return "analytics", nil
	case ref.Key == "password":
		return "placeholder-password", nil
	}
	return "", fmt.Errorf("no placeholder for Secret %s key %s: add one to secretPlaceholder", ref.Name, ref.Key)
}

// reprocessOperands are what the operator gives a reprocessing run: the
// variables envsubst fills in jobs/reprocess.yaml (docs/operations.md), and
// the flags of `docker compose run reprocess`.
var reprocessOperands = map[string]string{
	"PROPERTY_ID": "0b9f6c1e-3f0a-4d43-9d3c-2a6f0c1d7e55",
	"FROM":        "2026-01-01",
	"TO":          "2026-01-31",
	"RULES":       "current",
}

// composeRuns returns each product service of compose with the environment
// compose gives it, .env.example's values interpolated.
func composeRuns(t *testing.T) []run {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(filepath.Dir(composePath(t)), ".env.example"))
	if err != nil {
		t.Fatalf("read .env.example: %v", err)
	}
	for k, v := range composeEnv {
		if env[k] == "" {
			env[k] = v
		}
	}
	p := loadCompose(t, env)
	var runs []run
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		b := imageBinary(s.Image)
		if b == "" {
			continue
		}
		r := run{where: "compose " + name, binary: b, env: map[string]string{}}
		for k, v := range s.Environment {
			if v != nil { // a name alone passes the shell's value through
				r.env[k] = *v
			}
		}
		r.args = s.Command
		if b == "reprocess" && len(r.args) == 0 {
			// Run on demand: `docker compose run --rm reprocess -property=... -from=... -to=... -rules=...`
			r.args = []string{"-property=" + reprocessOperands["PROPERTY_ID"], "-from=" + reprocessOperands["FROM"],
				"-to=" + reprocessOperands["TO"], "-rules=" + reprocessOperands["RULES"]}
		}
		if b == "deadletters" && len(r.args) == 0 {
			// Run on demand with a command: `docker compose run --rm deadletters replay -dry-run`;
			// replay needs every setting list does, and more.
			r.args = []string{"replay", "-dry-run"}
		}
		runs = append(runs, r)
	}
	return runs
}

// k8sRuns returns each container of the product's binaries in the built
// base and overlays and in the Job templates of deploy/k8s/jobs (envsubst's
// variables filled from each of jobTemplates' runs, their ConfigMaps the
// base's).
func k8sRuns(t *testing.T) []run {
	t.Helper()
	var runs []run
	add := func(b *built, where string, c corev1.Container) {
		bin := imageBinary(c.Image)
		if bin == "" {
			return
		}
		env, errs := containerEnv(b, c)
		for _, err := range errs {
			t.Errorf("%s: %v", where, err)
		}
		runs = append(runs, run{where: where, binary: bin, env: env, args: append(slices.Clone(c.Command), c.Args...)})
	}
	var base *built
	for _, overlay := range []string{"base", "overlays/small", "overlays/large"} {
		b := build(t, filepath.Join(root(t), "deploy", "k8s", overlay))
		if overlay == "base" {
			base = b
		}
		for _, name := range slices.Sorted(maps.Keys(b.deployments)) {
			for _, c := range b.deployments[name].Spec.Template.Spec.Containers {
				add(b, "k8s "+overlay+" Deployment "+name, c)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(b.jobs)) {
			for _, c := range b.jobs[name].Spec.Template.Spec.Containers {
				add(b, "k8s "+overlay+" Job "+name, c)
			}
		}
	}
	for _, jt := range jobTemplates {
		text := readJobTemplate(t, jt)
		for _, what := range slices.Sorted(maps.Keys(jt.runs)) {
			for _, c := range fillJobTemplate(t, jt, text, jt.runs[what]).Spec.Template.Spec.Containers {
				add(base, "k8s jobs/"+jt.file+" ("+what+")", c)
			}
		}
	}
	return runs
}

// containerEnv returns the environment Kubernetes would give c, resolved
// in b, with the placeholders of TestEnvValuesValid.
func containerEnv(b *built, c corev1.Container) (map[string]string, []error) {
	env := map[string]string{}
	var errs []error
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			errs = append(errs, fmt.Errorf("envFrom %v: only ConfigMaps are resolved", from))
			continue
		}
		cm, ok := b.configMaps[from.ConfigMapRef.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("envFrom: ConfigMap %s does not exist", from.ConfigMapRef.Name))
			continue
		}
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		var v string
		var err error
		switch src := e.ValueFrom; {
		case src == nil:
			v = expandK8sRefs(e.Value, env)
		case src.ConfigMapKeyRef != nil:
			v, err = b.configMapValue(src.ConfigMapKeyRef)
			if err != nil && src.ConfigMapKeyRef.Optional != nil && *src.ConfigMapKeyRef.Optional {
				continue // Kubernetes leaves the variable unset
			}
		case src.SecretKeyRef != nil:
			v, err = secretPlaceholder(src.SecretKeyRef)
		case src.FieldRef != nil:
			v, err = fieldPlaceholder(src.FieldRef.FieldPath)
		case src.ResourceFieldRef != nil:
			v, err = resourceFieldValue(c, src.ResourceFieldRef)
		default:
			err = fmt.Errorf("unknown source %v", src)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
		}
		env[e.Name] = v
	}
	return env, errs
}

// expandK8sRefs expands $(VAR) in a value as Kubernetes does: VAR defined
// before it in the container's environment, $$ for a literal $, any other
// reference left as written.
func expandK8sRefs(s string, env map[string]string) string {
	return regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// fieldPlaceholder stands for the downward API's fields: a pod's and a
// node's address.
func fieldPlaceholder(path string) (string, error) {
	switch path {
	case "status.podIP":
		return "10.0.1.7", nil
	case "status.hostIP":
		return "10.0.0.3", nil
	case "metadata.annotations['batch.kubernetes.io/job-completion-index']":
		return "2", nil
	}
	return "", fmt.Errorf("no placeholder for field %s", path)
}

// resourceFieldValue is what Kubernetes gives for a resourceFieldRef of c:
// the quantity divided by the divisor (default 1), rounded up.
func resourceFieldValue(c corev1.Container, f *corev1.ResourceFieldSelector) (string, error) {
	kind, name, _ := strings.Cut(f.Resource, ".")
	var list corev1.ResourceList
	switch kind {
	case "limits":
		list = c.Resources.Limits
	case "requests":
		list = c.Resources.Requests
	default:
		return "", fmt.Errorf("resource %s: want limits.* or requests.*", f.Resource)
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "", fmt.Errorf("resource %s is not set", f.Resource)
	}
	div := resource.MustParse("1")
	if !f.Divisor.IsZero() {
		div = f.Divisor
	}
	// As the kubelet computes it: CPU in millicores, the rest in units.
	n, d := q.Value(), div.Value()
	if name == string(corev1.ResourceCPU) {
		n, d = q.MilliValue(), div.MilliValue()
	}
	return strconv.FormatInt(int64(math.Ceil(float64(n)/float64(d))), 10), nil
}
