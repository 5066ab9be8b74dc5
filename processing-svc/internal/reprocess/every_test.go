package reprocess

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
)

// A run over every property makes each property a job with the rules of
// the time and runs it; the same run continued (the same since) does not
// do again what it did, resumes what it did not finish, and a later run
// does every property again. A property deleted since it was listed is
// reported deleted (nothing to do, not a failure), the others done.
func TestEveryPropertyIsOneRun(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	const other = "3f1c9a52-3333-4e4e-9a9a-000000000004"
	second, err := enginetest.Property(other, rules.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	props = append(props.(enginetest.Properties), second)
	day := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, p := range []string{propID, other} {
		processLiveOf(t, s, props, p, 12, func(i int) (string, time.Time) {
			return fmt.Sprint("c", i%3), day.Add(time.Duration(i) * 13 * time.Minute)
		})
	}
	const gone = "3f1c9a52-3333-4e4e-9a9a-000000000009" // no such property
	at := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return at }}
	run := func(since time.Time, ids ...string) map[string]Outcome {
		t.Helper()
		ch := make(chan string)
		go func() {
			defer close(ch)
			for _, id := range ids {
				ch <- id
			}
		}()
		out := map[string]Outcome{}
		r.Every(ctx, ch, "2026-03-01", "2026-03-03", since, 2, func(o Outcome) { out[o.PropertyID] = o })
		return out
	}

	first := run(at, propID, other, gone)
	for _, p := range []string{propID, other} {
		if o := first[p]; o.Err != nil || o.Earlier || o.Job == nil || o.Job.Status != StatusDone || o.Job.DaysDone != 3 || o.Job.Rules != engine.RulesHistorical {
			t.Fatalf("%s: %+v (job %+v); want a new job with the rules of the time, done, 3 of 3 days", p, o, o.Job)
		}
	}
	if o := first[gone]; o.Err != nil || o.Job != nil || !o.Deleted {
		t.Fatalf("a property config-svc no longer knows (deleted since it was listed): %+v, want it deleted, no job and no failure", o)
	}

	// The same run again: nothing is done twice. One of its jobs is
	// recorded failed (as if its run had stopped): it is resumed.
	if err := s.Query("UPDATE reprocess_jobs SET status = ?, days_done = {} WHERE property_id = ? AND job_id = ?", StatusFailed, other, first[other].Job.ID).Exec(); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Hour)
	again := run(at.Add(-time.Hour), propID, other)
	if o := again[propID]; !o.Earlier || o.Err != nil || o.Job.ID != first[propID].Job.ID {
		t.Errorf("continued run, a property it did: %+v; want its job, done earlier", o)
	}
	if o := again[other]; o.Earlier || o.Err != nil || o.Job.ID != first[other].Job.ID || o.Job.Status != StatusDone || o.Job.DaysDone != 3 {
		t.Errorf("continued run, a property whose job failed: %+v (job %+v); want that job resumed and done", o, o.Job)
	}

	// A later run does them again, with new jobs.
	at = at.Add(time.Hour)
	later := run(at, propID, other)
	for _, p := range []string{propID, other} {
		if o := later[p]; o.Earlier || o.Err != nil || o.Job.ID == first[p].Job.ID || o.Job.Status != StatusDone {
			t.Errorf("a later run, %s: %+v; want a new job, done", p, o)
		}
	}
	var jobs []string
	iter := s.Query("SELECT job_id FROM reprocess_jobs WHERE property_id = ?", propID).Iter()
	var id string
	for iter.Scan(&id) {
		jobs = append(jobs, id)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{later[propID].Job.ID, first[propID].Job.ID}; !slices.Equal(jobs, want) {
		t.Errorf("jobs of %s: %v, want the two runs' %v", propID, jobs, want)
	}
}

// A property deleted during its job of a run is reported deleted, its job
// failed saying so, not as a failure of the run: a run continued would not
// list it again, so it could never end well.
func TestEveryPropertyDeletedDuringItsJob(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	var lookups atomic.Int32
	lookups.Store(2) // Create's and the run's; deleted after its first day
	at := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	r := &Runner{Session: s, Properties: deletedAfter{props, &lookups}, Now: func() time.Time { return at }}
	ch := make(chan string, 1)
	ch <- propID
	close(ch)
	var got []Outcome
	r.Every(ctx, ch, "2026-03-01", "2026-03-03", at, 1, func(o Outcome) { got = append(got, o) })
	if len(got) != 1 || !got[0].Deleted || got[0].Err != nil || got[0].Job == nil || got[0].Job.Status != StatusFailed {
		t.Fatalf("outcomes %+v; want the property deleted, its job failed, no error", got)
	}
}

// A run continued right after its command was killed (a pod OOM-killed and
// replaced) finds its job still running under the dead run's lease: it
// waits for the lease to expire and resumes the job, rather than fail the
// property as busy, which cost its slice a retry and left it for yet
// another run.
func TestEveryWaitsForTheLeaseOfItsDeadRun(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	at := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	r := &Runner{Session: s, Properties: props, Now: func() time.Time { return at }, LeaseTTL: 2 * time.Second}
	j, err := r.Create(ctx, propID, "2026-03-01", "2026-03-03", engine.RulesHistorical)
	if err != nil {
		t.Fatal(err)
	}
	// The killed run's: recorded running, its lease not yet expired.
	if err := s.Query("UPDATE reprocess_jobs SET status = ? WHERE property_id = ? AND job_id = ?", StatusRunning, propID, j.ID).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query("INSERT INTO reprocess_leases (property_id, job_id, acquired_at) VALUES (?, ?, ?) USING TTL 2", propID, j.ID, time.Now()).Exec(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1)
	ch <- propID
	close(ch)
	var got []Outcome
	r.Every(ctx, ch, "2026-03-01", "2026-03-03", at, 1, func(o Outcome) { got = append(got, o) })
	if len(got) != 1 || got[0].Err != nil || got[0].Job == nil || got[0].Job.ID != j.ID || got[0].Job.Status != StatusDone {
		t.Fatalf("outcomes %+v; want its job resumed once the lease expired, done", got)
	}
}
