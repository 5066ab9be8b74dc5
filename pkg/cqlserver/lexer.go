package cqlserver

import (
	"fmt"
	"strings"
)

// tokenKind classifies a lexical token of CQL.
type tokenKind uint8

const (
	tokEOF         tokenKind = iota
	tokIdent                 // unquoted identifier or keyword, case preserved in text
	tokQuotedIdent           // "Quoted" identifier, case preserved, quotes removed
	tokString                // 'string' or $$string$$, quotes removed and '' unescaped
	tokInteger               // -?[0-9]+
	tokFloat                 // decimal or exponent notation
	tokUUID                  // 8-4-4-4-12 hex digits
	tokHex                   // 0x... blob literal, text keeps the 0x prefix
	tokQMark                 // ?
	tokPunct                 // single or double character operator or punctuation
)

// token is one lexical unit with its position (1-based line, 0-based
// column, as in Cassandra's ANTLR error messages).
type token struct {
	kind tokenKind
	text string
	line int
	col  int
	off  int // byte offset in the statement
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "<EOF>"
	case tokString:
		return "'" + strings.ReplaceAll(t.text, "'", "''") + "'"
	case tokQuotedIdent:
		return `"` + strings.ReplaceAll(t.text, `"`, `""`) + `"`
	}
	return t.text
}

// lexError is a lexical error at a position.
type lexError struct {
	line, col int
	msg       string
}

func (e *lexError) Error() string { return fmt.Sprintf("line %d:%d %s", e.line, e.col, e.msg) }

// lex splits a CQL statement into tokens, dropping whitespace and comments.
// The last token is always tokEOF.
func lex(src string) ([]token, error) {
	l := &lexer{src: src, line: 1}
	var toks []token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.kind == tokEOF {
			return toks, nil
		}
	}
}

type lexer struct {
	src       string
	pos       int
	line      int
	lineStart int
}

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.pos < len(l.src); i++ {
		if l.src[l.pos] == '\n' {
			l.line++
			l.lineStart = l.pos + 1
		}
		l.pos++
	}
}

func (l *lexer) errorf(format string, args ...any) error {
	return &lexError{line: l.line, col: l.pos - l.lineStart, msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) skipSpaceAndComments() error {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.advance(1)
		case strings.HasPrefix(l.src[l.pos:], "--") || strings.HasPrefix(l.src[l.pos:], "//"):
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.advance(1)
			}
		case strings.HasPrefix(l.src[l.pos:], "/*"):
			end := strings.Index(l.src[l.pos+2:], "*/")
			if end < 0 {
				return l.errorf("unterminated comment")
			}
			l.advance(end + 4)
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) || c == '_' }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isHexDigit(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// uuidAt reports whether a UUID literal starts at s[0].
func uuidAt(s string) bool {
	if len(s) < 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHexDigit(s[i]) {
			return false
		}
	}
	return len(s) == 36 || !isIdentChar(s[36])
}

// next returns the next token. Like Cassandra's lexer, a '-' directly
// followed by digits is always part of a number (the parser handles
// "X = X -1").
func (l *lexer) next() (token, error) {
	if err := l.skipSpaceAndComments(); err != nil {
		return token{}, err
	}
	t := token{line: l.line, col: l.pos - l.lineStart, off: l.pos}
	if l.pos >= len(l.src) {
		t.kind = tokEOF
		return t, nil
	}
	rest := l.src[l.pos:]
	c := rest[0]
	switch {
	case uuidAt(rest):
		t.kind, t.text = tokUUID, rest[:36]
		l.advance(36)
	case c == '0' && len(rest) > 1 && (rest[1] == 'x' || rest[1] == 'X'):
		n := 2
		for n < len(rest) && isHexDigit(rest[n]) {
			n++
		}
		if n < len(rest) && isIdentChar(rest[n]) {
			l.advance(n)
			return token{}, l.errorf("token recognition error at: '%s'", rest[:n+1])
		}
		t.kind, t.text = tokHex, rest[:n]
		l.advance(n)
	case isDigit(c) || (c == '-' && len(rest) > 1 && isDigit(rest[1])):
		n := 0
		if c == '-' {
			n = 1
		}
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		t.kind = tokInteger
		if n+1 < len(rest) && rest[n] == '.' && isDigit(rest[n+1]) {
			t.kind = tokFloat
			n++
			for n < len(rest) && isDigit(rest[n]) {
				n++
			}
		}
		if n < len(rest) && (rest[n] == 'e' || rest[n] == 'E') {
			m := n + 1
			if m < len(rest) && (rest[m] == '+' || rest[m] == '-') {
				m++
			}
			if m < len(rest) && isDigit(rest[m]) {
				for m < len(rest) && isDigit(rest[m]) {
					m++
				}
				t.kind, n = tokFloat, m
			}
		}
		t.text = rest[:n]
		l.advance(n)
	case isIdentStart(c):
		n := 1
		for n < len(rest) && isIdentChar(rest[n]) {
			n++
		}
		t.kind, t.text = tokIdent, rest[:n]
		l.advance(n)
	case c == '"':
		var b strings.Builder
		i := 1
		for {
			if i >= len(rest) {
				return token{}, l.errorf("unterminated quoted identifier")
			}
			if rest[i] == '"' {
				if i+1 < len(rest) && rest[i+1] == '"' {
					b.WriteByte('"')
					i += 2
					continue
				}
				break
			}
			b.WriteByte(rest[i])
			i++
		}
		t.kind, t.text = tokQuotedIdent, b.String()
		l.advance(i + 1)
	case c == '\'':
		var b strings.Builder
		i := 1
		for {
			if i >= len(rest) {
				return token{}, l.errorf("unterminated string literal")
			}
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					b.WriteByte('\'')
					i += 2
					continue
				}
				break
			}
			b.WriteByte(rest[i])
			i++
		}
		t.kind, t.text = tokString, b.String()
		l.advance(i + 1)
	case strings.HasPrefix(rest, "$$"):
		end := strings.Index(rest[2:], "$$")
		if end < 0 {
			return token{}, l.errorf("unterminated $$ string literal")
		}
		t.kind, t.text = tokString, rest[2:2+end]
		l.advance(end + 4)
	case c == '?':
		t.kind, t.text = tokQMark, "?"
		l.advance(1)
	default:
		for _, op := range []string{"<=", ">=", "!=", "+=", "-="} {
			if strings.HasPrefix(rest, op) {
				t.kind, t.text = tokPunct, op
				l.advance(2)
				return t, nil
			}
		}
		if strings.IndexByte("(),;.*=<>[]{}:+-", c) >= 0 {
			t.kind, t.text = tokPunct, rest[:1]
			l.advance(1)
			return t, nil
		}
		return token{}, l.errorf("token recognition error at: '%c'", c)
	}
	return t, nil
}
