package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/valyala/fastjson"
)

// Item is one hit of a batch: its fields, or why it could not be read.
// Raw is then the hit as sent (its JSON, its bytes as sent), kept for the
// dead-letter topic.
type Item struct {
	Fields Fields
	Err    *Error
	Raw    string
}

// fastjson is several times faster than encoding/json on these small,
// flat objects, which matters at hundreds of thousands of hits a second;
// its parsers are reused through a pool.
var parsers fastjson.ParserPool

// Batch parses the body of POST /collect:
//
//	{"hits": [{"t": "pageview", "cid": "...", "dl": "...", ...}, ...]}
//
// Each hit is an object with the parameter names of a query string as keys
// and strings, numbers, booleans or null (absent) as values; custom
// parameters are an object under "ep". A hit that cannot be read gets an
// Err of its own and the others are still returned; an error for the whole
// body means nothing in it can be used.
//
// The items are made in dst's memory when it is large enough (a caller
// reuses it from request to request), else in a new slice.
func Batch(dst []Item, body []byte) ([]Item, error) {
	if len(body) <= MaxBatchBytes {
		if items, ok := fastBatch(dst, body); ok {
			return items, nil
		}
	}
	return slowBatch(dst, body)
}

// slowBatch is Batch with fastjson, for every body: the reference that
// fastBatch must agree with.
func slowBatch(dst []Item, body []byte) ([]Item, error) {
	items, err := withObject(dst, body, `{"hits": [...]}`, batch)
	if err != nil {
		return items, err
	}
	// A rejected hit's Raw is taken from the body parsed again: reading a
	// hit unescapes its strings, which fastjson then writes back with
	// Go's escapes (\x01), not JSON's; untouched, it writes them as sent.
	var hits []*fastjson.Value
	var p fastjson.Parser
	for i := range items {
		if items[i].Err == nil {
			continue
		}
		if hits == nil {
			v, err := p.ParseBytes(body)
			if err != nil {
				break // it parsed once: not reached
			}
			hits = v.GetArray("hits")
		}
		if i < len(hits) {
			items[i].Raw = truncate(string(hits[i].MarshalTo(nil)))
		}
	}
	return items, nil
}

// withObject parses body, which must be a JSON object of the given shape
// (named in the error), and returns what f makes of it in dst's memory;
// the parsed value is valid only during f.
func withObject(dst []Item, body []byte, shape string, f func([]Item, *fastjson.Value) ([]Item, error)) ([]Item, error) {
	if len(body) > MaxBatchBytes {
		return nil, Errorf(ReasonTooLarge, "", "the body is %d bytes; the limit is %d", len(body), MaxBatchBytes)
	}
	p := parsers.Get()
	defer parsers.Put(p)
	// fastjson's parser reads what is not JSON (an escape \' or \x41, a
	// control character in a string, a number 01, NaN, +1 or .5) and
	// keeps it as written: a title stored as Men\'s. Its validator does
	// not; it runs once the parser, which bounds the nesting (300 levels:
	// the validator has no bound), has read the body.
	v, err := p.ParseBytes(body)
	if err == nil {
		err = fastjson.ValidateBytes(body)
	}
	if err != nil {
		return nil, Errorf(ReasonMalformed, "", "%s", notJSON(body, shape, err))
	}
	if fixed, ok := loneSurrogatesReplaced(body); ok {
		if v, err = p.ParseBytes(fixed); err != nil {
			return nil, Errorf(ReasonMalformed, "", "%s", notJSON(body, shape, err))
		}
	}
	if v.Type() != fastjson.TypeObject {
		return nil, Errorf(ReasonMalformed, "", "the body must be a JSON object %s", shape)
	}
	return f(dst, v)
}

// loneSurrogatesReplaced returns body (valid JSON) with every escape of a
// lone UTF-16 surrogate (\ud83d not followed by \udc00-\udfff, or one of
// those alone) written as \ufffd, the replacement character, as
// encoding/json decodes it: fastjson kept the six characters \ud83d in
// the string. JSON.stringify writes one for a string cut inside an emoji.
// A copy, and true, when body has one (rarely).
func loneSurrogatesReplaced(body []byte) ([]byte, bool) {
	if !bytes.Contains(body, []byte(`\u`)) {
		return nil, false
	}
	var out []byte
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		if body[i+1] != 'u' {
			i++ // \" \\ \n ...: the next byte is no escape of its own
			continue
		}
		r := hexRune(body, i+2)
		switch {
		case r >= 0xD800 && r <= 0xDBFF && i+12 <= len(body) && body[i+6] == '\\' && body[i+7] == 'u':
			if lo := hexRune(body, i+8); lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11 // a pair
				continue
			}
		case r < 0xD800 || r > 0xDFFF:
			i += 5
			continue
		}
		if out == nil {
			out = bytes.Clone(body)
		}
		copy(out[i:i+6], `\ufffd`)
		i += 5
	}
	return out, out != nil
}

// hexRune is the value of the four hex digits of b at i (the body is
// valid JSON: they are there).
func hexRune(b []byte, i int) rune {
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// reuse returns n empty items, in dst's memory when it has room.
func reuse(dst []Item, n int) []Item {
	if cap(dst) < n {
		return make([]Item, n)
	}
	dst = dst[:n]
	clear(dst)
	return dst
}

func batch(dst []Item, v *fastjson.Value) ([]Item, error) {
	hv := v.Get("hits")
	if hv == nil || hv.Type() != fastjson.TypeArray {
		return nil, Errorf(ReasonMalformed, "hits", `the body must be a JSON object {"hits": [...]} with an array of hits`)
	}
	hits, _ := hv.Array()
	if len(hits) == 0 {
		return nil, Errorf(ReasonMalformed, "hits", "the batch has no hits")
	}
	if len(hits) > MaxBatchHits {
		return nil, Errorf(ReasonTooLarge, "hits", "the batch has %d hits; the limit is %d", len(hits), MaxBatchHits)
	}
	items := reuse(dst, len(hits))
	var scratch []byte // reused by every hit
	for i, h := range hits {
		items[i], scratch = jsonHit(h, scratch[:0])
	}
	return items, nil
}

// span is a field of a hit being read: its key, and its value at
// [start, end) of the buffer the hit's values are gathered in.
type span struct {
	key        []byte // valid while the hit is being read
	start, end int
}

// setSpans sets the fields at spans of vals, which become one string (one
// allocation per hit rather than one per field), and returns that string.
func (f *Fields) setSpans(vals []byte, spans []span) string {
	all := string(vals)
	for _, sp := range spans {
		f.set(string(sp.key), all[sp.start:sp.end])
	}
	return all
}

// jsonHit reads one hit of a batch, using scratch as its working buffer,
// and returns the buffer for the next.
func jsonHit(v *fastjson.Value, scratch []byte) (Item, []byte) {
	var it Item
	o, err := v.Object()
	if err != nil {
		it.Err = Errorf(ReasonMalformed, "", "a hit must be a JSON object")
		return it, scratch
	}
	f := &it.Fields
	// The fields' values are gathered in one buffer and become strings
	// together, with one allocation per hit rather than one per field.
	var spansArr [24]span
	spans := spansArr[:0]
	vals := scratch
	o.Visit(func(key []byte, val *fastjson.Value) {
		if it.Err != nil {
			return
		}
		f.Size += len(key)
		if string(key) == "ep" {
			it.Err = params(f, val, "ep")
			return
		}
		start := len(vals)
		var ok bool
		var perr *Error
		vals, ok, perr = appendScalar(vals, val)
		if perr != nil {
			it.Err = Errorf(ReasonMalformed, string(key), "%s", perr.Message)
			return
		}
		if ok {
			f.Size += len(vals) - start
		}
		// A null is an empty value, as "cid=" in a query: absent, and
		// clearing an earlier value of the field (the last is read).
		spans = append(spans, span{key, start, len(vals)})
	})
	f.setSpans(vals, spans)
	if it.Err == nil && f.Size > MaxHitBytes {
		it.Err = Errorf(ReasonTooLarge, "", "the hit is %d bytes; the limit is %d", f.Size, MaxHitBytes)
	}
	return it, vals
}

// params reads an object of custom parameters into f.Params, the
// parameters the sender calls name (a batch's "ep", an event's "params"),
// as errors say. Nested objects and arrays are kept as their JSON text.
func params(f *Fields, v *fastjson.Value, name string) *Error {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	o, err := v.Object()
	if err != nil {
		return Errorf(ReasonMalformed, name, "%s must be a JSON object of parameters, {\"name\": value, ...}", name)
	}
	var perr *Error
	o.Visit(func(key []byte, val *fastjson.Value) {
		if perr != nil {
			return
		}
		s, ok, e := scalar(val)
		if e != nil {
			s, ok = string(val.MarshalTo(nil)), true
		}
		if !ok {
			return
		}
		f.Size += len(key) + len(s)
		if err := f.setParam(string(key), s); err != nil {
			err.Field = name
			perr = err
		}
	})
	return perr
}

// scalar returns the string form of a JSON string, number or boolean, and
// false for null.
func scalar(v *fastjson.Value) (string, bool, *Error) {
	var buf [64]byte // most values fit: then the string is the only allocation
	b, ok, err := appendScalar(buf[:0], v)
	return string(b), ok, err
}

// appendScalar appends to b the string form of a JSON string, number or
// boolean, and reports false for null.
func appendScalar(b []byte, v *fastjson.Value) ([]byte, bool, *Error) {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return append(b, s...), true, nil
	case fastjson.TypeNumber:
		return v.MarshalTo(b), true, nil
	case fastjson.TypeTrue:
		return append(b, "true"...), true, nil
	case fastjson.TypeFalse:
		return append(b, "false"...), true, nil
	case fastjson.TypeNull:
		return b, false, nil
	}
	return b, false, &Error{Reason: ReasonMalformed, Message: "must be a string, number, boolean or null"}
}

// MaxRawBytes bounds the copy of a rejected input kept in a dead letter.
const MaxRawBytes = 16 << 10

// truncate returns s, or a copy of its first MaxRawBytes: the part alone,
// so that a dead letter waiting in the buffer does not keep the whole of a
// rejected body (up to 512 KiB) or query (up to 1 MiB) alive.
func truncate(s string) string {
	if len(s) > MaxRawBytes {
		return strings.Clone(s[:MaxRawBytes])
	}
	return s
}

// Truncate bounds a rejected input kept in a dead letter.
func Truncate(s string) string { return truncate(s) }

// fastjsonChain is one level of fastjson's nested error text.
var fastjsonChain = regexp.MustCompile(`^cannot parse [a-zA-Z ]+: `)

// notJSON says why a body that fastjson refused is not JSON, where the
// mistake is (line and byte) and what was there. fastjson's own error
// nests a "cannot parse array: cannot parse array value: " per level, 14
// KB of it for a body nested past its 300 levels, with the cause at its
// very end; and it calls a body cut short "unexpected end of object".
// This runs only on a refused body (at most MaxBatchBytes), never on the
// path of a hit that parses.
func notJSON(body []byte, shape string, err error) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "the body is empty; send a JSON object " + shape
	}
	if encoded := httpserver.EncodedBody(body); encoded != "" {
		return "the body " + encoded
	}
	if strings.Contains(err.Error(), "too big depth") {
		return "the body is not JSON we read: its arrays and objects nest more than 300 levels deep; send a JSON object " + shape
	}
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(body, new(json.RawMessage)), &se) {
		if se.Offset >= int64(len(body)) && strings.HasPrefix(se.Error(), "unexpected end") {
			return fmt.Sprintf("the body is not JSON: it ends (after %d bytes) in the middle of a value; was it cut short, or is a closing bracket or quote missing?", len(body))
		}
		return fmt.Sprintf("the body is not JSON: %s (%s)", se.Error(), position(body, se.Offset))
	}
	// What fastjson refuses and encoding/json takes (a number such as
	// 01): its cause without the levels above it.
	msg := err.Error()
	for {
		rest := fastjsonChain.ReplaceAllString(msg, "")
		if rest == msg {
			break
		}
		msg = rest
	}
	return "the body is not JSON: " + msg
}

// position names where a syntax error found after offset bytes is: the
// line and the byte of the line, both from 1.
func position(body []byte, offset int64) string {
	off := min(max(int(offset), 1), len(body))
	before := body[:off-1]
	line := 1 + bytes.Count(before, []byte("\n"))
	return fmt.Sprintf("line %d, byte %d", line, off-(bytes.LastIndexByte(before, '\n')+1))
}
