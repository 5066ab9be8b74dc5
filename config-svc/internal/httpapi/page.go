package httpapi

import (
	"net/http"
	"strconv"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/gocql/gocql"
)

// Bounds of a page of a tenant's properties or users. A page of 500
// properties is 500 reads of Cassandra (store.Properties reads them 16 at
// a time), well inside the request timeout.
const (
	defaultPage = 100
	maxPage     = 500
)

// pageParams reads the limit and after query parameters of a list of what
// ("property", "user") ordered by ID: the page size, and the ID the page
// starts after (zero for the first page). As the rule history pages by
// version number (before, next_before), a list pages by the last ID of
// the previous page (after, next_after): a position in the caller's own
// tenant's list and nothing else. It answers 400 naming the parameter and
// returns false when one is bad.
func pageParams(w http.ResponseWriter, r *http.Request, what string) (after gocql.UUID, limit int, ok bool) {
	if limit, ok = pageLimit(w, r, defaultPage, maxPage); !ok {
		return after, 0, false
	}
	if v := query(r).Get("after"); v != "" {
		id, err := gocql.ParseUUID(v)
		if err != nil {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "after",
				"after: "+quote(v)+" is not a "+what+" ID; give the next_after of the previous page, or leave it out for the first page")
			return after, 0, false
		}
		after = id
	}
	return after, limit, true
}

// pageLimit reads the limit query parameter of a paged answer: def when
// absent, else 1 to most. It answers 400 and returns false when it is bad.
func pageLimit(w http.ResponseWriter, r *http.Request, def, most int) (int, bool) {
	v := query(r).Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "limit", "limit: "+quote(v)+" must be 1 to "+strconv.Itoa(most))
		return 0, false
	}
	return n, true
}

// nextAfter is the after of the page that follows the one whose last row
// is next, or "" when no page follows (next is zero).
func nextAfter(next gocql.UUID) string {
	if next == (gocql.UUID{}) {
		return ""
	}
	return next.String()
}
