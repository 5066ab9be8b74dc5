package cqlserver

import (
	"math"
	"time"
)

// Expired data is invisible as soon as its TTL passes, but like Cassandra
// the server keeps it (it shadows older writes, as a tombstone would) until
// gc_grace_seconds after expiry; then the janitor drops it, and partitions
// left empty, so that a long-running server with TTL'd tables does not
// grow without bound. Only tables that ever received TTL'd writes are
// visited.

// janitorInterval is how often expired data is purged.
const janitorInterval = time.Minute

// purgeExpired drops data whose expiry is more than the table's
// gc_grace_seconds in the past.
func (d *db) purgeExpired(now time.Time) {
	for _, t := range d.userTables() {
		store := t.store
		if !store.hasTTL.Load() {
			continue
		}
		horizon := int32(now.Unix()) - t.opts.gcGrace
		var empty []*partition
		store.gate.RLock()
		store.partitionsFrom(math.MinInt64, nil, func(p *partition) bool {
			p.mu.Lock()
			purgeExpiredPartition(p, horizon)
			if partitionEmpty(p) {
				empty = append(empty, p)
			}
			p.mu.Unlock()
			return true
		})
		store.gate.RUnlock()
		if len(empty) == 0 {
			continue
		}
		// Removing partitions from the index needs every writer out: one
		// may hold a pointer to a partition it is about to fill.
		store.gate.Lock()
		store.idxMu.Lock()
		for _, p := range empty {
			if partitionEmpty(p) && store.parts[string(p.key)] == p {
				delete(store.parts, string(p.key))
				store.order.Delete(p)
			}
		}
		store.idxMu.Unlock()
		store.gate.Unlock()
	}
}

func partitionEmpty(p *partition) bool {
	return p.del == noTimestamp && len(p.rts) == 0 && p.rowCount() == 0
}

// expiredBefore reports whether a TTL'd value expired before the horizon.
func expiredBefore(exp, horizon int32) bool { return exp != 0 && exp < horizon }

func purgeExpiredPartition(p *partition, horizon int32) {
	purge := func(r *row) bool {
		if expiredBefore(r.marker.exp, horizon) {
			r.marker = liveness{ts: noTimestamp}
		}
		for i := range r.cells {
			c := &r.cells[i]
			if c.coll != nil {
				out := c.coll.elems[:0]
				for _, e := range c.coll.elems {
					if !expiredBefore(e.c.exp, horizon) {
						out = append(out, e)
					}
				}
				c.coll.elems = out
				if len(out) == 0 && c.coll.del == noTimestamp {
					*c = emptyCell
				}
				continue
			}
			if expiredBefore(c.exp, horizon) {
				*c = emptyCell
			}
		}
		return rowEmpty(r)
	}
	if p.rows == nil {
		if p.single != nil && purge(p.single) {
			p.single = nil
		}
		return
	}
	var dead []*row
	p.rows.Ascend(func(r *row) bool {
		if purge(r) {
			dead = append(dead, r)
		}
		return true
	})
	for _, r := range dead {
		p.rows.Delete(r)
	}
}
