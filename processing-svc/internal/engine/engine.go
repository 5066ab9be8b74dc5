// Package engine is the processing of one partition of the hits topic:
// it applies each property's rules, sessionizes visitors, and keeps the
// report rollups, flushing everything derived to Cassandra before the
// consumer commits the offset.
//
// Exactly once in effect: every row is a whole-value upsert; visitor state
// records the offset through which it includes the visitor's hits, and each
// additive row (rollups, filtered hits, realtime) the offset through which
// it includes its contributions. A flush writes the additive rows and the
// archive, then the visitors that are due (StatePolicy: their sessions,
// pageviews and events, then their states), and returns an offset to commit
// that is below the first hit of every visitor not written yet. After a
// crash the partition is consumed again from the last committed offset, and
// a replayed hit changes a visitor only if its offset is past the visitor's
// applied offset, and a row only if past the row's through offset; and a
// hit derived under another rules version than the one stamped on it is
// derived again under the same, which the flush recorded before its rows
// (fallback.go). A visitor's hits between two flushes are derived
// together but for the messages an earlier owner may have written rows
// for, which each flush marks before its rows (marks.go, SettleFrom), so
// that hits settled together never straddle a row's through offset. The
// argument is written out in docs/processing.md.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/derive"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
	"github.com/gocql/gocql"
)

// Message is one record of the hits topic.
type Message struct {
	Offset int64
	Value  []byte
}

// Config configures a Partition.
type Config struct {
	Topic      string
	Partition  int32
	Session    *gocql.Session
	Properties Properties
	// DeadLetter publishes rejected messages; called during Flush, before
	// the offset may be committed.
	DeadLetter func(ctx context.Context, dl []hit.DeadLetter) error
	Log        *slog.Logger
	// Concurrency bounds the reads and writes in flight (default 32).
	Concurrency int
	// IdleEviction drops visitors and rows untouched for this long from
	// memory (default 10m), once written, at a flush or an Evict (the
	// consumer's, at each flush tick of a partition with nothing to
	// flush); rows are looked over every IdleEviction/rowSweeps, so one
	// may stay that much longer.
	IdleEviction time.Duration
	// State says when a changed visitor's state, and the rows of its visits,
	// are written.
	State StatePolicy
	// Now is the clock of the policies above (default time.Now; tests).
	Now func() time.Time
}

// StatePolicy says when a flush writes what a visitor's hits changed in
// its own rows: its sessions, pageviews and events, its users row, and last
// its state (the durable copy of its sessionizing state). Every flush
// writes the report rollups and the raw archive, so reports never wait for
// these; nothing reads them on a report's path. Writing them when a visit
// goes quiet instead of at every flush the visitor had a hit in writes a
// session row, a users row and a state about once per visit rather than
// once per hit (a visitor's hits are usually further apart than a flush).
// The price is that the offset committed stays below the first hit of
// every visitor not yet written: a processor that crashes re-reads from
// there, and the offsets recorded in the stored states and rows make the
// re-read hits change nothing that was written (docs/processing.md).
//
// The zero policy writes every changed visitor at every flush.
type StatePolicy struct {
	// Quiet writes a visitor once it has had no hit for this long.
	Quiet time.Duration
	// MaxDelay writes it at the latest this long after its first unwritten
	// change, which bounds what a crash makes the processor re-read. Zero:
	// at every flush.
	MaxDelay time.Duration
	// Encoding is the visitor state encoding written (0: 3). 3 counts a
	// user's sessions per day in the users row, converting the visitors
	// read in 2; 2 keeps those in 2 and starts new ones in 2 (one figure,
	// as builds before 2026-12-07 write and read), for the first step of
	// the upgrade (docs/operations.md). A visitor in 3 stays in 3 either
	// way.
	Encoding int
}

// DefaultStatePolicy is processing's default (flags -state-quiet and
// -state-max-delay): a visit is written about once, two minutes after its
// last hit, and a crash re-reads at most five minutes of a partition.
var DefaultStatePolicy = StatePolicy{Quiet: 2 * time.Minute, MaxDelay: 5 * time.Minute}

// due reports whether a visitor changed first at since and last at last
// is to be written at now.
func (sp StatePolicy) due(since, last, now time.Time) bool {
	return now.Sub(since) >= sp.MaxDelay || (sp.Quiet > 0 && now.Sub(last) >= sp.Quiet)
}

// vstate is a visitor in memory.
type vstate struct {
	v        *visitor.Visitor
	property string
	shard    int
	applied  int64 // offset through which the stored state includes hits
	used     time.Time
	// unsaved: changed since the visitor was last written; since is when
	// (wall clock) and first the offset of the hit that did it; changed is
	// when the last change was.
	unsaved        bool
	first          int64
	since, changed time.Time
	rows           sessionRows      // to write, since the visitor was last written
	settings       session.Settings // of the last hit: for the users row (its rules version)
	// written remembers each live hit's pageview or event row as last
	// written (and where), so a flush rewrites only the rows that changed
	// and deletes those that moved; sigs holds the flush's new rows until
	// it succeeds.
	written, sigs map[string]hitRow
	// firstWritten is the user's first session (start and touch) as the
	// users row was last written, or as the stored state says it was. The
	// row's first-touch columns are written only when it changes
	// (userWrites).
	firstWritten userFirst
	// days are the local days whose sessions changed since the users row
	// was last written (a visitor.PerDay visitor's): the days it writes.
	days map[time.Time]bool
	// converted: the visitor was read in state encoding 2 and counts per
	// day since (visitor.ConvertPerDay); its users row's one figure is not
	// its base yet.
	converted bool
	// placedAt is the offset of the visitor's last hit placed since the
	// last flush (visitor.Place), and inPlaced whether it is in
	// Partition.placed.
	placedAt int64
	inPlaced bool
}

// add records what one of the visitor's hits, or a Settle, changed in its
// session rows.
func (vs *vstate) add(ch visitor.Changes) {
	vs.rows.add(ch)
	vs.changedDays(ch)
}

// changedDays records the days of the sessions ch changes.
func (vs *vstate) changedDays(ch visitor.Changes) {
	if !vs.v.PerDay || len(ch.UpsertSessions)+len(ch.DeleteSessions) == 0 {
		return
	}
	if vs.days == nil {
		vs.days = map[time.Time]bool{}
	}
	for _, u := range ch.UpsertSessions {
		vs.days[u.Session.Day] = true
	}
	for _, del := range ch.DeleteSessions {
		vs.days[del.Day] = true
	}
}

// userFirst is a user's first session: its start and acquisition.
type userFirst struct {
	start time.Time
	touch visitor.Touch
}

// Partition processes one partition. It is not safe for concurrent use:
// one goroutine applies messages and flushes.
type Partition struct {
	cfg      Config
	w        writer
	visitors map[string]*vstate
	rows     *rowSet
	contrib  *derive.Contributions // the hit being applied's, reused
	archive  archive
	dead     []hit.DeadLetter
	last     int64 // offset of the last message applied; -1 before any
	flushed  int64 // of the last message whose derived rows are written
	unsaved  int   // visitors not written since they changed
	stats    Stats
	// Versions of hits derived under another than their stamped one
	// (fallback.go): recorded by earlier owners for offsets from the one
	// this Partition started from up to below recordedEnd (read by the
	// first Apply, recordedRead), and those of the hits applied since the
	// last flush, which it records.
	recorded, unrecorded fallbacks
	recordedEnd          int64
	recordedRead         bool
	// settleBefore: a visitor's hits at offsets below it are derived one
	// at a time; from it on, those between two flushes together
	// (SettleFrom), but up to replayedThrough.
	settleBefore int64
	// replayedThrough is the offset through which an earlier owner may
	// have written rows (processing_marks, read by the first Apply; -1:
	// none), and marked the highest offset the marks say, read or
	// written (marks.go).
	replayedThrough, marked int64
	// placed are the visitors with hits placed since the last flush, to
	// settle when it starts (visitor.Place).
	placed []*vstate
}

// rowSweeps is how many times per IdleEviction a flush goes through the
// rows in memory to evict the idle ones; the flushes in between go
// through the changed rows only.
const rowSweeps = 8

// Stats count what a partition did since it started.
type Stats struct {
	Applied, Duplicates, Excluded, TooLate, OverLimit, Skipped, DeadLetters int64
	// Statements counts the CQL statements flushes wrote (rows, deletes,
	// archive blocks), Requests the requests they went in (a batch of a
	// partition's statements, or one statement): the write amplification
	// per hit.
	Statements, Requests int64
	// Bytes counts the text and blob values of those statements (valueBytes).
	Bytes int64
	// Fallbacks counts the hits derived under another rules version than
	// the one stamped on them: the property's copy of the rule history did
	// not have it, or an earlier owner of the partition recorded deriving
	// the hit under another (fallback.go).
	Fallbacks int64
	// VisitorReads counts the visitors looked up in the store because they
	// were not in memory: at their first hit since the Partition started
	// (all the active ones again when it starts cold after a rebalance),
	// since they were evicted, or at all (new visitors).
	VisitorReads int64
	// RowReads counts the queries reading rollup rows not in memory
	// (their stored values, or that there are none): a query for each
	// day's rollup_daily rows of a property and shard new since the last
	// read (up to dailyReadCombinations), one for each other row.
	RowReads int64
}

// New returns a Partition that starts after committed offset-1 (pass the
// offset the consumer resumes from, or -1 if unknown).
func New(cfg Config) *Partition {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
	}
	if cfg.IdleEviction == 0 {
		cfg.IdleEviction = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.State.Encoding == 0 {
		cfg.State.Encoding = 3
	}
	return &Partition{
		cfg:      cfg,
		w:        writer{session: cfg.Session, concurrency: cfg.Concurrency, batchSize: 50, shareBytes: shareBatchBytes},
		visitors: map[string]*vstate{},
		rows:     newRowSet(),
		contrib:  derive.New(),
		last:     -1,
		flushed:  -1,

		settleBefore:    math.MaxInt64,
		replayedThrough: -1,
		marked:          -1,
	}
}

// SettleFrom lets the partition derive a visitor's hits between two flushes
// together from offset on (visitor.Place, and Settle when the flush starts:
// settlePlaced), where it derives each on its own: hits out of order (a
// client sending a long session's hits newest first) then build its sessions
// once a flush, not once a hit, which took time in the square of their
// number. A row's through offset skips a replayed hit's contributions
// already in it, so a visitor's hits settled together, whose changes go to
// the rows at the offset of the last of them, must all lie past it, or all
// before: the messages through the offset the partition's marks say an
// earlier owner may have written rows for (marks.go) are derived one at a
// time whatever offset says. The consumer gives the partition's high water
// mark when it claimed it, which also covers an earlier owner of a build
// that wrote no marks. A Partition is made deriving every hit on its own.
func (p *Partition) SettleFrom(offset int64) { p.settleBefore = offset }

// Stats returns the partition's counters.
func (p *Partition) Stats() Stats {
	st := p.stats
	st.Statements, st.Requests, st.Bytes = p.w.statements, p.w.requests, p.w.bytes
	return st
}

// decoded is a hit of a message after the batch's first pass. A message
// (a record) holds one hit or several of one key (hit.SplitRecord); they
// share its offset, and a batch always holds whole messages, so a record's
// hits are applied and flushed together.
type decoded struct {
	msg  Message
	raw  []byte // the hit's own encoding in the record
	h    *hit.Hit
	prop *Property
	key  string
}

// Apply applies msgs, which must be consecutive records of the partition
// in offset order. It loads what it needs first, so that an error (config
// or Cassandra unreachable) leaves the partition as it was; the caller may
// retry the same messages.
func (p *Partition) Apply(ctx context.Context, msgs []Message) error {
	if len(msgs) > 0 {
		if err := p.readRecorded(ctx, msgs[0].Offset); err != nil {
			return err
		}
	}
	batch := make([]decoded, 0, len(msgs))
	var dead []hit.DeadLetter
	props := map[string]*Property{}
	var load []int // in batch, the first hit of each visitor not in memory
	loading := map[string]bool{}
	// A visitor written and idle past IdleEviction is read afresh, as if
	// evicted: a flush or Evict (the consumer's, at each tick of a partition
	// with nothing to flush) drops it, but only at its next tick, and a
	// users row a reprocessing job wrote meanwhile must be seen
	// (loadVisitors).
	idleSince := p.cfg.Now().Add(-p.cfg.IdleEviction)
	for _, m := range msgs {
		parts, err := hit.SplitRecord(m.Value)
		if err != nil {
			dead = append(dead, p.deadLetter(m, m.Value, "undecodable", err.Error(), ""))
			batch = append(batch, decoded{msg: m})
			continue
		}
		for _, raw := range parts {
			d := decoded{msg: m, raw: raw}
			h, err := hit.Unmarshal(raw)
			if err != nil {
				dead = append(dead, p.deadLetter(m, raw, "undecodable", err.Error(), ""))
				batch = append(batch, d)
				continue
			}
			prop, ok := props[h.PropertyID]
			if !ok {
				prop, err = p.cfg.Properties.Property(ctx, h.PropertyID)
				if errors.Is(err, ErrUnknownProperty) {
					prop = nil
				} else if err != nil {
					return fmt.Errorf("look up property %s: %w", h.PropertyID, err)
				}
				props[h.PropertyID] = prop
			}
			if prop == nil {
				dead = append(dead, p.deadLetter(m, raw, "unknown_property", "no property "+h.PropertyID, h.TrackingID))
				batch = append(batch, d)
				continue
			}
			d.h, d.prop, d.key = h, prop, h.PropertyID+"/"+h.ClientID
			batch = append(batch, d)
			if vs, ok := p.visitors[d.key]; ok && !vs.unsaved && vs.used.Before(idleSince) {
				delete(p.visitors, d.key)
			}
			if _, ok := p.visitors[d.key]; !ok && !loading[d.key] {
				loading[d.key] = true
				load = append(load, len(batch)-1)
			}
		}
	}

	// Read the visitors not in memory, up to visitorsPerRead of a
	// property in each query.
	type read struct {
		property string
		clients  []string
		hits     []*decoded // each client's first hit, for its key
	}
	var reads []read
	byProperty := map[string]int{} // property -> its last read
	for _, bi := range load {
		d := &batch[bi]
		i, ok := byProperty[d.h.PropertyID]
		if !ok || len(reads[i].clients) == visitorsPerRead {
			reads = append(reads, read{property: d.h.PropertyID})
			i = len(reads) - 1
			byProperty[d.h.PropertyID] = i
		}
		reads[i].clients = append(reads[i].clients, d.h.ClientID)
		reads[i].hits = append(reads[i].hits, d)
	}
	loaded := make([]map[string]storedVisitor, len(reads))
	err := parallel(ctx, p.cfg.Concurrency, len(reads), func(ctx context.Context, i int) (err error) {
		loaded[i], err = loadVisitors(ctx, p.cfg.Session, reads[i].property, reads[i].clients, p.cfg.Partition, p.cfg.State.Encoding >= 3)
		return err
	})
	if err != nil {
		return err
	}
	p.stats.VisitorReads += int64(len(load))
	for i, r := range reads {
		for _, d := range r.hits {
			if _, ok := p.visitors[d.key]; ok {
				continue // an earlier hit of the batch's
			}
			sv := loaded[i][d.h.ClientID]
			vs := &vstate{v: sv.v, property: r.property, shard: ShardOf(d.h.ClientID, d.prop.Shards), applied: sv.applied}
			if len(sv.v.Hits) > 0 {
				// Its live sessions as the rollups hold them: derived
				// under the rules of its latest hits, which need not be
				// the next hit's.
				vs.settings = settings(d.prop, d.prop.liveRules(sv.v))
				sv.v.Sessions(vs.settings)
			}
			if !sv.v.PerDay && p.cfg.State.Encoding >= 3 {
				// Its live sessions move from the row's one figure to
				// their days, written with its next users row.
				sv.v.ConvertPerDay(vs.settings)
				vs.converted = true
				for _, ss := range sv.v.Sessions(vs.settings) {
					vs.changedDays(visitor.Changes{UpsertSessions: []visitor.Upsert{{Session: ss}}})
				}
			}
			vs.firstWritten = firstOf(vs)
			p.visitors[d.key] = vs
		}
	}

	// Nothing below fails: the batch is applied whole.
	p.dead = append(p.dead, dead...)
	p.stats.DeadLetters += int64(len(dead))
	now := p.cfg.Now()
	for i := range batch {
		d := &batch[i]
		if d.h != nil {
			p.applyHit(d, now)
		}
		p.last = d.msg.Offset
	}
	if p.recorded != nil && p.last >= p.recordedEnd-1 {
		p.recorded = nil // replayed past what was recorded
	}
	// Read the rows these hits created now, so that the next batches
	// apply to them directly rather than queueing changes for the flush.
	// Best effort: what fails to load is loaded by the flush, which
	// reports the error.
	_ = p.loadRows(ctx)
	return nil
}

// loadRows reads the stored state of the rows created since the last load
// and folds in the changes made to them meanwhile.
func (p *Partition) loadRows(ctx context.Context) error {
	keys := p.rows.unloaded
	todo := make([]rowKey, 0, len(keys))
	for _, k := range keys {
		if r := p.rows.get(k); r != nil && !r.loaded {
			todo = append(todo, k)
		}
	}
	reads := rowReads(todo)
	p.stats.RowReads += int64(len(reads))
	err := parallel(ctx, p.cfg.Concurrency, len(reads), func(ctx context.Context, i int) error {
		k := reads[i]
		if k[0].kind == kindDaily { // rowReads gives every other row alone
			return loadDailyRows(ctx, p.cfg.Session, p.cfg.Partition, k, p.rows.get)
		}
		return loadRow(ctx, p.cfg.Session, p.cfg.Partition, k[0], p.rows.get(k[0]))
	})
	p.rows.unloaded = slices.DeleteFunc(keys, func(k rowKey) bool {
		r := p.rows.get(k)
		return r == nil || r.loaded
	})
	p.rows.crowded = false
	return err
}

// pendingLoad is how many changes a row not yet read may queue before
// settlePlaced reads the rows created so far (rowSet.crowded). A flush
// settles every hit placed since the last, and after a start, or at a new
// day, most of them create rows: read only by the flush's loadRows, each
// row queued a change (about 200 bytes) for every hit that touched it
// meanwhile, about 750,000 of them at the busy property's benchmark's first
// flush, a tenth of its CPU in growing and copying them. A row that many
// hits touch is read early instead (a round trip), once as before, with
// the rows made since the last read; the rows of many small properties,
// each touched by a few hits, crowd none, so unless a busy one does, the
// flush reads them together, a query for a day's rows of each.
const pendingLoad = 256

// settlePlaced derives the sessions of the hits placed since the last
// flush (SettleFrom), each visitor's changes to the rows at the offset of
// the last of its hits placed: at the start of a flush, which writes them,
// so that a client sending a long session's hits newest first, one
// request at a time (each in a batch of its own), has them built once a
// flush rather than once a hit. Hits settled together so never straddle
// a flush, whose through offset is the only one a row of this processor's
// gets; and they come after replayedThrough (marks.go).
func (p *Partition) settlePlaced(ctx context.Context, now time.Time) {
	load := true
	for _, vs := range p.placed {
		vs.inPlaced = false
		c := p.contrib
		c.Reset()
		vs.add(vs.v.Settle(c))
		p.rows.add(vs.property, vs.shard, vs.placedAt, now, c)
		if load && p.rows.crowded {
			// Best effort, as at the end of Apply: the flush's own
			// loadRows reports what fails. Not again once a read has
			// failed (or ctx ended): a row left unread stays crowded,
			// and every visitor after would read the rows again
			// (TestSettleReadsFailOnce).
			load = p.loadRows(ctx) == nil
		}
	}
	p.rows.crowded = false
	clear(p.placed)
	p.placed = p.placed[:0]
}

func (p *Partition) applyHit(d *decoded, now time.Time) {
	vs := p.visitors[d.key]
	vs.used = now
	if d.msg.Offset <= vs.applied {
		p.stats.Skipped++ // already in the visitor's durable state
		return
	}
	h := d.h
	r, fellBack := d.prop.rulesOf(h)
	if fellBack || d.msg.Offset < p.recordedEnd {
		r = p.fallback(d, r, fellBack)
	}
	c := p.contrib
	c.Reset()
	st := vs.settings // the last hit's, unless the rules or the zone changed
	out, chs := apply(vs.v, h, d.prop, r, &st, c)
	switch out {
	case visitor.Duplicate:
		p.stats.Duplicates++
		return
	case visitor.Applied:
		p.stats.Applied++
	case visitor.Excluded:
		p.stats.Excluded++
	case visitor.TooLate:
		p.stats.TooLate++
	case visitor.OverLimit:
		p.stats.OverLimit++
	}
	if !vs.unsaved {
		vs.unsaved, vs.first, vs.since = true, d.msg.Offset, now
		p.unsaved++
	}
	vs.changed = now
	vs.settings = st
	for _, ch := range chs {
		vs.add(ch)
	}
	if vs.v.Placed() {
		if d.msg.Offset < p.settleBefore || d.msg.Offset <= p.replayedThrough {
			vs.add(vs.v.Settle(c))
		} else {
			vs.placedAt = d.msg.Offset
			if !vs.inPlaced {
				vs.inPlaced = true
				p.placed = append(p.placed, vs)
			}
		}
	}
	p.archive.add(h, d.raw, vs.shard)
	p.rows.add(vs.property, vs.shard, d.msg.Offset, now, c)
}

// apply applies h to v under rules r, as live processing and reprocessing
// both do: the exclusions, then the page rules, then the sessions. st holds
// the session settings of v's last hit, kept while the rules and the zone
// stay the same, and becomes this hit's.
func apply(v *visitor.Visitor, h *hit.Hit, p *Property, r *rules.Compiled, st *session.Settings, c *derive.Contributions) (visitor.Outcome, []visitor.Changes) {
	// While the visitor has live sessions, rules never go back to an
	// earlier version than they were derived under (collection instances
	// learn of a new version at slightly different moments): the latest
	// among their hits' (Property.liveRules), which is what a visitor
	// loaded from its state assumes. Not st's, the last hit's: a hit
	// excluded under a later version moved st and no session, and a
	// visitor read back would not know of it (a replay after a crash then
	// took away sessions the rollups did not hold). Looked up only when
	// st is ahead of h's version, which a rules change makes rare.
	src, built := st.Source.(settingsSource)
	if built && src.version > r.Version() && len(v.Hits) > 0 {
		if live := p.liveRules(v); live != nil && live.Version() > r.Version() {
			r = live
		}
	}
	if !built || src != sourceOf(p, r) {
		*st = settings(p, r)
	}
	if reason, excluded := r.ExclusionStored(h, p.stamped(h, r)); excluded {
		return v.Exclude(h.ID, h.Time, h.ReceivedAt, reason, p.Location, c), nil
	}
	sh, reason := toSessionHit(h, r)
	if sh == nil {
		return v.Exclude(h.ID, h.Time, h.ReceivedAt, reason, p.Location, c), nil
	}
	return v.Place(sh, h.ReceivedAt, *st, c)
}

// sessionRows are the session rows a visitor's hits ask to write or
// delete: upserts by session ID, deletes by row (sessionKey).
type sessionRows struct {
	upserts map[string]visitor.Upsert
	deletes map[sessionKey]visitor.SessionRef
}

// sessionKey identifies a session's row: its ID, and the day and hour
// (visitor.SessionRef) whose partition holds it.
type sessionKey struct {
	id        string
	day, hour int
}

func keyOf(ref visitor.SessionRef) sessionKey {
	return sessionKey{ref.ID, int(ref.Day.Unix() / (24 * 60 * 60)), ref.Hour}
}

// add records what a hit's application changed. A session's row is its
// ID, day and hour: an upsert replaces a pending delete of its row, and a
// delete a pending upsert of the row it deletes, so no row is both
// written and deleted. A session derived again under another zone keeps
// its ID but may move to another day or hour: the delete of its old row
// stays beside the upsert of its new one.
func (r *sessionRows) add(ch visitor.Changes) {
	if r.upserts == nil {
		r.upserts, r.deletes = map[string]visitor.Upsert{}, map[sessionKey]visitor.SessionRef{}
	}
	for _, del := range ch.DeleteSessions {
		if u, ok := r.upserts[del.ID]; ok && keyOf(visitor.RefOf(u.Session)) == keyOf(del) {
			delete(r.upserts, del.ID)
		}
		r.deletes[keyOf(del)] = del
	}
	for _, u := range ch.UpsertSessions {
		delete(r.deletes, keyOf(visitor.RefOf(u.Session)))
		r.upserts[u.Session.ID] = u
	}
}

// maxDeadLetterPayload bounds the bytes of a rejected message that its
// dead letter carries. A dead letter must fit in one message of the
// dead-letter producer (1 MB), or its publication fails on every retry
// and holds up the partition; the payload of a record as large as the
// hits topic takes grows by a third in base64, and text by up to six
// times in JSON's escapes. Hits are far smaller than this: only a
// broken record is cut.
const maxDeadLetterPayload = 64 << 10

// Bounds of a dead letter's detail and tracking ID, which quote the
// rejected message too (an unknown type, a property not known): a hit of
// 300 KB whose type is control characters (%q writes four bytes for
// each) made a letter over the producer's 1 MB, and the partition was
// held for good.
const (
	maxDeadLetterDetail = 1 << 10
	maxDeadLetterTID    = 64
)

// deadLetter rejects payload (a hit of message m, or the whole message
// when its hits cannot be told apart), keeping at most
// maxDeadLetterPayload bytes of it (cut at a character, so that text stays
// text) and saying so in the detail; the detail and tracking ID are cut
// as well.
func (p *Partition) deadLetter(m Message, payload []byte, reason, detail, tid string) hit.DeadLetter {
	if n := len(detail); n > maxDeadLetterDetail {
		detail = hit.CutUTF8(strings.ToValidUTF8(detail, "\uFFFD"), maxDeadLetterDetail) + fmt.Sprintf("... (detail cut from %d bytes)", n)
	}
	if len(tid) > maxDeadLetterTID {
		tid = hit.CutUTF8(strings.ToValidUTF8(tid, "\uFFFD"), maxDeadLetterTID)
	}
	if n := len(payload); n > maxDeadLetterPayload {
		cut := maxDeadLetterPayload
		for cut > maxDeadLetterPayload-utf8.UTFMax && !utf8.RuneStart(payload[cut]) {
			cut--
		}
		payload = payload[:cut]
		detail += fmt.Sprintf(" (payload cut to its first %d of %d bytes)", cut, n)
	}
	return hit.DeadLetter{Reason: reason, Detail: detail, Stage: hit.StageProcessing, TrackingID: tid,
		ReceivedAt: time.Now().UTC(), Payload: hit.PayloadText(payload), Partition: p.cfg.Partition, Offset: m.Offset}
}

// Pending reports whether a flush has anything to do: hits applied since
// the last flush, or visitors not yet written.
func (p *Partition) Pending() bool { return p.last > p.flushed || p.unsaved > 0 }

// Evict drops the visitors and rollup rows idle for IdleEviction whose
// writes are done: at the end of every flush, and, called alone, for a
// partition with nothing to flush (Pending false), which the consumer does
// not flush: one gone quiet kept its last visitors and rows in memory
// until its next hit.
func (p *Partition) Evict() {
	now := p.cfg.Now()
	for key, vs := range p.visitors {
		if !vs.unsaved && now.Sub(vs.used) > p.cfg.IdleEviction {
			delete(p.visitors, key)
		}
	}
	p.rows.evictIdle(now, now.Add(-p.cfg.IdleEviction), p.cfg.IdleEviction/rowSweeps)
}

// CanResume reports whether the Partition may go on from offset, the first
// offset of a new claim of its partition (after a rebalance), with what it
// holds in memory (visitors, rows, the fallback records it read at its
// first batch), rather than a new Partition reading all that again from
// the store: only when nothing is pending, so that every hit it applied is
// in the store and every visitor written (a hand-over's FlushAll
// succeeded, or nothing was left to write, and a failed flush's partial
// state is not carried over), and offset is the one after the last
// message it applied, so that the claim neither skips nor replays a
// message (Apply takes consecutive records). Then memory holds what the
// store holds and what a Partition that was never interrupted would.
//
// The caller must know besides that no other processor applied messages
// of the partition since this one last did: what is in memory is not read
// again, so another's writes would be overwritten, or applied twice. (The
// consumer resumes a Partition only in its group member's generation
// right after the one it applied it in.) A Partition that may not resume
// is dropped, and a new one started.
//
// A Partition that has applied nothing and read nothing (its partition
// had no message) is as good as a new one, and may resume at any offset.
func (p *Partition) CanResume(offset int64) bool {
	if p.last < 0 && !p.recordedRead {
		return true
	}
	return !p.Pending() && offset == p.last+1
}

// Flush writes the rollups and archive rows of the hits applied since the
// last flush and the visitors that are due (Config.State), and returns the
// offset through which everything derived is durable: the consumer commits
// the offset after it. That is the last message applied unless a visitor is
// not written yet: then it is the offset before the first hit applied to
// the earliest such visitor since it was last written. On error nothing
// may be committed; the in-memory state stays and a later Flush writes it
// again (every write is idempotent).
func (p *Partition) Flush(ctx context.Context) (int64, error) { return p.flush(ctx, false) }

// FlushAll is Flush writing every changed visitor, so that the offset it
// returns is the last message applied: for handing the partition over
// (rebalance, shutdown).
func (p *Partition) FlushAll(ctx context.Context) (int64, error) { return p.flush(ctx, true) }

func (p *Partition) flush(ctx context.Context, all bool) (int64, error) {
	through := p.last
	now := p.cfg.Now()
	p.settlePlaced(ctx, now)
	var due []*vstate
	for _, vs := range p.visitors {
		if vs.unsaved && (all || p.cfg.State.due(vs.since, vs.changed, now)) {
			due = append(due, vs)
		}
	}
	if through > p.flushed || len(due) > 0 {
		if err := p.writeDerived(ctx, through, due); err != nil {
			return 0, err
		}
	}

	// Phase two: the states of the visitors due, which say their hits are
	// fully written, each in one batch with the user's row: both tables
	// have the partition key (property, client), so the batch is one round
	// trip to the same replicas. (The users row is derived and idempotent:
	// a crash before it is written replays the visitor, which writes it
	// again.)
	var vstmts []stmt
	for _, vs := range due {
		b, err := vs.v.Marshal()
		if err != nil {
			return 0, err
		}
		user := userWrites(vs) // same partition label as the state: one batch
		vstmts = append(vstmts, user...)
		vstmts = append(vstmts, stmt{partition: user[0].partition, cql: cqlSaveVisitor,
			args: []any{vs.property, vs.v.ClientID, int(p.cfg.Partition), max(through, vs.applied), b}})
	}
	if err := p.w.exec(ctx, vstmts); err != nil {
		return 0, err
	}
	for _, vs := range due {
		vs.unsaved, vs.applied, vs.firstWritten = false, max(vs.applied, through), firstOf(vs) // as userWrites wrote it: nothing changed since
		vs.days, vs.converted = nil, false
		vs.v.PruneDays(vs.settings)
	}
	p.unsaved -= len(due)

	// Evict what is idle and written; find the first unwritten hit.
	p.Evict()
	commit := through
	for _, vs := range p.visitors {
		if vs.unsaved {
			commit = min(commit, vs.first-1)
		}
	}
	return commit, nil
}

// writeDerived is phase one of a flush: it writes the archive and the
// additive rows changed by the hits applied since the last flush (through
// the message at offset through), the sessions, pageviews and events of
// the visitors due, and the dead letters.
func (p *Partition) writeDerived(ctx context.Context, through int64, due []*vstate) error {
	// Load the rows not loaded yet, folding in the changes made meanwhile.
	if err := p.loadRows(ctx); err != nil {
		return err
	}

	stmts := slices.Grow(p.archive.writes(), len(p.rows.changed))
	for _, kr := range p.rows.changed {
		// A row loaded ahead of this flush (written by a processor that
		// crashed after getting further) keeps its through offset: it must
		// never go back, or hits between would be applied twice.
		s, err := rowWrite(kr.key, kr.row, max(through, kr.row.base), p.cfg.Partition)
		if err != nil {
			return err
		}
		stmts = append(stmts, s)
	}
	for _, vs := range due {
		for _, del := range vs.rows.deletes {
			stmts = append(stmts, sessionDeletes(vs.property, vs.shard, del)...)
		}
		if vs.written == nil {
			vs.written = map[string]hitRow{}
		}
		vs.sigs = map[string]hitRow{}
		for _, u := range vs.rows.upserts {
			stmts = append(stmts, sessionWrites(vs.property, vs.shard, vs.v.ClientID, u.First, u.Session, vs.written, vs.sigs)...)
		}
	}
	// The versions of hits derived under a fallback, and the mark of the
	// offset the rows are written through, go first: a replay must find
	// them wherever the rows holding those hits were written.
	first := p.markWrites(through)
	if len(p.unrecorded) > 0 {
		first = append(first, p.fallbackWrites()...)
	}
	if err := p.w.exec(ctx, first); err != nil {
		return err
	}
	p.marked = max(p.marked, through)
	if err := p.w.exec(ctx, stmts); err != nil {
		return err
	}
	if len(p.dead) > 0 && p.cfg.DeadLetter != nil {
		if err := p.cfg.DeadLetter(ctx, p.dead); err != nil {
			return fmt.Errorf("publish dead letters: %w", err)
		}
	}

	// Written: reset what was pending (flush then evicts what is idle).
	p.archive, p.dead, p.unrecorded = nil, nil, nil
	for _, vs := range due {
		vs.rows = sessionRows{}
		vs.recordWritten()
	}
	p.rows.wrote(through)
	p.flushed = through
	return nil
}

// recordWritten keeps the signatures of the rows just written, for the
// hits still in the visitor's timeline.
func (vs *vstate) recordWritten() {
	live := make(map[string]hitRow, len(vs.v.Hits))
	for _, h := range vs.v.Hits {
		if sig, ok := vs.sigs[h.ID]; ok {
			live[h.ID] = sig
		} else if sig, ok := vs.written[h.ID]; ok {
			live[h.ID] = sig
		}
	}
	vs.written, vs.sigs = live, nil
}

// userWrites returns the writes of the visitor's users row. Its
// first-touch columns (first_seen and the first source, medium, campaign
// and channel) are written only when the user's first session is not the
// one last written: reprocessing re-derives them for the closed days it
// replaces (docs/processing.md, "Reprocessing"), and a live processor's
// copy of a first session that has long been frozen must not write its
// view of it back over that. So are the figures of the days whose
// sessions changed since the last write (vstate.days), each day's whole
// (visitor.OnDay), and for the same reason only those. A visitor in state
// encoding 2 writes its session count and last seen as one figure.
func userWrites(vs *vstate) []stmt {
	v := vs.v
	partition := "v/" + vs.property + "/" + v.ClientID
	version := vs.settings.Source.(settingsSource).version
	f := firstOf(vs)
	first := !f.start.Equal(vs.firstWritten.start) || f.touch != vs.firstWritten.touch
	if !v.PerDay {
		sessions := v.SessionCount(vs.settings)
		if !first {
			return []stmt{{partition: partition, cql: cqlUserActivity, args: []any{vs.property, v.ClientID, v.LastSeen, sessions, version}}}
		}
		return []stmt{{partition: partition, cql: cqlUser, args: []any{
			vs.property, v.ClientID, f.start, v.LastSeen, sessions, f.touch.Source, f.touch.Medium, f.touch.Campaign, f.touch.Channel, version}}}
	}
	shape, args := 0, make([]any, 0, 12)
	args = append(args, version)
	if v.BaseSessions > 0 || vs.converted {
		var last any // none, without a base
		if v.BaseSessions > 0 {
			last = v.BaseLast
		}
		shape, args = shape|userBase, append(args, v.BaseSessions, last)
	}
	if first {
		shape, args = shape|userFirstTouch, append(args, f.start, f.touch.Source, f.touch.Medium, f.touch.Campaign, f.touch.Channel)
	}
	var out []stmt
	var days dayFigures
	for day := range vs.days {
		d := v.OnDay(day, vs.settings)
		if d.Sessions == 0 {
			out = append(out, stmt{partition: partition, cql: cqlUserDayDelete, args: []any{day, day, vs.property, v.ClientID}})
			continue
		}
		days = append(days, d)
	}
	if len(days) > 0 {
		shape, args = shape|userDays, append(args, dayCounts(days), dayLasts(days))
	}
	return append([]stmt{{partition: partition, cql: cqlUserUpdates[shape], args: append(args, vs.property, v.ClientID)}}, out...)
}

// The parts of a per-day visitor's users row update (userWrites), and the
// statement of each combination of them, made once.
const (
	userBase       = 1 << iota // session_count and last_seen: its base
	userFirstTouch             // first_seen and the first source, medium, campaign, channel
	userDays                   // the figures of days: day_sessions and day_last_seen
)

var cqlUserUpdates = func() (out [8]string) {
	for shape := range out {
		set := []string{"rule_version = ?"}
		if shape&userBase != 0 {
			set = append(set, "session_count = ?", "last_seen = ?")
		}
		if shape&userFirstTouch != 0 {
			set = append(set, "first_seen = ?", "first_source = ?", "first_medium = ?", "first_campaign = ?", "first_channel = ?")
		}
		if shape&userDays != 0 {
			set = append(set, "day_sessions = day_sessions + ?", "day_last_seen = day_last_seen + ?")
		}
		out[shape] = "UPDATE site_users SET " + strings.Join(set, ", ") + " WHERE property_id = ? AND client_id = ?"
	}
	return out
}()

// firstOf returns the visitor's first session as it stands.
func firstOf(vs *vstate) userFirst {
	v := vs.v
	if len(v.Hits) == 0 { // no live session to build: what the state says
		return userFirst{v.FirstSeen, v.FirstTouch}
	}
	touch, start := v.FirstTouchNow(vs.settings)
	return userFirst{start, touch}
}
