package configclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
)

// TestAFeedGoneThatPersistsIsBackedOff: a config-svc whose feed answers
// 410 feed_gone at the head it has just given (instances behind one name
// that do not share a feed, a feed table being restored) must not make the
// client re-anchor in a tight loop: the re-anchorings back off as failed
// polls do.
func TestAFeedGoneThatPersistsIsBackedOff(t *testing.T) {
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		if r.URL.Query().Get("since") == "" {
			httpserver.WriteJSON(w, http.StatusOK, Changes{Seq: 5, Changes: []Change{}})
			return
		}
		httpserver.WriteError(w, http.StatusGone, "feed_gone", "the change feed no longer holds position")
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Run(ctx)
	// Backing off from 100 ms doubling, a second holds a handful of
	// re-anchorings, two requests each.
	if n := polls.Load(); n > 20 {
		t.Fatalf("%d requests to the feed in a second of 410s; want the re-anchoring backed off", n)
	}
}
