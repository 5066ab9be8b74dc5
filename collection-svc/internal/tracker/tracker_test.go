package tracker

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScriptIsSmall(t *testing.T) {
	s := Load()
	if s.Size() >= 2048 {
		t.Fatalf("tracker.js is %d bytes gzipped; it must stay under 2 KB", s.Size())
	}
	t.Logf("tracker.js: %d bytes minified, %d gzipped", len(s.plain), s.Size())
}

func TestServe(t *testing.T) {
	s := Load()
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name, path, acceptEncoding, ifNoneMatch string
		wantStatus                              int
		wantCache, wantEncoding                 string
	}{
		{"latest gzip", "/tracker.js", "gzip, br", "", 200, "public, max-age=300", "gzip"},
		{"latest plain", "/tracker.js", "identity", "", 200, "public, max-age=300", ""},
		{"pinned", "/tracker/v1.js", "gzip", "", 200, "public, max-age=31536000, immutable", "gzip"},
		{"not modified", "/tracker.js", "gzip", s.etag, 304, "public, max-age=300", ""},
		{"unknown version", "/tracker/v999.js", "gzip", "", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			req.Header.Set("Accept-Encoding", tt.acceptEncoding)
			if tt.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tt.ifNoneMatch)
			}
			// A transport that does not decompress for us.
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 404 {
				return
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCache)
			}
			if got := resp.Header.Get("ETag"); got != s.etag {
				t.Errorf("ETag = %q, want %q", got, s.etag)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.wantEncoding {
				t.Errorf("Content-Encoding = %q, want %q", got, tt.wantEncoding)
			}
			if tt.wantStatus != 200 {
				return
			}
			var body io.Reader = resp.Body
			if tt.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, _ := io.ReadAll(body)
			if !strings.Contains(string(b), "/collect?tid=") || string(b) != string(s.plain) {
				t.Fatalf("body is not the script:\n%s", b)
			}
		})
	}
}
