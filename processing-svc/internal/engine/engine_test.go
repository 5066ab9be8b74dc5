package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/gocql/gocql"
)

const propID = "3f1c9a52-1111-4e4e-9a9a-000000000001"

// staticProperties serves one property with fixed rules.
type staticProperties struct{ p *Property }

func (s staticProperties) Property(_ context.Context, id string) (*Property, error) {
	if id != s.p.ID {
		return nil, ErrUnknownProperty
	}
	return s.p, nil
}

func testProperty(t testing.TB, r rules.Rules) *Property {
	t.Helper()
	c, err := rules.Compile(r, 1, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	return &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c }}
}

func connect(t testing.TB) *gocql.Session {
	t.Helper()
	cfg := migratetest.Keyspace(t)
	s, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// traffic returns a deterministic stream of hits: several visitors with
// multi-page sessions, returning visits, events, a bot, re-sends and a
// late hit.
func traffic(n int, seed uint64) []Message {
	rng := rand.New(rand.NewPCG(seed, 1))
	var hits []*hit.Hit
	for v := 0; v < n; v++ {
		client := fmt.Sprintf("client-%d", v)
		at := t0.Add(time.Duration(rng.IntN(3600)) * time.Second)
		ref := []string{"", "https://www.google.com/", "https://news.example.org/a", "https://shop.example/x"}[rng.IntN(4)]
		url := []string{"https://shop.example/", "https://shop.example/?utm_source=news&utm_medium=email", "https://shop.example/?gclid=abc"}[rng.IntN(3)]
		for s := 0; s < 1+rng.IntN(2); s++ {
			for p := 0; p < 1+rng.IntN(4); p++ {
				h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview,
					Origin: hit.OriginBrowser, Time: at, ReceivedAt: at.Add(time.Second), URL: url, Hostname: "shop.example",
					Path: strings.TrimPrefix(url, "https://shop.example") + "", Referrer: ref, Country: "DE", DeviceCategory: "desktop", Browser: "Firefox"}
				if p > 0 {
					h.Path, h.URL, h.Referrer = fmt.Sprintf("/p/%d", rng.IntN(5)), "", "https://shop.example/"
				}
				if rng.IntN(4) == 0 {
					h.Type, h.Category, h.Action, h.Label, h.Value = hit.TypeEvent, "video", "play", "intro", float64(rng.IntN(10))
				}
				if v%7 == 3 {
					h.Bot = true
				}
				h.ID = h.DeriveID(fmt.Sprintf("ev-%d-%d-%d", v, s, p))
				hits = append(hits, h)
				at = at.Add(time.Duration(10+rng.IntN(600)) * time.Second)
			}
			at = at.Add(time.Duration(31+rng.IntN(300)) * time.Minute)
		}
	}
	// Arrival order is receive order. Every 13th hit arrives an hour late
	// (its receive time, not its event time, moves), and every 10th is
	// re-sent a minute later.
	var out []*hit.Hit
	for i, h := range hits {
		if i%13 == 5 {
			h.ReceivedAt = h.ReceivedAt.Add(time.Hour)
		}
		out = append(out, h)
		if i%10 == 0 {
			again := *h
			again.ReceivedAt = h.ReceivedAt.Add(time.Minute)
			out = append(out, &again)
		}
	}
	return inReceiveOrder(out)
}

// inReceiveOrder returns hits as the messages of a partition, in the order
// of their receive times.
func inReceiveOrder(hits []*hit.Hit) []Message {
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].ReceivedAt.Before(hits[j].ReceivedAt) })
	msgs := make([]Message, 0, len(hits))
	for i, h := range hits {
		msgs = append(msgs, Message{Offset: int64(i), Value: marshal(h)})
	}
	return msgs
}

// asRecords regroups msgs as collection produces them: runs of 1 to 6
// consecutive hits in one multi-hit record (hit.AppendRecord), offsets
// renumbered.
func asRecords(msgs []Message, seed uint64) []Message {
	rng := rand.New(rand.NewPCG(seed, 2))
	var out []Message
	for len(msgs) > 0 {
		n := min(1+rng.IntN(6), len(msgs))
		var parts [][]byte
		for _, m := range msgs[:n] {
			parts = append(parts, m.Value)
		}
		out = append(out, Message{Offset: int64(len(out)), Value: hit.AppendRecord(nil, parts)})
		msgs = msgs[n:]
	}
	return out
}

// newPartition returns a partition of s that derives a visitor's hits of
// one batch together, as the consumer's do past the messages they replay.
func newPartition(s *gocql.Session, p *Property) *Partition {
	part := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{p}})
	part.SettleFrom(0)
	return part
}

// run applies msgs in batches of size, flushing after each batch.
func run(t *testing.T, ctx context.Context, part *Partition, msgs []Message, size int) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(size, len(msgs))
		if err := part.Apply(ctx, msgs[:n]); err != nil {
			t.Fatal(err)
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// dump renders every pipeline table of the keyspace, sorted, for
// comparison.
func dump(t *testing.T, s *gocql.Session) string {
	t.Helper()
	return dumptest.Tables(t, s, dumptest.Pipeline...)
}

func totals(t *testing.T, s *gocql.Session, report string) map[string]rollup.Metrics {
	t.Helper()
	out := map[string]rollup.Metrics{}
	for d := 0; d < 2; d++ {
		eachDaily(t, s, t0.AddDate(0, 0, d).Truncate(24*time.Hour), report, func(r *rollup.Row) {
			m := out[r.Dimension]
			m.Add(r.Metrics, 1)
			out[r.Dimension] = m
		})
	}
	return out
}

// eachDaily hands f every stored rollup_daily row of the test property's
// day and report.
func eachDaily(t *testing.T, s *gocql.Session, day time.Time, report string, f func(r *rollup.Row)) {
	t.Helper()
	iter := s.Query(rollup.SelectDaily, propID, day, report).Iter()
	for {
		var r rollup.Row
		ok, err := r.Scan(iter)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		f(&r)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProcessAndReplay(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 1)

	part := newPartition(s, prop)
	run(t, ctx, part, msgs, 25)
	st := part.Stats()
	if st.Duplicates == 0 || st.Excluded == 0 || st.Applied == 0 {
		t.Fatalf("stats %+v: the traffic has duplicates, bots and real hits", st)
	}
	before := dump(t, s)
	tot := totals(t, s, rollup.Total)[""]
	if tot.Sessions == 0 || tot.Pageviews == 0 {
		t.Fatalf("totals %+v", tot)
	}

	// A new processor (fresh memory) replaying the whole topic from the
	// start changes nothing.
	replay := newPartition(s, prop)
	run(t, ctx, replay, msgs, 7)
	if after := dump(t, s); after != before {
		t.Fatalf("replaying the topic changed the tables:\n%s", diff(before, after))
	}
	if replay.Stats().Skipped != int64(len(msgs))-replay.Stats().DeadLetters {
		t.Fatalf("replay stats %+v: every hit should be skipped as already applied", replay.Stats())
	}
}

// TestRestoreAndReplay is the restore of docs/operations.md ("Backups and
// restores"): the tables restored to an earlier copy of themselves (here
// made by processing the first half of the hits into a keyspace of its
// own), and the processing group's offsets set back to the copy's commit
// or to any point before it, the replay brings every table to what the
// uninterrupted run has.
func TestRestoreAndReplay(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 2)
	half := len(msgs) / 2

	live := connect(t)
	part := newPartition(live, prop)
	run(t, ctx, part, msgs[:half], 25)
	backedUp := dump(t, live)
	run(t, ctx, part, msgs[half:], 25)
	want := dump(t, live)
	if want == backedUp {
		t.Fatal("the second half of the hits changed nothing: the test proves nothing")
	}

	for _, from := range []int{half, half / 2, 0} {
		t.Run(fmt.Sprint("replay from hit ", from), func(t *testing.T) {
			restored := connect(t)
			run(t, ctx, newPartition(restored, prop), msgs[:half], 25)
			if got := dump(t, restored); got != backedUp {
				t.Fatalf("the copy is not what the tables were:\n%s", diff(backedUp, got))
			}
			run(t, ctx, newPartition(restored, prop), msgs[from:], 9)
			if got := dump(t, restored); got != want {
				t.Fatalf("the replay over the restored copy gives other tables:\n%s", diff(want, got))
			}
		})
	}
}

// TestRecordsOfSeveralHits checks that hits arriving several to a record
// give exactly the tables they give one to a record, and that a replay of
// the records changes nothing.
func TestRecordsOfSeveralHits(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 3)

	single := connect(t)
	run(t, ctx, newPartition(single, prop), msgs, 25)
	want := dump(t, single)

	recs := asRecords(msgs, 3)
	if len(recs) >= len(msgs) {
		t.Fatal("no record holds several hits: the test proves nothing")
	}
	s := connect(t)
	part := newPartition(s, prop)
	run(t, ctx, part, recs, 9)
	if got := dump(t, s); got != want {
		t.Fatalf("records of several hits give other tables:\n%s", diff(want, got))
	}
	if st := part.Stats(); st.Applied+st.Duplicates+st.Excluded+st.TooLate != int64(len(msgs)) {
		t.Fatalf("stats %+v: %d hits in all", st, len(msgs))
	}
	replay := newPartition(s, prop)
	run(t, ctx, replay, recs, 4)
	if got := dump(t, s); got != want {
		t.Fatalf("replaying the records changed the tables:\n%s", diff(want, got))
	}
	if st := replay.Stats(); st.Skipped != int64(len(msgs)) {
		t.Fatalf("replay stats %+v: every one of the %d hits should be skipped", st, len(msgs))
	}
}

// TestBrokenRecordsAreDeadLettered checks what a record that cannot be
// read costs: its framing broken, the whole record goes to the dead
// letters; one hit in it undecodable, only that hit does, and its
// neighbours are applied.
func TestBrokenRecordsAreDeadLettered(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	good := traffic(2, 5)
	a, b := good[0].Value, good[1].Value
	var dead []hit.DeadLetter
	part := New(Config{Topic: "hits", Session: connect(t), Properties: staticProperties{prop},
		DeadLetter: func(_ context.Context, dl []hit.DeadLetter) error { dead = append(dead, dl...); return nil }})
	framed := hit.AppendRecord(nil, [][]byte{a, b})
	msgs := []Message{
		{Offset: 0, Value: framed[:len(framed)-1]},                                // framing broken
		{Offset: 1, Value: hit.AppendRecord(nil, [][]byte{a, []byte("junk"), b})}, // one bad hit
	}
	run(t, ctx, part, msgs, 2)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(dead), dead)
	}
	if dead[0].Offset != 0 || dead[0].Payload != hit.PayloadText(msgs[0].Value) || !strings.Contains(dead[0].Detail, "split record") {
		t.Errorf("the broken record's dead letter: %+v", dead[0])
	}
	if dead[1].Offset != 1 || dead[1].Payload != "junk" || dead[1].Reason != "undecodable" {
		t.Errorf("the bad hit's dead letter: %+v", dead[1])
	}
	if st := part.Stats(); st.Applied+st.Excluded+st.Duplicates != 2 {
		t.Errorf("stats %+v: the two good hits of the second record are applied", st)
	}
}

// TestHugeHitsDeadLetterFits: the dead letter of a hit of 300 KB that
// cannot be processed (its type unknown: control characters, or its
// property unknown) fits in one message of the dead-letter producer
// (sarama's 1,000,000 bytes). The detail quoted the type whole, four
// bytes for each control character, and the tracking ID whole: the
// letter was refused at every try, and the partition held for good.
func TestHugeHitsDeadLetterFits(t *testing.T) {
	ctx := context.Background()
	var dead []hit.DeadLetter
	part := New(Config{Topic: "hits", Session: connect(t), Properties: staticProperties{testProperty(t, rules.Defaults())},
		DeadLetter: func(_ context.Context, dl []hit.DeadLetter) error { dead = append(dead, dl...); return nil }})
	huge := strings.Repeat("\x01", 300<<10)
	badType := &hit.Hit{PropertyID: propID, ClientID: "c1", Type: hit.Type(huge), Time: t0, ReceivedAt: t0, Path: "/"}
	badType.ID = badType.DeriveID("1")
	unknown := &hit.Hit{PropertyID: "3f1c9a52-0000-4e4e-9a9a-" + strings.Repeat("9", 300<<10), TrackingID: "AT-" + strings.Repeat("\x01", 300<<10),
		ClientID: "c1", Type: hit.TypePageview, Time: t0, ReceivedAt: t0, Path: "/"}
	unknown.ID = unknown.DeriveID("2")
	run(t, ctx, part, inReceiveOrder([]*hit.Hit{badType, unknown}), 2)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, dl := range dead {
		b, err := json.Marshal(dl)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1_000_000 {
			t.Errorf("a %s dead letter of %d bytes (detail %d, tracking ID %d): over the producer's 1,000,000", dl.Reason, len(b), len(dl.Detail), len(dl.TrackingID))
		}
	}
}

// TestCrashAnywhereCountsOnce cancels flushes at random points (a crash
// mid-flush), then lets a fresh processor resume from the last committed
// offset; the tables must equal those of an undisturbed run. Odd seeds
// send the hits several to a record. Seeds above 6 save visitor states
// only when due (StatePolicy, on a clock that advances a random amount per
// batch, with idle eviction shorter than the quiet time), so the committed
// offset trails and crashes re-read hits whose rows are already written.
func TestCrashAnywhereCountsOnce(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { crashRun(t, seed) })
	}
}

func crashRun(t *testing.T, seed uint64) {
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(30, seed)
	want := undisturbed(t, prop, msgs)
	batchMax := 30
	if seed%2 == 1 {
		msgs, batchMax = asRecords(msgs, seed), 8 // as many flushes, fewer messages
	}

	s := connect(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	clock := time.Unix(0, 0)
	cfg := disturbed(s, prop, seed > 6, &clock)
	crashes, deferred := crashUntilDone(t, rng, cfg, msgs, -1, batchMax, &clock)
	if crashes == 0 {
		t.Fatal("no flush was interrupted: the test proved nothing")
	}
	if seed > 6 && deferred == 0 {
		t.Fatal("no flush left a state unsaved: the test proved nothing about deferred states")
	}
	t.Logf("%d flushes interrupted, %d committed short of the last message", crashes, deferred)
	if got := dump(t, s); got != want {
		t.Fatalf("after crashes the tables differ from an undisturbed run:\n%s", diff(want, got))
	}
}

// crashUntilDone runs processors of cfg, each started afresh, on msgs from
// the one after committed until all are committed. Each applies batches of
// 1 to batchMax messages, moving *clock on by up to 3 s after each, and
// flushes after most batches (FlushAll after the last), until one of its
// flushes, picked at random, crashes after a random number of its writes
// went through. It returns the crashes, and the flushes that committed
// short of the last message applied (a visitor not written yet). Each
// processor derives a visitor's hits of a batch together from the first
// message on, but for those through the mark its predecessors' flushes left
// (marks.go): the mark alone keeps a replay from counting twice. Half of
// them read the rows their settling creates after a few changes.
func crashUntilDone(t *testing.T, rng *rand.Rand, cfg Config, msgs []Message, committed int64, batchMax int, clock *time.Time) (crashes, deferred int) {
	t.Helper()
	ctx := context.Background()
	for committed < int64(len(msgs))-1 {
		part := New(cfg) // a restarted processor
		part.SettleFrom(0)
		if rng.IntN(2) == 0 {
			// Rows read in the middle of settling (pendingLoad).
			part.rows.pendingLoad = 1 + rng.IntN(3)
		}
		next := msgs[committed+1:]
		for len(next) > 0 {
			n := min(1+rng.IntN(batchMax), len(next))
			if err := part.Apply(ctx, next[:n]); err != nil {
				t.Fatal(err)
			}
			next = next[n:]
			*clock = clock.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			flush := part.Flush
			if len(next) == 0 {
				flush = part.FlushAll // the end: hand the partition over
			} else if rng.IntN(3) == 0 {
				continue // as the consumer's timer: several batches a flush
			}
			if rng.IntN(2) == 0 {
				// Crash during this flush, after a random number of its
				// writes went through.
				crashAfter(part, rng.IntN(8))
				off, err := flush(ctx)
				if err == nil {
					committed = off
				} else {
					crashes++
				}
				break
			}
			off, err := flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if off < next0(msgs, next)-1 {
				deferred++
			}
			committed = off
		}
	}
	return crashes, deferred
}

// crashAfter makes part's writes fail, as a crash would, after the next
// left batches of statements.
func crashAfter(part *Partition, left int) {
	var mu sync.Mutex
	part.w.beforeJob = func([]stmt) error {
		mu.Lock()
		defer mu.Unlock()
		if left == 0 {
			return errors.New("crash")
		}
		left--
		return nil
	}
}

// undisturbed returns the tables msgs make when applied in batches of 20,
// each flushed, on a keyspace of their own: what a disturbed run must end
// with.
func undisturbed(t *testing.T, prop *Property, msgs []Message) string {
	t.Helper()
	clean := connect(t)
	run(t, context.Background(), newPartition(clean, prop), msgs, 20)
	return dump(t, clean)
}

// disturbed returns the configuration of a partition of a disturbed run
// on s; with due, it saves visitor states only when due, on the clock at
// *clock, and evicts idle visitors sooner than they go quiet.
func disturbed(s *gocql.Session, prop *Property, due bool, clock *time.Time) Config {
	cfg := Config{Topic: "hits", Session: s, Properties: staticProperties{prop}}
	if due {
		cfg.State = StatePolicy{Quiet: 3 * time.Second, MaxDelay: 8 * time.Second}
		cfg.IdleEviction = time.Second
		cfg.Now = func() time.Time { return *clock }
	}
	return cfg
}

// next0 is the offset of the first message of next, a tail of msgs (one
// past the last message when next is empty).
func next0(msgs, next []Message) int64 {
	if len(next) == 0 {
		return msgs[len(msgs)-1].Offset + 1
	}
	return next[0].Offset
}

// TestStatesSavedWhenDue checks the writing policy: a changed visitor (its
// sessions, pageviews, events, users row and state) is written once the
// visitor is quiet or at the latest MaxDelay after its first unwritten hit;
// until then the offset a flush returns stays below its first unwritten
// hit, and the rows reports read (rollups, realtime, filtered hits) and the
// archive are written all the same.
func TestStatesSavedWhenDue(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(20, 2)
	last := msgs[len(msgs)-1].Offset

	immediate := connect(t)
	run(t, ctx, newPartition(immediate, prop), msgs, 1000)
	want := dump(t, immediate)
	reports := func(s *gocql.Session) string {
		return dumptest.Tables(t, s, "raw_hit_blocks_by_hour", "rollup_daily", "rollup_hourly", "filtered_hits", "realtime_minutes")
	}

	for _, c := range []struct {
		name   string
		policy StatePolicy
		early  time.Duration // after the hits: nothing saved yet
		due    time.Duration // after the hits: every state saved
	}{
		{"quiet", StatePolicy{Quiet: time.Minute, MaxDelay: time.Hour}, 59 * time.Second, time.Minute},
		{"max delay", StatePolicy{MaxDelay: 5 * time.Minute}, 4 * time.Minute, 5 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := connect(t)
			clock := time.Unix(0, 0)
			part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{prop}, State: c.policy,
				IdleEviction: time.Second, Now: func() time.Time { return clock }})
			flush := func() int64 {
				t.Helper()
				off, err := part.Flush(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return off
			}
			if err := part.Apply(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			if off := flush(); off != -1 {
				t.Fatalf("flush returned %d before any state was saved, want -1 (the first hit is at 0)", off)
			}
			if got := reports(s); got != reports(immediate) {
				t.Fatalf("the rows reports read wait for the states:\n%s", diff(reports(immediate), got))
			}
			clock = clock.Add(c.early)
			if off := flush(); off != -1 || !part.Pending() {
				t.Fatalf("after %v: flush returned %d, pending %v; nothing is due yet", c.early, off, part.Pending())
			}
			if saved := dumptest.Tables(t, s, "visitor_state", "site_users", "sessions_by_hour", "pageviews_by_hour", "events_by_hour"); saved != "" {
				t.Fatalf("visitors written before they were due:\n%.500s", saved)
			}
			clock = clock.Add(c.due - c.early)
			if off := flush(); off != last || part.Pending() {
				t.Fatalf("after %v: flush returned %d (want %d), pending %v", c.due, off, last, part.Pending())
			}
			if got := dump(t, s); got != want {
				t.Fatalf("tables differ from saving at every flush:\n%s", diff(want, got))
			}
		})
	}
}

func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	am, bm := in(al), in(bl)
	var out []string
	for _, x := range al {
		if !bm[x] {
			out = append(out, "- "+x)
		}
	}
	for _, x := range bl {
		if !am[x] {
			out = append(out, "+ "+x)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}

// Stats counts the statements flushes write and the requests they go in:
// traffic that never rewrites a row (no late hits, no re-sends, one flush)
// writes one statement per stored row, and a flush with nothing new writes
// nothing.
func TestStatsCountWrites(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	part := newPartition(s, testProperty(t, rules.Defaults()))
	if err := part.Apply(ctx, benchTraffic(600, 40)); err != nil {
		t.Fatal(err)
	}
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	st := part.Stats()
	rows := len(strings.Split(dump(t, s), "\n")) + 1 // and the partition's mark (marks.go)
	if st.Statements != int64(rows) {
		t.Errorf("statements = %d, want %d (the rows stored)", st.Statements, rows)
	}
	if st.Requests <= 0 || st.Requests >= st.Statements {
		t.Errorf("requests = %d for %d statements, want fewer (batched by partition), not none", st.Requests, st.Statements)
	}
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if again := part.Stats(); again.Statements != st.Statements || again.Requests != st.Requests {
		t.Errorf("a flush with nothing new wrote %d statements in %d requests", again.Statements-st.Statements, again.Requests-st.Requests)
	}
}

// A user whose state expired (visitor_state's TTL, 13 months after their
// last visit) but who has a users row comes back as a returning user: the
// users row keeps their first visit and counts on from their sessions.
func TestUserBackAfterStateExpired(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	first, last := t0.AddDate(-2, 0, 0), t0.AddDate(-1, -2, 0)
	if err := s.Query(cqlUser, propID, "back", first, last, 3, "news.example", "referral", "(referral)", "Referral", 1).Exec(); err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	ids := map[string]string{} // a session's ID is its first hit's
	for i, client := range []string{"back", "fresh"} {
		h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: client, Type: hit.TypePageview,
			Origin: hit.OriginBrowser, Time: t0, ReceivedAt: t0, Hostname: "shop.example", Path: "/", Country: "DE", DeviceCategory: "desktop"}
		h.ID = h.DeriveID(client)
		ids[client] = h.ID
		b, _ := hit.Marshal(h)
		msgs = append(msgs, Message{Offset: int64(i), Value: b})
	}
	part := newPartition(s, testProperty(t, rules.Defaults()))
	run(t, ctx, part, msgs, 2)
	if _, err := part.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}

	for client, want := range map[string]bool{"back": false, "fresh": true} {
		var newUser bool
		if err := s.Query("SELECT new_user FROM sessions_by_hour WHERE property_id = ? AND day = ? AND shard = 0 AND hour IN ? AND session_id = ?",
			propID, t0.Truncate(24*time.Hour), dayHours, ids[client]).Scan(&newUser); err != nil {
			t.Fatalf("%s's session: %v", client, err)
		}
		if newUser != want {
			t.Errorf("%s's session: new_user = %v, want %v", client, newUser, want)
		}
	}
	// Its three sessions before, counted in session_count (a row of
	// one figure), and today's, counted on its day.
	if u := userOf(t, s, "back"); !u.first.Equal(first) || u.sessions != 4 || u.base.Sessions != 3 || !u.base.Last.Equal(last) || u.touch.Source != "news.example" {
		t.Errorf("users row of the returning user: first seen %v, %d sessions (%d before), first source %q; want %v, 4 (3), news.example", u.first, u.sessions, u.base.Sessions, u.touch.Source, first)
	}
	types := totals(t, s, rollup.UserType)
	if types[rollup.ReturningUser].Sessions != 1 || types[rollup.NewUser].Sessions != 1 || types[rollup.NewUser].NewUsers != 1 || types[rollup.ReturningUser].NewUsers != 0 {
		t.Errorf("user_type rows: %+v, want one returning and one new session", types)
	}
}

// A visitor evicted from memory, and loaded again for a hit received under
// new rules (a referral exclusion added meanwhile), has its live session
// taken out of the rollups as they held it: the session ends under the new
// rules everywhere, not counted under both channels. Also when a hit that
// derived nothing (a bot's, excluded) came under the new rules before the
// eviction, so that the visitor's watermark is under them already.
func TestVisitorLoadedUnderNewRules(t *testing.T) {
	for _, excludedBetween := range []bool{false, true} {
		t.Run(fmt.Sprintf("excluded hit between: %v", excludedBetween), func(t *testing.T) {
			visitorLoadedUnderNewRules(t, excludedBetween)
		})
	}
}

// partnerExcluded returns the default rules as version 1 and, as version
// 2, the same with partner.example a referral exclusion: a session from
// there is Referral under the first, Direct under the second.
func partnerExcluded(t *testing.T) (old, newer *rules.Compiled) {
	t.Helper()
	old, err := rules.Compile(rules.Defaults(), 1, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	r := rules.Defaults()
	r.ReferralExclusions = []string{"partner.example"}
	newer, err = rules.Compile(r, 2, []string{"shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	return old, newer
}

func visitorLoadedUnderNewRules(t *testing.T, excludedBetween bool) {
	ctx := context.Background()
	s := connect(t)
	change := t0.Add(10 * time.Minute)
	old, newer := partnerExcluded(t)
	prop := &Property{ID: propID, TenantID: "t", Location: time.UTC, Shards: 1,
		RulesAt: func(at time.Time) *rules.Compiled {
			if at.Before(change) {
				return old
			}
			return newer
		},
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: old, 2: newer}[n] },
	}
	now := t0
	part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{prop}, IdleEviction: time.Minute, Now: func() time.Time { return now }})
	offset := int64(0)
	apply := func(id string, at time.Time, ref string, bot bool) {
		t.Helper()
		h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: "c1", Type: hit.TypePageview, Origin: hit.OriginBrowser,
			Time: at, ReceivedAt: at, Hostname: "shop.example", Path: "/" + id, Referrer: ref, Country: "DE", DeviceCategory: "desktop", Bot: bot}
		h.ID = h.DeriveID(id)
		b, _ := hit.Marshal(h)
		if err := part.Apply(ctx, []Message{{Offset: offset, Value: b}}); err != nil {
			t.Fatal(err)
		}
		offset++
		if _, err := part.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	apply("a", t0, "https://partner.example/p", false)
	if excludedBetween {
		apply("bot", change.Add(time.Minute), "", true)
	}
	now = now.Add(5 * time.Minute) // idle: evicted with nothing left to flush
	if part.Pending() {
		t.Fatal("something pending after FlushAll")
	}
	part.Evict()
	if len(part.visitors) != 0 {
		t.Fatalf("%d visitors in memory, want the idle one evicted", len(part.visitors))
	}
	rows := 0
	part.rows.each(func(rowKey, *row) bool { rows++; return true })
	if rows != 0 {
		t.Fatalf("%d rollup rows in memory, want the idle ones evicted", rows)
	}
	apply("b", t0.Add(20*time.Minute), "", false)

	channels := totals(t, s, rollup.Channel)
	if got := channels["Direct"]; got.Sessions != 1 || got.Pageviews != 2 {
		t.Errorf("Direct: %+v, want the one session of two pageviews", got)
	}
	if got := channels["Referral"]; got.Sessions != 0 || got.Pageviews != 0 {
		t.Errorf("Referral: %+v, want nothing: the session is Direct under the rules of its latest hit", got)
	}
}

// TestTextsNotUTF8: a hit whose texts hold bytes that are not UTF-8 (an
// older collection's browser names, another producer's or a corrupt
// record's fields) is derived with U+FFFD in their place, and one whose
// client ID does is dead-lettered (hit.Unmarshal). The rows keyed by them
// were refused by the store (a text column takes UTF-8 only), so every
// flush of the partition failed, for good.
func TestTextsNotUTF8(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	var dead []hit.DeadLetter
	part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{testProperty(t, rules.Defaults())},
		DeadLetter: func(_ context.Context, dl []hit.DeadLetter) error { dead = append(dead, dl...); return nil }})
	part.SettleFrom(0)
	var hits []*hit.Hit
	for i, set := range []func(h *hit.Hit){
		func(h *hit.Hit) { h.Browser, h.OS = "Foo\xff", "\xfeOS" },
		func(h *hit.Hit) { h.Title = "T\xff" },
		func(h *hit.Hit) { h.Type, h.Category, h.Action, h.Label = hit.TypeEvent, "c\xff", "a\xff", "l\xff" },
		func(h *hit.Hit) { h.Country, h.DeviceCategory = "D\xff", "d\xff" },
		func(h *hit.Hit) { h.ClientID = "c\xff" },
	} {
		h := &hit.Hit{PropertyID: propID, ClientID: fmt.Sprint("c", i), Type: hit.TypePageview, Time: t0, ReceivedAt: t0.Add(time.Duration(i) * time.Second), Path: "/"}
		set(h)
		h.ID = h.DeriveID(fmt.Sprint(i))
		hits = append(hits, h)
	}
	run(t, ctx, part, inReceiveOrder(hits), len(hits))
	if len(dead) != 1 || dead[0].Reason != "undecodable" || !strings.Contains(dead[0].Detail, "client id is not UTF-8") {
		t.Errorf("dead letters %+v; want the hit whose client ID is not UTF-8, undecodable", dead)
	}
	d := dump(t, s)
	for _, want := range []string{"Foo\uFFFD", "\uFFFDOS", "T\uFFFD", "a\uFFFD", "d\uFFFD"} {
		if !strings.Contains(d, want) {
			t.Errorf("the tables hold no %q:\n%s", want, d)
		}
	}
}
