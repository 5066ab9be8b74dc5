package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
)

// excludedHitProperty has rules version 1 (the defaults) until ten minutes
// past t0 and version 2 (partner.example a referral exclusion) after.
func excludedHitProperty(t *testing.T) *Property {
	old, newer := partnerExcluded(t)
	change := t0.Add(10 * time.Minute)
	return &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt: func(at time.Time) *rules.Compiled {
			if at.Before(change) {
				return old
			}
			return newer
		},
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old, 2: newer}[n] },
	}
}

// versionedHit is a pageview of client c1 stamped with rules version.
func versionedHit(id string, at time.Time, ref string, bot bool, version int, offset int64) Message {
	h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: "c1", Type: hit.TypePageview, Origin: hit.OriginBrowser,
		Time: at, ReceivedAt: at, Hostname: "shop.example", Path: "/" + id, Referrer: ref, Country: "DE", DeviceCategory: "desktop", Bot: bot,
		RuleVersion: version}
	h.ID = h.DeriveID(id)
	b, _ := hit.Marshal(h)
	return Message{Offset: offset, Value: b}
}

// excludedHitTraffic: a session from partner.example (a referral under
// version 1), a bot's hit excluded under version 2, a hit stamped version
// 1 by a collection instance a moment behind, then one stamped 2.
func excludedHitTraffic() []Message {
	change := t0.Add(10 * time.Minute)
	return []Message{
		versionedHit("a", t0, "https://partner.example/p", false, 1, 0), // Referral under v1
		versionedHit("bot", change.Add(time.Minute), "", true, 2, 1),    // excluded under v2
		versionedHit("b", change.Add(2*time.Minute), "", false, 1, 2),   // stamped v1 by a collection instance a moment behind
		versionedHit("d", change.Add(3*time.Minute), "", false, 2, 3),   // stamped v2
	}
}

// applyEach applies msgs one at a time, flushing after each.
func applyEach(t *testing.T, ctx context.Context, part *Partition, msgs []Message) {
	t.Helper()
	for _, m := range msgs {
		if err := part.Apply(ctx, []Message{m}); err != nil {
			t.Fatal(err)
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHandOverAfterAnExcludedHitChangesNothing: a hit excluded under a new
// rules version does not move the visitor's live sessions to it, in
// memory as in its state, so a hit stamped with the earlier version
// derives alike whether the visitor stayed in memory or was read back by
// the next owner of its partition. (Before 2026-12-07 the excluded hit
// set the floor in memory only: the channel report depended on when a
// rebalance came.)
func TestHandOverAfterAnExcludedHitChangesNothing(t *testing.T) {
	ctx := context.Background()
	prop := excludedHitProperty(t)
	msgs := excludedHitTraffic()[:3]

	s1 := connect(t)
	applyEach(t, ctx, New(Config{Topic: "hits", Session: s1, Properties: staticProperties{prop}}), msgs)
	want := totals(t, s1, rollup.Channel)

	s2 := connect(t)
	p1 := New(Config{Topic: "hits", Session: s2, Properties: staticProperties{prop}})
	applyEach(t, ctx, p1, msgs[:2])
	if _, err := p1.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	p2 := New(Config{Topic: "hits", Session: s2, Properties: staticProperties{prop}}) // next owner, cold
	applyEach(t, ctx, p2, msgs[2:])
	got := totals(t, s2, rollup.Channel)
	t.Logf("uninterrupted: Direct %+v Referral %+v", want["Direct"].Sessions, want["Referral"].Sessions)
	t.Logf("handed over:   Direct %+v Referral %+v", got["Direct"].Sessions, got["Referral"].Sessions)
	if want["Direct"] != got["Direct"] || want["Referral"] != got["Referral"] {
		t.Errorf("channel report depends on a hand-over: uninterrupted %v, handed over %v", want, got)
	}
}

// TestCrashAfterAnExcludedHitCountsOnce: a crash after the rollups of the
// hit stamped with the earlier version were written, before its visitor's
// state (every changed visitor written at every flush: -state-max-delay=0),
// and the replay: the successor derives the visitor's sessions as the
// rollups hold them, so no session is counted twice in one channel and
// -1 in another.
func TestCrashAfterAnExcludedHitCountsOnce(t *testing.T) {
	ctx := context.Background()
	prop := excludedHitProperty(t)
	msgs := excludedHitTraffic()

	s1 := connect(t)
	applyEach(t, ctx, New(Config{Topic: "hits", Session: s1, Properties: staticProperties{prop}}), msgs)
	want := totals(t, s1, rollup.Channel)

	s2 := connect(t)
	cfg := Config{Topic: "hits", Session: s2, Properties: staticProperties{prop}}
	p1 := New(cfg)
	applyEach(t, ctx, p1, msgs[:2]) // a, bot: written, state included; committed through 1
	if err := p1.Apply(ctx, msgs[2:3]); err != nil {
		t.Fatal(err)
	}
	p1.w.beforeJob = func(job []stmt) error {
		for _, s := range job {
			if s.cql == cqlSaveVisitor {
				return errors.New("crash")
			}
		}
		return nil
	}
	if _, err := p1.Flush(ctx); err == nil {
		t.Fatal("flush did not crash")
	}
	p2 := New(cfg) // restarted: consumes again from offset 2
	applyEach(t, ctx, p2, msgs[2:])
	if _, err := p2.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := totals(t, s2, rollup.Channel)
	t.Logf("uninterrupted: Direct %d sessions, Referral %d", want["Direct"].Sessions, want["Referral"].Sessions)
	t.Logf("after crash:   Direct %d sessions, Referral %d", got["Direct"].Sessions, got["Referral"].Sessions)
	t.Logf("source_medium after crash: %v", totals(t, s2, rollup.SourceMedium))
	if want["Direct"] != got["Direct"] || want["Referral"] != got["Referral"] {
		t.Errorf("after a crash the channel report differs: uninterrupted %+v, after crash %+v", want, got)
	}
}

// TestSessionRowRecordsTheRulesItWasDerivedUnder: a session re-derived
// under a new rules version (a referral exclusion added: its source is now
// Direct) is stored with that version, as docs/processing.md says; it kept
// its first hit's, evaluated under the version before.
func TestSessionRowRecordsTheRulesItWasDerivedUnder(t *testing.T) {
	ctx := context.Background()
	v2 := rules.Defaults()
	v2.ReferralExclusions = []string{"news.example.org"}
	c1, c2 := compile(t, rules.Defaults(), 1), compile(t, v2, 2)
	p := &Property{ID: propID, Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c2 },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: c1, 2: c2}[n] }}
	stamp := func(h *hit.Hit, v int) *hit.Hit { h.RuleVersion = v; return h }
	s := connect(t)
	run(t, ctx, newPartition(s, p), aMsgs(0,
		stamp(aHit("A", "a1", t0, t0, "https://shop.example/", "https://news.example.org/x"), 1),
		stamp(aHit("A", "a2", t0.Add(time.Minute), t0.Add(time.Minute), "https://shop.example/b", ""), 2)), 10)
	rows := strings.Split(dumptest.Tables(t, s, "sessions_by_hour"), "\n")
	if len(rows) != 1 || !strings.Contains(rows[0], "channel=Direct") || !strings.Contains(rows[0], "rule_version=2") {
		t.Fatalf("the session re-derived under version 2: %q; want one row, Direct, rule_version=2", rows)
	}
}
