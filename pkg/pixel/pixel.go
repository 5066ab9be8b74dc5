// Package pixel is the answer to GET /collect, the pixel: a 1x1 image,
// whatever became of the hit. Collection answers it for every hit it
// takes or refuses, and the gateway answers the same when it refuses a
// pixel request itself (a rate limit, no collection instance to send it
// to), so that an <img> never shows as broken, whoever answers.
package pixel

import (
	"net/http"
	"strconv"

	"github.com/acme/analytics/pkg/httpserver"
)

// GIF is the image: a transparent 1x1 GIF.
const GIF = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"

// HeaderError names why a pixel's hit was not taken: collection's reason
// (malformed, too_large, ...), or the gateway's code (rate_limited,
// upstream_unavailable, ...) with the status of the gateway's refusal. A
// page's fetch may read it: Write exposes it.
const HeaderError = "X-Collect-Error"

var (
	gifLength = strconv.Itoa(len(GIF))
	gifBytes  = []byte(GIF) // written as is: converting GIF at each Write allocated
)

// Write answers r with the pixel: status, the image's headers, errCode in
// HeaderError unless it is empty, and the image itself unless r is a HEAD.
// Headers the caller set before (Retry-After, CORS) are kept.
func Write(w http.ResponseWriter, r *http.Request, status int, errCode string) {
	h := w.Header()
	httpserver.SetContentType(h, "image/gif")
	h.Set("Content-Length", gifLength)
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Expose-Headers", HeaderError)
	if errCode != "" {
		h.Set(HeaderError, errCode)
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(gifBytes)
	}
}
