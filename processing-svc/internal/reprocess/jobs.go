// Package reprocess runs reprocessing jobs: it records each job and the
// days it finished in Cassandra, so progress can be read and an interrupted
// job resumed, and serves the admin API that starts and reads them.
package reprocess

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/gocql/gocql"
)

// Job statuses.
const (
	StatusPending = "pending" // recorded, not started (or refused: another job held the property)
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Job is a reprocessing job as stored.
type Job struct {
	PropertyID string           `json:"property_id"`
	ID         string           `json:"job_id"`
	From       string           `json:"from"` // property-local dates, inclusive
	To         string           `json:"to"`
	Rules      engine.RulesMode `json:"rules"`
	// RulesVersion is the version a job with current rules applies: the
	// property's when the job was made (0: a job of the rules of the time,
	// or one made before jobs recorded it, which finds it by CreatedAt).
	RulesVersion int       `json:"rules_version,omitempty"`
	Status       string    `json:"status"`
	DaysDone     int       `json:"days_done"`
	DaysTotal    int       `json:"days_total"`
	Error        string    `json:"error,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// UsersPastRange counts the users whose first session the job moved
	// across the end of its range (engine.Progress.PastRangeUsers): the
	// days after the range count them new as before, until a job through
	// ReprocessThrough (empty when there are none).
	UsersPastRange   int    `json:"users_past_range"`
	ReprocessThrough string `json:"reprocess_through,omitempty"`
}

// Errors of Create and Start.
var (
	ErrNotFound      = errors.New("no such reprocessing job")
	ErrPastRetention = engine.ErrPastRetention
	// ErrBusy: another run holds the property's lease.
	ErrBusy = errors.New("a reprocessing job is running for the property")
	// ErrInstanceBusy: this instance runs MaxRunning jobs already.
	ErrInstanceBusy = errors.New("this instance runs as many reprocessing jobs as it may")
	// ErrLeaseLost stops a run that another may have taken the lease
	// from: it was taken, or could not be renewed before it might expire.
	ErrLeaseLost = errors.New("the reprocessing run lost its lease on the property")
)

// leaseTTL is how long a run's lease outlives its last renewal (unless
// Runner.LeaseTTL says otherwise; whole seconds): a run whose process died
// frees its property after at most this.
const leaseTTL = 2 * time.Minute

// Runner starts, resumes and reads jobs.
type Runner struct {
	Session *gocql.Session
	// Properties must answer a property as config-svc has it at the
	// lookup, not from a cache the change feed may not have caught up
	// (engine.ConfigProperties with Fresh): a job's "current" rules are
	// those in effect when it was created.
	Properties engine.Properties
	Log        *slog.Logger
	Now        func() time.Time
	LeaseTTL   time.Duration // 0: leaseTTL
	// MaxRunning bounds the jobs this instance runs at once (0:
	// maxRunning): a run holds its range's first sessions in memory
	// (docs/processing.md), beside live processing's visitors.
	MaxRunning int

	running atomic.Int32
	// leaseRead, when set (tests), runs in Get between its read of the
	// job and its read of the lease.
	leaseRead func()
}

// maxRunning is the default of Runner.MaxRunning.
const maxRunning = 2

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Create validates and records a new job for property over the local days
// from..to ("2006-01-02", inclusive). It does not run it.
func (r *Runner) Create(ctx context.Context, propertyID, from, to string, mode engine.RulesMode) (*Job, error) {
	f, t, err := parseRange(from, to)
	if err != nil {
		return nil, err
	}
	switch {
	case mode == "":
		return nil, fieldError("rules", fmt.Errorf("rules is required: %q (the rules in effect when each hit arrived) or %q (today's)", engine.RulesHistorical, engine.RulesCurrent))
	case mode != engine.RulesHistorical && mode != engine.RulesCurrent:
		return nil, fieldError("rules", fmt.Errorf("rules must be %q or %q, got %q", engine.RulesHistorical, engine.RulesCurrent, mode))
	}
	if _, err := gocql.ParseUUID(propertyID); err != nil {
		return nil, fieldError("property_id", fmt.Errorf("%w: property_id %q is not a property ID (a UUID)", engine.ErrUnknownProperty, propertyID))
	}
	p, err := r.Properties.Property(ctx, propertyID)
	if err != nil {
		err = fmt.Errorf("property %s: %w", propertyID, err)
		if !errors.Is(err, engine.ErrUnknownProperty) {
			err = unavailableError{err} // config-svc not answering, not a bad request
		}
		return nil, err
	}
	latest := sessionDay(r.now(), p).AddDate(0, 0, -2)
	if t.After(latest) {
		return nil, fieldError("to", fmt.Errorf("%w: the range must end by %s (days up to two days ago in the property's time zone are closed)", engine.ErrDayOpen, latest.Format(time.DateOnly)))
	}
	earliest := engine.EarliestDay(p, r.now())
	if f.Before(earliest) {
		return nil, fieldError("from", fmt.Errorf("%w: the range must start on %s or later (the raw archive keeps hits %d days)", ErrPastRetention, earliest.Format(time.DateOnly), int(hit.ArchiveRetention.Hours()/24)))
	}
	now := r.now()
	j := &Job{PropertyID: propertyID, ID: gocql.TimeUUID().String(), From: from, To: to, Rules: mode, Status: StatusPending,
		DaysTotal: int(t.Sub(f).Hours()/24) + 1, CreatedAt: now, UpdatedAt: now}
	var version any // null: the rules of the time
	if mode == engine.RulesCurrent {
		// Pinned by number: the version in effect when the job was made,
		// found by its time, depended on config-svc's clock.
		j.RulesVersion = p.CurrentVersion
		version = j.RulesVersion
	}
	err = r.Session.Query(`INSERT INTO reprocess_jobs (property_id, job_id, from_day, to_day, rules_mode, rules_version, status, days_total, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, j.PropertyID, j.ID, f, t, string(mode), version, j.Status, j.DaysTotal, now, now).WithContext(ctx).Exec()
	if err != nil {
		return nil, unavailableError{fmt.Errorf("record reprocessing job: %w", err)}
	}
	return j, nil
}

// unavailableError is an error of Create that is not the request's fault
// (the property could not be looked up, the job could not be recorded):
// the API answers it 503, to be tried again, where it answers the
// request's own faults 400.
type unavailableError struct{ error }

func (e unavailableError) Unwrap() error { return e.error }

// Start takes the property's lease for the job and runs it (or the rest
// of it) in the background, under ctx; the run's outcome is sent on the
// channel returned once the lease is released. It returns ErrBusy,
// running nothing, while another run holds the lease (the job itself
// included): two runs over the same days would delete each other's rows;
// ErrInstanceBusy while this instance runs MaxRunning jobs.
func (r *Runner) Start(ctx context.Context, propertyID, jobID string) (_ <-chan error, err error) {
	if _, _, err := r.load(ctx, propertyID, jobID); err != nil {
		return nil, err
	}
	if n := r.running.Add(1); int(n) > cmp.Or(r.MaxRunning, maxRunning) {
		r.running.Add(-1)
		return nil, fmt.Errorf("%w (%d)", ErrInstanceBusy, n-1)
	}
	defer func() {
		if err != nil {
			r.running.Add(-1)
		}
	}()
	ttl := int(cmp.Or(r.LeaseTTL, leaseTTL) / time.Second)
	holder := map[string]any{}
	taken := time.Now()
	applied, err := r.Session.Query("INSERT INTO reprocess_leases (property_id, job_id, acquired_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?",
		propertyID, jobID, r.now(), ttl).WithContext(ctx).MapScanCAS(holder)
	if err != nil {
		return nil, fmt.Errorf("take the reprocessing lease: %w", err)
	}
	if !applied {
		return nil, fmt.Errorf("%w (job %v)", ErrBusy, holder["job_id"])
	}
	log := cmp.Or(r.Log, slog.Default())
	// Recorded running while the run holds the lease, before Start returns:
	// a resumed job read done or failed (its last run's end) until its run
	// got going, so whoever resumed it and saw it ended could be refused a
	// new job.
	if err := r.markRunning(ctx, propertyID, jobID); err != nil {
		r.release(ctx, log, propertyID, jobID)
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			r.renew(ctx, cancel, log, propertyID, jobID, time.Duration(ttl)*time.Second, taken)
		}()
		runErr := withCause(ctx, r.Run(ctx, propertyID, jobID))
		if runErr != nil {
			log.Error("reprocessing job failed", slog.String("job_id", jobID), slog.Any("error", runErr))
		}
		cancel(nil)
		<-renewed
		r.release(ctx, log, propertyID, jobID)
		r.running.Add(-1)
		done <- runErr
	}()
	return done, nil
}

// release frees the property's lease if jobID holds it.
func (r *Runner) release(ctx context.Context, log *slog.Logger, propertyID, jobID string) {
	if _, err := r.Session.Query("DELETE FROM reprocess_leases WHERE property_id = ? IF job_id = ?", propertyID, jobID).
		WithContext(context.WithoutCancel(ctx)).MapScanCAS(map[string]any{}); err != nil {
		log.Warn("reprocessing lease not released; it expires", slog.String("job_id", jobID), slog.Any("error", err))
	}
}

// markRunning records the job running, its last run's error cleared.
func (r *Runner) markRunning(ctx context.Context, propertyID, jobID string) error {
	if err := r.Session.Query("UPDATE reprocess_jobs SET status = ?, error = null, updated_at = ? WHERE property_id = ? AND job_id = ?",
		StatusRunning, r.now(), propertyID, jobID).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("record the reprocessing job as running: %w", err)
	}
	return nil
}

// renew renews the run's lease, taken by a statement sent at taken, every
// quarter of its ttl until ctx ends (a failed renewal is tried again after
// a sixteenth), and stops the run, cancelling ctx with ErrLeaseLost, when
// the lease was taken by another or may expire: Cassandra applied the
// last renewal that succeeded at or after it was sent, so the lease holds
// until ttl after that, of which the run gives up the last sixth (20 s of
// 2 minutes) for its writes in flight to end (or time out,
// -cassandra-timeout) and for the clocks of Cassandra's nodes to differ.
func (r *Runner) renew(ctx context.Context, stop context.CancelCauseFunc, log *slog.Logger, propertyID, jobID string, ttl time.Duration, taken time.Time) {
	good := ttl - ttl/6
	expiry := time.AfterFunc(time.Until(taken.Add(good)), func() {
		stop(fmt.Errorf("%w: not renewed for %s (lease of %s)", ErrLeaseLost, good, ttl))
	})
	defer expiry.Stop()
	t := time.NewTimer(ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		// Every column again: a TTL covers the cells a statement writes,
		// and job_id, written only by the INSERT, would expire under the
		// renewed acquired_at.
		holder := map[string]any{}
		applied, err := r.Session.Query("UPDATE reprocess_leases USING TTL ? SET job_id = ?, acquired_at = ? WHERE property_id = ? IF job_id = ?",
			int(ttl/time.Second), jobID, r.now(), propertyID, jobID).WithContext(ctx).MapScanCAS(holder)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("reprocessing lease not renewed", slog.String("job_id", jobID), slog.Any("error", err))
			}
			t.Reset(ttl / 16)
		case !applied:
			log.Error("reprocessing job lost its lease; stopping it", slog.String("job_id", jobID), slog.Any("holder", holder["job_id"]))
			stop(fmt.Errorf("%w: job %v holds it", ErrLeaseLost, holder["job_id"]))
			return
		default:
			expiry.Reset(time.Until(sent.Add(good)))
			t.Reset(ttl / 4)
		}
	}
}

// withCause adds to err the cause ctx was cancelled with (ErrLeaseLost),
// which err, a context.Canceled, does not tell.
func withCause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); err != nil && c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

// Run runs (or resumes) a job to completion, recording each finished day.
// Callers hold the property's lease (Start).
func (r *Runner) Run(ctx context.Context, propertyID, jobID string) error {
	j, done, err := r.load(ctx, propertyID, jobID)
	if err != nil {
		return err
	}
	// Whatever stops the run, from the property's lookup on (a property
	// deleted since the job was made), is recorded: a job left pending or
	// running with no error looks, to whoever polls it, as if it were
	// still to start or still going.
	runErr := withCause(ctx, r.run(ctx, j, done))
	status, msg := StatusDone, ""
	if runErr != nil {
		status, msg = StatusFailed, runErr.Error()
	}
	err = r.Session.Query("UPDATE reprocess_jobs SET status = ?, error = ?, updated_at = ? WHERE property_id = ? AND job_id = ?",
		status, msg, r.now(), propertyID, jobID).WithContext(context.WithoutCancel(ctx)).Exec()
	return errors.Join(runErr, err)
}

// run runs the days of j not in done.
func (r *Runner) run(ctx context.Context, j *Job, done map[string]bool) error {
	propertyID, jobID := j.PropertyID, j.ID
	p, err := r.Properties.Property(ctx, propertyID)
	if err != nil {
		return fmt.Errorf("property %s: %w", propertyID, err)
	}
	if err := r.markRunning(ctx, propertyID, jobID); err != nil {
		return err
	}
	// As recorded (parseRange's bounds are for new jobs).
	f, _ := time.Parse(time.DateOnly, j.From)
	t, _ := time.Parse(time.DateOnly, j.To)
	// "Current" rules are those of the job's creation, on every day
	// however often it is resumed.
	rp := &engine.Reprocessor{Session: r.Session, Log: r.Log, Now: r.Now, CurrentVersion: j.RulesVersion, CurrentAt: j.CreatedAt}
	// The users past the range are the run's so far (engine.Progress),
	// recorded under the first day the run derives: each run of the job
	// its own entry, overwritten as the run goes on.
	var runDay time.Time
	recorded := false
	left := 0 // the days this run derives
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		if !done[d.Format(time.DateOnly)] {
			left++
		}
	}
	return rp.Run(ctx, p, f, t, j.Rules,
		func(d time.Time) bool { return done[d.Format(time.DateOnly)] },
		func(pr engine.Progress) error {
			if runDay.IsZero() {
				runDay = pr.Day
			}
			q := r.Session.Query("UPDATE reprocess_jobs SET days_done = days_done + ?, updated_at = ? WHERE property_id = ? AND job_id = ?",
				[]time.Time{pr.Day}, r.now(), propertyID, jobID)
			if pr.PastRangeUsers > 0 || recorded {
				recorded = true
				q = r.Session.Query("UPDATE reprocess_jobs SET days_done = days_done + ?, past_range_users = past_range_users + ?, past_range_through = past_range_through + ?, updated_at = ? WHERE property_id = ? AND job_id = ?",
					[]time.Time{pr.Day}, map[time.Time]int{runDay: pr.PastRangeUsers}, map[time.Time]time.Time{runDay: pr.PastRangeThrough}, r.now(), propertyID, jobID)
			}
			if err := q.WithContext(ctx).Exec(); err != nil {
				return err
			}
			// A property deleted meanwhile stops the run before its next
			// day (while config-svc cannot answer, the run goes on); after
			// its last, the job is done (it was recorded failed).
			if left--; left <= 0 {
				return nil
			}
			if _, err := r.Properties.Property(ctx, propertyID); errors.Is(err, engine.ErrUnknownProperty) {
				return fmt.Errorf("the property was deleted during the run: %w", err)
			}
			return nil
		})
}

// Get returns a job. A job recorded running while no run holds the
// property's lease for it is returned failed (not recorded so): a run
// records its end before it frees the lease, so its run ended without
// recording it (its process died, or Cassandra refused that write), and
// nothing will move it until it is resumed. The job is read again once
// the lease is found free: a run that ended between the first read and
// the lease's recorded its end before freeing it, and read once, the job
// of a run that had just ended well read failed.
func (r *Runner) Get(ctx context.Context, propertyID, jobID string) (*Job, error) {
	j, _, err := r.load(ctx, propertyID, jobID)
	if err != nil || j.Status != StatusRunning {
		return j, err
	}
	if r.leaseRead != nil {
		r.leaseRead()
	}
	var holder gocql.UUID
	err = r.Session.Query("SELECT job_id FROM reprocess_leases WHERE property_id = ?", propertyID).WithContext(ctx).Scan(&holder)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return nil, fmt.Errorf("read the reprocessing lease: %w", err)
	}
	if id, _ := gocql.ParseUUID(jobID); err == nil && holder == id {
		return j, nil
	}
	if j, _, err = r.load(ctx, propertyID, jobID); err != nil || j.Status != StatusRunning {
		return j, err
	}
	j.Status, j.Error = StatusFailed, "its run ended without recording its end (its process stopped, or could not write it); resume the job"
	return j, nil
}

func (r *Runner) load(ctx context.Context, propertyID, jobID string) (*Job, map[string]bool, error) {
	// IDs that no job can have are not looked up: the store refuses them
	// (a job ID is a time UUID), which would read as its failure.
	if _, err := gocql.ParseUUID(propertyID); err != nil {
		return nil, nil, ErrNotFound
	}
	if id, err := gocql.ParseUUID(jobID); err != nil || id.Version() != 1 {
		return nil, nil, ErrNotFound
	}
	j := &Job{PropertyID: propertyID, ID: jobID}
	var from, to time.Time
	var mode string
	var days []time.Time
	var pastUsers map[time.Time]int
	var pastThrough map[time.Time]time.Time
	err := r.Session.Query(`SELECT from_day, to_day, rules_mode, rules_version, status, days_done, days_total, error, created_at, updated_at, past_range_users, past_range_through
		FROM reprocess_jobs WHERE property_id = ? AND job_id = ?`, propertyID, jobID).WithContext(ctx).
		Scan(&from, &to, &mode, &j.RulesVersion, &j.Status, &days, &j.DaysTotal, &j.Error, &j.CreatedAt, &j.UpdatedAt, &pastUsers, &pastThrough)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read reprocessing job: %w", err)
	}
	j.From, j.To, j.Rules = from.Format(time.DateOnly), to.Format(time.DateOnly), engine.RulesMode(mode)
	done := map[string]bool{}
	for _, d := range days {
		done[d.Format(time.DateOnly)] = true
	}
	j.DaysDone = len(done)
	var through time.Time
	for day, n := range pastUsers {
		j.UsersPastRange += n
		if t := pastThrough[day]; n > 0 && t.After(through) {
			through = t
		}
	}
	if !through.IsZero() {
		j.ReprocessThrough = through.Format(time.DateOnly)
	}
	return j, done, nil
}

// FieldError is a job refused for one of its fields (Field: property_id,
// from, to, rules, or "from,to" for the two together), as the API names
// it; its message names it too.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldError(field string, err error) error { return &FieldError{Field: field, Err: err} }

// CheckRange reports what is wrong with from and to as a job's range
// (days, YYYY-MM-DD, in order, at most 366 of them), nil when nothing.
func CheckRange(from, to string) error {
	_, _, err := parseRange(from, to)
	return err
}

func parseRange(from, to string) (time.Time, time.Time, error) {
	parse := func(name, day string) (time.Time, error) {
		if day == "" {
			return time.Time{}, fieldError(name, fmt.Errorf("%s is required: the %s day of the range (YYYY-MM-DD, inclusive, in the property's time zone)", name, map[string]string{"from": "first", "to": "last"}[name]))
		}
		d, err := time.Parse(time.DateOnly, day)
		if err != nil {
			return time.Time{}, fieldError(name, fmt.Errorf("%s %q is not a date (YYYY-MM-DD)", name, day))
		}
		return d, nil
	}
	f, err := parse("from", from)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	t, err := parse("to", to)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if t.Before(f) {
		return time.Time{}, time.Time{}, fieldError("to", fmt.Errorf("the range ends (%s) before it starts (%s)", to, from))
	}
	if t.Sub(f) >= 366*24*time.Hour { // from..to holds one day more than between them
		return time.Time{}, time.Time{}, fieldError("from,to", errors.New("a job covers at most 366 days; split the range"))
	}
	return f, t, nil
}

func sessionDay(t time.Time, p *engine.Property) time.Time {
	y, m, d := t.In(p.Location).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
