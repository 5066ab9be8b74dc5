package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// A hit is derived under the rules version collection stamped on it, which
// any replay finds in the hit again; when processing's copy of the
// property's rule history does not have that version yet, under the
// version in effect at its receipt by the copy (Property.RulesOf), which a
// replay by a processor whose copy has caught up would not find. So the
// version such a hit was derived under is recorded (cql/0013): by the flush
// whose rows include the hit, before those rows, and a Partition reads what
// was recorded for offsets past the one it resumes from before applying
// its first batch, and derives those hits under the recorded version. The
// rows a predecessor wrote and the rows of the replay then come from the
// same derivation. Ordinarily nothing is recorded, and nothing is read
// beyond one query of the buckets when a partition is taken over.

// CQL of the records.
const (
	cqlFallbackBuckets  = "SELECT bucket FROM fallback_rule_buckets WHERE topic = ? AND kafka_partition = ? AND bucket >= ?"
	cqlFallbackVersions = "SELECT hit_offset, versions FROM fallback_rule_versions WHERE topic = ? AND kafka_partition = ? AND bucket = ? AND hit_offset >= ?"
	cqlFallbackBucket   = "INSERT INTO fallback_rule_buckets (topic, kafka_partition, bucket) VALUES (?, ?, ?)"
	cqlFallbackVersion  = "UPDATE fallback_rule_versions SET versions = versions + ? WHERE topic = ? AND kafka_partition = ? AND bucket = ? AND hit_offset = ?"
)

// fallbackBucket is the bucket of an offset's record: 65,536 offsets each,
// the bound of a partition of fallback_rule_versions.
func fallbackBucket(offset int64) int64 { return offset >> 16 }

// fallbacks are versions hits were derived under, by offset and hit ID.
type fallbacks map[int64]map[string]int

func (f fallbacks) add(offset int64, hitID string, version int) {
	if f[offset] == nil {
		f[offset] = map[string]int{}
	}
	f[offset][hitID] = version
}

// readFallbacks returns what was recorded for the partition's offsets from
// from on.
func readFallbacks(ctx context.Context, s *gocql.Session, topic string, partition int32, from int64) (fallbacks, error) {
	var buckets []int64
	iter := s.Query(cqlFallbackBuckets, topic, partition, fallbackBucket(from)).WithContext(ctx).Iter()
	var b int64
	for iter.Scan(&b) {
		buckets = append(buckets, b)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read fallback rule buckets: %w", err)
	}
	out := fallbacks{}
	for _, b := range buckets {
		if err := out.scan(s.Query(cqlFallbackVersions, topic, partition, b, from).WithContext(ctx).Iter()); err != nil {
			return nil, fmt.Errorf("read fallback rule versions: %w", err)
		}
	}
	return out, nil
}

// scan adds the rows of iter (hit_offset, versions) to f.
func (f fallbacks) scan(iter *gocql.Iter) error {
	var offset int64
	var versions map[string]int
	for iter.Scan(&offset, &versions) {
		for id, v := range versions {
			f.add(offset, id, v)
		}
	}
	return iter.Close()
}

// readRecorded reads, once, what earlier owners of the partition recorded
// for offsets from from on (the first batch's): the hits a replay must
// derive as they did, and through which offset they may have written rows
// (readMark).
func (p *Partition) readRecorded(ctx context.Context, from int64) error {
	if p.recordedRead {
		return nil
	}
	f, err := readFallbacks(ctx, p.cfg.Session, p.cfg.Topic, p.cfg.Partition, from)
	if err != nil {
		return err
	}
	if err := p.readMark(ctx); err != nil {
		return err
	}
	for offset := range f {
		p.recordedEnd = max(p.recordedEnd, offset+1)
	}
	if len(f) > 0 {
		p.recorded = f
		p.cfg.Log.Info("hits past the committed offset were derived under a fallback rules version; replaying them under it",
			slog.Int("records", len(f)), slog.Int64("through", p.recordedEnd-1))
	}
	p.recordedRead = true
	return nil
}

// fallback returns the rules d's hit is derived under when they may not be
// its stamped version's: r is what RulesOf gave, a fallback when fellBack
// (this copy lacks the stamped version), and an earlier owner of the
// partition may have recorded the version it derived the hit under, which
// wins: the rows it wrote hold the hit so. Either way the version is kept
// for the next flush to record, before the rows the hit goes into.
func (p *Partition) fallback(d *decoded, r *rules.Compiled, fellBack bool) *rules.Compiled {
	n, recorded := p.recorded[d.msg.Offset][d.h.ID]
	if !recorded && !fellBack {
		return r
	}
	if recorded && n != r.Version() {
		if rec := d.prop.version(n); rec != nil {
			r = rec
		} else {
			// This copy lacks what its predecessor had: the hit's rows
			// may hold it under two versions, as before the records.
			p.cfg.Log.Warn("hit recorded under a rules version this copy does not have; derived under another",
				slog.String("property", d.h.PropertyID), slog.Int64("offset", d.msg.Offset),
				slog.Int("recorded", n), slog.Int("used", r.Version()))
		}
	}
	if p.unrecorded == nil {
		p.unrecorded = fallbacks{}
	}
	p.unrecorded.add(d.msg.Offset, d.h.ID, r.Version())
	p.stats.Fallbacks++
	return r
}

// fallbackWrites returns the statements that record the versions of the
// hits applied since the last flush that were derived under another than
// their stamped one.
func (p *Partition) fallbackWrites() []stmt {
	var out []stmt
	buckets := map[int64]bool{}
	part := fmt.Sprintf("fb/%s/%d", p.cfg.Topic, p.cfg.Partition)
	for offset, versions := range p.unrecorded {
		b := fallbackBucket(offset)
		if !buckets[b] {
			buckets[b] = true
			out = append(out, stmt{partition: part, cql: cqlFallbackBucket, args: []any{p.cfg.Topic, p.cfg.Partition, b}})
		}
		out = append(out, stmt{partition: fmt.Sprintf("fv/%s/%d/%d", p.cfg.Topic, p.cfg.Partition, b), cql: cqlFallbackVersion,
			args: []any{versions, p.cfg.Topic, p.cfg.Partition, b, offset}})
	}
	return out
}
