package deadletters

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/retry"
)

// Properties looks up a property as config-svc has it now
// (*configclient.Client).
type Properties interface {
	ByID(ctx context.Context, propertyID string) (*configclient.Property, error)
}

// Why a dead letter is not re-sent (Outcome.Skipped).
const (
	// SkipCollectionStage: collection rejected the input itself (a
	// request that was not a valid hit): there is no hit to re-send, only
	// what the client sent, which the client must send again, fixed.
	SkipCollectionStage = "collection_stage"
	// SkipUndecodable: the payload is not a whole hit that decodes now (a
	// broken record, a payload cut to 64 KiB, a decoder that still
	// refuses it).
	SkipUndecodable = "undecodable_payload"
	// SkipUnknownProperty: config-svc still has no property of the hit.
	SkipUnknownProperty = "unknown_property_now"
	// SkipSentInRun: a hit of the same ID was re-sent earlier in this run
	// (a dead letter published twice: a publisher's retry, two replays of
	// the hits topic).
	SkipSentInRun = "same_hit_earlier_in_run"
	// SkipNotADeadLetter: the record is not a dead letter's JSON.
	SkipNotADeadLetter = "not_a_dead_letter"
)

// Outcome is what Replay did with one dead letter: the hit it re-sent (or,
// dry, would re-send) and under which key, or why it skipped it.
type Outcome struct {
	At         Position `json:"at"`
	Stage      string   `json:"stage"`
	Reason     string   `json:"reason"`
	TrackingID string   `json:"tid,omitempty"`
	Action     string   `json:"action"` // "sent", "would_send" or "skipped"
	Skipped    string   `json:"skipped,omitempty"`
	Detail     string   `json:"detail,omitempty"` // more on a skip
	HitID      string   `json:"hit_id,omitempty"`
	PropertyID string   `json:"property_id,omitempty"`
	Key        string   `json:"key,omitempty"`
}

// Replayer re-sends the hits of processing's dead letters to the hits
// topic, keyed as collection keys them (hit.Hit.Key with the property's
// processing shards now), so that processing takes them up again.
type Replayer struct {
	Producer   sarama.SyncProducer // kafka.Config.ProducerConfig: idempotent, acks from all in-sync replicas
	Properties Properties
	DryRun     bool // decide and report, send nothing

	sent map[string]bool // hit IDs sent (or, dry, to be sent) in this run
}

// Replay decides what to do with l and, unless dry, re-sends its hit and
// returns once the broker has it. The error is for what ends the run: a
// send that failed, config-svc not answering; a dead letter that cannot
// be replayed is an Outcome with Skipped.
func (r *Replayer) Replay(ctx context.Context, l *Letter) (Outcome, error) {
	o := Outcome{At: l.At, Stage: l.Stage, Reason: l.Reason, TrackingID: l.TrackingID}
	skip := func(why, detail string) (Outcome, error) {
		o.Action, o.Skipped, o.Detail = "skipped", why, detail
		return o, nil
	}
	switch {
	case l.Err != "":
		return skip(SkipNotADeadLetter, l.Err)
	case l.Stage != hit.StageProcessing:
		return skip(SkipCollectionStage, "rejected as invalid input before it was a hit; the sender must send it again, fixed")
	}
	raw, err := hit.PayloadBytes(l.Payload)
	if err != nil {
		return skip(SkipUndecodable, err.Error())
	}
	// The payload of a hit processing rejected is that hit's encoding as
	// collection queued it, one hit of a record: a record of its own.
	h, err := hit.Unmarshal(raw)
	if err != nil {
		return skip(SkipUndecodable, err.Error())
	}
	o.HitID, o.PropertyID = h.ID, h.PropertyID
	if r.sent[h.ID] {
		return skip(SkipSentInRun, "")
	}
	prop, err := r.Properties.ByID(ctx, h.PropertyID)
	if errors.Is(err, configclient.ErrNotFound) {
		return skip(SkipUnknownProperty, "config-svc has no property "+h.PropertyID)
	}
	if err != nil {
		return o, fmt.Errorf("look up property %s: %w", h.PropertyID, err)
	}
	key := h.Key(prop.ProcessingShards)
	o.Key = string(key)
	if r.sent == nil {
		r.sent = map[string]bool{}
	}
	if r.DryRun {
		r.sent[h.ID] = true
		o.Action = "would_send"
		return o, nil
	}
	// The record's timestamp is now (the producer's), not the hit's
	// receipt: the hits topic's retention goes by it, and the hit carries
	// its own times.
	msg := &sarama.ProducerMessage{Topic: hit.TopicHits, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(raw)}
	// sarama's send takes no context: an interrupt returns at once, the
	// send going on (the hit may still arrive: replaying again is safe).
	_, err = retry.Abandonable(ctx, func() (struct{}, error) {
		_, _, err := r.Producer.SendMessage(msg)
		return struct{}{}, err
	}, nil)
	if err != nil {
		return o, fmt.Errorf("re-send hit %s (dead letter at partition %d, offset %d): %w", h.ID, l.At.Partition, l.At.Offset, err)
	}
	r.sent[h.ID] = true
	o.Action = "sent"
	return o, nil
}
