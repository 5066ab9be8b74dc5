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

// TestTwinsOfOneRequestAreTwoHits sends requests holding two identical
// hits without an event ID (the same item added to the cart twice, in
// one Measurement API request; two identical pageviews in one batch):
// each is a hit of its own, with an ID of its own, as GA4 counts them,
// where their content alone gave them one ID and processing counted
// them once. The request sent again gives its hits the same two IDs, so a
// retry still counts nothing twice (a batch dated at its receipt only
// within the second, so that is checked of the Measurement API's); two
// events of one request with the same event_id are, as the sender says,
// one event.
func TestTwinsOfOneRequestAreTwoHits(t *testing.T) {
	clock := &testClock{}
	e := newEnv(t, envOptions{now: clock.now})
	hits := e.read(hit.TopicHits)
	mp := "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret
	tests := []struct {
		name, path, cid, body string
		ids                   int  // distinct IDs among the hits of the request
		timed                 bool // the request gives its time: a retry's IDs are the first's
	}{
		{"mp events", mp, "tw-mp", fmt.Sprintf(`{"client_id":"tw-mp","timestamp_micros":%d,"events":[`+
			`{"name":"add_to_cart","params":{"item_id":"sku-9","value":4}},{"name":"add_to_cart","params":{"item_id":"sku-9","value":4}}]}`,
			clock.now().Add(-time.Minute).UnixMicro()), 2, true},
		{"batch pageviews", "/collect?tid=" + tidShop, "tw-batch",
			`{"hits":[{"cid":"tw-batch","t":"pageview","dl":"https://shop.example/"},{"cid":"tw-batch","t":"pageview","dl":"https://shop.example/"}]}`, 2, false},
		{"mp events with one event ID", mp, "tw-eid",
			`{"client_id":"tw-eid","events":[{"name":"purchase","event_id":"o-2","params":{"value":3}},{"name":"purchase","event_id":"o-2","params":{"value":3}}]}`, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 {
				if resp, b := e.do("POST", tt.path, "application/json", tt.body, "203.0.113.7", ""); resp.StatusCode != http.StatusNoContent {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
			}
			got := hitsOf(t, hits.waitFor(t, 4, func(m *sarama.ConsumerMessage) bool {
				h, err := hit.Unmarshal(m.Value)
				return err == nil && h.ClientID == tt.cid
			}))
			if len(got) != 4 {
				t.Fatalf("%d hits, want 4", len(got))
			}
			first, again := map[string]bool{got[0].ID: true, got[1].ID: true}, map[string]bool{got[2].ID: true, got[3].ID: true}
			if len(first) != tt.ids {
				t.Errorf("the request's two hits have %d IDs (%s, %s); want %d", len(first), got[0].ID, got[1].ID, tt.ids)
			}
			for id := range first {
				if tt.timed && !again[id] {
					t.Errorf("the request sent again has the IDs %v, the first time %v; want the same", again, first)
				}
			}
		})
	}
}
