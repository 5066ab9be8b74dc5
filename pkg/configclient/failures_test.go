package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/prometheus/client_golang/prometheus"
)

// These tests put the client before a config-svc (a small HTTP server
// answering as it does) that fails in ways other than being down: an
// answer racing the feed, a URL leading elsewhere, a feed that keeps
// forgetting the client's position.

// urlClient returns a client of the config-svc at url.
func urlClient(t *testing.T, url string) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: url, Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

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
			c := urlClient(t, srv.URL)
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
			c := urlClient(t, srv.URL)
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
	c := urlClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Run(ctx)
	// Backing off from 100 ms doubling, a second holds a handful of
	// re-anchorings, two requests each.
	if n := polls.Load(); n > 20 {
		t.Fatalf("%d requests to the feed in a second of 410s; want the re-anchoring backed off", n)
	}
}

// outageServer is a config-svc whose feed has no changes, holding each
// poll for its wait as config-svc does, and which can be taken down
// (every request then fails, the polls waiting end at once) and brought
// back.
type outageServer struct {
	*httptest.Server
	doc  Property
	mu   sync.Mutex
	down chan struct{} // closed while down
}

func newOutageServer(t *testing.T) *outageServer {
	t.Helper()
	s := &outageServer{doc: testDoc(1), down: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *outageServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	select {
	case <-down:
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "down")
		return
	default:
	}
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/internal/v1/changes" && q.Get("since") == "":
		httpserver.WriteJSON(w, http.StatusOK, Changes{Seq: 5, Changes: []Change{}})
	case r.URL.Path == "/internal/v1/changes":
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil {
			httpserver.WriteError(w, http.StatusBadRequest, "invalid_field", err.Error())
			return
		}
		select {
		case <-time.After(wait):
			httpserver.WriteJSON(w, http.StatusOK, Changes{Seq: 5, Changes: []Change{}})
		case <-down:
			httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "shutting down")
		case <-r.Context().Done():
		}
	case r.URL.Path == "/internal/v1/properties/by-tracking-id/"+s.doc.TrackingID:
		_ = json.NewEncoder(w).Encode(s.doc)
	default:
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property")
	}
}

// setDown takes the server down or brings it back.
func (s *outageServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.down:
		if !down {
			s.down = make(chan struct{})
		}
	default:
		if down {
			close(s.down)
		}
	}
}

// runOutageClient runs a client of srv with the default long poll (30s)
// and returns it with its metrics.
func runOutageClient(t *testing.T, srv *outageServer) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, reg
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestFeedConnectedAsSoonAsConfigSvcAnswers: configclient_feed_connected
// must say 1 as soon as config-svc answers the feed, at the start and
// after an outage, not once the first long poll ends: with nothing
// changing that took the poll's whole wait (30s), during which operators
// watching the gauge saw the pipeline off the feed though it followed it
// (found by the config-svc drill, TestAcceptanceWithConfigOutage).
func TestFeedConnectedAsSoonAsConfigSvcAnswers(t *testing.T) {
	srv := newOutageServer(t)
	c, reg := runOutageClient(t, srv)
	connected := func(want bool, within time.Duration, when string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for c.Connected() != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if c.Connected() != want {
			t.Fatalf("%s: Connected() = %v after %v, want %v", when, c.Connected(), within, want)
		}
		if got, w := metricValue(t, reg, "configclient_feed_connected"), map[bool]float64{true: 1}[want]; got != w {
			t.Fatalf("%s: configclient_feed_connected = %v, want %v", when, got, w)
		}
	}
	connected(true, 2*time.Second, "at the start")
	srv.setDown(true)
	connected(false, 2*time.Second, "config-svc down")
	time.Sleep(300 * time.Millisecond) // a few failed polls: the backoff grows
	srv.setDown(false)
	// The backoff after 300 ms of failures is under a second.
	connected(true, 2*time.Second, "config-svc back")
}

// TestStaleServedCountsWhileConfigSvcIsDown: while the feed cannot be
// followed, every lookup answered from the cache is from a copy that may
// be stale (a change made meanwhile cannot be seen), and
// configclient_stale_served_total counts it, as docs/config.md tells
// operators ("When config-svc is down"); before the drill found it, only
// copies the feed had marked changed were counted, so the counter stood
// still through an outage.
func TestStaleServedCountsWhileConfigSvcIsDown(t *testing.T) {
	srv := newOutageServer(t)
	c, reg := runOutageClient(t, srv)
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); !c.Connected() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if !c.Connected() {
		t.Fatal("the client does not follow the feed")
	}
	if _, err := c.ByTrackingID(ctx, srv.doc.TrackingID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ByTrackingID(ctx, srv.doc.TrackingID); err != nil {
		t.Fatal(err)
	}
	if n := metricValue(t, reg, "configclient_stale_served_total"); n != 0 {
		t.Fatalf("configclient_stale_served_total = %v with the feed followed, want 0", n)
	}
	srv.setDown(true)
	for deadline := time.Now().Add(5 * time.Second); c.Connected() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	for range 3 {
		doc, err := c.ByTrackingID(ctx, srv.doc.TrackingID)
		if err != nil || doc.PropertyID != srv.doc.PropertyID {
			t.Fatalf("during the outage: %v, %v; want the last known copy", doc, err)
		}
	}
	if _, err := c.ByID(ctx, srv.doc.PropertyID); err != nil {
		t.Fatal(err)
	}
	if n := metricValue(t, reg, "configclient_stale_served_total"); n != 4 {
		t.Fatalf("configclient_stale_served_total = %v after 4 lookups during the outage, want 4", n)
	}
}
