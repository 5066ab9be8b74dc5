// Package authtoken is the contract between the service that issues access
// tokens (config-svc) and the services that verify them (the gateway): the
// claims of an access token, the JSON Web Key Set (JWKS) in which the issuer
// publishes its public keys, and a Verifier that checks tokens against such a
// set.
//
// # Tokens
//
// An access token is a JWT signed with Ed25519 (alg "EdDSA", RFC 8037) whose
// header names the signing key in "kid". Its claims (Claims) are iss
// (DefaultIssuer), aud (DefaultAudience), sub (the user ID), tid (the tenant
// ID), role ("admin" or "viewer"), exp, iat and nbf. The issuer signs with
// Sign; RS256 is also supported, for external identity providers whose
// tokens carry the same tid and role claims.
//
// # Publishing keys
//
// The issuer serves a JWKS at JWKSPath, built with NewJWK for each public key
// that may have signed a live token or is about to sign one (the current key
// and, during a rotation, the next one or the previous one). KeyID derives a stable kid from a public key
// (its RFC 7638 thumbprint).
//
// # Verifying
//
// A KeySet caches the keys of one issuer by kid. It is refreshed when asked
// (Refresh, e.g. every few minutes) and, when a token names an unknown kid,
// at most once per minimum refresh interval (a minute by default), so that a
// key rotation is picked up at once while tokens with made-up kids cannot
// make the verifier hammer the issuer. A failed refresh keeps the cached keys.
//
// A Verifier accepts a token only when all of these hold: its alg is one of
// the allowed algorithms (EdDSA and RS256; "none" and every HMAC algorithm
// are always refused, so a public key can never be used as an HMAC secret);
// its kid names a key of the set made for that same algorithm; the signature
// verifies; exp is present and not past; nbf and iat, when present, are not
// in the future; iss and aud are the expected ones; and sub, tid and role are
// set, with role admin or viewer. Clock differences up to the leeway
// (DefaultLeeway) are tolerated. Reason turns a verification error into a
// short code that is safe to log: nothing in this package puts a token in an
// error message.
package authtoken
