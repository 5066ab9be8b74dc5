// Package queryparam reads a request's query string strictly, against the
// list of parameters its endpoint accepts.
//
// net/http's URL.Query reads loosely: a misspelt or unknown name is
// ignored (the endpoint answers as if it had not been sent), a name given
// twice yields its first value, and a pair it cannot read (an unencoded
// ";", a bad %-escape) is dropped without a word. Parse refuses each of
// these with an *Error whose Code is stable (CodeUnknown, CodeRepeated,
// CodeMalformed), whose Field is the parameter at fault and whose Message
// says how to send it instead.
package queryparam

import (
	"fmt"
	"net/url"
	"strings"
)

// The codes of the errors Parse returns.
const (
	// CodeMalformed: a pair of the query string cannot be read.
	CodeMalformed = "malformed_query"
	// CodeUnknown: a parameter the endpoint does not accept.
	CodeUnknown = "unknown_parameter"
	// CodeRepeated: a parameter given more than once that is not Repeatable.
	CodeRepeated = "repeated_parameter"
)

// Error is a query parameter that is wrong. Code is stable; Message tells a
// person how to fix it; Field names the parameter ("" when none can be).
type Error struct {
	Field   string
	Code    string
	Message string
	// Pair is, for CodeMalformed, the pair of the query string that could
	// not be read, as sent; a caller may word the refusal for its own
	// parameters from it.
	Pair string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

func newError(field, code, format string, args ...any) *Error {
	return &Error{Field: field, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Param is a query parameter that an endpoint accepts.
type Param struct {
	Name string
	// Repeatable: the parameter may be given more than once and every
	// value counts. Any other parameter given twice is refused, since which
	// value was meant cannot be known.
	Repeatable bool
}

// Values are the query parameters of one request to an endpoint, checked
// against the list of those it accepts. The endpoint reads them only
// through Get, Has and All, which panic on a name that is not in the list,
// so the list cannot miss a parameter that is read (the endpoint's tests
// read it).
type Values struct {
	values   url.Values
	accepted []Param
	read     map[string]bool
}

// Parse parses the raw query string of a request to endpoint (a path or
// pattern, for messages) that accepts the parameters in accepted. It
// refuses with an *Error a pair that cannot be read (CodeMalformed), a
// parameter that is not accepted (CodeUnknown: a misspelt name would be
// ignored and another answer than the one asked for served) and one given
// more than once that is not Repeatable (CodeRepeated: the first would be
// used and the others ignored).
//
// The refusal of an unknown name lists the accepted ones and suggests the
// one meant: a name that differs only in case or surrounding space, or one
// that aliases, keyed by lower-case name, maps to an accepted name (other
// APIs' names for the endpoint's parameters); aliases may be nil.
func Parse(raw, endpoint string, accepted []Param, aliases map[string]string) (*Values, error) {
	v, err := parseQuery(raw)
	if err != nil {
		return nil, err
	}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		name = unescapeOr(name)
		a, ok := find(accepted, name)
		if !ok {
			return nil, unknown(name, endpoint, accepted, aliases)
		}
		if vals := v[name]; len(vals) > 1 && !a.Repeatable {
			quoted := make([]string, len(vals))
			for i, s := range vals {
				if len(s) > 60 {
					s = s[:60] + "…"
				}
				quoted[i] = fmt.Sprintf("%q", s)
			}
			return nil, newError(name, CodeRepeated, "%s is given %d times (%s); give it once", name, len(vals), strings.Join(quoted, ", "))
		}
	}
	return &Values{values: v, accepted: accepted, read: map[string]bool{}}, nil
}

// Get returns the value of the accepted parameter name, or "".
func (p *Values) Get(name string) string {
	p.mark(name, false)
	return p.values.Get(name)
}

// Has reports whether the accepted parameter name was given, even empty.
func (p *Values) Has(name string) bool {
	p.mark(name, false)
	return p.values.Has(name)
}

// All returns every value of the accepted, Repeatable parameter name, in
// order; nil when it was not given.
func (p *Values) All(name string) []string {
	p.mark(name, true)
	return p.values[name]
}

// Unread returns the accepted parameters not read so far, for a test that
// an endpoint reads every parameter it lists (one it never read would be
// accepted and ignored).
func (p *Values) Unread() []string {
	var out []string
	for _, a := range p.accepted {
		if !p.read[a.Name] {
			out = append(out, a.Name)
		}
	}
	return out
}

func (p *Values) mark(name string, all bool) {
	a, ok := find(p.accepted, name)
	if !ok {
		panic(fmt.Sprintf("queryparam: parameter %q is read but not in the endpoint's list of accepted parameters", name))
	}
	if all && !a.Repeatable {
		panic(fmt.Sprintf("queryparam: every value of parameter %q is read, but it is not Repeatable", name))
	}
	p.read[name] = true
}

func find(accepted []Param, name string) (Param, bool) {
	for _, a := range accepted {
		if a.Name == name {
			return a, true
		}
	}
	return Param{}, false
}

func unknown(name, endpoint string, accepted []Param, aliases map[string]string) *Error {
	names := make([]string, len(accepted))
	for i, a := range accepted {
		names[i] = a.Name
	}
	hint := ""
	key := strings.ToLower(strings.TrimSpace(name))
	if alias, ok := aliases[key]; ok {
		key = alias
	}
	if _, ok := find(accepted, key); ok && key != name {
		hint = " (did you mean " + key + "?)"
	}
	switch len(names) {
	case 0:
		return newError(name, CodeUnknown, "%q is not a parameter of %s; it takes no query parameters", name, endpoint)
	case 1:
		return newError(name, CodeUnknown, "%q is not a parameter of %s%s; it takes only %s", name, endpoint, hint, names[0])
	}
	return newError(name, CodeUnknown, "%q is not a parameter of %s%s; valid: %s", name, endpoint, hint, strings.Join(names, ", "))
}

// parseQuery parses a request's raw query string. url.ParseQuery, behind
// net/http's URL.Query, skips a pair it cannot read and URL.Query drops
// the error. Here a pair that cannot be read is an *Error (CodeMalformed,
// the pair's parameter as Field) that says how to send it.
func parseQuery(raw string) (url.Values, error) {
	v, err := url.ParseQuery(raw)
	if err == nil {
		return v, nil
	}
	for _, pair := range strings.Split(raw, "&") {
		name, value, _ := strings.Cut(pair, "=")
		field := unescapeOr(name)
		var e *Error
		switch _, errName := url.QueryUnescape(name); {
		case strings.Contains(pair, ";"):
			e = newError(field, CodeMalformed,
				"the query string has an unencoded \";\" in %q: parameters are separated by &, and a ; inside a value must be sent as %%3B", pair)
		case errName != nil:
			e = newError(field, CodeMalformed, "the query string has a bad %%-escape in %q (%v): %% must be followed by two hex digits; send a literal %% as %%25", pair, errName)
		default:
			if _, err := url.QueryUnescape(value); err != nil {
				e = newError(field, CodeMalformed, "%s has a bad %%-escape in %q (%v): %% must be followed by two hex digits; send a literal %% as %%25", field, pair, err)
			}
		}
		if e != nil {
			e.Pair = pair
			return nil, e
		}
	}
	return nil, newError("", CodeMalformed, "the query string cannot be read: %v", err)
}

// unescapeOr returns s unescaped, or s itself where it cannot be.
func unescapeOr(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}
