package reprocess

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
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
	// A resume runs the job as made: a body asking for other rules was
	// ignored and the job resumed with its own.
	for _, path := range []string{"/internal/v1/reprocess/" + propID + "/00000000-0000-1000-8000-000000000000/resume", "/internal/v1/reprocess/" + propID + "/00000000-0000-1000-8000-000000000000"} {
		method := "POST"
		if !strings.HasSuffix(path, "/resume") {
			method = "GET"
		}
		// A MiB of white space first: only the first MiB was read.
		for _, body := range []string{`{"rules":"current"}`, strings.Repeat(" ", 1<<20) + `{"rules":"current"}`} {
			if got, msg := call(ok, method, path, body); got != http.StatusBadRequest || !strings.Contains(msg, "takes no body") {
				t.Errorf("%s %s with a body of %d bytes: %d (%s), want 400 saying it takes no body", method, path, len(body), got, msg)
			}
		}
		if got, msg := call(ok, method, path+"?rules=current", ""); got != http.StatusBadRequest || !strings.HasPrefix(msg, "unknown_parameter: ") {
			t.Errorf("%s %s?rules=current: %d (%s), want 400 unknown_parameter", method, path, got, msg)
		}
		// {} and null (what a client that marshals a nil value sends) ask
		// for nothing; null was refused.
		for _, none := range []string{` {} `, "null\n", "{ }"} {
			if got, msg := call(ok, method, path, none); got != http.StatusNotFound {
				t.Errorf("%s %s with %q: %d (%s), want 404 (no such job)", method, path, none, got, msg)
			}
		}
	}
	for _, id := range []string{"not-a-property", "3f1c9a52-3333-4e4e-9a9a-00000000dead"} {
		body := `{"property_id":"` + id + `","from":"2026-03-02","to":"2026-03-02","rules":"current"}`
		if got, msg := call(ok, "POST", "/internal/v1/reprocess", body); got != http.StatusNotFound {
			t.Errorf("a job of property %q: %d (%s), want 404", id, got, msg)
		}
	}
	// A body that is not one job is refused as such; a missing property
	// was answered 404, as if the property were unknown.
	job := `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","rules":"current"}`
	for _, tt := range []struct {
		name, body string
		want       int
		code, in   string
	}{
		{"no property", `{"from":"2026-03-02","to":"2026-03-02","rules":"current"}`, http.StatusBadRequest, "invalid_job", "property_id is required"},
		{"an empty property", `{"property_id":"","from":"2026-03-02","to":"2026-03-02","rules":"current"}`, http.StatusBadRequest, "invalid_job", "property_id is required"},
		{"null", `null`, http.StatusBadRequest, "invalid_json", "the body is null"},
		{"a second object", job + ` {"property_id":"` + propID + `"}`, http.StatusBadRequest, "invalid_json", "something follows the JSON object"},
		{"a stray }", job + `}`, http.StatusBadRequest, "invalid_json", "something follows the JSON object"},
		{"an unknown field", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","rules":"current","days":3}`, http.StatusBadRequest, "invalid_json", `unknown field "days"`},
		// A field given twice was read as its last value (a historical
		// job of "current" then "historical"); a field named in another
		// case was read as the field.
		{"a field given twice", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","rules":"current","rules":"historical"}`, http.StatusBadRequest, "invalid_json", "rules is given twice"},
		{"a field given twice, once escaped", `{"property_id":"` + propID + `","from":"2026-03-02","fr\u006fm":"2026-03-01","to":"2026-03-02","rules":"current"}`, http.StatusBadRequest, "invalid_json", "from is given twice"},
		{"a field in another case", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","Rules":"current"}`, http.StatusBadRequest, "invalid_json", `unknown field "Rules"`},
		{"a number for a date", `{"property_id":"` + propID + `","from":20260302,"to":"2026-03-02","rules":"current"}`, http.StatusBadRequest, "invalid_json", "from must be a string, not a number"},
		{"not an object", `["` + propID + `"]`, http.StatusBadRequest, "invalid_json", "not a JSON object"},
		{"empty", ``, http.StatusBadRequest, "invalid_json", "the body is empty"},
		// Each refusal names its field, and a missing one is called
		// required (it was `from "" is not a date`).
		{"no from", `{"property_id":"` + propID + `","to":"2026-03-02","rules":"current"}`, http.StatusBadRequest, "invalid_job", "from is required"},
		{"no rules", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02"}`, http.StatusBadRequest, "invalid_job", "rules is required"},
		// A body of any size was read whole into memory.
		{"a body over the limit", `{"property_id":"` + strings.Repeat("x", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, "body_too_large", "the limit is 1048576 bytes (1 MiB)"},
	} {
		if got, msg := call(ok, "POST", "/internal/v1/reprocess", tt.body); got != tt.want || !strings.HasPrefix(msg, tt.code+": ") || !strings.Contains(msg, tt.in) {
			t.Errorf("%s: %d (%s), want %d %s containing %q", tt.name, got, msg, tt.want, tt.code, tt.in)
		}
	}
	for _, tt := range []struct {
		name, body, field string
	}{
		{"no property", `{"from":"2026-03-02","to":"2026-03-02","rules":"current"}`, "property_id"},
		{"a field given twice", `{"property_id":"` + propID + `","rules":"current","rules":"historical"}`, "rules"},
		{"a bad date", `{"property_id":"` + propID + `","from":"2026-02-30","to":"2026-03-02","rules":"current"}`, "from"},
		{"a reversed range", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-01","rules":"current"}`, "to"},
		{"a range too long", `{"property_id":"` + propID + `","from":"2025-03-01","to":"2026-03-02","rules":"current"}`, "from,to"},
		{"a day still open", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-09","rules":"current"}`, "to"},
		{"bad rules", `{"property_id":"` + propID + `","from":"2026-03-02","to":"2026-03-02","rules":"today"}`, "rules"},
		{"a property that is no UUID", `{"property_id":"x","from":"2026-03-02","to":"2026-03-02","rules":"current"}`, "property_id"},
	} {
		req, _ := http.NewRequest("POST", ok.URL+"/internal/v1/reprocess", strings.NewReader(tt.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e httpserver.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if e.Error.Field != tt.field {
			t.Errorf("%s: %d %+v, want field %q", tt.name, resp.StatusCode, e.Error, tt.field)
		}
	}
	// Chunked, without a length to refuse it by at once.
	req, _ := http.NewRequest("POST", ok.URL+"/internal/v1/reprocess", io.MultiReader(strings.NewReader(`{"property_id":"`+strings.Repeat("x", 2<<20)+`"}`)))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		var e httpserver.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error.Code != "body_too_large" || !strings.Contains(e.Error.Message, "1048576 bytes (1 MiB)") {
			t.Errorf("a chunked body over the limit: %d %+v, want 413 body_too_large saying the limit", resp.StatusCode, e.Error)
		}
	}
	if got, msg := call(ok, "POST", "/internal/v1/reprocess?rules=historical", job); got != http.StatusBadRequest || !strings.HasPrefix(msg, "unknown_parameter: ") {
		t.Errorf("a job with a query string: %d (%s), want 400 unknown_parameter", got, msg)
	}
	var jobs int
	if err := s.Query(`SELECT COUNT(*) FROM reprocess_jobs WHERE property_id = ?`, propID).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 0 {
		t.Errorf("refused requests recorded %d jobs", jobs)
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

// A resumed job reads running from the answer to its resume on, while its
// run holds the property's lease: it answered, and read, done (or failed,
// with its old error) until the run got going, so an operator who resumed
// it and saw it done had a new job refused 409 job_running.
func TestResumedJobReadsRunning(t *testing.T) {
	ctx := context.Background()
	s, props := connect(t)
	now := func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }
	r := &Runner{Session: s, Properties: props, Now: now}
	j, err := r.Create(ctx, propID, "2026-03-02", "2026-03-02", engine.RulesCurrent)
	if err != nil {
		t.Fatal(err)
	}
	done, err := r.Start(ctx, propID, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	(&Runner{Session: s, Properties: slowProperties{props, 2 * time.Second}, Now: now}).Register(mux, func(h http.Handler) http.Handler { return h }, ctx)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	read := func(method, path string) (int, Job) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got Job
		_ = json.NewDecoder(resp.Body).Decode(&got)
		return resp.StatusCode, got
	}
	path := "/internal/v1/reprocess/" + propID + "/" + j.ID
	if status, got := read("POST", path+"/resume"); status != http.StatusAccepted || got.Status != StatusRunning {
		t.Errorf("resume of a done job: %d %+v, want 202 running", status, got)
	}
	if _, got := read("GET", path); got.Status != StatusRunning {
		t.Errorf("a resumed job while its run holds the lease: %+v, want running", got)
	}
	eventually.True(t, 10*time.Second, "the resumed run done", func() bool {
		_, got := read("GET", path)
		return got.Status == StatusDone
	})
}
