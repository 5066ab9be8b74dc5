package query

import (
	"net/url"
	"strings"
)

// ParseQuery parses a request's raw query string. url.ParseQuery, behind
// net/http's URL.Query, skips a pair it cannot read and URL.Query drops
// the error, so a filter with an unencoded ";" (the documented AND) was
// ignored and the unfiltered report served. Here a pair that cannot be
// read is a *ParamError (code malformed_query, the pair's parameter as
// field) that says how to send it.
func ParseQuery(raw string) (url.Values, error) {
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
