package authtoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/golang-jwt/jwt/v5"
)

func TestKeyIDMatchesRFCExamples(t *testing.T) {
	edX, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	rsaJWK := authtoken.JWK{KeyType: "RSA", E: "AQAB", N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
	rsaPub, err := rsaJWK.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pub  any
		want string
	}{
		{"Ed25519, RFC 8037 A.3", ed25519.PublicKey(edX), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
		{"RSA, RFC 7638 3.1", rsaPub, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := authtoken.KeyID(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("KeyID = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestJWKRoundTrip(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey := rsaKey(t)
	for _, pub := range []any{edPub, &rsaKey.PublicKey} {
		jwk, err := authtoken.NewJWK(pub, "")
		if err != nil {
			t.Fatal(err)
		}
		wantID, _ := authtoken.KeyID(pub)
		if jwk.KeyID != wantID || jwk.Use != "sig" {
			t.Fatalf("NewJWK kid %q use %q; want thumbprint %q and use sig", jwk.KeyID, jwk.Use, wantID)
		}
		b, _ := json.Marshal(authtoken.JWKS{Keys: []authtoken.JWK{jwk}})
		var set authtoken.JWKS
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatal(err)
		}
		got, ok := set.Find(wantID)
		if !ok {
			t.Fatalf("key %s not found in %s", wantID, b)
		}
		key, err := got.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if !pub.(equaler).Equal(key) {
			t.Fatalf("decoded key differs from the encoded one (%s)", b)
		}
	}
}

func TestJWKRefusesUnusableKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := authtoken.NewJWK(&ec.PublicKey, "k"); !errors.Is(err, authtoken.ErrUnsupportedKey) {
		t.Fatalf("NewJWK(EC key) error = %v, want ErrUnsupportedKey", err)
	}
	if _, err := authtoken.NewJWK(&small.PublicKey, "k"); !errors.Is(err, authtoken.ErrUnsupportedKey) {
		t.Fatalf("NewJWK(1024-bit RSA) error = %v, want ErrUnsupportedKey", err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := authtoken.NewJWK(edPub, "k")
	tests := []struct {
		name string
		mod  func(k *authtoken.JWK)
	}{
		{"encryption key", func(k *authtoken.JWK) { k.Use = "enc" }},
		{"HMAC alg on an Ed25519 key", func(k *authtoken.JWK) { k.Algorithm = "HS256" }},
		{"RS256 alg on an Ed25519 key", func(k *authtoken.JWK) { k.Algorithm = "RS256" }},
		{"other curve", func(k *authtoken.JWK) { k.Curve = "X25519" }},
		{"short x", func(k *authtoken.JWK) { k.X = k.X[:20] }},
		{"symmetric key", func(k *authtoken.JWK) { k.KeyType = "oct" }},
		{"small RSA", func(k *authtoken.JWK) {
			*k = authtoken.JWK{KeyType: "RSA", KeyID: "k", N: base64.RawURLEncoding.EncodeToString(small.N.Bytes()), E: "AQAB"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := good
			tt.mod(&k)
			if _, err := k.Key(); !errors.Is(err, authtoken.ErrUnsupportedKey) {
				t.Fatalf("Key() error = %v, want ErrUnsupportedKey", err)
			}
		})
	}
}

var (
	rsaOnce *rsa.PrivateKey
)

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	if rsaOnce == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaOnce = k
	}
	return rsaOnce
}

// issuer is a test issuer: keys, and a JWKS server counting its fetches.
type issuer struct {
	ed      ed25519.PrivateKey
	edKID   string
	rsa     *rsa.PrivateKey
	rsaKID  string
	srv     *httptest.Server
	fetches atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	is := &issuer{ed: ed, rsa: rsaKey(t)}
	is.edKID, _ = authtoken.KeyID(ed.Public())
	is.rsaKID, _ = authtoken.KeyID(&is.rsa.PublicKey)
	edJWK, _ := authtoken.NewJWK(ed.Public(), is.edKID)
	rsaJWK, _ := authtoken.NewJWK(&is.rsa.PublicKey, is.rsaKID)
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(authtoken.JWKS{Keys: []authtoken.JWK{edJWK, rsaJWK}})
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) verifier(t *testing.T, now time.Time) *authtoken.Verifier {
	t.Helper()
	ks := authtoken.NewKeySet(authtoken.URLSource(is.srv.Client(), is.srv.URL+authtoken.JWKSPath), 0)
	v, err := authtoken.NewVerifier(ks, authtoken.VerifierConfig{
		Issuer: authtoken.DefaultIssuer, Audience: authtoken.DefaultAudience, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	is := newIssuer(t)
	now := time.Now().Truncate(time.Second)
	v := is.verifier(t, now)
	id := tenant.Identity{TenantID: "t-1", UserID: "u-1", Role: tenant.RoleViewer}
	base := func() authtoken.Claims {
		return authtoken.NewClaims(id, authtoken.DefaultIssuer, authtoken.DefaultAudience, now, 15*time.Minute)
	}
	sign := func(c authtoken.Claims) string {
		s, err := authtoken.Sign(c, is.edKID, is.ed)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(mod func(c *authtoken.Claims)) string {
		c := base()
		mod(&c)
		return sign(c)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	edPubRaw := []byte(is.ed.Public().(ed25519.PublicKey))
	hmacWithPublicKey := func(key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, base())
		tok.Header["kid"] = is.edKID
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	edJWKJSON, _ := json.Marshal(must(authtoken.NewJWK(is.ed.Public(), is.edKID)))
	noneToken := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, base())
		tok.Header["kid"] = is.edKID
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}()
	tampered := func() string {
		parts := strings.Split(sign(base()), ".")
		c := base()
		c.TenantID = "t-other"
		payload, _ := json.Marshal(c)
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	}()
	rsaAsEd := func() string {
		// An RS256 token whose kid names the Ed25519 key.
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, base())
		tok.Header["kid"] = is.edKID
		s, _ := tok.SignedString(is.rsa)
		return s
	}()
	rsaToken, err := authtoken.Sign(base(), is.rsaKID, is.rsa)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		want  string // Reason, or "" for accepted
	}{
		{"valid EdDSA", sign(base()), ""},
		{"valid RS256", rsaToken, ""},
		{"expired within leeway", with(func(c *authtoken.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-20 * time.Second)) }), ""},
		{"nbf within leeway", with(func(c *authtoken.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(20 * time.Second)) }), ""},
		{"expired", with(func(c *authtoken.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) }), "expired"},
		{"not yet valid", with(func(c *authtoken.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), "not_yet_valid"},
		{"issued in the future", with(func(c *authtoken.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) }), "issued_in_future"},
		{"no exp", with(func(c *authtoken.Claims) { c.ExpiresAt = nil }), "missing_claim"},
		{"wrong issuer", with(func(c *authtoken.Claims) { c.Issuer = "evil" }), "wrong_issuer"},
		{"no issuer", with(func(c *authtoken.Claims) { c.Issuer = "" }), "missing_claim"},
		{"wrong audience", with(func(c *authtoken.Claims) { c.Audience = jwt.ClaimStrings{"other-api"} }), "wrong_audience"},
		{"no tenant", with(func(c *authtoken.Claims) { c.TenantID = "" }), "invalid_claims"},
		{"no user", with(func(c *authtoken.Claims) { c.Subject = "" }), "invalid_claims"},
		{"service role", with(func(c *authtoken.Claims) { c.Role = tenant.RoleService }), "invalid_claims"},
		{"unknown role", with(func(c *authtoken.Claims) { c.Role = "owner" }), "invalid_claims"},
		{"alg none", noneToken, "disallowed_alg"},
		{"HS256 keyed with the raw public key", hmacWithPublicKey(edPubRaw), "disallowed_alg"},
		{"HS256 keyed with the public JWK", hmacWithPublicKey(edJWKJSON), "disallowed_alg"},
		{"RS256 naming the Ed25519 key", rsaAsEd, "disallowed_alg"},
		{"unknown kid", must(authtoken.Sign(base(), "no-such-kid", stranger)), "unknown_kid"},
		{"known kid, stranger's key", must(authtoken.Sign(base(), is.edKID, stranger)), "bad_signature"},
		{"tampered payload", tampered, "bad_signature"},
		{"no kid", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, base())
			return must(tok.SignedString(is.ed))
		}(), "no_kid"},
		{"garbage", "not-a-jwt", "malformed"},
		{"huge", strings.Repeat("a", authtoken.MaxTokenBytes+1), "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Identity() != id {
					t.Fatalf("identity = %+v, want %+v", c.Identity(), id)
				}
				return
			}
			if err == nil {
				t.Fatal("Verify accepted the token")
			}
			if got := authtoken.Reason(err); got != tt.want {
				t.Fatalf("Reason = %q, want %q (error: %v)", got, tt.want, err)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[len(tt.token)-20:]) {
				t.Fatalf("error contains the token: %v", err)
			}
		})
	}
	// One fetch at start; the unknown kid found it refreshed too recently.
	if n := is.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestNewVerifierRefusesUnsafeAlgorithms(t *testing.T) {
	ks := authtoken.NewKeySet(func(context.Context) (authtoken.JWKS, error) { return authtoken.JWKS{}, nil }, 0)
	for _, algs := range [][]string{{"none"}, {"HS256"}, {authtoken.AlgEdDSA, "HS512"}, {}} {
		_, err := authtoken.NewVerifier(ks, authtoken.VerifierConfig{Issuer: "i", Audience: "a", Algorithms: algs})
		if err == nil {
			t.Fatalf("NewVerifier accepted algorithms %v", algs)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
