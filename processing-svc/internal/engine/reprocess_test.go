package engine

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/gocql/gocql"
)

// TestReprocessEqualsAlwaysHavingTheRule: traffic processed live under
// rules v1, then the rules change to v2 and the days are reprocessed with
// the current rules. Every derived table must then equal a run that
// processed the same traffic live under v2 from the start.
func TestReprocessEqualsAlwaysHavingTheRule(t *testing.T) {
	for _, shards := range []int{1, 4} { // one piece, and shard by shard
		t.Run(fmt.Sprint("shards=", shards), func(t *testing.T) { testReprocessEqualsAlwaysHavingTheRule(t, shards) })
	}
}

func testReprocessEqualsAlwaysHavingTheRule(t *testing.T, shards int) {
	ctx := context.Background()
	v1 := rules.Defaults()
	v2 := rules.Defaults()
	v2.Pages.Exclude = []string{"^/p/3"}
	v2.Goals = []rules.Goal{{ID: "video", Name: "Watched a video", Event: &rules.EventMatch{Category: "video"}}}
	v2.Channels = []rules.ChannelRule{{Name: "Newsletter", Source: "^news$"}}
	c1, err := rules.Compile(v1, 1, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := rules.Compile(v2, 2, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	changed := t0.Add(365 * 24 * time.Hour) // the rule change, long after the traffic
	now := changed.Add(time.Hour)
	msgs := traffic(40, 5)

	// The reference: v2 in place from the start.
	want := connect(t)
	always := &Property{ID: propID, Location: time.UTC, Shards: shards, RulesAt: func(time.Time) *rules.Compiled { return c2 }}
	run(t, ctx, newPartition(want, always), msgs, 25)

	// Live under v1, then v2 effective from `changed`, then reprocess.
	got := connect(t)
	versioned := rulesChangeAt(changed, shards, c1, c2, false)
	run(t, ctx, newPartition(got, versioned), msgs, 25)
	if dumpDerived(t, got) == dumpDerived(t, want) {
		t.Fatal("v1 and v2 give the same tables: the test would prove nothing")
	}
	live := connect(t) // what live processing under v1 gave, to tell a change
	run(t, ctx, newPartition(live, versioned), msgs, 25)
	from := session.LocalDay(t0, time.UTC)
	rp := &Reprocessor{Session: got, Now: func() time.Time { return now }}
	var days int
	err = rp.Run(ctx, versioned, from, from.AddDate(0, 0, 2), RulesCurrent, nil, func(p Progress) error { days = p.Done; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if days != 3 {
		t.Fatalf("progress reported %d days, want 3", days)
	}
	if g, w := dumpDerived(t, got), dumpDerived(t, want); g != w {
		t.Fatalf("after reprocessing with the current rules:\n%s", diff(w, g))
	}
	if dumpUsers(t, got) == dumpUsers(t, live) {
		t.Fatal("v1 and v2 give the same users: the test would prove nothing about them")
	}
	if g, w := dumpUsers(t, got), dumpUsers(t, want); g != w {
		t.Fatalf("users after reprocessing with the current rules:\n%s", diff(w, g))
	}
	// Running it again changes nothing.
	before, beforeUsers := dumpDerived(t, got), dumptest.Tables(t, got, "site_users")
	if err := rp.Run(ctx, versioned, from, from.AddDate(0, 0, 2), RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if after := dumpDerived(t, got); after != before {
		t.Fatalf("a second reprocessing changed the tables:\n%s", diff(before, after))
	}
	if after := dumptest.Tables(t, got, "site_users"); after != beforeUsers {
		t.Fatalf("a second reprocessing changed site_users:\n%s", diff(beforeUsers, after))
	}

	// Reprocessing with the rules of the time restores the v1 tables.
	if err := rp.Run(ctx, versioned, from, from.AddDate(0, 0, 2), RulesHistorical, nil, nil); err != nil {
		t.Fatal(err)
	}
	ref := connect(t)
	run(t, ctx, newPartition(ref, &Property{ID: propID, Location: time.UTC, Shards: shards, RulesAt: func(time.Time) *rules.Compiled { return c1 }}), msgs, 25)
	if g, w := dumpDerived(t, got), dumpDerived(t, ref); g != w {
		t.Fatalf("after reprocessing with the historical rules:\n%s", diff(w, g))
	}
	if g, w := dumpUsers(t, got), dumpUsers(t, ref); g != w {
		t.Fatalf("users after reprocessing with the historical rules:\n%s", diff(w, g))
	}
}

// dumpUsers renders each user of site_users as reports would count them:
// first seen and first touch, session count and last seen (the row's
// base and its days: userRow.total, computed here again). A row without a
// session or a first session (its every hit excluded now) is no user.
func dumpUsers(t *testing.T, s *gocql.Session) string {
	t.Helper()
	iter := s.Query("SELECT client_id, first_seen, first_source, first_medium, first_campaign, first_channel, session_count, last_seen, day_sessions, day_last_seen FROM site_users").Iter()
	var lines []string
	var client, source, medium, campaign, channel string
	var first, last time.Time
	var sessions int
	var days map[time.Time]int
	var lasts map[time.Time]time.Time
	for iter.Scan(&client, &first, &source, &medium, &campaign, &channel, &sessions, &last, &days, &lasts) {
		for day, n := range days {
			if n > 0 {
				sessions += n
				if lasts[day].After(last) {
					last = lasts[day]
				}
			}
		}
		if sessions > 0 || !first.IsZero() {
			lines = append(lines, fmt.Sprintf("%s first=%s %s/%s/%s/%s sessions=%d last=%s", client, first.UTC().Format(time.RFC3339Nano),
				source, medium, campaign, channel, sessions, last.UTC().Format(time.RFC3339Nano)))
		}
		days, lasts = nil, nil
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// A day archived under fewer shards than the property has now (operators
// raised them) has visitors whose hits and rows lie in other shards than
// they would now: reprocessing derives it in one piece, and gives the
// tables of live processing under the new count.
func TestReprocessAfterShardsRaised(t *testing.T) {
	ctx := context.Background()
	c, err := rules.Compile(rules.Defaults(), 1, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	property := func(shards int) *Property {
		return &Property{ID: propID, Location: time.UTC, Shards: shards, RulesAt: func(time.Time) *rules.Compiled { return c }}
	}
	msgs := traffic(40, 6)
	want := connect(t)
	run(t, ctx, newPartition(want, property(4)), msgs, 25)
	got := connect(t)
	run(t, ctx, newPartition(got, property(2)), msgs, 25)
	if dumpDerived(t, got) == dumpDerived(t, want) {
		t.Fatal("2 and 4 shards give the same tables: the test would prove nothing")
	}
	from := session.LocalDay(t0, time.UTC)
	rp := &Reprocessor{Session: got, Now: func() time.Time { return t0.Add(365 * 24 * time.Hour) }}
	if err := rp.Run(ctx, property(4), from, from.AddDate(0, 0, 2), RulesCurrent, nil, nil); err != nil {
		t.Fatal(err)
	}
	if g, w := dumpDerived(t, got), dumpDerived(t, want); g != w {
		t.Fatalf("after reprocessing under 4 shards:\n%s", diff(w, g))
	}
}

func TestReprocessRefusesOpenDays(t *testing.T) {
	s := connect(t)
	p := testProperty(t, rules.Defaults())
	now := time.Now()
	err := ReprocessDay(context.Background(), s, p, session.LocalDay(now, time.UTC), RulesCurrent, p.RulesAt(now), NewFirstSessions(p, session.LocalDay(now, time.UTC), session.LocalDay(now, time.UTC)), now)
	if err == nil {
		t.Fatal("reprocessing today was accepted")
	}
}

// dumpDerived renders the tables reprocessing re-derives (not the raw
// archive, the visitors' live state, site_users or realtime), without the
// rows whose every metric is zero and whose users are gone: live
// processing keeps such a row (a late hit moved its last session
// elsewhere); reprocessing never writes one.
func dumpDerived(t *testing.T, s *gocql.Session) string {
	t.Helper()
	var keep []string
	for _, line := range strings.Split(dumptest.Tables(t, s, "sessions", "pageviews", "events", "sessions_by_hour", "pageviews_by_hour", "events_by_hour", "rollup_daily", "rollup_hourly", "filtered_hits"), "\n") {
		if strings.HasPrefix(line, "rollup_") && !nonZeroMetric.MatchString(line) && strings.HasSuffix(line, "users_hll=[3]") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// nonZeroMetric matches a dumped rollup row with a metric other than zero.
var nonZeroMetric = regexp.MustCompile(`(bounces|conversion_value|conversions|engaged_sessions|entrances|event_value|events|exits|new_users|pageviews|session_duration_ms|sessions|time_on_page_ms|time_on_page_views|unique_events|unique_pageviews)=[1-9-]`)
