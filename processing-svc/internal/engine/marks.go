package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"
)

// A visitor's hits of one batch are derived together past the messages a
// processor replays (SettleFrom): their changes go to the rows at the
// offset of the last of them, so they must not straddle a row's through
// offset, which an earlier owner of the partition may have written up to
// any message it applied. So each flush first records the offset it writes
// rows through (cql/0024), never lower than one recorded before, and a
// Partition reads it before applying its first batch: the messages up to
// it are derived one at a time.

// CQL of the marks.
const (
	cqlReadMark  = "SELECT through_offset FROM processing_marks WHERE topic = ? AND kafka_partition = ?"
	cqlWriteMark = "INSERT INTO processing_marks (topic, kafka_partition, through_offset) VALUES (?, ?, ?)"
)

// readMark reads the offset through which earlier owners of the partition
// may have written rows.
func (p *Partition) readMark(ctx context.Context) error {
	var through int64
	err := p.cfg.Session.Query(cqlReadMark, p.cfg.Topic, p.cfg.Partition).WithContext(ctx).Scan(&through)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the partition's mark: %w", err)
	}
	p.replayedThrough, p.marked = through, max(p.marked, through)
	return nil
}

// markWrites returns the statement recording that rows may be written
// through offset through, none when a mark says so already.
func (p *Partition) markWrites(through int64) []stmt {
	if through <= p.marked {
		return nil
	}
	return []stmt{{partition: fmt.Sprintf("mark/%s/%d", p.cfg.Topic, p.cfg.Partition), cql: cqlWriteMark,
		args: []any{p.cfg.Topic, p.cfg.Partition, through}}}
}
