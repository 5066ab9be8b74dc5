package engine

import (
	"maps"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/derive"
)

// rowKind is one of the additive tables.
type rowKind int

const (
	kindDaily rowKind = iota
	kindHourly
	kindRealtime
	kindFiltered
)

// rowKey addresses one additive row of the partition's shards. Only the
// fields of its kind are set.
type rowKey struct {
	kind     rowKind
	property string
	shard    int
	daily    derive.DailyKey
	hourly   derive.HourKey
	minute   derive.MinuteKey
	filtered derive.FilteredKey
}

// delta is a change to a row from the hit at offset.
type delta struct {
	offset   int64
	metrics  rollup.Metrics
	realtime *derive.Realtime
	filtered int64
	users    int    // references of the visitor to add (or take away)
	user     uint64 // the visitor's sketch.Hash
}

// row is the in-memory copy of an additive row. base is the row's stored
// through_offset when it was loaded: a (replayed) hit at or below it is
// already included and is not applied again.
type row struct {
	loaded  bool
	base    int64
	metrics rollup.Metrics
	users   sketch.Set
	pages   map[string]int64
	sources map[string]int64
	// pageBytes and sourceBytes are the bytes of pages' and sources' keys
	// (realtimeKeyBytes).
	pageBytes, sourceBytes int
	hits                   int64 // filtered hits
	// pending holds changes made before the row was loaded; they are
	// folded in, subject to base, once it is.
	pending []delta
	// stale makes the next flush write the row.
	stale bool
	// usersChanged makes the next write of the row send its users sketch:
	// set when a users delta is applied and when the row is loaded (load),
	// cleared once a flush wrote it. A write without it leaves the stored
	// sketch, which equals users, alone (unset).
	usersChanged bool
	used         time.Time
}

func (r *row) apply(d delta) {
	if !r.loaded {
		if d.realtime != nil { // reused by the contributions after this hit
			rt := *d.realtime
			rt.Pages, rt.Sources = maps.Clone(rt.Pages), maps.Clone(rt.Sources)
			d.realtime = &rt
		}
		r.pending = append(r.pending, d)
		r.stale = true
		return
	}
	if d.offset <= r.base {
		return
	}
	r.metrics.Add(d.metrics, 1)
	r.hits += d.filtered
	if d.users != 0 {
		r.usersChanged = true
	}
	for n := d.users; n > 0; n-- {
		r.users.AddHash(d.user)
	}
	for n := d.users; n < 0; n++ {
		r.users.RemoveHash(d.user)
	}
	if d.realtime != nil {
		if r.pages == nil {
			r.pages, r.sources = map[string]int64{}, map[string]int64{}
		}
		addBounded(r.pages, d.realtime.Pages, &r.pageBytes)
		addBounded(r.sources, d.realtime.Sources, &r.sourceBytes)
		r.metrics.Pageviews += d.realtime.Pageviews
	}
	r.stale = true
}

// load sets the stored state of the row and folds in pending changes.
// The row's first write then sends its sketch, whatever changed: the store
// may have none to keep, and where it has one, a write of the processor
// before (one that crashed with writes in flight) may reach the store after
// this read, and a sketch left in place (unset) would then be that write's,
// under this processor's metrics (TestCrashAnywhereCountsOnce).
func (r *row) load(base int64, stored func(r *row)) {
	r.loaded, r.base, r.usersChanged = true, base, true
	stored(r)
	pending := r.pending
	r.pending = nil
	for _, d := range pending {
		r.apply(d)
	}
}

// realtimeKeyBytes bounds the pages, and the sources, of a realtime row (a
// minute of a shard): the bytes of their keys, 64 KiB each, about a
// thousand pages of a busy minute. Past it a page or source not yet in the
// row counts as realtimeOther. Each write of the row sends both maps whole
// (a frozen map), every flush: unbounded, one visitor sending distinct
// paths of 4 KB (70 hits a second) made a single statement past the 16 MiB
// Cassandra takes at most, and the partition's flushes, and its commits,
// failed for good.
const realtimeKeyBytes = 64 << 10

// realtimeOther is the page or source that counts the rest of a realtime
// row's, past realtimeKeyBytes.
const realtimeOther = "(other)"

// addBounded adds src's counts to dst, whose keys hold *size bytes; a key
// dst has not got that would take them past realtimeKeyBytes counts under
// realtimeOther. The realtime view is a window of 30 minutes, near enough:
// a key that had counted as realtimeOther and comes in once a zero count
// made room is from then on its own, and a count taken back later (a
// session derived again) is taken from it, not from realtimeOther.
func addBounded(dst, src map[string]int64, size *int) {
	for k, v := range src {
		n, ok := dst[k]
		if !ok && *size+len(k) > realtimeKeyBytes {
			k = realtimeOther
			n, ok = dst[k]
		}
		switch n += v; {
		case n != 0 && !ok:
			*size += len(k)
			dst[k] = n
		case n != 0:
			dst[k] = n
		case ok:
			*size -= len(k)
			delete(dst, k)
		}
	}
}

// keyBytes is the bytes of m's keys.
func keyBytes(m map[string]int64) int {
	n := 0
	for k := range m {
		n += len(k)
	}
	return n
}

// rowSet is a partition's in-memory additive rows, by property and shard,
// then by table: a hit touches some 25 rows of one property and shard, so
// its property is looked up once, and each row by a key of its own table.
type rowSet struct {
	shards map[shardKey]*shardRows
	// unloaded holds the keys of the rows created since the last load,
	// whose stored state is still to be read (loadRows).
	unloaded []rowKey
	// crowded says a row not loaded has queued pendingLoad changes or
	// more (row.pending) since the last load: settlePlaced then loads
	// the rows. The field pendingLoad is the constant but in tests,
	// which lower it to read rows in the middle of settling.
	crowded     bool
	pendingLoad int
	// changed holds the rows changed since they were last written, each
	// once (listed by the change that made it stale), so that a flush
	// finds them without going through every row in memory.
	changed []keyedRow
	// written is the offset through which the last write (wrote) left
	// every row in memory complete: a row unchanged since holds every hit
	// up to it, which its base takes at the row's next change.
	written int64
	// swept is when evictIdle last went through the rows.
	swept time.Time
	// fresh makes new rows start loaded and empty: for re-deriving a day
	// from scratch, whose stored rows are replaced, not added to.
	fresh bool
}

type shardKey struct {
	property string
	shard    int
}

// The keys of the rows of a property and shard.
func (sk shardKey) daily(k derive.DailyKey) rowKey {
	return rowKey{kind: kindDaily, property: sk.property, shard: sk.shard, daily: k}
}

func (sk shardKey) hourly(k derive.HourKey) rowKey {
	return rowKey{kind: kindHourly, property: sk.property, shard: sk.shard, hourly: k}
}

func (sk shardKey) realtime(k derive.MinuteKey) rowKey {
	return rowKey{kind: kindRealtime, property: sk.property, shard: sk.shard, minute: k}
}

func (sk shardKey) filtered(k derive.FilteredKey) rowKey {
	return rowKey{kind: kindFiltered, property: sk.property, shard: sk.shard, filtered: k}
}

// shardRows are the rows of one property and shard.
type shardRows struct {
	daily    map[derive.DailyKey]*row
	hourly   map[derive.HourKey]*row
	realtime map[derive.MinuteKey]*row
	filtered map[derive.FilteredKey]*row
}

func newRowSet() *rowSet {
	return &rowSet{shards: map[shardKey]*shardRows{}, written: -1, pendingLoad: pendingLoad}
}

// of returns the rows of a property and shard.
func (s *rowSet) of(k shardKey) *shardRows {
	sr := s.shards[k]
	if sr == nil {
		sr = &shardRows{daily: map[derive.DailyKey]*row{}, hourly: map[derive.HourKey]*row{},
			realtime: map[derive.MinuteKey]*row{}, filtered: map[derive.FilteredKey]*row{}}
		s.shards[k] = sr
	}
	return sr
}

// rowIn returns the row of m at k, creating it (with the full key that
// key gives) if new.
func rowIn[K comparable](s *rowSet, m map[K]*row, k K, key func(K) rowKey, now time.Time) *row {
	r := m[k]
	if r == nil {
		r = &row{}
		if s.fresh {
			// It replaces the stored row, sketch included, even empty.
			r.loaded, r.base, r.usersChanged = true, -1, true
		} else {
			s.unloaded = append(s.unloaded, key(k))
		}
		m[k] = r
	}
	r.used = now
	return r
}

// get returns the row at k, or nil.
func (s *rowSet) get(k rowKey) *row {
	sr := s.shards[shardKey{k.property, k.shard}]
	if sr == nil {
		return nil
	}
	switch k.kind {
	case kindDaily:
		return sr.daily[k.daily]
	case kindHourly:
		return sr.hourly[k.hourly]
	case kindRealtime:
		return sr.realtime[k.minute]
	default:
		return sr.filtered[k.filtered]
	}
}

// keyedRow is a row with its key, as each gives them.
type keyedRow struct {
	key rowKey
	row *row
}

// each calls fn for every row; the row is dropped when fn returns false.
func (s *rowSet) each(fn func(k rowKey, r *row) (keep bool)) {
	for sk, sr := range s.shards {
		eachIn(sr.daily, fn, sk.daily)
		eachIn(sr.hourly, fn, sk.hourly)
		eachIn(sr.realtime, fn, sk.realtime)
		eachIn(sr.filtered, fn, sk.filtered)
		if len(sr.daily)+len(sr.hourly)+len(sr.realtime)+len(sr.filtered) == 0 {
			delete(s.shards, sk)
		}
	}
}

func eachIn[K comparable](m map[K]*row, fn func(rowKey, *row) bool, key func(K) rowKey) {
	for k, r := range m {
		if !fn(key(k), r) {
			delete(m, k)
		}
	}
}

// change applies d to r, the row of its table at k, and lists the row
// among the changed ones at its first change since it was written. A row
// unchanged since then holds every hit through the last write: its base
// says so before d is applied (a replayed hit below it is not applied
// again), as if each write had raised the base of every row in memory.
func change[K comparable](s *rowSet, r *row, k K, key func(K) rowKey, d delta) {
	if !r.loaded && len(r.pending) >= s.pendingLoad {
		s.crowded = true
	}
	if r.stale {
		r.apply(d)
		return
	}
	if r.loaded {
		r.base = max(r.base, s.written)
	}
	r.apply(d)
	if r.stale {
		s.changed = append(s.changed, keyedRow{key(k), r})
	}
}

// wrote records that the changed rows were written, with every hit
// through offset through.
func (s *rowSet) wrote(through int64) {
	for _, kr := range s.changed {
		r := kr.row
		// Everything up to through is in the row now, its sketch too.
		r.stale, r.usersChanged, r.base = false, false, max(r.base, through)
	}
	clear(s.changed)
	s.changed = s.changed[:0]
	s.written = max(s.written, through)
}

// evictIdle drops the rows unchanged since their last write and unused
// since before idleSince. It goes through every row, so it does so at most
// once every interval.
func (s *rowSet) evictIdle(now, idleSince time.Time, interval time.Duration) {
	if now.Sub(s.swept) < interval {
		return
	}
	s.swept = now
	s.each(func(_ rowKey, r *row) bool {
		return r.stale || !r.used.Before(idleSince)
	})
}

// add applies contributions c of the hit at offset to the rows of
// (property, shard). A row's metrics and its users arrive as separate
// deltas of the same offset; both are additive.
func (s *rowSet) add(property string, shard int, offset int64, now time.Time, c *derive.Contributions) {
	sk := shardKey{property, shard}
	sr := s.of(sk)
	var user uint64
	if c.Client != "" {
		user = sketch.Hash(c.Client)
	}
	daily := func(k derive.DailyKey, d delta) { change(s, rowIn(s, sr.daily, k, sk.daily, now), k, sk.daily, d) }
	hourly := func(k derive.HourKey, d delta) { change(s, rowIn(s, sr.hourly, k, sk.hourly, now), k, sk.hourly, d) }
	realtime := func(k derive.MinuteKey, d delta) {
		change(s, rowIn(s, sr.realtime, k, sk.realtime, now), k, sk.realtime, d)
	}
	for k, m := range c.Daily {
		daily(k, delta{offset: offset, metrics: m})
	}
	for k, n := range c.DailyUsers {
		daily(k, delta{offset: offset, users: n, user: user})
	}
	for k, m := range c.Hourly {
		hourly(k, delta{offset: offset, metrics: m})
	}
	for k, n := range c.HourlyUsers {
		hourly(k, delta{offset: offset, users: n, user: user})
	}
	for k, rt := range c.Realtime {
		realtime(k, delta{offset: offset, realtime: rt})
	}
	for k, n := range c.RealtimeUsers {
		realtime(k, delta{offset: offset, users: n, user: user})
	}
	for k, n := range c.Filtered {
		change(s, rowIn(s, sr.filtered, k, sk.filtered, now), k, sk.filtered, delta{offset: offset, filtered: n})
	}
}
