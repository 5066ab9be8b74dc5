package hit

import (
	"errors"
	"net/url"
	"strings"
)

// The gateway rate-limits a hit request by the tracking ID in its query
// string and collection looks the property up by it: both read it with
// QueryTrackingID, and collection refuses with CheckQueryTrackingID a
// query in which another reader (url.ParseQuery, a parser unescaping
// names, one keeping the last value) could find another tracking ID, so
// that a hit accepted for a property was counted against its bucket.

// Errors of CheckQueryTrackingID.
var (
	ErrTrackingIDRepeated    = errors.New("the tracking ID parameter is given more than once")
	ErrTrackingIDNameEscaped = errors.New("the tracking ID parameter's name is percent-encoded")
	ErrTrackingIDUnreadable  = errors.New("the tracking ID parameter has a ';' or a bad percent-encoding")
)

// QueryTrackingID returns the value of the first name=value pair of a raw
// query string whose name is param exactly as sent (not unescaped),
// unescaped; "" when there is none or its value is not valid
// percent-encoding. Pairs are separated by '&' only: a ';' is part of the
// value.
func QueryTrackingID(rawQuery, param string) string {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == param {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return u
		}
	}
	return ""
}

// CheckQueryTrackingID returns an error (one of the ErrTrackingID ones)
// when readers of a raw query string may disagree on its param: it is
// given more than once (as a name alone too), under a percent-encoded
// name that decodes to param, or in a pair with a ';' or a bad
// percent-encoding, which url.ParseQuery drops. Otherwise every reader
// finds QueryTrackingID's value, or none.
func CheckQueryTrackingID(rawQuery, param string) error {
	seen := false
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != param {
			if strings.ContainsAny(k, "%+") {
				if u, err := url.QueryUnescape(k); err == nil && u == param {
					return ErrTrackingIDNameEscaped
				}
			}
			continue
		}
		if seen {
			return ErrTrackingIDRepeated
		}
		seen = true
		if _, err := url.QueryUnescape(v); err != nil || strings.Contains(v, ";") {
			return ErrTrackingIDUnreadable
		}
	}
	return nil
}
