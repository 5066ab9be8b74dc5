package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/gocql/gocql"
)

// archiveBuckets is the number of blocks per hour of a property's UTC day
// and shard in raw_hit_blocks_by_hour (cql/0017_hourly_partitions.cql):
// an hour's partition has this many rows.
const archiveBuckets = 16

// blockKey addresses one raw_hit_blocks_by_hour row.
type blockKey struct {
	property string
	day      time.Time
	shard    int16
	hour     int16
	block    int16
}

// archiveBlock returns the row a hit is archived in: in the partition of
// its UTC day and hour (session.LocalHour in UTC), the block of a hash of
// its ID. It depends on the hit's time and ID only, so a replayed or
// re-sent hit lands where it already is.
func archiveBlock(h *hit.Hit, shard int) blockKey {
	t := h.Time.UTC()
	return blockKey{property: h.PropertyID, day: t.Truncate(24 * time.Hour), shard: int16(shard),
		hour: int16(session.LocalHour(t, time.UTC)), block: int16(sketch.Hash(h.ID) % archiveBuckets)}
}

// archive collects the hits to archive at the next flush, by block.
type archive map[blockKey]archiveHits

// archiveHits are hits to archive (their encodings, as collection wrote
// them) by hit ID: the map<text, blob> an archive statement adds to its
// block. They encode themselves (gocql.Marshaler) in one allocation of the
// size they need, where gocql's encoding of a map walks it by reflection
// and copies each hit twice through a growing buffer (4% of the busy
// property's CPU in the processing benchmark).
type archiveHits map[string][]byte

// MarshalCQL encodes the hits as a CQL map (native protocol 3 and later:
// 32-bit sizes; earlier ones take gocql's own encoding).
func (a archiveHits) MarshalCQL(info gocql.TypeInfo) ([]byte, error) {
	if info.Version() < 3 {
		return gocql.Marshal(info, map[string][]byte(a))
	}
	n := 4
	for id, b := range a {
		n += 8 + len(id) + len(b)
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, n), uint32(len(a)))
	for id, b := range a {
		out = binary.BigEndian.AppendUint32(out, uint32(len(id)))
		out = append(out, id...)
		if b == nil { // null, as gocql encodes a nil slice
			out = binary.BigEndian.AppendUint32(out, 0xffffffff)
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
	}
	return out, nil
}

// add archives h, whose encoding (as collection wrote it) is raw.
func (a *archive) add(h *hit.Hit, raw []byte, shard int) {
	if *a == nil {
		*a = archive{}
	}
	k := archiveBlock(h, shard)
	hits := (*a)[k]
	if hits == nil {
		hits = archiveHits{}
		(*a)[k] = hits
	}
	hits[h.ID] = raw
}

// maxArchiveStatement bounds the bytes of hits one archive statement adds,
// so that a flush after a backlog (many hits to one block) still writes
// mutations far below Cassandra's limit (half a commit log segment, 16 MiB
// by default).
const maxArchiveStatement = 256 << 10

// writes returns the statements adding the hits to their blocks: one per
// block, or several when its hits are more than maxArchiveStatement bytes.
// Each statement has a partition label of its own, so that it is not
// batched with its partition's others: it may carry many hits. A small one
// (a flush's few hits to a block) may still share a batch with other
// partitions of the property (sharedBatches), as any small partition's
// statements do.
func (a archive) writes() []stmt {
	out := make([]stmt, 0, len(a))
	for k, hits := range a {
		add := func(part archiveHits) {
			out = append(out, stmt{
				partition: hourPartition("a", k.property, k.day, int(k.shard), int(k.hour)) + "/" + strconv.Itoa(int(k.block)) + "/" + strconv.Itoa(len(out)),
				cql:       cqlArchive, args: []any{part, k.property, k.day, k.shard, k.hour, k.block}})
		}
		size := 0
		for _, b := range hits {
			size += len(b)
		}
		if size <= maxArchiveStatement {
			add(hits)
			continue
		}
		part, size := archiveHits{}, 0
		for id, b := range hits {
			if size > 0 && size+len(b) > maxArchiveStatement {
				add(part)
				part, size = archiveHits{}, 0
			}
			part[id] = b
			size += len(b)
		}
		add(part)
	}
	return out
}

// archivedPartition returns the hits archived for a property's UTC day and
// shard, ordered by hit ID: those in raw_hit_blocks_by_hour (the 24 hours'
// partitions in one query), and those archived before it, in
// raw_hit_blocks and raw_hits (the archive before the blocks). A hit in
// two of them is one hit, by its ID.
func archivedPartition(ctx context.Context, s *gocql.Session, property string, day time.Time, shard int) ([]*hit.Hit, error) {
	raw := map[string][]byte{}
	cql, args := selectDayShard("hit_id, hit", "raw_hits", property, day, shard)
	iter := s.Query(cql, args...).WithContext(ctx).PageSize(5000).Iter()
	var id string
	var b []byte
	for iter.Scan(&id, &b) {
		raw[id] = b
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read raw_hits of %s: %w", dayString(day), err)
	}
	for _, table := range []string{"raw_hit_blocks", "raw_hit_blocks_by_hour"} {
		cql, args := selectDayShard("hits", table, property, day, shard)
		iter := s.Query(cql, args...).WithContext(ctx).PageSize(100).Iter()
		var block map[string][]byte
		for iter.Scan(&block) {
			maps.Copy(raw, block)
			block = nil
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", table, dayString(day), err)
		}
	}
	out := make([]*hit.Hit, 0, len(raw))
	for id, b := range raw {
		h, err := hit.Unmarshal(b)
		if err != nil {
			return nil, fmt.Errorf("archived hit %s: %w", id, err)
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *hit.Hit) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
