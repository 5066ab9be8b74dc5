package httpapi

import (
	"encoding/base64"
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

// pageParams reads a list's limit and page_token query parameters: the
// page size, and the ID the page starts after (zero for the first page).
// It answers 400 naming the parameter and returns false when one is bad.
//
// A page token is the ID of the previous page's last row, base64url
// encoded: it names a position in the caller's own tenant's list and
// nothing else, so a made-up token can only skip ahead in it.
func pageParams(w http.ResponseWriter, r *http.Request) (after gocql.UUID, limit int, ok bool) {
	q := r.URL.Query()
	limit = defaultPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "limit", "limit: "+quote(v)+" must be 1 to "+strconv.Itoa(maxPage))
			return after, 0, false
		}
		limit = n
	}
	if tok := q.Get("page_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err == nil {
			after, err = gocql.UUIDFromBytes(b)
		}
		if err != nil || after == (gocql.UUID{}) {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "page_token", "page_token: is not a token from a previous page; start again without it")
			return after, 0, false
		}
	}
	return after, limit, true
}

// pageToken is the token of the page after the row next (a page's last
// row), or "" when no page follows (next is zero).
func pageToken(next gocql.UUID) string {
	if next == (gocql.UUID{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(next[:])
}
