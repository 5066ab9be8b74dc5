package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/httpserver"
)

// decodeJSON decodes the request body into v, which may hold defaults that
// absent fields keep. It answers the request itself and returns false when
// the body is not acceptable: too large (413); not a single JSON object, a
// key given twice in one object or text that is not UTF-8 (400
// invalid_json, with the field where there is one); a field this endpoint
// does not know, field names being matched exactly (400 unknown_field); or
// a value of the wrong type (400 invalid_field). Fields are named by their
// path (goals[1].value). Of several problems the first in the body is
// reported, those answered invalid_json before the others.
//
// encoding/json alone would accept all of these and guess: the last of
// two equal keys wins, "Goals" sets goals, bytes that are not UTF-8 become
// U+FFFD and a stray } or ] after the object goes unread. So the body is
// parsed here first, keeping each object's keys in order, and checked
// against v's type before encoding/json decodes it.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if httpserver.IsTooLarge(err) {
			httpserver.WriteTooLarge(w, err)
			return false
		}
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "could not read the request body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is empty; send a JSON object (Content-Type: application/json)")
		return false
	}
	generic, p := parseBody(body)
	if p != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_json", p.path, p.reason)
		return false
	}
	switch generic.(type) {
	case nil:
		// null would leave every field as it is, or reset a whole document.
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is null; send a JSON object")
		return false
	case object:
	default:
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is "+describeValue(generic)+"; send a JSON object")
		return false
	}
	if r.Method == http.MethodPatch {
		// A PATCH writes the fields it gives. null in one would leave it as
		// it is (null is absent, for every endpoint), where JSON Merge
		// Patch (RFC 7396) clears it: {"hostnames": null} answered 200
		// with the hostnames kept. Whichever was meant, say so.
		if p := patchNull(generic.(object), reflect.TypeOf(v)); p != nil {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", p.path, p.path+": "+p.reason)
			return false
		}
	}
	if p := checkShape(generic, reflect.TypeOf(v), ""); p != nil {
		code := "invalid_field"
		if p.unknown {
			code = "unknown_field"
		}
		httpserver.WriteFieldError(w, http.StatusBadRequest, code, p.path, p.path+": "+p.reason)
		return false
	}
	strict := json.NewDecoder(bytes.NewReader(body))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", te.Field, fmt.Sprintf("%s: must be %s", te.Field, describeKind(te.Type)))
			return false
		}
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body does not fit this endpoint: "+err.Error())
		return false
	}
	return true
}

// noBody is the handler of an endpoint that takes no body (every GET and
// DELETE, POST /v1/email-verification): a body that holds anything but
// white space, {} or null is refused, as an unknown field is everywhere,
// rather than ignored ({"email": ...} to /v1/email-verification mailed the
// caller's own address and answered 202). null asks for nothing, as {}
// does: it is what a client sends that marshals a nil value as its body.
func noBody(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			if httpserver.IsTooLarge(err) {
				httpserver.WriteTooLarge(w, err)
				return
			}
			httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "could not read the request body: "+err.Error())
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			none := r.Method + " " + r.URL.Path + " takes no body; send none (or {})"
			generic, p := parseBody(body)
			o, isObject := generic.(object)
			switch {
			case p == nil && generic == nil: // null
			case p != nil:
				httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_json", p.path, p.reason+"; "+none)
				return
			case !isObject:
				httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is "+describeValue(generic)+"; "+none)
				return
			case len(o) > 0:
				httpserver.WriteFieldError(w, http.StatusBadRequest, "unknown_field", o[0].key, o[0].key+": is not a field: "+none)
				return
			}
		}
		next(w, r)
	}
}

// object is a JSON object as parsed: its members in the body's order.
type object []member

type member struct {
	key string
	val any
}

// parseBody parses a whole request body into object, []any, string,
// json.Number, bool or nil values. A problem names the path of the value
// at fault ("" for the body itself) and says where in the body it is.
func parseBody(body []byte) (any, *shapeProblem) {
	ps := &parser{body: body, dec: json.NewDecoder(bytes.NewReader(body))}
	ps.dec.UseNumber()
	tok, start, err := ps.next()
	if err != nil {
		return nil, ps.syntax(err)
	}
	v, p := ps.value(tok, start, "")
	if p != nil {
		return nil, p
	}
	// Whatever follows the value: the decoder would read a second value,
	// and Decoder.More would take a stray } or ] for the end of one.
	end := int(ps.dec.InputOffset())
	if i := end + len(body[end:]) - len(bytes.TrimLeft(body[end:], " \t\r\n")); i < len(body) {
		if bytes.IndexByte([]byte(`{["-0123456789tfn`), body[i]) >= 0 {
			return nil, &shapeProblem{reason: "the request body holds more than one JSON value (the second begins at " + where(body, i) + "); send a single object"}
		}
		return nil, &shapeProblem{reason: fmt.Sprintf("the request body is not valid JSON: %s after the JSON value ends (%s); send a single object and nothing after it", describeByte(body[i]), where(body, i))}
	}
	return v, nil
}

// maxDepth bounds the nesting of a body, which Decoder.Token does not: the
// deepest document an endpoint takes nests 4 levels.
const maxDepth = 100

type parser struct {
	body  []byte
	dec   *json.Decoder
	depth int
}

// next reads a token and returns the offset in the body where the
// decoder began looking for it (before any space, colon or comma).
func (ps *parser) next() (json.Token, int, error) {
	start := int(ps.dec.InputOffset())
	tok, err := ps.dec.Token()
	return tok, start, err
}

// value parses the value that begins with tok.
func (ps *parser) value(tok json.Token, start int, path string) (any, *shapeProblem) {
	switch t := tok.(type) {
	case string:
		if p := ps.checkString(start, path, false); p != nil {
			return nil, p
		}
		return t, nil
	case json.Delim:
		if ps.depth++; ps.depth > maxDepth {
			return nil, &shapeProblem{reason: fmt.Sprintf("the request body nests more than %d arrays and objects (at %s)", maxDepth, where(ps.body, ps.tokenStart(start, byte(t))))}
		}
		defer func() { ps.depth-- }()
		if t == '[' {
			return ps.array(path)
		}
		return ps.object(path)
	}
	return tok, nil // json.Number, bool or nil
}

func (ps *parser) object(path string) (any, *shapeProblem) {
	obj := object{}
	seen := map[string]int{}
	for ps.dec.More() {
		tok, start, err := ps.next()
		if err != nil {
			return nil, ps.syntax(err)
		}
		key, ok := tok.(string) // the decoder allows nothing else here
		if !ok {
			return nil, &shapeProblem{path: path, reason: fmt.Sprintf("the request body is not valid JSON: %v where a field name belongs (%s)", tok, where(ps.body, start))}
		}
		if p := ps.checkString(start, path, true); p != nil {
			return nil, p
		}
		at := ps.tokenStart(start, '"')
		if first, ok := seen[key]; ok {
			return nil, &shapeProblem{path: join(path, key), reason: fmt.Sprintf("%s: given twice in one object (at %s and at %s); give each field once", join(path, key), where(ps.body, first), where(ps.body, at))}
		}
		seen[key] = at
		tok, start, err = ps.next()
		if err != nil {
			return nil, ps.syntax(err)
		}
		v, p := ps.value(tok, start, join(path, key))
		if p != nil {
			return nil, p
		}
		obj = append(obj, member{key, v})
	}
	if _, _, err := ps.next(); err != nil { // the closing }
		return nil, ps.syntax(err)
	}
	return obj, nil
}

func (ps *parser) array(path string) (any, *shapeProblem) {
	arr := []any{}
	for ps.dec.More() {
		tok, start, err := ps.next()
		if err != nil {
			return nil, ps.syntax(err)
		}
		v, p := ps.value(tok, start, fmt.Sprintf("%s[%d]", path, len(arr)))
		if p != nil {
			return nil, p
		}
		arr = append(arr, v)
	}
	if _, _, err := ps.next(); err != nil { // the closing ]
		return nil, ps.syntax(err)
	}
	return arr, nil
}

func (ps *parser) syntax(err error) *shapeProblem {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &shapeProblem{reason: describeSyntaxError(ps.body, err)}
}

// tokenStart is the offset of the token the decoder began looking for at
// start, which begins with c (a quote, bracket or brace).
func (ps *parser) tokenStart(start int, c byte) int {
	return start + bytes.IndexByte(ps.body[start:], c)
}

// checkString refuses what encoding/json would silently turn into U+FFFD
// in the string token just read: bytes that are not UTF-8, and a \u escape
// of half a UTF-16 surrogate pair without the other half. path is the
// value's, or for a key (isKey) its object's.
func (ps *parser) checkString(start int, path string, isKey bool) *shapeProblem {
	from := ps.tokenStart(start, '"')
	raw := ps.body[from:ps.dec.InputOffset()]
	i, surrogate := badString(raw)
	if i < 0 {
		return nil
	}
	at := where(ps.body, from+i)
	what := fmt.Sprintf("is not valid UTF-8 (the byte 0x%02x at %s); send text in UTF-8", raw[i], at)
	if surrogate {
		what = fmt.Sprintf("holds %s (at %s), half of a UTF-16 surrogate pair without the other half; escape a character beyond U+FFFF as a pair, e.g. \\ud83d\\ude00", raw[i:i+6], at)
	}
	switch {
	case isKey:
		what = "a field name " + what
	case path == "":
		what = "the request body " + what
	}
	if path != "" {
		what = path + ": " + what
	}
	return &shapeProblem{path: path, reason: what}
}

// badString returns the offset in raw (a JSON string as written, quotes
// included, already known to be well-formed) of the first byte that is not
// UTF-8 or of the first \u escape of an unpaired surrogate (surrogate);
// -1 when there is neither.
func badString(raw []byte) (i int, surrogate bool) {
	for i < len(raw) {
		switch c := raw[i]; {
		case c == '\\' && raw[i+1] == 'u':
			r := hex4(raw[i+2 : i+6])
			if !utf16.IsSurrogate(r) {
				i += 6
				continue
			}
			if r < 0xdc00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if r2 := hex4(raw[i+8 : i+12]); r2 >= 0xdc00 && r2 < 0xe000 {
					i += 12
					continue
				}
			}
			return i, true
		case c == '\\':
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
	return -1, false
}

func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 32) // the decoder checked the digits
	return rune(n)
}

// where says where offset i of body is, for people: line and byte, both
// counted from 1.
func where(body []byte, i int) string {
	return fmt.Sprintf("line %d, byte %d", 1+bytes.Count(body[:i], []byte("\n")), i+1)
}

func describeByte(c byte) string {
	if c >= 0x20 && c < utf8.RuneSelf {
		return fmt.Sprintf("unexpected %q", c)
	}
	return fmt.Sprintf("unexpected byte 0x%02x", c)
}

// describeValue names the kind of a parsed value.
func describeValue(v any) string {
	switch v.(type) {
	case []any:
		return "a JSON array"
	case string:
		return "a JSON string"
	case json.Number:
		return "a JSON number"
	case bool:
		return "true or false"
	}
	return "a JSON object"
}

func describeSyntaxError(body []byte, err error) string {
	if encoded := httpserver.EncodedBody(body); encoded != "" {
		return "the request body " + encoded
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(body[:min(int(se.Offset), len(body))], []byte("\n"))
		return fmt.Sprintf("the request body is not valid JSON: %s (line %d, byte %d)", se.Error(), line, se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the request body is not valid JSON: it ends in the middle of a value"
	}
	return "the request body is not valid JSON: " + err.Error()
}

type shapeProblem struct {
	path, reason string
	unknown      bool
}

var (
	timeType        = reflect.TypeOf(time.Time{})
	unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// patchNull reports the first member of a PATCH body that is null, with
// what to send instead: a field of a list type is emptied with [].
func patchNull(obj object, t reflect.Type) *shapeProblem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := jsonFields(t)
	for _, m := range obj {
		if m.val != nil {
			continue
		}
		reason := "is null; a PATCH changes only the fields it gives and cannot clear one: leave " + m.key + " out to keep it, or give its new value"
		if f, ok := fields[m.key]; ok {
			for f.Kind() == reflect.Pointer {
				f = f.Elem()
			}
			if f.Kind() == reflect.Slice {
				reason += " ([] for none)"
			}
		}
		return &shapeProblem{path: m.key, reason: reason}
	}
	return nil
}

// checkShape compares a parsed value with the Go type it will be decoded
// into and reports the first mismatch in the body's order. Field names
// must match exactly: encoding/json would also take "Goals" or "GOALS" for
// goals, which next to goals would make one of the two silently win.
func checkShape(v any, t reflect.Type, path string) *shapeProblem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // null leaves the target as it is
	}
	if t == timeType {
		s, ok := v.(string)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a time in RFC 3339 format, e.g. 2026-05-01T12:00:00Z"}
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return &shapeProblem{path: path, reason: fmt.Sprintf("%q is not a time in RFC 3339 format, e.g. 2026-05-01T12:00:00Z", s)}
		}
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil // the type checks itself
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(object)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a JSON object"}
		}
		fields := jsonFields(t)
		for _, m := range obj {
			f, ok := fields[m.key]
			if !ok {
				return &shapeProblem{path: join(path, m.key), reason: unknownField(fields, m.key), unknown: true}
			}
			if p := checkShape(m.val, f, join(path, m.key)); p != nil {
				return p
			}
		}
		return nil
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a JSON array"}
		}
		for i, e := range arr {
			if p := checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != nil {
				return p
			}
		}
		return nil
	case reflect.Map:
		obj, ok := v.(object)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a JSON object"}
		}
		for _, m := range obj {
			if p := checkShape(m.val, t.Elem(), join(path, m.key)); p != nil {
				return p
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return &shapeProblem{path: path, reason: "must be a string"}
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return &shapeProblem{path: path, reason: "must be true or false"}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a whole number"}
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || i < -(1<<(t.Bits()-1)) || i > 1<<(t.Bits()-1)-1 {
			return &shapeProblem{path: path, reason: fmt.Sprintf("%s is not a whole number in range", n)}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a whole number"}
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			return &shapeProblem{path: path, reason: fmt.Sprintf("%s is not a non-negative whole number in range", n)}
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a number"}
		}
		if f, err := n.Float64(); err != nil || math.IsInf(f, 0) {
			return &shapeProblem{path: path, reason: fmt.Sprintf("%s is not a number in range", n)}
		}
	case reflect.Interface:
		return nil
	}
	return nil
}

// unknownField says why key is not one of fields, naming the field it
// differs from only in case.
func unknownField(fields map[string]reflect.Type, key string) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf("is not a field of this object; field names are matched exactly: did you mean %q?", name)
		}
	}
	return "is not a field of this object; check the spelling against the API reference"
}

// jsonFields maps the JSON names of t's fields (embedded structs
// flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func describeKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}
