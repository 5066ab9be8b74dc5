package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/gocql/gocql"
)

func TestInternalPropertyDocument(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Docs")
	p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}, "time_zone": "America/New_York", "currency": "USD", "cookieless": true})
	var sec NewSecretJSON
	e.must(http.StatusCreated, a.as(), "POST", "/v1/properties/"+p.ID+"/api-secrets", map[string]string{"name": "server"}).decode(t, &sec)
	var revoked NewSecretJSON
	e.must(http.StatusCreated, a.as(), "POST", "/v1/properties/"+p.ID+"/api-secrets", map[string]string{"name": "old"}).decode(t, &revoked)
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+p.ID+"/api-secrets/"+revoked.ID, nil)

	var byID, byTID configclient.Property
	e.must(http.StatusOK, service("processing"), "GET", "/internal/v1/properties/"+p.ID, nil).decode(t, &byID)
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/properties/by-tracking-id/"+p.TrackingID, nil).decode(t, &byTID)
	sum := sha256.Sum256([]byte(sec.Secret))
	if byID.TenantID != a.tokens.TenantID || byID.TrackingID != p.TrackingID || byID.TimeZone != "America/New_York" || !byID.Cookieless ||
		byID.ProcessingShards != 1 || len(byID.APISecretSHA256) != 1 || byID.APISecretSHA256[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("document = %+v", byID)
	}
	if byTID.PropertyID != byID.PropertyID || byTID.Rules.Version != byID.Rules.Version {
		t.Fatalf("by tracking ID %+v differs from by ID %+v", byTID, byID)
	}

	// The secrets list shows them masked, never the secret.
	var list struct {
		APISecrets []SecretJSON `json:"api_secrets"`
	}
	r := e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+p.ID+"/api-secrets", nil)
	r.decode(t, &list)
	if len(list.APISecrets) != 2 || list.APISecrets[0].Status != "active" || list.APISecrets[1].Status != "revoked" || list.APISecrets[1].RevokedAt == nil ||
		list.APISecrets[0].Masked != "as_…"+sec.Secret[len(sec.Secret)-4:] {
		t.Fatalf("secrets = %+v", list)
	}
	if bytesContains(r.body, sec.Secret) || bytesContains(r.body, byID.APISecretSHA256[0]) {
		t.Fatal("the secrets list shows a secret or its hash")
	}

	for _, path := range []string{
		"/internal/v1/properties/by-tracking-id/AT-NOTREALXYZ", // not of the form
		"/internal/v1/properties/by-tracking-id/AT-ZZZZZZZZZZ", // of the form, unknown
		"/internal/v1/properties/not-a-uuid",
		"/internal/v1/properties/00000000-0000-4000-8000-000000000000",
		"/internal/v1/properties/00000000-0000-4000-8000-000000000000/rules/versions",
	} {
		e.must(http.StatusNotFound, service("collection"), "GET", path, nil)
	}
	e.must(http.StatusNotFound, service("operator"), "PUT", "/internal/v1/properties/00000000-0000-4000-8000-000000000000/processing-shards", map[string]int{"processing_shards": 2})

	// A deleted property is gone for the pipeline too.
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+p.ID, nil)
	e.must(http.StatusNotFound, service("collection"), "GET", "/internal/v1/properties/by-tracking-id/"+p.TrackingID, nil)
	e.must(http.StatusNotFound, a.as(), "GET", "/v1/properties/"+p.ID, nil)
}

func bytesContains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// TestChangesLongPoll: the feed answers at once when there is something
// after since, waits otherwise, and wakes as soon as a change is made.
func TestChangesLongPoll(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Feed")
	var head configclient.Changes
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes", nil).decode(t, &head)

	// Nothing new: an empty answer after the wait, at the same position.
	start := time.Now()
	var empty configclient.Changes
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes?wait=200ms&since="+strconv.FormatInt(head.Seq, 10), nil).decode(t, &empty)
	if empty.Seq != head.Seq || len(empty.Changes) != 0 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("empty poll = %+v after %s", empty, time.Since(start))
	}

	// A waiting poll wakes when a property is created.
	got := make(chan configclient.Changes, 1)
	go func() {
		var c configclient.Changes
		r := e.do(service("collection"), "GET", "/internal/v1/changes?wait=20s&since="+strconv.FormatInt(head.Seq, 10), nil)
		if r.code == http.StatusOK {
			r.decode(t, &c)
		}
		got <- c
	}()
	eventually.True(t, changeDeadline, "the long poll is waiting", func() bool { return e.longPolls() == 1 })
	created := time.Now()
	p := e.createProperty(a, map[string]any{"name": "Site"})
	var c configclient.Changes
	select {
	case c = <-got:
	case <-time.After(changeDeadline):
		t.Fatal("the long poll did not wake within 5s of a change")
	}
	if len(c.Changes) != 1 || c.Seq != head.Seq+1 || c.Changes[0].PropertyID != p.ID || c.Changes[0].TrackingID != p.TrackingID ||
		c.Changes[0].Kind != configclient.ChangeProperty || c.Changes[0].TenantID != a.tokens.TenantID {
		t.Fatalf("woken poll = %+v", c)
	}
	t.Logf("long poll woke %s after the change", time.Since(created))

	// Paging: limit bounds an answer, seq says where to go on.
	e.must(http.StatusOK, a.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"bot_filtering": false})
	e.must(http.StatusOK, a.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"bot_filtering": true})
	var page configclient.Changes
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes?limit=2&since="+strconv.FormatInt(head.Seq, 10), nil).decode(t, &page)
	if len(page.Changes) != 2 || page.Seq != head.Seq+2 {
		t.Fatalf("limited page = %+v", page)
	}
	// A position ahead of the head is from another feed: 410.
	e.must(http.StatusGone, service("collection"), "GET", "/internal/v1/changes?since="+strconv.FormatInt(head.Seq+1000, 10), nil)
}

func (e *env) longPolls() int {
	mfs, _ := e.feedRegistry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "config_feed_long_polls" {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return -1
}

// TestLongPollsEndAtShutdown: once shutdown begins, waiting long polls
// answer at once, so they never hold up the drain.
func TestLongPollsEndAtShutdown(t *testing.T) {
	e := newEnv(t)
	var head configclient.Changes
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes", nil).decode(t, &head)
	got := make(chan int, 1)
	go func() {
		got <- e.do(service("collection"), "GET", "/internal/v1/changes?wait=40s&since="+strconv.FormatInt(head.Seq, 10), nil).code
	}()
	eventually.True(t, changeDeadline, "the long poll is waiting", func() bool { return e.longPolls() == 1 })
	e.shutdown()
	select {
	case code := <-got:
		if code != http.StatusOK {
			t.Fatalf("long poll at shutdown = %d", code)
		}
	case <-time.After(changeDeadline):
		t.Fatal("a long poll held on after shutdown began")
	}
}

// TestInternalErrorClientGone: a request whose client went away, and whose
// store call failed with its context, is answered nothing (not a 500 nobody
// reads, which the handler's record would count as an undocumented
// response); one still connected gets its 500.
func TestInternalErrorClientGone(t *testing.T) {
	s := &Server{o: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	s.internalError(rec, httptest.NewRequest("GET", "/internal/v1/properties/x", nil).WithContext(ctx), "read the property", ctx.Err())
	if rec.Body.Len() != 0 || rec.Result().Header.Get("Content-Type") != "" {
		t.Fatalf("answered a client that went away: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.internalError(rec, httptest.NewRequest("GET", "/internal/v1/properties/x", nil), "read the property", errors.New("boom"))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("a connected client got %d, want 500", rec.Code)
	}
}

// TestStorageFaultsAnswer503: Cassandra refusing (too few replicas) or
// timing out is a condition to retry, answered 503 unavailable as a lost
// connection is, not 500 internal.
func TestStorageFaultsAnswer503(t *testing.T) {
	s := &Server{o: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	for _, err := range []error{
		&gocql.RequestErrUnavailable{}, &gocql.RequestErrWriteTimeout{}, &gocql.RequestErrReadTimeout{},
		fmt.Errorf("read property: %w", &gocql.RequestErrReadTimeout{}), gocql.ErrNoConnections,
	} {
		rec := httptest.NewRecorder()
		s.internalError(rec, httptest.NewRequest("GET", "/v1/properties", nil), "list properties", err)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%T %v: %d, want 503", err, err, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	s.internalError(rec, httptest.NewRequest("GET", "/v1/properties", nil), "list properties", errors.New("decode rule version 3: bad JSON"))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a fault of ours: %d, want 500", rec.Code)
	}
}

// TestInternalCookielessSalt: a date's salt is 32 random bytes, made on the
// first request and the same for every later one, through any instance;
// only yesterday, today and tomorrow (UTC) are served; only services may
// ask.
func TestInternalCookielessSalt(t *testing.T) {
	now := time.Date(2026, 12, 5, 23, 30, 0, 0, time.UTC)
	clock := func(o *Options) { o.Now = func() time.Time { return now } }
	ks := migratetest.Keyspace(t)
	a := startInstance(t, ks, "", clock)
	b := startInstance(t, ks, a.keysDir, clock)
	get := func(e *env, day string) []byte {
		t.Helper()
		r := e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/cookieless-salts/"+day, nil)
		var out configclient.CookielessSalt
		r.decode(t, &out)
		if out.Date != day || len(out.Salt) != 32 {
			t.Fatalf("salt of %s: %+v; want 32 bytes for the date", day, out)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("Cache-Control %q, want no-store", cc)
		}
		return out.Salt
	}
	today := get(a, "2026-12-05")
	for _, e := range []*env{a, b, a} {
		if again := get(e, "2026-12-05"); !bytes.Equal(again, today) {
			t.Fatalf("a later request got %x, the first %x", again, today)
		}
	}
	yesterday, tomorrow := get(b, "2026-12-04"), get(a, "2026-12-06")
	if bytes.Equal(yesterday, today) || bytes.Equal(tomorrow, today) || bytes.Equal(yesterday, tomorrow) {
		t.Fatal("two dates share a salt")
	}
	if again := get(a, "2026-12-04"); !bytes.Equal(again, yesterday) {
		t.Fatal("yesterday's salt changed")
	}

	for _, day := range []string{"2026-12-03", "2026-12-07", "2025-12-05", "2026-13-01", "20261205", "today"} {
		r := a.must(http.StatusBadRequest, service("collection"), "GET", "/internal/v1/cookieless-salts/"+day, nil)
		if e := r.apiError(); e.Code != "invalid_field" || e.Field != "date" || !strings.Contains(e.Message, day) {
			t.Fatalf("%s: %+v", day, e)
		}
	}
	r := a.must(http.StatusBadRequest, service("collection"), "GET", "/internal/v1/cookieless-salts/2026-12-03", nil)
	if msg := r.apiError().Message; !strings.Contains(msg, "more than one day from today (2026-12-05 UTC)") {
		t.Fatalf("out of range: %q", msg)
	}
	session, err := cassandra.Connect(ks)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	var n int
	if err := session.Query(`SELECT count(*) FROM cookieless_salts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d salts stored, want 3: a refused date made one", n)
	}

	// Merchants may not (an instance on the real clock, which tokens need).
	c := newEnv(t)
	acct := c.signup("Salty")
	c.must(http.StatusForbidden, acct.as(), "GET", "/internal/v1/cookieless-salts/"+time.Now().UTC().Format(time.DateOnly), nil)
	c.must(http.StatusUnauthorized, anonymous, "GET", "/internal/v1/cookieless-salts/"+time.Now().UTC().Format(time.DateOnly), nil)
}

// Operators page through every tenant's properties (configclient's
// PropertyIDs, as reprocess -property=all does), deleted ones left out; a
// bad position or limit is refused naming it, and a merchant may not list.
func TestInternalListsEveryProperty(t *testing.T) {
	e := newEnv(t)
	want := map[string]bool{}
	var last PropertyJSON
	for _, name := range []string{"One", "Two"} {
		a := e.signup(name)
		for i := range 3 {
			last = e.createProperty(a, map[string]any{"name": fmt.Sprintf("%s %d", name, i)})
			want[last.ID] = true
			if name == "Two" && i == 0 {
				e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/properties/"+last.ID, nil)
				delete(want, last.ID)
			}
		}
	}
	c, err := configclient.New(configclient.Config{BaseURL: e.url, Caller: "reprocess", IdentitySecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	after := ""
	for pages := 1; ; pages++ {
		page, err := c.PropertyIDs(context.Background(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range page.PropertyIDs {
			if got[id] {
				t.Fatalf("%s on two pages", id)
			}
			got[id] = true
		}
		if after = page.NextAfter; after == "" {
			break
		}
		if pages > 10 {
			t.Fatal("no last page after 10")
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("listed %v, want the 5 not deleted %v", got, want)
	}

	for _, tc := range []struct{ query, field string }{{"after=x", "after"}, {"limit=0", "limit"}, {"limit=1001", "limit"}} {
		r := e.must(http.StatusBadRequest, service("reprocess"), "GET", "/internal/v1/properties?"+tc.query, nil)
		if ae := r.apiError(); ae.Code != "invalid_field" || ae.Field != tc.field {
			t.Errorf("%s: %+v", tc.query, ae)
		}
	}
	e.must(http.StatusForbidden, e.signup("Three").as(), "GET", "/internal/v1/properties", nil)
}
