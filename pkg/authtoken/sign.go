package authtoken

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// MinRSABits is the smallest RSA key accepted for signing or verifying.
const MinRSABits = 2048

// Sign returns the compact JWT of c signed with key, with kid in its header.
// key is an ed25519.PrivateKey (alg EdDSA, what config-svc uses) or an
// *rsa.PrivateKey of at least MinRSABits (alg RS256).
func Sign(c Claims, kid string, key crypto.Signer) (string, error) {
	if kid == "" {
		return "", errors.New("sign token: empty key ID")
	}
	var method jwt.SigningMethod
	var k any = key
	switch key := key.(type) {
	case ed25519.PrivateKey:
		method = jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		if key.N.BitLen() < MinRSABits {
			return "", fmt.Errorf("sign token: RSA key of %d bits; at least %d needed", key.N.BitLen(), MinRSABits)
		}
		method = jwt.SigningMethodRS256
	default:
		return "", fmt.Errorf("sign token: unsupported key type %T", key)
	}
	t := jwt.NewWithClaims(method, c)
	t.Header["kid"] = kid
	s, err := t.SignedString(k)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
