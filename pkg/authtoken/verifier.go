package authtoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the size of a token a Verifier looks at.
const MaxTokenBytes = 8 << 10

var (
	// ErrAlgorithm is returned (wrapped) for a token signed with an
	// algorithm that is not allowed ("none", any HMAC, ...) or that does not
	// match the algorithm of the key its kid names.
	ErrAlgorithm = errors.New("signing algorithm not allowed")
	// ErrNoKeyID is returned (wrapped) for a token without a kid header.
	ErrNoKeyID = errors.New("token has no kid")
)

// VerifierConfig says what a Verifier expects of a token.
type VerifierConfig struct {
	Issuer   string        // required value of iss
	Audience string        // value that aud must contain
	Leeway   time.Duration // tolerated clock difference; zero means DefaultLeeway
	// Algorithms allowed; nil means AlgEdDSA and AlgRS256. Only those two
	// can be listed: "none" and HMAC algorithms are never accepted.
	Algorithms []string
	Now        func() time.Time // clock; nil means time.Now
}

// Verifier checks access tokens against one issuer's KeySet. It is safe
// for concurrent use.
type Verifier struct {
	keys   *KeySet
	parser *jwt.Parser
	algs   map[string]bool
}

// NewVerifier returns a Verifier for tokens of c.Issuer whose keys are in
// keys.
func NewVerifier(keys *KeySet, c VerifierConfig) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("new verifier: nil key set")
	}
	if c.Issuer == "" || c.Audience == "" {
		return nil, errors.New("new verifier: issuer and audience are required")
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Leeway < 0 {
		return nil, errors.New("new verifier: negative leeway")
	}
	if c.Algorithms == nil {
		c.Algorithms = []string{AlgEdDSA, AlgRS256}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	algs := map[string]bool{}
	for _, a := range c.Algorithms {
		if a != AlgEdDSA && a != AlgRS256 {
			return nil, fmt.Errorf("new verifier: algorithm %q is not allowed (only %s and %s)", a, AlgEdDSA, AlgRS256)
		}
		algs[a] = true
	}
	if len(algs) == 0 {
		return nil, errors.New("new verifier: no algorithm allowed")
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(c.Algorithms),
		jwt.WithIssuer(c.Issuer),
		jwt.WithAudience(c.Audience),
		jwt.WithLeeway(c.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(c.Now),
	)
	return &Verifier{keys: keys, parser: parser, algs: algs}, nil
}

// Verify checks raw (a compact JWT, without any "Bearer " prefix) and returns
// its claims. The error never contains the token; Reason summarises it.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if len(raw) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("verify token: %w: longer than %d bytes", jwt.ErrTokenMalformed, MaxTokenBytes)
	}
	var c Claims
	tok, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, ErrNoKeyID
		}
		k, err := v.keys.Lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		// The key decides the algorithm, never the token alone: a token
		// cannot make an RSA key verify an EdDSA signature, or the reverse.
		if alg := t.Method.Alg(); alg != k.Algorithm {
			return nil, fmt.Errorf("%w: token alg %s, key for %s", ErrAlgorithm, alg, k.Algorithm)
		}
		return k.Public, nil
	})
	if err != nil {
		// jwt reports a refused or unknown alg as a bad signature or an
		// unverifiable token; name the cause.
		if tok != nil && !errors.Is(err, jwt.ErrTokenMalformed) {
			alg, _ := tok.Header["alg"].(string)
			if !v.algs[alg] {
				return Claims{}, fmt.Errorf("verify token: %w: %.16q", ErrAlgorithm, alg)
			}
		}
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	return c, nil
}

// Reason returns a short, stable code for a verification error, safe to
// log and to show a client: "expired", "not_yet_valid", "issued_in_future",
// "wrong_issuer", "wrong_audience", "missing_claim", "invalid_claims",
// "disallowed_alg", "unknown_kid", "no_kid", "keys_unavailable",
// "bad_signature", "malformed" or, for anything else, "invalid".
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid"
}

// reasons is ordered so that the most specific cause wins when a token has
// several faults.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrKeysUnavailable, "keys_unavailable"},
	{ErrAlgorithm, "disallowed_alg"},
	{ErrNoKeyID, "no_kid"},
	{ErrUnknownKey, "unknown_kid"},
	{jwt.ErrTokenMalformed, "malformed"},
	{jwt.ErrTokenSignatureInvalid, "bad_signature"},
	{jwt.ErrTokenExpired, "expired"},
	{jwt.ErrTokenNotValidYet, "not_yet_valid"},
	{jwt.ErrTokenUsedBeforeIssued, "issued_in_future"},
	{jwt.ErrTokenInvalidIssuer, "wrong_issuer"},
	{jwt.ErrTokenInvalidAudience, "wrong_audience"},
	{jwt.ErrTokenRequiredClaimMissing, "missing_claim"},
	{ErrInvalidClaims, "invalid_claims"},
}
