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

// For two hours after processing moved to realtime_minutes, the realtime
// view reads the table it replaced too: a minute and shard in both shows
// realtime_minutes' row, one only in the old table still shows.
func TestRealtimeReadsTheLegacyTableToo(t *testing.T) {
	session, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	property := gocql.MustRandomUUID()
	now := time.Now().UTC().Truncate(time.Minute)
	insert := func(table string, minute time.Time, shard int16, pageviews int64) {
		t.Helper()
		if err := session.Query("INSERT INTO "+table+" (property_id, minute, shard, pageviews, pages, sources, through_offset) VALUES (?, ?, ?, ?, ?, ?, 0)",
			property, minute, shard, pageviews, map[string]int64{"/": pageviews}, map[string]int64{"(direct)": pageviews}).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	insert("realtime", now.Add(-3*time.Minute), 0, 1)         // before the upgrade only
	insert("realtime", now.Add(-2*time.Minute), 0, 2)         // carried over, then counted on:
	insert("realtime_minutes", now.Add(-2*time.Minute), 0, 3) // this one shows
	insert("realtime_minutes", now.Add(-2*time.Minute), 1, 4)
	insert("realtime_minutes", now.Add(-time.Minute), 0, 5)
	insert("realtime", now.Add(-time.Hour), 0, 9) // before the window

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
	newest, found, err := s.NewestMinute(context.Background(), property)
	if err != nil || !found || !newest.Equal(now.Add(-time.Minute)) {
		t.Errorf("newest minute %v (found %v, %v), want %v", newest, found, err, now.Add(-time.Minute))
	}

	insert("realtime", now, 0, 6) // an old processor still writing: the newest of both
	if newest, _, _ := s.NewestMinute(context.Background(), property); !newest.Equal(now) {
		t.Errorf("newest minute %v, want %v", newest, now)
	}
}
