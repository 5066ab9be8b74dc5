// Package tracker serves tracker.js, the script merchants put on their
// pages. It is embedded in the binary, minified at start (Minify: comments,
// indentation and the spaces and line breaks JavaScript does not need
// dropped, names kept) and served compressed:
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

// Minify drops comment lines, indentation, the spaces that separate no two
// words, semicolons before a closing brace and the line breaks that end no
// statement, keeping the leading /*! */ licence line. It is meant for
// tracker.js, which keeps comments on lines of their own (a // after code
// would be taken for code) and writes a regular expression only where an
// expression starts (after one of ( , = : [ ! & | ? { } ; or at a line's
// start), never a division. The gzipped script must stay under 2 KB
// (TestScriptIsSmall), so every byte the minifier drops is room for code.
func Minify(src string) string {
	var b []byte
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		// A line break goes where JavaScript never inserts a semicolon:
		// after a byte that cannot end a statement, and before a closing
		// brace (which ends one anyway).
		if n := len(b); n > 0 && line[0] != '}' && strings.IndexByte("{([,;:=?&|.!", b[n-1]) < 0 {
			b = append(b, '\n')
		}
		b = minifyLine(b, line)
	}
	return string(append(b, '\n'))
}

// minifyLine appends line to b without the spaces Minify drops: a run of
// spaces outside strings, regular expressions and /* */ comments goes
// unless it is between two word characters (var x, else if) or two of +
// and - (a - -b); and a semicolon before a closing brace goes (the last
// of b's too).
func minifyLine(b []byte, line string) []byte {
	var last byte // the last byte of code, outside strings and the like
	if len(b) > 0 {
		last = b[len(b)-1]
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ':
			j := i
			for j < len(line) && line[j] == ' ' {
				j++
			}
			if j < len(line) && (wordByte(last) && wordByte(line[j]) || strings.IndexByte("+-", last) >= 0 && strings.IndexByte("+-", line[j]) >= 0) {
				b = append(b, ' ')
			}
			i = j
			continue
		case c == '}' && last == ';':
			b[len(b)-1] = '}'
			i++
		case c == '/' && strings.HasPrefix(line[i:], "/*"):
			end := strings.Index(line[i+2:], "*/")
			if end < 0 {
				end = len(line) - i - 4
			}
			b = append(b, line[i:i+end+4]...)
			i += end + 4
		case c == '\'' || c == '"' || c == '/' && (i == 0 || strings.IndexByte("(,=:[!&|?{};", last) >= 0):
			j := literalEnd(line, i)
			b = append(b, line[i:j]...)
			i = j
		default:
			b = append(b, c)
			i++
		}
		last = line[i-1]
	}
	return b
}

// literalEnd returns the index after the string or regular expression that
// starts at line[i] (its quote or slash), escapes and, in a regular
// expression, character classes ([/]) taken into account.
func literalEnd(line string, i int) int {
	quote, class := line[i], false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case c == '\\':
			j++
		case quote == '/' && c == '[':
			class = true
		case quote == '/' && c == ']':
			class = false
		case c == quote && !class:
			j++
			if quote == '/' {
				for j < len(line) && wordByte(line[j]) { // flags
					j++
				}
			}
			return j
		}
	}
	return len(line)
}

func wordByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80
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
