package simulate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Play sends each visitor's hits in the planned order, and a hit planned
// with the next in one batch whose queue times differ by exactly the
// planned gap: collection dates both from one receive time, so that is the
// gap processing sees.
func TestPlaySendsAsPlanned(t *testing.T) {
	var mu sync.Mutex
	received := map[string][]string{} // hit IDs by client, in the order they arrived
	var batches [][]map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodGet {
			q := r.URL.Query()
			received[q.Get("cid")] = append(received[q.Get("cid")], q.Get("hid"))
			w.WriteHeader(http.StatusOK)
			return
		}
		var body struct{ Hits []map[string]string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("batch: %v", err)
		}
		for _, h := range body.Hits {
			received[h["cid"]] = append(received[h["cid"]], h["hid"])
		}
		batches = append(batches, body.Hits)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	plan := New(Config{Seed: 4, Visitors: 100, End: time.Now()})
	res, err := Play(context.Background(), srv.Client(), &Merchant{Gateway: srv.URL, TrackingID: "AT-23456789AB"}, plan, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	byID := map[string]Hit{}
	for _, h := range plan.Hits {
		want += int64(h.Copies)
		byID[h.Params.Get("hid")] = h
	}
	if res.Sent != want || res.Accepted != want {
		t.Errorf("sent %d, accepted %d; want %d", res.Sent, res.Accepted, want)
	}

	if len(batches) == 0 {
		t.Fatal("no batch sent")
	}
	for _, b := range batches {
		if len(b) != 2 {
			t.Fatalf("a batch of %d hits, want 2", len(b))
		}
		qt0, _ := strconv.ParseInt(b[0]["qt"], 10, 64)
		qt1, _ := strconv.ParseInt(b[1]["qt"], 10, 64)
		gap := byID[b[1]["hid"]].At.Sub(byID[b[0]["hid"]].At)
		if got := time.Duration(qt0-qt1) * time.Millisecond; got != gap {
			t.Errorf("hits %s and %s: queue times %d ms apart, planned %v", b[0]["hid"], b[1]["hid"], qt0-qt1, gap)
		}
	}

	// Each client's hits arrive in the plan's order (of sending).
	planned := map[string][]string{}
	for _, h := range plan.Hits {
		if cid := h.Params.Get("cid"); cid != "" {
			planned[cid] = append(planned[cid], h.Params.Get("hid"))
		}
	}
	for cid, hids := range planned {
		var got []string
		seen := map[string]bool{}
		for _, id := range received[cid] {
			if !seen[id] {
				seen[id] = true
				got = append(got, id)
			}
		}
		if len(got) != len(hids) {
			t.Fatalf("client %s: %d hits arrived, want %d", cid, len(got), len(hids))
		}
		for i := range hids {
			if got[i] != hids[i] {
				t.Fatalf("client %s: hits arrived as %v, planned %v", cid, got, hids)
			}
		}
	}
}
