package cqlserver

import (
	"bytes"
	"cmp"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
)

// The storage engine keeps, per table, partitions keyed by their serialized
// partition key, each holding rows ordered by clustering key in a B-tree.
// Every cell carries its write timestamp and expiry, and deletions are
// tombstones (partition, range, row, cell and collection level), so that
// last-write-wins holds whatever order writes arrive in, exactly as in
// Cassandra. All writes are expressed as fragments (partial partition
// states) that are merged into the stored state; the write-ahead log
// records the same fragments, which makes replay idempotent.
//
// Locking, always acquired in this order:
//   - tableStore.gate: read-held by every data operation, write-held by
//     TRUNCATE and snapshots of the table's structure;
//   - tableStore.idxMu: guards the partition map and token index;
//   - partition.mu: guards one partition's rows.
// A goroutine never holds a partition lock while taking idxMu, and batches
// lock several partitions in a canonical order (table ID, then key).

// noTimestamp marks an absent timestamp (no cell, no deletion).
const noTimestamp int64 = math.MinInt64

// cell is one stored value with its write metadata. For multi-cell
// collections the elements live in coll and value is unused.
type cell struct {
	ts    int64  // write timestamp in microseconds; noTimestamp: no cell
	exp   int32  // expiry (unix seconds) of TTL'd cells; 0: none
	ttl   int32  // original TTL in seconds, for the TTL() function
	tomb  bool   // deletion marker
	value []byte // serialized value
	coll  *collCells
}

var emptyCell = cell{ts: noTimestamp}

func (c *cell) present() bool { return c.ts != noTimestamp || c.coll != nil }

// live reports whether a simple cell is visible at now given a covering
// deletion timestamp.
func (c *cell) live(now int32, del int64) bool {
	return c.ts != noTimestamp && !c.tomb && c.ts > del && (c.exp == 0 || now < c.exp)
}

// collCells holds the elements of a non-frozen collection: sets keyed by
// element, maps by key, lists by an ordering key (the element is the value).
type collCells struct {
	del   int64 // collection tombstone: elements written at or before it are gone
	elems []collElem
}

type collElem struct {
	key []byte
	c   cell
}

// liveness is the primary key liveness ("row marker") written by INSERT.
type liveness struct {
	ts  int64
	exp int32
	ttl int32
}

func (l liveness) live(now int32, del int64) bool {
	return l.ts != noTimestamp && l.ts > del && (l.exp == 0 || now < l.exp)
}

// row is one CQL row. bound is only set on search pivots: -1 sorts before
// and +1 after every row sharing the pivot's clustering prefix.
type row struct {
	ck     [][]byte
	marker liveness
	del    int64
	cells  []cell // indexed by column slot
	bound  int8
}

func newRow(ck [][]byte) *row {
	return &row{ck: ck, marker: liveness{ts: noTimestamp}, del: noTimestamp}
}

// rangeTombstone deletes the rows between two clustering bounds.
type rangeTombstone struct {
	start, end ckBound
	ts         int64
}

// ckBound is a clustering prefix bound; an empty prefix is unbounded.
type ckBound struct {
	prefix    [][]byte
	inclusive bool
}

// partition is one partition's state.
type partition struct {
	mu     sync.RWMutex
	key    []byte
	token  int64
	del    int64 // partition tombstone
	rts    []rangeTombstone
	rows   *btree.BTreeG[*row] // tables with clustering columns
	single *row                // tables without clustering columns
}

// tableStore is the data of one table.
type tableStore struct {
	gate  sync.RWMutex
	idxMu sync.RWMutex
	parts map[string]*partition
	order *btree.BTreeG[*partition] // by token, then key bytes

	ckTypes []*cqlType
	ckDesc  []bool
	free    *btree.FreeListG[*row]
	hasTTL  atomic.Bool // some write carried a TTL (see janitor.go)
}

func newTableStore(ckTypes []*cqlType, ckDesc []bool) *tableStore {
	s := &tableStore{ckTypes: ckTypes, ckDesc: ckDesc, free: btree.NewFreeListG[*row](64)}
	s.reset()
	return s
}

func partitionLess(a, b *partition) bool {
	if a.token != b.token {
		return a.token < b.token
	}
	return bytes.Compare(a.key, b.key) < 0
}

// reset empties the store; the caller holds the gate for writing (or is
// constructing the store).
func (s *tableStore) reset() {
	s.parts = make(map[string]*partition)
	s.order = btree.NewG(32, partitionLess)
}

// compareCK orders clustering prefixes in storage order (DESC columns
// reversed). Rows compare equal only with the same full key; a pivot that
// is a strict prefix sorts before (bound <= 0) or after (bound > 0) all
// rows starting with it.
func (s *tableStore) compareRows(a, b *row) int {
	n := len(a.ck)
	if len(b.ck) < n {
		n = len(b.ck)
	}
	for i := 0; i < n; i++ {
		c := s.ckTypes[i].compare(a.ck[i], b.ck[i])
		if s.ckDesc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case len(a.ck) == len(b.ck):
		return cmp.Compare(a.bound, b.bound)
	case len(a.ck) < len(b.ck):
		if a.bound > 0 {
			return 1
		}
		return -1
	default:
		if b.bound > 0 {
			return -1
		}
		return 1
	}
}

func (s *tableStore) lessRow(a, b *row) bool { return s.compareRows(a, b) < 0 }

// comparePrefix compares the first len(prefix) components of ck with
// prefix in storage order.
func (s *tableStore) comparePrefix(ck, prefix [][]byte) int {
	for i := 0; i < len(prefix) && i < len(ck); i++ {
		c := s.ckTypes[i].compare(ck[i], prefix[i])
		if s.ckDesc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// afterStart reports whether ck is at or after a start bound.
func (s *tableStore) afterStart(ck [][]byte, b ckBound) bool {
	if len(b.prefix) == 0 {
		return true
	}
	c := s.comparePrefix(ck, b.prefix)
	return c > 0 || c == 0 && b.inclusive
}

// beforeEnd reports whether ck is at or before an end bound.
func (s *tableStore) beforeEnd(ck [][]byte, b ckBound) bool {
	if len(b.prefix) == 0 {
		return true
	}
	c := s.comparePrefix(ck, b.prefix)
	return c < 0 || c == 0 && b.inclusive
}

// lookup returns the partition with the key, or nil.
func (s *tableStore) lookup(key []byte) *partition {
	s.idxMu.RLock()
	p := s.parts[string(key)]
	s.idxMu.RUnlock()
	return p
}

// getOrCreate returns the partition with the key, creating it if needed.
// The caller holds the gate for reading.
func (s *tableStore) getOrCreate(key []byte, token int64) *partition {
	if p := s.lookup(key); p != nil {
		return p
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if p := s.parts[string(key)]; p != nil {
		return p
	}
	p := &partition{key: key, token: token, del: noTimestamp}
	if len(s.ckTypes) > 0 {
		p.rows = btree.NewWithFreeListG(16, s.lessRow, s.free)
	}
	s.parts[string(key)] = p
	s.order.ReplaceOrInsert(p)
	return p
}

// rowCount returns the number of stored rows (tombstoned ones included);
// it is used for sizing only.
func (p *partition) rowCount() int {
	if p.rows != nil {
		return p.rows.Len()
	}
	if p.single != nil {
		return 1
	}
	return 0
}

// findRow returns the row with the full clustering key, or nil.
func (p *partition) findRow(ck [][]byte) *row {
	if p.rows == nil {
		return p.single
	}
	r, ok := p.rows.Get(&row{ck: ck})
	if !ok {
		return nil
	}
	return r
}

// rowDeletion returns the deletion timestamp covering a row: the maximum of
// the partition, range and row tombstones.
func (s *tableStore) rowDeletion(p *partition, r *row) int64 {
	d := p.del
	if r.del > d {
		d = r.del
	}
	for i := range p.rts {
		rt := &p.rts[i]
		if rt.ts > d && s.afterStart(r.ck, rt.start) && s.beforeEnd(r.ck, rt.end) {
			d = rt.ts
		}
	}
	return d
}

// rowLive reports whether a row is visible: a live row marker or at least
// one live cell.
func rowLive(r *row, now int32, del int64) bool {
	if r.marker.live(now, del) {
		return true
	}
	for i := range r.cells {
		c := &r.cells[i]
		if c.coll != nil {
			if collLive(c.coll, now, del) {
				return true
			}
			continue
		}
		if c.live(now, del) {
			return true
		}
	}
	return false
}

func collLive(cc *collCells, now int32, del int64) bool {
	if cc.del > del {
		del = cc.del
	}
	for i := range cc.elems {
		if cc.elems[i].c.live(now, del) {
			return true
		}
	}
	return false
}

// reconcile returns the winner of two versions of a cell, following
// Cassandra's Cells.reconcile: the higher timestamp wins; on a tie a
// deletion (or expired cell) wins, then the larger value.
func reconcile(a, b cell, now int32) cell {
	if !a.present() {
		return b
	}
	if !b.present() {
		return a
	}
	if a.ts != b.ts {
		if a.ts > b.ts {
			return a
		}
		return b
	}
	aLive, bLive := a.live(now, noTimestamp), b.live(now, noTimestamp)
	if aLive != bLive {
		if aLive {
			return b
		}
		return a
	}
	if c := bytes.Compare(a.value, b.value); c != 0 {
		if c > 0 {
			return a
		}
		return b
	}
	if (a.exp != 0) != (b.exp != 0) {
		if a.exp != 0 {
			return a
		}
		return b
	}
	if a.exp >= b.exp {
		return a
	}
	return b
}

// fragment is a partial state of one partition: what a write changes. It
// is merged into the stored partition and logged as is.
type fragment struct {
	del  int64 // partition tombstone, noTimestamp if none
	rts  []rangeTombstone
	rows []*row // full clustering keys; cells indexed by slot
}

func newFragment() *fragment { return &fragment{del: noTimestamp} }

// apply merges a fragment into the partition; the caller holds p.mu.
func (s *tableStore) apply(p *partition, f *fragment, now int32, elemCmp func(slot int) func(a, b []byte) int) {
	if f.del > p.del {
		p.del = f.del
		s.purgePartition(p, now)
	}
	for _, rt := range f.rts {
		p.rts = mergeRangeTombstone(p.rts, rt)
		s.purgeRange(p, rt, now)
	}
	for _, fr := range f.rows {
		var r *row
		if p.rows == nil {
			if p.single == nil {
				p.single = newRow(fr.ck)
			}
			r = p.single
		} else {
			var ok bool
			r, ok = p.rows.Get(fr)
			if !ok {
				r = newRow(fr.ck)
				p.rows.ReplaceOrInsert(r)
			}
		}
		if !s.hasTTL.Load() && rowHasTTL(fr) {
			s.hasTTL.Store(true)
		}
		mergeRow(r, fr, now, elemCmp)
		del := s.rowDeletion(p, r)
		purgeRow(r, del)
		if p.rows != nil && rowEmpty(r) {
			p.rows.Delete(r)
		} else if p.rows == nil && rowEmpty(r) {
			p.single = nil
		}
	}
}

func rowHasTTL(r *row) bool {
	if r.marker.exp != 0 {
		return true
	}
	for i := range r.cells {
		c := &r.cells[i]
		if c.exp != 0 {
			return true
		}
		if c.coll != nil {
			for j := range c.coll.elems {
				if c.coll.elems[j].c.exp != 0 {
					return true
				}
			}
		}
	}
	return false
}

func mergeRangeTombstone(rts []rangeTombstone, rt rangeTombstone) []rangeTombstone {
	for i := range rts {
		if sameBound(rts[i].start, rt.start) && sameBound(rts[i].end, rt.end) {
			if rt.ts > rts[i].ts {
				rts[i].ts = rt.ts
			}
			return rts
		}
	}
	return append(rts, rt)
}

func sameBound(a, b ckBound) bool {
	if a.inclusive != b.inclusive || len(a.prefix) != len(b.prefix) {
		return false
	}
	for i := range a.prefix {
		if !bytes.Equal(a.prefix[i], b.prefix[i]) {
			return false
		}
	}
	return true
}

func mergeRow(r, f *row, now int32, elemCmp func(slot int) func(a, b []byte) int) {
	if f.del > r.del {
		r.del = f.del
	}
	if f.marker.ts != noTimestamp {
		if f.marker.ts > r.marker.ts || f.marker.ts == r.marker.ts && (f.marker.exp == 0 || r.marker.exp != 0 && f.marker.exp > r.marker.exp) {
			r.marker = f.marker
		}
	}
	if len(f.cells) > len(r.cells) {
		grown := make([]cell, len(f.cells))
		n := copy(grown, r.cells)
		for i := n; i < len(grown); i++ {
			grown[i] = emptyCell
		}
		r.cells = grown
	}
	for slot := range f.cells {
		fc := &f.cells[slot]
		if !fc.present() {
			continue
		}
		if fc.coll == nil {
			r.cells[slot] = reconcile(r.cells[slot], *fc, now)
			continue
		}
		rc := &r.cells[slot]
		if rc.coll == nil {
			rc.coll = &collCells{del: noTimestamp}
		}
		mergeColl(rc.coll, fc.coll, now, elemCmp(slot))
	}
}

func mergeColl(dst, src *collCells, now int32, cmp func(a, b []byte) int) {
	if src.del > dst.del {
		dst.del = src.del
	}
	for _, e := range src.elems {
		i := sort.Search(len(dst.elems), func(i int) bool { return cmp(dst.elems[i].key, e.key) >= 0 })
		if i < len(dst.elems) && cmp(dst.elems[i].key, e.key) == 0 {
			dst.elems[i].c = reconcile(dst.elems[i].c, e.c, now)
			continue
		}
		dst.elems = append(dst.elems, collElem{})
		copy(dst.elems[i+1:], dst.elems[i:])
		dst.elems[i] = e
	}
	// Drop elements shadowed by the collection tombstone.
	if dst.del != noTimestamp {
		out := dst.elems[:0]
		for _, e := range dst.elems {
			if e.c.ts > dst.del {
				out = append(out, e)
			}
		}
		dst.elems = out
	}
}

// purgeRow drops data shadowed by the deletion covering the row.
func purgeRow(r *row, del int64) {
	if del == noTimestamp {
		return
	}
	if r.marker.ts != noTimestamp && r.marker.ts <= del {
		r.marker = liveness{ts: noTimestamp}
	}
	for i := range r.cells {
		c := &r.cells[i]
		if c.coll != nil {
			if del > c.coll.del {
				out := c.coll.elems[:0]
				for _, e := range c.coll.elems {
					if e.c.ts > del {
						out = append(out, e)
					}
				}
				c.coll.elems = out
			}
			if len(c.coll.elems) == 0 && c.coll.del <= del {
				*c = emptyCell
			}
			continue
		}
		if c.ts != noTimestamp && c.ts <= del {
			*c = emptyCell
		}
	}
}

// purgeDeleted drops what a deletion at del shadows in r, its row
// tombstone too when no newer, and reports whether r is left empty
// (rowEmpty).
func purgeDeleted(r *row, del int64) bool {
	purgeRow(r, del)
	if r.del <= del {
		r.del = noTimestamp
	}
	return rowEmpty(r)
}

// rowEmpty reports whether a row holds nothing, not even a row tombstone,
// and may be dropped.
func rowEmpty(r *row) bool {
	if r.del != noTimestamp || r.marker.ts != noTimestamp {
		return false
	}
	for i := range r.cells {
		if r.cells[i].present() {
			return false
		}
	}
	return true
}

// purgePartition drops rows entirely shadowed by the partition tombstone.
func (s *tableStore) purgePartition(p *partition, now int32) {
	if p.rows == nil {
		if p.single != nil && purgeDeleted(p.single, p.del) {
			p.single = nil
		}
		return
	}
	var dead []*row
	p.rows.Ascend(func(r *row) bool {
		if purgeDeleted(r, p.del) {
			dead = append(dead, r)
		}
		return true
	})
	for _, r := range dead {
		p.rows.Delete(r)
	}
	// Range tombstones older than the partition tombstone are redundant.
	out := p.rts[:0]
	for _, rt := range p.rts {
		if rt.ts > p.del {
			out = append(out, rt)
		}
	}
	p.rts = out
}

// purgeRange drops data shadowed by a new range tombstone.
func (s *tableStore) purgeRange(p *partition, rt rangeTombstone, now int32) {
	if p.rows == nil {
		return
	}
	var dead []*row
	s.ascendRange(p, rt.start, rt.end, func(r *row) bool {
		if purgeDeleted(r, rt.ts) {
			dead = append(dead, r)
		}
		return true
	})
	for _, r := range dead {
		p.rows.Delete(r)
	}
}

// ascendRange visits the rows between two bounds in storage order.
func (s *tableStore) ascendRange(p *partition, start, end ckBound, fn func(*row) bool) {
	if p.rows == nil {
		if p.single != nil {
			fn(p.single)
		}
		return
	}
	visit := func(r *row) bool {
		if !s.beforeEnd(r.ck, end) {
			return false
		}
		return fn(r)
	}
	if len(start.prefix) == 0 {
		p.rows.Ascend(visit)
		return
	}
	pivot := &row{ck: start.prefix, bound: -1}
	if !start.inclusive {
		pivot.bound = 1
	}
	p.rows.AscendGreaterOrEqual(pivot, visit)
}

// descendRange visits the rows between two bounds in reverse storage order.
func (s *tableStore) descendRange(p *partition, start, end ckBound, fn func(*row) bool) {
	if p.rows == nil {
		if p.single != nil {
			fn(p.single)
		}
		return
	}
	visit := func(r *row) bool {
		if !s.afterStart(r.ck, start) {
			return false
		}
		return fn(r)
	}
	if len(end.prefix) == 0 {
		p.rows.Descend(visit)
		return
	}
	pivot := &row{ck: end.prefix, bound: 1}
	if !end.inclusive {
		pivot.bound = -1
	}
	p.rows.DescendLessOrEqual(pivot, visit)
}

// partitionsFrom visits, in token order, the partitions at or after the
// position (token, key) while fn returns true; a nil key is before every key
// of the token. The caller holds the gate for reading. Partitions are
// collected in small batches so that idxMu is not held while fn runs.
func (s *tableStore) partitionsFrom(token int64, key []byte, fn func(*partition) bool) {
	const batch = 64
	pivot := &partition{token: token, key: key}
	var skip *partition // the last partition of the previous batch
	for {
		var got []*partition
		s.idxMu.RLock()
		s.order.AscendGreaterOrEqual(pivot, func(p *partition) bool {
			if p == skip {
				return true
			}
			got = append(got, p)
			return len(got) < batch
		})
		s.idxMu.RUnlock()
		for _, p := range got {
			if !fn(p) {
				return
			}
		}
		if len(got) < batch {
			return
		}
		skip = got[len(got)-1]
		pivot = skip
	}
}
