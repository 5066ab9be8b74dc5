package simulate

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Live visitors send the property's hits one at a time as they happen:
// with its tracking ID, no queue time or timestamp (collection dates them
// when it receives them), from several visitors at once, pageviews first;
// and they stop when the context ends.
func TestPlayLiveSendsHitsAsTheyHappen(t *testing.T) {
	const tid, visitors = "AT-23456789AB", 4
	var mu sync.Mutex
	var hits []url.Values
	stopped := false
	enough := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			t.Errorf("a hit arrived after PlayLive returned: %s", r.URL)
		}
		if r.Method != http.MethodGet || r.URL.Path != "/collect" {
			t.Errorf("unexpected %s %s: live hits go one at a time, as pixels", r.Method, r.URL.Path)
		}
		hits = append(hits, r.URL.Query())
		if len(hits) == 60 {
			close(enough)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result)
	go func() {
		done <- PlayLive(ctx, srv.Client(), &Merchant{Gateway: srv.URL, TrackingID: tid},
			LiveConfig{Visitors: visitors, Seed: 7, Host: "www.shop.example", Speed: 1000}, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-enough:
	case <-time.After(time.Minute):
		t.Fatal("live visitors sent fewer than 60 hits in a minute")
	}
	cancel()
	var res Result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("PlayLive did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	stopped = true

	// A request in flight when the context ended (one a visitor at most)
	// arrived but is not counted as sent.
	if n := int64(len(hits)); res.Sent > n || res.Sent < n-visitors || res.Accepted != res.Sent || res.Failed != 0 {
		t.Errorf("result %+v; want all but at most %d of the %d hits that arrived sent and accepted", res, visitors, n)
	}
	seen := map[string]bool{} // client IDs whose first hit has arrived
	ids := map[string]bool{}
	for _, q := range hits {
		if got := q.Get("tid"); got != tid {
			t.Errorf("tid %q, want %q", got, tid)
		}
		if q.Has("qt") || q.Has("timestamp_micros") {
			t.Errorf("hit %s has a time of its own (%s): live hits are dated when received", q.Get("hid"), q.Encode())
		}
		if u, err := url.Parse(q.Get("dl")); err != nil || u.Host != "www.shop.example" {
			t.Errorf("hit %s on %q, want a page of www.shop.example", q.Get("hid"), q.Get("dl"))
		}
		cid := q.Get("cid")
		if !seen[cid] && q.Get("t") != "pageview" {
			t.Errorf("client %s's visit starts with a %s, want a pageview", cid, q.Get("t"))
		}
		seen[cid] = true
		ids[q.Get("hid")] = true
	}
	if len(seen) < visitors {
		t.Errorf("hits of %d visitors, want at least %d", len(seen), visitors)
	}
	// A re-sent hit keeps its ID; every other hit has one of its own.
	if len(ids) < len(hits)*9/10 {
		t.Errorf("%d hit IDs among %d hits", len(ids), len(hits))
	}
}
