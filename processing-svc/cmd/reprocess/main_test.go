package main

import (
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/service"
)

// TestHelpListsOnlyItsFlags: -help shows no flag of a service's Consul
// registration, which the command never does: -consul-addr is only where
// it finds config-svc.
func TestHelpListsOnlyItsFlags(t *testing.T) {
	cfg := &config{}
	fs := service.FlagSet("reprocess", cfg)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	for _, name := range []string{"advertise-host", "consul-check-interval"} {
		if fs.Lookup(name) != nil {
			t.Errorf("-%s is registered: the command never registers in Consul", name)
		}
	}
	if got := b.String(); strings.Contains(got, "do not register") || !strings.Contains(got, "finds config-svc") {
		t.Errorf("-help:\n%s\nwant -consul-addr, described as where the command finds config-svc", got)
	}
}
