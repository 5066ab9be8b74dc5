package parse

import (
	"bytes"
	"encoding/binary"
)

// fastBatch reads the usual batch in one pass over the body, without
// building fastjson's tree: {"hits": [...]} with nothing else at the top,
// each hit an object whose values are strings, numbers, booleans or null,
// and "ep" null or an object of the same. It gives up (false) on anything
// else: a backslash in a string (escapes are rare in hits: JSON.stringify
// escapes only quotes, backslashes and control characters), a control
// character in a string (not JSON: the fastjson path refuses it), a nested
// value, a number outside JSON's grammar, any hit that Batch would reject,
// and a body that is not JSON. Batch then parses the body with fastjson.
//
// For every body it accepts, fastBatch returns exactly the items the
// fastjson path returns (FuzzParseBatch checks this), so which path read a
// hit never shows in it, nor in the ID derived from its content.
func fastBatch(dst []Item, body []byte) ([]Item, bool) {
	items, ok := scanBatch(dst[:0], body)
	if !ok {
		clear(items) // dst's memory keeps nothing of a batch given up
		return nil, false
	}
	return items, true
}

// scanBatch appends the batch's items to items; on false, they are the
// ones read before giving up.
func scanBatch(items []Item, body []byte) ([]Item, bool) {
	s := scanner{b: body}
	if !s.byte('{') {
		return items, false
	}
	if key, ok := s.plainString(); !ok || string(key) != "hits" {
		return items, false
	}
	if !s.byte(':') || !s.byte('[') {
		return items, false
	}
	var vals []byte // the hits' values, reused by every hit
	for {
		if len(items) == MaxBatchHits {
			return items, false
		}
		items = append(items, Item{})
		var ok bool
		if vals, ok = s.hit(&items[len(items)-1].Fields, vals[:0]); !ok {
			return items, false
		}
		if s.byte(']') {
			break
		}
		if !s.byte(',') {
			return items, false
		}
	}
	if !s.byte('}') {
		return items, false
	}
	s.ws()
	return items, s.i == len(s.b)
}

// scanner reads JSON from b, at i.
type scanner struct {
	b []byte
	i int
}

// ws skips white space.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte reads c after white space.
func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// hit reads one hit object into f, as jsonHit does, using vals as the
// buffer of its values, and returns the buffer.
func (s *scanner) hit(f *Fields, vals []byte) ([]byte, bool) {
	if !s.byte('{') {
		return vals, false
	}
	var spansArr [24]span
	spans := spansArr[:0]
	var params []span // the custom parameters, their values in vals too
	if !s.byte('}') {
		for {
			key, ok := s.plainString()
			if !ok || !s.byte(':') {
				return vals, false
			}
			f.Size += len(key)
			if string(key) == "ep" {
				if params, vals, ok = s.params(params, vals, f); !ok {
					return vals, false
				}
			} else {
				start := len(vals)
				var null bool
				if vals, null, ok = s.scalar(vals); !ok {
					return vals, false
				}
				if !null {
					f.Size += len(vals) - start
				}
				spans = append(spans, span{key, start, len(vals)}) // a null: empty (jsonHit)
			}
			if s.byte('}') {
				break
			}
			if !s.byte(',') {
				return vals, false
			}
		}
	}
	if f.Size > MaxHitBytes {
		return vals, false
	}
	all := f.setSpans(vals, spans)
	for _, p := range params {
		if f.setParam(string(p.key), all[p.start:p.end]) != nil {
			return vals, false
		}
	}
	return vals, true
}

// params reads the value of "ep": null, or an object of scalars, whose
// values it appends to vals and whose spans to ps.
func (s *scanner) params(ps []span, vals []byte, f *Fields) ([]span, []byte, bool) {
	s.ws()
	if s.literal("null") {
		return ps, vals, true
	}
	if !s.byte('{') { // Batch rejects a string, number or boolean here
		return ps, vals, false
	}
	if s.byte('}') {
		return ps, vals, true
	}
	for {
		key, ok := s.plainString()
		if !ok || !s.byte(':') {
			return ps, vals, false
		}
		start := len(vals)
		var null bool
		if vals, null, ok = s.scalar(vals); !ok {
			return ps, vals, false
		}
		if !null {
			f.Size += len(key) + len(vals) - start
			ps = append(ps, span{key, start, len(vals)})
		}
		if s.byte('}') {
			return ps, vals, true
		}
		if !s.byte(',') {
			return ps, vals, false
		}
	}
}

// plainString reads a string that has no escapes and no control
// characters, and returns its contents (a slice of b).
func (s *scanner) plainString() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i:], '"')
	if n < 0 {
		return nil, false
	}
	str := s.b[s.i : s.i+n]
	if bytes.IndexByte(str, '\\') >= 0 || hasControl(str) {
		return nil, false
	}
	s.i += n + 1
	return str, true
}

// scalar appends the string form of a plain string, a number or a boolean
// to vals, as appendScalar does, or reports null. It reads nothing and
// reports false for anything else.
func (s *scanner) scalar(vals []byte) (_ []byte, null, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return vals, false, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		str, ok := s.plainString()
		return append(vals, str...), false, ok
	case c == 't' && s.literal("true"):
		return append(vals, "true"...), false, true
	case c == 'f' && s.literal("false"):
		return append(vals, "false"...), false, true
	case c == 'n' && s.literal("null"):
		return vals, true, true
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		if !s.number() {
			return vals, false, false
		}
		return append(vals, s.b[start:s.i]...), false, true
	}
	return vals, false, false
}

// literal reads lit.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number reads a number of JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	s.i = i
	return true
}

// hasControl reports whether b holds a control character, which a JSON
// string may not hold unescaped (the fastjson path refuses the body).
// Eight bytes at a time: a byte under 0x20 borrows through its high bit
// when 0x20 is taken from it, and bytes from 0x80 on are masked out.
func hasControl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if (x-ones*0x20)&^x&highs != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// digits returns the index after the decimal digits of b from i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
