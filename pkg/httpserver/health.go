package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/queryparam"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Health serves /healthz (the process is alive) and /readyz (every
// registered check passes, so the instance may take traffic). Readiness also
// fails once shutdown has begun, so load balancers drain the instance first.
//
// /readyz?exclude=NAME (repeatable, as Kubernetes' API server has it) leaves
// the named checks out: Consul's own check of an instance asks for every
// check but the one that waits for Consul to pass it (pkg/service). A name
// that is no check's is listed in the answer (unknown_excluded), and
// ignored, as Kubernetes does.
type Health struct {
	mu       sync.RWMutex
	checks   map[string]Check
	draining bool
}

// NewHealth returns a Health with no checks.
func NewHealth() *Health { return &Health{checks: map[string]Check{}} }

// Add registers a readiness check under name.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Drain makes /readyz fail from now on.
func (h *Health) Drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
}

// Ready runs every check but those named in exclude and returns the
// failures by name.
func (h *Health) Ready(ctx context.Context, exclude ...string) map[string]string {
	h.mu.RLock()
	draining := h.draining
	checks := make(map[string]Check, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.RUnlock()
	for _, name := range exclude {
		delete(checks, name)
	}

	failed := map[string]string{}
	if draining {
		failed["server"] = "shutting down"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for name, c := range checks {
		if err := c(ctx); err != nil {
			failed[name] = err.Error()
		}
	}
	return failed
}

// Register mounts /healthz and /readyz on mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		q, err := queryparam.Parse(r.URL.RawQuery, "/readyz", readyzQuery, nil)
		if err != nil {
			qe, _ := errors.AsType[*queryparam.Error](err) // Parse returns nothing else
			WriteFieldError(w, http.StatusBadRequest, qe.Code, qe.Field, qe.Message)
			return
		}
		exclude := q.All("exclude")
		failed := h.Ready(r.Context(), exclude...)
		answer := map[string]any{"status": "ready"}
		// A name that is no check's is said, not refused: a checker
		// configured for every instance (Consul's, asking for every
		// check but "consul") must not fail one that lacks the check.
		if unknown := h.unknown(exclude); len(unknown) > 0 {
			answer["unknown_excluded"] = unknown
		}
		if len(failed) == 0 {
			WriteJSON(w, http.StatusOK, answer)
			return
		}
		names := make([]string, 0, len(failed))
		for n := range failed {
			names = append(names, n)
		}
		sort.Strings(names)
		answer["status"], answer["failing"], answer["reasons"] = "not ready", names, failed
		WriteJSON(w, http.StatusServiceUnavailable, answer)
	})
}

// readyzQuery is what /readyz accepts.
var readyzQuery = []queryparam.Param{{Name: "exclude", Repeatable: true}}

// unknown returns the names in names that are no check's.
func (h *Health) unknown(names []string) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []string
	for _, n := range names {
		if _, ok := h.checks[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// SetContentType sets the Content-Type of an answer and tells browsers to
// believe it (X-Content-Type-Options: nosniff), never to guess another from
// the body: answers echo what clients sent (a hit's fields in collection's
// validation answers, a page path in a CSV report), which anyone chooses,
// and collection answers pages of any site. Every body the services write
// sets its type through it.
func SetContentType(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
}

// WriteJSON writes v as a JSON response with the given status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	SetContentType(w.Header(), "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
