package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
)

// TestA404NotFromConfigSvcIsNotAnUnknownProperty: the URL (or an instance
// in Consul) that answers is not config-svc's routes: the gateway's
// no_route, a load balancer's or a mux's plain-text 404. Its 404 says
// nothing about the property: lookups are ErrUnavailable (collection
// answers 503, processing retries) rather than ErrNotFound (the hits
// dead-lettered as unknown), nothing is remembered as unknown, and a
// cached document is kept, not forgotten as deleted.
func TestA404NotFromConfigSvcIsNotAnUnknownProperty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notFound func(w http.ResponseWriter, r *http.Request)
	}{
		{"plain text", http.NotFound},
		{"the gateway's no_route", func(w http.ResponseWriter, r *http.Request) {
			httpserver.WriteError(w, http.StatusNotFound, "no_route", "no such endpoint; the API is under /v1/ and hits go to /collect")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			known, unknown := testDoc(1), testDoc(2)
			var misrouted atomic.Bool
			var refetches atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if misrouted.Load() && r.URL.Path == "/internal/v1/properties/"+known.PropertyID {
					refetches.Add(1)
				}
				switch {
				case misrouted.Load():
					tc.notFound(w, r)
				case r.URL.Path == "/internal/v1/properties/"+known.PropertyID:
					_ = json.NewEncoder(w).Encode(known)
				default: // as config-svc answers a property it does not have
					httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property")
				}
			}))
			t.Cleanup(srv.Close)
			c, err := New(Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := c.ByID(ctx, known.PropertyID); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ByTrackingID(ctx, unknown.TrackingID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("config-svc's own 404: %v, want ErrNotFound", err)
			}

			misrouted.Store(true)
			other := testDoc(3)
			for _, lookup := range []func() error{
				func() error { _, err := c.ByTrackingID(ctx, other.TrackingID); return err },
				func() error { _, err := c.ByID(ctx, other.PropertyID); return err },
			} {
				if err := lookup(); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
					t.Fatalf("a lookup answered a 404 that is not config-svc's: %v, want ErrUnavailable", err)
				}
			}
			// The feed announces a change to the cached property: its
			// refetch meets the 404, and is tried again on its backoff.
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); c.refresher(rctx) }()
			c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeSecrets, PropertyID: known.PropertyID}}})
			for deadline := time.Now().Add(5 * time.Second); refetches.Load() < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			}
			cancel()
			<-done
			if doc, err := c.ByID(ctx, known.PropertyID); err != nil || doc.PropertyID != known.PropertyID {
				t.Fatalf("the cached property after %d refetches met that 404: %v, %v; want the cached copy", refetches.Load(), doc, err)
			}
			c.mu.Lock()
			remembered := len(c.negTID) + len(c.negID)
			c.mu.Unlock()
			if remembered != 1 { // the unknown ID config-svc itself answered
				t.Fatalf("%d IDs remembered as unknown, want 1", remembered)
			}
		})
	}
}
