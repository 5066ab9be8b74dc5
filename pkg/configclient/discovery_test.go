package configclient

import (
	"context"
	"testing"

	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/hashicorp/consul/api"
)

// TestAskingConsulBeforeTheWatchStoresNothing: until discovery.Watch has
// answered, a request finds config-svc by asking Consul itself, and uses
// what it finds for itself only. It stored it once, which could replace a
// list the watch had stored meanwhile (its panic routing's instances, when
// none passes its checks) with an older one, for as long as the watch's
// list did not change.
func TestAskingConsulBeforeTheWatchStoresNothing(t *testing.T) {
	agent := consultest.Start(t)
	consul := agent.Client()
	if err := consul.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "config-1", Name: "config", Address: "127.0.0.1", Port: 7001}); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Consul: consul, Service: "config", Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	url, err := c.baseURL(context.Background())
	if err != nil || url != "http://127.0.0.1:7001" {
		t.Fatalf("before the watch answered: %q, %v; want the instance Consul lists", url, err)
	}
	if p := c.instances.Load(); p != nil {
		t.Fatalf("a request stored the instances it found (%v): only the watch may", *p)
	}

	// The watch's list, whatever it holds, is what requests use.
	c.setInstances([]discovery.Instance{{ID: "config-2", Addr: "127.0.0.1:7002", Failing: true}})
	if url, err := c.baseURL(context.Background()); err != nil || url != "http://127.0.0.1:7002" {
		t.Fatalf("after the watch answered: %q, %v; want its instance", url, err)
	}
}
