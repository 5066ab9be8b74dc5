// Package tracker serves tracker.js, the script merchants put on their
// pages. It is embedded in the binary, minified at start (comments and
// indentation dropped) and served compressed:
//
//   - /tracker.js, the latest version, cacheable for five minutes (the
//     snippet points here, so fixes reach every site within minutes);
//   - /tracker/v<N>.js, one exact version, cacheable for a year and
//     immutable, for merchants who pin a version.
//
// Both carry an ETag and answer If-None-Match with 304.
package tracker

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// Version is the current tracker version, served at /tracker/v<Version>.js.
// Bump it (and keep serving the old file) when a change is not compatible
// with pages that pinned the old version.
const Version = 1

//go:embed tracker.js
var source string

// Script is one version of the script, ready to serve.
type Script struct {
	plain, gzipped []byte
	etag           string
}

// Load minifies and compresses the embedded script.
func Load() *Script {
	s := &Script{plain: []byte(Minify(source))}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(s.plain)
	zw.Close()
	s.gzipped = b.Bytes()
	sum := sha256.Sum256(s.plain)
	s.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	return s
}

// Minify drops comment lines and indentation, keeping the leading /*! */
// licence line. It is meant for tracker.js, which keeps comments on lines
// of their own and never needs a line break inside a statement.
func Minify(src string) string {
	var b strings.Builder
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Size returns the bytes served to a client that accepts gzip.
func (s *Script) Size() int { return len(s.gzipped) }

// Register mounts the script's paths on mux.
func (s *Script) Register(mux *http.ServeMux) {
	mux.Handle("GET /tracker.js", s.handler("public, max-age=300"))
	mux.Handle("GET /tracker/v"+strconv.Itoa(Version)+".js", s.handler("public, max-age=31536000, immutable"))
}

func (s *Script) handler(cacheControl string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", s.etag)
		h.Set("Vary", "Accept-Encoding")
		h.Set("Access-Control-Allow-Origin", "*")
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, s.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := s.plain
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body = s.gzipped
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}
