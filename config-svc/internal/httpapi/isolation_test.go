package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/tenant"
)

// TestCrossTenantAccessIsNotFound: a tenant can never see or change another
// tenant's objects, and learns nothing about them: every route answers 404
// exactly as for an ID that does not exist.
func TestCrossTenantAccessIsNotFound(t *testing.T) {
	e := newEnv(t)
	alice := e.signup("Alice Co")
	bob := e.signup("Bob Co")
	p := e.createProperty(alice, map[string]any{"name": "Alice's shop"})
	var sec NewSecretJSON
	e.must(http.StatusCreated, alice.as(), "POST", "/v1/properties/"+p.ID+"/api-secrets", map[string]string{"name": "backend"}).decode(t, &sec)
	aliceViewer := e.addUser(alice, "viewer")

	prop := "/v1/properties/" + p.ID
	missing := "/v1/properties/00000000-0000-4000-8000-000000000000"
	requests := []struct {
		method, path string
		body         any
	}{
		{"GET", prop, nil},
		{"PATCH", prop, map[string]any{"name": "mine now"}},
		{"DELETE", prop, nil},
		{"GET", prop + "/rules", nil},
		{"PUT", prop + "/rules", map[string]any{"bot_filtering": false}},
		{"POST", prop + "/rules/validate", map[string]any{}},
		{"GET", prop + "/rules/versions", nil},
		{"GET", prop + "/rules/versions/1", nil},
		{"GET", prop + "/api-secrets", nil},
		{"POST", prop + "/api-secrets", map[string]string{"name": "stolen"}},
		{"DELETE", prop + "/api-secrets/" + sec.ID, nil},
		{"GET", "/v1/users/" + aliceViewer.tokens.UserID, nil},
		{"PATCH", "/v1/users/" + aliceViewer.tokens.UserID, map[string]string{"role": "admin"}},
		{"DELETE", "/v1/users/" + aliceViewer.tokens.UserID, nil},
	}
	for _, rq := range requests {
		t.Run(rq.method+" "+strings.ReplaceAll(rq.path, p.ID, "{alice's property}"), func(t *testing.T) {
			r := e.do(bob.as(), rq.method, rq.path, rq.body)
			if r.code != http.StatusNotFound || r.apiError().Code != "not_found" {
				t.Fatalf("bob got %d %s; want 404 not_found", r.code, r.body)
			}
			if strings.HasPrefix(rq.path, prop) {
				// Indistinguishable from an ID that exists nowhere.
				r2 := e.do(bob.as(), rq.method, strings.Replace(rq.path, prop, missing, 1), rq.body)
				if r2.code != r.code || r2.apiError().Code != r.apiError().Code {
					t.Fatalf("another tenant's ID answers %d, a missing one %d", r.code, r2.code)
				}
			}
		})
	}
	// Nothing of Alice's changed, and Bob sees none of it in his lists.
	var got PropertyJSON
	e.must(http.StatusOK, alice.as(), "GET", prop, nil).decode(t, &got)
	if got.Name != "Alice's shop" {
		t.Fatalf("alice's property is now %+v", got)
	}
	var versions struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, alice.as(), "GET", prop+"/rules/versions", nil).decode(t, &versions)
	if len(versions.Versions) != 1 {
		t.Fatalf("alice's rules have %d versions", len(versions.Versions))
	}
	var secrets struct {
		APISecrets []SecretJSON `json:"api_secrets"`
	}
	e.must(http.StatusOK, alice.as(), "GET", prop+"/api-secrets", nil).decode(t, &secrets)
	if len(secrets.APISecrets) != 1 || secrets.APISecrets[0].Status != "active" {
		t.Fatalf("alice's secrets = %+v", secrets)
	}
	var list struct{ Properties []PropertyJSON }
	e.must(http.StatusOK, bob.as(), "GET", "/v1/properties", nil).decode(t, &list)
	if len(list.Properties) != 0 {
		t.Fatalf("bob lists %+v", list.Properties)
	}
	var users struct{ Users []UserJSON }
	e.must(http.StatusOK, bob.as(), "GET", "/v1/users", nil).decode(t, &users)
	if len(users.Users) != 1 || users.Users[0].ID != bob.tokens.UserID {
		t.Fatalf("bob lists users %+v", users.Users)
	}
}

// TestRolesAndIdentity: viewers read, admins write, services only reach
// /internal, and nothing is reachable without a gateway-signed identity.
func TestRolesAndIdentity(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Roles Inc")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	v := e.addUser(a, "viewer")
	prop := "/v1/properties/" + p.ID
	tests := []struct {
		name         string
		who          who
		method, path string
		body         any
		want         int
	}{
		{"viewer reads properties", v.as(), "GET", prop, nil, http.StatusOK},
		{"viewer reads rules", v.as(), "GET", prop + "/rules", nil, http.StatusOK},
		{"viewer reads the history", v.as(), "GET", prop + "/rules/versions", nil, http.StatusOK},
		{"viewer reads its tenant", v.as(), "GET", "/v1/tenants/me", nil, http.StatusOK},
		{"viewer cannot change rules", v.as(), "PUT", prop + "/rules", map[string]any{}, http.StatusForbidden},
		{"viewer cannot create properties", v.as(), "POST", "/v1/properties", map[string]any{"name": "x"}, http.StatusForbidden},
		{"viewer cannot see secrets", v.as(), "GET", prop + "/api-secrets", nil, http.StatusForbidden},
		{"viewer cannot list users", v.as(), "GET", "/v1/users", nil, http.StatusForbidden},
		{"viewer cannot rename the tenant", v.as(), "PATCH", "/v1/tenants/me", map[string]any{"name": "x"}, http.StatusForbidden},
		{"member cannot use internal endpoints", a.as(), "GET", "/internal/v1/properties/" + p.ID, nil, http.StatusForbidden},
		{"member cannot set shards", a.as(), "PUT", "/internal/v1/properties/" + p.ID + "/processing-shards", map[string]any{"processing_shards": 4}, http.StatusForbidden},
		{"service cannot use the public API", service("collection"), "GET", "/v1/properties", nil, http.StatusForbidden},
		{"no identity", anonymous, "GET", "/v1/properties", nil, http.StatusUnauthorized},
		{"no identity internal", anonymous, "GET", "/internal/v1/changes", nil, http.StatusUnauthorized},
		{"forged identity headers", who{raw: func(h http.Header) {
			h.Set(tenant.HeaderTenantID, a.tokens.TenantID)
			h.Set(tenant.HeaderUserID, a.tokens.UserID)
			h.Set(tenant.HeaderRole, "admin")
			h.Set(tenant.HeaderTimestamp, fmt.Sprint(time.Now().Unix()))
			h.Set(tenant.HeaderSignature, "00")
		}}, "GET", "/v1/properties", nil, http.StatusUnauthorized},
		{"identity signed with another secret", who{raw: func(h http.Header) {
			tenant.Sign(h, tenant.Identity{TenantID: a.tokens.TenantID, UserID: a.tokens.UserID, Role: tenant.RoleAdmin}, []byte("not-the-shared-secret-at-all"), time.Now())
		}}, "GET", "/v1/properties", nil, http.StatusUnauthorized},
		{"stale signature", who{raw: func(h http.Header) {
			tenant.Sign(h, tenant.Identity{TenantID: a.tokens.TenantID, UserID: a.tokens.UserID, Role: tenant.RoleAdmin}, testSecret, time.Now().Add(-time.Hour))
		}}, "GET", "/v1/properties", nil, http.StatusUnauthorized},
		{"public endpoints need none", anonymous, "GET", "/.well-known/jwks.json", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := e.do(tt.who, tt.method, tt.path, tt.body); r.code != tt.want {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.path, r.code, r.body, tt.want)
			}
		})
	}
}

// TestTrackingIDsNeverCollide forces collisions: candidates come from a
// pool of three, so concurrent creations fight over the same IDs. The
// lightweight transaction lets each ID go to exactly one property.
func TestTrackingIDsNeverCollide(t *testing.T) {
	pool := []string{"AT-2222222222", "AT-3333333333", "AT-4444444444"}
	var next atomic.Int64
	e := newEnv(t, func(o *Options) {
		o.NewTrackingID = func() (string, error) { return pool[int(next.Add(1))%len(pool)], nil }
	})
	a := e.signup("Collide")

	const creators = 8
	var wg sync.WaitGroup
	created := make(chan PropertyJSON, creators)
	start := make(chan struct{})
	for i := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := e.do(a.as(), "POST", "/v1/properties", map[string]any{"name": fmt.Sprintf("site %d", i)})
			switch r.code {
			case http.StatusCreated:
				var p PropertyJSON
				r.decode(t, &p)
				created <- p
			case http.StatusServiceUnavailable:
				// every candidate it tried was taken
			default:
				t.Errorf("create: %d %s", r.code, r.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(created)
	owner := map[string]string{}
	for p := range created {
		if other, dup := owner[p.TrackingID]; dup {
			t.Fatalf("properties %s and %s share tracking ID %s", other, p.ID, p.TrackingID)
		}
		owner[p.TrackingID] = p.ID
	}
	// Sequential creations take whatever is left; then the pool is dry.
	for range len(pool) - len(owner) {
		p := e.createProperty(a, map[string]any{"name": "late"})
		if _, dup := owner[p.TrackingID]; dup {
			t.Fatalf("tracking ID %s handed out twice", p.TrackingID)
		}
		owner[p.TrackingID] = p.ID
	}
	if r := e.do(a.as(), "POST", "/v1/properties", map[string]any{"name": "one too many"}); r.code != http.StatusServiceUnavailable {
		t.Fatalf("creation with every candidate taken = %d %s", r.code, r.body)
	}
	// Each tracking ID resolves to its own property.
	for tid, pid := range owner {
		var doc configclient.Property
		e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/properties/by-tracking-id/"+tid, nil).decode(t, &doc)
		if doc.PropertyID != pid {
			t.Fatalf("%s resolves to %s, created for %s", tid, doc.PropertyID, pid)
		}
	}
	var list struct{ Properties []PropertyJSON }
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties", nil).decode(t, &list)
	if len(list.Properties) != len(pool) {
		t.Fatalf("%d properties exist, want %d (one per tracking ID)", len(list.Properties), len(pool))
	}
}

func TestRealTrackingIDsAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		id, err := NewTrackingID()
		if err != nil {
			t.Fatal(err)
		}
		if !configclient.ValidTrackingID(id) || seen[id] {
			t.Fatalf("NewTrackingID = %q (valid %v, repeated %v)", id, configclient.ValidTrackingID(id), seen[id])
		}
		seen[id] = true
	}
}
