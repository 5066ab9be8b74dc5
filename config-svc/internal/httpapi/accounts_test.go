package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/golang-jwt/jwt/v5"
)

// TestSignupToTrackingSnippet is a new merchant's path through the public
// API, as the README shows it: sign up, create a property, get its
// tracking ID and snippet.
func TestSignupToTrackingSnippet(t *testing.T) {
	e := newEnv(t)
	r := e.must(http.StatusCreated, anonymous, "POST", "/v1/signup",
		`{"email": "  Founder@Shop.Example ", "password": "correct horse battery", "company": "Shop Ltd"}`)
	var tok TokenResponse
	r.decode(t, &tok)
	if tok.TokenType != "Bearer" || tok.Role != "admin" || tok.ExpiresIn < 890 || tok.ExpiresIn > 900 || !strings.HasPrefix(tok.RefreshToken, "rt_") {
		t.Fatalf("sign-up tokens = %+v", tok)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("token responses must not be cached")
	}

	// The access token is what the gateway expects: EdDSA, a kid from the
	// JWKS, and the agreed claims.
	claims, err := e.verifier.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatalf("the gateway's verifier refuses the access token: %v", err)
	}
	if claims.TenantID != tok.TenantID || claims.Subject != tok.UserID || claims.Role != tenant.RoleAdmin ||
		claims.Issuer != authtoken.DefaultIssuer || len(claims.Audience) != 1 || claims.Audience[0] != authtoken.DefaultAudience || claims.NotBefore == nil || claims.IssuedAt == nil {
		t.Fatalf("claims = %+v", claims)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &authtoken.Claims{})
	if err != nil || parsed.Method.Alg() != "EdDSA" {
		t.Fatalf("token alg = %v, %v; want EdDSA", parsed.Method, err)
	}
	var jwks authtoken.JWKS
	e.must(http.StatusOK, anonymous, "GET", "/.well-known/jwks.json", nil).decode(t, &jwks)
	if _, ok := jwks.Find(parsed.Header["kid"].(string)); !ok {
		t.Fatalf("kid %v is not in the JWKS %+v", parsed.Header["kid"], jwks)
	}

	admin := bearer(tok.AccessToken)
	var me struct {
		Tenant TenantJSON `json:"tenant"`
		User   UserJSON   `json:"user"`
	}
	e.must(http.StatusOK, admin, "GET", "/v1/tenants/me", nil).decode(t, &me)
	if me.Tenant.Name != "Shop Ltd" || me.User.Email != "founder@shop.example" || me.User.Role != "admin" {
		t.Fatalf("tenants/me = %+v", me)
	}

	r = e.must(http.StatusCreated, admin, "POST", "/v1/properties",
		`{"name": "Shop", "hostnames": ["Shop.Example", "www.shop.example"], "time_zone": "Europe/Berlin", "currency": "EUR"}`)
	var p PropertyJSON
	r.decode(t, &p)
	if !configclient.ValidTrackingID(p.TrackingID) {
		t.Fatalf("tracking ID %q is not AT- and ten unambiguous characters", p.TrackingID)
	}
	want := SnippetQueue + "\n" + `<script async src="https://collect.example.test/tracker.js" data-tid="` + p.TrackingID + `"></script>`
	if p.Snippet != want {
		t.Fatalf("snippet = %s\nwant      %s", p.Snippet, want)
	}
	if p.Hostnames[0] != "shop.example" || p.TimeZone != "Europe/Berlin" || p.Currency != "EUR" || p.ProcessingShards != 1 || r.header.Get("Location") != "/v1/properties/"+p.ID {
		t.Fatalf("property = %+v, Location %q", p, r.header.Get("Location"))
	}
	// Made cookieless, its snippet tells the tracker to set no cookie.
	var ckl PropertyJSON
	e.must(http.StatusOK, admin, "PATCH", "/v1/properties/"+p.ID, `{"cookieless": true}`).decode(t, &ckl)
	if want := SnippetQueue + "\n" + `<script async src="https://collect.example.test/tracker.js" data-tid="` + p.TrackingID + `" data-cookieless></script>`; ckl.Snippet != want {
		t.Fatalf("cookieless snippet = %s\nwant                 %s", ckl.Snippet, want)
	}
	e.must(http.StatusOK, admin, "PATCH", "/v1/properties/"+p.ID, `{"cookieless": false}`)
	var list struct{ Properties []PropertyJSON }
	e.must(http.StatusOK, admin, "GET", "/v1/properties", nil).decode(t, &list)
	if len(list.Properties) != 1 || list.Properties[0].TrackingID != p.TrackingID {
		t.Fatalf("properties = %+v", list)
	}
	// The pipeline sees it at once.
	var doc configclient.Property
	e.must(http.StatusOK, service("collection"), "GET", "/internal/v1/properties/by-tracking-id/"+p.TrackingID, nil).decode(t, &doc)
	if doc.PropertyID != p.ID || doc.TenantID != tok.TenantID || doc.Rules.Version != 1 || !doc.Rules.Rules.BotFiltering || len(doc.Rules.Hostnames) != 2 {
		t.Fatalf("internal document = %+v", doc)
	}
}

func TestLoginRefreshLogout(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Acme")

	if r := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": "wrong password!"}); r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_credentials" {
		t.Fatalf("wrong password: %d %s", r.code, r.body)
	}
	if r := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": "nobody@nowhere.example", "password": a.password}); r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_credentials" {
		t.Fatalf("unknown e-mail: %d %s", r.code, r.body)
	}
	var login TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": strings.ToUpper(a.email), "password": a.password}).decode(t, &login)
	if login.TenantID != a.tokens.TenantID || login.UserID != a.tokens.UserID {
		t.Fatalf("login as %s gave %+v", a.email, login)
	}

	// A refresh token works once, and its replacement works.
	var next TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": login.RefreshToken}).decode(t, &next)
	if next.RefreshToken == login.RefreshToken || next.AccessToken == "" {
		t.Fatal("refresh did not rotate the refresh token")
	}
	if _, err := e.verifier.Verify(context.Background(), next.AccessToken); err != nil {
		t.Fatalf("refreshed access token: %v", err)
	}
	// Used again, it is refused (and signs out every session of the user:
	// TestRefreshTokenReuseSignsOutEverySession).
	if r := e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": login.RefreshToken}); r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_refresh_token" {
		t.Fatalf("reused refresh token: %d %s", r.code, r.body)
	}

	// Concurrent use of one token: exactly one wins.
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &next)
	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": next.RefreshToken}).code
		}()
	}
	wg.Wait()
	close(codes)
	won := 0
	for c := range codes {
		if c == http.StatusOK {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of 4 concurrent refreshes with one token succeeded, want 1", won)
	}

	// Logout revokes the given token.
	var other TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &other)
	e.must(http.StatusNoContent, a.as(), "POST", "/v1/logout", map[string]string{"refresh_token": other.RefreshToken})
	if r := e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": other.RefreshToken}); r.code != http.StatusUnauthorized {
		t.Fatalf("refresh after logout = %d", r.code)
	}
}

func TestRoleChangeAppliesAtRefreshAndDeletedUserCannotRefresh(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Roles")
	v := e.addUser(a, "viewer")
	if v.tokens.Role != "viewer" {
		t.Fatalf("viewer logged in as %s", v.tokens.Role)
	}
	e.must(http.StatusForbidden, v.as(), "POST", "/v1/properties", map[string]string{"name": "x"})
	e.must(http.StatusOK, a.as(), "PATCH", "/v1/users/"+v.tokens.UserID, map[string]string{"role": "admin"})
	var refreshed TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": v.tokens.RefreshToken}).decode(t, &refreshed)
	if refreshed.Role != "admin" {
		t.Fatalf("role after refresh = %s, want admin", refreshed.Role)
	}
	e.must(http.StatusCreated, bearer(refreshed.AccessToken), "POST", "/v1/properties", map[string]string{"name": "x"})

	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+v.tokens.UserID, nil)
	if r := e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": refreshed.RefreshToken}); r.code != http.StatusUnauthorized {
		t.Fatalf("refresh of a deleted user = %d %s", r.code, r.body)
	}
	// The address is free again.
	e.must(http.StatusCreated, a.as(), "POST", "/v1/users", map[string]string{"email": v.email, "password": v.password, "role": "viewer"})
}

func TestLastAdminIsKept(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Solo")
	r := e.must(http.StatusConflict, a.as(), "PATCH", "/v1/users/"+a.tokens.UserID, map[string]string{"role": "viewer"})
	if !strings.Contains(r.apiError().Message, "last admin") {
		t.Fatalf("message = %q", r.apiError().Message)
	}
	e.must(http.StatusConflict, a.as(), "DELETE", "/v1/users/"+a.tokens.UserID, nil)
	var users struct{ Users []UserJSON }
	e.must(http.StatusOK, a.as(), "GET", "/v1/users", nil).decode(t, &users)
	if len(users.Users) != 1 {
		t.Fatalf("users = %+v", users)
	}
}

// TestKeyRotation: a new key signs from the next reload on, and tokens of
// the old key verify while it is still in the directory.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Rotate")
	oldKID, _ := e.keys.Signer()
	if _, err := auth.WriteNewKey(e.keysDir); err != nil {
		t.Fatal(err)
	}
	// Ensure the new file is the newest even on coarse file systems.
	future := time.Now().Add(time.Minute)
	matches, _ := filepathGlob(e.keysDir)
	for _, m := range matches {
		if !strings.Contains(m, oldKID[:8]) {
			_ = chtimes(m, future)
		}
	}
	if err := e.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	newKID, _ := e.keys.Signer()
	if newKID == oldKID {
		t.Fatal("the new key does not sign after a reload")
	}
	var jwks authtoken.JWKS
	e.must(http.StatusOK, anonymous, "GET", "/.well-known/jwks.json", nil).decode(t, &jwks)
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS has %d keys during a rotation, want both", len(jwks.Keys))
	}
	var fresh TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &fresh)
	for name, tok := range map[string]string{"old": a.tokens.AccessToken, "new": fresh.AccessToken} {
		if _, err := e.verifier.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s token: %v", name, err)
		}
	}
}

// TestAdminsDemotingEachOtherKeepOne: two admins demoting each other at the
// same moment each see the other as an admin beforehand; the tenant must
// still keep one.
func TestAdminsDemotingEachOtherKeepOne(t *testing.T) {
	e := newEnv(t)
	for round := range 10 {
		a := e.signup(fmt.Sprintf("Pair %d", round))
		b := e.addUser(a, "admin")
		var wg sync.WaitGroup
		for _, pair := range [][2]account{{a, b}, {b, a}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do(pair[0].as(), "PATCH", "/v1/users/"+pair[1].tokens.UserID, map[string]string{"role": "viewer"})
				// 403: the other demoted this one first.
				if r.code != http.StatusOK && r.code != http.StatusConflict && r.code != http.StatusForbidden {
					t.Errorf("round %d: status %d", round, r.code)
				}
			}()
		}
		wg.Wait()
		// Read by whichever is an admin still: an admin route refuses
		// the token of a user demoted since.
		var users struct{ Users []UserJSON }
		r := e.do(a.as(), "GET", "/v1/users", nil)
		if r.code == http.StatusForbidden {
			r = e.do(b.as(), "GET", "/v1/users", nil)
		}
		if r.code != http.StatusOK {
			t.Fatalf("round %d: neither admin may list the users (%d %s): no admin left", round, r.code, r.body)
		}
		r.decode(t, &users)
		admins := 0
		for _, u := range users.Users {
			if u.Role == "admin" {
				admins++
			}
		}
		if admins == 0 {
			t.Fatalf("round %d: no admin left: %+v", round, users.Users)
		}
	}
}
