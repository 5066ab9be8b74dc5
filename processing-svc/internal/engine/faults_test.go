package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
)

// TestFlushRetriedAfterFaults fails flushes part-way on the store itself
// (the embedded server refuses statements, or applies them and answers a
// timeout) and retries each on the same Partition, as the consumer does;
// the tables must equal those of an undisturbed run.
func TestFlushRetriedAfterFaults(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { faultRun(t, seed) })
	}
}

func faultRun(t *testing.T, seed uint64) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(30, seed)
	srv := cqltest.Server(t)
	want := undisturbed(t, prop, msgs)
	if seed%2 == 1 {
		msgs = asRecords(msgs, seed)
	}

	s := connect(t)
	rng := rand.New(rand.NewPCG(seed, 5))
	clock := time.Unix(0, 0)
	part := New(disturbed(s, prop, seed > 4, &clock))
	failed := 0
	// faultAfter makes the store fail every statement after the next
	// left ones, refusing them or applying them and answering a timeout.
	faultAfter := func(left int) {
		var mu sync.Mutex
		fault := cqlserver.Fault(1 + rng.IntN(2))
		srv.SetFault(func(string) cqlserver.Fault {
			mu.Lock()
			defer mu.Unlock()
			if left == 0 {
				return fault
			}
			left--
			return cqlserver.NoFault
		})
	}
	for next := msgs; len(next) > 0; {
		n := min(1+rng.IntN(10), len(next))
		if rng.IntN(3) == 0 {
			faultAfter(rng.IntN(6)) // reads of visitors and rows fail
			if err := part.Apply(ctx, next[:n]); err != nil {
				failed++
			}
			srv.SetFault(nil)
		}
		if err := part.Apply(ctx, next[:n]); err != nil {
			t.Fatal(err)
		}
		next = next[n:]
		clock = clock.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		if rng.IntN(2) == 0 {
			faultAfter(rng.IntN(12))
			_, err := part.Flush(ctx)
			srv.SetFault(nil)
			if err != nil {
				failed++
				if rng.IntN(2) == 0 {
					continue // more hits applied before the retry
				}
			}
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if failed == 0 {
		t.Fatal("no flush failed: the test proved nothing")
	}
	t.Logf("%d flushes failed and were retried", failed)
	if got := dump(t, s); got != want {
		t.Fatalf("after retried flushes the tables differ from an undisturbed run:\n%s", diff(want, got))
	}
}

// TestReplayAfterTheRuleHistoryCaughtUp: a hit stamped with a rules
// version the processor's copy of the history lacks (config-svc slow or
// unreachable when the merchant changed the rules) and replayed after a
// crash, by when the copy has that version, is counted once: its session
// is in one channel, not in the one of the first derivation (written
// before the crash) and in the one of the replay's.
//
// It fails: the first derivation's rows keep the session under Referral
// (through the hit's offset) and the replay adds it under Direct to a
// row written before it. Replays are exact only when they derive what the
// first run derived, and a copy of the history that learned a version
// meanwhile derives otherwise. Skipped until that is decided: holding a
// hit until the copy has its version (the partition waits while
// config-svc cannot answer, which docs/config.md chose against) would
// make it pass.
func TestReplayAfterTheRuleHistoryCaughtUp(t *testing.T) {
	t.Skip("known: a replay under a rule history that caught up meanwhile counts a session twice (session 14's audit)")
	ctx := context.Background()
	s := connect(t)
	old, newer := partnerExcluded(t)
	behind := &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt:      func(time.Time) *rules.Compiled { return old },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old}[n] }}
	caughtUp := &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt:      func(time.Time) *rules.Compiled { return newer },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old, 2: newer}[n] }}

	h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: "c1", Type: hit.TypePageview, Origin: hit.OriginBrowser,
		Time: t0, ReceivedAt: t0, Hostname: "shop.example", Path: "/", Referrer: "https://partner.example/p", RuleVersion: 2}
	h.ID = h.DeriveID("a")
	b, _ := hit.Marshal(h)
	msgs := []Message{{Offset: 0, Value: b}}
	policy := StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}
	clock := func() time.Time { return t0 }

	first := New(Config{Topic: "hits", Session: s, Properties: staticProperties{behind}, State: policy, Now: clock})
	if err := first.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if off, err := first.Flush(ctx); err != nil || off != -1 {
		t.Fatalf("flush: %d, %v; want -1 (the visitor not written yet), no error", off, err)
	}
	// The processor dies; its successor, whose copy of the history has
	// version 2 by now, consumes again from the committed offset.
	second := New(Config{Topic: "hits", Session: s, Properties: staticProperties{caughtUp}, State: policy, Now: clock})
	if err := second.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := second.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	var sessions int64
	for channel, m := range totals(t, s, rollup.Channel) {
		t.Logf("%s: %d sessions", channel, m.Sessions)
		sessions += m.Sessions
	}
	if total := totals(t, s, rollup.Total)[""].Sessions; sessions != 1 || total != 1 {
		t.Fatalf("channels hold %d sessions and the total %d, want the one session once", sessions, total)
	}
}
