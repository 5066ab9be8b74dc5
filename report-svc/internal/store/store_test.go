package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/gocql/gocql"
)

// The realtime view reads realtime_minutes' rows of the window, newest
// first, then by shard; the newest minute is looked for only after the
// bound it is given.
func TestRealtimeRows(t *testing.T) {
	session, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	property := gocql.MustRandomUUID()
	now := time.Now().UTC().Truncate(time.Minute)
	insert := func(minute time.Time, shard int16, pageviews int64) {
		t.Helper()
		if err := session.Query("INSERT INTO realtime_minutes (property_id, minute, shard, pageviews, pages, sources, through_offset) VALUES (?, ?, ?, ?, ?, ?, 0)",
			property, minute, shard, pageviews, map[string]int64{"/": pageviews}, map[string]int64{"(direct)": pageviews}).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	insert(now.Add(-3*time.Minute), 0, 1)
	insert(now.Add(-2*time.Minute), 1, 4)
	insert(now.Add(-2*time.Minute), 0, 3)
	insert(now.Add(-time.Minute), 0, 5)
	insert(now.Add(-time.Hour), 0, 9) // before the window

	s := New(session, Config{Timeout: 5 * time.Second, BreakerFailures: 5, BreakerOpen: time.Second, Concurrency: 4}, nil)
	rows, err := s.Realtime(context.Background(), property, now.Add(-30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, r := range rows {
		got = append(got, r.Pageviews)
	}
	if want := []int64{5, 3, 4, 1}; !slices.Equal(got, want) {
		t.Errorf("pageviews of the rows, newest first: %v, want %v", got, want)
	}
	newest, found, err := s.NewestMinute(context.Background(), property, now.Add(-time.Hour))
	if err != nil || !found || !newest.Equal(now.Add(-time.Minute)) {
		t.Errorf("newest minute %v (found %v, %v), want %v", newest, found, err, now.Add(-time.Minute))
	}
	if newest, found, err := s.NewestMinute(context.Background(), property, now); err != nil || found {
		t.Errorf("newest minute from now: %v (found %v, %v), want none", newest, found, err)
	}
}
