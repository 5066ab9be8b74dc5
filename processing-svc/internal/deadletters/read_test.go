package deadletters_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/kafka"
	"github.com/acme/analytics/pkg/kafkatest"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/acme/analytics/processing-svc/internal/deadletters"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// broker is a kfake cluster with the dead-letter topic of the given
// partitions and the hits topic of 4, and clients of it.
type broker struct {
	cl     *kafkatest.Cluster
	cfg    *kafka.Config
	client sarama.Client
}

func startBroker(t *testing.T, dlPartitions int32) *broker {
	t.Helper()
	cl := kafkatest.Start(t)
	cfg := &kafka.Config{Brokers: strings.Join(cl.Brokers(), ","), ClientID: "deadletters-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg,
		kafka.Topic{Name: hit.TopicDeadLetter, Partitions: dlPartitions, ReplicationFactor: 1},
		kafka.Topic{Name: hit.TopicHits, Partitions: 4, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(cfg.BrokerList(), cfg.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return &broker{cl: cl, cfg: cfg, client: client}
}

// published is a dead letter to publish in a given partition at a given
// time.
type published struct {
	partition int32
	at        time.Time
	dl        hit.DeadLetter
}

// publish writes the letters as deadletter.Publisher does (JSON, keyed by
// tracking ID), but in the partition and with the timestamp each asks for.
func (b *broker) publish(t *testing.T, ps ...published) {
	t.Helper()
	sc := b.cfg.ProducerConfig()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(b.cfg.BrokerList(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, x := range ps {
		v, err := json.Marshal(&x.dl)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicDeadLetter, Partition: x.partition,
			Timestamp: x.at, Key: sarama.StringEncoder(x.dl.TrackingID), Value: sarama.ByteEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll returns what Read gives for r, sorted by partition and offset.
func readAll(t *testing.T, b *broker, r deadletters.Range, f deadletters.Filter) []*deadletters.Letter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*deadletters.Letter
	err := deadletters.Read(ctx, b.client, hit.TopicDeadLetter, r, func(l *deadletters.Letter) error {
		if f.Match(l) {
			got = append(got, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("Read did not stop at the end of the topic")
	}
	slices.SortFunc(got, func(a, b *deadletters.Letter) int {
		if a.At.Partition != b.At.Partition {
			return int(a.At.Partition - b.At.Partition)
		}
		return int(a.At.Offset - b.At.Offset)
	})
	return got
}

func details(ls []*deadletters.Letter) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Detail)
	}
	return out
}

// TestListFiltersAcrossPartitions: every partition is read, each letter
// carries its own partition and offset, and the filters select by tracking
// ID, reason and stage, alone and together.
func TestListFiltersAcrossPartitions(t *testing.T) {
	b := startBroker(t, 3)
	now := time.Now().UTC().Truncate(time.Millisecond)
	letter := func(part int32, stage, reason, tid, detail string) published {
		return published{part, now, hit.DeadLetter{Stage: stage, Reason: reason, TrackingID: tid, Detail: detail, ReceivedAt: now}}
	}
	b.publish(t,
		letter(0, "collection", "unknown_tracking_id", "AT-1111111111", "a"),
		letter(1, "collection", "malformed", "AT-2222222222", "b"),
		letter(2, "processing", "unknown_property", "AT-1111111111", "c"),
		letter(2, "processing", "undecodable", "", "d"),
		letter(0, "collection", "malformed", "AT-1111111111", "e"),
	)
	all := readAll(t, b, deadletters.Range{Since: now.Add(-time.Hour)}, deadletters.Filter{})
	if got, want := details(all), []string{"a", "e", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("every letter: %v, want %v", got, want)
	}
	if l := all[4]; l.At.Partition != 2 || l.At.Offset != 1 || !l.At.Time.Equal(now) {
		t.Errorf("letter d at %+v, want partition 2, offset 1, time %s", l.At, now)
	}
	for _, tc := range []struct {
		f    deadletters.Filter
		want []string
	}{
		{deadletters.Filter{TrackingID: "AT-1111111111"}, []string{"a", "e", "c"}},
		{deadletters.Filter{Reason: "malformed"}, []string{"e", "b"}},
		{deadletters.Filter{Stage: "processing"}, []string{"c", "d"}},
		{deadletters.Filter{Stage: "collection", TrackingID: "AT-1111111111", Reason: "malformed"}, []string{"e"}},
		{deadletters.Filter{Reason: "too_old"}, nil},
	} {
		if got := details(readAll(t, b, deadletters.Range{Since: now.Add(-time.Hour)}, tc.f)); !slices.Equal(got, tc.want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestListTimeBounds: Read starts, in each partition, at the first letter
// published at or after Since (offsets for times), and a partition with
// nothing that recent gives nothing.
func TestListTimeBounds(t *testing.T) {
	b := startBroker(t, 2)
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(part int32, ago time.Duration, detail string) published {
		return published{part, now.Add(-ago), hit.DeadLetter{Stage: "collection", Reason: "malformed", Detail: detail}}
	}
	b.publish(t, at(0, 50*time.Hour, "old0"), at(0, 3*time.Hour, "3h"), at(0, 30*time.Minute, "30m"),
		at(1, 48*time.Hour, "old1"))
	for _, tc := range []struct {
		since time.Duration
		want  []string
	}{
		{24 * time.Hour, []string{"3h", "30m"}},
		{time.Hour, []string{"30m"}},
		{3 * time.Hour, []string{"3h", "30m"}}, // at Since exactly: included
		{72 * time.Hour, []string{"old0", "3h", "30m", "old1"}},
		{time.Minute, nil},
	} {
		if got := details(readAll(t, b, deadletters.Range{Since: now.Add(-tc.since)}, deadletters.Filter{})); !slices.Equal(got, tc.want) {
			t.Errorf("since %s: %v, want %v", tc.since, got, tc.want)
		}
	}
}

// TestListFollow: with Follow, Read goes on past the end and gives a
// letter published after it started, until its context ends.
func TestListFollow(t *testing.T) {
	b := startBroker(t, 2)
	now := time.Now().UTC()
	b.publish(t, published{0, now, hit.DeadLetter{Stage: "collection", Reason: "malformed", Detail: "before"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		done <- deadletters.Read(ctx, b.client, hit.TopicDeadLetter, deadletters.Range{Since: now.Add(-time.Minute), Follow: true},
			func(l *deadletters.Letter) error { got <- l.Detail; return nil })
	}()
	if d := <-got; d != "before" {
		t.Fatalf("first letter %q, want before", d)
	}
	b.publish(t, published{1, time.Now(), hit.DeadLetter{Stage: "processing", Reason: "undecodable", Detail: "after"}})
	select {
	case d := <-got:
		if d != "after" {
			t.Fatalf("second letter %q, want after", d)
		}
	case <-ctx.Done():
		t.Fatal("the letter published while following never came")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Read after its context ended: %v, want nil", err)
	}
}

// TestListFollowRetries: a follow whose fetches fail (the broker drops
// them) logs each failed read and reads on once they succeed again, from
// the first letter it had not given: none lost, none given twice.
func TestListFollowRetries(t *testing.T) {
	b := startBroker(t, 1)
	var failing atomic.Bool
	b.cl.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.cl.KeepControl()
		if failing.Load() {
			return nil, errors.New("fetch refused (test)"), true // the connection is dropped
		}
		return nil, nil, false
	})
	now := time.Now().UTC()
	b.publish(t, published{0, now, hit.DeadLetter{Stage: "collection", Reason: "malformed", Detail: "before"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs logtest.Buffer
	r := deadletters.Range{Since: now.Add(-time.Minute), Follow: true,
		Backoff: retry.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- deadletters.Read(ctx, b.client, hit.TopicDeadLetter, r, func(l *deadletters.Letter) error { got <- l.Detail; return nil })
	}()
	next := func() string {
		t.Helper()
		select {
		case d := <-got:
			return d
		case err := <-done:
			t.Fatalf("Read ended while following: %v", err)
		case <-ctx.Done():
			t.Fatal("no letter came")
		}
		return ""
	}
	if d := next(); d != "before" {
		t.Fatalf("first letter %q, want before", d)
	}
	failing.Store(true)
	eventually.True(t, 20*time.Second, "two failed reads logged", func() bool {
		return strings.Count(logs.String(), "read "+hit.TopicDeadLetter+"/0 failed; retrying") >= 2
	})
	b.publish(t, published{0, time.Now(), hit.DeadLetter{Stage: "processing", Reason: "undecodable", Detail: "during"}})
	failing.Store(false)
	if d := next(); d != "during" {
		t.Fatalf("letter after the failures %q, want during", d)
	}
	b.publish(t, published{0, time.Now(), hit.DeadLetter{Stage: "processing", Reason: "undecodable", Detail: "after"}})
	if d := next(); d != "after" {
		t.Fatalf("next letter %q, want after", d)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "attempt=") {
		t.Errorf("the failures were not logged as retries at warn:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Read after its context ended: %v, want nil", err)
	}
	select {
	case d := <-got:
		t.Errorf("letter %q given twice or out of place", d)
	default:
	}
}

// TestListNotADeadLetter: a record that is not a dead letter's JSON is
// given with its error, and passes only a filter that selects everything.
func TestListNotADeadLetter(t *testing.T) {
	b := startBroker(t, 1)
	p, err := sarama.NewSyncProducer(b.cfg.BrokerList(), b.cfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicDeadLetter, Value: sarama.StringEncoder("not json")}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got := readAll(t, b, deadletters.Range{Since: time.Now().Add(-time.Hour)}, deadletters.Filter{})
	if len(got) != 1 || !strings.Contains(got[0].Err, "not a dead letter") {
		t.Fatalf("got %+v, want one letter with its error", got)
	}
	if (deadletters.Filter{Stage: "collection"}).Match(got[0]) {
		t.Error("a stage filter selects a record that is not a dead letter")
	}
}

// TestSummary: counts by stage, reason and tracking ID, with each reason's
// total and the grand total.
func TestSummary(t *testing.T) {
	var s deadletters.Summary
	for _, l := range []deadletters.Letter{
		{DeadLetter: hit.DeadLetter{Stage: "collection", Reason: "malformed", TrackingID: "AT-2"}},
		{DeadLetter: hit.DeadLetter{Stage: "collection", Reason: "malformed", TrackingID: "AT-1"}},
		{DeadLetter: hit.DeadLetter{Stage: "collection", Reason: "malformed", TrackingID: "AT-2"}},
		{DeadLetter: hit.DeadLetter{Stage: "processing", Reason: "undecodable"}},
		{Err: "not a dead letter"},
	} {
		s.Add(&l)
	}
	var buf bytes.Buffer
	if err := s.Print(&buf); err != nil {
		t.Fatal(err)
	}
	want := `STAGE       REASON       TRACKING ID  COUNT
?           ?            -            1
?           ?            (all)        1
collection  malformed    AT-2         2
collection  malformed    AT-1         1
collection  malformed    (all)        3
processing  undecodable  -            1
processing  undecodable  (all)        1
total                                 5
`
	if got := buf.String(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}

// TestLetterJSON: list prints a letter with where it is in the dead-letter
// topic and the dead letter's own fields; a processing letter from
// partition 0 at offset 0 of `hits` says so, a collection letter has no
// partition or offset of its own, and a record that is not a dead letter
// has its error.
func TestLetterJSON(t *testing.T) {
	at := deadletters.Position{Partition: 2, Offset: 40, Time: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)}
	for _, tt := range []struct {
		name string
		l    deadletters.Letter
		want map[string]any // keys that must be there, with their values; nil: must be absent
	}{
		{"processing at 0/0", deadletters.Letter{At: at, DeadLetter: hit.DeadLetter{Stage: "processing", Reason: "undecodable"}},
			map[string]any{"stage": "processing", "reason": "undecodable", "partition": 0.0, "offset": 0.0, "error": nil}},
		{"collection", deadletters.Letter{At: at, DeadLetter: hit.DeadLetter{Stage: "collection", Reason: "malformed", TrackingID: "AT-1"}},
			map[string]any{"stage": "collection", "tid": "AT-1", "partition": nil, "offset": nil, "error": nil}},
		{"not a dead letter", deadletters.Letter{At: at, Err: "not a dead letter: x"},
			map[string]any{"error": "not a dead letter: x", "partition": nil}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(&tt.l)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if a, _ := got["at"].(map[string]any); a == nil || a["partition"] != 2.0 || a["offset"] != 40.0 || a["time"] != "2026-12-05T08:00:00Z" {
				t.Errorf("%s: at = %v, want partition 2, offset 40 and the time", b, got["at"])
			}
			for k, want := range tt.want {
				v, ok := got[k]
				switch {
				case want == nil && ok:
					t.Errorf("%s: has %s", b, k)
				case want != nil && v != want:
					t.Errorf("%s: %s = %v, want %v", b, k, v, want)
				}
			}
			var back deadletters.Letter
			if err := json.Unmarshal(b, &back); err != nil || back.DeadLetter != tt.l.DeadLetter {
				t.Errorf("%s decodes as %+v (%v)", b, back.DeadLetter, err)
			}
		})
	}
}
