package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// pageThrough reads every page of the list at path (its rows under key) at
// the given limit ("" for the default) and returns the IDs in the order
// served, failing the test if a page is larger than the limit or the
// paging does not end.
func pageThrough[T any](t *testing.T, e *env, as who, path, key, limit string, id func(T) string) (ids []string, pages int) {
	t.Helper()
	token := ""
	for {
		q := url.Values{}
		if limit != "" {
			q.Set("limit", limit)
		}
		if token != "" {
			q.Set("page_token", token)
		}
		var page map[string]json.RawMessage
		e.must(http.StatusOK, as, "GET", path+"?"+q.Encode(), nil).decode(t, &page)
		var rows []T
		if err := json.Unmarshal(page[key], &rows); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		pages++
		if n, max := len(rows), limitOf(limit); n > max {
			t.Fatalf("page %d of %s has %d rows; the limit is %d", pages, path, n, max)
		}
		for _, r := range rows {
			ids = append(ids, id(r))
		}
		token = ""
		if raw, ok := page["next_page_token"]; ok {
			if err := json.Unmarshal(raw, &token); err != nil || token == "" {
				t.Fatalf("next_page_token %s is not a token", raw)
			}
		}
		if token == "" {
			return ids, pages
		}
		if pages > 100 {
			t.Fatalf("paging %s at limit %s does not end", path, limit)
		}
	}
}

func limitOf(limit string) int {
	if limit == "" {
		return defaultPage
	}
	var n int
	fmt.Sscan(limit, &n)
	return n
}

// TestPropertiesArePaged: every page size serves each of the tenant's
// properties exactly once, in the order of their IDs (the documented
// order), and never another tenant's or a deleted one.
func TestPropertiesArePaged(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Agency")
	other := e.signup("Other")
	e.createProperty(other, map[string]any{"name": "not yours"})
	var want []string
	for i := range 8 {
		want = append(want, e.createProperty(a, map[string]any{"name": fmt.Sprintf("site %d", i)}).ID)
	}
	gone := want[3]
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+gone, nil)
	want = slices.DeleteFunc(want, func(id string) bool { return id == gone })
	slices.Sort(want)

	for _, tt := range []struct {
		limit     string
		wantPages int
	}{
		{"1", 7}, {"2", 4}, {"3", 3}, {"6", 2}, {"7", 1}, {"8", 1}, {"500", 1}, {"", 1},
	} {
		t.Run("limit="+tt.limit, func(t *testing.T) {
			got, pages := pageThrough(t, e, a.as(), "/v1/properties", "properties", tt.limit, func(p PropertyJSON) string { return p.ID })
			if !slices.Equal(got, want) {
				t.Fatalf("served %v\nwant    %v (each once, ordered by id)", got, want)
			}
			if pages != tt.wantPages {
				t.Fatalf("%d pages, want %d (no empty last page)", pages, tt.wantPages)
			}
		})
	}
}

// TestUsersArePaged: the users list pages as the properties list does.
func TestUsersArePaged(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Team")
	e.signup("Other team")
	want := []string{a.tokens.UserID}
	for _, role := range []string{"viewer", "viewer", "admin", "viewer"} {
		want = append(want, e.addUser(a, role).tokens.UserID)
	}
	slices.Sort(want)
	for _, tt := range []struct {
		limit     string
		wantPages int
	}{
		{"1", 5}, {"2", 3}, {"4", 2}, {"5", 1}, {"", 1},
	} {
		t.Run("limit="+tt.limit, func(t *testing.T) {
			got, pages := pageThrough(t, e, a.as(), "/v1/users", "users", tt.limit, func(u UserJSON) string { return u.ID })
			if !slices.Equal(got, want) || pages != tt.wantPages {
				t.Fatalf("served %v in %d pages\nwant    %v in %d (each once, ordered by id)", got, pages, want, tt.wantPages)
			}
		})
	}
}
