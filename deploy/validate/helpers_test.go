package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// root is the repository root, seen from this package's directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.work")); err != nil {
		t.Fatalf("repository root not found at %s: %v", dir, err)
	}
	return dir
}

// The official API groups the manifests may use.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme,
		monitoringv1.AddToScheme, // the Prometheus Operator's (deploy/k8s/monitoring)
	} {
		utilruntime.Must(add(s))
	}
	return s
}()

// strictYAML decodes YAML into the registered types and reports unknown and
// duplicated fields as errors, as `kubectl apply --validate=strict` does.
var strictYAML = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeStrict decodes one manifest into its official type.
func decodeStrict(doc []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	obj, gvk, err := strictYAML.Decode(doc, nil, nil)
	if err != nil {
		return nil, gvk, err
	}
	return obj, gvk, nil
}

// splitYAML returns the non-empty documents of a multi-document YAML stream.
func splitYAML(b []byte) ([][]byte, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// Product binaries: the environment prefix of each, as pkg/flagenv forms it
// from the name service.Main is given, and its HTTP port.
var binaries = map[string]struct {
	prefix string
	port   int
}{
	"gateway":     {"GATEWAY", 8080},
	"collection":  {"COLLECTION", 8081},
	"config":      {"CONFIG", 8082},
	"processing":  {"PROCESSING", 8083},
	"acquisition": {"ACQUISITION", 8084},
	"behavior":    {"BEHAVIOR", 8085},
	"migrate":     {"MIGRATE", 0},
	"reprocess":   {"REPROCESS", 0},
	"deadletters": {"DEADLETTERS", 0},
	"simulate":    {"SIMULATE", 0},
}

// services are the long-running binaries, each a Deployment in Kubernetes.
var services = []string{"gateway", "collection", "config", "processing", "acquisition", "behavior"}

// Variables a container may have beside its binary's own: helpers for
// dependent values (SLICE_INDEX: an indexed Job's pod's index), the Consul
// API client's token, and the Go runtime's garbage-collector settings (read
// by every Go binary).
var helperEnv = map[string]bool{"POD_IP": true, "HOST_IP": true, "SLICE_INDEX": true, "CONSUL_HTTP_TOKEN": true,
	"MEMORY_LIMIT_MIB": true, "GOGC": true, "GOMEMLIMIT": true}

// secretLike matches variable names whose value must never be a literal.
var secretLike = regexp.MustCompile(`SECRET|PASSWORD|(^|_)TOKEN$|_KEY$`)

// imageBinary returns the binary an image of the product runs
// (acme-analytics/<binary>[:tag], possibly behind a registry), or "".
func imageBinary(image string) string {
	name := image
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	parts := strings.Split(name, "/")
	if len(parts) < 2 || parts[len(parts)-2] != "acme-analytics" {
		return ""
	}
	return parts[len(parts)-1]
}

// imageTag returns the tag of an image reference, or "".
func imageTag(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// envRules checks the environment of one product binary, wherever it runs:
// names follow <BINARY>_<FLAG>, secrets never appear as literals, the
// listener and advertised address are set, topics and schema are left to
// their jobs, and Cassandra is used at LOCAL_QUORUM. literal reports the
// literal value of a variable (ok false when it comes from elsewhere, a
// Secret or a ConfigMap); fromSecret whether it comes from a secret.
func envRules(binary string, names []string, literal func(string) (string, bool), fromSecret func(string) bool) []error {
	b, ok := binaries[binary]
	if !ok {
		return []error{fmt.Errorf("unknown binary %q", binary)}
	}
	var errs []error
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
		if !strings.HasPrefix(n, b.prefix+"_") && !helperEnv[n] {
			errs = append(errs, fmt.Errorf("%s: variable %s is not %s_<FLAG>: the binary never reads it", binary, n, b.prefix))
		}
		if secretLike.MatchString(strings.TrimPrefix(n, b.prefix+"_")) {
			if v, lit := literal(n); lit && v != "" && !fromSecret(n) {
				errs = append(errs, fmt.Errorf("%s: %s is a literal value; secrets come from a Secret, a file or the operator's environment", binary, n))
			}
		}
	}
	want := func(name, value string) {
		v, lit := literal(name)
		switch {
		case !has[name]:
			errs = append(errs, fmt.Errorf("%s: %s is not set (want %q)", binary, name, value))
		case !lit || v != value:
			errs = append(errs, fmt.Errorf("%s: %s = %q, want %q", binary, name, v, value))
		}
	}
	if b.port != 0 {
		want(b.prefix+"_HTTP_ADDR", fmt.Sprintf("0.0.0.0:%d", b.port))
		for _, n := range []string{"_ADVERTISE_HOST", "_CONSUL_ADDR", "_IDENTITY_SECRET"} {
			if !has[b.prefix+n] {
				errs = append(errs, fmt.Errorf("%s: %s%s is not set", binary, b.prefix, n))
			}
		}
		if has[b.prefix+"_IDENTITY_SECRET"] && !fromSecret(b.prefix+"_IDENTITY_SECRET") {
			errs = append(errs, fmt.Errorf("%s: %s_IDENTITY_SECRET does not come from a secret", binary, b.prefix))
		}
		if v, _ := literal(b.prefix + "_LOG_FORMAT"); v != "json" {
			errs = append(errs, fmt.Errorf("%s: %s_LOG_FORMAT = %q, want json", binary, b.prefix, v))
		}
	}
	if has[b.prefix+"_CHECK_CONFIG"] {
		errs = append(errs, fmt.Errorf("%s: %s_CHECK_CONFIG is set: the binary would check its configuration and exit instead of running", binary, b.prefix))
	}
	// deadletters creates no topic: it has no -kafka-ensure-topics.
	if has[b.prefix+"_KAFKA_BROKERS"] && binary != "simulate" && binary != "deadletters" {
		want(b.prefix+"_KAFKA_ENSURE_TOPICS", "false")
	}
	if has[b.prefix+"_CASSANDRA_HOSTS"] {
		want(b.prefix+"_CASSANDRA_CONSISTENCY", "LOCAL_QUORUM")
		if v, lit := literal(b.prefix + "_CASSANDRA_MIGRATE"); lit && v != "false" {
			errs = append(errs, fmt.Errorf("%s: %s_CASSANDRA_MIGRATE = %q: the migrate job owns the schema", binary, b.prefix, v))
		}
	}
	if binary == "gateway" {
		errs = append(errs, gatewayShutdownCoversRequests(literal)...)
	}
	return errs
}

// gatewayHelp is the gateway's -help output as kept under review in its
// golden file (gateway/internal/gateway/testdata/help.golden, checked by
// the gateway's TestHelp): the defaults of the flags deploy/ leaves unset.
const gatewayHelp = "../../gateway/internal/gateway/testdata/help.golden"

// gatewayShutdownCoversRequests checks that the gateway's shutdown timeout
// is at least its longest per-route time limit: a request in flight when
// the listener closes (a report, 30s by default) must be able to finish.
func gatewayShutdownCoversRequests(literal func(string) (string, bool)) []error {
	help, err := os.ReadFile(gatewayHelp)
	if err != nil {
		return []error{fmt.Errorf("gateway: the defaults of its flags: %w", err)}
	}
	value := func(flag string) (time.Duration, error) {
		v, ok := literal("GATEWAY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
		if !ok {
			m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(flag) + ` duration\n.*\(default ([^)]+)\)$`).FindSubmatch(help)
			if m == nil {
				return 0, fmt.Errorf("gateway: no default of -%s in %s", flag, gatewayHelp)
			}
			v = string(m[1])
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("gateway: -%s: %w", flag, err)
		}
		return d, nil
	}
	shutdown, err := value("shutdown-timeout")
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, flag := range []string{"collect-timeout", "api-timeout", "report-timeout"} {
		d, err := value(flag)
		if err != nil {
			errs = append(errs, err)
		} else if shutdown < d {
			errs = append(errs, fmt.Errorf("gateway: shutdown timeout %s < -%s %s: a request in flight when the listener closes would be cut off", shutdown, flag, d))
		}
	}
	return errs
}

// ntsReplication parses a NetworkTopologyStrategy replication map, e.g.
// {'class': 'NetworkTopologyStrategy', 'dc1': 3}, into data centre → replicas.
func ntsReplication(s string) (map[string]int, error) {
	if !strings.Contains(s, "'NetworkTopologyStrategy'") {
		return nil, fmt.Errorf("replication %s is not NetworkTopologyStrategy", s)
	}
	dcs := map[string]int{}
	for _, m := range regexp.MustCompile(`'([^']+)'\s*:\s*'?(\d+)'?`).FindAllStringSubmatch(s, -1) {
		var n int
		fmt.Sscan(m[2], &n)
		dcs[m[1]] = n
	}
	if len(dcs) == 0 {
		return nil, fmt.Errorf("replication %s names no data centre", s)
	}
	return dcs, nil
}

func parseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("duration %q: %v", s, err)
	}
	return d
}

// selects reports whether a label selector matches an object's labels.
func selects(s *metav1.LabelSelector, objectLabels map[string]string) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false, err
	}
	return sel.Matches(klabels.Set(objectLabels)), nil
}
