package validate

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	ktypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Resources of operators the infrastructure manifests may use. Their Go
// types are not published by the projects (Strimzi) or would pull an
// operator's whole dependency graph (cass-operator), so their envelope is
// decoded strictly and their settings checked one by one below.
var operatorKinds = map[string]bool{
	"kafka.strimzi.io/v1 Kafka":                          true,
	"kafka.strimzi.io/v1 KafkaNodePool":                  true,
	"cassandra.datastax.com/v1beta1 CassandraDatacenter": true,
}

// operatorResource is the envelope of an operator's resource.
type operatorResource struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

// TestManifestsDecodeStrictly loads every YAML file under deploy/k8s and
// decodes each document strictly: Kubernetes objects (and the overlays'
// patches, which are partial objects) into the official API types,
// kustomization files into kustomize's own type, operators' resources into
// their envelope. Any unknown or duplicated field fails.
func TestManifestsDecodeStrictly(t *testing.T) {
	dir := filepath.Join(root(t), "deploy", "k8s")
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case filepath.Base(path) == "kustomization.yaml":
			var k ktypes.Kustomization
			if err := yaml.UnmarshalStrict(b, &k); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
			n++
			return nil
		case rel == filepath.Join("infra", "consul", "values.yaml"):
			return nil // Helm values, checked by TestInfrastructure
		}
		docs, err := splitYAML(b)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		for i, doc := range docs {
			n++
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Errorf("%s #%d: %v", rel, i+1, err)
				continue
			}
			if operatorKinds[tm.APIVersion+" "+tm.Kind] {
				var r operatorResource
				if err := yaml.UnmarshalStrict(doc, &r); err != nil {
					t.Errorf("%s #%d (%s): %v", rel, i+1, tm.Kind, err)
				}
				continue
			}
			if _, _, err := decodeStrict(doc); err != nil {
				t.Errorf("%s #%d (%s %s): %v", rel, i+1, tm.APIVersion, tm.Kind, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 30 {
		t.Fatalf("decoded only %d documents under %s", n, dir)
	}
}

// built is the output of a kustomize build, decoded into official types.
type built struct {
	name         string
	objects      []runtime.Object
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	jobs         map[string]*batchv1.Job
	configMaps   map[string]*corev1.ConfigMap
	policies     []*networkingv1.NetworkPolicy
	namespaces   []*corev1.Namespace
	serviceAccts map[string]*corev1.ServiceAccount
	podMonitors  []*monitoringv1.PodMonitor
	rules        []*monitoringv1.PrometheusRule
}

// build runs kustomize on dir as `kubectl apply -k` would, and decodes the
// result strictly (the Prometheus Operator's objects too: deploy/k8s/monitoring).
func build(t *testing.T, dir string) *built {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	b := &built{
		name: filepath.Base(dir), deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, jobs: map[string]*batchv1.Job{},
		configMaps: map[string]*corev1.ConfigMap{}, serviceAccts: map[string]*corev1.ServiceAccount{},
	}
	seen := map[string]bool{}
	for _, doc := range docs {
		obj, gvk, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%s: built object does not decode strictly: %v\n%s", b.name, err, doc)
			continue
		}
		meta := obj.(metav1.Object)
		id := gvk.Kind + " " + meta.GetNamespace() + "/" + meta.GetName()
		if seen[id] {
			t.Errorf("%s: %s twice", b.name, id)
		}
		seen[id] = true
		b.objects = append(b.objects, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			b.deployments[o.Name] = o
		case *corev1.Service:
			b.services[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			b.hpas[o.Spec.ScaleTargetRef.Name] = o
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, o)
		case *batchv1.Job:
			b.jobs[o.Name] = o
		case *corev1.ConfigMap:
			b.configMaps[o.Name] = o
		case *networkingv1.NetworkPolicy:
			b.policies = append(b.policies, o)
		case *corev1.Namespace:
			b.namespaces = append(b.namespaces, o)
		case *corev1.ServiceAccount:
			b.serviceAccts[o.Name] = o
		case *monitoringv1.PodMonitor:
			b.podMonitors = append(b.podMonitors, o)
		case *monitoringv1.PrometheusRule:
			b.rules = append(b.rules, o)
		}
	}
	return b
}

// configMapValue follows a configMapKeyRef of the built output.
func (b *built) configMapValue(ref *corev1.ConfigMapKeySelector) (string, error) {
	cm, ok := b.configMaps[ref.Name]
	if !ok {
		return "", fmt.Errorf("ConfigMap %s does not exist", ref.Name)
	}
	v, ok := cm.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("ConfigMap %s has no key %s", ref.Name, ref.Key)
	}
	return v, nil
}

// configMapByPrefix finds a generated ConfigMap by its name before the hash.
func (b *built) configMapByPrefix(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for n, cm := range b.configMaps {
		if n == name || strings.HasPrefix(n, name+"-") {
			return cm
		}
	}
	t.Fatalf("%s: no ConfigMap %s", b.name, name)
	return nil
}

// TestKustomizeBuilds builds the base, both overlays and the infrastructure
// and holds the product's objects to the deployment's rules.
func TestKustomizeBuilds(t *testing.T) {
	k8s := filepath.Join(root(t), "deploy", "k8s")
	secrets := declaredSecrets(t)
	for _, dir := range []string{"base", "overlays/small", "overlays/large"} {
		t.Run(dir, func(t *testing.T) {
			b := build(t, filepath.Join(k8s, dir))
			checkProduct(t, b, secrets, dir != "base")
		})
	}
	t.Run("infra", func(t *testing.T) {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		if _, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(k8s, "infra")); err != nil {
			t.Fatalf("kustomize build infra: %v", err)
		}
	})
}

// declaredSecrets returns the Secrets (name → keys) that
// deploy/k8s/secrets/create-secrets.sh makes.
func declaredSecrets(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "k8s", "secrets", "create-secrets.sh"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*put (analytics-[a-z-]+)(.*)$`).FindAllStringSubmatch(string(b), -1) {
		for _, k := range regexp.MustCompile(`--from-file=([a-z-]+)=`).FindAllStringSubmatch(m[2], -1) {
			out[m[1]] = append(out[m[1]], k[1])
		}
		if strings.Contains(m[2], "${keys[@]}") {
			out[m[1]] = append(out[m[1]], "*")
		}
	}
	if len(out) < 4 {
		t.Fatalf("create-secrets.sh declares only %v", out)
	}
	return out
}

func checkProduct(t *testing.T, b *built, secrets map[string][]string, release bool) {
	if len(b.namespaces) != 1 || b.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("want one namespace enforcing the restricted Pod Security Standard, got %d", len(b.namespaces))
	}
	for _, name := range services {
		d, ok := b.deployments[name]
		if !ok {
			t.Errorf("no Deployment %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) { checkDeployment(t, b, d, secrets, release) })
	}
	for name := range b.deployments {
		if !slices.Contains(services, name) {
			t.Errorf("Deployment %s is not one of the product's services", name)
		}
	}
	checkPartitionsBoundProcessing(t, b)
	checkTopics(t, b)
	checkMigrate(t, b, secrets, release)
	checkTopicsJob(t, b)
	checkNetworkPolicies(t, b)
	checkSetupPhase(t, b)
}

func checkDeployment(t *testing.T, b *built, d *appsv1.Deployment, secrets map[string][]string, release bool) {
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	if ok, err := selects(d.Spec.Selector, podLabels); err != nil || !ok {
		t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector, podLabels)
	}
	if podLabels["app.kubernetes.io/part-of"] != "acme-analytics" {
		t.Errorf("pods lack app.kubernetes.io/part-of=acme-analytics (the NetworkPolicies select on it)")
	}
	hpa, ok := b.hpas[d.Name]
	switch {
	case !ok:
		t.Errorf("no HorizontalPodAutoscaler for the Deployment")
	case hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.APIVersion != "apps/v1":
		t.Errorf("autoscaler targets %v", hpa.Spec.ScaleTargetRef)
	case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2:
		t.Errorf("autoscaler allows fewer than 2 replicas: one node or zone lost would stop the service")
	case hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas:
		t.Errorf("autoscaler max %d < min %d", hpa.Spec.MaxReplicas, *hpa.Spec.MinReplicas)
	case len(hpa.Spec.Metrics) == 0:
		t.Errorf("autoscaler has no metric")
	}
	if ok && d.Spec.Replicas != nil {
		t.Errorf("spec.replicas is set although an autoscaler owns the count: each apply would reset it")
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.String() != "0" {
		t.Errorf("rolling updates must not take capacity away (maxUnavailable 0)")
	}
	pdbs := 0
	for _, p := range b.pdbs {
		if ok, err := selects(p.Spec.Selector, podLabels); err == nil && ok {
			pdbs++
			// Readiness follows the stores and the broker: with them down,
			// the default policy would let no pod be evicted, and a node
			// drain would wait for the outage to end.
			if pol := p.Spec.UnhealthyPodEvictionPolicy; pol == nil || *pol != policyv1.AlwaysAllow {
				t.Errorf("PodDisruptionBudget %s: unhealthyPodEvictionPolicy must be AlwaysAllow", p.Name)
			}
		}
	}
	if pdbs != 1 {
		t.Errorf("%d PodDisruptionBudgets select the pods, want 1", pdbs)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("the service account token is mounted; the services call no Kubernetes API")
	}
	if _, ok := b.serviceAccts[pod.ServiceAccountName]; !ok {
		t.Errorf("service account %q is not part of the build", pod.ServiceAccountName)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod does not run as a numeric non-root user")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	binary := imageBinary(c.Image)
	if binary != d.Name {
		t.Errorf("image %s does not run %s", c.Image, d.Name)
	}
	if release && (imageTag(c.Image) == "" || imageTag(c.Image) == "latest") {
		t.Errorf("image %s has no release tag", c.Image)
	}
	var httpPort int32
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p.ContainerPort
		}
	}
	if httpPort == 0 || int(httpPort) != binaries[binary].port {
		t.Errorf("container port http = %d, want the binary's %d", httpPort, binaries[binary].port)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		switch {
		case p == nil:
			t.Errorf("no %s probe", what)
		case p.HTTPGet == nil || p.HTTPGet.Path != path:
			t.Errorf("%s probe is not GET %s", what, path)
		case !(p.HTTPGet.Port == intstr.FromString("http") || p.HTTPGet.Port == intstr.FromInt32(httpPort)):
			t.Errorf("%s probe port %s is not the http port", what, p.HTTPGet.Port.String())
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	// Not /readyz: a service started during an outage of Cassandra, Kafka
	// or the Consul agent answers /healthz at once and waits for them
	// unready (pkg/service, Setup). A startup probe on readiness would
	// have the kubelet restart it once its window passed, and its restarts
	// back off for up to 5 minutes after the dependency's return.
	probe("startup", c.StartupProbe, "/healthz")
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			t.Errorf("%s request and limit are not both set", r)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s request %s exceeds the limit %s", r, req.String(), lim.String())
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container is not locked down (no privilege escalation, read-only root, all capabilities dropped)")
	}

	// The Service in front of it.
	svc, ok := b.services[d.Name]
	if !ok {
		t.Errorf("no Service %s", d.Name)
	} else {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service selector %v does not select the pods", svc.Spec.Selector)
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if p.TargetPort == intstr.FromString("http") || p.TargetPort == intstr.FromInt32(httpPort) {
				found = true
			}
		}
		if !found {
			t.Errorf("Service has no port targeting http")
		}
		public := svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort || len(svc.Spec.ExternalIPs) > 0
		if public != (d.Name == "gateway") {
			t.Errorf("Service type %s: only the gateway is reachable from outside", svc.Spec.Type)
		}
	}

	// Environment.
	vars := map[string]corev1.EnvVar{}
	var names []string
	for _, e := range c.Env {
		if _, dup := vars[e.Name]; dup {
			t.Errorf("%s is set twice", e.Name)
		}
		vars[e.Name] = e
		names = append(names, e.Name)
		if e.ValueFrom == nil {
			continue
		}
		if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
			if _, err := b.configMapValue(ref); err != nil {
				t.Errorf("%s: %v", e.Name, err)
			}
		}
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			keys, ok := secrets[ref.Name]
			if !ok || !(slices.Contains(keys, ref.Key) || slices.Contains(keys, "*")) {
				t.Errorf("%s: Secret %s key %s is not made by deploy/k8s/secrets/create-secrets.sh", e.Name, ref.Name, ref.Key)
			}
		}
	}
	literal := func(n string) (string, bool) {
		e, ok := vars[n]
		if !ok || e.ValueFrom != nil {
			return "", false
		}
		return e.Value, true
	}
	fromSecret := func(n string) bool {
		e, ok := vars[n]
		return ok && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}
	for _, err := range envRules(binary, names, literal, fromSecret) {
		t.Error(err)
	}
	prefix := binaries[binary].prefix
	if v, _ := literal(prefix + "_ADVERTISE_HOST"); v != "$(POD_IP)" {
		t.Errorf("%s_ADVERTISE_HOST = %q, want $(POD_IP) (each pod registers its own address)", prefix, v)
	}
	if v, _ := literal(prefix + "_CONSUL_ADDR"); v != "$(HOST_IP):8500" {
		t.Errorf("%s_CONSUL_ADDR = %q, want the node's agent $(HOST_IP):8500", prefix, v)
	}
	if err := consulToken(vars, d.Name); err != nil {
		t.Error(err)
	}
	if d.Name == "gateway" {
		// The keys that decide every token's tenant come from config-svc's
		// Service, not from whatever registered as "config" in Consul.
		want := fmt.Sprintf("http://config:%d/.well-known/jwks.json", binaries["config"].port)
		if v, _ := literal("GATEWAY_JWKS_URL"); v != want {
			t.Errorf("GATEWAY_JWKS_URL = %q, want %q (config-svc's Kubernetes Service)", v, want)
		}
	}
	for i, n := range names {
		if (n == "POD_IP" || n == "HOST_IP") && slices.IndexFunc(names[:i], func(s string) bool { return strings.HasPrefix(s, prefix) }) >= 0 {
			t.Errorf("%s must come before the variables that refer to it", n)
		}
	}
	// The pod must outlive its own shutdown: the drain delay plus the HTTP
	// drain plus what pkg/service's shutdown adds, at most
	// shutdownOverhead.
	drain, _ := literal(prefix + "_DRAIN_DELAY")
	shutdown, _ := literal(prefix + "_SHUTDOWN_TIMEOUT")
	if drain == "" || shutdown == "" {
		t.Errorf("%s_DRAIN_DELAY and %s_SHUTDOWN_TIMEOUT must be set to fit terminationGracePeriodSeconds", prefix, prefix)
	} else {
		need := parseDuration(t, drain) + parseDuration(t, shutdown) + shutdownOverhead
		if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace < need {
			t.Errorf("terminationGracePeriodSeconds %s < drain delay + shutdown timeout + %s = %s: in-flight work would be killed", grace, shutdownOverhead, need)
		}
	}
	for _, err := range goMemoryLimit(c, vars) {
		t.Error(err)
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly && m.Name != "tmp" {
			t.Errorf("volume %s is mounted writable", m.Name)
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			if _, ok := secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: Secret %s is not made by create-secrets.sh", v.Name, v.Secret.SecretName)
			}
		}
	}
}

// checkPartitionsBoundProcessing: processing is a consumer group on `hits`;
// a member beyond the partition count gets no partition.
func checkPartitionsBoundProcessing(t *testing.T, b *built) {
	topics := b.configMapByPrefix(t, "analytics-topics")
	partitions, err := strconv.Atoi(topics.Data["HITS_PARTITIONS"])
	if err != nil || partitions < 1 {
		t.Fatalf("HITS_PARTITIONS = %q", topics.Data["HITS_PARTITIONS"])
	}
	hpa, ok := b.hpas["processing"]
	if !ok {
		return
	}
	if int(hpa.Spec.MaxReplicas) > partitions {
		t.Errorf("processing may scale to %d replicas but `hits` has %d partitions", hpa.Spec.MaxReplicas, partitions)
	}
	if int(hpa.Spec.MaxReplicas) != partitions {
		t.Logf("%s: processing scales to %d of %d partitions", b.name, hpa.Spec.MaxReplicas, partitions)
	}
	for _, name := range []string{"collection", "processing"} {
		d, ok := b.deployments[name]
		if !ok {
			continue
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if strings.HasSuffix(e.Name, "_KAFKA_PARTITIONS") && e.Value != strconv.Itoa(partitions) {
				t.Errorf("%s: %s = %s, but `hits` has %d partitions", name, e.Name, e.Value, partitions)
			}
		}
	}
}

// shutdownOverhead is what pkg/service's shutdown takes beyond the drain
// delay and -shutdown-timeout at most: Consul's deregistration (5 s), the
// HTTP drain's last second, and the components' minimum stop (2 s).
const shutdownOverhead = 8 * time.Second

// checkTopics: the production topic settings of docs/operations.md.
func checkTopics(t *testing.T, b *built) {
	d := b.configMapByPrefix(t, "analytics-topics").Data
	num := func(k string) int64 {
		v, err := strconv.ParseInt(d[k], 10, 64)
		if err != nil {
			t.Errorf("analytics-topics %s = %q: %v", k, d[k], err)
		}
		return v
	}
	if rf := num("REPLICATION_FACTOR"); rf != 3 {
		t.Errorf("REPLICATION_FACTOR = %d, want 3", rf)
	}
	if isr := num("MIN_INSYNC_REPLICAS"); isr != 2 {
		t.Errorf("MIN_INSYNC_REPLICAS = %d, want 2", isr)
	}
	week := (7 * 24 * time.Hour).Milliseconds()
	if r := num("HITS_RETENTION_MS"); r < week {
		t.Errorf("HITS_RETENTION_MS = %d: hits must stay replayable for at least 7 days", r)
	}
	if err := retentionWithinOffsetTTLs(t, d["HITS_RETENTION_MS"]); err != nil {
		t.Error(err)
	}
	if r := num("DEAD_LETTER_RETENTION_MS"); r < num("HITS_RETENTION_MS") {
		t.Errorf("dead letters are kept for less time than hits")
	}
	if num("DEAD_LETTER_PARTITIONS") < 1 {
		t.Errorf("DEAD_LETTER_PARTITIONS < 1")
	}
}

// checkMigrate: the keyspace is made by the migrate Job with
// NetworkTopologyStrategy, at least 3 replicas in every data centre, the
// services' local data centre among them.
func checkMigrate(t *testing.T, b *built, secrets map[string][]string, release bool) {
	j, ok := b.jobs["migrate"]
	if !ok {
		t.Fatal("no migrate Job")
	}
	c := j.Spec.Template.Spec.Containers[0]
	if imageBinary(c.Image) != "migrate" {
		t.Errorf("migrate Job runs %s", c.Image)
	}
	if release && imageTag(c.Image) == "" {
		t.Errorf("image %s has no release tag", c.Image)
	}
	values := map[string]string{}
	var names []string
	fromSecret := map[string]bool{}
	for _, e := range c.Env {
		names = append(names, e.Name)
		switch {
		case e.ValueFrom == nil:
			values[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			v, err := b.configMapValue(e.ValueFrom.ConfigMapKeyRef)
			if err != nil {
				t.Errorf("migrate %s: %v", e.Name, err)
			}
			values[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			fromSecret[e.Name] = true
			if keys := secrets[e.ValueFrom.SecretKeyRef.Name]; !slices.Contains(keys, e.ValueFrom.SecretKeyRef.Key) {
				t.Errorf("migrate %s: Secret %s key %s is not made by create-secrets.sh", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	literal := func(n string) (string, bool) { v, ok := values[n]; return v, ok }
	for _, err := range envRules("migrate", names, literal, func(n string) bool { return fromSecret[n] }) {
		t.Error(err)
	}
	dcs, err := ntsReplication(values["MIGRATE_CASSANDRA_REPLICATION"])
	if err != nil {
		t.Fatal(err)
	}
	for dc, n := range dcs {
		if n < 3 {
			t.Errorf("data centre %s has %d replicas, want at least 3 (LOCAL_QUORUM must survive a lost node)", dc, n)
		}
	}
	if local := values["MIGRATE_CASSANDRA_LOCAL_DC"]; dcs[local] == 0 {
		t.Errorf("the services' local data centre %q has no replica in %v", local, dcs)
	}
	if j.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		t.Errorf("a Job's pod must not restart always")
	}
}

func checkTopicsJob(t *testing.T, b *built) {
	j, ok := b.jobs["kafka-topics"]
	if !ok {
		t.Fatal("no kafka-topics Job")
	}
	c := j.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "apache/kafka:") {
		t.Errorf("kafka-topics Job runs %s, want apache/kafka", c.Image)
	}
	script := false
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && strings.HasPrefix(v.ConfigMap.Name, "analytics-kafka-topics-script") {
			cm := b.configMaps[v.ConfigMap.Name]
			script = cm != nil && strings.Contains(cm.Data["create-topics.sh"], "kafka-topics.sh")
		}
	}
	if !script {
		t.Errorf("kafka-topics Job does not mount create-topics.sh")
	}
	for _, e := range j.Spec.Template.Spec.Containers[0].EnvFrom {
		if e.ConfigMapRef == nil || !strings.HasPrefix(e.ConfigMapRef.Name, "analytics-topics") {
			t.Errorf("kafka-topics Job takes its environment from %v", e)
		}
	}
}

// checkNetworkPolicies: ingress is denied by default, and the only rules
// open beyond the product's own pods and the infrastructure namespaces
// (Consul's agents, Prometheus) select the gateway alone.
func checkNetworkPolicies(t *testing.T, b *built) {
	infraNamespaces := []string{"consul", "monitoring"}
	defaultDeny, gatewayOpen := false, false
	for _, p := range b.policies {
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s does not govern ingress", p.Name)
		}
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 && len(p.Spec.Ingress) == 0 {
			defaultDeny = true
		}
		onlyGateway := len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			len(p.Spec.PodSelector.MatchLabels) == 1 && p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] == "gateway"
		for _, r := range p.Spec.Ingress {
			open := len(r.From) == 0
			for _, f := range r.From {
				switch {
				case f.IPBlock != nil:
					open = true
				case f.NamespaceSelector != nil:
					if !selectsOnly(f.NamespaceSelector, infraNamespaces) {
						open = true
					}
				case f.PodSelector != nil:
					if f.PodSelector.MatchLabels["app.kubernetes.io/part-of"] != "acme-analytics" {
						open = true
					}
				}
			}
			if open && !onlyGateway {
				t.Errorf("NetworkPolicy %s opens pods other than the gateway to outside traffic", p.Name)
			}
			if open && onlyGateway {
				gatewayOpen = true
			}
		}
	}
	if !defaultDeny {
		t.Errorf("no default-deny ingress NetworkPolicy")
	}
	if !gatewayOpen {
		t.Errorf("no NetworkPolicy lets outside traffic reach the gateway")
	}
}

// selectsOnly reports whether a namespace selector can only match the named
// namespaces (by their kubernetes.io/metadata.name label).
func selectsOnly(s *metav1.LabelSelector, names []string) bool {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return false
	}
	if n, ok := s.MatchLabels["kubernetes.io/metadata.name"]; ok {
		return slices.Contains(names, n)
	}
	for _, e := range s.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpIn {
			for _, v := range e.Values {
				if !slices.Contains(names, v) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// checkSetupPhase: `kubectl apply -k ... -l analytics.acme.io/phase=setup`
// must create everything the setup Jobs need and nothing that needs them.
func checkSetupPhase(t *testing.T, b *built) {
	const phase = "analytics.acme.io/phase"
	for _, obj := range b.objects {
		m := obj.(metav1.Object)
		if m.GetLabels()[phase] != "setup" {
			continue
		}
		switch obj.(type) {
		case *corev1.Namespace, *corev1.ServiceAccount, *corev1.ConfigMap, *batchv1.Job:
		default:
			t.Errorf("%T %s is in the setup phase", obj, m.GetName())
		}
	}
	if len(b.namespaces) == 1 && b.namespaces[0].Labels[phase] != "setup" {
		t.Errorf("the namespace is not in the setup phase")
	}
	for name, j := range b.jobs {
		if j.Labels[phase] != "setup" {
			t.Errorf("Job %s is not in the setup phase", name)
		}
		spec := j.Spec.Template.Spec
		if sa := b.serviceAccts[spec.ServiceAccountName]; sa == nil || sa.Labels[phase] != "setup" {
			t.Errorf("Job %s: service account %q is not in the setup phase", name, spec.ServiceAccountName)
		}
		var refs []string
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					refs = append(refs, e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					refs = append(refs, e.ConfigMapRef.Name)
				}
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("Job %s: container %s lacks resources", name, c.Name)
			}
		}
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil {
				refs = append(refs, v.ConfigMap.Name)
			}
		}
		for _, r := range refs {
			if cm := b.configMaps[r]; cm == nil || cm.Labels[phase] != "setup" {
				t.Errorf("Job %s: ConfigMap %s is not in the setup phase", name, r)
			}
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("Job %s does not run as non-root", name)
		}
	}
}

// consulToken checks that a workload's Consul ACL token is its own (Secret
// analytics-consul, key name, not optional): Consul runs with ACLs on, and
// a token may register only its own service (consul-tokens.sh).
func consulToken(vars map[string]corev1.EnvVar, name string) error {
	e, ok := vars["CONSUL_HTTP_TOKEN"]
	if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return fmt.Errorf("CONSUL_HTTP_TOKEN is not taken from Secret analytics-consul")
	}
	ref := e.ValueFrom.SecretKeyRef
	if ref.Name != "analytics-consul" || ref.Key != name || ref.Optional != nil && *ref.Optional {
		return fmt.Errorf("CONSUL_HTTP_TOKEN from Secret %s key %s (optional %v); want analytics-consul key %s, required", ref.Name, ref.Key, ref.Optional != nil && *ref.Optional, name)
	}
	return nil
}

// goMemoryLimit checks the Go runtime's memory settings of a container
// against its memory limit. With GOGC above 100 the heap may grow to
// several times what is live, so GOMEMLIMIT must bound it; and GOMEMLIMIT
// counts only the memory the Go runtime manages, not what the kernel
// charges the container beside it (socket buffers, page tables, heap
// fragmentation not yet returned), so at the limit itself the collector
// would start working hard only where the kernel OOM-kills the pod. The Go
// GC guide asks for 5-10% of headroom: GOMEMLIMIT at most 95% of the limit.
func goMemoryLimit(c corev1.Container, vars map[string]corev1.EnvVar) []error {
	lim, ok := c.Resources.Limits[corev1.ResourceMemory]
	gogc, hasGOGC := vars["GOGC"]
	e, hasLimit := vars["GOMEMLIMIT"]
	var errs []error
	if hasGOGC {
		if n, err := strconv.Atoi(gogc.Value); err == nil && n > 100 && !hasLimit {
			errs = append(errs, fmt.Errorf("GOGC=%d without GOMEMLIMIT: the heap may grow to %d times what is live, past the container's memory limit", n, n/100+1))
		}
	}
	if !hasLimit {
		return errs
	}
	if !ok {
		return append(errs, fmt.Errorf("GOMEMLIMIT without a memory limit"))
	}
	// A value such as $(MEMORY_LIMIT_MIB)MiB, the variable taken from the
	// container's own limits.memory.
	v := regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).ReplaceAllStringFunc(e.Value, func(ref string) string {
		r, ok := vars[ref[2:len(ref)-1]]
		if !ok || r.ValueFrom == nil || r.ValueFrom.ResourceFieldRef == nil {
			return ref
		}
		v, err := resourceFieldValue(c, r.ValueFrom.ResourceFieldRef)
		if err != nil {
			return ref
		}
		return v
	})
	m := regexp.MustCompile(`^(\d+)(B|KiB|MiB|GiB|TiB)$`).FindStringSubmatch(v)
	if m == nil {
		return append(errs, fmt.Errorf("GOMEMLIMIT = %q (%q): not a number of B, KiB, MiB, GiB or TiB", e.Value, v))
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	n <<= map[string]int{"B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	if float64(n) > 0.95*float64(lim.Value()) {
		errs = append(errs, fmt.Errorf("GOMEMLIMIT = %s is %.0f%% of the memory limit %s: leave the runtime 5-10%% below it, or the kernel kills the pod before the collector works hard", v, 100*float64(n)/float64(lim.Value()), lim.String()))
	}
	if float64(n) < 0.7*float64(lim.Value()) {
		errs = append(errs, fmt.Errorf("GOMEMLIMIT = %s is only %.0f%% of the memory limit %s: the collector would run hard with memory to spare", v, 100*float64(n)/float64(lim.Value()), lim.String()))
	}
	return errs
}

// offsetKeyedTables are the tables whose rows are read by hits-topic
// offset or alongside replayed hits, kept as long as the topic keeps hits
// (docs/operations.md, the TTLs): processing's records of fallback rules
// versions (migration 13) and marks (migration 24), and config-svc's change feed.
var offsetKeyedTables = []string{"fallback_rule_versions", "fallback_rule_buckets", "processing_marks", "config_changes"}

// retentionWithinOffsetTTLs checks that `hits` keeps no hit longer than the
// TTL of offsetKeyedTables in cql/: a hit replayed after its fallback record
// expired would be derived under another rules version than the first time.
// Raising the retention calls for a migration raising those TTLs first.
func retentionWithinOffsetTTLs(t *testing.T, retentionMS string) error {
	t.Helper()
	ms, err := strconv.ParseInt(retentionMS, 10, 64)
	if err != nil {
		return fmt.Errorf("HITS_RETENTION_MS = %q: %v", retentionMS, err)
	}
	files, err := filepath.Glob(filepath.Join(root(t), "cql", "*.cql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations in cql/: %v", err)
	}
	ttl := map[string]int64{}
	table := regexp.MustCompile(`(?is)CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\)\s*WITH([^;]*);`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range table.FindAllStringSubmatch(string(b), -1) {
			if v := regexp.MustCompile(`default_time_to_live\s*=\s*(\d+)`).FindStringSubmatch(m[3]); v != nil {
				ttl[m[1]], _ = strconv.ParseInt(v[1], 10, 64)
			}
		}
	}
	for _, name := range offsetKeyedTables {
		s, ok := ttl[name]
		switch {
		case !ok:
			return fmt.Errorf("cql/: no default_time_to_live found for table %s", name)
		case ms > s*1000:
			return fmt.Errorf("HITS_RETENTION_MS = %d (%s) outlives table %s's TTL of %s: raise the TTL by a migration first", ms, time.Duration(ms)*time.Millisecond, name, time.Duration(s)*time.Second)
		}
	}
	return nil
}
