// Package reprocess runs reprocessing jobs: it records each job and the
// days it finished in Cassandra, so progress can be read and an interrupted
// job resumed, and serves the admin API that starts and reads them.
package reprocess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/gocql/gocql"
)

// Job statuses.
const (
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
	Status     string           `json:"status"`
	DaysDone   int              `json:"days_done"`
	DaysTotal  int              `json:"days_total"`
	Error      string           `json:"error,omitempty"`
	CreatedAt  time.Time        `json:"created_at"`
	UpdatedAt  time.Time        `json:"updated_at"`
}

// ErrNotFound is returned for an unknown job.
var ErrNotFound = errors.New("no such reprocessing job")

// Runner starts, resumes and reads jobs.
type Runner struct {
	Session    *gocql.Session
	Properties engine.Properties
	Log        *slog.Logger
	Now        func() time.Time
}

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
	if mode != engine.RulesHistorical && mode != engine.RulesCurrent {
		return nil, fmt.Errorf("rules must be %q or %q, got %q", engine.RulesHistorical, engine.RulesCurrent, mode)
	}
	p, err := r.Properties.Property(ctx, propertyID)
	if err != nil {
		return nil, fmt.Errorf("property %s: %w", propertyID, err)
	}
	latest := sessionDay(r.now(), p).AddDate(0, 0, -2)
	if t.After(latest) {
		return nil, fmt.Errorf("%w: the range must end by %s (days up to two days ago in the property's time zone are closed)", engine.ErrDayOpen, latest.Format(time.DateOnly))
	}
	now := r.now()
	j := &Job{PropertyID: propertyID, ID: gocql.TimeUUID().String(), From: from, To: to, Rules: mode, Status: StatusRunning,
		DaysTotal: int(t.Sub(f).Hours()/24) + 1, CreatedAt: now, UpdatedAt: now}
	err = r.Session.Query(`INSERT INTO reprocess_jobs (property_id, job_id, from_day, to_day, rules_mode, status, days_total, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, j.PropertyID, j.ID, f, t, string(mode), j.Status, j.DaysTotal, now, now).WithContext(ctx).Exec()
	if err != nil {
		return nil, fmt.Errorf("record reprocessing job: %w", err)
	}
	return j, nil
}

// Run runs (or resumes) a job to completion, recording each finished day.
func (r *Runner) Run(ctx context.Context, propertyID, jobID string) error {
	j, done, err := r.load(ctx, propertyID, jobID)
	if err != nil {
		return err
	}
	p, err := r.Properties.Property(ctx, propertyID)
	if err != nil {
		return fmt.Errorf("property %s: %w", propertyID, err)
	}
	f, t, _ := parseRange(j.From, j.To)
	rp := &engine.Reprocessor{Session: r.Session, Log: r.Log, Now: r.Now}
	runErr := rp.Run(ctx, p, f, t, j.Rules,
		func(d time.Time) bool { return done[d.Format(time.DateOnly)] },
		func(pr engine.Progress) error {
			return r.Session.Query("UPDATE reprocess_jobs SET days_done = days_done + ?, updated_at = ? WHERE property_id = ? AND job_id = ?",
				[]time.Time{pr.Day}, r.now(), propertyID, jobID).WithContext(ctx).Exec()
		})
	status, msg := StatusDone, ""
	if runErr != nil {
		status, msg = StatusFailed, runErr.Error()
	}
	err = r.Session.Query("UPDATE reprocess_jobs SET status = ?, error = ?, updated_at = ? WHERE property_id = ? AND job_id = ?",
		status, msg, r.now(), propertyID, jobID).WithContext(context.WithoutCancel(ctx)).Exec()
	return errors.Join(runErr, err)
}

// Get returns a job.
func (r *Runner) Get(ctx context.Context, propertyID, jobID string) (*Job, error) {
	j, _, err := r.load(ctx, propertyID, jobID)
	return j, err
}

func (r *Runner) load(ctx context.Context, propertyID, jobID string) (*Job, map[string]bool, error) {
	j := &Job{PropertyID: propertyID, ID: jobID}
	var from, to time.Time
	var mode string
	var days []time.Time
	err := r.Session.Query(`SELECT from_day, to_day, rules_mode, status, days_done, days_total, error, created_at, updated_at
		FROM reprocess_jobs WHERE property_id = ? AND job_id = ?`, propertyID, jobID).WithContext(ctx).
		Scan(&from, &to, &mode, &j.Status, &days, &j.DaysTotal, &j.Error, &j.CreatedAt, &j.UpdatedAt)
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
	return j, done, nil
}

func parseRange(from, to string) (time.Time, time.Time, error) {
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("from %q is not a date (YYYY-MM-DD)", from)
	}
	t, err := time.Parse(time.DateOnly, to)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("to %q is not a date (YYYY-MM-DD)", to)
	}
	if t.Before(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("the range ends (%s) before it starts (%s)", to, from)
	}
	if t.Sub(f) > 366*24*time.Hour {
		return time.Time{}, time.Time{}, errors.New("a job covers at most 366 days; split the range")
	}
	return f, t, nil
}

func sessionDay(t time.Time, p *engine.Property) time.Time {
	y, m, d := t.In(p.Location).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
