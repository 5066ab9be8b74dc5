package pixel

import (
	"image/gif"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGIFIsOnePixel(t *testing.T) {
	img, err := gif.Decode(strings.NewReader(GIF))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("bounds %v, want 1x1", b)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("alpha %d, want transparent", a)
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		method, code string
		status       int
		wantBody     string
	}{
		{"GET", "", 200, GIF},
		{"GET", "rate_limited", 429, GIF},
		{"HEAD", "upstream_unavailable", 503, ""},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		w.Header().Set("Retry-After", "1")
		Write(w, httptest.NewRequest(tt.method, "/collect", nil), tt.status, tt.code)
		res := w.Result()
		if res.StatusCode != tt.status || w.Body.String() != tt.wantBody || res.Header.Get("Content-Type") != "image/gif" ||
			res.Header.Get("Content-Length") != "43" || res.Header.Get(HeaderError) != tt.code ||
			res.Header.Get("Access-Control-Expose-Headers") != HeaderError || res.Header.Get("Retry-After") != "1" ||
			res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %d %q: %d %v, %d bytes", tt.method, tt.status, tt.code, res.StatusCode, res.Header, w.Body.Len())
		}
	}
}
