// Command reprocess re-derives a property's sessions, pageviews, events and
// rollups for a range of days from the raw hit archive, with the rules of
// the time or today's rules, while live processing goes on. It records the
// job in Cassandra, prints progress, and resumes an interrupted job with
// -job. With -property=all it does so for every property, with the rules of
// the time (every.go). docs/processing.md ("Reprocessing") describes what
// it does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/discovery"
	"github.com/acme/analytics/pkg/service"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/reprocess"
)

type config struct {
	Cassandra      cassandra.Config
	ConfigSvc      configclient.Config
	Discovery      discovery.Config
	IdentitySecret string
	Property       string
	From, To       string
	Rules          string
	Job            string
	// With Property "all" (every.go):
	Parallel int
	Slice    string
	Run      string
}

// allProperties is the -property that runs every property (every.go).
const allProperties = "all"

func (c *config) RegisterFlags(fs *flag.FlagSet) {
	c.Cassandra.RegisterFlags(fs)
	c.ConfigSvc.RegisterFlags(fs)
	c.Discovery.RegisterLookupFlags(fs, "Consul agent HTTP address, where the command finds config-svc when -config-svc-url is empty")
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "shared secret of internal calls to config-svc (required)")
	fs.StringVar(&c.Property, "property", "", "property ID (required), or all: every property, with the rules of the time (after a change to processing's logic)")
	fs.StringVar(&c.From, "from", "", "first property-local day, YYYY-MM-DD")
	fs.StringVar(&c.To, "to", "", "last property-local day, YYYY-MM-DD (at most two days ago)")
	fs.StringVar(&c.Rules, "rules", "", "historical (when not given): the rules in effect when each hit was received; current: today's rules")
	fs.StringVar(&c.Job, "job", "", "resume this job ID instead of starting a new one")
	fs.IntVar(&c.Parallel, "parallel", 1, "with -property=all: jobs run at once (each holds its range's users in memory, about 100 bytes each)")
	fs.StringVar(&c.Slice, "slice", "0/1", "with -property=all: i/n takes only the properties whose ID hashes to i of n, so that n commands share the properties")
	fs.StringVar(&c.Run, "run", "", "with -property=all: continue the run begun at this time (RFC 3339, as it printed at its start): what its jobs did is not done again")
}

func (c *config) Validate() error {
	for _, v := range []func() error{c.Cassandra.Validate, c.Discovery.Validate} {
		if err := v(); err != nil {
			return err
		}
	}
	switch {
	case len(c.IdentitySecret) < 16:
		return errors.New("-identity-secret must be at least 16 bytes")
	case c.Property == "":
		return errors.New("-property is required")
	case c.Job == "" && (c.From == "" || c.To == ""):
		return errors.New("-from and -to are required (or -job to resume)")
	case c.ConfigSvc.BaseURL == "" && !c.Discovery.Enabled():
		return errors.New("give -config-svc-url or a Consul agent (-consul-addr) to find config-svc")
	}
	if mode := c.rules(); mode != engine.RulesHistorical && mode != engine.RulesCurrent {
		return fmt.Errorf("-rules %q: want %s or %s", c.Rules, engine.RulesHistorical, engine.RulesCurrent)
	}
	if err := c.validateEvery(); err != nil {
		return err
	}
	for _, day := range []struct{ flag, value string }{{"from", c.From}, {"to", c.To}} {
		if _, err := time.Parse(time.DateOnly, day.value); day.value != "" && err != nil {
			return fmt.Errorf("-%s %q is not a day, YYYY-MM-DD", day.flag, day.value)
		}
	}
	// The range as a job checks it, before anything runs: with
	// -property=all a range no job takes failed every property, one by
	// one, after listing them all.
	if c.Job == "" {
		if err := reprocess.CheckRange(c.From, c.To); err != nil {
			return fmt.Errorf("-from %s -to %s: %w", c.From, c.To, err)
		}
	}
	if c.ConfigSvc.BaseURL != "" {
		// Only the URL is checked here; run sets the rest.
		cc := c.ConfigSvc
		cc.Caller, cc.IdentitySecret = "reprocess", []byte(c.IdentitySecret)
		if err := cc.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// rules is -rules, historical when not given.
func (c *config) rules() engine.RulesMode {
	if c.Rules == "" {
		return engine.RulesHistorical
	}
	return engine.RulesMode(c.Rules)
}

// sameJob refuses to resume -job when -from, -to or -rules, given, differ
// from the job's: a job keeps the range and rules it was made with, and
// -job -rules=current resumed a job of the rules of the time as such, as
// if that were what was asked (the API refuses such a body likewise).
func (c *config) sameJob(ctx context.Context, r *reprocess.Runner) error {
	j, err := r.Get(ctx, c.Property, c.Job)
	if err != nil {
		return err
	}
	for _, f := range []struct{ flag, given, job string }{{"from", c.From, j.From}, {"to", c.To, j.To}, {"rules", c.Rules, string(j.Rules)}} {
		if f.given != "" && f.given != f.job {
			return fmt.Errorf("-%s %s: job %s has %s; a job keeps the range and rules it was made with (leave -%s out, or make a new job)", f.flag, f.given, j.ID, f.job, f.flag)
		}
	}
	return nil
}

func main() {
	var cfg config
	service.Main("reprocess", "REPROCESS", &cfg, func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// One attempt, unlike the services (cassandra.ConnectRetry): a
	// command's caller, its Job or a person, retries it and wants to see
	// an outage at once.
	session, err := cassandra.Connect(&cfg.Cassandra)
	if err != nil {
		return err
	}
	defer session.Close()
	cc := cfg.ConfigSvc
	cc.Caller, cc.IdentitySecret, cc.Log = "reprocess", []byte(cfg.IdentitySecret), log
	if err := cc.Locate(&cfg.Discovery); err != nil {
		return err
	}
	every := cfg.Property == allProperties
	if every {
		// Each property's document and rule history stay cached after
		// its job (a job reads them afresh anyway): the cache would hold
		// every property of the run. The sweeper drops them.
		cc.IdleTTL = min(cc.IdleTTL, everyCacheIdleTTL)
	}
	configs, err := configclient.New(cc)
	if err != nil {
		return err
	}
	if cc.BaseURL == "" || every {
		// Lookups need config-svc's instances from Consul; the sweeper
		// of a run over every property runs with it.
		go func() { _ = configs.Run(ctx) }()
	}
	r := &reprocess.Runner{Session: session, Properties: &engine.ConfigProperties{Client: configs, Fresh: true}, Log: log}
	if every {
		r.MaxRunning = cfg.Parallel
		return runEvery(ctx, cfg, r, configs, os.Stdout)
	}
	job := cfg.Job
	if job == "" {
		j, err := r.Create(ctx, cfg.Property, cfg.From, cfg.To, cfg.rules())
		if err != nil {
			return err
		}
		job = j.ID
		fmt.Printf("job %s: %s to %s with the %s rules (%s)\n", j.ID, j.From, j.To, j.Rules, days(j.DaysTotal))
	} else if err := cfg.sameJob(ctx, r); err != nil {
		return err
	}
	done, err := r.Start(ctx, cfg.Property, job)
	if err != nil {
		return err
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			j, gerr := r.Get(context.WithoutCancel(ctx), cfg.Property, job)
			if gerr == nil {
				fmt.Printf("job %s: %s, %d of %d days\n", job, j.Status, j.DaysDone, j.DaysTotal)
				printPastRange(os.Stdout, j)
			}
			if err != nil {
				return fmt.Errorf("%w (resume with -job %s)", err, job)
			}
			return nil
		case <-tick.C:
			if j, err := r.Get(ctx, cfg.Property, job); err == nil {
				fmt.Printf("job %s: %d of %d days\n", job, j.DaysDone, j.DaysTotal)
			}
		}
	}
}

// printPastRange says, for a job that moved users' first sessions across
// the end of its range, through which day to reprocess next.
func printPastRange(w io.Writer, j *reprocess.Job) {
	if j.UsersPastRange > 0 {
		fmt.Fprintf(w, "job %s: moved the first session of %d users across the end of its range; the days after it count them new as before: reprocess through %s\n",
			j.ID, j.UsersPastRange, j.ReprocessThrough)
	}
}

// days says n days, "1 day" for one.
func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
