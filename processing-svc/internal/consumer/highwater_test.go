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

// TestReplayedHitsOneAtATimeWithALaggingLeader is
// TestReplayedHitsAreDerivedOneAtATime with the high water mark of the
// claim's fetches lower than the one the claim began with, and than the
// messages the owner before applied: the hits it wrote rows for are still
// derived one at a time.
func TestReplayedHitsOneAtATimeWithALaggingLeader(t *testing.T) {
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

	c := f.claimConsumer(due, 10*time.Second)
	s := &fakeSession{ctx: ctx}
	ch := make(chan *sarama.ConsumerMessage, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	close(ch)
	claim := laggingClaim{fakeClaim: fakeClaim{msgs: ch}, sent: len(msgs), claimed: int64(len(msgs)), late: 1}
	if err := c.ConsumeClaim(s, claim); err != nil {
		t.Fatal(err)
	}
	if got, want := dumptest.Tables(t, f.session, dumptest.Pipeline...), dumptest.Tables(t, undisturbed, dumptest.Pipeline...); got != want {
		t.Fatalf("after the replay the tables differ from a run without the crash:\n got  %s\n want %s", got, want)
	}
}
