package deadletters_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/deadletters"
)

const (
	knownProperty   = "6f1c2a3b-0000-4000-8000-000000000001"
	unknownProperty = "6f1c2a3b-0000-4000-8000-000000000002"
	knownShards     = 4
)

// configSvc answers config-svc's property lookups (the routes and answers
// configclient reads) for knownProperty alone, with knownShards shards.
func configSvc(t *testing.T) *configclient.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/internal/v1/properties/"+knownProperty {
			httpserver.WriteError(w, http.StatusNotFound, "not_found", "no such property")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(configclient.Property{PropertyID: knownProperty, TenantID: "t1",
			TrackingID: "AT-1111111111", TimeZone: "UTC", ProcessingShards: knownShards,
			Rules: configclient.RuleVersion{Version: 1, Rules: rules.Defaults()}})
	}))
	t.Cleanup(srv.Close)
	c, err := configclient.New(configclient.Config{BaseURL: srv.URL, Caller: "deadletters", IdentitySecret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testHit(property, client string) *hit.Hit {
	h := &hit.Hit{TenantID: "t1", PropertyID: property, TrackingID: "AT-1111111111", ClientID: client,
		Type: hit.TypePageview, Origin: hit.OriginBrowser, Time: time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC),
		URL: "https://shop.example/a", Hostname: "shop.example", Path: "/a"}
	h.ReceivedAt = h.Time
	h.ID = h.DeriveID("")
	return h
}

// processingLetter is the dead letter processing publishes for h
// (engine's deadLetter): its encoding as queued, in the payload.
func processingLetter(t *testing.T, h *hit.Hit, reason string) hit.DeadLetter {
	t.Helper()
	b, err := hit.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return hit.DeadLetter{Reason: reason, Detail: "no property " + h.PropertyID, Stage: "processing",
		TrackingID: h.TrackingID, ReceivedAt: time.Now().UTC(), Payload: hit.PayloadText(b), Partition: 3, Offset: 1234}
}

type hitRecord struct {
	partition int32
	key       string
	h         *hit.Hit
}

// hitsTopic returns every record of the hits topic, decoded.
func hitsTopic(t *testing.T, b *broker) []hitRecord {
	t.Helper()
	consumer, err := sarama.NewConsumerFromClient(b.client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := b.client.Partitions(hit.TopicHits)
	if err != nil {
		t.Fatal(err)
	}
	var out []hitRecord
	for _, p := range parts {
		end, err := b.client.GetOffset(hit.TopicHits, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(hit.TopicHits, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			h, err := hit.Unmarshal(m.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p, m.Offset, err)
			}
			out = append(out, hitRecord{p, string(m.Key), h})
			if m.Offset+1 >= end {
				break
			}
		}
		pc.Close()
	}
	return out
}

// replayAll reads the dead-letter topic and replays every letter, as the
// command does.
func replayAll(t *testing.T, b *broker, props deadletters.Properties, dry bool) []deadletters.Outcome {
	t.Helper()
	producer, err := sarama.NewSyncProducer(b.cfg.BrokerList(), b.cfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	r := &deadletters.Replayer{Producer: producer, Properties: props, DryRun: dry}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []deadletters.Outcome
	err = deadletters.Read(ctx, b.client, hit.TopicDeadLetter, deadletters.Range{Since: time.Now().Add(-time.Hour)}, func(l *deadletters.Letter) error {
		o, err := r.Replay(ctx, l)
		out = append(out, o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplayUnknownProperty: the hit of an unknown_property dead letter,
// its property back, lands in the hits topic under collection's key (the
// property and the visitor's shard among the property's shards), in the
// partition collection's producer puts that key in, and decodes as the
// same hit.
func TestReplayUnknownProperty(t *testing.T) {
	b := startBroker(t, 2)
	h := testHit(knownProperty, "c-42")
	b.publish(t, published{1, time.Now(), processingLetter(t, h, "unknown_property")})

	outs := replayAll(t, b, configSvc(t), false)
	if len(outs) != 1 || outs[0].Action != "sent" || outs[0].HitID != h.ID {
		t.Fatalf("outcomes %+v, want the hit sent", outs)
	}
	got := hitsTopic(t, b)
	if len(got) != 1 {
		t.Fatalf("hits topic holds %d records, want 1", len(got))
	}
	wantKey := string(h.Key(knownShards))
	if got[0].key != wantKey || outs[0].Key != wantKey {
		t.Errorf("key %q (reported %q), want %q", got[0].key, outs[0].Key, wantKey)
	}
	part, err := sarama.NewHashPartitioner(hit.TopicHits).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(wantKey)}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].partition != part {
		t.Errorf("in partition %d, want %d (collection's for the key)", got[0].partition, part)
	}
	g := got[0].h
	if g.ID != h.ID || g.PropertyID != h.PropertyID || g.ClientID != h.ClientID || !g.Time.Equal(h.Time) ||
		!g.ReceivedAt.Equal(h.ReceivedAt) || g.Path != h.Path || g.Type != h.Type {
		t.Errorf("re-sent hit %+v, want %+v", g, h)
	}
}

// TestReplaySkips: a collection-stage letter (invalid input), a payload
// that is no hit, a property config-svc still does not know, and a record
// that is not a dead letter are skipped, each saying why, and nothing is
// sent.
func TestReplaySkips(t *testing.T) {
	b := startBroker(t, 1)
	now := time.Now()
	broken := processingLetter(t, testHit(knownProperty, "c-1"), "undecodable")
	broken.Payload = "base64:" + strings.Repeat("A", 8)
	b.publish(t,
		published{0, now, hit.DeadLetter{Stage: "collection", Reason: "unknown_tracking_id", TrackingID: "AT-9999999999", Payload: "v=1&tid=AT-9999999999"}},
		published{0, now, broken},
		published{0, now, processingLetter(t, testHit(unknownProperty, "c-2"), "unknown_property")},
	)
	p, err := sarama.NewSyncProducer(b.cfg.BrokerList(), b.cfg.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: hit.TopicDeadLetter, Value: sarama.StringEncoder("[]")}); err != nil {
		t.Fatal(err)
	}
	p.Close()

	outs := replayAll(t, b, configSvc(t), false)
	want := []string{deadletters.SkipCollectionStage, deadletters.SkipUndecodable, deadletters.SkipUnknownProperty, deadletters.SkipNotADeadLetter}
	if len(outs) != len(want) {
		t.Fatalf("outcomes %+v, want %d", outs, len(want))
	}
	for i, o := range outs {
		if o.Action != "skipped" || o.Skipped != want[i] {
			t.Errorf("letter %d: %s %q (%s), want skipped %q", i, o.Action, o.Skipped, o.Detail, want[i])
		}
	}
	if got := hitsTopic(t, b); len(got) != 0 {
		t.Errorf("hits topic holds %d records, want none", len(got))
	}
}

// TestReplayDryRunSendsNothing: a dry run reports the hit it would send,
// under its key, and sends nothing.
func TestReplayDryRunSendsNothing(t *testing.T) {
	b := startBroker(t, 1)
	h := testHit(knownProperty, "c-7")
	b.publish(t, published{0, time.Now(), processingLetter(t, h, "unknown_property")})
	outs := replayAll(t, b, configSvc(t), true)
	if len(outs) != 1 || outs[0].Action != "would_send" || outs[0].Key != string(h.Key(knownShards)) {
		t.Fatalf("outcomes %+v, want the hit that would be sent, with its key", outs)
	}
	if got := hitsTopic(t, b); len(got) != 0 {
		t.Errorf("a dry run left %d records in the hits topic", len(got))
	}
}

// TestReplayTwice: a dead letter published twice is re-sent once in a run;
// a second run sends it again, the same hit under the same key, so that
// processing sees a re-send of one hit ID (a duplicate, which visitor.Apply
// drops: TestDuplicatesAndExclusions in internal/visitor, and
// TestProcessAndReplay in internal/engine for a replayed topic).
func TestReplayTwice(t *testing.T) {
	b := startBroker(t, 2)
	h := testHit(knownProperty, "c-9")
	dl := processingLetter(t, h, "unknown_property")
	b.publish(t, published{0, time.Now(), dl}, published{1, time.Now(), dl})
	props := configSvc(t)

	first := replayAll(t, b, props, false)
	sent := 0
	for _, o := range first {
		switch {
		case o.Action == "sent":
			sent++
		case o.Skipped != deadletters.SkipSentInRun:
			t.Errorf("outcome %+v, want sent or skipped as sent earlier in the run", o)
		}
	}
	if sent != 1 {
		t.Fatalf("first run sent %d, want 1: %+v", sent, first)
	}
	replayAll(t, b, props, false)
	got := hitsTopic(t, b)
	if len(got) != 2 {
		t.Fatalf("hits topic holds %d records after two runs, want 2", len(got))
	}
	if got[0].key != got[1].key || got[0].partition != got[1].partition || got[0].h.ID != h.ID || got[1].h.ID != h.ID {
		t.Errorf("the two copies: %+v and %+v, want one key, one partition, hit ID %s", got[0], got[1], h.ID)
	}
}
