// Package configclienttest stands in for config-svc in tests of its
// callers, on loopback, so that they reach it through the real
// configclient.
package configclienttest

import (
	"crypto/rand"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
)

// SaltServerConfig configures a SaltServer. The zero value is a server on
// the real clock that checks no identity.
type SaltServerConfig struct {
	// Now is the server's clock, which says which dates it serves
	// (time.Now when nil).
	Now func() time.Time
	// IdentitySecret, when set, makes the server answer only requests
	// with identity headers signed with it for a service (tenant.Require
	// and tenant.RequireRole(tenant.RoleService), as config-svc's
	// internal routes do): others get 401 or 403 and are not counted.
	IdentitySecret []byte
}

// SaltServer answers GET /internal/v1/cookieless-salts/{date} as
// config-svc does (that endpoint is tested over its store in config-svc),
// in its JSON error shape (httpserver.ErrorBody):
//   - a random salt of configclient.SaltBytes for each date, made on its
//     first request and the same for every caller after;
//   - a date that is not one, or is more than one day from today (UTC, by
//     the server's clock), refused with 400 invalid_field (field "date");
//   - while down (SetDown), 503 unavailable;
//   - while old (SetOld), 404 not_found, as a config-svc too old to know
//     the route answers (down wins over old).
//
// It counts the requests for each date (Requests). It is safe for
// concurrent use, and closed when the test ends.
type SaltServer struct {
	// Server's URL is config-svc's base URL (configclient.Config.BaseURL).
	*httptest.Server
	now func() time.Time

	mu       sync.Mutex
	salts    map[string][]byte
	requests map[string]int
	down     bool
	old      bool
}

// NewSaltServer starts a SaltServer on loopback, closed when t ends.
func NewSaltServer(t testing.TB, cfg SaltServerConfig) *SaltServer {
	t.Helper()
	s := &SaltServer{now: cfg.Now, salts: map[string][]byte{}, requests: map[string]int{}}
	if s.now == nil {
		s.now = time.Now
	}
	var h http.Handler = http.HandlerFunc(s.serve)
	if cfg.IdentitySecret != nil {
		h = tenant.Require(cfg.IdentitySecret)(tenant.RequireRole(tenant.RoleService)(h))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /internal/v1/cookieless-salts/{date}", h)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *SaltServer) serve(w http.ResponseWriter, r *http.Request) {
	day := r.PathValue("date")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[day]++
	switch {
	case s.down:
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "storage is unavailable; retry in a few seconds")
		return
	case s.old: // pkg/service's answer for a path no route takes
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "date", "date: "+day+" is not a date; give it as YYYY-MM-DD")
		return
	}
	today := s.now().UTC().Truncate(24 * time.Hour)
	if d.Sub(today).Abs() > 24*time.Hour {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "date", "date: "+day+" is more than one day from today ("+today.Format(time.DateOnly)+" UTC)")
		return
	}
	salt, ok := s.salts[day]
	if !ok {
		salt = make([]byte, configclient.SaltBytes)
		_, _ = rand.Read(salt)
		s.salts[day] = salt
	}
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusOK, configclient.CookielessSalt{Date: day, Salt: salt})
}

// SetDown makes the server answer 503 (down true) or serve again.
func (s *SaltServer) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetOld makes the server answer 404 not_found, as a config-svc without
// the route does (old true), or serve again.
func (s *SaltServer) SetOld(old bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.old = old
}

// Requests returns how many requests each date had (whatever the answer),
// a copy.
func (s *SaltServer) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requests)
}
