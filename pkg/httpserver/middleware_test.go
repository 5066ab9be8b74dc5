package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRequestID(t *testing.T) {
	var seen string
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r.Context()) }))
	tests := []struct {
		name, in string
		keep     bool
	}{
		{"kept when well formed", "abc-123", true},
		{"replaced when missing", "", false},
		{"replaced when malformed", "bad id\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.in != "" {
				r.Header.Set(HeaderRequestID, tt.in)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := w.Header().Get(HeaderRequestID)
			if got == "" || got != seen {
				t.Fatalf("response ID %q, context ID %q; want equal and non-empty", got, seen)
			}
			if (got == tt.in) != tt.keep {
				t.Fatalf("ID %q from incoming %q; keep=%v", got, tt.in, tt.keep)
			}
		})
	}
}

func TestRecoverAndAccessLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	h := Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }),
		WithRequestID, AccessLog(log), Recover(log))
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer secret-token")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", w.Code)
	}
	out := buf.String()
	if !strings.Contains(out, "panic in handler") || !strings.Contains(out, `"status":500`) {
		t.Fatalf("log lacks the panic or the access line:\n%s", out)
	}
	if strings.Contains(out, "secret-token") {
		t.Fatal("the access log contains the bearer token")
	}
}

func TestMaxBytes(t *testing.T) {
	h := MaxBytes(10)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); IsTooLarge(err) {
			WriteTooLarge(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	tests := []struct {
		name     string
		body     string
		chunked  bool
		wantCode int
		wantMsg  string
	}{
		{"small", "0123456789", false, http.StatusNoContent, ""},
		{"declared too large", "0123456789x", false, http.StatusRequestEntityTooLarge, "the request body is 11 bytes; the limit is 10 bytes"},
		{"streamed too large", "0123456789x", true, http.StatusRequestEntityTooLarge, "the request body is larger than the limit of 10 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			if tt.chunked {
				r.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantCode)
			}
			if tt.wantMsg == "" {
				return
			}
			var body ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Code != "body_too_large" || body.Error.Message != tt.wantMsg {
				t.Fatalf("error = %+v, want body_too_large: %q", body.Error, tt.wantMsg)
			}
		})
	}
}

func TestBytesOf(t *testing.T) {
	for n, want := range map[int64]string{
		10:      "10 bytes",
		1 << 10: "1024 bytes (1 KiB)",
		1 << 20: "1048576 bytes (1 MiB)",
		1500:    "1500 bytes",
	} {
		if got := bytesOf(n); got != want {
			t.Errorf("bytesOf(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMetricsUsesRoutePattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {})
	h := Metrics(reg)(mux)
	for _, p := range []string{"/items/1", "/items/2", "/nope"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if n := testutil.CollectAndCount(reg, "http_requests_total"); n != 2 {
		t.Fatalf("%d label sets, want 2 (the pattern and unmatched, not one per path)", n)
	}
}

func TestHealth(t *testing.T) {
	h := NewHealth()
	mux := http.NewServeMux()
	h.Register(mux)
	get := func(path string) int {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code
	}
	if get("/readyz") != 200 || get("/healthz") != 200 {
		t.Fatal("a fresh Health should be live and ready")
	}
	h.Add("db", func(context.Context) error { return errors.New("down") })
	if got := get("/readyz"); got != 503 {
		t.Fatalf("/readyz with a failing check = %d, want 503", got)
	}
	h.Add("db", func(context.Context) error { return nil })
	h.Drain()
	if get("/readyz") != 503 || get("/healthz") != 200 {
		t.Fatal("a draining server must be live but not ready")
	}
}

// /readyz?exclude=NAME leaves the named checks out (Consul's check leaves
// out the one that waits for Consul); a name that is no check's is said
// and ignored (an instance without the "consul" check passes Consul's
// check as it did before); a parameter /readyz does not take is refused.
func TestReadyzExclude(t *testing.T) {
	h := NewHealth()
	mux := http.NewServeMux()
	h.Register(mux)
	h.Add("consul", func(context.Context) error { return errors.New("waiting") })
	h.Add("kafka", func(context.Context) error { return errors.New("down") })
	h.Add("db", func(context.Context) error { return nil })
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/readyz", `"failing":["consul","kafka"]`, 503},
		{"/readyz?exclude=consul", `"failing":["kafka"]`, 503},
		{"/readyz?exclude=consul&exclude=kafka", `"status":"ready"`, 200},
		{"/readyz?exclude=consul&exclude=kafka&exclude=redis", `"unknown_excluded":["redis"]`, 200},
		{"/readyz?exclude=redis", `"failing":["consul","kafka"]`, 503},
		{"/readyz?excludes=consul", `"code":"unknown_parameter"`, 400},
	} {
		code, body := get(tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %s, want %d with %s", tc.path, code, body, tc.code, tc.want)
		}
	}
}

// Successful requests to quiet paths log at debug; their failures, and
// every other path, at info.
func TestAccessLogQuietPaths(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)) // info and above
	h := AccessLog(log, "/collect")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tt := range []struct {
		target string
		logged bool
	}{
		{"/collect?tid=x", false},
		{"/collect?fail=1", true},
		{"/collect/other", true},
		{"/v1/reports", true},
		{"/healthz", false},
	} {
		buf.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tt.target, nil))
		if logged := buf.Len() > 0; logged != tt.logged {
			t.Errorf("%s: logged at info %v, want %v (%s)", tt.target, logged, tt.logged, buf.String())
		}
	}
}

// A quiet entry may be a route's ServeMux pattern, for high-volume routes
// whose paths carry an ID (config-svc's internal reads): every path of the
// route is quiet when it succeeds, the route's failures and other routes
// of the same prefix are not.
func TestAccessLogQuietPatterns(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)) // info and above
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/v1/properties/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "unknown" {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	mux.HandleFunc("PUT /internal/v1/properties/{id}", func(http.ResponseWriter, *http.Request) {})
	h := Chain(mux, WithRequestID, AccessLog(log, "GET /internal/v1/properties/{id}"), Metrics(prometheus.NewRegistry()))
	for _, tt := range []struct {
		method, target string
		logged         bool
	}{
		{"GET", "/internal/v1/properties/p1", false},
		{"GET", "/internal/v1/properties/p2?x=1", false},
		{"GET", "/internal/v1/properties/unknown", true},
		{"PUT", "/internal/v1/properties/p1", true},
		{"GET", "/internal/v1/properties/p1/other", true},
	} {
		buf.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tt.method, tt.target, nil))
		if logged := buf.Len() > 0; logged != tt.logged {
			t.Errorf("%s %s: logged at info %v, want %v (%s)", tt.method, tt.target, logged, tt.logged, buf.String())
		}
	}
}

// A client chooses the method and the path: neither may add a metrics
// series per request, nor make a log line as long as net/http allows.
func TestClientChosenMethodAndPathBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	h := Chain(http.NotFoundHandler(), Metrics(reg), AccessLog(log))
	long := "/" + strings.Repeat("é", 1000)
	for i := range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(fmt.Sprintf("M%03d", i), long, nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PATCH", "/x", nil))
	if n := testutil.CollectAndCount(reg, "http_requests_total"); n != 2 {
		t.Errorf("%d series of http_requests_total, want 2 (other, PATCH)", n)
	}
	line := strings.SplitN(buf.String(), "\n", 2)[0]
	if len(line) > 1000 || !strings.Contains(line, `"method":"other"`) || !strings.Contains(line, "é…") {
		t.Errorf("access log line of %d bytes: %.300s", len(line), line)
	}
}

func TestEmptyBody(t *testing.T) {
	for body, want := range map[string]bool{
		"": true, " \n": true, "{}": true, "{ }": true, " { \n } ": true, "null": true, " null ": true,
		"{\"a\":1}": false, "[]": false, "0": false, "nul": false, "{": false, "}": false, "\"\"": false,
	} {
		if got := EmptyBody([]byte(body)); got != want {
			t.Errorf("EmptyBody(%q) = %v, want %v", body, got, want)
		}
	}
}
