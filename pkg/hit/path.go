package hit

import "strings"

// CanonicalPath returns a page's path and query (dp, or dl's) in the one
// form hits carry, so that the spellings of one page (/café,
// /caf%C3%A9, /caf%c3%a9) are one page in reports: percent-encoded as
// Chrome's location.pathname and location.search give it, with upper-case
// hex digits. In the path, control characters, space, '"', '<', '>', '`',
// '{', '}', '|', '^', DEL and every byte of a non-ASCII character are
// escaped (Chrome's set: Firefox and Safari leave '|' and '^' as they
// are); in the query, control characters, space, '"', '<', '>', the
// apostrophe, DEL and non-ASCII bytes. A '%' not followed by two hex
// digits is taken as itself (%25). Escapes are never decoded: %2F is not
// '/' in a path (it is part of a segment), nor %26 '&' in a query. The
// fragment is dropped. A path in this form is returned as it is, without
// a copy. Collection stores every hit's path in this form; processing
// applies it again to archived hits, which older versions stored as sent.
func CanonicalPath(p string) string {
	p, _, _ = strings.Cut(p, "#")
	var b []byte // the result from the first byte that changes on
	escapes := &pathEscapes
	for i := 0; i < len(p); i++ {
		c, n := p[i], 1 // the byte, and how many bytes of p it is with its escape
		esc := [3]byte{'%'}
		switch {
		case c == '%' && i+2 < len(p) && IsHex(p[i+1]) && IsHex(p[i+2]):
			esc[1], esc[2], n = upperHex(p[i+1]), upperHex(p[i+2]), 3
		case c == '%' || escapes[c]:
			esc[1], esc[2] = hexDigits[c>>4], hexDigits[c&15]
		default:
			if c == '?' {
				escapes = &queryEscapes
			}
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			if n == 3 && esc[1] == p[i+1] && esc[2] == p[i+2] {
				i += 2
				continue
			}
			b = append(make([]byte, 0, len(p)+32), p[:i]...)
		}
		b = append(b, esc[:]...)
		i += n - 1
	}
	if b == nil {
		return p
	}
	return string(b)
}

const hexDigits = "0123456789ABCDEF"

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// pathEscapes and queryEscapes are the bytes CanonicalPath escapes in a
// path and in a query.
var pathEscapes, queryEscapes = func() (path, query [256]bool) {
	for c := range 256 {
		ctl := c < 0x20 || c >= 0x7f
		path[c] = ctl || strings.IndexByte(" \"<>`{}|^", byte(c)) >= 0
		query[c] = ctl || strings.IndexByte(" \"<>'", byte(c)) >= 0
	}
	return path, query
}()

// IsHex reports whether c is a hexadecimal digit, as the two after a
// percent sign of an escape are.
func IsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// EscapeStrayPercent returns s with each '%' not followed by two hex digits
// written as %25, the escape of a literal '%': a browser keeps such a '%'
// as it is (https://blog.example/100%-free), and url.Parse refuses it. s
// is returned as it is, without a copy, when it has none.
func EscapeStrayPercent(s string) string {
	var b []byte // the result from the first stray '%' on
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && !(i+2 < len(s) && IsHex(s[i+1]) && IsHex(s[i+2])):
			if b == nil {
				b = append(make([]byte, 0, len(s)+8), s[:i]...)
			}
			b = append(b, "%25"...)
		case b != nil:
			b = append(b, s[i])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}
