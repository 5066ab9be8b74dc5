package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
	"github.com/acme/analytics/processing-svc/internal/reprocess"
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

// TestResumeKeepsTheJob: -job with -from, -to or -rules other than the
// job's is refused, saying which; the same values, or none, resume it.
// -job -rules=current resumed a job of the rules of the time as such.
func TestResumeKeepsTheJob(t *testing.T) {
	ctx := context.Background()
	s, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	const id = "3f1c9a52-3333-4e4e-9a9a-000000000011"
	p, err := enginetest.Property(id, rules.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	r := &reprocess.Runner{Session: s, Properties: enginetest.Properties{p}, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	j, err := r.Create(ctx, id, "2026-03-01", "2026-03-02", engine.RulesHistorical)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to, rules, want string
	}{
		{"", "", "", ""},
		{"2026-03-01", "2026-03-02", "historical", ""},
		{"", "", "current", "-rules current: job " + j.ID + " has historical"},
		{"2026-02-28", "", "", "-from 2026-02-28: job " + j.ID + " has 2026-03-01"},
		{"", "2026-03-03", "", "-to 2026-03-03"},
	} {
		cfg := config{Property: id, Job: j.ID, From: c.from, To: c.to, Rules: c.rules}
		err := cfg.sameJob(ctx, r)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("-from=%q -to=%q -rules=%q: %v; want %q", c.from, c.to, c.rules, err, c.want)
		}
	}
}
