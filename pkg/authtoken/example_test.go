package authtoken_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/tenant"
)

// Example shows both sides: config-svc issues a token and serves its JWKS;
// the gateway verifies the token against that JWKS.
func Example() {
	// config-svc: a signing key, its kid, the JWKS it serves.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	kid, _ := authtoken.KeyID(key.Public())
	jwk, _ := authtoken.NewJWK(key.Public(), kid)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+authtoken.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_ = json.NewEncoder(w).Encode(authtoken.JWKS{Keys: []authtoken.JWK{jwk}})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	id := tenant.Identity{TenantID: "tenant-42", UserID: "user-7", Role: tenant.RoleAdmin}
	claims := authtoken.NewClaims(id, authtoken.DefaultIssuer, authtoken.DefaultAudience, time.Now(), 15*time.Minute)
	token, err := authtoken.Sign(claims, kid, key)
	if err != nil {
		panic(err)
	}

	// The gateway: a key set filled from the JWKS, and a verifier.
	keys := authtoken.NewKeySet(authtoken.URLSource(srv.Client(), srv.URL+authtoken.JWKSPath), 0)
	v, err := authtoken.NewVerifier(keys, authtoken.VerifierConfig{Issuer: authtoken.DefaultIssuer, Audience: authtoken.DefaultAudience})
	if err != nil {
		panic(err)
	}
	got, err := v.Verify(context.Background(), token)
	if err != nil {
		fmt.Println("refused:", authtoken.Reason(err))
		return
	}
	fmt.Println(got.Identity().TenantID, got.Identity().UserID, got.Identity().Role)

	_, err = v.Verify(context.Background(), token+"x")
	fmt.Println("tampered:", authtoken.Reason(err))
	// Output:
	// tenant-42 user-7 admin
	// tampered: bad_signature
}
