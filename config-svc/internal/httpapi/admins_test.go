package httpapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gocql/gocql"

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
