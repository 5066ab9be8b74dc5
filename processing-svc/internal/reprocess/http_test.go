package reprocess

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/processing-svc/internal/engine"
)

// Bad input to the API gets an answer that says so: a job or property ID
// that is not a UUID was answered 503 unavailable (the store refused to
// read it), as if the caller should retry; a property lookup that failed
// (config-svc unreachable) was answered 400 invalid_job, as if the
// request were wrong.
func TestAPIAnswersBadInputAndOutagesApart(t *testing.T) {
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	serve := func(r *Runner) *httptest.Server {
		mux := http.NewServeMux()
		r.Register(mux, func(h http.Handler) http.Handler { return h }, context.Background())
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	call := func(srv *httptest.Server, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e httpserver.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code + ": " + e.Error.Message
	}
	ok := serve(&Runner{Session: s, Properties: props, Now: now})
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/internal/v1/reprocess/" + propID + "/not-a-job", http.StatusNotFound},
		{"GET", "/internal/v1/reprocess/not-a-property/00000000-0000-1000-8000-000000000000", http.StatusNotFound},
		{"POST", "/internal/v1/reprocess/" + propID + "/not-a-job/resume", http.StatusNotFound},
		{"GET", "/internal/v1/reprocess/" + propID + "/3f1c9a52-3333-4e4e-9a9a-000000000003", http.StatusNotFound}, // a UUID, not a time UUID
	} {
		if got, body := call(ok, tt.method, tt.path, ""); got != tt.want {
			t.Errorf("%s %s: %d (%s), want %d", tt.method, tt.path, got, body, tt.want)
		}
	}
	for _, id := range []string{"not-a-property", "3f1c9a52-3333-4e4e-9a9a-00000000dead"} {
		body := `{"property_id":"` + id + `","from":"2026-03-02","to":"2026-03-02","rules":"current"}`
		if got, msg := call(ok, "POST", "/internal/v1/reprocess", body); got != http.StatusNotFound {
			t.Errorf("a job of property %q: %d (%s), want 404", id, got, msg)
		}
	}
	down := serve(&Runner{Session: s, Properties: failingProperties{}, Now: now})
	body := `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","rules":"current"}`
	if got, msg := call(down, "POST", "/internal/v1/reprocess", body); got != http.StatusServiceUnavailable {
		t.Errorf("a job while its property cannot be looked up: %d (%s), want 503", got, msg)
	}
	if got, msg := call(down, "POST", "/internal/v1/reprocess", `{"property_id":"`+propID+`","from":"2026-03-02","to":"2026-03-01","rules":"current"}`); got != http.StatusBadRequest {
		t.Errorf("a reversed range: %d (%s), want 400", got, msg)
	}
}

// failingProperties cannot answer: config-svc is unreachable.
type failingProperties struct{}

func (failingProperties) Property(context.Context, string) (*engine.Property, error) {
	return nil, errors.New("config-svc unreachable")
}
