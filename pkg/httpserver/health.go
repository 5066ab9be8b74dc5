package httpserver

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Health serves /healthz (the process is alive) and /readyz (every
// registered check passes, so the instance may take traffic). Readiness also
// fails once shutdown has begun, so load balancers drain the instance first.
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

// Ready runs every check and returns the failures by name.
func (h *Health) Ready(ctx context.Context) map[string]string {
	h.mu.RLock()
	draining := h.draining
	checks := make(map[string]Check, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.RUnlock()

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
		failed := h.Ready(r.Context())
		if len(failed) == 0 {
			WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		names := make([]string, 0, len(failed))
		for n := range failed {
			names = append(names, n)
		}
		sort.Strings(names)
		WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": names, "reasons": failed})
	})
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
