package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/tenant"
)

// TestAdminRoutesFollowTheStoredRole: an access token outlives a
// demotion or a deletion of its user by up to its lifetime. On admin
// routes it is refused from the change on, so it cannot make its rights
// last: a demoted admin cannot set its own role back, nor delete the
// admin who demoted it; a deleted one cannot create an admin whose
// password it knows, nor an API secret. A user of an external identity
// provider (an identity config-svc keeps no row of) is taken at its
// token's word, as before.
func TestAdminRoutesFollowTheStoredRole(t *testing.T) {
	e := newEnv(t)
	owner := e.signup("Stored Role")
	p := e.createProperty(owner, map[string]any{"name": "Site"})
	identity := func(a account) tenant.Identity {
		claims, err := e.verifier.Verify(context.Background(), a.tokens.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return claims.Identity()
	}

	demoted := e.addUser(owner, "admin")
	did := identity(demoted).UserID
	e.must(http.StatusOK, owner.as(), "PATCH", "/v1/users/"+did, map[string]string{"role": "viewer"})
	for _, c := range []struct{ method, path string }{
		{"PATCH", "/v1/users/" + did},
		{"DELETE", "/v1/users/" + identity(owner).UserID},
		{"POST", "/v1/properties/" + p.ID + "/api-secrets"},
	} {
		var body any
		if c.method == "PATCH" {
			body = map[string]string{"role": "admin"}
		}
		if c.method == "POST" {
			body = map[string]string{"name": "mine"}
		}
		r := e.do(demoted.as(), c.method, c.path, body)
		if r.code != http.StatusForbidden || r.apiError().Code != "forbidden" {
			t.Errorf("demoted admin's old token: %s %s = %d %s, want 403 forbidden", c.method, c.path, r.code, r.body)
		}
	}
	// Reads are still the token's until it expires.
	e.must(http.StatusOK, demoted.as(), "GET", "/v1/properties/"+p.ID, nil)

	deleted := e.addUser(owner, "admin")
	e.must(http.StatusNoContent, owner.as(), "DELETE", "/v1/users/"+identity(deleted).UserID, nil)
	r := e.do(deleted.as(), "POST", "/v1/users", map[string]string{"email": uniqueAddress("backdoor", "x.example"), "password": "a long enough password", "role": "admin"})
	if r.code != http.StatusUnauthorized {
		t.Errorf("deleted admin's old token creating an admin: %d %s, want 401", r.code, r.body)
	}

	// Made admin again by an admin, its old token (which says admin) works again.
	e.must(http.StatusOK, owner.as(), "PATCH", "/v1/users/"+did, map[string]string{"role": "admin"})
	e.must(http.StatusCreated, demoted.as(), "POST", "/v1/properties", map[string]any{"name": "Again"})

	external := who{raw: func(h http.Header) {
		tenant.Sign(h, tenant.Identity{TenantID: identity(owner).TenantID, UserID: gocql.MustRandomUUID().String(), Role: tenant.RoleAdmin}, testSecret, time.Now())
	}}
	e.must(http.StatusCreated, external, "POST", "/v1/properties", map[string]any{"name": "From the IdP"})
}

// TestRoleChangeRacingDeletion: PATCH /v1/users/{id} reads the user, then
// writes its role. A deletion landing between the two left, through the
// plain UPDATE that wrote the role, a user with a role and nothing else:
// listed, read with no e-mail, and every deletion of it failing (500: its
// address "" could not be freed), and, made admin, it made demoting or
// deleting any admin of the tenant fail too. The write is now conditional
// on the row; a row an older version left so is deleted and counts as no
// admin.
func TestRoleChangeRacingDeletion(t *testing.T) {
	e := newEnv(t)
	owner := e.signup("Race Ltd")
	victim := e.addUser(owner, "viewer")
	tid, _ := gocql.ParseUUID(owner.tokens.TenantID)
	uid, _ := gocql.ParseUUID(victim.tokens.UserID)

	// PATCH has read the viewer; a DELETE completes; PATCH then writes
	// the role (the store call patchUser makes).
	e.must(http.StatusOK, owner.as(), "GET", "/v1/users/"+victim.tokens.UserID, nil)
	e.must(http.StatusNoContent, owner.as(), "DELETE", "/v1/users/"+victim.tokens.UserID, nil)
	if err := e.store.SetUserRole(context.Background(), tid, uid, "admin"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("role of a deleted user set: %v; want ErrNotFound", err)
	}
	e.must(http.StatusNotFound, owner.as(), "GET", "/v1/users/"+victim.tokens.UserID, nil)

	// A row such a race left before: an admin with no address.
	session, err := cassandra.Connect(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	ghost := gocql.MustRandomUUID()
	if err := session.Query(`UPDATE users SET role = 'admin' WHERE tenant_id = ? AND user_id = ?`, tid, ghost).Exec(); err != nil {
		t.Fatal(err)
	}
	second := e.addUser(owner, "admin")
	e.must(http.StatusNoContent, owner.as(), "DELETE", "/v1/users/"+second.tokens.UserID, nil)
	r := e.do(owner.as(), "PATCH", "/v1/users/"+owner.tokens.UserID, map[string]string{"role": "viewer"})
	if r.code != http.StatusConflict {
		t.Errorf("demoting the last admin who can log in, beside an admin row without an address: %d %s; want 409", r.code, r.body)
	}
	e.must(http.StatusNoContent, owner.as(), "DELETE", "/v1/users/"+ghost.String(), nil)
	e.must(http.StatusNotFound, owner.as(), "GET", "/v1/users/"+ghost.String(), nil)
}

// externalUser is a caller as the gateway passes an external identity
// provider's user: signed identity headers with the provider's subject.
func externalUser(tenantID, subject string, role tenant.Role) who {
	return who{raw: func(h http.Header) {
		tenant.Sign(h, tenant.Identity{TenantID: tenantID, UserID: subject, Role: role}, testSecret, time.Now())
	}}
}

// TestExternalUsers: an external identity provider's users, of whom
// config-svc keeps no user, are taken at their tokens' word whatever
// their subjects look like. Subjects that are not UUIDs (Auth0's, Okta's)
// were answered 401 on every signed-in route, and GET /v1/tenants/me
// answered every external user 404 "your user no longer exists"; it now
// answers the tenant without a user.
func TestExternalUsers(t *testing.T) {
	e, _ := mailEnv(t, newTestClock())
	owner := e.signup("IdP Users")
	for _, sub := range []string{"auth0|5f7c8ec7c33c6c004bbafe82", "00u1abcdEFGH2345", gocql.MustRandomUUID().String()} {
		viewer := externalUser(owner.tokens.TenantID, sub, tenant.RoleViewer)
		admin := externalUser(owner.tokens.TenantID, sub, tenant.RoleAdmin)
		e.must(http.StatusOK, viewer, "GET", "/v1/properties", nil)
		e.must(http.StatusCreated, admin, "POST", "/v1/properties", map[string]any{"name": "From " + sub})
		var me map[string]json.RawMessage
		e.must(http.StatusOK, viewer, "GET", "/v1/tenants/me", nil).decode(t, &me)
		if _, ok := me["tenant"]; !ok {
			t.Errorf("%s: GET /v1/tenants/me has no tenant", sub)
		}
		if u, ok := me["user"]; ok {
			t.Errorf("%s: GET /v1/tenants/me has a user %s; config-svc keeps none of an external user", sub, u)
		}
		r := e.do(viewer, "POST", "/v1/email-verification", nil)
		if r.code != http.StatusNotFound || !strings.Contains(r.apiError().Message, "identity provider") {
			t.Errorf("%s: asking to verify an address: %d %s; want 404 saying the account is the identity provider's", sub, r.code, r.body)
		}
	}
	if externalUserID("auth0|x") != externalUserID("auth0|x") || externalUserID("auth0|x") == externalUserID("auth0|y") {
		t.Error("externalUserID is not a function of the subject alone")
	}

	// A user deleted within an access token's lifetime is no external user.
	deleted := e.addUser(owner, "viewer")
	e.must(http.StatusNoContent, owner.as(), "DELETE", "/v1/users/"+deleted.tokens.UserID, nil)
	e.must(http.StatusNotFound, deleted.as(), "GET", "/v1/tenants/me", nil)
}

// TestAdminsDeletingEachOtherKeepOne: of two admins deleting each other
// at once, at least one is refused (409), so the tenant keeps an admin.
// Each checked for another admin once, before deleting: each saw the
// other, both were deleted, and the tenant was left with no user. The
// second deletion runs from the store's hook, as the first marks its
// user deleted.
func TestAdminsDeletingEachOtherKeepOne(t *testing.T) {
	srv := cqltest.Server(t)
	e := newEnv(t)
	t.Cleanup(func() { srv.SetFault(nil) })
	a := e.signup("Mutual Deletion")
	b := e.addUser(a, "admin")
	var once atomic.Bool
	var second response
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(strings.TrimSpace(cql), "INSERT INTO deleted_users") && once.CompareAndSwap(false, true) {
			second = e.do(b.as(), "DELETE", "/v1/users/"+a.tokens.UserID, nil)
		}
		return cqlserver.NoFault
	})
	first := e.do(a.as(), "DELETE", "/v1/users/"+b.tokens.UserID, nil)
	srv.SetFault(nil)
	if !once.Load() {
		t.Fatal("the hook never ran")
	}
	t.Logf("a deleting b: %d; b deleting a meanwhile: %d", first.code, second.code)
	if first.code == http.StatusNoContent && second.code == http.StatusNoContent {
		t.Fatal("both admins deleted each other")
	}
	tid, _ := gocql.ParseUUID(a.tokens.TenantID)
	users, err := e.store.Users(context.Background(), tid)
	if err != nil {
		t.Fatal(err)
	}
	admins := 0
	for _, u := range users {
		if u.Role == string(tenant.RoleAdmin) {
			admins++
		}
	}
	if admins == 0 {
		t.Errorf("the tenant has no admin left: %+v", users)
	}
}
