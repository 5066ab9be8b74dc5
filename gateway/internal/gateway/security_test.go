package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/golang-jwt/jwt/v5"
)

// TestSecurity is the table of requests the gateway must refuse: each gets
// a 401 (403 for a client-forged identity header with a valid token), never
// reaches the upstream, and is logged with its reason but without the
// token. The accepted requests around it show what the upstream sees.
func TestSecurity(t *testing.T) {
	is := newIssuer(t)
	config, behavior, collection := newUpstream(t, "config"), newUpstream(t, "behavior"), newUpstream(t, "collection")
	config.setJWKS(is.jwks())

	// An external identity provider signing RS256, for enterprise tenants.
	idpKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idpKID, _ := authtoken.KeyID(&idpKey.PublicKey)
	idpJWK, _ := authtoken.NewJWK(&idpKey.PublicKey, idpKID)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(authtoken.JWKS{Keys: []authtoken.JWK{idpJWK}})
	}))
	defer idp.Close()
	const idpIssuer = "https://idp.example.com"
	idpClaims := func(tid string) authtoken.Claims {
		c := is.claims(tid)
		c.Issuer = idpIssuer
		return c
	}
	idpSign := func(c authtoken.Claims) string { return must(authtoken.Sign(c, idpKID, idpKey)) }

	g := startGateway(t, "-consul-addr=", staticUpstreams(config, behavior, collection),
		"-external-jwks-url="+idp.URL, "-external-issuer="+idpIssuer, "-external-tenants=tenant-e, tenant-f")
	const path = "/v1/reports/behavior/pages?property=p1"
	eventually.NoError(t, 10*time.Second, "keys fetched from config", func() error {
		if r := g.get(t, path, "Authorization", "Bearer "+is.token(t, "tenant-a")); r.status != http.StatusOK {
			return errorf("status %d: %s", r.status, r.body)
		}
		return nil
	})

	now := time.Now()
	with := func(mod func(c *authtoken.Claims)) string {
		c := is.claims("tenant-a")
		mod(&c)
		return is.sign(t, c)
	}
	valid := is.token(t, "tenant-a")
	edPub := []byte(is.key.Public().(ed25519.PublicKey))
	hs256 := func(key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, is.claims("tenant-a"))
		tok.Header["kid"] = is.kid
		return must(tok.SignedString(key))
	}
	jwkJSON := must(json.Marshal(is.jwks().Keys[0]))
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, is.claims("tenant-a"))
		tok.Header["kid"] = is.kid
		return must(tok.SignedString(jwt.UnsafeAllowNoneSignatureType))
	}()
	tampered := func() string {
		parts := strings.Split(valid, ".")
		c := is.claims("tenant-b") // someone else's tenant, same signature
		parts[1] = base64.RawURLEncoding.EncodeToString(must(json.Marshal(c)))
		return strings.Join(parts, ".")
	}()
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)

	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	tests := []struct {
		name       string
		headers    []string
		wantStatus int
		wantCode   string
		wantReason string // logged
	}{
		{"no token", nil, 401, "missing_token", "missing_token"},
		{"basic credentials", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "missing_token", "missing_token"},
		{"garbage token", bearer("not.a.jwt"), 401, "invalid_token", "malformed"},
		{"expired", bearer(with(func(c *authtoken.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) })), 401, "invalid_token", "expired"},
		{"not yet valid", bearer(with(func(c *authtoken.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), 401, "invalid_token", "not_yet_valid"},
		{"issued in the future", bearer(with(func(c *authtoken.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })), 401, "invalid_token", "issued_in_future"},
		{"no expiry", bearer(with(func(c *authtoken.Claims) { c.ExpiresAt = nil })), 401, "invalid_token", "missing_claim"},
		{"no audience", bearer(with(func(c *authtoken.Claims) { c.Audience = nil })), 401, "invalid_token", ""},
		{"refresh token as the bearer", bearer("rt_A3nYs7uCakAqwDz4RairFbjlT1YJhTlROSwuCt1AMnw"), 401, "invalid_token", "malformed"},
		{"wrong issuer", bearer(with(func(c *authtoken.Claims) { c.Issuer = "someone-else" })), 401, "invalid_token", "wrong_issuer"},
		{"wrong audience", bearer(with(func(c *authtoken.Claims) { c.Audience = jwt.ClaimStrings{"another-api"} })), 401, "invalid_token", "wrong_audience"},
		{"alg none", bearer(none), 401, "invalid_token", "disallowed_alg"},
		{"HS256 signed with the public key", bearer(hs256(edPub)), 401, "invalid_token", "disallowed_alg"},
		{"HS256 signed with the public JWK", bearer(hs256(jwkJSON)), 401, "invalid_token", "disallowed_alg"},
		{"unknown kid", bearer(must(authtoken.Sign(is.claims("tenant-a"), "kid-nobody-published", stranger))), 401, "invalid_token", "unknown_kid"},
		{"known kid, another key", bearer(must(authtoken.Sign(is.claims("tenant-a"), is.kid, stranger))), 401, "invalid_token", "bad_signature"},
		{"tampered payload", bearer(tampered), 401, "invalid_token", "bad_signature"},
		{"service role in a token", bearer(with(func(c *authtoken.Claims) { c.Role = tenant.RoleService })), 401, "invalid_token", "invalid_claims"},
		{"no tenant", bearer(with(func(c *authtoken.Claims) { c.TenantID = "" })), 401, "invalid_token", "invalid_claims"},
		{"IdP key claiming our issuer", bearer(idpSign(is.claims("tenant-a"))), 401, "invalid_token", "unknown_kid"},
		{"IdP token, wrong audience", bearer(idpSign(func() authtoken.Claims {
			c := idpClaims("tenant-e")
			c.Audience = jwt.ClaimStrings{"another-api"}
			return c
		}())), 401, "invalid_token", "wrong_audience"},
		{"IdP token for a tenant it may not assert", bearer(idpSign(idpClaims("tenant-a"))), 401, "invalid_token", "invalid_claims"},
		// Which of two tokens was meant cannot be known: the first was
		// taken, whoever the second (checked by a proxy in front, say) was.
		{"two bearer tokens", append(bearer(valid), bearer(is.token(t, "tenant-b"))...), 400, "invalid_request", "repeated_authorization"},
		{"a bearer token and a second, empty, header", append(bearer(valid), "Authorization", ""), 400, "invalid_request", "repeated_authorization"},
		{"forged tenant header, no token", []string{tenant.HeaderTenantID, "tenant-b"}, 401, "missing_token", "missing_token"},
		{"forged tenant header, valid token", append(bearer(valid), tenant.HeaderTenantID, "tenant-b"), 403, "identity_header_forbidden", ""},
		{"forged signed identity, valid token", append(bearer(valid), tenant.HeaderRole, "admin", tenant.HeaderSignature, "00"), 403, "identity_header_forbidden", ""},
	}
	jwksBefore := config.jwksHit.Load()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := behavior.hits.Load()
			reqID := "sec-" + strings.Repeat("x", i%3) + strconv.Itoa(i) // well-formed, as the ID middleware keeps
			r := g.get(t, path, append(tt.headers, "X-Request-Id", reqID)...)
			if r.status != tt.wantStatus || r.errorCode() != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.errorCode(), tt.wantStatus, tt.wantCode, r.body)
			}
			// An expired token is mended with the refresh token, and the
			// answer says how; others are not.
			if refresh := strings.Contains(string(r.body), "POST /v1/refresh"); refresh != (tt.wantReason == "expired") {
				t.Fatalf("the answer says to refresh: %v, want %v: %s", refresh, tt.wantReason == "expired", r.body)
			}
			if r.status == http.StatusUnauthorized && !strings.Contains(r.header.Get("WWW-Authenticate"), `Bearer realm="acme-analytics", error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
			if n := behavior.hits.Load(); n != before {
				t.Fatal("the refused request reached the upstream")
			}
			line := logLine(t, g.logs.String(), reqID, "refused")
			if tt.wantReason != "" && !strings.Contains(line, `"reason":"`+tt.wantReason+`"`) {
				t.Fatalf("log line lacks reason %q: %s", tt.wantReason, line)
			}
			for i := 0; i+1 < len(tt.headers); i += 2 {
				if v := tt.headers[i+1]; tt.headers[i] == "Authorization" && len(v) > 30 {
					if strings.Contains(g.logs.String(), v[len(v)-30:]) {
						t.Fatal("the logs contain the token")
					}
				}
			}
		})
	}
	if n := config.jwksHit.Load() - jwksBefore; n != 0 {
		t.Errorf("unknown kids made the gateway refetch the JWKS %d times within a minute; want 0", n)
	}

	t.Run("valid token reaches the upstream as a signed identity", func(t *testing.T) {
		r := g.get(t, path, bearer(valid)...)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		want := echo{Instance: "behavior", Path: "/v1/reports/behavior/pages", RawQuery: "property=p1", TenantID: "tenant-a", UserID: "user-1", Role: "viewer",
			RawTenant: "tenant-a", XFF: "127.0.0.1", RealIP: "127.0.0.1"}
		if r.echo != want {
			t.Fatalf("upstream saw %+v\nwant %+v", r.echo, want)
		}
	})
	t.Run("clock skew within leeway accepted", func(t *testing.T) {
		tok := with(func(c *authtoken.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second)) })
		if r := g.get(t, path, bearer(tok)...); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("external IdP token", func(t *testing.T) {
		r := g.get(t, path, bearer(idpSign(idpClaims("tenant-e")))...)
		if r.status != http.StatusOK || r.echo.TenantID != "tenant-e" {
			t.Fatalf("status %d, upstream saw tenant %q: %s", r.status, r.echo.TenantID, r.body)
		}
	})
	// The token goes no further than the gateway, on a public route too
	// (it reached collection and config-svc's sign-up, which never read
	// it).
	t.Run("the token is not forwarded", func(t *testing.T) {
		for _, req := range []*http.Request{
			g.request(t, http.MethodGet, path, nil, bearer(valid)...),
			g.request(t, http.MethodPost, "/collect?tid=UA-1", nil, bearer(valid)...),
			g.request(t, http.MethodPost, "/v1/signup", nil, bearer(valid)...),
		} {
			if r := do(t, req); r.status != http.StatusOK || r.echo.Authorization {
				t.Errorf("%s %s: status %d, upstream got the Authorization header: %v", req.Method, req.URL.Path, r.status, r.echo.Authorization)
			}
		}
	})
	t.Run("forged identity on a public route is stripped", func(t *testing.T) {
		r := g.get(t, "/collect?tid=UA-1", tenant.HeaderTenantID, "tenant-b", tenant.HeaderUserID, "u", tenant.HeaderRole, "admin",
			tenant.HeaderTimestamp, "1", tenant.HeaderSignature, "00")
		if r.status != http.StatusOK || r.echo.RawTenant != "" || !strings.Contains(r.echo.IdentityError, tenant.ErrNoTenant.Error()) {
			t.Fatalf("status %d, upstream saw %+v", r.status, r.echo)
		}
	})
}

// TestKeyRotation: a token signed with a key that config-svc has just
// started publishing is accepted once the gateway's on-demand refresh (at
// most one per -jwks-min-refresh-interval) has fetched it.
func TestKeyRotation(t *testing.T) {
	old, rotated := newIssuer(t), newIssuer(t)
	config, behavior := newUpstream(t, "config"), newUpstream(t, "behavior")
	config.setJWKS(old.jwks())
	g := startGateway(t, "-consul-addr=", staticUpstreams(config, behavior), "-jwks-min-refresh-interval=1s")
	path := "/v1/reports/realtime?property=p1"
	eventually.NoError(t, 10*time.Second, "old key accepted", func() error {
		if r := g.get(t, path, "Authorization", "Bearer "+old.token(t, "t1")); r.status != http.StatusOK {
			return errorf("status %d", r.status)
		}
		return nil
	})
	config.setJWKS(authtoken.JWKS{Keys: append(old.jwks().Keys, rotated.jwks().Keys...)})
	start, fetches := time.Now(), config.jwksHit.Load()
	tok := rotated.token(t, "t1")
	eventually.NoError(t, 10*time.Second, "rotated key accepted", func() error {
		if r := g.get(t, path, "Authorization", "Bearer "+tok); r.status != http.StatusOK {
			return errorf("status %d", r.status)
		}
		return nil
	})
	// Many lookups of the unknown kid, but at most one fetch a second.
	if n, limit := config.jwksHit.Load()-fetches, int64(time.Since(start)/time.Second)+1; n > limit {
		t.Fatalf("%d JWKS fetches in %v, want at most %d", n, time.Since(start), limit)
	}
	if r := g.get(t, path, "Authorization", "Bearer "+old.token(t, "t1")); r.status != http.StatusOK {
		t.Fatalf("old key refused after the rotation: %d", r.status)
	}
}

// logLine returns the log line of the request with ID reqID containing
// msg, failing the test when there is none.
func logLine(t *testing.T, logs, reqID, msg string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"request_id":"`+reqID+`"`) && strings.Contains(l, msg) {
			return l
		}
	}
	t.Fatalf("no log line with %q for request %s", msg, reqID)
	return ""
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestKeysUnavailable: until the gateway has fetched config-svc's keys, a
// token cannot be judged, so the answer is 503 (try again), not 401 (your
// token is bad); public routes work meanwhile.
func TestKeysUnavailable(t *testing.T) {
	is := newIssuer(t)
	config, collection := newUpstream(t, "config"), newUpstream(t, "collection")
	// config serves no JWKS yet: its answer there has no usable key.
	g := startGateway(t, "-consul-addr=", staticUpstreams(config, collection), "-breaker-open-timeout=2s")
	r := g.get(t, "/v1/properties", "Authorization", "Bearer "+is.token(t, "t1"))
	if r.status != http.StatusServiceUnavailable || r.errorCode() != "auth_unavailable" || r.header.Get("Retry-After") != "2" {
		t.Fatalf("got %d %s, Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := g.get(t, "/collect?tid=UA-1"); r.status != http.StatusOK {
		t.Fatalf("public route: %d", r.status)
	}
	config.setJWKS(is.jwks())
	eventually.NoError(t, 10*time.Second, "keys fetched by the background retry", func() error {
		if r := g.get(t, "/v1/properties", "Authorization", "Bearer "+is.token(t, "t1")); r.status != http.StatusOK {
			return errorf("status %d", r.status)
		}
		return nil
	})
}

// TestKeysUnavailableForANewKey: a token of a key the gateway has not seen,
// while it cannot fetch config-svc's keys (config-svc failing in the middle
// of a key rotation), cannot be judged: 503 auth_unavailable (try again),
// not 401 (sign in again), which told the holder of a valid token to throw
// it away. Tokens of the cached keys pass meanwhile; once the keys can be
// fetched again the new key passes, and a made-up kid is 401 as before.
func TestKeysUnavailableForANewKey(t *testing.T) {
	old, rotated, stranger := newIssuer(t), newIssuer(t), newIssuer(t)
	config, behavior := newUpstream(t, "config"), newUpstream(t, "behavior")
	config.setJWKS(old.jwks())
	g := startGateway(t, "-consul-addr=", staticUpstreams(config, behavior), "-jwks-min-refresh-interval=1s", "-breaker-open-timeout=2s")
	path := "/v1/reports/realtime?property=p1"
	status := func(is *issuer) func() error {
		return func() error {
			if r := g.get(t, path, "Authorization", "Bearer "+is.token(t, "t1")); r.status != http.StatusOK {
				return errorf("status %d %s", r.status, r.body)
			}
			return nil
		}
	}
	eventually.NoError(t, 10*time.Second, "old key accepted", status(old))

	config.mu.Lock()
	config.jwks = nil // its JWKS endpoint answers no key set
	config.mu.Unlock()
	// Once the refetch that the new kid causes (at most one a second) has
	// failed.
	eventually.NoError(t, 10*time.Second, "new key: try again", func() error {
		r := g.get(t, path, "Authorization", "Bearer "+rotated.token(t, "t1"))
		if r.status != http.StatusServiceUnavailable || r.errorCode() != "auth_unavailable" || r.header.Get("Retry-After") != "2" {
			return errorf("a new key while keys cannot be fetched: %d %s, Retry-After %q; want 503 auth_unavailable", r.status, r.body, r.header.Get("Retry-After"))
		}
		return nil
	})
	if err := status(old)(); err != nil {
		t.Errorf("a cached key while keys cannot be fetched: %v", err)
	}

	config.setJWKS(authtoken.JWKS{Keys: append(old.jwks().Keys, rotated.jwks().Keys...)})
	eventually.NoError(t, 10*time.Second, "rotated key accepted", status(rotated))
	if r := g.get(t, path, "Authorization", "Bearer "+stranger.token(t, "t1")); r.status != http.StatusUnauthorized || r.errorCode() != "invalid_token" {
		t.Errorf("a made-up kid with the keys fetched: %d %s; want 401 invalid_token", r.status, r.body)
	}
}

// TestRefusedTokensLimited: checking a signature is most of what an
// authenticated request costs the gateway, and nothing else limited the
// requests whose token is refused (the tenant's bucket needs a verified
// token). Past -bad-token-burst refused tokens, a network's tokens are
// answered 429 before their signature is checked, valid ones too, until
// its bucket refills; other networks are not affected, a request without
// a token costs nothing and is not counted.
func TestRefusedTokensLimited(t *testing.T) {
	is, stranger := newIssuer(t), newIssuer(t)
	config, behavior := newUpstream(t, "config"), newUpstream(t, "behavior")
	config.setJWKS(is.jwks())
	g := startGateway(t, "-consul-addr=", staticUpstreams(config, behavior), "-trusted-proxies=127.0.0.0/8",
		"-bad-token-rate=0.5", "-bad-token-burst=3")
	const path = "/v1/reports/realtime?property=p1"
	get := func(token, from string) response {
		t.Helper()
		headers := []string{"X-Forwarded-For", from}
		if token != "" {
			headers = append(headers, "Authorization", "Bearer "+token)
		}
		return g.get(t, path, headers...)
	}
	valid, forged := is.token(t, "tenant-a"), stranger.token(t, "tenant-a")
	eventually.NoError(t, 10*time.Second, "keys fetched from config", func() error {
		if r := get(valid, "192.0.2.1"); r.status != http.StatusOK {
			return errorf("status %d: %s", r.status, r.body)
		}
		return nil
	})
	for i := range 3 {
		if r := get(forged, "203.0.113.7"); r.status != http.StatusUnauthorized || r.errorCode() != "invalid_token" {
			t.Fatalf("refused token %d: %d %s", i+1, r.status, r.body)
		}
		if r := get("", "203.0.113.7"); r.status != http.StatusUnauthorized || r.errorCode() != "missing_token" {
			t.Fatalf("no token after refused token %d: %d %s", i+1, r.status, r.body)
		}
	}
	for _, tok := range []string{forged, valid} {
		r := get(tok, "203.0.113.7")
		if r.status != http.StatusTooManyRequests || r.errorCode() != "too_many_bad_tokens" || r.header.Get("Retry-After") != "2" {
			t.Fatalf("a token after the burst: %d %s, Retry-After %q; want 429 too_many_bad_tokens, 2", r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if r := get(valid, "203.0.113.8"); r.status != http.StatusOK {
		t.Fatalf("another network: %d %s", r.status, r.body)
	}
	eventually.NoError(t, 10*time.Second, "the network's bucket refilled", func() error {
		if r := get(valid, "203.0.113.7"); r.status != http.StatusOK {
			return errorf("status %d: %s", r.status, r.body)
		}
		return nil
	})
}
