package collect

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestPixel checks the pixel's answers: a GET is a hit, a HEAD (which
// the GET pattern matches too) only the pixel's headers, and a page's
// fetch may read X-Collect-Error.
func TestPixel(t *testing.T) {
	var queued int
	s, p := testServer(t, 4, countingQueue{&queued})
	mux := http.NewServeMux()
	s.Register(mux)
	const hitQuery = "?v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F&hid=h"
	tests := []struct {
		method, query string
		wantQueued    int
		wantBody      int
	}{
		{"HEAD", hitQuery + "&tid=" + p.TrackingID, 0, 0},
		{"GET", hitQuery + "&tid=" + p.TrackingID, 1, len(transparentGIF)},
		{"HEAD", hitQuery + "&tid=AT-NNNNNNNNNN", 0, 0}, // not even a dead letter
	}
	for _, tt := range tests {
		queued = 0
		req := httptest.NewRequest(tt.method, "/collect"+tt.query, nil)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		res := w.Result()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/gif" || w.Body.Len() != tt.wantBody {
			t.Errorf("%s %s: %d %q, %d bytes", tt.method, tt.query, res.StatusCode, res.Header.Get("Content-Type"), w.Body.Len())
		}
		if queued != tt.wantQueued {
			t.Errorf("%s %s: %d records queued, want %d", tt.method, tt.query, queued, tt.wantQueued)
		}
		if got := res.Header.Get("Access-Control-Expose-Headers"); got != "X-Collect-Error" {
			t.Errorf("%s: Access-Control-Expose-Headers %q, want X-Collect-Error", tt.method, got)
		}
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", tt.method, got)
		}
	}
}
