package query

import (
	"fmt"
	"net/url"
	"strings"
)

// Param is a query parameter that an endpoint accepts.
type Param struct {
	Name string
	// Repeatable: the parameter may be given more than once and every
	// value counts. Any other parameter given twice is refused, since which
	// value was meant cannot be known.
	Repeatable bool
}

// Params are the query parameters of one request to an endpoint, checked
// against the list of those it accepts. The endpoint reads them only
// through Get and All, which panic on a name that is not in the list, so
// the list cannot miss a parameter that is read (a test reads them all).
type Params struct {
	values   url.Values
	accepted []Param
	read     map[string]bool
}

// ParseParams parses the raw query string of a request to endpoint (its
// path, for messages) that accepts the parameters in accepted. It refuses
// with a *ParamError a pair that cannot be read (malformed_query, see
// parseQuery), a parameter that is not accepted (unknown_parameter: a misspelt name, or GA's filters or
// start_date, would be ignored and another report than the one asked for
// served) and one given more than once that is not Repeatable
// (repeated_parameter: the first would be used and the others ignored).
func ParseParams(raw, endpoint string, accepted []Param) (*Params, error) {
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
		a, ok := findParam(accepted, name)
		if !ok {
			return nil, unknownParam(name, endpoint, accepted)
		}
		if vals := v[name]; len(vals) > 1 && !a.Repeatable {
			quoted := make([]string, len(vals))
			for i, s := range vals {
				if len(s) > 60 {
					s = s[:60] + "…"
				}
				quoted[i] = fmt.Sprintf("%q", s)
			}
			return nil, paramErr(name, "repeated_parameter", "%s is given %d times (%s); give it once", name, len(vals), strings.Join(quoted, ", "))
		}
	}
	return &Params{values: v, accepted: accepted, read: map[string]bool{}}, nil
}

// Get returns the value of the accepted parameter name, or "".
func (p *Params) Get(name string) string {
	p.mark(name, false)
	return p.values.Get(name)
}

// All returns every value of the accepted, Repeatable parameter name, in
// order; nil when it was not given.
func (p *Params) All(name string) []string {
	p.mark(name, true)
	return p.values[name]
}

func (p *Params) mark(name string, all bool) {
	a, ok := findParam(p.accepted, name)
	if !ok {
		panic(fmt.Sprintf("query: parameter %q is read but not in the endpoint's list of accepted parameters", name))
	}
	if all && !a.Repeatable {
		panic(fmt.Sprintf("query: every value of parameter %q is read, but it is not Repeatable", name))
	}
	p.read[name] = true
}

// unread returns the accepted parameters not read so far.
func (p *Params) unread() []string {
	var out []string
	for _, a := range p.accepted {
		if !p.read[a.Name] {
			out = append(out, a.Name)
		}
	}
	return out
}

func findParam(accepted []Param, name string) (Param, bool) {
	for _, a := range accepted {
		if a.Name == name {
			return a, true
		}
	}
	return Param{}, false
}

// paramAliases are names that other analytics APIs (GA's Core Reporting
// API, GA4's Data API) or habit give parameters of ours.
var paramAliases = map[string]string{
	"filters": "filter", "dimension": "dimensions", "metric": "metrics",
	"start_date": "from", "start-date": "from", "startdate": "from", "from_date": "from", "since": "from",
	"end_date": "to", "end-date": "to", "enddate": "to", "to_date": "to", "until": "to",
	"date_range": "range", "date-range": "range", "daterange": "range", "preset": "range",
	"max-results": "limit", "max_results": "limit", "maxresults": "limit", "page_size": "limit", "pagesize": "limit",
	"start-index": "offset", "start_index": "offset", "startindex": "offset",
	"order": "sort", "order_by": "sort", "orderby": "sort", "order_bys": "sort", "orderbys": "sort",
	"ids": "property_id", "property": "property_id", "propertyid": "property_id", "property-id": "property_id",
	"output": "format",
}

func unknownParam(name, endpoint string, accepted []Param) *ParamError {
	names := make([]string, len(accepted))
	for i, a := range accepted {
		names[i] = a.Name
	}
	hint := ""
	key := strings.ToLower(strings.TrimSpace(name))
	if alias, ok := paramAliases[key]; ok {
		key = alias
	}
	if _, ok := findParam(accepted, key); ok && key != name {
		hint = " (did you mean " + key + "?)"
	}
	if len(names) == 1 {
		return paramErr(name, "unknown_parameter", "%q is not a parameter of %s%s; it takes only %s", name, endpoint, hint, names[0])
	}
	return paramErr(name, "unknown_parameter", "%q is not a parameter of %s%s; valid: %s", name, endpoint, hint, strings.Join(names, ", "))
}

// parseQuery parses a request's raw query string. url.ParseQuery, behind
// net/http's URL.Query, skips a pair it cannot read and URL.Query drops
// the error, so a filter with an unencoded ";" (the documented AND) was
// ignored and the unfiltered report served. Here a pair that cannot be
// read is a *ParamError (code malformed_query, the pair's parameter as
// field) that says how to send it.
func parseQuery(raw string) (url.Values, error) {
	v, err := url.ParseQuery(raw)
	if err == nil {
		return v, nil
	}
	for _, pair := range strings.Split(raw, "&") {
		name, value, _ := strings.Cut(pair, "=")
		field := unescapeOr(name)
		if strings.Contains(pair, ";") {
			if field == "filter" {
				return nil, paramErr(field, "malformed_query",
					"filter has an unencoded \";\" (%s). In a filter, ; means AND and must be URL-encoded as %%3B, as the whole expression should be: filter=%s (or send one filter parameter per condition)",
					pair, url.QueryEscape(unescapeOr(value)))
			}
			return nil, paramErr(field, "malformed_query",
				"the query string has an unencoded \";\" in %q: parameters are separated by &, and a ; inside a value must be sent as %%3B", pair)
		}
		if _, err := url.QueryUnescape(name); err != nil {
			return nil, paramErr(field, "malformed_query", "the query string has a bad %%-escape in %q (%v): %% must be followed by two hex digits; send a literal %% as %%25", pair, err)
		}
		if _, err := url.QueryUnescape(value); err != nil {
			return nil, paramErr(field, "malformed_query", "%s has a bad %%-escape in %q (%v): %% must be followed by two hex digits; send a literal %% as %%25", field, pair, err)
		}
	}
	return nil, paramErr("", "malformed_query", "the query string cannot be read: %v", err)
}

// unescapeOr returns s unescaped, or s itself where it cannot be.
func unescapeOr(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}
