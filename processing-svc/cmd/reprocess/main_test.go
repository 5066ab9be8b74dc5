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

// TestRangeCheckedBeforeAnyRun: a range no job takes (in the wrong
// order, over 366 days) is refused by the flags' check, -check-config
// included, for one property and for every property alike. With
// -property=all it was checked only by each property's job: the command
// listed every property and failed each, one by one.
func TestRangeCheckedBeforeAnyRun(t *testing.T) {
	for _, property := range []string{allProperties, "3f1c9a52-3333-4e4e-9a9a-000000000011"} {
		for _, tc := range []struct{ from, to, want string }{
			{"2026-03-02", "2026-03-01", "ends (2026-03-01) before it starts"},
			{"2024-01-01", "2026-03-01", "at most 366 days"},
			{"2026-03-01", "2026-03-02", ""},
		} {
			cfg := &config{}
			fs := service.FlagSet("reprocess", cfg)
			if err := fs.Parse([]string{"-identity-secret=0123456789abcdef", "-config-svc-url=http://127.0.0.1:1",
				"-property=" + property, "-from=" + tc.from, "-to=" + tc.to}); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("-property=%s -from=%s -to=%s: %v; want %q", property, tc.from, tc.to, err, tc.want)
			}
		}
	}
	// Resuming a job takes its own range: the flags' are not checked.
	cfg := &config{}
	fs := service.FlagSet("reprocess", cfg)
	if err := fs.Parse([]string{"-identity-secret=0123456789abcdef", "-config-svc-url=http://127.0.0.1:1",
		"-property=3f1c9a52-3333-4e4e-9a9a-000000000011", "-job=j", "-from=2026-03-02", "-to=2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("-job with the flags of another range: %v", err)
	}
}
