package collection

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
)

// TestResentHitsKeepTheirID sends each request twice, the second time 2 s
// later, as a sender does after a 503 whose hits the broker may have
// stored anyway, and checks that both copies arrive with one ID
// (processing counts an ID once): a sender that does what
// docs/collection.md asks (an event ID, or the event's own time) never
// counts a hit twice.
func TestResentHitsKeepTheirID(t *testing.T) {
	clock := &testClock{}
	e := newEnv(t, envOptions{now: clock.now})
	hits := e.read(hit.TopicHits)
	mp := "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret
	tests := []struct {
		name, path, cid string
		body            func(now time.Time) string // the request as sent the first time
	}{
		{"mp event with its own time", mp, "r-past", func(now time.Time) string {
			return fmt.Sprintf(`{"client_id":"r-past","timestamp_micros":%d,"events":[{"name":"purchase","params":{"value":3}}]}`, now.Add(-time.Minute).UnixMicro())
		}},
		// The sender's clock 10 s fast: the event is dated at its receipt,
		// but its ID must come from the time it gave, the same on a retry.
		{"mp event timed by a clock running ahead", mp, "r-ahead", func(now time.Time) string {
			return fmt.Sprintf(`{"client_id":"r-ahead","timestamp_micros":%d,"events":[{"name":"purchase","params":{"value":3}}]}`, now.Add(10*time.Second).UnixMicro())
		}},
		{"mp event with its own time ahead", mp, "r-ahead-event", func(now time.Time) string {
			return fmt.Sprintf(`{"client_id":"r-ahead-event","events":[{"name":"purchase","timestamp_micros":%d,"params":{"value":3}}]}`, now.Add(30*time.Second).UnixMicro())
		}},
		{"mp event with an event ID", mp, "r-eid", func(time.Time) string {
			return `{"client_id":"r-eid","events":[{"name":"purchase","event_id":"o-1","params":{"value":3}}]}`
		}},
		{"batch with hid", "/collect?tid=" + tidShop, "r-hid", func(time.Time) string {
			return `{"hits":[{"cid":"r-hid","t":"pageview","dl":"https://shop.example/","hid":"h-resent"}]}`
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body(clock.now())
			for range 2 {
				if resp, b := e.do("POST", tt.path, "application/json", body, "203.0.113.7", ""); resp.StatusCode != http.StatusNoContent {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				clock.advance(2 * time.Second)
			}
			got := hitsOf(t, hits.waitFor(t, 2, func(m *sarama.ConsumerMessage) bool {
				h, err := hit.Unmarshal(m.Value)
				return err == nil && h.ClientID == tt.cid
			}))
			if len(got) != 2 || got[0].ID != got[1].ID {
				t.Fatalf("the hit and its re-send have the IDs %s and %s; want one", got[0].ID, got[1].ID)
			}
		})
	}
}
