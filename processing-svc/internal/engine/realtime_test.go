package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

// TestRealtimeRowIsBounded: a realtime row (a minute of a shard) holds its
// pages and sources as maps written whole at every flush. One visitor
// sending distinct paths of 4 KB grew it without bound (4,200 such hits in
// a minute made a statement of 16 MiB, which Cassandra refuses, stopping
// the partition's flushes for good). Past 64 KiB of keys the pages counted
// as (other); every pageview is still counted once.
func TestRealtimeRowIsBounded(t *testing.T) {
	ctx := context.Background()
	s := connect(t)
	part := newPartition(s, testProperty(t, rules.Defaults()))
	largest := 0
	part.w.beforeJob = func(job []stmt) error {
		for _, st := range job {
			if strings.HasPrefix(st.partition, "r/") {
				largest = max(largest, mutationBytes(st))
			}
		}
		return nil
	}
	const n, flushes = 400, 4
	pad := strings.Repeat("a", 4000)
	for f := range flushes {
		var msgs []Message
		for i := f * n / flushes; i < (f+1)*n/flushes; i++ {
			at := t0.Add(time.Duration(i) * 100 * time.Millisecond) // one minute
			h := &hit.Hit{TenantID: "t", PropertyID: propID, TrackingID: "AT-TEST", ClientID: fmt.Sprintf("c%d", i%3),
				Type: hit.TypePageview, Origin: hit.OriginBrowser, Time: at, ReceivedAt: at, Hostname: "shop.example",
				Path: fmt.Sprintf("/%s/%d", pad, i), Country: "DE", DeviceCategory: "desktop", Browser: "Firefox"}
			h.ID = h.DeriveID(fmt.Sprintf("h%d", i))
			b, err := hit.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, Message{Offset: int64(i), Value: b})
		}
		if err := part.Apply(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		if _, err := part.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if largest > 2*realtimeKeyBytes {
		t.Errorf("the largest realtime statement is %d KiB, past twice the bound on its pages' keys (%d KiB)", largest>>10, realtimeKeyBytes>>10)
	}
	var pageviews int64
	var pages map[string]int64
	if err := s.Query("SELECT pageviews, pages FROM realtime_minutes WHERE property_id = ? AND minute = ? AND shard = 0",
		propID, t0.Truncate(time.Minute)).Scan(&pageviews, &pages); err != nil {
		t.Fatal(err)
	}
	sum, named := int64(0), 0
	for k, v := range pages {
		sum += v
		if k != realtimeOther {
			named += len(k)
		}
	}
	if pageviews != n || sum != n || pages[realtimeOther] == 0 || named > realtimeKeyBytes || named < realtimeKeyBytes-4100 {
		t.Errorf("stored %d pageviews, pages summing to %d (%d bytes of named pages, %d under %s); want %d, all counted, the pages up to %d bytes named",
			pageviews, sum, named, pages[realtimeOther], realtimeOther, n, realtimeKeyBytes)
	}
}
