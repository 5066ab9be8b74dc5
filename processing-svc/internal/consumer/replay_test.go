package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/processing-svc/internal/dumptest"
	"github.com/acme/analytics/processing-svc/internal/engine"
	"github.com/acme/analytics/processing-svc/internal/engine/enginetest"
)

// The tests below: an owner of the partition wrote the rollups of a
// visitor's first hits and died before writing the visitor (written when
// due) or committing; the next owner's claim starts at the committed
// offset, before them, and its first batch holds them and the visitor's
// later hits, all late (newest first). Derived together, their changes
// would go to the rows at the offset of the last, past the rows' through
// offset, and the first hits would count twice; derived one at a time up
// to what the dead owner may have written, the tables are those of a run
// without the crash.

// TestReplayedHitsAreDerivedOneAtATime: the dead owner's flush marked the
// offset it wrote rows through, which is all the next owner needs (the
// claim's high water mark, 1 here, bounds nothing).
func TestReplayedHitsAreDerivedOneAtATime(t *testing.T) {
	replayAfterDeadOwner(t, true, func(msgs chan *sarama.ConsumerMessage) sarama.ConsumerGroupClaim {
		return fakeClaim{msgs: msgs, highWater: 1}
	})
}

// TestReplayedHitsOneAtATimeWithoutMarks: an owner of a build before
// migration 24 wrote no mark; the claim's high water mark bounds what it
// may have applied.
func TestReplayedHitsOneAtATimeWithoutMarks(t *testing.T) {
	replayAfterDeadOwner(t, false, func(msgs chan *sarama.ConsumerMessage) sarama.ConsumerGroupClaim {
		return fakeClaim{msgs: msgs, highWater: int64(len(msgs))}
	})
}

// TestReplayedHitsOneAtATimeWithALaggingLeader: without a mark, and the
// high water mark of the claim's fetches lower than the one the claim
// began with, and than the messages the owner before applied.
func TestReplayedHitsOneAtATimeWithALaggingLeader(t *testing.T) {
	replayAfterDeadOwner(t, false, func(msgs chan *sarama.ConsumerMessage) sarama.ConsumerGroupClaim {
		return laggingClaim{fakeClaim: fakeClaim{msgs: msgs}, sent: len(msgs), claimed: int64(len(msgs)), late: 1}
	})
}

// laggingClaim is a fakeClaim whose high water mark is what the broker
// gave as the claim began until its messages are taken, and then what a
// fetch answered by a lagging leader gives (a leader just elected learns
// the high water mark of the one before it a moment late, and a fetch
// response carries the leader's own; sarama's HighWaterMarkOffset is the
// last response's).
type laggingClaim struct {
	fakeClaim
	sent          int
	claimed, late int64
}

func (c laggingClaim) HighWaterMarkOffset() int64 {
	if len(c.msgs) < c.sent {
		return c.late
	}
	return c.claimed
}

// replayAfterDeadOwner plays the story above, the dead owner's mark kept
// or not, the next owner consuming the claim claimOf gives.
func replayAfterDeadOwner(t *testing.T, marked bool, claimOf func(chan *sarama.ConsumerMessage) sarama.ConsumerGroupClaim) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var msgs []*sarama.ConsumerMessage
	var values []engine.Message
	for i := range 6 {
		h := pageview(1, fmt.Sprint("e", i))
		h.Time, h.Path = now.Add(-time.Duration(i)*time.Minute), fmt.Sprint("/p", i)
		h.ID = h.DeriveID(fmt.Sprint("e", i))
		b, _ := hit.Marshal(h)
		msgs = append(msgs, &sarama.ConsumerMessage{Topic: hit.TopicHits, Offset: int64(i), Value: b, Timestamp: now})
		values = append(values, engine.Message{Offset: int64(i), Value: b})
	}
	due := engine.StatePolicy{Quiet: time.Hour, MaxDelay: time.Hour}

	undisturbed, err := cassandra.Connect(migratetest.Keyspace(t))
	if err != nil {
		t.Fatal(err)
	}
	defer undisturbed.Close()
	clean := engine.New(engine.Config{Topic: hit.TopicHits, Session: undisturbed, Properties: enginetest.Properties{f.prop}, State: due})
	if err := clean.Apply(ctx, values); err != nil {
		t.Fatal(err)
	}
	if _, err := clean.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}

	dead := engine.New(engine.Config{Topic: hit.TopicHits, Session: f.session, Properties: enginetest.Properties{f.prop}, State: due})
	if err := dead.Apply(ctx, values[:3]); err != nil {
		t.Fatal(err)
	}
	if off, err := dead.Flush(ctx); err != nil || off != -1 {
		t.Fatalf("the first owner's flush: durable through %d, %v; want -1 (its visitor not written), no error", off, err)
	}
	if !marked {
		if err := f.session.Query("DELETE FROM processing_marks WHERE topic = ? AND kafka_partition = ?", hit.TopicHits, 0).Exec(); err != nil {
			t.Fatal(err)
		}
	}

	c := f.claimConsumer(due, 10*time.Second)
	s := &fakeSession{ctx: ctx}
	ch := make(chan *sarama.ConsumerMessage, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	close(ch) // revoked once they are applied: the hand-over writes them
	if err := c.ConsumeClaim(s, claimOf(ch)); err != nil {
		t.Fatal(err)
	}
	if got, want := dumptest.Tables(t, f.session, dumptest.Pipeline...), dumptest.Tables(t, undisturbed, dumptest.Pipeline...); got != want {
		t.Fatalf("after the replay the tables differ from a run without the crash:\n got  %s\n want %s", got, want)
	}
}
