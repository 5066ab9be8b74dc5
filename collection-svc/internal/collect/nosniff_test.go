package collect

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestAnswersAreNotSniffed: collection answers any page on any site
// (CORS *), and its validation endpoints echo what a hit carried, which
// anyone chooses. Every answer says its type must be believed
// (X-Content-Type-Options: nosniff), so that no browser takes an echoed
// value for HTML or script, and the echo itself is escaped.
func TestAnswersAreNotSniffed(t *testing.T) {
	var dead deadLetters // the refused hits'
	s, p := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	const payload = "<script>alert(1)</script>"
	dl := url.QueryEscape("https://shop.example/" + payload)
	tests := []struct{ name, method, path, body string }{
		{"pixel", "GET", "/collect?v=1&tid=" + p.TrackingID + "&t=pageview&cid=c&dl=" + dl, ""},
		{"refused pixel", "GET", "/collect?v=1&tid=" + p.TrackingID + "&t=" + url.QueryEscape(payload), ""},
		{"debug pixel", "GET", "/debug/collect?v=1&tid=" + p.TrackingID + "&t=pageview&cid=c&dl=" + dl, ""},
		{"debug refused", "GET", "/debug/collect?v=1&tid=" + p.TrackingID + "&t=" + url.QueryEscape(payload), ""},
		{"batch", "POST", "/collect?tid=" + p.TrackingID, `{"hits":[{"v":"1","t":"` + payload + `","cid":"c"}]}`},
		{"debug batch", "POST", "/debug/collect?tid=" + p.TrackingID, `{"hits":[{"v":"1","t":"pageview","cid":"c","dl":"https://shop.example/` + payload + `"}]}`},
		{"debug measurement", "POST", "/debug/mp/collect?tracking_id=" + p.TrackingID + "&api_secret=secret",
			`{"client_id":"c","events":[{"name":"page_view","params":{"page_location":"https://shop.example/` + payload + `"}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.RemoteAddr = "127.0.0.1:5000"
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("%d %s: X-Content-Type-Options = %q, want nosniff", w.Code, w.Header().Get("Content-Type"), got)
			}
			if strings.Contains(w.Body.String(), "<script") {
				t.Errorf("the answer echoes markup unescaped: %s", w.Body)
			}
		})
	}
}
