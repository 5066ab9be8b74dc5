package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
)

// TestReprocessingKeepsTheVisitorLimitOfLive: a visitor past
// visitor.MaxLiveHits around midnight (a server sending a hit every 2 s
// from 21:00 to 03:00 with one client ID) gets from a job with the rules
// of the time the tables live processing wrote. The limit counts a
// day's live hits: reprocessing runs a day at a time, and live processing
// holds the day before's session until it freezes, hours into the next
// day; a limit of the whole timeline excluded, live, hits of the next day
// that the job then kept (its rollups, sessions and filtered counts all
// changed).
func TestReprocessingKeepsTheVisitorLimitOfLive(t *testing.T) {
	ctx := context.Background()
	c1 := compile(t, rules.Defaults(), 1)
	p := &Property{ID: propID, Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c1 }}
	start := time.Date(2026, 7, 1, 21, 0, 0, 0, time.UTC)
	n := 3 * 3600 // 21:00 to 03:00, every 2 s
	if n <= visitor.MaxLiveHits {
		t.Fatalf("%d hits over the two days do not pass the limit of %d", n, visitor.MaxLiveHits)
	}
	var hs []*hit.Hit
	for i := range n {
		at := start.Add(time.Duration(2*i) * time.Second)
		hs = append(hs, aHit("heavy", fmt.Sprintf("h%06d", i), at, at.Add(time.Second), "https://shop.example/", ""))
	}
	s := connect(t)
	run(t, ctx, newPartition(s, p), aMsgs(0, hs...), 500)
	wantD, wantU := dumpDerived(t, s), dumpUsers(t, s)
	d0 := session.LocalDay(start, time.UTC)
	now := start.Add(30 * 24 * time.Hour)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return now }}
	if err := rp.Run(ctx, p, d0, d0.AddDate(0, 0, 1), RulesHistorical, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := dumpDerived(t, s); got != wantD {
		t.Errorf("reprocessing with the rules of the time changed the tables:\n%s", diff(wantD, got))
	}
	if got := dumpUsers(t, s); got != wantU {
		t.Errorf("and the users:\n%s", diff(wantU, got))
	}
}
