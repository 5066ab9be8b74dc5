package e2e

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/localstack"
	"github.com/acme/analytics/pkg/simulate"
	"github.com/gocql/gocql"
)

// traceHits runs when the numbers do not match: it follows every valid
// planned hit through the pipeline (the hits topic, then the raw archive)
// and logs the ones missing at each stage, so a failure says where a hit
// was lost.
func traceHits(t *testing.T, cfg localstack.Config, s *gocql.Session, property string, plan *simulate.Plan) {
	t.Helper()
	planned := map[string]simulate.Hit{}
	for _, h := range plan.Hits {
		if h.Malformed != "" {
			continue
		}
		id := (&hit.Hit{PropertyID: property, ClientID: h.Params.Get("cid")}).DeriveID(h.Params.Get("hid"))
		planned[id] = h
	}
	type seen struct {
		partition int32
		offset    int64
		hit       *hit.Hit
	}
	inTopic := map[string][]seen{}
	readTopic(t, cfg, hit.TopicHits, func(msg *sarama.ConsumerMessage) {
		parts, err := hit.SplitRecord(msg.Value)
		if err != nil {
			t.Logf("trace: a broken record at partition %d offset %d: %v", msg.Partition, msg.Offset, err)
			return
		}
		for _, p := range parts {
			h, err := hit.Unmarshal(p)
			if err != nil || h.PropertyID != property {
				continue
			}
			inTopic[h.ID] = append(inTopic[h.ID], seen{msg.Partition, msg.Offset, h})
		}
	})
	archived := map[string]bool{}
	iter := s.Query("SELECT property_id, hits FROM raw_hit_blocks_by_hour").Iter()
	var pid gocql.UUID
	var block map[string][]byte
	for iter.Scan(&pid, &block) {
		if pid.String() == property {
			for id := range block {
				archived[id] = true
			}
		}
		block = nil
	}
	if err := iter.Close(); err != nil {
		t.Logf("trace: read raw_hit_blocks_by_hour: %v", err)
	}
	t.Logf("trace: %d valid planned hits, %d distinct in the hits topic, %d archived", len(planned), len(inTopic), len(archived))
	for id, h := range planned {
		copies, ok := inTopic[id]
		switch {
		case !ok:
			t.Logf("trace: NOT IN THE TOPIC %s: at %s sent %s ×%d ip %s %s", id, h.At.Format("15:04:05.000"), h.Send.Format("15:04:05.000"), h.Copies, h.IP, h.Params.Encode())
		case !archived[id]:
			t.Logf("trace: in the topic (partition %d offset %d) but NOT ARCHIVED %s: %+v", copies[0].partition, copies[0].offset, id, *copies[0].hit)
		}
	}
	for id, copies := range inTopic {
		if _, ok := planned[id]; !ok {
			t.Logf("trace: in the topic but not planned %s: %+v", id, *copies[0].hit)
		}
	}
}
