// Package kafkatest starts an in-process Kafka-protocol cluster (kfake) for
// tests. Clients talk to it over loopback exactly as they would to a real
// broker, so the sarama code under test is the production code.
package kafkatest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a running in-process cluster.
type Cluster struct {
	*kfake.Cluster
}

// Start starts a single-broker cluster on a free loopback port and closes it
// when the test ends. Extra kfake options (seed topics, a data directory...)
// are passed through.
func Start(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(0)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return &Cluster{c}
}

// Brokers returns the bootstrap addresses.
func (c *Cluster) Brokers() []string { return c.ListenAddrs() }
