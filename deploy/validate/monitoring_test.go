package validate

import (
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// externalSeries are the series of other exporters the alerts may use, with
// their labels: Strimzi's Kafka Exporter and kube-state-metrics (named in
// deploy/k8s/monitoring/kustomization.yaml).
var externalSeries = map[string][]string{
	"kafka_consumergroup_lag":                              {"consumergroup", "topic", "partition"},
	"kafka_topic_partitions":                               {"topic"},
	"kafka_topic_partition_under_replicated_partition":     {"topic", "partition"},
	"kube_horizontalpodautoscaler_status_current_replicas": {"namespace", "horizontalpodautoscaler"},
	"kube_horizontalpodautoscaler_spec_max_replicas":       {"namespace", "horizontalpodautoscaler"},
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint"}

// TestMonitoring checks deploy/k8s/monitoring: it builds; its PodMonitors
// scrape every Deployment of the product, once, on the port its pods serve
// /metrics on (their prometheus.io/port), with the service's name as the
// job; and every alert parses, has a page or ticket severity and a summary,
// and names only series and labels a service exports (or one of
// externalSeries), only jobs that exist and only processing's consumer
// group, so that renaming a metric, a label or a service cannot leave an
// alert that never fires.
func TestMonitoring(t *testing.T) {
	k8s := filepath.Join(root(t), "deploy", "k8s")
	mon := build(t, filepath.Join(k8s, "monitoring"))
	if n := len(mon.objects) - len(mon.podMonitors) - len(mon.rules); n != 0 {
		t.Errorf("monitoring: %d objects other than PodMonitors and PrometheusRules", n)
	}
	base := build(t, filepath.Join(k8s, "base"))
	values := map[string]map[string]bool{
		"job":           checkPodMonitors(t, base, mon.podMonitors),
		"consumergroup": {consumerGroup(t, base): true},
	}
	exported, tops := exportedMetrics(t)
	if len(mon.rules) == 0 {
		t.Fatal("monitoring: no PrometheusRule")
	}
	for _, r := range mon.rules {
		checkAlerts(t, r, values, exported, tops)
	}
	checkKafkaExporterScraped(t, mon.podMonitors)
}

// checkKafkaExporterScraped checks that a PodMonitor scrapes the Kafka
// Exporter Strimzi runs for the Kafka of deploy/k8s/infra: the alerts on
// consumer lag and unowned partitions (kafka_* in externalSeries) read its
// series, and without a scrape of it they are empty and never fire.
// Strimzi labels the exporter's pod strimzi.io/kind=Kafka,
// strimzi.io/cluster=<cluster>, strimzi.io/name=<cluster>-kafka-exporter and
// names its metrics port tcp-prometheus.
func checkKafkaExporterScraped(t *testing.T, monitors []*monitoringv1.PodMonitor) {
	t.Helper()
	kafkas := infraDocs(t)["Kafka"]
	if len(kafkas) != 1 {
		t.Fatalf("infra: %d Kafka resources, want 1", len(kafkas))
	}
	cluster, ns := str(at(kafkas[0], "metadata", "name")), str(at(kafkas[0], "metadata", "namespace"))
	if at(kafkas[0], "spec", "kafkaExporter") == nil {
		t.Errorf("infra: Kafka %s runs no Kafka Exporter", cluster)
	}
	pod := map[string]string{
		"strimzi.io/kind":    "Kafka",
		"strimzi.io/cluster": cluster,
		"strimzi.io/name":    cluster + "-kafka-exporter",
	}
	for _, pm := range monitors {
		if !slices.Contains(pm.Spec.NamespaceSelector.MatchNames, ns) && !pm.Spec.NamespaceSelector.Any {
			continue
		}
		if ok, err := selects(&pm.Spec.Selector, pod); err != nil || !ok {
			continue
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port != nil && *ep.Port == "tcp-prometheus" && (ep.Path == "" || ep.Path == "/metrics") {
				return
			}
		}
	}
	t.Errorf("no PodMonitor scrapes the Kafka Exporter of %s (namespace %s, pod labels %v, port tcp-prometheus): the alerts on kafka_* series would never fire", cluster, ns, pod)
}

// checkPodMonitors checks that each Deployment of the product is scraped by
// exactly one PodMonitor, on the named port its pods declare for the
// prometheus.io/port they announce, with the job label its name, and
// returns the jobs.
func checkPodMonitors(t *testing.T, base *built, monitors []*monitoringv1.PodMonitor) map[string]bool {
	t.Helper()
	jobs := map[string]bool{}
	for name, d := range base.deployments {
		pod := d.Spec.Template
		var by []string
		for _, pm := range monitors {
			if ok, err := selects(&pm.Spec.Selector, pod.Labels); err != nil {
				t.Fatalf("PodMonitor %s: %v", pm.Name, err)
			} else if !ok {
				continue
			}
			by = append(by, pm.Name)
			if pm.Spec.JobLabel != "app.kubernetes.io/name" {
				t.Errorf("PodMonitor %s: jobLabel %q, want app.kubernetes.io/name (the alerts match job on the service's name)", pm.Name, pm.Spec.JobLabel)
			}
			job := pod.Labels[pm.Spec.JobLabel]
			if job == "" {
				t.Errorf("PodMonitor %s: pods of %s have no label %s for the job", pm.Name, name, pm.Spec.JobLabel)
			}
			jobs[job] = true
			if len(pm.Spec.PodMetricsEndpoints) != 1 {
				t.Errorf("PodMonitor %s: %d endpoints, want 1", pm.Name, len(pm.Spec.PodMetricsEndpoints))
				continue
			}
			ep := pm.Spec.PodMetricsEndpoints[0]
			if ep.Path != "/metrics" {
				t.Errorf("PodMonitor %s: path %q, want /metrics", pm.Name, ep.Path)
			}
			if ep.Port == nil {
				t.Errorf("PodMonitor %s: no port", pm.Name)
				continue
			}
			want := pod.Annotations["prometheus.io/port"]
			found := false
			for _, c := range pod.Spec.Containers {
				for _, p := range c.Ports {
					if p.Name == *ep.Port {
						found = true
						if strconv.Itoa(int(p.ContainerPort)) != want {
							t.Errorf("PodMonitor %s scrapes %s on port %s (%d); its pods serve /metrics on %s", pm.Name, name, p.Name, p.ContainerPort, want)
						}
					}
				}
			}
			if !found {
				t.Errorf("PodMonitor %s: pods of %s have no port named %s", pm.Name, name, *ep.Port)
			}
			if !policyAdmitsMonitoring(base, *ep.Port) {
				t.Errorf("PodMonitor %s: no NetworkPolicy lets the monitoring namespace reach port %s", pm.Name, *ep.Port)
			}
		}
		if len(by) != 1 {
			t.Errorf("Deployment %s is scraped by %d PodMonitors %v, want 1", name, len(by), by)
		}
	}
	return jobs
}

// policyAdmitsMonitoring reports whether a NetworkPolicy of the product
// admits the monitoring namespace to the named port.
func policyAdmitsMonitoring(b *built, port string) bool {
	for _, np := range b.policies {
		for _, in := range np.Spec.Ingress {
			fromMonitoring := false
			for _, from := range in.From {
				if from.NamespaceSelector == nil {
					continue
				}
				if ok, err := selects(from.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": "monitoring"}); err == nil && ok {
					fromMonitoring = true
				}
			}
			if !fromMonitoring {
				continue
			}
			for _, p := range in.Ports {
				if p.Port != nil && *p.Port == intstr.FromString(port) {
					return true
				}
			}
		}
	}
	return false
}

// consumerGroup returns the consumer group of the processing Deployment.
func consumerGroup(t *testing.T, base *built) string {
	t.Helper()
	for _, c := range base.deployments["processing"].Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "PROCESSING_CONSUMER_GROUP" && e.Value != "" {
				return e.Value
			}
		}
	}
	t.Fatal("the processing Deployment sets no PROCESSING_CONSUMER_GROUP")
	return ""
}

// checkAlerts checks every alerting rule of r.
func checkAlerts(t *testing.T, r *monitoringv1.PrometheusRule, values map[string]map[string]bool, exported map[string][]string, tops map[string]float64) {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	seen := map[string]bool{}
	n := 0
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			name := rule.Alert
			if name == "" {
				t.Errorf("group %s: a rule without an alert name (recording rules are not expected here)", g.Name)
				continue
			}
			n++
			sev := rule.Labels["severity"]
			if sev != "page" && sev != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", name, sev)
			}
			if seen[name+"/"+sev] {
				t.Errorf("%s: two rules of severity %s", name, sev)
			}
			seen[name+"/"+sev] = true
			if rule.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", name)
			}
			if rule.For != nil {
				if _, err := model.ParseDuration(string(*rule.For)); err != nil {
					t.Errorf("%s: for %q: %v", name, *rule.For, err)
				}
			}
			expr, err := p.ParseExpr(rule.Expr.String())
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if expr.Type() != parser.ValueTypeVector {
				t.Errorf("%s: the expression is a %s, want an instant vector", name, expr.Type())
			}
			for _, err := range checkSeries(expr, values, exported) {
				t.Errorf("%s: %v", name, err)
			}
			for _, err := range checkQuantiles(expr, tops) {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d alerts in %s", n, r.Name)
	}
}

// checkSeries returns what is wrong with the series expr selects and the
// labels it groups by; values holds the only values some labels can have.
func checkSeries(expr parser.Expr, values map[string]map[string]bool, exported map[string][]string) []error {
	var errs []error
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			known, ok := seriesLabels(n.Name, exported)
			if !ok {
				errs = append(errs, fmt.Errorf("no service exports %s (nor an exporter in externalSeries)", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name == labels.MetricName {
					continue
				}
				if !slices.Contains(known, m.Name) {
					errs = append(errs, fmt.Errorf("%s has no label %s (it has %v)", n.Name, m.Name, known))
				}
				if vs, ok := values[m.Name]; ok && !matchesAny(m, vs) {
					errs = append(errs, fmt.Errorf("%s: %s matches none of %v", n.Name, m, slices.Sorted(maps.Keys(vs))))
				}
			}
		case *parser.AggregateExpr:
			// The labels grouped by must be on every series aggregated.
			for _, sel := range selectors(n.Expr) {
				known, ok := seriesLabels(sel.Name, exported)
				if !ok {
					continue // reported above
				}
				for _, l := range n.Grouping {
					if !slices.Contains(known, l) {
						errs = append(errs, fmt.Errorf("grouping by %s, which %s does not have", l, sel.Name))
					}
				}
			}
		}
		return nil
	})
	return errs
}

// checkQuantiles returns the comparisons of a histogram_quantile with a
// number that can never be true: histogram_quantile answers at most a
// histogram's largest finite bucket bound (a quantile in the +Inf bucket
// reads as that bound), so "> 5" on buckets that end at 5 never fires.
func checkQuantiles(expr parser.Expr, tops map[string]float64) []error {
	var errs []error
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		b, ok := node.(*parser.BinaryExpr)
		if !ok || (b.Op != parser.GTR && b.Op != parser.GTE) {
			return nil
		}
		call, ok := unparen(b.LHS).(*parser.Call)
		threshold, isNumber := unparen(b.RHS).(*parser.NumberLiteral)
		if !ok || !isNumber || call.Func.Name != "histogram_quantile" {
			return nil
		}
		for _, sel := range selectors(call) {
			metric, _ := strings.CutSuffix(sel.Name, "_bucket")
			top, known := tops[metric]
			if known && (threshold.Val > top || (threshold.Val == top && b.Op == parser.GTR)) {
				errs = append(errs, fmt.Errorf("histogram_quantile of %s %s %g can never be true: its largest finite bucket is %g (add larger buckets, or compare below it)",
					sel.Name, b.Op, threshold.Val, top))
			}
		}
		return nil
	})
	return errs
}

// unparen returns e without the parentheses around it.
func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// matchesAny reports whether m matches one of values.
func matchesAny(m *labels.Matcher, values map[string]bool) bool {
	for v := range values {
		if m.Matches(v) {
			return true
		}
	}
	return false
}

// seriesLabels returns the labels a series can have: the metric's own, the
// target's, and le for a histogram's buckets.
func seriesLabels(name string, exported map[string][]string) ([]string, bool) {
	own, ok := externalSeries[name]
	if !ok {
		own, ok = exported[name]
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, cut := strings.CutSuffix(name, suffix)
		if ok || !cut {
			continue
		}
		if own, ok = exported[base]; ok && suffix == "_bucket" {
			own = append(slices.Clone(own), "le")
		}
	}
	if !ok {
		return nil, false
	}
	return append(slices.Clone(targetLabels), own...), true
}

// selectors returns the vector selectors under expr.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// The metrics the services register: the Name of a prometheus
// CounterOpts, GaugeOpts or HistogramOpts, and the label names that follow
// the options (`}, []string{"a", "b"})`), none for a metric without labels.
var (
	metricOpts    = regexp.MustCompile(`prometheus\.(?:Counter|Gauge|Histogram|Summary)Opts\{`)
	metricName    = regexp.MustCompile(`^\s*Name:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
	metricLabels  = regexp.MustCompile(`^\}\s*,\s*\[\]string\{([^}]*)\}`)
	metricBuckets = regexp.MustCompile(`^\s*Buckets:\s*(.+?)\s*$`)
	bucketsFunc   = regexp.MustCompile(`^prometheus\.(Exponential|Linear)Buckets\(([^,]+),([^,]+),([^,)]+)\)$`)
)

// largestBucket returns the largest bound of a Buckets field's value: a
// []float64 literal or prometheus.ExponentialBuckets/LinearBuckets with
// constant arguments; false for anything else.
func largestBucket(expr string) (float64, bool) {
	var bounds []float64
	if list, ok := strings.CutPrefix(expr, "[]float64{"); ok {
		for _, v := range strings.Split(strings.TrimSuffix(list, "}"), ",") {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, false
			}
			bounds = append(bounds, f)
		}
	} else if m := bucketsFunc.FindStringSubmatch(expr); m != nil {
		var args [3]float64
		for i, a := range m[2:] {
			f, err := strconv.ParseFloat(strings.TrimSpace(a), 64)
			if err != nil {
				return 0, false
			}
			args[i] = f
		}
		start, factor, n := args[0], args[1], int(args[2])
		for i := range n {
			if m[1] == "Exponential" {
				bounds = append(bounds, start*math.Pow(factor, float64(i)))
			} else {
				bounds = append(bounds, start+factor*float64(i))
			}
		}
	}
	if len(bounds) == 0 {
		return 0, false
	}
	return slices.Max(bounds), true
}

// exportedMetrics reads the metrics the services register (name → label
// names) from the Go source of the modules go.work uses, and each
// histogram's largest finite bucket bound where its source says it.
func exportedMetrics(t *testing.T) (labelNames map[string][]string, tops map[string]float64) {
	t.Helper()
	out, tops := map[string][]string{}, map[string]float64{}
	repo := root(t)
	for _, mod := range goWorkModules(t) {
		err := filepath.WalkDir(filepath.Join(repo, mod), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			addMetrics(out, tops, src)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 30 {
		t.Fatalf("found only %d metrics in the services' source: %v", len(out), slices.Sorted(maps.Keys(out)))
	}
	return out, tops
}

// addMetrics adds the metrics registered in src to out, and to tops the
// largest finite bucket of each histogram whose buckets it can read.
func addMetrics(out map[string][]string, tops map[string]float64, src []byte) {
	for _, loc := range metricOpts.FindAllIndex(src, -1) {
		opts := src[loc[1]:]
		end := closingBrace(opts)
		if end < 0 {
			continue
		}
		name, top, topKnown := "", 0.0, strings.HasPrefix(string(src[loc[0]:loc[1]]), "prometheus.HistogramOpts")
		if topKnown {
			top = 10 // prometheus.DefBuckets' largest
		}
		for _, field := range splitFields(opts[:end]) {
			if m := metricName.FindSubmatch(field); m != nil {
				name = string(m[1])
			}
			if m := metricBuckets.FindSubmatch(field); m != nil {
				top, topKnown = largestBucket(string(m[1]))
			}
		}
		if name == "" {
			continue
		}
		if topKnown {
			tops[name] = top
		}
		var labelNames []string
		if m := metricLabels.FindSubmatch(opts[end:]); m != nil {
			for _, l := range strings.Split(string(m[1]), ",") {
				if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
					labelNames = append(labelNames, l)
				}
			}
		}
		out[name] = labelNames
	}
}

// closingBrace returns the index of the brace that closes an options
// literal whose opening brace is just before b, or -1.
func closingBrace(b []byte) int {
	depth := 1
	for i, c := range b {
		switch c {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}

// splitFields splits the body of a composite literal at its top-level
// commas and newlines.
func splitFields(b []byte) [][]byte {
	var out [][]byte
	depth, start := 0, 0
	for i, c := range b {
		switch c {
		case '{', '(', '[':
			depth++
		case '}', ')', ']':
			depth--
		case ',', '\n':
			if depth == 0 {
				out = append(out, b[start:i])
				start = i + 1
			}
		}
	}
	return append(out, b[start:])
}
