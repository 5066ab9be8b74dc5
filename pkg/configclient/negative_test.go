package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/acme/analytics/pkg/httpserver"
)

// TestAnUnknownIDFetchedAcrossItsCreationIsNotRemembered: a lookup of a
// tracking ID that config-svc answers 404 while the feed announces the
// property's creation (or the client re-anchors at the feed's head, the
// creation in the gap) must not leave the ID remembered as unknown: the
// 404 predates the announcement, and the next lookup fetches again.
func TestAnUnknownIDFetchedAcrossItsCreationIsNotRemembered(t *testing.T) {
	for _, tc := range []struct {
		name     string
		announce func(c *Client, p Property)
	}{
		{"created", func(c *Client, p Property) {
			c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeProperty, PropertyID: p.PropertyID, TenantID: p.TenantID, TrackingID: p.TrackingID}}})
		}},
		{"re-anchored", func(c *Client, p Property) { c.anchor(7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testDoc(3)
			arrived, release := make(chan struct{}), make(chan struct{})
			var created atomic.Bool
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) == 1 {
					// config-svc read the store before the creation.
					close(arrived)
					<-release
					httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+p.TrackingID)
					return
				}
				if !created.Load() {
					httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+p.TrackingID)
					return
				}
				_ = json.NewEncoder(w).Encode(p)
			}))
			t.Cleanup(srv.Close)
			c, err := New(Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")})
			if err != nil {
				t.Fatal(err)
			}
			c.anchor(0)
			ctx := context.Background()

			first := make(chan error, 1)
			go func() { _, err := c.ByTrackingID(ctx, p.TrackingID); first <- err }()
			<-arrived
			created.Store(true)
			tc.announce(c, p)
			close(release)
			if err := <-first; !errors.Is(err, ErrNotFound) {
				t.Fatalf("the lookup in flight: %v, want ErrNotFound (config-svc's answer at the time)", err)
			}
			doc, err := c.ByTrackingID(ctx, p.TrackingID)
			if err != nil || doc.PropertyID != p.PropertyID {
				t.Fatalf("a lookup after the creation was announced: %v, %v; want the property (fetched again)", doc, err)
			}
		})
	}
}
