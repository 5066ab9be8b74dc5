package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/gocql/gocql"
)

// TestFlushRetriedAfterFaults fails flushes part-way on the store itself
// (the embedded server refuses statements, or applies them and answers a
// timeout) and retries each on the same Partition, as the consumer does,
// with several batches a flush, a visitor's late hits settled when a
// flush (attempt) starts; the tables must equal those of an undisturbed
// run.
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
	rng := rand.New(rand.NewPCG(seed, 6))
	clock := time.Unix(0, 0)
	part := New(disturbed(s, prop, seed > 4, &clock))
	if seed%4 != 0 {
		// A visitor's late hits placed until the next flush (attempt),
		// which fails with them settled; and, at seeds 4 and 8, every hit
		// derived on its own.
		part.SettleFrom(0)
	}
	if seed%3 == 0 {
		// Rows read in the middle of settling (pendingLoad), reads
		// that the faults make fail too.
		part.rows.pendingLoad = 1
	}
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
		if rng.IntN(3) == 0 {
			continue // several batches a flush
		}
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
// before the crash) and in the one of the replay's. The first derivation
// recorded the version it fell back to (fallback.go), and the replay
// derives the hit under it.
func TestReplayAfterTheRuleHistoryCaughtUp(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	behind, caughtUp := historyCatchingUp(t)
	h := partnerHit("c1", "a", t0)
	msgs := []Message{{Offset: 0, Value: marshal(h)}}
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
	checkSessionsOnce(t, s, 1)
}

// TestFallbackRecordsOutliveAHandOver: the processor after the one that
// fell back hands the partition over before it reaches the hit (a
// rebalance), and the one after it, whose copy has the stamped version
// too, still derives the hit as the first did: what is recorded is read by
// every owner that resumes before the hit's offset is committed, from the
// bucket of the offset it resumes from on (the hits lie in two buckets
// here), and a hit whose stamped version the copy has records nothing.
func TestFallbackRecordsOutliveAHandOver(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	behind, caughtUp := historyCatchingUp(t)
	known := partnerHit("c0", "known", t0)
	known.RuleVersion = 1
	base := int64(3<<16 - 2) // the last two offsets of bucket 2, the first of bucket 3
	msgs := []Message{
		{Offset: base, Value: marshal(known)},
		{Offset: base + 1, Value: marshal(partnerHit("c1", "a", t0))},
		{Offset: base + 2, Value: marshal(partnerHit("c2", "b", t0.Add(time.Second)))},
	}
	policy := StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}
	clock := func() time.Time { return t0 }
	owner := func(p *Property) *Partition {
		return New(Config{Topic: "hits", Session: s, Properties: staticProperties{p}, State: policy, Now: clock})
	}

	first := owner(behind)
	if err := first.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recorded := recordedFallbacks(t, s)
	if want := (fallbacks{base + 1: {msgs[1].id(t): 1}, base + 2: {msgs[2].id(t): 1}}); fmt.Sprint(recorded) != fmt.Sprint(want) {
		t.Fatalf("recorded %v, want %v: the two hits of version 2 under version 1, none of the one of version 1", recorded, want)
	}
	// The first dies. The second replays the first two hits and hands the
	// partition over; the third replays the last.
	second := owner(caughtUp)
	if err := second.Apply(ctx, msgs[:2]); err != nil {
		t.Fatal(err)
	}
	if off, err := second.FlushAll(ctx); err != nil || off != base+1 {
		t.Fatalf("hand-over: %d, %v; want %d, no error", off, err, base+1)
	}
	third := owner(caughtUp)
	if err := third.Apply(ctx, msgs[2:]); err != nil {
		t.Fatal(err)
	}
	if _, err := third.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := totals(t, s, rollup.Channel)["Referral"].Sessions; got != 3 {
		t.Errorf("Referral has %d sessions, want the 3, all derived under version 1 as first written", got)
	}
	checkSessionsOnce(t, s, 3)
}

// TestFallbackReplayCrashAnywhere crashes processors during their flushes
// at random points, as TestCrashAnywhereCountsOnce does, on traffic
// stamped with a rules version the first processor's copy of the history
// lacks: it derives its hits under version 1, and the processors after it,
// whose copies have caught up, under version 2 (partner.example a referral
// exclusion: sessions from there Direct, not Referral). The hits the first
// recorded are replayed under version 1 and the others under 2, so the
// tables must be those of an undisturbed run of the traffic stamped so.
// Without the records, the rows the first processor wrote keep sessions
// under Referral and the replay adds them again under Direct.
func TestFallbackReplayCrashAnywhere(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { fallbackCrashRun(t, seed) })
	}
}

func fallbackCrashRun(t *testing.T, seed uint64) {
	ctx := context.Background()
	behind, caughtUp := historyCatchingUp(t)
	msgs := restamp(t, traffic(30, seed), func(_ int64, h *hit.Hit) {
		h.RuleVersion = 2
		h.Referrer = strings.Replace(h.Referrer, "news.example.org", "partner.example", 1)
	})
	batchMax := 30
	if seed%2 == 1 {
		msgs, batchMax = asRecords(msgs, seed), 8
	}
	s := connect(t)
	rng := rand.New(rand.NewPCG(seed, 6))
	clock := time.Unix(0, 0)
	due := seed > 2 // visitors written when due: replays re-derive more

	// The first processor, behind, flushes twice at least, then crashes
	// during a flush. It writes one batch at a time: a crash cuts off
	// the writes in flight, which the server may still apply after the
	// records are read below.
	cfg := disturbed(s, behind, due, &clock)
	cfg.Concurrency = 1
	first := New(cfg)
	committed := int64(-1)
	for next, flushes := msgs, 0; len(next) > 0; flushes++ {
		n := min(1+rng.IntN(batchMax), len(next))
		if err := first.Apply(ctx, next[:n]); err != nil {
			t.Fatal(err)
		}
		next = next[n:]
		clock = clock.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		if len(next) == 0 || flushes >= 2 && rng.IntN(3) == 0 {
			crashAfter(first, 1+rng.IntN(6)) // past the records of fallbacks, a batch written first
			if off, err := first.Flush(ctx); err == nil {
				committed = off // it dies right after
			}
			break
		}
		off, err := first.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		committed = off
	}
	recorded := recordedFallbacks(t, s)
	replayed := 0
	for offset, versions := range recorded {
		for id, v := range versions {
			if v != 1 {
				t.Fatalf("offset %d, hit %s: recorded version %d, want 1, the copy's newest", offset, id, v)
			}
		}
		if offset > committed {
			replayed++
		}
	}
	if replayed == 0 {
		t.Fatalf("no recorded hit past the committed offset %d: the test proves nothing", committed)
	}

	crashes, _ := crashUntilDone(t, rng, disturbed(s, caughtUp, due, &clock), msgs, committed, batchMax, &clock)
	t.Logf("%d records of fallbacks replayed, then %d flushes interrupted", replayed, crashes)

	clean := connect(t)
	asDerived := restamp(t, msgs, func(offset int64, h *hit.Hit) {
		if _, ok := recorded[offset][h.ID]; ok {
			h.RuleVersion = 1
		}
	})
	run(t, ctx, newPartition(clean, caughtUp), asDerived, 20)
	// The archive keeps the hits as stamped; the rest must be equal.
	tables := []string{"visitor_state", "site_users", "sessions_by_hour", "pageviews_by_hour", "events_by_hour", "rollup_daily", "rollup_hourly", "filtered_hits", "realtime_minutes"}
	if got, want := dumptest.Tables(t, s, tables...), dumptest.Tables(t, clean, tables...); got != want {
		t.Fatalf("the tables differ from an undisturbed run with the recorded hits stamped version 1:\n%s", diff(want, got))
	}
}

// historyCatchingUp returns a property as processing knows it while its
// copy of the rule history lacks the newest version (behind: version 1 of
// partnerExcluded only, in effect at every time) and once it has it.
func historyCatchingUp(t *testing.T) (behind, caughtUp *Property) {
	t.Helper()
	old, newer := partnerExcluded(t)
	behind = &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt:      func(time.Time) *rules.Compiled { return old },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old}[n] }}
	caughtUp = &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt:      func(time.Time) *rules.Compiled { return newer },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old, 2: newer}[n] }}
	return behind, caughtUp
}

// partnerHit returns a pageview of client at at from partner.example,
// stamped with version 2: Referral under version 1, Direct under 2.
func partnerHit(client, event string, at time.Time) *hit.Hit {
	h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview, Origin: hit.OriginBrowser,
		Time: at, ReceivedAt: at, Hostname: "shop.example", Path: "/", Referrer: "https://partner.example/p", RuleVersion: 2}
	h.ID = h.DeriveID(event)
	return h
}

func marshal(h *hit.Hit) []byte {
	b, err := hit.Marshal(h)
	if err != nil {
		panic(err)
	}
	return b
}

// id returns the ID of m's hit (m holds one).
func (m Message) id(t *testing.T) string {
	t.Helper()
	h, err := hit.Unmarshal(m.Value)
	if err != nil {
		t.Fatal(err)
	}
	return h.ID
}

// restamp returns msgs with each of their hits changed by change.
func restamp(t *testing.T, msgs []Message, change func(offset int64, h *hit.Hit)) []Message {
	t.Helper()
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		parts, err := hit.SplitRecord(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		var encoded [][]byte
		for _, raw := range parts {
			h, err := hit.Unmarshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			change(m.Offset, h)
			encoded = append(encoded, marshal(h))
		}
		out[i] = Message{Offset: m.Offset, Value: hit.AppendRecord(nil, encoded)}
	}
	return out
}

// recordedFallbacks returns every version recorded in s's keyspace.
func recordedFallbacks(t *testing.T, s *gocql.Session) fallbacks {
	t.Helper()
	out := fallbacks{}
	if err := out.scan(s.Query("SELECT hit_offset, versions FROM fallback_rule_versions").Iter()); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSessionsOnce fails t unless the channels, the sources and media and
// the total all hold the want sessions: none counted twice.
func checkSessionsOnce(t *testing.T, s *gocql.Session, want int64) {
	t.Helper()
	for _, report := range []string{rollup.Channel, rollup.SourceMedium} {
		var sessions int64
		for value, m := range totals(t, s, report) {
			t.Logf("%s %s: %d sessions", report, value, m.Sessions)
			sessions += m.Sessions
		}
		if sessions != want {
			t.Errorf("the %s rows hold %d sessions, want %d", report, sessions, want)
		}
	}
	if total := totals(t, s, rollup.Total)[""].Sessions; total != want {
		t.Errorf("the total holds %d sessions, want %d", total, want)
	}
}

// TestResumeAfterHandOver: a Partition whose hand-over (FlushAll)
// succeeded may resume at the offset after its last, and going on with
// what it holds gives the tables of an undisturbed run, reading again none
// of the visitors it holds; with anything pending (hits applied since, or
// its hand-over failed) or at another offset, it may not.
func TestResumeAfterHandOver(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 11)
	srv := cqltest.Server(t)
	want := undisturbed(t, prop, msgs)
	half := len(msgs) / 2
	next := msgs[half].Offset

	s := connect(t)
	// Visitors written only by FlushAll, as a hand-over writes them.
	part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{prop}, State: StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}})
	if !part.CanResume(-2) || !part.CanResume(7) {
		t.Fatal("a Partition that applied nothing may not resume: it is as good as a new one")
	}
	run(t, ctx, part, msgs[:half], 8)
	if part.CanResume(next) {
		t.Fatal("a Partition with visitors not written may resume")
	}
	srv.SetFault(func(string) cqlserver.Fault { return cqlserver.FailBefore })
	if _, err := part.FlushAll(ctx); err == nil {
		t.Fatal("FlushAll succeeded on a store refusing every statement")
	}
	srv.SetFault(nil)
	if part.CanResume(next) {
		t.Fatal("a Partition whose hand-over failed may resume")
	}
	if through, err := part.FlushAll(ctx); err != nil || through != next-1 {
		t.Fatalf("FlushAll = %d, %v; want %d", through, err, next-1)
	}
	for _, off := range []int64{next - 1, next + 1, 0} {
		if part.CanResume(off) {
			t.Errorf("resumes at %d, having applied through %d", off, next-1)
		}
	}
	if !part.CanResume(next) {
		t.Fatalf("may not resume at %d after a hand-over through %d", next, next-1)
	}

	held := map[string]bool{}
	for _, m := range msgs[:half] {
		h, _ := hit.Unmarshal(m.Value)
		held[h.ClientID] = true
	}
	newcomers, returning := map[string]bool{}, map[string]bool{}
	for _, m := range msgs[half:] {
		h, _ := hit.Unmarshal(m.Value)
		if held[h.ClientID] {
			returning[h.ClientID] = true
		} else {
			newcomers[h.ClientID] = true
		}
	}
	reads := part.Stats().VisitorReads
	if err := part.Apply(ctx, msgs[half:half+1]); err != nil {
		t.Fatal(err)
	}
	if part.CanResume(next + 1) {
		t.Fatal("a Partition with a hit applied since its hand-over may resume")
	}
	run(t, ctx, part, msgs[half+1:], 8)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, s); got != want {
		t.Fatalf("a resumed Partition gives other tables than an undisturbed run:\n%s", diff(want, got))
	}
	if got := part.Stats().VisitorReads - reads; got != int64(len(newcomers)) {
		t.Fatalf("resumed, it read %d visitors, want %d: only those it did not hold", got, len(newcomers))
	}
	if len(returning) == 0 {
		t.Fatal("no visitor of the first half has a hit in the second: the test proves nothing")
	}
}

// A record holds up to 500 hits (a batch request: collection's
// parse.MaxBatchHits), and a flush records the version of each one
// derived under a fallback, a row of the record's hit IDs: some 20 KiB
// for a full record. The writer must not send a few of those in one batch
// with another partition (the bucket's row): Cassandra refuses a batch of
// several partitions over 50 KiB (batch_size_fail_threshold), on every
// try of the flush, and the partition stops.
func TestLargeFallbackRecordsWritten(t *testing.T) {
	ctx := context.Background()
	behind, _ := historyCatchingUp(t)
	s := connect(t)
	var msgs []Message
	for r := range 3 {
		var parts [][]byte
		for i := range 500 {
			h := pageview(fmt.Sprintf("client-%d", i), "/", fmt.Sprintf("event-%d-%d", r, i), t0.Add(time.Duration(r)*time.Minute))
			h.RuleVersion = 2 // the copy behind has version 1 only
			parts = append(parts, marshal(h))
		}
		msgs = append(msgs, Message{Offset: int64(r), Value: hit.AppendRecord(nil, parts)})
	}
	p := New(Config{Topic: "hits", Session: s, Properties: staticProperties{behind}})
	if err := p.Apply(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := p.FlushAll(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	recorded := recordedFallbacks(t, s)
	for r := range msgs {
		if n := len(recorded[int64(r)]); n != 500 {
			t.Errorf("record %d: %d hits recorded, want 500", r, n)
		}
	}
}
