package authtoken

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
)

// JWK is one public key of a JSON Web Key Set (RFC 7517): an Ed25519 key
// (kty "OKP", crv "Ed25519", x; RFC 8037) or an RSA key (kty "RSA", n, e).
type JWK struct {
	KeyType   string `json:"kty"`
	Curve     string `json:"crv,omitempty"`
	X         string `json:"x,omitempty"`
	N         string `json:"n,omitempty"`
	E         string `json:"e,omitempty"`
	KeyID     string `json:"kid,omitempty"`
	Algorithm string `json:"alg,omitempty"`
	Use       string `json:"use,omitempty"`
}

// JWKS is a JSON Web Key Set, the document served at JWKSPath.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Key is a decoded verification key.
type Key struct {
	ID        string
	Algorithm string           // AlgEdDSA or AlgRS256
	Public    crypto.PublicKey // ed25519.PublicKey or *rsa.PublicKey
}

// ErrUnsupportedKey is returned (wrapped) for a JWK this package cannot use
// to verify tokens: another key type or curve, an encryption key, an RSA key
// shorter than MinRSABits, or malformed parameters.
var ErrUnsupportedKey = errors.New("unsupported JWK")

var b64 = base64.RawURLEncoding

// NewJWK encodes pub (an ed25519.PublicKey or an *rsa.PublicKey) as a
// signature-verification JWK named kid; an empty kid becomes KeyID(pub).
func NewJWK(pub crypto.PublicKey, kid string) (JWK, error) {
	var k JWK
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return JWK{}, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedKey, len(pub))
		}
		k = JWK{KeyType: "OKP", Curve: "Ed25519", X: b64.EncodeToString(pub), Algorithm: AlgEdDSA}
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinRSABits {
			return JWK{}, fmt.Errorf("%w: RSA key of %d bits", ErrUnsupportedKey, pub.N.BitLen())
		}
		k = JWK{KeyType: "RSA", N: b64.EncodeToString(pub.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()), Algorithm: AlgRS256}
	default:
		return JWK{}, fmt.Errorf("%w: key type %T", ErrUnsupportedKey, pub)
	}
	k.Use = "sig"
	if kid == "" {
		kid = k.thumbprint()
	}
	k.KeyID = kid
	return k, nil
}

// KeyID returns the RFC 7638 thumbprint of pub (base64url of the SHA-256 of
// its canonical JWK members): a key ID that is the same wherever it is
// computed and changes only with the key.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := NewJWK(pub, "-")
	if err != nil {
		return "", err
	}
	return k.thumbprint(), nil
}

func (k JWK) thumbprint() string {
	// RFC 7638: only the required members, in lexicographic order, no
	// whitespace. The values are base64url strings, which need no escaping.
	var canon string
	switch k.KeyType {
	case "OKP":
		canon = `{"crv":"` + k.Curve + `","kty":"OKP","x":"` + k.X + `"}`
	case "RSA":
		canon = `{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:])
}

// PublicKey decodes k into an ed25519.PublicKey or an *rsa.PublicKey.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	key, err := k.Key()
	if err != nil {
		return nil, err
	}
	return key.Public, nil
}

// Key decodes k into a verification key. The algorithm comes from the
// key's "alg" member when present (it must fit the key type) and otherwise
// from its type: EdDSA for Ed25519, RS256 for RSA.
func (k JWK) Key() (Key, error) {
	if k.Use != "" && k.Use != "sig" {
		return Key{}, fmt.Errorf("%w: use %q is not sig", ErrUnsupportedKey, k.Use)
	}
	switch k.KeyType {
	case "OKP":
		if k.Curve != "Ed25519" {
			return Key{}, fmt.Errorf("%w: OKP curve %q", ErrUnsupportedKey, k.Curve)
		}
		if k.Algorithm != "" && k.Algorithm != AlgEdDSA {
			return Key{}, fmt.Errorf("%w: alg %q on an Ed25519 key", ErrUnsupportedKey, k.Algorithm)
		}
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return Key{}, fmt.Errorf("%w: malformed Ed25519 x", ErrUnsupportedKey)
		}
		return Key{ID: k.KeyID, Algorithm: AlgEdDSA, Public: ed25519.PublicKey(x)}, nil
	case "RSA":
		if k.Algorithm != "" && k.Algorithm != AlgRS256 {
			return Key{}, fmt.Errorf("%w: alg %q on an RSA key", ErrUnsupportedKey, k.Algorithm)
		}
		n, err1 := b64.DecodeString(k.N)
		e, err2 := b64.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return Key{}, fmt.Errorf("%w: malformed RSA n or e", ErrUnsupportedKey)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < MinRSABits {
			return Key{}, fmt.Errorf("%w: RSA key of %d bits", ErrUnsupportedKey, pub.N.BitLen())
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return Key{}, fmt.Errorf("%w: RSA exponent %d", ErrUnsupportedKey, pub.E)
		}
		return Key{ID: k.KeyID, Algorithm: AlgRS256, Public: pub}, nil
	default:
		return Key{}, fmt.Errorf("%w: kty %q", ErrUnsupportedKey, k.KeyType)
	}
}

// Find returns the key of s named kid.
func (s JWKS) Find(kid string) (JWK, bool) {
	for _, k := range s.Keys {
		if k.KeyID == kid {
			return k, true
		}
	}
	return JWK{}, false
}

// maxJWKSBytes bounds the JWKS document a fetch reads.
const maxJWKSBytes = 1 << 20

// FetchJWKS gets the JWKS served at url.
func FetchJWKS(ctx context.Context, client *http.Client, url string) (JWKS, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return JWKS{}, fmt.Errorf("fetch jwks from %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return JWKS{}, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return JWKS{}, fmt.Errorf("fetch jwks from %s: status %s", url, resp.Status)
	}
	var s JWKS
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&s); err != nil {
		return JWKS{}, fmt.Errorf("decode jwks from %s: %w", url, err)
	}
	return s, nil
}
