package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/gocql/gocql"
)

func aHit(client, id string, at, recv time.Time, url, ref string) *hit.Hit {
	return &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview,
		Origin: hit.OriginBrowser, Time: at, ReceivedAt: recv, URL: url, Hostname: "shop.example",
		Path: "/", Referrer: ref, Country: "DE", DeviceCategory: "desktop", Browser: "Firefox", ID: id}
}

func aMsgs(off0 int64, hs ...*hit.Hit) []Message {
	var out []Message
	for i, h := range hs {
		b, _ := hit.Marshal(h)
		out = append(out, Message{Offset: off0 + int64(i), Value: b})
	}
	return out
}

func dailyRow(t *testing.T, s *gocql.Session, day time.Time, report, dim string) (sessions, newUsers int64, found bool) {
	t.Helper()
	err := s.Query("SELECT sessions, new_users FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ? AND dimension = ? AND shard = 0",
		propID, day, report, dim).Scan(&sessions, &newUsers)
	if err == gocql.ErrNotFound {
		return 0, 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return sessions, newUsers, true
}

// rulesChangeAt returns a property in UTC whose rules are c1 before
// changed and c2 from then on; byVersion also looks each up by its
// version (1 and 2), as a processor does for the version a hit carries.
func rulesChangeAt(changed time.Time, shards int, c1, c2 *rules.Compiled, byVersion bool) *Property {
	p := &Property{ID: propID, Location: time.UTC, Shards: shards, RulesAt: func(at time.Time) *rules.Compiled {
		if at.Before(changed) {
			return c1
		}
		return c2
	}}
	if byVersion {
		p.RulesVersion = func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: c1, 2: c2}[n] }
	}
	return p
}

func compile(t *testing.T, r rules.Rules, v int) *rules.Compiled {
	c, err := rules.Compile(r, v, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A resumed job (the days it finished skipped) knows the first sessions
// those days hold: their users are not new again on the days after.
func TestResumedJobKeepsFirstSessions(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	c := compile(t, rules.Defaults(), 1)
	p := &Property{ID: propID, Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c }}
	d0 := t0
	d1 := t0.Add(24 * time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(0,
		aHit("A", "a1", d0, d0.Add(time.Second), "https://shop.example/", ""),
		aHit("A", "a2", d1, d1.Add(time.Second), "https://shop.example/", "")), 10)
	day0, day1 := session.LocalDay(d0, time.UTC), session.LocalDay(d1, time.UTC)
	_, nu, _ := dailyRow(t, s, day1, "total", "")
	t.Logf("live: new_users on day1 = %d", nu)
	now := t0.Add(10 * 24 * time.Hour)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return now }}
	if err := rp.Run(ctx, p, day0, day1, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, nu, _ = dailyRow(t, s, day1, "total", "")
	t.Logf("full job: new_users on day1 = %d", nu)
	// The same job resumed after day0 was done.
	rp2 := &Reprocessor{Session: s, Now: func() time.Time { return now }}
	if err := rp2.Run(ctx, p, day0, day1, RulesCurrent, func(d time.Time) bool { return d.Equal(day0) }, nil); err != nil {
		t.Fatal(err)
	}
	_, nu, _ = dailyRow(t, s, day1, "total", "")
	if nu != 0 {
		t.Errorf("resumed job: new_users on day1 = %d, want 0 (A first seen on day0)", nu)
	}
}

// A visitor back days after a rules change does not derive its last,
// long-closed session again under the new rules (its stored state still
// holds it live): the closed day keeps what its hits were received under,
// and a day reprocessed since gets no negative row.
func TestReturningVisitorLeavesClosedDays(t *testing.T) {
	for _, reprocessFirst := range []bool{false, true} {
		ctx := context.Background()
		s := connect(t)
		v2 := rules.Defaults()
		v2.Channels = []rules.ChannelRule{{Name: "Newsletter", Source: "^news$"}}
		c1, c2 := compile(t, rules.Defaults(), 1), compile(t, v2, 2)
		changed := t0.Add(3 * 24 * time.Hour)
		p := rulesChangeAt(changed, 1, c1, c2, true)
		day0 := session.LocalDay(t0, time.UTC)
		run(t, ctx, newPartition(s, p), aMsgs(0, aHit("A", "a1", t0, t0.Add(time.Second), "https://shop.example/?utm_source=news&utm_medium=email", "")), 10)
		if reprocessFirst {
			rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(4 * 24 * time.Hour) }}
			if err := rp.Run(ctx, p, day0, day0, RulesCurrent, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		back := t0.Add(5 * 24 * time.Hour)
		run(t, ctx, newPartition(s, p), aMsgs(10, aHit("A", "a2", back, back.Add(time.Second), "https://shop.example/", "")), 10)
		e, _, ef := dailyRow(t, s, day0, "channel", "Email")
		n, _, nf := dailyRow(t, s, day0, "channel", "Newsletter")
		t.Logf("reprocessFirst=%v: day0 channel Email sessions=%d (row %v), Newsletter sessions=%d (row %v)", reprocessFirst, e, ef, n, nf)
		var ch string
		var rv int
		if err := s.Query("SELECT channel, rule_version FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ? AND session_id = 'a1'", propID, day0, dayHours).Scan(&ch, &rv); err != nil {
			t.Fatal(err)
		}
		t.Logf("   session a1 row: channel=%s rule_version=%d", ch, rv)
		if !reprocessFirst && (e != 1 || n != 0) {
			t.Errorf("live only: day0 (closed, all hits under v1) changed by a hit 5 days later under v2")
		}
		if reprocessFirst && (e < 0 || n != 1) {
			t.Errorf("after reprocess (current): day0 channel Email sessions=%d, want no row/0", e)
		}
	}
}

// Historical reprocessing of a day with a rules change mid-day derives
// each session as live processing did (hits in the order received, each
// under its version), whatever the hits' IDs: it used the settings of the
// visitor's hit with the largest ID for all its sessions.
func TestHistoricalReprocessWithMidDayRulesChange(t *testing.T) {
	ctx := context.Background()
	v2 := rules.Defaults()
	v2.ReferralExclusions = []string{"news.example.org"}
	c1, c2 := compile(t, rules.Defaults(), 1), compile(t, v2, 2)
	base := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	changed := base.Add(18 * time.Hour)
	p := rulesChangeAt(changed, 1, c1, c2, true)
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	for _, lastID := range []string{"z-evening", "0-evening"} {
		s := connect(t)
		run(t, ctx, newPartition(s, p), aMsgs(0,
			aHit("B", "m-morning", at(8), at(8).Add(time.Second), "https://shop.example/", "https://news.example.org/a"),
			aHit("B", "n-afternoon", at(14), at(14).Add(time.Second), "https://shop.example/", ""),
			aHit("B", lastID, at(20), at(20).Add(time.Second), "https://shop.example/", "")), 1)
		day := session.LocalDay(base, time.UTC)
		r, _, _ := dailyRow(t, s, day, "channel", "Referral")
		d, _, _ := dailyRow(t, s, day, "channel", "Direct")
		t.Logf("evening ID %q live: Referral=%d Direct=%d", lastID, r, d)
		rp := &Reprocessor{Session: s, Now: func() time.Time { return base.Add(10 * 24 * time.Hour) }}
		if err := rp.Run(ctx, p, day, day, RulesHistorical, nil, nil); err != nil {
			t.Fatal(err)
		}
		r2, _, _ := dailyRow(t, s, day, "channel", "Referral")
		d2, _, _ := dailyRow(t, s, day, "channel", "Direct")
		t.Logf("evening ID %q historical reprocess: Referral=%d Direct=%d", lastID, r2, d2)
		if r2 != r || d2 != d {
			t.Errorf("evening ID %q: historical reprocess changed the 08:00 session's channel (Referral %d->%d)", lastID, r, r2)
		}
	}
}

// A day whose archive has expired (or never held its hits) is left as it
// is, not emptied; one past the archive's retention is refused before its
// archive is read (TestResumedJobRefusesDaysPastRetention in package
// reprocess: its hits expire over a day, and a part of them would replace
// the day's rows).
func TestDayWithoutArchiveIsKept(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	c := compile(t, rules.Defaults(), 1)
	p := &Property{ID: propID, Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c }}
	run(t, ctx, newPartition(s, p), aMsgs(0, aHit("A", "a1", t0, t0.Add(time.Second), "https://shop.example/", "")), 10)
	day := session.LocalDay(t0, time.UTC)
	// What the TTL does 396 days later.
	if err := s.Query("DELETE FROM raw_hit_blocks_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ?", propID, day, dayHours).Exec(); err != nil {
		t.Fatal(err)
	}
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(400 * 24 * time.Hour) }}
	if err := rp.Run(ctx, p, day, day, RulesCurrent, nil, nil); !errors.Is(err, ErrPastRetention) {
		t.Fatalf("reprocess a day past the archive's retention: %v, want ErrPastRetention", err)
	}
	rp = &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(30 * 24 * time.Hour) }}
	if err := rp.Run(ctx, p, day, day, RulesCurrent, nil, nil); err != nil {
		t.Fatalf("reprocess: %v", err)
	}
	n, _, found := dailyRow(t, s, day, "total", "")
	if !found || n != 1 {
		t.Errorf("after reprocessing a day past archive retention: total sessions=%d (row %v), want 1 (or a refusal)", n, found)
	}
	var rows int
	if err := s.Query("SELECT COUNT(*) FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ?", propID, day, dayHours).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("after reprocessing a day past archive retention: %d session rows, want 1", rows)
	}
}

// A day archived under more shards than the property has now (operators
// may lower the count) is reprocessed whole: the hits of the shards past
// the count were left out. So too when a build before migration 17
// archived and stored the day (raw_hit_blocks, sessions, ...): the old
// archive is probed past the count as well, and the rows the old tables
// hold in every shard are deleted.
func TestReprocessAfterShardsLowered(t *testing.T) {
	for _, beforeUpgrade := range []bool{false, true} {
		t.Run(fmt.Sprintf("before the upgrade %v", beforeUpgrade), func(t *testing.T) {
			testReprocessAfterShardsLowered(t, beforeUpgrade)
		})
	}
}

func testReprocessAfterShardsLowered(t *testing.T, beforeUpgrade bool) {
	ctx := context.Background()
	c := compile(t, rules.Defaults(), 1)
	property := func(shards int) *Property {
		return &Property{ID: propID, Location: time.UTC, Shards: shards, RulesAt: func(time.Time) *rules.Compiled { return c }}
	}
	msgs := traffic(40, 6)
	s := connect(t)
	run(t, ctx, newPartition(s, property(4)), msgs, 25)
	if beforeUpgrade {
		asBeforeTheUpgrade(t, s)
		if err := s.Query("TRUNCATE raw_hit_blocks_by_hour").Exec(); err != nil {
			t.Fatal(err)
		}
	}
	day := session.LocalDay(t0, time.UTC)
	sum := func() (n int64) {
		iter := s.Query("SELECT sessions FROM rollup_daily WHERE property_id = ? AND day = ? AND report = 'total'", propID, day).Iter()
		var x int64
		for iter.Scan(&x) {
			n += x
		}
		iter.Close()
		return
	}
	before := sum()
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(30 * 24 * time.Hour) }}
	if err := rp.Run(ctx, property(2), day, day, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if after := sum(); after != before {
		t.Errorf("sessions on the day: %d before reprocessing under 2 shards (archived under 4), %d after", before, after)
	}
	for _, old := range []string{"sessions", "pageviews", "events"} {
		if n := count(t, s, old); n != 0 {
			t.Errorf("%d rows left in %s after the day was reprocessed", n, old)
		}
	}
}

// Collection instances learn of a new rules version at slightly different
// moments, so a visitor's hits may carry version 2, then 1. While its
// sessions are live they stay under the later version: a visitor loaded
// from its state assumes its sessions were derived under the latest
// version among their hits, and a hit stamped with an earlier one
// re-derived them under that one, so after a reload the rollups held
// other sessions than the visitor's (negative rows).
func TestStampedVersionsGoingBack(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	v2 := rules.Defaults()
	v2.ReferralExclusions = []string{"partner.example"}
	c1, c2 := compile(t, rules.Defaults(), 1), compile(t, v2, 2)
	p := &Property{ID: propID, Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c2 },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: c1, 2: c2}[n] }}
	at := t0.Add(10 * time.Hour)
	stamp := func(h *hit.Hit, v int) *hit.Hit { h.RuleVersion = v; return h }
	run(t, ctx, newPartition(s, p), aMsgs(0,
		stamp(aHit("A", "a1", at, at, "https://shop.example/", "https://partner.example/x"), 2),
		stamp(aHit("A", "a2", at.Add(time.Minute), at.Add(time.Minute), "https://shop.example/b", ""), 1)), 10)
	// A new owner loads the visitor from its state.
	run(t, ctx, newPartition(s, p), aMsgs(2, stamp(aHit("A", "a3", at.Add(2*time.Minute), at.Add(2*time.Minute), "https://shop.example/c", ""), 2)), 10)
	day := session.LocalDay(at, time.UTC)
	var channels []string
	iter := s.Query("SELECT dimension, sessions FROM rollup_daily WHERE property_id = ? AND day = ? AND report = 'channel'", propID, day).Iter()
	var dim string
	var n int64
	for iter.Scan(&dim, &n) {
		if n != 0 {
			channels = append(channels, fmt.Sprintf("%s=%d", dim, n))
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if len(channels) != 1 || channels[0] != "Direct=1" {
		t.Errorf("channel rows %v, want Direct=1 (partner.example excluded by version 2, under which the session stays)", channels)
	}
}

// errStop stops a reprocessing run in a test.
var errStop = errors.New("stopped")

// movedChannels returns a 2-shard property whose version 2, in effect from
// changed, excludes news.example.org as a referrer (the Referral sessions
// of traffic become Direct), and the day of t0 processed live under
// version 1.
func movedChannels(t *testing.T, s *gocql.Session, changed time.Time) (*Property, time.Time) {
	t.Helper()
	v2 := rules.Defaults()
	v2.ReferralExclusions = []string{"news.example.org"}
	c1, c2 := compile(t, rules.Defaults(), 1), compile(t, v2, 2)
	p := rulesChangeAt(changed, 2, c1, c2, false)
	run(t, context.Background(), newPartition(s, p), traffic(40, 5), 25)
	return p, session.LocalDay(t0, time.UTC)
}

// channelSums returns, by shard, the sessions of the day's channel rows
// summed and those of its total row, and the sessions of its Referral row.
func channelSums(t *testing.T, s *gocql.Session, day time.Time) (channels, total, referral map[int16]int64) {
	t.Helper()
	channels, total, referral = map[int16]int64{}, map[int16]int64{}, map[int16]int64{}
	for _, report := range []string{"channel", "total"} {
		iter := s.Query("SELECT dimension, shard, sessions FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?", propID, day, report).Iter()
		var dim string
		var shard int16
		var n int64
		for iter.Scan(&dim, &shard, &n) {
			switch {
			case report == "total":
				total[shard] += n
			case dim == "Referral":
				referral[shard] += n
				fallthrough
			default:
				channels[shard] += n
			}
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return channels, total, referral
}

// A run stopped right after a shard's rows were written (a restart, a
// Cassandra error, a lost lease) leaves that shard's rows whole: its
// channel rows add up to its sessions. Its rows that the new rules no
// longer have were deleted only once the whole day was done, so the
// Referral row of sessions now Direct kept counting them beside the new
// Direct row, until someone resumed the job.
func TestStoppedReprocessLeavesShardsWhole(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	changed := t0.Add(365 * 24 * time.Hour)
	p, day := movedChannels(t, s, changed)
	_, _, referral := channelSums(t, s, day)
	if referral[0] == 0 {
		t.Fatal("shard 0 has no Referral sessions under version 1: the test would prove nothing")
	}
	now := changed.Add(time.Hour)
	d := newDayRun(s, p, day, RulesCurrent, p.RulesAt(now), NewFirstSessions(p, day, day), now)
	d.afterShards = func(shards []int) error {
		if slices.Contains(shards, 0) {
			return errStop
		}
		return nil
	}
	if err := d.run(ctx); !errors.Is(err, errStop) {
		t.Fatalf("run stopped after shard 0: %v, want it stopped", err)
	}
	channels, total, referral := channelSums(t, s, day)
	if referral[0] != 0 {
		t.Errorf("shard 0 reprocessed: Referral sessions %d, want none (news.example.org excluded)", referral[0])
	}
	for shard := range int16(2) {
		if channels[shard] != total[shard] {
			t.Errorf("shard %d after a run stopped after shard 0: channel rows sum to %d sessions, the total row says %d", shard, channels[shard], total[shard])
		}
	}
}

// The rows of a shard in a rollup partition are replaced in one batch: its
// new rows and the deletes of those it no longer has, so a reader sees the
// old rows or the new ones, never both.
func TestReprocessReplacesAShardsRowsInOneBatch(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	changed := t0.Add(365 * 24 * time.Hour)
	p, day := movedChannels(t, s, changed)
	now := changed.Add(time.Hour)
	type group struct{ partition, shard string }
	var mu sync.Mutex
	batches := map[group]map[int]bool{} // the batches holding a group's statements
	var jobs, mixed int
	d := newDayRun(s, p, day, RulesCurrent, p.RulesAt(now), NewFirstSessions(p, day, day), now)
	d.beforeJob = func(job []stmt) error {
		mu.Lock()
		defer mu.Unlock()
		jobs++
		var inserts, deletes bool
		for _, st := range job {
			shard := 3 // the shard's place among the key's values
			switch {
			case strings.HasPrefix(st.partition, "d/"):
				shard = 4
			case !strings.HasPrefix(st.partition, "h/") && !strings.HasPrefix(st.partition, "f/"):
				continue // not a rollup
			}
			inserts = inserts || strings.HasPrefix(st.cql, "INSERT")
			deletes = deletes || strings.HasPrefix(st.cql, "DELETE")
			g := group{st.partition, fmt.Sprint(st.args[shard])}
			if batches[g] == nil {
				batches[g] = map[int]bool{}
			}
			batches[g][jobs] = true
		}
		if inserts && deletes {
			mixed++
		}
		return nil
	}
	if err := d.run(ctx); err != nil {
		t.Fatal(err)
	}
	for g, in := range batches {
		if len(in) != 1 {
			t.Errorf("the rows of shard %s in %s were written in %d batches, want 1", g.shard, g.partition, len(in))
		}
	}
	if mixed == 0 {
		t.Error("no batch both wrote and deleted rollup rows: the test proves nothing")
	}
}

// The rows of the reports processing no longer writes (rollup.RetiredReports:
// a build before 2026-12-06 wrote them) are deleted when their day is
// reprocessed, shard by shard with the day's other rows, and nothing
// writes them again.
func TestReprocessDeletesRetiredReports(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	changed := t0.Add(365 * 24 * time.Hour)
	p, day := movedChannels(t, s, changed)
	retired := func() int {
		t.Helper()
		n := 0
		for _, report := range rollup.RetiredReports {
			iter := s.Query("SELECT dimension FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?", propID, day, report).Iter()
			n += iter.NumRows()
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	if n := retired(); n != 0 {
		t.Fatalf("live processing wrote %d rows of retired reports", n)
	}
	for shard := range 2 { // as the build before wrote them, on both shards
		for _, report := range rollup.RetiredReports {
			r := rollup.Row{Day: day, Report: report, Dimension: "news.example.org", Shard: shard, Metrics: rollup.Metrics{Sessions: 1}}
			vals, err := r.Values()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Query(rollup.InsertDaily, append(append([]any{propID}, vals...), int64(1), nil)...).Exec(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := retired(); n != 4 {
		t.Fatalf("%d rows of retired reports stored, want 4", n)
	}
	now := changed.Add(time.Hour)
	if err := newDayRun(s, p, day, RulesCurrent, p.RulesAt(now), NewFirstSessions(p, day, day), now).run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := retired(); n != 0 {
		t.Errorf("%d rows of retired reports left after reprocessing their day, want 0", n)
	}
}

// A day reprocessed again by a job over a shorter range under the same
// rules keeps its rows: running a day twice writes the same rows. A user's
// first session before the range is taken from site_users, whose
// first-touch columns reprocessing re-derives: a user whose first session
// a first job moved before the second's range (its earlier hits excluded
// live, kept by the rules reprocessed with) is not new again on the day
// live processing saw first.
func TestSubRangeJobKeepsFirstSessions(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 5, true)
	d2 := t0.Add(48 * time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(0, aPromo("A", "a0", ""), aHit("A", "a2", d2, d2.Add(time.Second), "https://shop.example/", "")), 10)
	day0, day1, day2 := session.LocalDay(t0, time.UTC), session.LocalDay(t0.Add(24*time.Hour), time.UTC), session.LocalDay(d2, time.UTC)
	newUsers := func(day time.Time) int64 { _, n, _ := dailyRow(t, s, day, "total", ""); return n }
	if newUsers(day0) != 0 || newUsers(day2) != 1 {
		t.Fatalf("live: new users %d on day 0, %d on day 2; want 0, 1", newUsers(day0), newUsers(day2))
	}
	rp := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(10 * 24 * time.Hour) }}
	if err := rp.Run(ctx, p, day0, day2, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if newUsers(day0) != 1 || newUsers(day2) != 0 {
		t.Fatalf("after a job over days 0-2: new users %d on day 0, %d on day 2; want 1, 0", newUsers(day0), newUsers(day2))
	}
	if first, _ := firstSeen(t, s, "A"); !first.Equal(t0) {
		t.Fatalf("after a job over days 0-2: user A first seen %v, want %v (the promo page, kept now)", first, t0)
	}
	if err := rp.Run(ctx, p, day1, day2, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if newUsers(day2) != 0 {
		t.Errorf("day 2 reprocessed again by a job over days 1-2 under the same rules: new users %d, was 0 (user A new on day 0 and on day 2)", newUsers(day2))
	}
}

// aPromo returns a pageview of /promo (with query) at t0, which the
// reprocessing tests' rules exclude in one version and keep in the other.
func aPromo(client, id, query string) *hit.Hit {
	h := aHit(client, id, t0, t0.Add(time.Second), "https://shop.example/promo"+query, "")
	h.Path = "/promo"
	return h
}

// promoRuleChangesAt returns a property (UTC, one shard) whose rules
// change days after t0: they exclude /promo until then (excludedFirst),
// or from then on.
func promoRuleChangesAt(t *testing.T, days int, excludedFirst bool) *Property {
	promo := rules.Defaults()
	promo.Pages.Exclude = []string{"^/promo"}
	c1, c2 := compile(t, promo, 1), compile(t, rules.Defaults(), 2)
	if !excludedFirst {
		c1, c2 = compile(t, rules.Defaults(), 1), compile(t, promo, 2)
	}
	return rulesChangeAt(t0.AddDate(0, 0, days), 1, c1, c2, false)
}

// keepPromoOfB runs a job with the current rules (promoRuleChangesAt's, once
// they keep /promo) over t0's day and the next, at now, and checks that user
// B's first session is then its /promo pageview (aPromo, at t0), which
// live processing excluded.
func keepPromoOfB(t *testing.T, ctx context.Context, s *gocql.Session, p *Property, now time.Time) {
	t.Helper()
	day0 := session.LocalDay(t0, time.UTC)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return now }}
	if err := rp.Run(ctx, p, day0, day0.AddDate(0, 0, 1), RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if first, _ := firstSeen(t, s, "B"); !first.Equal(t0) {
		t.Fatalf("after the job: user B first seen %v, want %v (the promo page, kept now)", first, t0)
	}
}

// firstSeen reads a user's first_seen and first source from site_users
// (zero and "" when null).
func firstSeen(t *testing.T, s *gocql.Session, client string) (time.Time, string) {
	t.Helper()
	var first time.Time
	var source string
	if err := s.Query("SELECT first_seen, first_source FROM site_users WHERE property_id = ? AND client_id = ?", propID, client).Scan(&first, &source); err != nil {
		t.Fatalf("users row of %s: %v", client, err)
	}
	return first, source
}

// Reprocessing re-derives the users rows' first session: a user whose
// first session the range no longer has (the rules exclude it now) gets
// the first session stored after the range, or none; and live processing
// does not write its own view of a long frozen first session back over
// that when the user returns.
func TestReprocessRederivesUsersFirstSessions(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 5, false)
	d3, d8 := t0.Add(3*24*time.Hour), t0.Add(8*24*time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(0, aPromo("A", "a0", "?utm_source=news&utm_medium=email"), aPromo("B", "b0", "?utm_source=news&utm_medium=email"), aHit("A", "a3", d3, d3.Add(time.Second), "https://shop.example/", "")), 10)
	if first, source := firstSeen(t, s, "A"); !first.Equal(t0) || source != "news" {
		t.Fatalf("live: user A first seen %v from %q, want %v from news", first, source, t0)
	}
	day0, day1 := session.LocalDay(t0, time.UTC), session.LocalDay(t0.Add(24*time.Hour), time.UTC)
	var log strings.Builder
	rp := &Reprocessor{Session: s, Log: slog.New(slog.NewTextHandler(&log, nil)), Now: func() time.Time { return t0.Add(10 * 24 * time.Hour) }}
	if err := rp.Run(ctx, p, day0, day1, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	// A's first session left the range for day 3, which still counts it
	// returning: the job says to reprocess through day 3.
	if !strings.Contains(log.String(), "users=1 reprocess_through=2026-07-04") {
		t.Errorf("the job's log does not name the user whose first session left the range:\n%s", log.String())
	}
	if first, source := firstSeen(t, s, "A"); !first.Equal(d3) || source != "(direct)" {
		t.Errorf("after the job: user A first seen %v from %q, want %v from (direct) (its session after the range)", first, source, d3)
	}
	if first, source := firstSeen(t, s, "B"); !first.IsZero() || source != "" {
		t.Errorf("after the job: user B first seen %v from %q, want none (its only session is excluded now)", first, source)
	}
	// The search after the range went as far as A's last hit, a day more,
	// and no further: B has none after the range, C no state at all.
	now := rp.Now()
	days, err := lastHitDays(ctx, s, p, []string{"A", "B", "C"}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"A": session.LocalDay(d3, time.UTC).AddDate(0, 0, 1), "B": day1, "C": session.LocalDay(now, time.UTC)}
	for c, w := range want {
		if !days[c].Equal(w) {
			t.Errorf("last day %s can have a session on: %v, want %v", c, days[c], w)
		}
	}
	// A returns: its state (loaded afresh) still holds the promo session
	// as its first, frozen long ago.
	run(t, ctx, newPartition(s, p), aMsgs(3, aHit("A", "a8", d8, d8.Add(time.Second), "https://shop.example/", "")), 10)
	if first, _ := firstSeen(t, s, "A"); !first.Equal(d3) {
		t.Errorf("after A's return: first seen %v, want %v as reprocessing derived it", first, d3)
	}
	// Run again: nothing changes.
	if err := rp.Run(ctx, p, day0, day1, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if first, _ := firstSeen(t, s, "A"); !first.Equal(d3) {
		t.Errorf("after the job ran again: first seen %v, want %v", first, d3)
	}
}

// A user all of whose hits live processing excluded (no session, no first
// session in its state), whose first session a job then derives (the
// rules keep those hits now), keeps that first session when it returns:
// live processing's view (no first session, then the return as its first)
// is not the user's first session, and writing it over the job's makes a
// later job over the return day count the user new a second time.
func TestReturningUserKeepsJobsFirstSession(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 2, true)
	run(t, ctx, newPartition(s, p), aMsgs(0, aPromo("B", "b0", "")), 10)
	day0 := session.LocalDay(t0, time.UTC)
	keepPromoOfB(t, ctx, s, p, t0.Add(4*24*time.Hour))
	// B returns (its state loaded afresh: no session in it).
	d8 := t0.Add(8 * 24 * time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(1, aHit("B", "b8", d8, d8.Add(time.Second), "https://shop.example/", "")), 10)
	if first, _ := firstSeen(t, s, "B"); !first.Equal(t0) {
		t.Errorf("after B's return: first seen %v, want %v as the job derived it", first, t0)
	}
	// A job over the return day: B was new on day 0.
	day8 := session.LocalDay(d8, time.UTC)
	rp2 := &Reprocessor{Session: s, Now: func() time.Time { return t0.Add(12 * 24 * time.Hour) }}
	if err := rp2.Run(ctx, p, day8, day8, RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, new0, _ := dailyRow(t, s, day0, "total", "")
	_, new8, _ := dailyRow(t, s, day8, "total", "")
	if new0 != 1 || new8 != 0 {
		t.Errorf("after a job over the return day: new users %d on day 0, %d on day 8; want 1, 0 (B new once)", new0, new8)
	}
}

// TestReturningUserKeepsJobsFirstSession on one partition that stays up:
// the consumer flushes a partition only while it has something pending
// (consumer.worker.flush), so a partition without hits since the visitor's
// last one never ran the flush that evicts it. The visitor, idle far past
// IdleEviction, must still be read afresh at its return ("One still in
// memory (active in the last ten minutes) when the job writes its row does
// not see it", docs/processing.md, "Users"), not taken from memory with a
// users row of before the job.
func TestIdleVisitorKeepsJobsFirstSessionOnQuietPartition(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 2, true)
	clock := t0.Add(2 * time.Second)
	part := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}, Now: func() time.Time { return clock }})
	run(t, ctx, part, aMsgs(0, aPromo("B", "b0", "")), 10)
	if part.Pending() {
		t.Fatal("pending after the flush: the consumer would flush again")
	}
	clock = t0.Add(4 * 24 * time.Hour)
	keepPromoOfB(t, ctx, s, p, clock)
	// No hit on the partition for days (nothing pending: no flush), then
	// B returns.
	d8 := t0.Add(8 * 24 * time.Hour)
	clock = d8.Add(2 * time.Second)
	run(t, ctx, part, aMsgs(1, aHit("B", "b8", d8, d8.Add(time.Second), "https://shop.example/", "")), 10)
	if first, _ := firstSeen(t, s, "B"); !first.Equal(t0) {
		t.Errorf("after B's return: first seen %v, want %v as the job derived it", first, t0)
	}
	var isNew bool
	if err := s.Query("SELECT new_user FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour = ?",
		propID, session.LocalDay(d8, time.UTC), d8.Hour()).Scan(&isNew); err != nil {
		t.Fatal(err)
	}
	if isNew {
		t.Error("B's return is a new user's session; want returning (its first session is the job's, on day 0)")
	}
}

// A day run again under the same rules derives the users rows' first
// sessions it wrote before, and writes none of them again ("where it
// differs from what is stored"): also when the hits' times, as collection
// gives them, are finer than the milliseconds site_users stores.
func TestReprocessWritesUnchangedUsersOnce(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := testProperty(t, rules.Defaults())
	at := t0.Add(123456789 * time.Nanosecond) // collection's times: to the nanosecond
	run(t, ctx, newPartition(s, p), aMsgs(0, aHit("A", "a0", at, at.Add(time.Second), "https://shop.example/?utm_source=news&utm_medium=email", "")), 10)
	day := session.LocalDay(t0, time.UTC)
	now := t0.Add(4 * 24 * time.Hour)
	users := func() int {
		var mu sync.Mutex
		n := 0
		d := newDayRun(s, p, day, RulesCurrent, p.RulesAt(now), NewFirstSessions(p, day, day), now)
		d.beforeJob = func(job []stmt) error {
			mu.Lock()
			defer mu.Unlock()
			for _, st := range job {
				if st.cql == cqlUserFirst {
					n++
				}
			}
			return nil
		}
		if err := d.run(ctx); err != nil {
			t.Fatal(err)
		}
		return n
	}
	users()
	if first, source := firstSeen(t, s, "A"); !first.Equal(at.Truncate(time.Millisecond)) || source != "news" {
		t.Fatalf("user A first seen %v from %q, want %v from news", first, source, at.Truncate(time.Millisecond))
	}
	if n := users(); n != 0 {
		t.Errorf("the day run again wrote %d users rows, want none: nothing changed", n)
	}
}

// A user whose first session the job moves from one day of its range to a
// later day of the same range has not crossed the range's end, even when
// the user also has sessions after the range: the days after the range
// counted the user returning before the job and still should. Deriving the
// first day alone moves the users row to the session after the range, and
// the later day moves it back into the range; neither is a crossing of the
// job's.
func TestReprocessFirstSessionMovedWithinRangeIsNotPastRange(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	p := promoRuleChangesAt(t, 5, false)
	d1, d3 := t0.Add(24*time.Hour), t0.Add(3*24*time.Hour)
	run(t, ctx, newPartition(s, p), aMsgs(0,
		aPromo("A", "a0", "?utm_source=news&utm_medium=email"),
		aHit("A", "a1", d1, d1.Add(time.Second), "https://shop.example/", ""),
		aHit("A", "a3", d3, d3.Add(time.Second), "https://shop.example/", "")), 10)
	if first, _ := firstSeen(t, s, "A"); !first.Equal(t0) {
		t.Fatalf("live: user A first seen %v, want %v", first, t0)
	}
	day0, day1 := session.LocalDay(t0, time.UTC), session.LocalDay(d1, time.UTC)
	var log strings.Builder
	rp := &Reprocessor{Session: s, Log: slog.New(slog.NewTextHandler(&log, nil)), Now: func() time.Time { return t0.Add(10 * 24 * time.Hour) }}
	past := 0
	err := rp.Run(ctx, p, day0, day1, RulesCurrent, nil, func(pr Progress) error {
		past = pr.PastRangeUsers
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := firstSeen(t, s, "A"); !first.Equal(d1) {
		t.Errorf("after the job: user A first seen %v, want %v (its session on day 1, in the range)", first, d1)
	}
	if past != 0 || strings.Contains(log.String(), "across the end of its range") {
		t.Errorf("A's first session moved from day 0 to day 1, both in the range: users past the range %d, want 0; log:\n%s", past, log.String())
	}
}
