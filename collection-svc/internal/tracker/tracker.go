// Package tracker serves tracker.js, the script merchants put on their
// pages. It is embedded in the binary, minified at start (Minify: comments,
// indentation and the spaces and line breaks JavaScript does not need
// dropped, names kept) and served compressed:
//
//   - /tracker.js, the latest version, cacheable for five minutes (the
//     snippet points here, so fixes reach every site within minutes);
//   - /tracker/v<N>.js, the latest script compatible with version N, for
//     merchants who pin a version against incompatible changes: cacheable
//     for a day, not immutable, since fixes (which keep the version) change
//     it; so it cannot carry a subresource integrity hash.
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
	"slices"
	"strconv"
	"strings"

	"github.com/acme/analytics/pkg/httpserver"
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
// statement or follow one ended by its closing brace (a block, a function
// declaration), keeping the leading /*! */ licence line. It is meant for
// tracker.js and refuses, by panicking (so that the tests fail at once),
// what it would change rather than minify: a template literal, a // comment
// after code (a line ending in one of . , ( { would join the next to it),
// and a / it cannot tell a regular expression from a division by the byte
// before (after ) or }, as in if (x) /a/.test(y)). A regular expression
// goes where an expression starts (after an operator, one of ( , [ { ; or a
// keyword such as return), a division after a name, a number or ]. A brace
// it cannot place (a switch's, a class's, an arrow function's) keeps the
// line break after it, as does a function it cannot tell declared (after a
// line break alone). The gzipped script must stay under 2 KB
// (TestScriptIsSmall), so every byte the minifier drops is room for code.
func Minify(src string) string {
	var m minifier
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		// A line break goes where JavaScript never inserts a semicolon:
		// after a byte that cannot end a statement, before a closing
		// brace (which ends one anyway) and after the closing brace of a
		// statement (which nothing continues: what follows is a
		// statement of its own, or its else, catch, finally or while).
		if n := len(m.b); n > 0 && line[0] != '}' && !m.afterBlock && strings.IndexByte("{([,;:=?&|.!", m.b[n-1]) < 0 {
			if m.stmtAt == n {
				m.stmtAt++
			}
			m.b = append(m.b, '\n')
		}
		m.line(line)
	}
	return string(append(m.b, '\n'))
}

// minifier is Minify's output so far, with what it must know of the code
// before: the parentheses and braces open, and where statements end.
type minifier struct {
	b []byte
	// parens has each ( open; afterHeader is set when the last byte of b
	// is the ) that closed an if's, for's or while's condition, or a ;
	// directly after it (an empty statement, which must stay: while (x); }).
	// closed is the last ( closed.
	parens      []paren
	closed      paren
	afterHeader bool
	// braces has each { open; afterBlock is set when the last byte of b
	// is a } that ended a statement. stmtAt is the length b had where a
	// statement could last start (after a ; or a brace of a statement
	// list): a function named there is a declaration.
	braces     []brace
	afterBlock bool
	stmtAt     int
}

// paren is an open (: the word before it (if, a function's name) and
// whether it opens the parameters of a function, and of a function
// declaration.
type paren struct {
	word     string
	fn, decl bool
}

// brace is an open {: whether statements follow (a block, a function's
// body) and whether its } ends a statement (a block, a function
// declaration's body; not an object, a function expression's body or a
// brace Minify cannot place, such as a switch's or a class's). parens is
// how many ( were open at it, to tell its statements' ; from a for's.
type brace struct {
	stmts, endsStmt bool
	parens          int
}

// open returns the brace that starts after the byte last, at the end of
// m.b.
func (m *minifier) open(last byte) brace {
	br := brace{parens: len(m.parens)}
	switch {
	case last == ')':
		block := !m.closed.fn && slices.Contains([]string{"if", "for", "while", "catch"}, m.closed.word)
		br.stmts = block || m.closed.fn
		br.endsStmt = block || m.closed.decl
	case wordByte(last):
		br.stmts = slices.Contains([]string{"else", "try", "finally", "do"}, lastWord(m.b))
		br.endsStmt = br.stmts
	}
	return br
}

// openParen returns the ( that starts at the end of m.b.
func (m *minifier) openParen() paren {
	p := paren{word: lastWord(m.b)}
	before := m.b[:len(m.b)-len(p.word)]
	switch {
	case p.word == "function":
		p.fn = true
	case p.word != "" && bytes.HasSuffix(before, []byte("function ")):
		p.fn = true
		p.decl = len(before)-len("function ") == m.stmtAt
	}
	return p
}

// inStatements reports whether a ; at the end of m.b ends a statement:
// it is in a statement list (at the top or in a brace of statements)
// outside parentheses opened there.
func (m *minifier) inStatements() bool {
	if n := len(m.braces); n > 0 {
		return m.braces[n-1].stmts && len(m.parens) == m.braces[n-1].parens
	}
	return len(m.parens) == 0
}

// close pops the brace that the } at the end of m.b closes and returns
// whether it ended a statement.
func (m *minifier) close() bool {
	n := len(m.braces)
	if n == 0 {
		return false
	}
	br := m.braces[n-1]
	m.braces = m.braces[:n-1]
	if br.endsStmt {
		m.stmtAt = len(m.b)
	}
	return br.endsStmt
}

// line appends line to m.b without the spaces Minify drops: a run of
// spaces outside strings, regular expressions and /* */ comments goes
// unless it is between two word characters (var x, else if), two of + and
// - (a - -b), < and ! (a < !--b is no <!--) or a digit and a dot
// (1 .toString()); and a semicolon before a closing brace goes (the last
// of b's too) unless it is an empty statement.
func (m *minifier) line(line string) {
	var last byte // the last byte of code, outside strings and the like
	if len(m.b) > 0 {
		last = m.b[len(m.b)-1]
	}
	for i := 0; i < len(line); {
		c := line[i]
		header, block := false, false
		switch {
		case c == ' ':
			j := i
			for j < len(line) && line[j] == ' ' {
				j++
			}
			if j < len(line) && keepSpace(last, line[j]) {
				m.b = append(m.b, ' ')
				m.afterBlock = false
			}
			i = j
			continue
		case c == '}' && last == ';' && !m.afterHeader:
			m.b[len(m.b)-1] = '}'
			block = m.close()
			i++
		case c == '`':
			panic("tracker.Minify: template literals are not supported: " + line)
		case strings.HasPrefix(line[i:], "//"):
			panic("tracker.Minify: a // comment after code would take in the next line; put it on a line of its own: " + line)
		case c == '/' && strings.HasPrefix(line[i:], "/*"):
			end := strings.Index(line[i+2:], "*/")
			if end < 0 {
				end = len(line) - i - 4
			}
			m.b = append(m.b, line[i:i+end+4]...)
			i += end + 4
		case c == '/' && (last == ')' || last == '}'):
			panic("tracker.Minify: a / after ) or } may be a regular expression or a division; write the division apart (x = (a) ... ; x / b) or the regular expression in a variable: " + line)
		case c == '\'' || c == '"' || c == '/' && regexpCanStart(m.b, last):
			j := literalEnd(line, i)
			m.b = append(m.b, line[i:j]...)
			i = j
		default:
			var br brace
			switch c {
			case '(':
				m.parens = append(m.parens, m.openParen())
			case ')':
				if n := len(m.parens); n > 0 {
					m.closed = m.parens[n-1]
					header = !m.closed.fn && slices.Contains([]string{"if", "for", "while"}, m.closed.word)
					m.parens = m.parens[:n-1]
				}
			case ';':
				header = last == ')' && m.afterHeader
			case '{':
				br = m.open(last)
			}
			m.b = append(m.b, c)
			switch {
			case c == '{':
				m.braces = append(m.braces, br)
				if br.stmts {
					m.stmtAt = len(m.b)
				}
			case c == '}':
				block = m.close()
			case c == ';' && m.inStatements():
				m.stmtAt = len(m.b)
			}
			i++
		}
		m.afterHeader = header
		m.afterBlock = block
		last = line[i-1]
	}
}

// keepSpace reports whether a space between bytes a and b must stay.
func keepSpace(a, b byte) bool {
	return wordByte(a) && wordByte(b) ||
		strings.IndexByte("+-", a) >= 0 && strings.IndexByte("+-", b) >= 0 ||
		a == '<' && b == '!' ||
		'0' <= a && a <= '9' && b == '.'
}

// regexpCanStart reports whether a / after b, whose last byte of code is
// last, starts a regular expression: at the start, after an operator or
// punctuation other than ) ] }, or after a keyword that an expression
// follows.
func regexpCanStart(b []byte, last byte) bool {
	switch {
	case len(b) == 0 || last == '\n':
		return true
	case last == ']':
		return false
	case wordByte(last):
		return slices.Contains(regexpKeywords, lastWord(b))
	}
	return true
}

// regexpKeywords are the keywords after which a / starts a regular
// expression.
var regexpKeywords = []string{"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else", "yield", "await"}

// lastWord returns the word (name, keyword or number) b ends with.
func lastWord(b []byte) string {
	i := len(b)
	for i > 0 && wordByte(b[i-1]) {
		i--
	}
	return string(b[i:])
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
	mux.Handle("GET /tracker/v"+strconv.Itoa(Version)+".js", s.handler("public, max-age=86400"))
}

func (s *Script) handler(cacheControl string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		httpserver.SetContentType(h, "text/javascript; charset=utf-8")
		h.Set("Cache-Control", cacheControl)
		h.Set("Vary", "Accept-Encoding")
		h.Set("Access-Control-Allow-Origin", "*")
		// Loaded by a plain <script> (no CORS) on pages that may be
		// cross-origin isolated (Cross-Origin-Embedder-Policy:
		// require-corp), which load no cross-origin script without it.
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		// Each encoding is a representation of its own, with an ETag of
		// its own (a strong validator changes with the content coding,
		// RFC 9110 8.8.3: a cache holding one must not answer with the
		// other for a matching If-None-Match).
		body, etag := s.plain, s.etag
		gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
		if gz {
			body, etag = s.gzipped, strings.TrimSuffix(s.etag, `"`)+`-gzip"`
		}
		h.Set("ETag", etag)
		// "*" matches any representation (RFC 9110 13.1.2); a list
		// matches when it holds this one's tag (weakly: W/ too).
		if match := r.Header.Get("If-None-Match"); match != "" && (strings.TrimSpace(match) == "*" || strings.Contains(match, etag)) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if gz {
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

func acceptsGzip(ae string) bool {
	q, _ := httpserver.Quality([]string{ae}, "gzip")
	return q > 0
}
