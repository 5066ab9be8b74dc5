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

	"github.com/acme/analytics/pkg/httpserver"
)

// decodeJSON decodes the request body into v, which may hold defaults that
// absent fields keep. It answers the request itself and returns false when
// the body is not acceptable: too large (413), not JSON (400 invalid_json),
// a field this endpoint does not know (400 unknown_field) or a value of the
// wrong type (400 invalid_field), naming the field by its path
// (goals[1].value).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if httpserver.IsTooLarge(err) {
			httpserver.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the request body is too large: "+err.Error())
			return false
		}
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "could not read the request body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is empty; send a JSON object (Content-Type: application/json)")
		return false
	}
	// A generic decode first: it finds syntax errors with their offset,
	// and lets us name an unknown or mistyped field by its full path.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", describeSyntaxError(body, err))
		return false
	}
	if generic == nil {
		// null would leave every field as it is, or reset a whole document.
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body is null; send a JSON object")
		return false
	}
	if dec.More() {
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_json", "the request body holds more than one JSON value; send a single object")
		return false
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

func describeSyntaxError(body []byte, err error) string {
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

// checkShape compares a generically decoded value with the Go type it will
// be decoded into, as encoding/json would (field names matched exactly,
// else case-insensitively), and reports the first mismatch.
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
		obj, ok := v.(map[string]any)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a JSON object"}
		}
		fields := jsonFields(t)
		for key, val := range obj {
			f, ok := fields[key]
			if !ok {
				for name, ff := range fields {
					if strings.EqualFold(name, key) {
						f, ok = ff, true
						break
					}
				}
			}
			if !ok {
				return &shapeProblem{path: join(path, key), reason: "is not a field of this object; check the spelling against the API reference", unknown: true}
			}
			if p := checkShape(val, f, join(path, key)); p != nil {
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
		obj, ok := v.(map[string]any)
		if !ok {
			return &shapeProblem{path: path, reason: "must be a JSON object"}
		}
		for k, e := range obj {
			if p := checkShape(e, t.Elem(), join(path, k)); p != nil {
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
