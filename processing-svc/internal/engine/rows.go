package engine

import (
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
	hits    int64 // filtered hits
	// pending holds changes made before the row was loaded; they are
	// folded in, subject to base, once it is.
	pending []delta
	// stale makes the next flush write the row.
	stale bool
	used  time.Time
}

func (r *row) apply(d delta) {
	if !r.loaded {
		r.pending = append(r.pending, d)
		r.stale = true
		return
	}
	if d.offset <= r.base {
		return
	}
	r.metrics.Add(d.metrics, 1)
	r.hits += d.filtered
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
		addCounts(r.pages, d.realtime.Pages)
		addCounts(r.sources, d.realtime.Sources)
		r.metrics.Pageviews += d.realtime.Pageviews
	}
	r.stale = true
}

// load sets the stored state of the row and folds in pending changes.
func (r *row) load(base int64, stored func(r *row)) {
	r.loaded, r.base = true, base
	stored(r)
	pending := r.pending
	r.pending = nil
	for _, d := range pending {
		r.apply(d)
	}
}

func addCounts(dst, src map[string]int64) {
	for k, v := range src {
		if n := dst[k] + v; n != 0 {
			dst[k] = n
		} else {
			delete(dst, k)
		}
	}
}

// rowSet is a partition's in-memory additive rows.
type rowSet struct {
	rows map[rowKey]*row
	// unloaded holds the keys of the rows created since the last load,
	// whose stored state is still to be read (loadRows).
	unloaded []rowKey
	// fresh makes new rows start loaded and empty: for re-deriving a day
	// from scratch, whose stored rows are replaced, not added to.
	fresh bool
}

func newRowSet() *rowSet { return &rowSet{rows: map[rowKey]*row{}} }

func (s *rowSet) get(k rowKey, now time.Time) *row {
	r := s.rows[k]
	if r == nil {
		r = &row{}
		if s.fresh {
			r.loaded, r.base = true, -1
		} else {
			s.unloaded = append(s.unloaded, k)
		}
		s.rows[k] = r
	}
	r.used = now
	return r
}

// add applies contributions c of the hit at offset to the rows of
// (property, shard). A row's metrics and its users arrive as separate
// deltas of the same offset; both are additive.
func (s *rowSet) add(property string, shard int, offset int64, now time.Time, c *derive.Contributions) {
	at := func(k rowKey) *row {
		k.property, k.shard = property, shard
		return s.get(k, now)
	}
	var user uint64
	if c.Client != "" {
		user = sketch.Hash(c.Client)
	}
	for k, m := range c.Daily {
		at(rowKey{kind: kindDaily, daily: k}).apply(delta{offset: offset, metrics: m})
	}
	for k, n := range c.DailyUsers {
		at(rowKey{kind: kindDaily, daily: k}).apply(delta{offset: offset, users: n, user: user})
	}
	for k, m := range c.Hourly {
		at(rowKey{kind: kindHourly, hourly: k}).apply(delta{offset: offset, metrics: m})
	}
	for k, n := range c.HourlyUsers {
		at(rowKey{kind: kindHourly, hourly: k}).apply(delta{offset: offset, users: n, user: user})
	}
	for k, rt := range c.Realtime {
		at(rowKey{kind: kindRealtime, minute: k}).apply(delta{offset: offset, realtime: rt})
	}
	for k, n := range c.RealtimeUsers {
		at(rowKey{kind: kindRealtime, minute: k}).apply(delta{offset: offset, users: n, user: user})
	}
	for k, n := range c.Filtered {
		at(rowKey{kind: kindFiltered, filtered: k}).apply(delta{offset: offset, filtered: n})
	}
}
