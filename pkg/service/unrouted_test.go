package service

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A request no route takes is answered in JSON, as every other error:
// 404, or 405 with Allow when the path has routes for other methods; a
// mux that mounts "/" itself keeps it.
func TestUnroutedRequestsAreAnsweredInJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{id}", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("DELETE /v1/things/{id}", func(http.ResponseWriter, *http.Request) {})
	answerUnrouted(mux)
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"PUT", "/v1/things/7", 405, "method_not_allowed", "GET, HEAD, DELETE"},
		{"GET", "/v1/thingz", 404, "not_found", ""},
		{"POST", "/", 404, "not_found", ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		err := json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tt.status || err != nil || body.Error.Code != tt.code || w.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d %q (Allow %q), want %d %s (Allow %q)", tt.method, tt.path, w.Code, w.Body, w.Header().Get("Allow"), tt.status, tt.code, tt.allow)
		}
	}

	own := http.NewServeMux()
	own.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	answerUnrouted(own) // must not panic on a second "/"
	w := httptest.NewRecorder()
	own.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != http.StatusTeapot {
		t.Errorf("a mux with its own / answered %d", w.Code)
	}
}
