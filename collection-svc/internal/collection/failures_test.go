package collection

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
)

// batchOf is a POST body of n pageviews of one visitor.
func batchOf(client string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"cid":%q,"t":"pageview","dl":"https://shop.example/%d","hid":"%s-%d"}`, client, i, client, i)
	}
	return `{"hits":[` + b.String() + `]}`
}

// -max-in-flight bounds the hits waiting for the broker, not the records
// they travel in: a visitor's batch of 500 hits is one record, and with a
// slow broker a bound of 500 must refuse a second such batch at once
// rather than hold it (and so on up to 500 records of 500 hits).
func TestMaxInFlightCountsHits(t *testing.T) {
	e := newEnv(t, envOptions{maxInFlight: 500, produceTimeout: 10 * time.Second})
	hung, release := e.cluster.HoldProduce(t, hit.TopicHits)
	first := make(chan int, 1)
	go func() {
		resp, _ := e.do("POST", "/collect?tid="+tidShop, "text/plain", batchOf("c-first", 500), "203.0.113.7", "")
		first <- resp.StatusCode
	}()
	select {
	case <-hung:
	case <-time.After(15 * time.Second):
		t.Fatal("the first batch never reached the broker")
	}
	start := time.Now()
	resp, _ := e.do("POST", "/collect?tid="+tidShop, "text/plain", batchOf("c-second", 500), "203.0.113.8", "")
	if took := time.Since(start); resp.StatusCode != 503 || took > time.Second {
		t.Errorf("a second batch of 500 hits with 500 waiting and -max-in-flight 500: status %d after %v, want 503 at once", resp.StatusCode, took)
	}
	release()
	if status := <-first; status != 204 {
		t.Fatalf("the first batch: status %d, want 204", status)
	}
}
