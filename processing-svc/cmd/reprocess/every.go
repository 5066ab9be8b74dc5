package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/reprocess"
)

// everyCacheIdleTTL bounds -config-cache-idle-ttl in a run over every
// property, so that the config client's cache holds the properties of
// the last minutes, not every property the run has done (each a document
// with its compiled rules and its rule history).
const everyCacheIdleTTL = 10 * time.Minute

// maxParallel bounds -parallel: each job holds its range's users in
// memory, and a run shares among pods (-slice) rather than crowd one.
const maxParallel = 32

// propertiesPage is how many properties' IDs one request to config-svc
// lists (its most).
const propertiesPage = 1000

// validateEvery checks the flags of a run over every property.
func (c *config) validateEvery() error {
	if c.Property != allProperties {
		if c.Parallel != 1 || c.Slice != "0/1" || c.Run != "" {
			return errors.New("-parallel, -slice and -run go with -property=all")
		}
		return nil
	}
	switch {
	case c.Job != "":
		return errors.New("-job resumes one property's job; to continue a run over every property, give -run")
	case c.rules() != engine.RulesHistorical:
		return errors.New("-property=all applies the rules of the time (-rules historical), as after a change to processing's logic; " +
			"today's rules over the past are each merchant's decision: run those property by property")
	case c.Parallel < 1 || c.Parallel > maxParallel:
		return fmt.Errorf("-parallel %d: want 1 to %d (each job holds its range's users in memory; share a run among more commands with -slice)", c.Parallel, maxParallel)
	}
	if _, _, err := parseSlice(c.Slice); err != nil {
		return err
	}
	if _, err := c.runSince(time.Now()); err != nil {
		return err
	}
	return nil
}

// parseSlice reads -slice, i/n.
func parseSlice(v string) (i, n uint32, err error) {
	a, b, ok := strings.Cut(v, "/")
	x, errI := strconv.ParseUint(a, 10, 32)
	y, errN := strconv.ParseUint(b, 10, 32)
	if !ok || errI != nil || errN != nil || y == 0 || x >= y {
		return 0, 0, fmt.Errorf("-slice %q: want i/n with 0 <= i < n, e.g. 0/4", v)
	}
	return uint32(x), uint32(y), nil
}

// inSlice reports whether a property is in slice i of n.
func inSlice(propertyID string, i, n uint32) bool {
	h := fnv.New32a()
	h.Write([]byte(propertyID))
	return h.Sum32()%n == i
}

// runSince is the start of the run: -run, or now for a new one (the jobs'
// clock: they record when they were made by it).
func (c *config) runSince(now time.Time) (time.Time, error) {
	if c.Run == "" {
		return now.UTC().Truncate(time.Millisecond), nil
	}
	t, err := time.Parse(time.RFC3339Nano, c.Run)
	if err != nil {
		return time.Time{}, fmt.Errorf("-run %q: want the time the run printed at its start (RFC 3339, e.g. 2026-12-06T15:04:05.123Z)", c.Run)
	}
	// A run begun later than now (a typo in its year, say) would own no
	// job, so every property would be done again: refused, allowing for
	// the clocks of the pods that ran it.
	if t.After(now.Add(runClockSkew)) {
		return time.Time{}, fmt.Errorf("-run %s is in the future (it is %s): want the time the run printed at its start", c.Run, now.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// runClockSkew is how far ahead of this command's clock -run may be: the
// clocks of the commands of one run, on other hosts, differ a little.
const runClockSkew = 5 * time.Minute

// propertyLister is what runEvery needs of configclient.Client.
type propertyLister interface {
	PropertyIDs(ctx context.Context, after string, limit int) (*configclient.PropertyList, error)
}

// runEvery reprocesses every property of the slice (Runner.Every) and says
// what it did with each on out, then how many it did.
func runEvery(ctx context.Context, cfg config, r *reprocess.Runner, list propertyLister, out io.Writer) error {
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	since, err := cfg.runSince(now)
	if err != nil {
		return err
	}
	i, n, _ := parseSlice(cfg.Slice)
	// How to continue: a slice's command with its slice (-run alone would
	// take every slice's properties, those other commands run included).
	cont := "-run=" + since.Format(time.RFC3339Nano)
	if n > 1 {
		cont = fmt.Sprintf("-slice=%d/%d %s", i, n, cont)
	}
	fmt.Fprintf(out, "every property (slice %d/%d): %s to %s with the rules of the time, %d at a time; run begun %s (continue it with %s)\n",
		i, n, cfg.From, cfg.To, cfg.Parallel, since.Format(time.RFC3339Nano), cont)
	ids := make(chan string)
	listed := make(chan error, 1)
	go func() {
		defer close(ids)
		listed <- listProperties(ctx, list, i, n, ids)
	}()
	var done, earlier, deleted int
	var failed []string
	r.Every(ctx, ids, cfg.From, cfg.To, since, cfg.Parallel, func(o reprocess.Outcome) {
		switch {
		case o.Deleted:
			deleted++
			job := ""
			if o.Job != nil {
				job = " (job " + o.Job.ID + " stopped)"
			}
			fmt.Fprintf(out, "property %s: deleted since it was listed%s: nothing to do\n", o.PropertyID, job)
		case o.Err != nil:
			failed = append(failed, o.PropertyID)
			job := ""
			if o.Job != nil {
				job = " (job " + o.Job.ID + ")"
			}
			fmt.Fprintf(out, "property %s: failed%s: %v\n", o.PropertyID, job, o.Err)
		case o.Earlier:
			earlier++
			fmt.Fprintf(out, "property %s: done earlier in this run (job %s)\n", o.PropertyID, o.Job.ID)
		default:
			done++
			fmt.Fprintf(out, "property %s: job %s: %s, %d of %d days\n", o.PropertyID, o.Job.ID, o.Job.Status, o.Job.DaysDone, o.Job.DaysTotal)
			printPastRange(out, o.Job)
		}
	})
	listErr := <-listed
	fmt.Fprintf(out, "every property (slice %d/%d): %d done, %d done earlier in this run, %d deleted, %d failed\n", i, n, done, earlier, deleted, len(failed))
	switch {
	case ctx.Err() != nil: // before listErr: a page's request it cut short
		return fmt.Errorf("stopped (%w): continue with %s", context.Cause(ctx), cont)
	case listErr != nil:
		return fmt.Errorf("%w; the properties listed so far were run: continue with %s", listErr, cont)
	case len(failed) > 0:
		named := failed[:min(len(failed), 10)]
		if len(failed) > len(named) {
			named = append(named, "...")
		}
		return fmt.Errorf("%d properties failed (%s: above): continue with %s, which runs them again and skips the others",
			len(failed), strings.Join(named, ", "), cont)
	}
	return nil
}

// listProperties sends the IDs of every property of slice i of n to ids,
// a page of config-svc's list at a time.
func listProperties(ctx context.Context, list propertyLister, i, n uint32, ids chan<- string) error {
	after := ""
	for {
		page, err := list.PropertyIDs(ctx, after, propertiesPage)
		if err != nil {
			return err
		}
		for _, id := range page.PropertyIDs {
			if !inSlice(id, i, n) {
				continue
			}
			select {
			case ids <- id:
			case <-ctx.Done():
				return nil
			}
		}
		if after = page.NextAfter; after == "" {
			return nil
		}
	}
}
