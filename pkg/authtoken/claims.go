package authtoken

import (
	"errors"
	"fmt"
	"time"

	"github.com/acme/analytics/pkg/tenant"
	"github.com/golang-jwt/jwt/v5"
)

// Defaults shared by the issuer and the verifiers.
const (
	// DefaultIssuer is the iss claim of the tokens config-svc issues.
	DefaultIssuer = "acme-analytics"
	// DefaultAudience is the aud claim of tokens meant for the public API.
	DefaultAudience = "acme-analytics-api"
	// DefaultLeeway is the clock difference tolerated when checking exp,
	// nbf and iat.
	DefaultLeeway = 30 * time.Second
	// JWKSPath is where the issuer serves its JWKS.
	JWKSPath = "/.well-known/jwks.json"
)

// Signing algorithms a Verifier can accept.
const (
	// AlgEdDSA is Ed25519 (RFC 8037), what config-svc signs with.
	AlgEdDSA = "EdDSA"
	// AlgRS256 is RSASSA-PKCS1-v1_5 with SHA-256, for external identity
	// providers.
	AlgRS256 = "RS256"
)

// ErrInvalidClaims is returned (wrapped) for a token whose signature and
// standard claims are fine but that lacks the user, the tenant or a valid
// role.
var ErrInvalidClaims = errors.New("token lacks a user, tenant or valid role")

// Claims are the claims of an access token.
type Claims struct {
	jwt.RegisteredClaims
	// TenantID is the tenant the user acts in (claim "tid").
	TenantID string `json:"tid"`
	// Role is what the user may do in the tenant (claim "role"): admin or
	// viewer. A token never carries the service role.
	Role tenant.Role `json:"role"`
}

// NewClaims returns the claims of an access token for id, issued by issuer
// for audience, valid from now for ttl.
func NewClaims(id tenant.Identity, issuer, audience string, now time.Time, ttl time.Duration) Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   id.UserID,
			Audience:  jwt.ClaimStrings{audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		TenantID: id.TenantID,
		Role:     id.Role,
	}
}

// Validate implements jwt.ClaimsValidator: verification calls it after the
// standard checks. It requires sub, tid and a role of admin or viewer.
func (c Claims) Validate() error {
	switch {
	case c.Subject == "":
		return fmt.Errorf("%w: no sub (user ID)", ErrInvalidClaims)
	case c.TenantID == "":
		return fmt.Errorf("%w: no tid (tenant ID)", ErrInvalidClaims)
	case c.Role != tenant.RoleAdmin && c.Role != tenant.RoleViewer:
		return fmt.Errorf("%w: role must be %s or %s", ErrInvalidClaims, tenant.RoleAdmin, tenant.RoleViewer)
	}
	return nil
}

// Identity returns the caller the claims vouch for.
func (c Claims) Identity() tenant.Identity {
	return tenant.Identity{TenantID: c.TenantID, UserID: c.Subject, Role: c.Role}
}
