package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
)

// benchTraffic returns n hits of a busy property with the given number of
// visitors active at once: 1 visitor in 4 returning, sessions of 1 to 8
// pages, some events, in receive order, a hit every 3 ms from five
// minutes past an hour one to two hours ago: the same minutes of an hour
// in every run, so whether a run's hits cross an hour or a day (new rows
// in new partitions: tables partitioned by hour, cql/0017) does not
// depend on when it runs, nor do the counts it reports. (Up to 55 minutes
// of traffic, 1.1 million hits, stays in its hour.)
func benchTraffic(n, concurrent int) []Message {
	rng := rand.New(rand.NewPCG(7, 7))
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour).Add(5 * time.Minute)
	out := make([]Message, 0, n)
	refs := []string{"", "https://www.google.com/", "https://news.example.org/post", "https://t.co/x"}
	type active struct {
		client string
		left   int
	}
	var visitors []active
	next := 0
	for i := 0; len(out) < n; i++ {
		if len(visitors) < concurrent {
			visitors = append(visitors, active{client: fmt.Sprint("c", next), left: 1 + rng.IntN(8)})
			next++
		}
		j := rng.IntN(len(visitors))
		v := &visitors[j]
		at := start.Add(time.Duration(i) * 3 * time.Millisecond)
		h := &hit.Hit{PropertyID: propID, TenantID: "t", ClientID: v.client, Type: hit.TypePageview, Origin: hit.OriginBrowser,
			Time: at, ReceivedAt: at, Hostname: "shop.example", Path: fmt.Sprintf("/p/%d?x=%d", rng.IntN(300), rng.IntN(3)),
			Referrer: refs[rng.IntN(len(refs))], Country: "DE", DeviceCategory: "desktop", Browser: "Firefox", OS: "Linux"}
		if rng.IntN(5) == 0 {
			h.Type, h.Category, h.Action, h.Value = hit.TypeEvent, "cta", fmt.Sprint("click-", rng.IntN(10)), 1
		}
		h.ID = h.DeriveID(fmt.Sprint(i))
		b, _ := hit.Marshal(h)
		out = append(out, Message{Offset: int64(len(out)), Value: b})
		if v.left--; v.left == 0 {
			if rng.IntN(4) == 0 {
				v.left = 1 + rng.IntN(8) // returns later
			} else {
				visitors = slices.Delete(visitors, j, j+1)
			}
		}
	}
	return out
}

// BenchmarkProcessing feeds a partition as a consumer would (batches of up
// to 2000, a flush every 500 ms: the default before session 19, kept so
// that its figures compare with earlier ones; BenchmarkFlushCadence
// measures the interval) and reports hits/s, hits per CPU-second of
// this process and the freshness of each hit, from being handed to the
// processor to its flush completing, and the statements and requests it
// wrote per hit. `make bench-processing` runs it against the CQL server in
// its own process (CASSANDRA_HOSTS), so the CPU figure is the processor's
// alone, as with Cassandra in production; without CASSANDRA_HOSTS the
// embedded server runs in this process and its work is counted too.
//
// Two traffic shapes at the same rate: 2,000 visitors active at once, so a
// visitor has several hits in one flush (dense), and 20,000, so a
// visitor's hits mostly fall in different flushes, as in production, where
// one visitor's hits are seconds to minutes apart (sparse). A fifth case
// spreads the sparse traffic over 2,000 properties, as production's many
// small properties are: a flush holds a few hits of each.
//
// Visitors are written when due ("when-due"), on the deployed policy
// scaled to the benchmark's pace: its visitors' hits are 0.2 s (dense) to
// 2 s (sparse) apart where a real visitor's are tens of seconds apart, so
// DefaultStatePolicy's two minutes quiet and five at most become 2 s and
// 5 s, and a visit is written about once, as in production. The last
// flush writes every visitor, as a hand-over does. "every-flush" writes
// every changed visitor at every flush, for comparison.
func BenchmarkProcessing(b *testing.B) {
	for _, concurrent := range []int{2000, 20000} {
		for _, st := range []struct {
			name   string
			policy StatePolicy
		}{{"when-due", StatePolicy{Quiet: 2 * time.Second, MaxDelay: 5 * time.Second}}, {"every-flush", StatePolicy{}}} {
			b.Run(fmt.Sprintf("visitors=%d/states=%s", concurrent, st.name), func(b *testing.B) {
				benchProcessing(b, concurrent, st.policy, 1)
			})
		}
	}
	// Production's shape: the sparse traffic spread over many small and
	// mid-sized properties, so a flush holds a few hits of each and
	// rewrites every rollup row those touched for them (the soak,
	// docs/benchmarks.md).
	b.Run("properties=2000/visitors=20000/states=when-due", func(b *testing.B) {
		benchProcessing(b, 20000, StatePolicy{Quiet: 2 * time.Second, MaxDelay: 5 * time.Second}, 2000)
	})
}

// manyProperties serves properties by ID.
type manyProperties map[string]*Property

func (m manyProperties) Property(_ context.Context, id string) (*Property, error) {
	if p := m[id]; p != nil {
		return p, nil
	}
	return nil, ErrUnknownProperty
}

// spreadOver returns msgs with each visitor's hits moved to one of n
// properties like prop, and those properties.
func spreadOver(b testing.TB, msgs []Message, prop *Property, n int) ([]Message, manyProperties) {
	props := manyProperties{}
	ids := make([]string, n)
	for i := range ids {
		p := *prop
		p.ID = fmt.Sprintf("3f1c9a52-2222-4e4e-9a9a-%012d", i)
		ids[i], props[p.ID] = p.ID, &p
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		h, err := hit.Unmarshal(m.Value)
		if err != nil {
			b.Fatal(err)
		}
		h.PropertyID = ids[sketch.Hash(h.ClientID)%uint64(n)]
		out[i] = Message{Offset: m.Offset, Value: marshal(h)}
	}
	return out, props
}

// benchProcessing runs BenchmarkProcessing's traffic of concurrent
// visitors, spread over the given number of properties.
func benchProcessing(b *testing.B, concurrent int, policy StatePolicy, properties int) {
	s := connect(b)
	prop := testProperty(b, rules.Defaults())
	msgs := benchTraffic(max(b.N, 20000), concurrent)
	var source Properties = staticProperties{prop}
	if properties > 1 {
		msgs, source = spreadOver(b, msgs, prop, properties)
	}
	ctx := context.Background()
	part := New(Config{Topic: "hits", Session: s, Properties: source, State: policy})
	part.SettleFrom(0) // as the consumer's partitions past what they replay

	var fresh []time.Duration
	var pending []time.Time
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	lastFlush := start
	for i := 0; i < len(msgs); {
		n := min(2000, len(msgs)-i)
		now := time.Now()
		if err := part.Apply(ctx, msgs[i:i+n]); err != nil {
			b.Fatal(err)
		}
		for range n {
			pending = append(pending, now)
		}
		i += n
		if time.Since(lastFlush) >= 500*time.Millisecond || i == len(msgs) {
			flush := part.Flush
			if i == len(msgs) {
				flush = part.FlushAll // as when the partition is handed over
			}
			if _, err := flush(ctx); err != nil {
				b.Fatal(err)
			}
			done := time.Now()
			for _, t := range pending {
				fresh = append(fresh, done.Sub(t))
			}
			pending, lastFlush = pending[:0], done
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	slices.Sort(fresh)
	b.ReportMetric(float64(len(msgs))/elapsed.Seconds(), "hits/s")
	b.ReportMetric(float64(len(msgs))/cpu.Seconds(), "hits/cpu-s")
	b.ReportMetric(fresh[len(fresh)/2].Seconds()*1000, "fresh-p50-ms")
	b.ReportMetric(fresh[len(fresh)*99/100].Seconds()*1000, "fresh-p99-ms")
	st := part.Stats()
	b.ReportMetric(float64(st.Statements)/float64(len(msgs)), "stmts/hit")
	b.ReportMetric(float64(st.Requests)/float64(len(msgs)), "requests/hit")
	b.ReportMetric(float64(st.Bytes)/float64(len(msgs)), "bytes/hit")
	b.ReportMetric(float64(st.RowReads)/float64(len(msgs)), "row-reads/hit")
}

// BenchmarkReprocess measures reprocessing: a day of the sparse traffic's
// hits (20,000 visitors active at once), processed live first (not
// timed), then re-derived from the raw archive by a job over that day
// under rules that exclude a tenth of its pages, so that sessions,
// pageviews, events, rollups and users rows change. It reports hits/s
// re-derived and hits per CPU-second of this process (the store's work
// counted only without CASSANDRA_HOSTS, as for BenchmarkProcessing).
func BenchmarkReprocess(b *testing.B) {
	s := connect(b)
	live := testProperty(b, rules.Defaults())
	msgs := benchTraffic(max(b.N, 20000), 20000)
	ctx := context.Background()
	part := New(Config{Topic: "hits", Session: s, Properties: staticProperties{live}})
	for i := 0; i < len(msgs); i += 2000 {
		if err := part.Apply(ctx, msgs[i:min(i+2000, len(msgs))]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := part.FlushAll(ctx); err != nil {
		b.Fatal(err)
	}
	first, err := hit.Unmarshal(msgs[0].Value)
	if err != nil {
		b.Fatal(err)
	}
	day := session.LocalDay(first.Time, time.UTC)
	changed := rules.Defaults()
	changed.Pages.Exclude = []string{"^/p/[0-9]*0\\b"} // /p/0, /p/10 ... /p/290: a tenth of the pages
	p := testProperty(b, changed)
	rp := &Reprocessor{Session: s, Now: func() time.Time { return first.Time.Add(72 * time.Hour) }}

	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	if err := rp.Run(ctx, p, day, day, RulesCurrent, nil, nil); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	var excluded int64
	if err := s.Query("SELECT hits FROM filtered_hits WHERE property_id = ? AND day = ? AND reason = ? AND shard = 0", propID, day, rules.ReasonPage).Scan(&excluded); err != nil || excluded < int64(len(msgs))/20 {
		b.Fatalf("pages excluded by the new rules: %d (%v); want about a tenth of %d hits", excluded, err, len(msgs))
	}
	b.ReportMetric(float64(len(msgs))/elapsed.Seconds(), "hits/s")
	b.ReportMetric(float64(len(msgs))/cpu.Seconds(), "hits/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyHit measures the processor's own work per hit, in memory:
// decoding, rules, sessionizing, the rollup changes and applying them to
// the in-memory rows, the archive — applyHit, with every visitor and row
// already in memory (as in a processor's steady state), so nothing is read
// from or written to the store. It varies about ±5% from run to run, where
// BenchmarkProcessing varies ±15% on this machine and hides changes of a
// few percent: use it to see what a change to this path does.
func BenchmarkApplyHit(b *testing.B) {
	benchApply(b, benchTraffic(100000, 20000), 2000)
}

// BenchmarkApplyHitLongSession is BenchmarkApplyHit for one visitor whose
// session has 10, 100 or 1,000 pageviews, 5 seconds apart (an app left
// open, a crawler no list knows): the cost per hit must not grow with the
// session's length, or one such visitor slows its whole partition.
func BenchmarkApplyHitLongSession(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("pageviews=%d", n), func(b *testing.B) {
			start := time.Now().UTC().Add(-3 * time.Hour)
			msgs := oneSession(n, func(i int) (time.Time, time.Time) {
				at := start.Add(time.Duration(i) * 5 * time.Second)
				return at, at
			})
			benchApply(b, msgs, 0)
		})
	}
}

// BenchmarkApplyHitNewestFirst applies the pageviews of one visitor's
// session of 1,000 and 4,000 pageviews sent newest first (each hit late,
// within the late-hit horizon): derived one at a time (as every hit was
// before 2026-12-07, and as the consumer still derives the messages it
// replays), each builds the session again, so a hit costs in proportion to
// the session; derived together 2,000 messages at a time
// (Partition.SettleFrom: the consumer's partitions derive a visitor's hits
// between two flushes together), the session is built once each time.
// "old-session" is the batched case in a session begun 4 hours 45 minutes
// before (a pageview every 20 minutes), whose first hit is older than what
// may freeze: until session 34 its hits were derived one at a time
// whatever the batch.
func BenchmarkApplyHitNewestFirst(b *testing.B) {
	for _, c := range []struct {
		name          string
		n, batch, old int
	}{
		{"one-at-a-time/pageviews=1000", 1000, 0, 0},
		{"batched/pageviews=1000", 1000, 2000, 0},
		{"batched/pageviews=4000", 4000, 2000, 0},
		{"batched/old-session/pageviews=1000", 1000, 2000, 14},
	} {
		b.Run(c.name, func(b *testing.B) {
			end := time.Now().UTC().Add(-time.Minute)
			msgs := oneVisitor(c.old+c.n, func(i int, h *hit.Hit) {
				if i < c.old {
					h.Time = end.Add(-285*time.Minute + time.Duration(i)*20*time.Minute)
					h.ReceivedAt = h.Time
					return
				}
				i -= c.old
				h.Time, h.ReceivedAt = end.Add(-time.Duration(i)*3*time.Second), end.Add(time.Duration(i)*time.Millisecond)
			})
			benchApply(b, msgs, c.batch)
		})
	}
}

// BenchmarkApplyHitVisitorShapes applies the hits of one visitor of a
// shape a client can send at will, in order, a batch at a time as the
// consumer derives them, at two sizes: the cost per hit must not grow with
// the visitor's hits kept. "campaign-per-hit": every pageview with a new
// utm_source, so a session each, at a pace that keeps 1,000 or 10,000 of
// them live over six hours (from 4 hours 40 minutes on, every hit freezes
// a session; each freeze copied every live hit until session 34).
// "pings-alone": engagement pings and nothing else, one every 36 or 9
// seconds for four days (no session: until session 34 they were never
// taken out, and every ping built the sessions of all of them).
func BenchmarkApplyHitVisitorShapes(b *testing.B) {
	start := time.Now().UTC().Add(-4 * 24 * time.Hour).Truncate(24 * time.Hour)
	for _, live := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("campaign-per-hit/live=%d", live), func(b *testing.B) {
			every := (4*time.Hour + 40*time.Minute) / time.Duration(live)
			msgs := oneVisitor(int(6*time.Hour/every), func(i int, h *hit.Hit) {
				h.Time = start.Add(time.Duration(i) * every)
				h.ReceivedAt = h.Time
				h.URL = fmt.Sprintf("https://shop.example/p?utm_source=s%d", i)
			})
			benchApply(b, msgs, 2000)
		})
	}
	for _, every := range []time.Duration{36 * time.Second, 9 * time.Second} {
		b.Run(fmt.Sprintf("pings-alone/every=%v", every), func(b *testing.B) {
			msgs := oneVisitor(int(4*24*time.Hour/every), func(i int, h *hit.Hit) {
				h.Time = start.Add(time.Duration(i) * every)
				h.ReceivedAt = h.Time
				h.Type, h.EngagementMS = hit.TypeEngagement, 1000
			})
			benchApply(b, msgs, 2000)
		})
	}
}

// oneSession returns n pageviews of one visitor, the i-th of them at and
// received as times(i) says, in that order.
func oneSession(n int, times func(i int) (at, received time.Time)) []Message {
	return oneVisitor(n, func(i int, h *hit.Hit) { h.Time, h.ReceivedAt = times(i) })
}

// oneVisitor returns n hits of one visitor, pageviews of /p/0 to /p/49
// until set(i, h) makes the i-th what it is (its time and receipt at
// least), in that order.
func oneVisitor(n int, set func(i int, h *hit.Hit)) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		h := &hit.Hit{PropertyID: propID, TenantID: "t", ClientID: "c", Type: hit.TypePageview, Origin: hit.OriginBrowser,
			Hostname: "shop.example", Path: fmt.Sprintf("/p/%d", i%50),
			Country: "DE", DeviceCategory: "desktop", Browser: "Firefox", OS: "Linux"}
		set(i, h)
		h.ID = h.DeriveID(fmt.Sprint(i))
		msgs[i] = Message{Offset: int64(i), Value: marshal(h)}
	}
	return msgs
}

// benchApply applies msgs to a new partition, again and again until b.N
// hits are applied; with batch above 0, a visitor's hits of batch messages
// are derived together (SettleFrom).
func benchApply(b *testing.B, msgs []Message, batch int) {
	prop := testProperty(b, rules.Defaults())
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		b.StopTimer()
		p := New(Config{Topic: "hits", Properties: staticProperties{prop}})
		if batch > 0 {
			p.SettleFrom(0)
		}
		p.rows.fresh = true // as if every row had been read
		now := time.Now()
		b.StartTimer()
		for i, m := range msgs {
			if n == b.N {
				break
			}
			if batch > 0 && i%batch == 0 {
				p.settlePlaced(context.Background(), now)
			}
			n++
			h, err := hit.Unmarshal(m.Value)
			if err != nil {
				b.Fatal(err)
			}
			d := decoded{msg: m, raw: m.Value, h: h, prop: prop, key: h.PropertyID + "/" + h.ClientID}
			if p.visitors[d.key] == nil {
				p.visitors[d.key] = &vstate{v: visitor.New(h.ClientID), property: propID, applied: -1}
			}
			p.applyHit(&d, now)
		}
		p.settlePlaced(context.Background(), now)
	}
}

// BenchmarkFlushCadence measures what the flush interval (processing's
// -flush-interval) costs in writes, which reports' freshness is traded
// against. It replays BenchmarkProcessing's sparse traffic (20,000
// visitors active at once, a hit every 3 ms: 333 hits/s on the partition,
// each visitor's hits about a minute apart, as a real visitor's are) on
// the hits' own clock rather than the wall clock, so a flush every F of
// that clock holds the hits a processor would have at that rate, and the
// deployed visitor policy (DefaultStatePolicy) applies as in production.
// It reports only counts (statements, requests, bytes and row reads per
// hit), which depend on the traffic and the interval, not on the
// machine's speed, on one busy property and spread over 200 properties
// (docs/benchmarks.md, "Flush interval", has 2,000 too: a run of many
// minutes). `make bench-processing` runs it once (-benchtime=1x).
func BenchmarkFlushCadence(b *testing.B) {
	const hits = 60000
	base := benchTraffic(hits, 20000)
	for _, properties := range []int{1, 200} {
		for _, every := range []time.Duration{500 * time.Millisecond, 2 * time.Second, 5 * time.Second} {
			b.Run(fmt.Sprintf("properties=%d/flush=%s", properties, every), func(b *testing.B) {
				prop := testProperty(b, rules.Defaults())
				msgs, source := base, Properties(staticProperties{prop})
				if properties > 1 {
					msgs, source = spreadOver(b, base, prop, properties)
				}
				var st Stats
				for range b.N {
					st = replayOnHitClock(b, msgs, source, every, nil)
				}
				b.ReportMetric(float64(st.Statements)/hits, "stmts/hit")
				b.ReportMetric(float64(st.Requests)/hits, "requests/hit")
				b.ReportMetric(float64(st.Bytes)/hits, "bytes/hit")
				b.ReportMetric(float64(st.RowReads)/hits, "row-reads/hit")
			})
		}
	}
}

// replayOnHitClock applies msgs to a new partition in a fresh keyspace,
// its clock the time of the hit being applied, flushing every interval of
// that clock and handing over at the end, and returns its stats. setup,
// when not nil, is given the partition first (a test's hooks).
func replayOnHitClock(b testing.TB, msgs []Message, source Properties, every time.Duration, setup func(*Partition)) Stats {
	var now time.Time
	part := New(Config{Topic: "hits", Session: connect(b), Properties: source, State: DefaultStatePolicy,
		Now: func() time.Time { return now }})
	if setup != nil {
		setup(part)
	}
	ctx := context.Background()
	var next time.Time
	for i := 0; i < len(msgs); {
		j := i
		for ; j < len(msgs); j++ {
			h, err := hit.Unmarshal(msgs[j].Value)
			if err != nil {
				b.Fatal(err)
			}
			if next.IsZero() {
				next = h.ReceivedAt.Add(every)
			}
			if !h.ReceivedAt.Before(next) {
				break
			}
			now = h.ReceivedAt
		}
		if err := part.Apply(ctx, msgs[i:j]); err != nil {
			b.Fatal(err)
		}
		i = j
		flush := part.Flush
		if i == len(msgs) {
			flush = part.FlushAll
		}
		now = next
		if _, err := flush(ctx); err != nil {
			b.Fatal(err)
		}
		next = next.Add(every)
	}
	return part.Stats()
}
