package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/queryparam"
)

// The query parameters of the routes that take any (Route.Query). A route
// without a list takes none.
var (
	pageQuery     = []queryparam.Param{{Name: "limit"}, {Name: "after"}}
	rulesQuery    = []queryparam.Param{{Name: "at"}}
	versionsQuery = []queryparam.Param{{Name: "limit"}, {Name: "before"}}
	changesQuery  = []queryparam.Param{{Name: "since"}, {Name: "wait"}, {Name: "limit"}}
)

type queryKey struct{}

// withQuery reads the query string of a request to rt strictly: a
// parameter rt does not take, one given twice and a pair that cannot be
// read are answered 400 (unknown_parameter, repeated_parameter,
// malformed_query) naming the parameter, where r.URL.Query would ignore
// them and answer as if they had not been sent (GET .../rules?version=3
// the current rules). The handler reads the parameters with query(r).
func withQuery(rt Route, next http.Handler) http.Handler {
	endpoint := rt.Method + " " + rt.Path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := queryparam.Parse(r.URL.RawQuery, endpoint, rt.Query, nil)
		if err != nil {
			var pe *queryparam.Error
			errors.As(err, &pe) // Parse returns nothing else
			httpserver.WriteFieldError(w, http.StatusBadRequest, pe.Code, pe.Field, pe.Message)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), queryKey{}, v)))
	})
}

// query returns the query parameters of a request that withQuery let
// through. Reading one that is not in its route's Query panics, so a
// handler cannot read a parameter that the route would refuse.
func query(r *http.Request) *queryparam.Values {
	v, ok := r.Context().Value(queryKey{}).(*queryparam.Values)
	if !ok {
		panic("httpapi: query parameters read outside withQuery")
	}
	return v
}

// parseQueryTime parses the RFC 3339 time of query parameter name. A +
// in a query string is read as a space, so the offset of
// 2026-05-01T12:00:00+02:00 sent as it is arrives as " 02:00": that is
// refused saying to send the + as %2B, as report-svc refuses it, rather
// than accepted here alone (a space is not RFC 3339, and the same URL
// elsewhere would mean something else).
func parseQueryTime(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	if i := strings.LastIndexByte(s, ' '); i > 0 {
		plus := s[:i] + "+" + s[i+1:]
		if _, err := time.Parse(time.RFC3339Nano, plus); err == nil {
			return time.Time{}, errors.New(name + ": " + quote(s) + " has a space where its UTC offset's + belongs: a + in a query string is read as a space, so send it as %2B: " +
				name + "=" + strings.ReplaceAll(url.QueryEscape(plus), "%3A", ":") + " (or give the time in UTC, ending in Z)")
		}
	}
	var pe *time.ParseError
	if errors.As(err, &pe) && strings.HasSuffix(pe.Message, " out of range") {
		// In the format, but no such time: "not in RFC 3339 format" would
		// send the caller looking for a mistake of form.
		return time.Time{}, errors.New(name + ": " + quote(s) + " is not a time: " + outOfRange(s, strings.TrimPrefix(pe.Message, ": ")))
	}
	return time.Time{}, errors.New(name + ": " + quote(s) + " is not a time in RFC 3339 format, e.g. 2026-05-01T12:00:00Z")
}

// outOfRange says which part of s, an RFC 3339 time whose part problem
// (time.ParseError's "day out of range") is out of range, does not exist.
func outOfRange(s, problem string) string {
	var y, m, d int
	if _, err := fmt.Sscanf(s, "%4d-%2d-%2d", &y, &m, &d); err == nil {
		switch {
		case problem == "month out of range":
			return fmt.Sprintf("there is no month %d (YYYY-MM-DD: the month comes before the day)", m)
		case problem == "day out of range" && m >= 1 && m <= 12:
			days := time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
			return fmt.Sprintf("%s %d has no day %d (it has days 1 to %d)", time.Month(m), y, d, days)
		}
	}
	return "its " + problem + " (hours are 00 to 23, minutes and seconds 00 to 59)"
}
