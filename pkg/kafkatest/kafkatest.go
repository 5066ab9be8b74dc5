// Package kafkatest starts an in-process Kafka-protocol cluster (kfake) for
// tests. Clients talk to it over loopback exactly as they would to a real
// broker, so the sarama code under test is the production code.
package kafkatest

import (
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// HoldProduce makes the cluster take every produce request (of topics, or
// of any topic when none is given) and not answer it until release is
// called: a broker that stopped answering. hung is closed when the first
// such request arrives. The test's cleanup releases them, before the
// cluster's Close, which waits for them; a cleanup that waits for a client
// blocked on them must call release first.
func (c *Cluster) HoldProduce(t testing.TB, topics ...string) (hung <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	release = func() { releaseOnce.Do(func() { close(r) }) }
	t.Cleanup(release)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range kreq.(*kmsg.ProduceRequest).Topics {
			if len(topics) == 0 || slices.Contains(topics, rt.Topic) {
				once.Do(func() { close(h) })
				c.SleepControl(func() { <-r })
				break
			}
		}
		return nil, nil, false
	})
	return h, release
}
