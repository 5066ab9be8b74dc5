package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
	"github.com/acme/analytics/processing-svc/internal/reprocess"
)

// pages lists property IDs as config-svc's pages would, two a page.
type pages []string

func (p pages) PropertyIDs(_ context.Context, after string, limit int) (*configclient.PropertyList, error) {
	start := 0
	if after != "" {
		fmt.Sscan(after, &start)
	}
	end := min(start+2, len(p))
	out := &configclient.PropertyList{PropertyIDs: p[start:end]}
	if end < len(p) {
		out.NextAfter = fmt.Sprint(end)
	}
	return out, nil
}

// A run over every property runs each listed property's job, says so
// line by line, and when continued (-run) does nothing twice; a property
// deleted since it was listed is said so, not a failure (a run continued
// would not list it: the exit status 1 and its "continue with -run" could
// never be answered).
func TestRunEvery(t *testing.T) {
	ctx := context.Background()
	s, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ids := pages{"3f1c9a52-3333-4e4e-9a9a-000000000011", "3f1c9a52-3333-4e4e-9a9a-000000000012", "3f1c9a52-3333-4e4e-9a9a-000000000013"}
	var props enginetest.Properties
	day := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, id := range ids[:2] { // the third is not a property (deleted since it was listed)
		p, err := enginetest.Property(id, rules.Defaults())
		if err != nil {
			t.Fatal(err)
		}
		props = append(props, p)
		h := &hit.Hit{PropertyID: id, ClientID: "c1", Type: hit.TypePageview, Time: day, ReceivedAt: day, Path: "/"}
		h.ID = h.DeriveID("1")
		b, _ := hit.Marshal(h)
		part := engine.New(engine.Config{Topic: "hits", Session: s, Properties: props})
		if err := part.Apply(ctx, []engine.Message{{Offset: 1, Value: b}}); err != nil {
			t.Fatal(err)
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := &reprocess.Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	cfg := config{Property: allProperties, From: "2026-03-01", To: "2026-03-02", Rules: string(engine.RulesHistorical), Parallel: 2, Slice: "0/1"}
	if err := cfg.validateEvery(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err = runEvery(ctx, cfg, r, ids, &out)
	begun := strings.TrimSuffix(strings.SplitN(strings.SplitN(out.String(), "-run=", 2)[1], ")", 2)[0], ")")
	if err != nil {
		t.Fatalf("run: %v; want no failure (a property deleted since it was listed has nothing to do)", err)
	}
	for _, want := range []string{"property " + ids[0] + ": job ", "property " + ids[1] + ": job ", ": done, 2 of 2 days", "property " + ids[2] + ": deleted since it was listed: nothing to do", "2 done, 0 done earlier in this run, 1 deleted, 0 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	cfg.Run = begun
	out.Reset()
	if err := runEvery(ctx, cfg, r, ids[:2], &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Count(got, "done earlier in this run (job ") != 2 || !strings.Contains(got, "0 done, 2 done earlier in this run, 0 deleted, 0 failed") {
		t.Errorf("the run continued:\n%s\nwant both properties done earlier", got)
	}
}

// Every property is in exactly one slice; the flags of a run over every
// property are checked.
func TestEveryFlags(t *testing.T) {
	for _, id := range []string{"3f1c9a52-3333-4e4e-9a9a-000000000011", "a", ""} {
		in := 0
		for i := range uint32(5) {
			if inSlice(id, i, 5) {
				in++
			}
		}
		if in != 1 {
			t.Errorf("%q is in %d of 5 slices", id, in)
		}
	}
	ok := config{Property: allProperties, From: "2026-03-01", To: "2026-03-02", Rules: "historical", Parallel: 1, Slice: "0/1"}
	for _, tc := range []struct {
		name string
		mod  func(*config)
		want string
	}{
		{"today's rules", func(c *config) { c.Rules = "current" }, "rules of the time"},
		{"a job", func(c *config) { c.Job = "x" }, "-run"},
		{"no parallelism", func(c *config) { c.Parallel = 0 }, "-parallel 0"},
		{"too much parallelism", func(c *config) { c.Parallel = 33 }, "want 1 to 32"},
		{"a slice past n", func(c *config) { c.Slice = "4/4" }, "0 <= i < n"},
		{"a slice not i/n", func(c *config) { c.Slice = "2" }, "i/n"},
		{"a run not a time", func(c *config) { c.Run = "yesterday" }, "RFC 3339"},
		// It would own no job: every property was done again.
		{"a run in the future", func(c *config) { c.Run = time.Now().Add(365 * 24 * time.Hour).Format(time.RFC3339) }, "is in the future"},
		{"a slice for one property", func(c *config) { c.Property = "p"; c.Slice = "1/2" }, "go with -property=all"},
	} {
		c := ok
		tc.mod(&c)
		if err := c.validateEvery(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if err := ok.validateEvery(); err != nil {
		t.Errorf("valid flags: %v", err)
	}
}

// failingList is config-svc not answering the list.
type failingList struct{}

func (failingList) PropertyIDs(context.Context, string, int) (*configclient.PropertyList, error) {
	return nil, errors.New("list the properties: config-svc unavailable")
}

// A command of a slice says to continue with its slice: -run alone would
// take every slice's properties, those the other commands run included.
func TestRunEveryContinuesItsSlice(t *testing.T) {
	r := &reprocess.Runner{Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	cfg := config{Property: allProperties, From: "2026-03-01", To: "2026-03-02", Rules: string(engine.RulesHistorical), Parallel: 1, Slice: "1/4"}
	var out strings.Builder
	err := runEvery(context.Background(), cfg, r, failingList{}, &out)
	const want = "-slice=1/4 -run=2026-03-10T00:00:00Z"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(out.String(), want) {
		t.Errorf("run: %v\n%s\nwant both to say to continue with %s", err, out.String(), want)
	}
}

// cancelledList is the list's request cut short by the command stopping.
type cancelledList struct{}

func (cancelledList) PropertyIDs(ctx context.Context, _ string, _ int) (*configclient.PropertyList, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("list the properties: %w", ctx.Err())
}

// A command stopped (SIGTERM) while it read a page says it was stopped,
// not that config-svc failed the list and that what it listed was run.
func TestRunEveryStoppedWhileListing(t *testing.T) {
	r := &reprocess.Runner{Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	cfg := config{Property: allProperties, From: "2026-03-01", To: "2026-03-02", Rules: string(engine.RulesHistorical), Parallel: 1, Slice: "0/1"}
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(errors.New("terminated")) })
	err := runEvery(ctx, cfg, r, cancelledList{}, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "stopped (terminated): continue with -run=") {
		t.Errorf("run: %v; want it stopped, and how to continue", err)
	}
}
