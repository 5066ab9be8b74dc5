package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/derive"
)

// storedRow is a rollup row as a model store holds it.
type storedRow struct {
	pageviews int64
	users     string // the sketch's encoding
	through   int64
}

// eagerRows is the rowSet as it was before changed rows were listed: a
// change applied to the row directly, and a write marking every row in
// memory written (rowSet.each), raising every row's base to its offset.
type eagerRows struct{ s *rowSet }

func (e eagerRows) add(offset int64, now time.Time, c *derive.Contributions) {
	sk := shardKey{propID, 0}
	sr := e.s.of(sk)
	user := sketch.Hash(c.Client)
	for k, m := range c.Daily {
		rowIn(e.s, sr.daily, k, sk.daily, now).apply(delta{offset: offset, metrics: m})
	}
	for k, n := range c.DailyUsers {
		rowIn(e.s, sr.daily, k, sk.daily, now).apply(delta{offset: offset, users: n, user: user})
	}
}

func (e eagerRows) stale() []keyedRow {
	var out []keyedRow
	e.s.each(func(k rowKey, r *row) bool {
		if r.stale {
			out = append(out, keyedRow{k, r})
		}
		return true
	})
	return out
}

func (e eagerRows) wrote(through int64) {
	e.s.each(func(_ rowKey, r *row) bool {
		r.stale, r.usersChanged, r.base = false, false, max(r.base, through)
		return true
	})
}

// rowModel is one side of TestChangedRowsAsEveryRow: a rowSet and the
// store it writes to.
type rowModel struct {
	s     *rowSet
	eager bool
	store map[rowKey]storedRow
}

func (m *rowModel) toWrite(t *testing.T) []keyedRow {
	var rows []keyedRow
	if m.eager {
		rows = eagerRows{m.s}.stale()
	} else {
		rows = slices.Clone(m.s.changed)
		seen := map[*row]bool{}
		for _, kr := range rows {
			if seen[kr.row] {
				t.Fatalf("row %s listed twice", kr.key.daily.Dimension)
			}
			seen[kr.row] = true
		}
	}
	slices.SortFunc(rows, func(a, b keyedRow) int { return compareKeys(a.key, b.key) })
	return rows
}

func compareKeys(a, b rowKey) int {
	if a.daily.Dimension != b.daily.Dimension {
		if a.daily.Dimension < b.daily.Dimension {
			return -1
		}
		return 1
	}
	return a.daily.Day.Compare(b.daily.Day)
}

// load loads the unloaded rows from the model's store, as loadRows does.
func (m *rowModel) load(t *testing.T) {
	for _, k := range m.s.unloaded {
		r := m.s.get(k)
		if r == nil || r.loaded {
			continue
		}
		st, ok := m.store[k]
		if !ok {
			loadAbsent(r)
			continue
		}
		var users sketch.Set
		if err := users.UnmarshalBinary([]byte(st.users)); err != nil {
			t.Fatal(err)
		}
		r.load(st.through, func(r *row) {
			r.metrics = rollup.Metrics{Pageviews: st.pageviews}
			r.users = users
		})
	}
	m.s.unloaded = nil
}

// write stores the rows to write (those of the indexes in only, if not
// nil: a flush failing after some batches landed), as rowWrite writes
// them, through offset through.
func (m *rowModel) write(t *testing.T, rows []keyedRow, through int64, only []int) {
	for i, kr := range rows {
		if only != nil && !slices.Contains(only, i) {
			continue
		}
		st := m.store[kr.key]
		if kr.row.usersChanged {
			b, err := kr.row.users.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			st.users = string(b)
		}
		st.pageviews, st.through = kr.row.metrics.Pageviews, max(through, kr.row.base)
		m.store[kr.key] = st
	}
}

// state describes every row in memory: its values and its effective base
// (a loaded row unchanged since a write: that write's offset at least).
func (m *rowModel) state(t *testing.T) string {
	var keys []rowKey
	m.s.each(func(k rowKey, _ *row) bool { keys = append(keys, k); return true })
	slices.SortFunc(keys, compareKeys)
	out := ""
	for _, k := range keys {
		r := m.s.get(k)
		base := r.base
		if !m.eager && r.loaded && !r.stale {
			base = max(base, m.s.written)
		}
		users, err := r.users.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !r.loaded {
			base = 0 // replaced by the load
		}
		out += fmt.Sprintf("%s loaded=%v stale=%v usersChanged=%v base=%d pv=%d users=%x pending=%d\n",
			k.daily.Dimension, r.loaded, r.stale, r.usersChanged, base, r.metrics.Pageviews, users, len(r.pending))
	}
	return out
}

func (m *rowModel) storeState() string {
	var keys []rowKey
	for k := range m.store {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	out := ""
	for _, k := range keys {
		st := m.store[k]
		out += fmt.Sprintf("%s through=%d pv=%d users=%x\n", k.daily.Dimension, st.through, st.pageviews, st.users)
	}
	return out
}

// Listing the changed rows and raising a row's base at its next change
// is exactly the old way, going through every row at each flush, in what
// each flush writes (rows, values, through offsets, sketches) and in every
// row's effective base, under random traffic: hits new and replayed (at
// or below offsets already written), rows not yet loaded, rows found in
// the store ahead (a processor that crashed after getting further),
// flushes failing after some of their writes landed, and idle rows
// evicted and read back.
func TestChangedRowsAsEveryRow(t *testing.T) {
	day := t0.Truncate(24 * time.Hour)
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		eager := &rowModel{s: newRowSet(), eager: true, store: map[rowKey]storedRow{}}
		listed := &rowModel{s: newRowSet(), store: map[rowKey]storedRow{}}
		both := []*rowModel{eager, listed}
		now := t0
		var last, through int64 = -1, -1
		var log []string
		for step := 0; step < 300; step++ {
			switch op := rng.IntN(20); {
			case op < 11: // a hit, new or replayed
				off := last + 1
				if rng.IntN(4) == 0 && last > 5 {
					off = last - int64(rng.IntN(10))
				} else {
					last = off
				}
				c := derive.New()
				c.Client = fmt.Sprint("client-", rng.IntN(4))
				for range 1 + rng.IntN(3) {
					k := derive.DailyKey{Day: day, Report: rollup.Page, Dimension: fmt.Sprint("/", rng.IntN(8))}
					if rng.IntN(3) == 0 {
						c.DailyUsers[k] = 1 - 2*rng.IntN(2)
					} else {
						c.Daily[k] = rollup.Metrics{Pageviews: 1}
					}
				}
				now = now.Add(time.Duration(rng.IntN(30)) * time.Second)
				eagerRows{eager.s}.add(off, now, c)
				listed.s.add(propID, 0, off, now, c)
				log = append(log, fmt.Sprintf("hit %d", off))
			case op < 13: // rows read ahead of the flush
				for _, m := range both {
					m.load(t)
				}
				log = append(log, "load")
			case op < 14: // a processor before got further with a row not in memory
				k := shardKey{propID, 0}.daily(derive.DailyKey{Day: day, Report: rollup.Page, Dimension: fmt.Sprint("/", rng.IntN(8))})
				if eager.s.get(k) != nil {
					continue
				}
				pv, ahead := int64(rng.IntN(5)), last+1+int64(rng.IntN(20))
				for _, m := range both {
					st := m.store[k]
					st.pageviews, st.through = st.pageviews+pv, max(st.through, ahead)
					m.store[k] = st
				}
				log = append(log, fmt.Sprintf("ahead %s %d", k.daily.Dimension, ahead))
			case op < 15: // idle rows evicted
				idleSince := now.Add(-time.Duration(rng.IntN(120)) * time.Second)
				eager.s.each(func(_ rowKey, r *row) bool { return r.stale || !r.used.Before(idleSince) })
				listed.s.evictIdle(now, idleSince, 0)
				log = append(log, "evict")
			default: // a flush, which may fail after some writes
				for _, m := range both {
					m.load(t)
				}
				through = max(through, last)
				we, wl := eager.toWrite(t), listed.toWrite(t)
				var ge, gl []string
				for _, kr := range we {
					ge = append(ge, fmt.Sprintf("%s pv=%d through=%d users=%v", kr.key.daily.Dimension, kr.row.metrics.Pageviews, max(through, kr.row.base), kr.row.usersChanged))
				}
				for _, kr := range wl {
					gl = append(gl, fmt.Sprintf("%s pv=%d through=%d users=%v", kr.key.daily.Dimension, kr.row.metrics.Pageviews, max(through, kr.row.base), kr.row.usersChanged))
				}
				if !slices.Equal(ge, gl) {
					t.Fatalf("seed %d step %d: the flush writes\n%v\nwant (every row gone through)\n%v\nafter %v", seed, step, gl, ge, log)
				}
				if rng.IntN(4) == 0 { // fails after some batches landed
					var only []int
					for i := range we {
						if rng.IntN(2) == 0 {
							only = append(only, i)
						}
					}
					only = append(only, -1) // not nil: maybe none landed
					eager.write(t, we, through, only)
					listed.write(t, wl, through, only)
					log = append(log, fmt.Sprintf("failed flush %d", through))
					break
				}
				eager.write(t, we, through, nil)
				listed.write(t, wl, through, nil)
				eagerRows{eager.s}.wrote(through)
				listed.s.wrote(through)
				log = append(log, fmt.Sprintf("flush %d", through))
			}
			if got, want := listed.state(t), eager.state(t); got != want {
				t.Fatalf("seed %d step %d: rows\n%s\nwant (every row gone through)\n%s\nafter %v", seed, step, got, want, log)
			}
			if got, want := listed.storeState(), eager.storeState(); got != want {
				t.Fatalf("seed %d step %d: store\n%s\nwant\n%s\nafter %v", seed, step, got, want, log)
			}
			var stale int
			listed.s.each(func(_ rowKey, r *row) bool {
				if r.stale {
					stale++
				}
				return true
			})
			if stale != len(listed.s.changed) {
				t.Fatalf("seed %d step %d: %d rows stale, %d listed", seed, step, stale, len(listed.s.changed))
			}
		}
	}
}
