package reprocess

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
	"github.com/gocql/gocql"
)

const propID = "3f1c9a52-3333-4e4e-9a9a-000000000003"

// allHours restricts a query of a day's rows of a table partitioned by
// hour to the day's 24 partitions.
const allHours = "hour IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)"

// connect opens a keyspace of its own for the test, and the test property
// with the default rules.
// processLive processes n pageviews of "/" on propID live, as the consumer
// does, and flushes them: the i-th from the client and at the time hitAt(i) gives.
func processLive(t *testing.T, s *gocql.Session, props engine.Properties, n int, hitAt func(i int) (client string, at time.Time)) {
	t.Helper()
	processLiveOf(t, s, props, propID, n, hitAt)
}

// processLiveOf is processLive for the property of ID property.
func processLiveOf(t *testing.T, s *gocql.Session, props engine.Properties, property string, n int, hitAt func(i int) (client string, at time.Time)) {
	t.Helper()
	msgs := make([]engine.Message, n)
	for i := range n {
		client, at := hitAt(i)
		h := &hit.Hit{PropertyID: property, ClientID: client, Type: hit.TypePageview, Time: at, ReceivedAt: at, Path: "/"}
		h.ID = h.DeriveID(fmt.Sprint(i))
		b, _ := hit.Marshal(h)
		msgs[i] = engine.Message{Offset: int64(i), Value: b}
	}
	part := engine.New(engine.Config{Topic: "hits", Session: s, Properties: props})
	if err := part.Apply(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := part.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// runNewJob creates a job over from..to with the current rules, runs it
// to its end and returns it as stored then.
func runNewJob(t *testing.T, r *Runner, from, to string) *Job {
	t.Helper()
	ctx := context.Background()
	j, err := r.Create(ctx, propID, from, to, engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, propID, j.ID); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func connect(t *testing.T) (*gocql.Session, engine.Properties) {
	t.Helper()
	s, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	prop, err := enginetest.Property(propID, rules.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	return s, enginetest.Properties{prop}
}

func TestJobRunsAndResumes(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)

	// Some traffic on 2026-03-02 and 2026-03-03, processed live.
	day := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	processLive(t, s, props, 40, func(i int) (string, time.Time) {
		return fmt.Sprint("c", i%7), day.Add(time.Duration(i) * 47 * time.Minute)
	})
	var before int
	if err := s.Query("SELECT COUNT(*) FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND "+allHours, propID, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)).Scan(&before); err != nil {
		t.Fatal(err)
	}

	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	if _, err := r.Create(ctx, propID, "2026-03-02", "2026-03-09", engine.RulesCurrent); !errors.Is(err, engine.ErrDayOpen) {
		t.Fatalf("a range reaching yesterday: %v, want ErrDayOpen", err)
	}
	for _, bad := range [][2]string{{"2026-03-03", "2026-03-02"}, {"March 2", "2026-03-03"}} {
		if _, err := r.Create(ctx, propID, bad[0], bad[1], engine.RulesCurrent); err == nil {
			t.Fatalf("range %v accepted", bad)
		}
	}
	j := runNewJob(t, r, "2026-03-01", "2026-03-04")
	if j.Status != StatusDone || j.DaysDone != 4 || j.DaysTotal != 4 {
		t.Fatalf("job %+v: want done, 4 of 4 days", j)
	}
	var after int
	if err := s.Query("SELECT COUNT(*) FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND "+allHours, propID, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before || after == 0 {
		t.Fatalf("sessions of 2026-03-02: %d after reprocessing, %d before; want the same, non-zero", after, before)
	}
	// Resuming a finished job does nothing and succeeds.
	if err := r.Run(ctx, propID, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, propID, "00000000-0000-1000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	// Days whose archive may have expired are refused.
	late := &Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC) }}
	if _, err := late.Create(ctx, propID, "2026-03-02", "2026-03-03", engine.RulesCurrent); !errors.Is(err, ErrPastRetention) {
		t.Fatalf("a range past the archive's retention: %v, want ErrPastRetention", err)
	}

	// One run per property at a time: a second start (another job, or the
	// same one resumed) while a run holds the lease is refused; once the
	// run has ended, the lease is free again.
	if err := s.Query("INSERT INTO reprocess_leases (property_id, job_id, acquired_at) VALUES (?, ?, ?)", propID, j.ID, time.Now()).Exec(); err != nil {
		t.Fatal(err)
	}
	k, err := r.Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesHistorical)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{k.ID, j.ID} {
		if _, err := r.Start(ctx, propID, id); !errors.Is(err, ErrBusy) {
			t.Fatalf("start of job %s while job %s holds the lease: %v, want ErrBusy", id, j.ID, err)
		}
	}
	if err := s.Query("DELETE FROM reprocess_leases WHERE property_id = ?", propID).Exec(); err != nil {
		t.Fatal(err)
	}
	done, err := r.Start(ctx, propID, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, propID, j.ID); !errors.Is(err, ErrBusy) {
		t.Fatalf("start while job %s runs: %v, want ErrBusy", k.ID, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Query("SELECT COUNT(*) FROM reprocess_leases WHERE property_id = ?", propID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, propID, k.ID); err != nil || got.Status != StatusDone || n != 0 {
		t.Fatalf("job %+v (%v), %d leases: want done and the lease released", got, err, n)
	}
}

// slowProperties answers after wait, or when ctx ends.
type slowProperties struct {
	engine.Properties
	wait time.Duration
}

func (s slowProperties) Property(ctx context.Context, id string) (*engine.Property, error) {
	select {
	case <-time.After(s.wait):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Properties.Property(ctx, id)
}

// A run keeps its lease for as long as it lasts, past many lease TTLs (a
// renewal that wrote only some columns let the others expire, and the run
// cancelled itself as having lost its lease); a job is pending until a
// run starts it.
func TestLeaseOutlivesItsTTL(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	r := &Runner{Session: s, Properties: props, Now: now}
	j, err := r.Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, propID, j.ID); err != nil || got.Status != StatusPending {
		t.Fatalf("a created job: %+v, %v; want pending", got, err)
	}
	slow := &Runner{Session: s, Properties: slowProperties{props, 5 * time.Second}, Now: now, LeaseTTL: 2 * time.Second}
	done, err := slow.Start(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a run of 5 s with a lease of 2 s: %v", err)
	}
	if got, err := r.Get(ctx, propID, j.ID); err != nil || got.Status != StatusDone {
		t.Fatalf("job %+v, %v; want done", got, err)
	}
}

// A run whose lease can no longer be renewed stops before the lease may
// expire: renewal errors were ignored, so a run went on past its lease's
// TTL, and a second run could take the lease and work the same days.
func TestRunStopsWhenRenewalsFail(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	const ttl, runs = 2 * time.Second, 8 * time.Second
	j, err := (&Runner{Session: s, Properties: props, Now: now}).Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Session: s, Properties: slowProperties{props, runs}, Now: now, LeaseTTL: ttl}
	started := time.Now()
	done, err := r.Start(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Every renewal from now on fails, as when Cassandra cannot be reached.
	if err := s.Query("DROP TABLE reprocess_leases").Exec(); err != nil {
		t.Fatal(err)
	}
	err = <-done
	took := time.Since(started)
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a run whose renewals fail ended after %s with %v, want ErrLeaseLost", took.Round(time.Millisecond), err)
	}
	if took >= ttl {
		t.Errorf("the run stopped %s after taking a lease of %s: past its expiry", took.Round(time.Millisecond), ttl)
	}
	if got, err := r.Get(ctx, propID, j.ID); err != nil || got.Status == StatusRunning || got.Status == StatusDone {
		t.Errorf("job %+v, %v; want it not running, not done", got, err)
	}
}

// An instance runs at most MaxRunning jobs at once (each holds its range's
// first sessions in memory); one more is refused, recorded, and can be
// started once a run has ended.
func TestInstanceRunsAtMostMaxRunning(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	other, err := enginetest.Property("3f1c9a52-3333-4e4e-9a9a-000000000004", rules.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	props = append(props.(enginetest.Properties), other)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	r := &Runner{Session: s, Properties: props, Now: now}
	var jobs []*Job
	for _, pid := range []string{propID, other.ID} {
		j, err := r.Create(ctx, pid, "2026-03-02", "2026-03-02", engine.RulesCurrent)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	slow := &Runner{Session: s, Properties: slowProperties{props, time.Second}, Now: now, MaxRunning: 1}
	done, err := slow.Start(ctx, jobs[0].PropertyID, jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Start(ctx, jobs[1].PropertyID, jobs[1].ID); !errors.Is(err, ErrInstanceBusy) {
		t.Fatalf("a second run on an instance that may run one: %v, want ErrInstanceBusy", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, jobs[1].PropertyID, jobs[1].ID); err != nil || got.Status != StatusPending {
		t.Fatalf("the refused job: %+v, %v; want pending", got, err)
	}
	if done, err = slow.Start(ctx, jobs[1].PropertyID, jobs[1].ID); err != nil {
		t.Fatalf("a run once the other has ended: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A job whose property was deleted (or could not be looked up) after it
// was created is recorded failed, with the reason, when a run starts it:
// the run returned before recording anything, so the job read pending (or
// running, from an earlier run) for ever, with no error, while the API
// had answered 202.
func TestRunOfAJobWhosePropertyIsGoneIsRecordedFailed(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	j, err := (&Runner{Session: s, Properties: props, Now: now}).Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	// The property is deleted.
	r := &Runner{Session: s, Properties: enginetest.Properties{}, Now: now}
	done, err := r.Start(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, engine.ErrUnknownProperty) {
		t.Fatalf("run of a deleted property's job: %v, want ErrUnknownProperty", err)
	}
	got, err := r.Get(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusFailed || !strings.Contains(got.Error, "unknown property") {
		t.Errorf("job %+v: want failed, its error naming the unknown property", got)
	}
}

// A job covers at most 366 days, as its error says: 367 were accepted
// (the bound compared the days between its ends, not the days it covers).
func TestJobOfMoreThan366DaysIsRefused(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC) }}
	if _, err := r.Create(ctx, propID, "2026-01-01", "2027-01-01", engine.RulesCurrent); err != nil {
		t.Fatalf("366 days: %v", err)
	}
	if j, err := r.Create(ctx, propID, "2026-01-01", "2027-01-02", engine.RulesCurrent); err == nil {
		t.Errorf("a job of %d days was accepted, want at most 366", j.DaysTotal)
	}
}

// Days that were within the archive's retention when the job was created
// but are no longer when it runs (a job resumed days later: refused with
// 409 job_running and resumed once the other ended, or failed and resumed)
// are refused: their hits expire over the day after the limit, and the day
// was re-derived from the part of its hits still archived, replacing its
// rows with fewer sessions.
func TestResumedJobRefusesDaysPastRetention(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	processLive(t, s, props, 24, func(i int) (string, time.Time) {
		return fmt.Sprint("c", i), day.Add(time.Duration(i)*time.Hour + 30*time.Minute)
	})
	sessions := func() (n int64) {
		if err := s.Query("SELECT sessions FROM rollup_daily WHERE property_id = ? AND day = ? AND report = 'total' AND dimension = '' AND shard = 0", propID, day).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := sessions()

	// Created on the last day the range may start on.
	created := day.AddDate(0, 0, -2).Add(hit.ArchiveRetention)
	j, err := (&Runner{Session: s, Properties: props, Now: func() time.Time { return created }}).Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	// Resumed three days later: the TTL has taken the day's first hours.
	if err := s.Query("DELETE FROM raw_hit_blocks_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)", propID, day).Exec(); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return created.AddDate(0, 0, 3) }}
	err = r.Run(ctx, propID, j.ID)
	if !errors.Is(err, ErrPastRetention) {
		t.Errorf("a job resumed once its day was past the archive's retention: %v, want ErrPastRetention", err)
	}
	if after := sessions(); after != before {
		t.Errorf("sessions of %s: %d before, %d after the resumed job", day.Format(time.DateOnly), before, after)
	}
	if got, err := r.Get(ctx, propID, j.ID); err != nil || got.Status != StatusFailed || got.DaysDone != 0 {
		t.Errorf("job %+v, %v: want failed, no day done", got, err)
	}
}

// A job whose run ended without recording its end (its process was
// killed, or Cassandra refused its last write) does not read running for
// ever: a run records its end before it frees the property's lease, so a
// job recorded running while no run holds the lease for it is reported
// failed, saying to resume it. It read running, with no error, while
// nothing ran it: whoever polled it waited on it.
func TestJobOfADeadRunDoesNotReadRunning(t *testing.T) {
	ctx := context.Background()
	// What a run whose process died leaves: the job running, and, two
	// minutes later, no lease.
	s, r, j, _ := jobRecordedRunning(t)
	got, err := r.Get(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusFailed || !strings.Contains(got.Error, "resume") {
		t.Errorf("a job recorded running with no run holding its lease: %+v; want failed, saying to resume it", got)
	}
	// While a run holds the lease, it is running.
	if err := s.Query("INSERT INTO reprocess_leases (property_id, job_id, acquired_at) VALUES (?, ?, ?)", propID, j.ID, time.Now()).Exec(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, propID, strings.ToUpper(j.ID)); err != nil || got.Status != StatusRunning {
		t.Errorf("a job running under its lease: %+v, %v; want running", got, err)
	}
}

// A run that ends while its job is read (the job read running, then its
// lease found free) reads as it ended, not failed: CI's reprocessing audit
// polled a job that had just finished all its days and read it failed,
// "its run ended without recording its end".
func TestJobOfARunEndingAsItIsReadReadsItsEnd(t *testing.T) {
	_, r, j, setStatus := jobRecordedRunning(t)
	// The run's end, as it records it: the job done, then the lease freed.
	r.leaseRead = func() { setStatus(StatusDone) }
	got, err := r.Get(context.Background(), propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusDone || got.Error != "" {
		t.Errorf("a job whose run ended as it was read: %+v; want done", got)
	}
}

// jobRecordedRunning makes a job of a day and records it running, with no
// run holding the lease; setStatus records another status.
func jobRecordedRunning(t *testing.T) (*gocql.Session, *Runner, *Job, func(status string)) {
	t.Helper()
	s, props := connect(t)
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	j, err := r.Create(context.Background(), propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	setStatus := func(status string) {
		if err := s.Query("UPDATE reprocess_jobs SET status = ? WHERE property_id = ? AND job_id = ?", status, propID, j.ID).Exec(); err != nil {
			t.Error(err)
		}
	}
	setStatus(StatusRunning)
	return s, r, j, setStatus
}

// deletedAfter serves its properties for the first n lookups, then none:
// the property is deleted while a run goes on.
type deletedAfter struct {
	engine.Properties
	n *atomic.Int32
}

func (d deletedAfter) Property(ctx context.Context, id string) (*engine.Property, error) {
	if d.n.Add(-1) < 0 {
		return nil, fmt.Errorf("%w: %s", engine.ErrUnknownProperty, id)
	}
	return d.Properties.Property(ctx, id)
}

// A property deleted while a run of its job goes on stops the run at the
// next day, the job failed saying so: the run went on to the end and read
// done, writing a deleted property's rows for every day left.
func TestRunStopsWhenItsPropertyIsDeleted(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	j, err := (&Runner{Session: s, Properties: props, Now: now}).Create(ctx, propID, "2026-03-01", "2026-03-04", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int32
	lookups.Store(1) // the run's own lookup; deleted after it
	r := &Runner{Session: s, Properties: deletedAfter{props, &lookups}, Now: now}
	if err := r.Run(ctx, propID, j.ID); !errors.Is(err, engine.ErrUnknownProperty) {
		t.Errorf("a run whose property was deleted after its first day: %v, want ErrUnknownProperty", err)
	}
	got, err := r.Get(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusFailed || got.DaysDone != 1 || !strings.Contains(got.Error, "deleted") {
		t.Errorf("job %+v: want failed after its first day, saying the property was deleted", got)
	}

	// Deleted after the job's last day: the job is done, every day of it
	// (it was recorded failed, the lookup after the last day failing).
	one, err := (&Runner{Session: s, Properties: props, Now: now}).Create(ctx, propID, "2026-03-05", "2026-03-05", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	lookups.Store(1)
	if err := r.Run(ctx, propID, one.ID); err != nil {
		t.Errorf("a run whose property was deleted after its last day: %v", err)
	}
	if got, err := r.Get(ctx, propID, one.ID); err != nil || got.Status != StatusDone || got.DaysDone != 1 {
		t.Errorf("job %+v (%v): want done, its one day done", got, err)
	}
}

// A job that moves a user's first session across the end of its range
// says so: the days after the range still count the user new as before,
// until a job through the day it names.
func TestJobReportsUsersPastRange(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	day := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	processLive(t, s, props, 6, func(i int) (string, time.Time) {
		return fmt.Sprint("c", i%3), day.Add(time.Duration(i) * 47 * time.Minute)
	})
	// As if live processing had seen c0 first after the range (its
	// earlier hits excluded then, kept by the job's rules).
	later := time.Date(2026, 3, 8, 9, 0, 0, 0, time.UTC)
	if err := s.Query("INSERT INTO site_users (property_id, client_id, first_seen) VALUES (?, 'c0', ?)", propID, later).Exec(); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	j := runNewJob(t, r, "2026-03-01", "2026-03-04")
	if j.UsersPastRange != 1 || j.ReprocessThrough != "2026-03-08" {
		t.Fatalf("job %+v: want 1 user past the range, reprocess through 2026-03-08", j)
	}
	// Run again: the users rows are as the job wrote them, and what the
	// first run recorded stays.
	if err := r.Run(ctx, propID, j.ID); err != nil {
		t.Fatal(err)
	}
	if got := runNewJob(t, r, "2026-03-01", "2026-03-04"); got.UsersPastRange != 0 || got.ReprocessThrough != "" {
		t.Fatalf("a second job over the same days: %+v; want no user past the range", got)
	}
	if got, err := r.Get(ctx, propID, j.ID); err != nil || got.UsersPastRange != 1 {
		t.Fatalf("the first job after its resume: %+v, %v; want 1 user past the range still", got, err)
	}
}

// TestCurrentRulesArePinnedByVersion: a job with today's rules applies the
// version of the property's document when the job was made. It found it by
// the job's creation time against the versions' effective times, which
// config-svc's clock sets: with that clock ahead (or the version saved
// while the job was made), the job applied the version before the one the
// merchant had just saved, and said nothing of it.
func TestCurrentRulesArePinnedByVersion(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	day := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	processLive(t, s, props, 10, func(i int) (string, time.Time) {
		return fmt.Sprint("c", i), day.Add(time.Duration(i) * time.Minute)
	})
	v1, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2 := rules.Defaults()
	r2.Pages.Exclude = []string{"^/$"}
	v2, err := rules.Compile(r2, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 is the document's, but takes effect, by config-svc's clock,
	// after the job is made.
	p := &engine.Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1, CurrentVersion: 2,
		RulesAt:      func(time.Time) *rules.Compiled { return v1 },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: v1, 2: v2}[n] }}
	r := &Runner{Session: s, Properties: enginetest.Properties{p}, Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }}
	j := runNewJob(t, r, "2026-03-02", "2026-03-02")
	if j.Status != StatusDone || j.RulesVersion != 2 {
		t.Fatalf("job %+v: want done, with rules version 2", j)
	}
	var sessions int
	if err := s.Query("SELECT COUNT(*) FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND "+allHours, propID, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Fatalf("%d sessions after reprocessing under version 2, which drops every pageview; the job applied version 1", sessions)
	}

	// A version the history no longer holds fails the job, saying so,
	// rather than applying another.
	p.CurrentVersion = 3
	k, err := r.Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, propID, k.ID); !errors.Is(err, engine.ErrUnknownRulesVersion) {
		t.Fatalf("a job of an unknown version: %v, want ErrUnknownRulesVersion", err)
	}
}
