package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
)

// These tests fail one step of a change that takes several writes, on the
// embedded CQL server (cqlserver.SetFault), and check that the client is
// told the truth and that what the API shows and what the pipeline uses
// agree afterwards.

// newFaultEnv starts an instance on the test's own embedded CQL server,
// which the test can make fail statements with fail.
func newFaultEnv(t *testing.T) (*env, *cqlserver.Server) {
	t.Helper()
	srv := cqltest.Server(t) // before the keyspace, so that it is on this server
	e := newEnv(t)
	t.Cleanup(func() { srv.SetFault(nil) })
	return e, srv
}

// fail makes srv answer the statements starting with prefix as fault
// says, until srv.SetFault(nil). Every other statement runs.
func fail(srv *cqlserver.Server, prefix string, fault cqlserver.Fault) {
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(strings.TrimSpace(cql), prefix) {
			return fault
		}
		return cqlserver.NoFault
	})
}

// TestPropertyChangeIsAllOrNothing: a PATCH that changes hostnames and a
// name, one of whose writes fails, leaves the API (GET) and the pipeline
// (the rule version collection checks hosts with) with the same
// hostnames: the old ones when its rule version was not made, the new
// ones when it was (its answer lost, or the row's write failing after
// it), the name then changed only if the row was written. A retry
// completes it.
func TestPropertyChangeIsAllOrNothing(t *testing.T) {
	e, srv := newFaultEnv(t)
	a := e.signup("All Or Nothing")
	p := e.createProperty(a, map[string]any{"name": "Shop", "hostnames": []string{"shop.example", "old.example"}})
	path := "/v1/properties/" + p.ID
	change := map[string]any{"name": "Renamed", "hostnames": []string{"shop.example"}}

	// state is what the API shows and what the pipeline uses.
	state := func() (name string, api, pipeline []string) {
		t.Helper()
		var got PropertyJSON
		e.must(http.StatusOK, a.as(), "GET", path, nil).decode(t, &got)
		var doc configclient.Property
		e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/properties/"+p.ID, nil).decode(t, &doc)
		return got.Name, got.Hostnames, doc.Rules.Hostnames
	}
	expect := func(when, wantName string, wantHosts ...string) {
		t.Helper()
		name, api, pipeline := state()
		if name != wantName || !slices.Equal(api, wantHosts) || !slices.Equal(pipeline, wantHosts) {
			t.Fatalf("%s: the API shows %q with %v, the pipeline uses %v; want %q with %v in both", when, name, api, pipeline, wantName, wantHosts)
		}
	}

	tests := []struct {
		name      string
		statement string
		fault     cqlserver.Fault
		wantName  string
		wantHosts []string
	}{
		{"the property's row is not written", "UPDATE properties SET", cqlserver.FailBefore, "Shop", []string{"shop.example"}},
		{"the rule version is not made", "INSERT INTO rule_versions", cqlserver.FailBefore, "Shop", []string{"shop.example", "old.example"}},
		{"the rule version is made, its answer lost", "INSERT INTO rule_versions", cqlserver.TimeoutAfter, "Shop", []string{"shop.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var head configclient.Changes
			e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes", nil).decode(t, &head)
			fail(srv, tt.statement, tt.fault)
			r := e.do(a.as(), "PATCH", path, change)
			srv.SetFault(nil)
			if r.code != http.StatusServiceUnavailable {
				t.Fatalf("PATCH with a failed write = %d %s; want 503", r.code, r.body)
			}
			// With Retry-After: a store every instance shares is down, which
			// the gateway's breaker does not count against this instance.
			if r.header.Get("Retry-After") == "" {
				t.Errorf("the 503 of a failed write has no Retry-After")
			}
			expect("after the failure", tt.wantName, tt.wantHosts...)
			// A change of the hostnames is announced, so that collection's
			// cache reads the property again.
			if !slices.Equal(tt.wantHosts, []string{"shop.example", "old.example"}) {
				var feed configclient.Changes
				e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes?wait=0s&since="+strconv.FormatInt(head.Seq, 10), nil).decode(t, &feed)
				if !slices.ContainsFunc(feed.Changes, func(c configclient.Change) bool { return c.PropertyID == p.ID }) {
					t.Fatalf("the change feed after the failure = %+v; want a change of the property", feed.Changes)
				}
			}
			e.must(http.StatusOK, a.as(), "PATCH", path, change)
			expect("after the retry", "Renamed", "shop.example")
			// Back to the start for the next case.
			e.must(http.StatusOK, a.as(), "PATCH", path, map[string]any{"name": "Shop", "hostnames": []string{"shop.example", "old.example"}})
		})
	}
}

// TestConcurrentPropertyChangesAgree: changes of a property racing a
// PATCH of its hostnames leave the API and the pipeline with the same
// hostnames. Each case runs the other change while the PATCH's rule
// version is being inserted (in the CQL server's fault hook), then lets
// that insert fail or run.
func TestConcurrentPropertyChangesAgree(t *testing.T) {
	e, srv := newFaultEnv(t)
	a := e.signup("Concurrent Changes")
	tests := []struct {
		name      string
		other     map[string]any // the change made meanwhile
		fault     cqlserver.Fault
		wantName  string
		wantHosts []string
	}{
		// Before, the PATCH wrote its row first and put it back when its
		// version failed, only while no other change had written the row
		// since: here the row kept h1.example while collection kept h0.
		{"a rename while the version fails", map[string]any{"name": "Other"}, cqlserver.FailBefore, "Other", []string{"h0.example"}},
		// The other PATCH takes the version number, so this one makes the
		// next: the newest version, and what both show, is this one's.
		{"another change of hostnames", map[string]any{"hostnames": []string{"h2.example"}}, cqlserver.NoFault, "Mine", []string{"h1.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.createProperty(a, map[string]any{"name": "Shop", "hostnames": []string{"h0.example"}})
			path := "/v1/properties/" + p.ID
			var first atomic.Bool // the other PATCH's own insert must pass
			srv.SetFault(func(cql string) cqlserver.Fault {
				if !strings.HasPrefix(strings.TrimSpace(cql), "INSERT INTO rule_versions") || !first.CompareAndSwap(false, true) {
					return cqlserver.NoFault
				}
				e.must(http.StatusOK, a.as(), "PATCH", path, tt.other)
				return tt.fault
			})
			r := e.do(a.as(), "PATCH", path, map[string]any{"name": "Mine", "hostnames": []string{"h1.example"}})
			srv.SetFault(nil)
			if tt.fault == cqlserver.NoFault && r.code != http.StatusOK || tt.fault != cqlserver.NoFault && r.code != http.StatusServiceUnavailable {
				t.Fatalf("PATCH = %d %s", r.code, r.body)
			}
			var got PropertyJSON
			e.must(http.StatusOK, a.as(), "GET", path, nil).decode(t, &got)
			var doc configclient.Property
			e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/properties/"+p.ID, nil).decode(t, &doc)
			var list PropertyList
			e.must(http.StatusOK, a.as(), "GET", "/v1/properties?limit=500", nil).decode(t, &list)
			var listed []string
			for _, lp := range list.Properties {
				if lp.ID == p.ID {
					listed = lp.Hostnames
				}
			}
			if got.Name != tt.wantName || !slices.Equal(got.Hostnames, tt.wantHosts) || !slices.Equal(listed, tt.wantHosts) ||
				!slices.Equal(doc.Hostnames, tt.wantHosts) || !slices.Equal(doc.Rules.Hostnames, tt.wantHosts) {
				t.Fatalf("the API shows %q with %v (listed %v), the pipeline uses %v (rules %v); want %q with %v everywhere",
					got.Name, got.Hostnames, listed, doc.Hostnames, doc.Rules.Hostnames, tt.wantName, tt.wantHosts)
			}
		})
	}
}

// TestDeleteUserCompletes: a deletion whose release of the e-mail address
// fails leaves the user, so that a retry finds it and completes (before,
// the row went first and the retry answered 404 with the address claimed
// for good); one that fails after the release leaves a user who cannot log
// in, whose retried deletion completes without taking the address from
// whoever has claimed it since.
func TestDeleteUserCompletes(t *testing.T) {
	e, srv := newFaultEnv(t)
	a := e.signup("Leavers")
	login := func(u account) int {
		return e.do(anonymous, "POST", "/v1/login", map[string]string{"email": u.email, "password": u.password}).code
	}

	t.Run("the address is not released", func(t *testing.T) {
		u := e.addUser(a, "viewer")
		fail(srv, "DELETE FROM users_by_email", cqlserver.FailBefore)
		e.must(http.StatusServiceUnavailable, a.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
		srv.SetFault(nil)
		e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
		if code := login(u); code != http.StatusUnauthorized {
			t.Fatalf("the deleted user's login = %d, want 401", code)
		}
		e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", map[string]string{"email": u.email, "password": u.password, "company": "Next"})
	})

	t.Run("the row is not deleted", func(t *testing.T) {
		u := e.addUser(a, "viewer")
		fail(srv, "DELETE FROM users WHERE", cqlserver.FailBefore)
		e.must(http.StatusServiceUnavailable, a.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
		srv.SetFault(nil)
		if code := login(u); code != http.StatusUnauthorized {
			t.Fatalf("a half-deleted user's login = %d, want 401", code)
		}
		// The address is free already: someone else takes it.
		e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", map[string]string{"email": u.email, "password": "a new owner's password", "company": "Next"})
		e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
		e.must(http.StatusNotFound, a.as(), "GET", "/v1/users/"+u.tokens.UserID, nil)
		e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": u.email, "password": "a new owner's password"})
	})

	// A half-deleted admin cannot log in, so it is no admin: the last one
	// that can may not demote itself (it could: the row's role counted).
	t.Run("an admin's row is not deleted", func(t *testing.T) {
		b := e.signup("Last Admin")
		u := e.addUser(b, "admin")
		fail(srv, "DELETE FROM users WHERE", cqlserver.FailBefore)
		e.must(http.StatusServiceUnavailable, b.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
		srv.SetFault(nil)
		e.must(http.StatusConflict, b.as(), "PATCH", "/v1/users/"+b.tokens.UserID, map[string]string{"role": "viewer"})
		e.must(http.StatusNoContent, b.as(), "DELETE", "/v1/users/"+u.tokens.UserID, nil)
	})
}

// TestSignupNeverHalfDone: a sign-up whose claim of the address was applied
// but answered with a timeout made the account, and signs in (before, it
// deleted the tenant and answered 5xx, leaving a user that could log in to
// a tenant that did not exist, and an address nobody could sign up with);
// one whose claim failed leaves nothing behind; one whose tokens could not
// be stored says the account exists; an address claimed by a user that no
// longer exists can be signed up with.
func TestSignupNeverHalfDone(t *testing.T) {
	e, srv := newFaultEnv(t)
	n := 0
	signup := func() (map[string]string, response) {
		n++
		body := map[string]string{"email": fmt.Sprintf("founder%d-%d@signup.example", n, time.Now().UnixNano()), "password": "correct horse battery", "company": "Founders"}
		return body, e.do(anonymous, "POST", "/v1/signup", body)
	}
	works := func(body map[string]string) {
		t.Helper()
		var tok TokenResponse
		e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": body["email"], "password": body["password"]}).decode(t, &tok)
		e.must(http.StatusOK, bearer(tok.AccessToken), "GET", "/v1/tenants/me", nil)
	}

	t.Run("claim applied, answer lost", func(t *testing.T) {
		fail(srv, "INSERT INTO users_by_email", cqlserver.TimeoutAfter)
		body, r := signup()
		srv.SetFault(nil)
		if r.code != http.StatusCreated {
			t.Fatalf("sign-up = %d %s; want 201", r.code, r.body)
		}
		works(body)
	})

	t.Run("claim of another's address, answer lost", func(t *testing.T) {
		// The claim runs and is not applied (the address is the first
		// sign-up's), then times out: the read-back finds the other user,
		// which is a conflict, as without the timeout, not a 503 to retry.
		first, r := signup()
		if r.code != http.StatusCreated {
			t.Fatalf("first sign-up = %d %s; want 201", r.code, r.body)
		}
		fail(srv, "INSERT INTO users_by_email", cqlserver.TimeoutAfter)
		second := map[string]string{"email": first["email"], "password": "another horse battery", "company": "Latecomers"}
		r = e.do(anonymous, "POST", "/v1/signup", second)
		srv.SetFault(nil)
		if r.code != http.StatusConflict || r.apiError().Code != "conflict" || r.apiError().Field != "email" {
			t.Fatalf("sign-up = %d %s; want 409 conflict on email", r.code, r.body)
		}
		works(first)
	})

	t.Run("claim refused", func(t *testing.T) {
		fail(srv, "INSERT INTO users_by_email", cqlserver.FailBefore)
		body, r := signup()
		srv.SetFault(nil)
		if r.code != http.StatusServiceUnavailable {
			t.Fatalf("sign-up = %d %s; want 503", r.code, r.body)
		}
		if code := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": body["email"], "password": body["password"]}).code; code != http.StatusUnauthorized {
			t.Fatalf("login after a failed sign-up = %d, want 401", code)
		}
		e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", body)
		works(body)
	})

	t.Run("tokens not stored", func(t *testing.T) {
		fail(srv, "INSERT INTO refresh_tokens", cqlserver.FailBefore)
		body, r := signup()
		srv.SetFault(nil)
		if r.code != http.StatusServiceUnavailable || !strings.Contains(r.apiError().Message, "your account was created") ||
			!strings.Contains(r.apiError().Message, "POST /v1/login") {
			t.Fatalf("sign-up = %d %s; want 503 saying the account was created and to log in", r.code, r.body)
		}
		works(body)
	})

	t.Run("address claimed by a user that no longer exists", func(t *testing.T) {
		// What a deletion of an older version left when its last step
		// failed: the claim of a user whose row is gone.
		session, err := cassandra.Connect(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer session.Close()
		email := fmt.Sprintf("orphan-%d@signup.example", time.Now().UnixNano())
		if err := session.Query(`INSERT INTO users_by_email (email, tenant_id, user_id) VALUES (?, ?, ?)`, email, gocql.MustRandomUUID(), gocql.MustRandomUUID()).Exec(); err != nil {
			t.Fatal(err)
		}
		body := map[string]string{"email": email, "password": "correct horse battery", "company": "Heirs"}
		e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", body)
		works(body)
	})
}

// TestRenamingAGoneTenant: a tenant that no longer exists is 404 to a
// rename as to a read (it was a 500).
func TestRenamingAGoneTenant(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Vanishing")
	tid, err := gocql.ParseUUID(a.tokens.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteTenant(context.Background(), tid); err != nil {
		t.Fatal(err)
	}
	r := e.must(http.StatusNotFound, a.as(), "PATCH", "/v1/tenants/me", map[string]string{"name": "Back"})
	if msg := r.apiError().Message; !strings.Contains(msg, "no longer exists") {
		t.Fatalf("message %q", msg)
	}
	e.must(http.StatusNotFound, a.as(), "GET", "/v1/tenants/me", nil)
}

// TestAWriteOfUnknownOutcomeIsAnnounced: a change whose write fails may
// have been applied all the same (a timeout after the replicas took it);
// its retry finds it done and tells the pipeline nothing, so the first
// attempt does: a revoked secret, a property's new settings, a deletion
// reach collection and processing at once, not at their next resync (up
// to hours for a large cache, a leaked secret accepted meanwhile).
func TestAWriteOfUnknownOutcomeIsAnnounced(t *testing.T) {
	e, srv := newFaultEnv(t)
	a := e.signup("Lost Answers")
	p := e.createProperty(a, map[string]any{"name": "Shop", "hostnames": []string{"shop.example"}})
	var sec struct{ ID string }
	e.must(http.StatusCreated, a.as(), "POST", "/v1/properties/"+p.ID+"/api-secrets", map[string]string{"name": "backend"}).decode(t, &sec)
	announced := func(what string, change func()) {
		t.Helper()
		var head configclient.Changes
		e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes", nil).decode(t, &head)
		change()
		var feed configclient.Changes
		e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/changes?wait=0s&since="+strconv.FormatInt(head.Seq, 10), nil).decode(t, &feed)
		if !slices.ContainsFunc(feed.Changes, func(c configclient.Change) bool { return c.PropertyID == p.ID }) {
			t.Errorf("%s: the feed has %+v, want the property announced", what, feed.Changes)
		}
	}
	lost := func(prefix, method, path string, body any) func() {
		return func() {
			fail(srv, prefix, cqlserver.TimeoutAfter)
			defer srv.SetFault(nil)
			if r := e.do(a.as(), method, path, body); r.code < 500 {
				t.Errorf("%s %s with its write's answer lost: %d %s, want 5xx", method, path, r.code, r.body)
			}
		}
	}
	announced("a revocation", lost("UPDATE api_secrets", "DELETE", "/v1/properties/"+p.ID+"/api-secrets/"+sec.ID, nil))
	announced("new settings", lost("UPDATE properties", "PATCH", "/v1/properties/"+p.ID, map[string]any{"time_zone": "Europe/Berlin"}))
	announced("a deletion", lost("UPDATE properties SET deleted_at", "DELETE", "/v1/properties/"+p.ID, nil))
}
