package reprocess

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/acme/analytics/processing-svc/internal/engine"
)

// Outcome is what a run over many properties (Every) did with one.
type Outcome struct {
	PropertyID string
	// Job is the property's job as it ended, nil when none could be made
	// (Err says why).
	Job *Job
	// Earlier: a job of the run had already done the property (a run
	// continued), so nothing was run.
	Earlier bool
	// Deleted: config-svc no longer knows the property (it was deleted
	// since it was listed, or during its job, which then failed saying
	// so): there is nothing to reprocess, and a run continued will not
	// list it again. Not a failure: Err is nil.
	Deleted bool
	Err     error
}

// Every reprocesses the days from..to ("2006-01-02", inclusive) of each
// property ids yields, until it is closed or ctx ends, with the rules in
// effect when each hit was received: what a change to processing's logic
// asks of every property (reprocess -property=all). It runs up to parallel
// jobs at once and hands each property's outcome to report (from one
// goroutine at a time) as it ends.
//
// The properties are one run, begun at since, which their jobs record: a
// property that a job of the same range made since then (with the rules
// of the time) has done is not done again, and one whose such job did not
// finish (the run stopped, the job failed) gets that job resumed rather
// than a new one, once the lease of a run of it that was killed has
// expired (awaitLease). So the same run, given the same since, continues where
// it stopped; a run with a later since does every property again.
func (r *Runner) Every(ctx context.Context, ids <-chan string, from, to string, since time.Time, parallel int, report func(Outcome)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range max(parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var id string
				var ok bool
				select {
				case id, ok = <-ids:
				case <-ctx.Done():
				}
				if !ok {
					return
				}
				o := r.runFor(ctx, id, from, to, since)
				mu.Lock()
				report(o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// runFor runs (or finds done, or resumes) the job of a run begun at since
// over from..to for one property (Every).
func (r *Runner) runFor(ctx context.Context, propertyID, from, to string, since time.Time) Outcome {
	o := r.runOrFind(ctx, propertyID, from, to, since)
	if errors.Is(o.Err, engine.ErrUnknownProperty) {
		o.Deleted, o.Err = true, nil
	}
	return o
}

// runOrFind is runFor, a deleted property's outcome its error.
func (r *Runner) runOrFind(ctx context.Context, propertyID, from, to string, since time.Time) Outcome {
	o := Outcome{PropertyID: propertyID}
	earlier, err := r.jobOfRun(ctx, propertyID, from, to, since)
	switch {
	case err != nil:
		o.Err = err
		return o
	case earlier != nil && earlier.Status == StatusDone:
		o.Job, o.Earlier = earlier, true
		return o
	case earlier == nil:
		if earlier, err = r.Create(ctx, propertyID, from, to, engine.RulesHistorical); err != nil {
			o.Err = err
			return o
		}
	case earlier.Status == StatusRunning:
		if earlier, err = r.awaitLease(ctx, earlier); err != nil {
			o.Job, o.Err = earlier, err
			return o
		}
	}
	done, err := r.Start(ctx, propertyID, earlier.ID)
	if err != nil {
		o.Job, o.Err = earlier, err
		return o
	}
	o.Err = <-done
	o.Job, err = r.Get(context.WithoutCancel(ctx), propertyID, earlier.ID)
	if err != nil {
		o.Job, o.Err = earlier, errors.Join(o.Err, err)
	}
	return o
}

// awaitLease waits, for up to the lease's TTL and a little more, until a
// job of the run that reads running (a run of it holds the property's
// lease) no longer does, and returns it as it then reads. Such a run is
// one of the run's commands killed without releasing the lease (a pod
// OOM-killed, then replaced by the one continuing the run): its lease
// expires at most a TTL after its last renewal. One still running after
// that is renewed by a live command (two given the same slice): Start
// then refuses it, ErrBusy.
func (r *Runner) awaitLease(ctx context.Context, j *Job) (*Job, error) {
	ttl := cmp.Or(r.LeaseTTL, leaseTTL)
	deadline := time.Now().Add(ttl + ttl/8)
	for j.Status == StatusRunning && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return j, context.Cause(ctx)
		case <-time.After(ttl / 16):
		}
		next, err := r.Get(ctx, j.PropertyID, j.ID)
		if err != nil {
			return j, err
		}
		j = next
	}
	return j, nil
}

// jobOfRun returns the property's newest job over from..to with the rules
// of the time made at or after since (one of the run begun then), or nil.
func (r *Runner) jobOfRun(ctx context.Context, propertyID, from, to string, since time.Time) (*Job, error) {
	f, t, err := parseRange(from, to)
	if err != nil {
		return nil, err
	}
	// Newest first: the table's clustering order.
	iter := r.Session.Query(`SELECT job_id, from_day, to_day, rules_mode, created_at FROM reprocess_jobs WHERE property_id = ?`, propertyID).
		WithContext(ctx).Iter()
	var id, mode string
	var jf, jt, created time.Time
	found := ""
	for iter.Scan(&id, &jf, &jt, &mode, &created) {
		if found == "" && jf.Equal(f) && jt.Equal(t) && engine.RulesMode(mode) == engine.RulesHistorical && !created.Before(since.Truncate(time.Millisecond)) {
			found = id
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read the reprocessing jobs of property %s: %w", propertyID, err)
	}
	if found == "" {
		return nil, nil
	}
	return r.Get(ctx, propertyID, found)
}
