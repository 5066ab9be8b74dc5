package configclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/httpserver"
)

// raceServer serves one property; the first document request reads the
// document, then waits until released (config-svc read the store before
// the change, and its answer is slow to arrive).
type raceServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     Property
	docReqs atomic.Int32
	arrived chan struct{}
	release chan struct{}
}

func newRaceServer(t *testing.T, p Property) *raceServer {
	s := &raceServer{doc: p, arrived: make(chan struct{}), release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		doc := s.doc
		s.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/rules/versions") {
			_ = json.NewEncoder(w).Encode(RuleVersions{PropertyID: doc.PropertyID, Versions: []RuleVersion{doc.Rules}})
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/internal/v1/properties/") {
			httpserver.WriteError(w, http.StatusNotFound, "not_found", "x")
			return
		}
		if s.docReqs.Add(1) == 1 {
			close(s.arrived)
			<-s.release
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *raceServer) update(name string, version int) {
	s.mu.Lock()
	s.doc.Name = name
	s.doc.Rules.Version = version
	s.mu.Unlock()
}

// TestAnOvertakenFetchIsFetchedAgain: a fetch in flight (a lookup miss)
// that a later one overtakes (Fresh, or a miss by tracking ID) stores the
// older document last; it is fetched again at once, so the cache holds the
// newer one even when the change is never announced on the feed
// (config_feed_unannounced_total). Before 2026-12-07 the older one stayed,
// not stale, until the next resync pass.
func TestAnOvertakenFetchIsFetchedAgain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newer func(c *Client, p Property) (*Property, error)
	}{
		{"Fresh", func(c *Client, p Property) (*Property, error) {
			d, _, err := c.Fresh(context.Background(), p.PropertyID)
			return d, err
		}},
		{"ByTrackingID", func(c *Client, p Property) (*Property, error) {
			return c.ByTrackingID(context.Background(), p.TrackingID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testDoc(5)
			srv := newRaceServer(t, p)
			c := urlClient(t, srv.URL)
			c.anchor(0) // following the feed, as under Run
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.refresher(ctx)

			older := make(chan *Property, 1)
			go func() { d, _ := c.ByID(ctx, p.PropertyID); older <- d }()
			<-srv.arrived // the old fetch has read v1

			srv.update("Shop v2", 2) // change stored, not (yet) announced
			d, err := tc.newer(c, p)
			if err != nil || d.Rules.Version != 2 {
				t.Fatalf("newer fetch: %v %v", d, err)
			}
			close(srv.release)
			if d := <-older; d.Rules.Version != 1 {
				t.Fatalf("old fetch got v%d", d.Rules.Version)
			}
			eventually.True(t, 5*time.Second, "the cache holding v2, as config-svc does", func() bool {
				got, _ := c.ByID(ctx, p.PropertyID)
				return got != nil && got.Rules.Version == 2
			})
		})
	}
}
