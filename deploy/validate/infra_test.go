package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// infraDocs returns the operators' resources of deploy/k8s/infra by kind.
func infraDocs(t *testing.T) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, f := range []string{"kafka/kafka.yaml", "cassandra/cassandra-datacenter.yaml"} {
		b, err := os.ReadFile(filepath.Join(root(t), "deploy", "k8s", "infra", f))
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitYAML(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			var m map[string]any
			if err := yaml.Unmarshal(d, &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			kind, _ := m["kind"].(string)
			out[kind] = append(out[kind], m)
		}
	}
	return out
}

// at walks a decoded YAML tree along keys.
func at(m any, path ...string) any {
	for _, k := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// TestInfrastructure checks the settings the product relies on in the
// operators' resources and the Consul chart values: KRaft controllers,
// three brokers in three zones with replication 3 and min.insync.replicas
// 2, no automatic topics; three Cassandra nodes in three racks with
// authentication; Consul servers plus client agents (the services register
// through the agent of their node).
func TestInfrastructure(t *testing.T) {
	docs := infraDocs(t)

	brokers, controllers := 0, 0
	for _, p := range docs["KafkaNodePool"] {
		if at(p, "metadata", "labels", "strimzi.io/cluster") != "analytics" {
			t.Errorf("KafkaNodePool %v is not part of cluster analytics", at(p, "metadata", "name"))
		}
		replicas, _ := at(p, "spec", "replicas").(float64)
		roles, _ := at(p, "spec", "roles").([]any)
		for _, r := range roles {
			switch r {
			case "broker":
				brokers += int(replicas)
			case "controller":
				controllers += int(replicas)
			}
		}
	}
	if brokers < 3 || controllers < 3 || controllers%2 == 0 {
		t.Errorf("Kafka has %d brokers and %d KRaft controllers; want at least 3 brokers and an odd quorum of at least 3", brokers, controllers)
	}
	if len(docs["Kafka"]) != 1 {
		t.Fatalf("want one Kafka resource, got %d", len(docs["Kafka"]))
	}
	k := docs["Kafka"][0]
	if at(k, "metadata", "name") != "analytics" {
		t.Errorf("the Kafka cluster must be named analytics (its bootstrap Service is in analytics-infra)")
	}
	want := map[string]string{
		"default.replication.factor":               "3",
		"min.insync.replicas":                      "2",
		"offsets.topic.replication.factor":         "3",
		"transaction.state.log.replication.factor": "3",
		"transaction.state.log.min.isr":            "2",
		"auto.create.topics.enable":                "false",
		"unclean.leader.election.enable":           "false",
	}
	for key, v := range want {
		if got := str(at(k, "spec", "kafka", "config", key)); got != v {
			t.Errorf("Kafka config %s = %q, want %q", key, got, v)
		}
	}
	if str(at(k, "spec", "kafka", "rack", "topologyKey")) != "topology.kubernetes.io/zone" {
		t.Errorf("Kafka brokers are not rack-aware by zone")
	}
	if at(k, "spec", "kafkaExporter") == nil {
		t.Errorf("no Kafka Exporter: the processing group's lag would not be measured")
	}

	if len(docs["CassandraDatacenter"]) != 1 {
		t.Fatalf("want one CassandraDatacenter, got %d", len(docs["CassandraDatacenter"]))
	}
	dc := docs["CassandraDatacenter"][0]
	size, _ := at(dc, "spec", "size").(float64)
	racks, _ := at(dc, "spec", "racks").([]any)
	if size < 3 || len(racks) < 3 || int(size)%len(racks) != 0 {
		t.Errorf("Cassandra has %v nodes in %d racks; want at least 3 nodes spread evenly over at least 3 racks", size, len(racks))
	}
	if at(dc, "spec", "clusterName") != "analytics" || at(dc, "metadata", "name") != "dc1" {
		t.Errorf("cluster analytics, data centre dc1 are what analytics-infra points at")
	}
	if str(at(dc, "spec", "config", "cassandra-yaml", "authenticator")) != "PasswordAuthenticator" {
		t.Errorf("Cassandra accepts unauthenticated clients")
	}

	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "k8s", "infra", "consul", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(b, &values); err != nil {
		t.Fatalf("consul values: %v", err)
	}
	if n, _ := at(values, "server", "replicas").(float64); n < 3 || int(n)%2 == 0 {
		t.Errorf("Consul has %v servers; want an odd number, at least 3", n)
	}
	if at(values, "client", "enabled") != true {
		t.Errorf("Consul client agents are off; the services register through $(HOST_IP):8500")
	}
	if at(values, "global", "acls", "manageSystemACLs") != true {
		t.Errorf("Consul runs without ACLs: any pod reaching an agent could register as config-svc")
	}
}

// TestVersionsAgree: compose and Kubernetes run the same releases of Kafka,
// Cassandra and Consul, and Consul's is the one the tests run
// (deploy/tools/consul).
func TestVersionsAgree(t *testing.T) {
	p := loadCompose(t, composeEnv)
	image := func(svc string) string { return p.Services[svc].Image }

	kafkaTag := imageTag(image("kafka"))
	if image("kafka-topics") != image("kafka") {
		t.Errorf("compose: kafka-topics runs %s, the broker %s", image("kafka-topics"), image("kafka"))
	}
	docs := infraDocs(t)
	if v := str(at(docs["Kafka"][0], "spec", "kafka", "version")); v != kafkaTag {
		t.Errorf("Strimzi runs Kafka %s, compose %s", v, kafkaTag)
	}
	b := build(t, filepath.Join(root(t), "deploy", "k8s", "base"))
	if img := b.jobs["kafka-topics"].Spec.Template.Spec.Containers[0].Image; img != image("kafka") {
		t.Errorf("the kafka-topics Job runs %s, compose %s", img, image("kafka"))
	}
	if v := str(at(docs["CassandraDatacenter"][0], "spec", "serverVersion")); v != imageTag(image("cassandra")) {
		t.Errorf("cass-operator runs Cassandra %s, compose %s", v, image("cassandra"))
	}

	vb, err := os.ReadFile(filepath.Join(root(t), "deploy", "k8s", "infra", "consul", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(vb, &values); err != nil {
		t.Fatal(err)
	}
	if v := str(at(values, "global", "image")); v != image("consul") {
		t.Errorf("the Consul chart runs %s, compose %s", v, image("consul"))
	}
	gomod, err := os.ReadFile(filepath.Join(root(t), "deploy", "tools", "consul", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/hashicorp/consul v(\S+)`).FindSubmatch(gomod)
	if m == nil || !strings.HasSuffix(image("consul"), ":"+string(m[1])) {
		t.Errorf("compose runs %s; the tests and the local stack run Consul %s (deploy/tools/consul)", image("consul"), m[1])
	}
}
