package engine

import (
	"context"
	"testing"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
)

// TestRowsCountHitsOfANewPartition: partitions added to the hits topic move
// a property shard's key to another partition, whose offsets start from 0,
// far below the through_offset of the rows its first partition wrote; the
// rows skipped every hit of the new partition until its offsets passed
// (the rest of the day, nothing logged). Processing is drained first, as
// docs/operations.md says: the rows then count both partitions' hits once,
// as an uninterrupted run does.
func TestRowsCountHitsOfANewPartition(t *testing.T) {
	ctx := context.Background()
	prop := testProperty(t, rules.Defaults())
	msgs := traffic(40, 1)
	half := len(msgs) / 2

	ref := connect(t)
	run(t, ctx, newPartition(ref, prop), msgs, 25)
	want := totals(t, ref, rollup.Total)[""]

	s := connect(t)
	old := make([]Message, half)
	for i, m := range msgs[:half] {
		old[i] = Message{Offset: m.Offset + 5_000_000, Value: m.Value}
	}
	p0 := New(Config{Topic: "hits", Partition: 0, Session: s, Properties: staticProperties{prop}})
	run(t, ctx, p0, old, 25)
	if _, err := p0.FlushAll(ctx); err != nil { // drained
		t.Fatal(err)
	}
	moved := make([]Message, 0, len(msgs)-half)
	for i, m := range msgs[half:] {
		moved = append(moved, Message{Offset: int64(i), Value: m.Value})
	}
	p7 := New(Config{Topic: "hits", Partition: 7, Session: s, Properties: staticProperties{prop}})
	run(t, ctx, p7, moved, 25)
	// And a replay of the new partition counts nothing twice.
	run(t, ctx, New(Config{Topic: "hits", Partition: 7, Session: s, Properties: staticProperties{prop}}), moved, 25)
	if got := totals(t, s, rollup.Total)[""]; got != want {
		t.Fatalf("after the shard moved to a new partition: %+v\nuninterrupted: %+v", got, want)
	}
}
