package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
	"github.com/gocql/gocql"
)

// RulesMode selects the rules reprocessing applies.
type RulesMode string

// Rules modes.
const (
	// RulesHistorical applies to each hit the rules in effect when it was
	// received, as live processing did.
	RulesHistorical RulesMode = "historical"
	// RulesCurrent applies today's rules to the past.
	RulesCurrent RulesMode = "current"
)

// FinalOffset is the through_offset of rows written by reprocessing: they
// are final, and no live processor (which only ever has smaller offsets)
// changes them again.
const FinalOffset = math.MaxInt64 / 2

// ErrDayOpen is returned for a day that may still receive hits.
var ErrDayOpen = errors.New("day still open to late hits")

// ErrNoArchive is returned for a day without archived hits: it is left as
// it is.
var ErrNoArchive = errors.New("no archived hits for the day (none was accepted, or processing has not reached them yet); its rows are left as they are")

// ErrPastRetention is returned for a day the raw archive may no longer
// hold whole: its hits expire (the archive's TTL, hit.ArchiveRetention
// after each was written) over the day after it, and a day re-derived from
// what is left of them would replace its rows with fewer sessions.
var ErrPastRetention = errors.New("days past the archive's retention cannot be reprocessed")

// EarliestDay returns the first property-local day that can be
// reprocessed at now: two days after the archive's retention, as a day's
// hits expire over the day after it.
func EarliestDay(p *Property, now time.Time) time.Time {
	return session.LocalDay(now.Add(-hit.ArchiveRetention), p.Location).AddDate(0, 0, 2)
}

// ReprocessDay re-derives one property-local day of a property from the
// raw hit archive: sessions, pageviews, events, rollups (daily, hourly) and
// filtered hits, replacing what is stored; running it twice writes the
// same rows.
//
// It works a processing shard at a time, so its memory is a shard's day of
// hits, not the property's: a visitor's hits, and every row they make, are
// in its shard. Each shard's rollup rows are replaced at once: in each
// rollup partition (a report's day, a day's hours, a day's filtered hits),
// the shard's new rows and the deletes of its rows that no longer exist
// go in one batch, which Cassandra applies in isolation, so a reader sees
// either the shard's old rows or its new ones there (replaceBatchBytes
// says when a partition takes more than one batch). A run stopped between
// shards leaves some shards under the old derivation and some under the
// new, each whole. When the archive's shards do not match the property's
// shard count (it was changed since the day was archived, so a visitor's
// hits may lie in two shards), the day is derived in one piece instead,
// and the rows of every shard are replaced together.
//
// Sessions, pageviews and events are written first and those that no
// longer exist deleted after them: no report reads them. They are written
// to the tables partitioned by hour (cql/0017_hourly_partitions.cql); the
// day's rows that processing wrote before those, in the tables they
// replaced, are deleted after them, a (day, shard) partition at a time,
// so that a reprocessed day is in the new tables only. The archive is
// read from its three tables (archivedPartition).
//
// users carries what the days before this one established: the start of
// each client's first session (from site_users for sessions before since,
// the start of the reprocessed range; from the reprocessed days after it).
// It is updated with the first sessions the day contains.
//
// currentAt is the instant whose rules RulesCurrent applies (a job's
// creation, so that a job resumed after a rules change applies one
// version to all its days).
//
// Only closed days are reprocessed: a day must have ended at least two days
// ago in the property's time zone, well past the late-hit horizon and the
// live processors' in-memory copies of its rows. And only days the archive
// still holds whole (EarliestDay), checked when the day is run, not only
// when its job was made: a job resumed days later may have reached them.
func ReprocessDay(ctx context.Context, s *gocql.Session, p *Property, day time.Time, mode RulesMode, current *rules.Compiled, users *FirstSessions, now time.Time) error {
	if !day.Before(session.LocalDay(now, p.Location).AddDate(0, 0, -1)) {
		return fmt.Errorf("%w: %s (reprocess days up to two days ago)", ErrDayOpen, day.Format(time.DateOnly))
	}
	if earliest := EarliestDay(p, now); day.Before(earliest) {
		return fmt.Errorf("%w: %s, whose hits the raw archive (%d days) may hold only in part by now; reprocess from %s on",
			ErrPastRetention, day.Format(time.DateOnly), int(hit.ArchiveRetention/(24*time.Hour)), earliest.Format(time.DateOnly))
	}
	return newDayRun(s, p, day, mode, current, users, now).run(ctx)
}

// newDayRun returns the reprocessing of one day (ReprocessDay, without its
// check that the day is closed).
func newDayRun(s *gocql.Session, p *Property, day time.Time, mode RulesMode, current *rules.Compiled, users *FirstSessions, now time.Time) *dayRun {
	return &dayRun{s: s, p: p, day: day, users: users, now: now, known: map[string]userRow{}, firsts: map[string]userFirst{}, days: map[string][]visitor.DaySessions{}, staleClients: map[string]bool{}, rulesOf: func(h *hit.Hit) *rules.Compiled {
		if mode == RulesCurrent {
			return current
		}
		return p.RulesOf(h)
	}}
}

// run reprocesses the day (ReprocessDay).
func (d *dayRun) run(ctx context.Context) error {
	s, p, day := d.s, d.p, d.day
	beyond, err := archivedBeyond(ctx, s, p, day)
	if err != nil {
		return err
	}
	all := shardsBelow(max(p.Shards, 1))
	if beyond {
		all = shardsBelow(hit.MaxShards)
	}
	stored, err := storedRollups(ctx, s, p, day)
	if err != nil {
		return err
	}
	// Archived under more shards than the property has now (the count was
	// lowered): a visitor's hits may lie in a shard past the count, so the
	// day is derived in one piece.
	whole := beyond
	var empty []int // shards without a hit of the day
	for i := 0; !whole && i < len(all); i++ {
		shard := all[i]
		hits, err := archivedHits(ctx, s, p, day, []int{shard})
		if err != nil {
			return err
		}
		switch {
		case slices.ContainsFunc(hits, func(h *hit.Hit) bool { return ShardOf(h.ClientID, p.Shards) != shard }):
			// Archived under fewer shards (the count was raised): the
			// whole day in one piece.
			whole = true
		case len(hits) == 0:
			// Its rows are deleted once the day is known to have hits: a
			// day without any is left as it is.
			empty = append(empty, shard)
		default:
			if err := d.replace(ctx, hits, []int{shard}, stored); err != nil {
				return err
			}
			if d.afterShards != nil {
				if err := d.afterShards([]int{shard}); err != nil {
					return err
				}
			}
		}
	}
	if whole {
		hits, err := archivedHits(ctx, s, p, day, all)
		if err != nil {
			return err
		}
		if d.hits > 0 {
			// Shards were replaced before a moved visitor showed: their
			// rows are no longer those listed.
			if stored, err = storedRollups(ctx, s, p, day); err != nil {
				return err
			}
		}
		if len(hits) > 0 {
			if err := d.replace(ctx, hits, all, stored); err != nil {
				return err
			}
		}
		empty = nil
	}
	if d.hits == 0 {
		// Nothing archived: the day's hits have expired (or never were
		// archived), and what is stored is all there is. Deriving nothing
		// would delete it.
		return fmt.Errorf("%w: %s", ErrNoArchive, day.Format(time.DateOnly))
	}
	if len(empty) > 0 {
		if err := d.replace(ctx, nil, empty, stored); err != nil {
			return err
		}
	}
	// What is left lies in shards past the count without hits of the day
	// (a shard's rows come with its hits, so there should be none): it no
	// longer exists either.
	var rest []stmt
	for _, keys := range stored {
		for _, k := range keys {
			rest = append(rest, rowDelete(k))
		}
	}
	if err := d.replacer().exec(ctx, rest); err != nil {
		return fmt.Errorf("delete stale rows of %s: %w", day.Format(time.DateOnly), err)
	}
	users, err := d.userFirsts(ctx)
	if err != nil {
		return err
	}
	if err := d.writer().exec(ctx, users); err != nil {
		return fmt.Errorf("write the first sessions of %s's users: %w", day.Format(time.DateOnly), err)
	}
	counts, err := d.userDays(ctx)
	if err != nil {
		return err
	}
	if err := d.writer().exec(ctx, counts); err != nil {
		return fmt.Errorf("write the session counts of %s's users: %w", day.Format(time.DateOnly), err)
	}
	return nil
}

// daysOf counts sessions by the local day they started on, day among
// them even with none.
func daysOf(day time.Time, sessions map[string]visitor.Upsert) []visitor.DaySessions {
	out := []visitor.DaySessions{{Day: day}}
	for _, u := range sessions {
		i := slices.IndexFunc(out, func(d visitor.DaySessions) bool { return d.Day.Equal(u.Session.Day) })
		if i < 0 {
			i = len(out)
			out = append(out, visitor.DaySessions{Day: u.Session.Day})
		}
		out[i].Add(u.Session)
	}
	return out
}

// userDays returns the writes of the day's users rows' figures for the
// day (day_sessions and day_last_seen): the sessions each client of the
// day (one with a hit archived on it, or a session stored on it before)
// has on it now, where they differ from what the row holds. A day
// the row's base may count (userRow.inBase: a row written before it
// counted per day) is left as it is.
func (d *dayRun) userDays(ctx context.Context) ([]stmt, error) {
	for client := range d.staleClients {
		if _, ok := d.days[client]; !ok {
			// None of its hits is on the day now: it has no session on it.
			d.days[client] = []visitor.DaySessions{{Day: d.day}}
		}
	}
	clients := slices.Sorted(maps.Keys(d.days))
	rows, err := readUsers(ctx, d.s, d.p.ID, clients)
	if err != nil {
		return nil, fmt.Errorf("read the session counts of %s's users: %w", d.day.Format(time.DateOnly), err)
	}
	var out []stmt
	for _, client := range clients {
		u := rows[client]
		for _, now := range d.days[client] {
			// site_users holds milliseconds; a session's end has the
			// hits' precision (collection's: finer).
			now.Last = now.Last.Truncate(time.Millisecond)
			if u.holds(now) || u.inBase(now.Day, d.p.Location) {
				continue
			}
			partition := "v/" + d.p.ID + "/" + client
			if now.Sessions == 0 {
				out = append(out, stmt{partition: partition, cql: cqlUserDayDelete, args: []any{now.Day, now.Day, d.p.ID, client}})
				continue
			}
			day := dayFigures{now}
			out = append(out, stmt{partition: partition, cql: cqlUserDays, args: []any{dayCounts(day), dayLasts(day), d.p.ID, client}})
		}
	}
	return out, nil
}

// dayRun is the reprocessing of one day.
type dayRun struct {
	s       *gocql.Session
	p       *Property
	day     time.Time
	rulesOf func(*hit.Hit) *rules.Compiled
	users   *FirstSessions
	now     time.Time
	hits    int // archived hits read
	// known holds the users rows of the day's clients without a first
	// session before the day, as stored; firsts the first sessions the day
	// holds (userFirsts).
	known  map[string]userRow
	firsts map[string]userFirst
	// days holds each of the day's clients' sessions by the day they
	// started on (the reprocessed day, but under a zone changed since
	// its hits were received), the day itself counted 0 for a client
	// without a session on it (userDays); staleClients the clients of
	// the day's stored sessions the day no longer has, who may have no
	// hit on it (their session was the day's under another zone).
	days         map[string][]visitor.DaySessions
	staleClients map[string]bool

	// afterShards, when set (tests), runs after each shard's day is
	// derived and written, and stops the day with its error: a run that
	// stops between two shards.
	afterShards func(shards []int) error
	// beforeJob, when set (tests), is the writers' beforeJob: it sees
	// each batch.
	beforeJob func(job []stmt) error
}

func (d *dayRun) writer() *writer {
	return &writer{session: d.s, concurrency: 32, batchSize: 50, beforeJob: d.beforeJob}
}

// Bounds of one batch that replaces rollup rows (a rollup partition's rows
// of a shard, or of every shard when a day is derived in one piece).
// Cassandra applies a batch of one partition as one mutation, atomically
// and in isolation, and does not hold it to batch_size_fail_threshold
// (which counts batches of several partitions); what bounds it is the
// largest mutation (half a commit log segment: 16 MiB by default) and the
// native protocol's frame (16 MiB), and a large mutation is slow to apply
// and to replicate, so a batch stays at a quarter of those. A row is some
// 300 bytes and its users sketch (9 bytes a user up to 512 users, 16 KiB
// past them): 4 MiB holds a shard's hours (24 rows), a report's day of a
// shard with some 250 values of more than 512 users each, and thousands
// of smaller ones.
//
// A partition past these bounds (the page report of a large property's
// shard, or the hours of a day derived in one piece under many shards) is
// written in several batches, run concurrently. Until the last of them is
// written, a reader sees some of its dimension values (or hours, or
// shards) under the new derivation and the others under the old: a total
// over them is off by what moved between the two sides (a session whose
// landing page changed counted on both, or on neither). If the run stops
// there, that stays until the job is resumed, which replaces the shard
// again.
const (
	replaceBatchBytes      = 4 << 20
	replaceBatchStatements = 5000
)

// replacer returns a writer of rollup replacements: a partition's
// statements in as few batches as replaceBatchBytes allows.
func (d *dayRun) replacer() *writer {
	return &writer{session: d.s, concurrency: 32, batchSize: replaceBatchStatements, batchBytes: replaceBatchBytes, beforeJob: d.beforeJob}
}

// replace re-derives the visitors of hits, which are all the day's hits of
// shards, and replaces the shards' rows with what they derive: it writes
// their sessions, pageviews and events; writes their rollup rows, each
// partition's with the deletes of the shards' rows of stored it no longer
// has, in one batch (replaceBatchBytes); and then deletes their session,
// pageview and event rows it no longer has (staleEntities: those of the
// tables partitioned by hour, and the shards' partitions of the day in the
// tables those replaced). It removes shards from stored.
func (d *dayRun) replace(ctx context.Context, hits []*hit.Hit, shards []int, stored map[int][]rowKey) error {
	p, day := d.p, d.day
	d.hits += len(hits)
	// Derive, per visitor, exactly as live processing does.
	byClient := map[string][]*hit.Hit{}
	var clients []string
	for _, h := range hits {
		if byClient[h.ClientID] == nil {
			clients = append(clients, h.ClientID)
		}
		byClient[h.ClientID] = append(byClient[h.ClientID], h)
	}
	slices.Sort(clients)
	known, err := d.users.load(ctx, d.s, p.ID, clients)
	if err != nil {
		return err
	}
	maps.Copy(d.known, known)
	firstSeen := d.users.seen
	rows := newRowSet()
	rows.fresh = true // the day's rows from scratch
	var writes []stmt
	sessions := map[string]bool{} // session rows of the day, by entityRow
	hitRows := map[string]bool{}  // pageview and event rows, by entityRow
	dayStart := rollup.DayStart(day, p.Location)
	for _, client := range clients {
		shard := ShardOf(client, p.Shards)
		// The visitor's hits go through the very code live processing
		// runs, in the order they were received: each hit under the rules
		// of its receipt (or today's), sessions settled and frozen as live
		// processing settled and froze them.
		v := visitor.New(client)
		prior, seen := firstSeen[client]
		if seen && prior.Before(dayStart) {
			v.FrozenSessions = 1 // a session before the day: none of the day's is the first
		}
		hs := byClient[client]
		slices.SortFunc(hs, func(a, b *hit.Hit) int {
			return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), strings.Compare(a.ID, b.ID))
		})
		c := derive.New()
		var st session.Settings
		var changed sessionRows
		for _, h := range hs {
			_, chs := apply(v, h, p, d.rulesOf(h), &st, c)
			for _, ch := range chs {
				changed.add(ch)
			}
		}
		changed.add(v.Settle(c)) // the day's hits derived together (visitor.Place)
		ids := slices.Sorted(maps.Keys(changed.upserts))
		d.days[client] = daysOf(day, changed.upserts)
		for _, id := range ids {
			u := changed.upserts[id]
			if u.First {
				firstSeen[client] = u.Session.Start
				d.firsts[client] = userFirst{u.Session.Start, visitor.TouchOf(u.Session)}
			}
			writes = append(writes, sessionWrites(p.ID, shard, client, u.First, u.Session, nil, nil)...)
			sessions[entityRow(shard, u.Session.Hour, id)] = true
			for _, h := range u.Session.Hits {
				hitRows[entityRow(shard, session.LocalHour(h.Time, u.Session.Location), h.ID)] = true
			}
		}
		rows.add(p.ID, shard, 0, d.now, c)
	}
	var derived []keyedRow
	rows.each(func(k rowKey, r *row) bool {
		if k.kind != kindRealtime { // realtime rows of a closed day have long expired
			derived = append(derived, keyedRow{k, r})
		}
		return true
	})
	var rollups []stmt
	kept := make(map[string]bool, len(derived)) // by rowID
	for _, kr := range derived {
		w, err := rowWrite(kr.key, kr.row, FinalOffset, reprocessed)
		if err != nil {
			return err
		}
		rollups = append(rollups, w)
		kept[rowID(kr.key)] = true
	}
	for _, shard := range shards {
		for _, k := range stored[shard] {
			if !kept[rowID(k)] {
				rollups = append(rollups, rowDelete(k))
			}
		}
		delete(stored, shard)
	}
	wr := d.writer()
	if err := wr.exec(ctx, writes); err != nil {
		return fmt.Errorf("write reprocessed %s: %w", day.Format(time.DateOnly), err)
	}
	if err := d.replacer().exec(ctx, rollups); err != nil {
		return fmt.Errorf("replace the rollups of %s: %w", day.Format(time.DateOnly), err)
	}
	stale, err := staleEntities(ctx, d.s, p, day, shards, sessions, hitRows, d.staleClients)
	if err != nil {
		return err
	}
	if err := wr.exec(ctx, stale); err != nil {
		return fmt.Errorf("delete stale rows of %s: %w", day.Format(time.DateOnly), err)
	}
	return nil
}

// userFirsts returns the writes of the users rows' first-touch columns
// (first_seen and the first source, medium, campaign and channel) that
// the day changes, from the rows stored of the day's clients with no
// first session before it (known) and the first sessions the day holds
// (firsts): a client whose first session is on the day gets it; one whose
// stored first session lies in the range up to the day, but who has none
// there now, gets its first session after the range
// (FirstSessions.later), or none. A client whose first session a later
// day of the range holds gets it when that day is run.
func (d *dayRun) userFirsts(ctx context.Context) ([]stmt, error) {
	stored, firsts := d.known, d.firsts
	var moved []string
	end := rollup.DayStart(d.day.AddDate(0, 0, 1), d.p.Location)
	for client, u := range stored {
		if _, placed := d.users.seen[client]; !placed && !u.first.Before(d.users.since) && u.first.Before(end) {
			moved = append(moved, client)
		}
	}
	later, err := d.users.later(ctx, d.s, d.p, moved, d.now)
	if err != nil {
		return nil, err
	}
	maps.Copy(firsts, later)
	for _, client := range moved {
		if _, ok := later[client]; !ok {
			firsts[client] = userFirst{} // no session at all
		}
	}
	// A first session moved across the range's end, from where it was
	// before the run, leaves the day after the range on its side as it
	// was: new on neither day, or on both.
	after := rollup.DayStart(d.users.after, d.p.Location)
	for client, f := range firsts {
		pre := d.users.before[client]
		if f.start.IsZero() || pre.IsZero() || f.start.Before(after) == pre.Before(after) {
			delete(d.users.moved, client)
			continue
		}
		beyond := f.start
		if pre.After(beyond) {
			beyond = pre
		}
		d.users.moved[client] = session.LocalDay(beyond, d.p.Location)
	}
	var out []stmt
	for _, client := range slices.Sorted(maps.Keys(firsts)) {
		f, u := firsts[client], stored[client]
		// site_users holds milliseconds; a derived start has the hits'
		// precision (collection's: finer).
		if _, ok := stored[client]; ok && f.start.Truncate(time.Millisecond).Equal(u.first) && f.touch == u.touch {
			continue
		}
		var start any
		if !f.start.IsZero() {
			start = f.start
		}
		out = append(out, stmt{partition: "v/" + d.p.ID + "/" + client, cql: cqlUserFirst,
			args: []any{d.p.ID, client, start, f.touch.Source, f.touch.Medium, f.touch.Campaign, f.touch.Channel}})
	}
	return out, nil
}

// shardsBelow returns 0 to n-1.
func shardsBelow(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// archiveDays returns the UTC days, by which the archive is partitioned,
// that a property-local day overlaps (one or two).
func archiveDays(p *Property, day time.Time) []time.Time {
	start, end := rollup.DayStart(day, p.Location), rollup.DayStart(day.AddDate(0, 0, 1), p.Location)
	var out []time.Time
	for d := start.UTC().Truncate(24 * time.Hour); d.Before(end); d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// archivedBeyond reports whether any shard at or past the property's
// shard count holds archived hits of the property-local day: the count
// was lowered since.
func archivedBeyond(ctx context.Context, s *gocql.Session, p *Property, day time.Time) (bool, error) {
	type probe struct {
		table string
		day   time.Time
		shard int
	}
	var probes []probe
	for _, d := range archiveDays(p, day) {
		for shard := max(p.Shards, 1); shard < hit.MaxShards; shard++ {
			for _, table := range []string{"raw_hit_blocks_by_hour", "raw_hit_blocks", "raw_hits"} {
				probes = append(probes, probe{table, d, shard})
			}
		}
	}
	found := make([]bool, len(probes))
	err := parallel(ctx, 32, len(probes), func(ctx context.Context, i int) error {
		pr := probes[i]
		var err error
		found[i], err = holdsRows(ctx, s, pr.table, p.ID, pr.day, pr.shard)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("look for archived hits past shard %d: %w", p.Shards-1, err)
	}
	return slices.Contains(found, true), nil
}

// archivedHits returns the archived hits of shards whose property-local
// day is day. The archive is partitioned by UTC day, so the (at most two)
// UTC days the local day overlaps are read.
func archivedHits(ctx context.Context, s *gocql.Session, p *Property, day time.Time, shards []int) ([]*hit.Hit, error) {
	var out []*hit.Hit
	for _, d := range archiveDays(p, day) {
		for _, shard := range shards {
			hits, err := archivedPartition(ctx, s, p.ID, d, shard)
			if err != nil {
				return nil, err
			}
			for _, h := range hits {
				if session.LocalDay(h.Time, p.Location).Equal(day) {
					out = append(out, h)
				}
			}
		}
	}
	return out, nil
}

// FirstSessions tracks the first session of clients across a reprocessed
// range. It holds every client of the range with a first session (about
// 100 bytes each), so a run's memory grows with the range's users.
type FirstSessions struct {
	since time.Time // start of the reprocessed range
	after time.Time // the first property-local day after it
	seen  map[string]time.Time
	// before holds each client's first session as its users row had it
	// when this run first read it, before the run wrote any; moved the
	// clients whose first session the run has moved across the range's
	// end since (into the range from a day after it, or out of it to one),
	// with the latest local day after the range it was or is on.
	before map[string]time.Time
	moved  map[string]time.Time
}

// pastRange returns how many users' first sessions the run has moved
// across the range's end, and the latest day after the range they were or
// are on (Progress.PastRangeUsers, PastRangeThrough).
func (f *FirstSessions) pastRange() (int, time.Time) {
	var through time.Time
	for _, day := range f.moved {
		if day.After(through) {
			through = day
		}
	}
	return len(f.moved), through
}

// NewFirstSessions returns the tracker for a range of p's property-local
// days from..to.
func NewFirstSessions(p *Property, from, to time.Time) *FirstSessions {
	return &FirstSessions{since: rollup.DayStart(from, p.Location), after: to.AddDate(0, 0, 1), seen: map[string]time.Time{},
		before: map[string]time.Time{}, moved: map[string]time.Time{}}
}

// load looks up a first session before the range in site_users (as live
// processing or an earlier reprocessing recorded it) for the clients it
// knows none of, and returns their users rows as stored. A recorded first
// session inside the range is not taken: the range is being re-derived,
// possibly under other rules, and decides for itself. (A client is looked
// up again on each day it comes back without a first session derived,
// which only a client all of whose hits are excluded does: cheaper than
// remembering every client looked up.)
func (f *FirstSessions) load(ctx context.Context, s *gocql.Session, property string, clients []string) (map[string]userRow, error) {
	var todo []string
	for _, c := range clients {
		if _, ok := f.seen[c]; !ok {
			todo = append(todo, c)
		}
	}
	users, err := readUsers(ctx, s, property, todo)
	if err != nil {
		return nil, fmt.Errorf("read first sessions: %w", err)
	}
	for _, c := range todo {
		if _, ok := f.before[c]; !ok {
			f.before[c] = users[c].first
		}
	}
	for client, u := range users {
		if !u.first.IsZero() && u.first.Before(f.since) {
			f.seen[client] = u.first
		}
	}
	return users, nil
}

// loadDay records the first sessions a reprocessed day holds, as it wrote
// them: a resumed job does not derive again the days it finished, and
// their new users are not new on the days after.
func (f *FirstSessions) loadDay(ctx context.Context, s *gocql.Session, p *Property, day time.Time) error {
	return daySessions(ctx, s, p, day, func(r storedSession) {
		if prior, ok := f.seen[r.client]; r.new && (!ok || r.start.Before(prior)) {
			f.seen[r.client] = r.start
		}
	})
}

// later finds the first session of each of clients in the days after the
// range: the sessions stored there (by live processing, or by an earlier
// reprocessing), which the range's job does not change. A client without
// one is missing from what it returns. It reads day by day, every shard of
// each, until it has found them all or passed the last day any client not
// found yet has a hit on (lastHitDays): a client that has not come back
// since the range costs no read.
func (f *FirstSessions) later(ctx context.Context, s *gocql.Session, p *Property, clients []string, now time.Time) (map[string]userFirst, error) {
	until, err := lastHitDays(ctx, s, p, clients, now)
	if err != nil {
		return nil, err
	}
	found := map[string]userFirst{}
	for day := f.after; ; day = day.AddDate(0, 0, 1) {
		var last time.Time // the latest day a client not found yet may have a session on
		for c, u := range until {
			if _, ok := found[c]; !ok && u.After(last) {
				last = u
			}
		}
		if day.After(last) {
			return found, nil
		}
		err := daySessions(ctx, s, p, day, func(r storedSession) {
			if prior, ok := found[r.client]; !until[r.client].IsZero() && (!ok || r.start.Before(prior.start)) {
				found[r.client] = userFirst{r.start, r.touch}
			}
		})
		if err != nil {
			return nil, err
		}
	}
}

// lastHitDays returns, for each of clients, the last property-local day
// it can have a session on: the day of its visitor's watermark (the
// latest receipt of its hits, kept or excluded, as its stored state has
// it) and one more, since a flush writes a visitor's sessions before the
// state that records their hits; today for a client without a state.
func lastHitDays(ctx context.Context, s *gocql.Session, p *Property, clients []string, now time.Time) (map[string]time.Time, error) {
	today := session.LocalDay(now, p.Location)
	found, err := readByClient(ctx, clients, func(ctx context.Context, part []string, into map[string]time.Time) error {
		iter := s.Query("SELECT client_id, state FROM visitor_state WHERE property_id = ? AND client_id IN ?", p.ID, part).WithContext(ctx).Iter()
		var client string
		var state []byte
		for iter.Scan(&client, &state) {
			v, err := visitor.Unmarshal(state)
			if err != nil {
				iter.Close()
				return fmt.Errorf("visitor %s/%s: %w", p.ID, client, err)
			}
			if last := session.LocalDay(v.Watermark, p.Location).AddDate(0, 0, 1); last.Before(today) {
				into[client] = last
			}
		}
		return iter.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("read the last hits of users: %w", err)
	}
	for _, c := range clients {
		if _, ok := found[c]; !ok {
			found[c] = today
		}
	}
	return found, nil
}

// storedSession is a session row as reprocessing reads it back.
type storedSession struct {
	client string
	start  time.Time
	new    bool
	touch  visitor.Touch
}

// daySessions hands each to the sessions stored for a property-local day,
// every shard's. A day finished before the upgrade to the tables
// partitioned by hour has its rows in sessions, one finished since in
// sessions_by_hour: both are read, and a session in both (live processing
// wrote it across the upgrade) is taken once, as sessions_by_hour holds
// it.
func daySessions(ctx context.Context, s *gocql.Session, p *Property, day time.Time, each func(storedSession)) error {
	list := lister(ctx, s)
	for shard := range hit.MaxShards {
		byID := map[string]storedSession{}
		for _, table := range []string{"sessions", "sessions_by_hour"} { // the new table's row last: it wins
			cql, args := selectDayShard("session_id, client_id, started_at, new_user, source, medium, campaign, channel", table, p.ID, day, shard)
			err := list(cql, args, func(scan func(...any) bool) error {
				var id string
				var r storedSession
				for scan(&id, &r.client, &r.start, &r.new, &r.touch.Source, &r.touch.Medium, &r.touch.Campaign, &r.touch.Channel) {
					byID[id] = r
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read the sessions of %s: %w", day.Format(time.DateOnly), err)
			}
		}
		for _, r := range byID {
			each(r)
		}
	}
	return nil
}

// storedRollups lists the keys of the day's stored rollup rows (daily,
// hourly, filtered hits), by shard. It holds a key for each of the day's
// rows, some 200 bytes each, and reads each partition once a day (shard
// is the last of the rows' keys, so a shard's rows of a partition cannot
// be read alone).
func storedRollups(ctx context.Context, s *gocql.Session, p *Property, day time.Time) (map[int][]rowKey, error) {
	out := map[int][]rowKey{}
	list := lister(ctx, s)
	// The retired reports' rows of the day are listed too: the run deletes
	// them with the other rows it does not derive.
	reports := slices.Concat(rollup.AcquisitionReports, []string{rollup.Page, rollup.EventCategory, rollup.EventAction, rollup.Event}, rollup.RetiredReports)
	for _, report := range reports {
		err := list("SELECT dimension, shard FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?", []any{p.ID, day, report},
			func(scan func(...any) bool) error {
				var dim string
				var shard int16
				for scan(&dim, &shard) {
					sh := int(shard)
					out[sh] = append(out[sh], shardKey{p.ID, sh}.daily(derive.DailyKey{Day: day, Report: report, Dimension: dim}))
				}
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("list %s rollups: %w", report, err)
		}
	}
	err := list("SELECT hour, shard FROM rollup_hourly WHERE property_id = ? AND day = ?", []any{p.ID, day}, func(scan func(...any) bool) error {
		var hour, shard int16
		for scan(&hour, &shard) {
			sh := int(shard)
			out[sh] = append(out[sh], shardKey{p.ID, sh}.hourly(derive.HourKey{Day: day, Hour: int(hour)}))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list hourly rollups: %w", err)
	}
	err = list("SELECT reason, shard FROM filtered_hits WHERE property_id = ? AND day = ?", []any{p.ID, day}, func(scan func(...any) bool) error {
		var reason string
		var shard int16
		for scan(&reason, &shard) {
			sh := int(shard)
			out[sh] = append(out[sh], shardKey{p.ID, sh}.filtered(derive.FilteredKey{Day: day, Reason: reason}))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list filtered hits: %w", err)
	}
	return out, nil
}

// holdsRows reports whether table holds a row of the property's (day,
// shard), reading at most one.
func holdsRows(ctx context.Context, s *gocql.Session, table, property string, day time.Time, shard int) (bool, error) {
	cql, args := selectDayShard("shard", table, property, day, shard)
	iter := s.Query(cql+" LIMIT 1", args...).WithContext(ctx).Iter()
	held := iter.NumRows() > 0
	return held, iter.Close()
}

// entityRow identifies a row of a shard's day in sessions_by_hour,
// pageviews_by_hour or events_by_hour: its hour and ID.
func entityRow(shard, hour int, id string) string {
	return strconv.Itoa(shard) + "/" + strconv.Itoa(hour) + "/" + id
}

// staleEntities lists deletes of the day's stored session, pageview and
// event rows of shards that the reprocessed day no longer has: those not
// in sessions and hitRows (by entityRow), and, so that the day's rows are
// in the tables partitioned by hour only, each (day, shard) partition of
// the tables they replaced that holds a row. It reads each table's
// (day, shard) once: the 24 hours' partitions in one query, the old
// table's partition for one row. It adds the clients of the session rows it
// deletes to clients.
func staleEntities(ctx context.Context, s *gocql.Session, p *Property, day time.Time, shards []int, sessions, hitRows, clients map[string]bool) ([]stmt, error) {
	var out []stmt
	list := lister(ctx, s)
	for _, shard := range shards {
		sh := int16(shard)
		for _, t := range []struct {
			table, id string
			keep      map[string]bool
			old       string // the table it replaced (cql/0017_hourly_partitions.cql)
		}{
			{"sessions_by_hour", "session_id", sessions, "sessions"},
			{"pageviews_by_hour", "hit_id", hitRows, "pageviews"},
			{"events_by_hour", "hit_id", hitRows, "events"},
		} {
			cql, args := selectDayShard("hour, client_id, "+t.id, t.table, p.ID, day, shard)
			err := list(cql, args, func(scan func(...any) bool) error {
				var hour int16
				var client, id string
				for scan(&hour, &client, &id) {
					if !t.keep[entityRow(shard, int(hour), id)] {
						if t.table == "sessions_by_hour" {
							clients[client] = true
						}
						out = append(out, stmt{partition: hourPartition(t.table, p.ID, day, shard, int(hour)),
							cql:  "DELETE FROM " + t.table + " WHERE property_id = ? AND day = ? AND shard = ? AND hour = ? AND " + t.id + " = ?",
							args: []any{p.ID, day, sh, hour, id}})
					}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", t.table, err)
			}
			held, err := holdsRows(ctx, s, t.old, p.ID, day, shard)
			if err != nil {
				return nil, fmt.Errorf("look for rows of %s: %w", t.old, err)
			}
			if held {
				out = append(out, stmt{partition: t.old + "/" + p.ID + "/" + dayString(day) + "/" + strconv.Itoa(shard),
					cql: "DELETE FROM " + t.old + " WHERE property_id = ? AND day = ? AND shard = ?", args: []any{p.ID, day, sh}})
			}
		}
	}
	return out, nil
}

// lister returns a function that runs a query and hands its scan to each.
func lister(ctx context.Context, s *gocql.Session) func(cql string, args []any, each func(scan func(dest ...any) bool) error) error {
	return func(cql string, args []any, each func(scan func(dest ...any) bool) error) error {
		iter := s.Query(cql, args...).WithContext(ctx).PageSize(5000).Iter()
		if err := each(iter.Scan); err != nil {
			iter.Close()
			return err
		}
		return iter.Close()
	}
}

// rowID is a comparable identity of a row key for set membership.
func rowID(k rowKey) string {
	return fmt.Sprintf("%d/%d/%v/%v/%v", k.kind, k.shard, k.daily, k.hourly, k.filtered)
}

// ErrUnknownRulesVersion is the error of a job whose pinned rules version
// the property's history no longer holds.
var ErrUnknownRulesVersion = errors.New("unknown rules version")

// Reprocessor re-derives a range of days, reporting progress.
type Reprocessor struct {
	Session *gocql.Session
	Log     *slog.Logger
	Now     func() time.Time
	// CurrentVersion is the rules version RulesCurrent applies (a job's,
	// pinned when it was made); zero: the version in effect at CurrentAt,
	// and when that is zero too, when Run starts.
	CurrentVersion int
	CurrentAt      time.Time
}

// Progress is reported after each day.
type Progress struct {
	Day       time.Time
	Done, All int
	// PastRangeUsers counts the users whose first session the run has
	// moved across the end of the range so far (out of it, or into it from
	// a day after it), from where their users rows had it before the run;
	// PastRangeThrough is the latest day after the range such a session
	// was or is on. The days after the range count them new as before,
	// until a job through that day.
	PastRangeUsers   int
	PastRangeThrough time.Time
}

// Run reprocesses the property-local days from..to (inclusive) in order.
// skip reports days already done (a resumed job); progress is called after
// each day. It is safe to run again over the same days.
func (rp *Reprocessor) Run(ctx context.Context, p *Property, from, to time.Time, mode RulesMode, skip func(time.Time) bool, progress func(Progress) error) error {
	if to.Before(from) {
		return fmt.Errorf("the range ends (%s) before it starts (%s)", to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	if mode != RulesHistorical && mode != RulesCurrent {
		return fmt.Errorf("rules mode %q: want %q or %q", mode, RulesHistorical, RulesCurrent)
	}
	now := time.Now
	if rp.Now != nil {
		now = rp.Now
	}
	var current *rules.Compiled
	switch {
	case rp.CurrentVersion != 0:
		if current = p.version(rp.CurrentVersion); current == nil {
			return fmt.Errorf("%w: rules version %d, which the job applies, is not in the property's rule history (pruned?); make a new job", ErrUnknownRulesVersion, rp.CurrentVersion)
		}
	case rp.CurrentAt.IsZero():
		current = p.RulesAt(now())
	default:
		current = p.RulesAt(rp.CurrentAt)
	}
	all := int(to.Sub(from).Hours()/24) + 1
	users := NewFirstSessions(p, from, to)
	for i, d := 0, from; !d.After(to); i, d = i+1, d.AddDate(0, 0, 1) {
		if skip != nil && skip(d) {
			// Done before: its users' first sessions are as it wrote them.
			if err := users.loadDay(ctx, rp.Session, p, d); err != nil {
				return err
			}
			continue
		}
		err := ReprocessDay(ctx, rp.Session, p, d, mode, current, users, now())
		if errors.Is(err, ErrNoArchive) && rp.Log != nil {
			rp.Log.Warn("reprocessing left a day as it is", slog.String("property_id", p.ID), slog.Any("reason", err))
		}
		if err != nil && !errors.Is(err, ErrNoArchive) {
			return err
		}
		if progress != nil {
			pr := Progress{Day: d, Done: i + 1, All: all}
			pr.PastRangeUsers, pr.PastRangeThrough = users.pastRange()
			if err := progress(pr); err != nil {
				return err
			}
		}
	}
	if crossed, through := users.pastRange(); crossed > 0 && rp.Log != nil {
		rp.Log.Warn("reprocessing moved users' first sessions across the end of its range: the days after it count them new as before, on neither day or on both, until they are reprocessed too",
			slog.String("property_id", p.ID), slog.Int("users", crossed), slog.String("reprocess_through", through.Format(time.DateOnly)))
	}
	return nil
}
