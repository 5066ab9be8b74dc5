package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/gocql/gocql"
)

// pageThrough reads every page of the list at path (its rows under key) at
// the given limit ("" for the default) and returns the IDs in the order
// served, failing the test if a page is larger than the limit or the
// paging does not end.
func pageThrough[T any](t *testing.T, e *env, as who, path, key, limit string, id func(T) string) (ids []string, pages int) {
	t.Helper()
	after := ""
	for {
		q := url.Values{}
		if limit != "" {
			q.Set("limit", limit)
		}
		if after != "" {
			q.Set("after", after)
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
		after = ""
		if raw, ok := page["next_after"]; ok {
			if err := json.Unmarshal(raw, &after); err != nil || after != ids[len(ids)-1] {
				t.Fatalf("next_after %s is not the page's last ID", raw)
			}
		}
		if after == "" {
			return ids, pages
		}
		if pages > 100 {
			t.Fatalf("paging %s at limit %s does not end", path, limit)
		}
	}
}

// feedHead is the head of the change feed in Cassandra.
func (e *env) feedHead() int64 {
	e.t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return h
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

// TestPropertyLimit: a tenant at -max-properties-per-tenant is refused one
// more with a 409 that names the limit, and nothing of it is written (no
// tracking ID claimed, no property, no change announced); a deletion frees
// a place; concurrent creations never pass the limit; and a tenant made
// before the count was kept is counted from its list.
func TestPropertyLimit(t *testing.T) {
	const limit = 3
	e := newEnv(t, func(o *Options) { o.MaxPropertiesPerTenant = limit })
	db := e.session()
	listed := func(a account) int {
		t.Helper()
		ids, _ := pageThrough(t, e, a.as(), "/v1/properties", "properties", "", func(p PropertyJSON) string { return p.ID })
		return len(ids)
	}

	a := e.signup("Capped")
	var ps []PropertyJSON
	for i := range limit {
		ps = append(ps, e.createProperty(a, map[string]any{"name": fmt.Sprintf("site %d", i)}))
	}
	var tids, tidsAfter int
	count := `SELECT COUNT(*) FROM tracking_ids`
	if err := db.Query(count).Scan(&tids); err != nil {
		t.Fatal(err)
	}
	head := e.feedHead()
	r := e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "one too many"})
	if got := r.apiError(); got.Code != "conflict" || !strings.Contains(got.Message, "maximum of 3 properties") {
		t.Fatalf("refusal = %s; want conflict naming the limit of 3", r.body)
	}
	if err := db.Query(count).Scan(&tidsAfter); err != nil {
		t.Fatal(err)
	}
	if listed(a) != limit || tidsAfter != tids || e.feedHead() != head || storedCount(t, db, a) != limit {
		t.Fatal("a refused creation wrote something")
	}

	// Other tenants have their own limit; a deletion frees a place.
	e.createProperty(e.signup("Uncapped"), map[string]any{"name": "fine"})
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+ps[0].ID, nil)
	e.createProperty(a, map[string]any{"name": "in the freed place"})
	e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "still too many"})

	// Concurrent creations: exactly the limit succeed.
	b := e.signup("Race")
	var wg sync.WaitGroup
	var created atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch r := e.do(b.as(), "POST", "/v1/properties", map[string]any{"name": fmt.Sprintf("racer %d", i)}); r.code {
			case http.StatusCreated:
				created.Add(1)
			case http.StatusConflict:
			default:
				t.Errorf("concurrent creation = %d %s", r.code, r.body)
			}
		}()
	}
	wg.Wait()
	if created.Load() != limit || listed(b) != limit {
		t.Fatalf("%d of 8 concurrent creations succeeded (%d listed); want the limit, %d", created.Load(), listed(b), limit)
	}

	// Tenants whose properties were made before the count was kept: it
	// is taken from their list, by a creation or by a deletion.
	forget := func(a account) {
		t.Helper()
		if err := db.Query(`DELETE FROM tenant_property_counts WHERE tenant_id = ?`, a.tokens.TenantID).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	forget(b)
	e.must(http.StatusConflict, b.as(), "POST", "/v1/properties", map[string]any{"name": "counted from the list"})
	if n := storedCount(t, db, b); n != limit {
		t.Fatalf("count taken from the list = %d, want %d", n, limit)
	}
	forget(a)
	var page PropertyList
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties", nil).decode(t, &page)
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+page.Properties[0].ID, nil)
	if n := storedCount(t, db, a); n != limit-1 {
		t.Fatalf("count taken from the list at a deletion = %d, want %d", n, limit-1)
	}
}

// TestConcurrentDeletionsFreeOnePlace: of concurrent deletions of one
// property exactly one succeeds and gives its place back (one change
// announced); the others are answered 404, as after it, so the count does
// not go below the properties there are and the limit still holds.
func TestConcurrentDeletionsFreeOnePlace(t *testing.T) {
	const limit, racers = 3, 8
	e := newEnv(t, func(o *Options) { o.MaxPropertiesPerTenant = limit })
	a := e.signup("Deleters")
	var ps []PropertyJSON
	for i := range limit {
		ps = append(ps, e.createProperty(a, map[string]any{"name": fmt.Sprintf("site %d", i)}))
	}
	head := e.feedHead()
	var wg sync.WaitGroup
	var deleted atomic.Int32
	start := make(chan struct{})
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch r := e.do(a.as(), "DELETE", "/v1/properties/"+ps[0].ID, nil); r.code {
			case http.StatusNoContent:
				deleted.Add(1)
			case http.StatusNotFound:
			default:
				t.Errorf("concurrent deletion = %d %s", r.code, r.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	if deleted.Load() != 1 || e.feedHead() != head+1 {
		t.Fatalf("%d of %d concurrent deletions succeeded, %d changes announced; want 1 and 1", deleted.Load(), racers, e.feedHead()-head)
	}
	if n := storedCount(t, e.session(), a); n != limit-1 {
		t.Fatalf("count after one property was deleted = %d, want %d", n, limit-1)
	}
	e.createProperty(a, map[string]any{"name": "in the freed place"})
	e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "one too many"})
}

// TestPropertyCountTooHighIsCorrected: a count above the properties there
// are (a place not given back, a deletion through an instance older than
// the count) does not refuse the tenant: at the limit the count is taken
// again from the tenant's list, corrected, and the creation refused only
// if the list confirms it; a tenant is recounted at most once a minute.
func TestPropertyCountTooHighIsCorrected(t *testing.T) {
	const limit = 3
	e := newEnv(t, func(o *Options) { o.MaxPropertiesPerTenant = limit })
	db := e.session()
	a := e.signup("Drifted")
	var ps []PropertyJSON
	for i := range limit - 1 {
		ps = append(ps, e.createProperty(a, map[string]any{"name": fmt.Sprintf("site %d", i)}))
	}
	// setCount writes the count as if the last recount were long ago.
	setCount := func(n int) {
		t.Helper()
		if err := db.Query(`UPDATE tenant_property_counts SET properties = ?, recounted_at = null WHERE tenant_id = ?`, n, a.tokens.TenantID).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	forgetRecount := func() {
		t.Helper()
		if err := db.Query(`UPDATE tenant_property_counts SET recounted_at = null WHERE tenant_id = ?`, a.tokens.TenantID).Exec(); err != nil {
			t.Fatal(err)
		}
	}

	// A place that was never given back: the count says 3 of 3.
	setCount(limit)
	ps = append(ps, e.createProperty(a, map[string]any{"name": "in a place the count had lost"}))
	if n := storedCount(t, db, a); n != limit {
		t.Fatalf("count after the corrected creation = %d, want %d", n, limit)
	}
	// Recounted just now, and right: refused without reading the list.
	e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "one too many"})
	// A recount that confirms the limit refuses too.
	forgetRecount()
	e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "still one too many"})
	if n := storedCount(t, db, a); n != limit {
		t.Fatalf("count after a confirming recount = %d, want %d", n, limit)
	}

	// A deletion through an instance that does not keep the count: the
	// property is marked and unlisted, its place not given back.
	pid, err := gocql.ParseUUID(ps[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Query(`UPDATE properties SET deleted_at = ? WHERE property_id = ?`, time.Now(), pid).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := db.Query(`DELETE FROM properties_by_tenant WHERE tenant_id = ? AND property_id = ?`, a.tokens.TenantID, pid).Exec(); err != nil {
		t.Fatal(err)
	}
	// Within a minute of the last recount the count is trusted; after
	// it, the list corrects it.
	e.must(http.StatusConflict, a.as(), "POST", "/v1/properties", map[string]any{"name": "refused until the next recount"})
	forgetRecount()
	e.createProperty(a, map[string]any{"name": "in the place of the one deleted"})
	if n := storedCount(t, db, a); n != limit {
		t.Fatalf("count after the corrected creation = %d, want %d", n, limit)
	}

	// Concurrent creations at a count two too high never pass the limit;
	// one recount later, the places the count had lost are given.
	b := e.signup("Drifted race")
	for i := range limit - 2 {
		e.createProperty(b, map[string]any{"name": fmt.Sprintf("site %d", i)})
	}
	if err := db.Query(`UPDATE tenant_property_counts SET properties = ?, recounted_at = null WHERE tenant_id = ?`, limit, b.tokens.TenantID).Exec(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if r := e.do(b.as(), "POST", "/v1/properties", map[string]any{"name": fmt.Sprintf("racer %d", i)}); r.code != http.StatusCreated && r.code != http.StatusConflict {
				t.Errorf("concurrent creation = %d %s", r.code, r.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	listed := func() int {
		ids, _ := pageThrough(t, e, b.as(), "/v1/properties", "properties", "", func(p PropertyJSON) string { return p.ID })
		return len(ids)
	}
	if n := listed(); n > limit {
		t.Fatalf("%d properties listed after concurrent creations, limit %d", n, limit)
	}
	if err := db.Query(`UPDATE tenant_property_counts SET recounted_at = null WHERE tenant_id = ?`, b.tokens.TenantID).Exec(); err != nil {
		t.Fatal(err)
	}
	for i := listed(); i < limit; i++ {
		e.createProperty(b, map[string]any{"name": fmt.Sprintf("after the race %d", i)})
	}
	e.must(http.StatusConflict, b.as(), "POST", "/v1/properties", map[string]any{"name": "one too many"})
	if n := storedCount(t, db, b); n != limit {
		t.Fatalf("count after the race = %d, want %d", n, limit)
	}
}

// TestFailedCreationFreesItsPlace: a creation that fails after taking its
// place in the tenant's count (here every tracking ID candidate is taken)
// gives it back.
func TestFailedCreationFreesItsPlace(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.NewTrackingID = func() (string, error) { return "AT-2222222222", nil }
	})
	a := e.signup("Unlucky")
	e.createProperty(a, map[string]any{"name": "holds the only tracking ID"})
	e.must(http.StatusServiceUnavailable, a.as(), "POST", "/v1/properties", map[string]any{"name": "finds none"})
	if n := storedCount(t, e.session(), a); n != 1 {
		t.Fatalf("count after a failed creation = %d, want 1", n)
	}
}

// session is a CQL session on the instance's keyspace, for looking at rows.
func (e *env) session() *gocql.Session {
	e.t.Helper()
	s, err := cassandra.Connect(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Close)
	return s
}

// storedCount is a's tenant's property count as stored.
func storedCount(t *testing.T, db *gocql.Session, a account) int {
	t.Helper()
	var n int
	if err := db.Query(`SELECT properties FROM tenant_property_counts WHERE tenant_id = ?`, a.tokens.TenantID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
