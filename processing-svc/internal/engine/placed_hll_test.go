package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/sketch"
)

// TestPlacedHitsPastExactLimit: a visitor whose first hit (13:05) starts a
// session in hour 13, and whose late hit (12:50) then moves the session's
// start to hour 12, in one batch, in a shard whose hour 13 has more than
// sketch.ExactLimit users (a HyperLogLog, which cannot forget). Derived
// together (an undisturbed run), hour 13 never counts the visitor; derived
// one at a time (a processor replaying what an earlier owner may have
// written, after a crash or a rebalance), hour 13 counts it and
// keeps it: the one difference a replay makes, as docs/processing.md
// says ("A visitor's hits of one batch are derived together").
func TestPlacedHitsPastExactLimit(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	at := func(h, m int) time.Time { return time.Date(2026, 7, 1, h, m, 0, 0, time.UTC) }
	var msgs []Message
	add := func(client, event string, when, received time.Time) {
		h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview,
			Origin: hit.OriginBrowser, Time: when, ReceivedAt: received, Hostname: "shop.example", Path: "/"}
		h.ID = h.DeriveID(event)
		msgs = append(msgs, Message{Offset: int64(len(msgs)), Value: marshal(h)})
	}
	for i := range sketch.ExactLimit + 88 {
		add(fmt.Sprint("filler-", i), fmt.Sprint("f", i), at(13, 10), at(13, 10))
	}
	add("moved", "second", at(13, 5), at(13, 20))
	add("moved", "first", at(12, 50), at(13, 20).Add(time.Second))

	users := func(settleFrom int64) *sketch.Set {
		s := connect(t)
		p := New(Config{Topic: "hits", Session: s, Properties: staticProperties{prop}})
		p.SettleFrom(settleFrom)
		if err := p.Apply(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		if _, err := p.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
		var b []byte
		if err := s.Query("SELECT users_hll FROM rollup_hourly WHERE property_id = ? AND day = ? AND hour = 13 AND shard = 0",
			propID, at(0, 0)).Scan(&b); err != nil {
			t.Fatal(err)
		}
		set := new(sketch.Set)
		if err := set.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if set.Exact() {
			t.Fatal("hour 13's sketch is exact: the test proves nothing")
		}
		return set
	}
	together := users(0)
	replayed := users(int64(len(msgs))) // every message one at a time, as a replay derives them
	withMoved := new(sketch.Set)
	if err := withMoved.Merge(together); err != nil {
		t.Fatal(err)
	}
	withMoved.Add("moved")
	enc := func(s *sketch.Set) string {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if enc(replayed) != enc(withMoved) {
		t.Errorf("hour 13 replayed (%d users) is not hour 13 derived together (%d) with the moved user", replayed.Count(), together.Count())
	}
	if enc(replayed) == enc(together) {
		t.Errorf("hour 13 replayed equals hour 13 derived together: the moved user is forgotten, and docs/processing.md says otherwise")
	}
}
