package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
	"golang.org/x/crypto/bcrypt"
)

// Password rules.
const (
	MinPasswordLength = 10
	// MaxPasswordBytes is bcrypt's limit: it ignores anything longer, so
	// longer passwords are refused rather than silently truncated.
	MaxPasswordBytes = 72
)

// CheckPassword says what is wrong with a new password, or "" when it is
// acceptable.
func CheckPassword(pw, email string) string {
	switch {
	case pw == "":
		// Left out, most likely: "must be at least 10 characters long"
		// would send the caller looking for a short one.
		return fmt.Sprintf("is required: choose one of at least %d characters", MinPasswordLength)
	case utf8.RuneCountInString(pw) < MinPasswordLength:
		return fmt.Sprintf("must be at least %d characters long", MinPasswordLength)
	case len(pw) > MaxPasswordBytes:
		return fmt.Sprintf("must be at most %d bytes long", MaxPasswordBytes)
	case strings.TrimSpace(pw) == "":
		return "must not be blank"
	case email != "" && strings.EqualFold(pw, email):
		return "must not be your e-mail address"
	}
	return ""
}

// Hasher hashes and checks passwords with bcrypt.
type Hasher struct {
	cost  int
	dummy []byte // compared against for unknown users, so timing tells nothing
}

// NewHasher returns a Hasher of the given bcrypt cost.
func NewHasher(cost int) (*Hasher, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d out of range %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no user has this password"), cost)
	if err != nil {
		return nil, err
	}
	return &Hasher{cost: cost, dummy: dummy}, nil
}

// Hash returns the bcrypt hash of pw.
func (h *Hasher) Hash(pw string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(pw), h.cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}

// Check reports whether pw matches hash. An empty hash (unknown user) still
// costs one comparison.
func (h *Hasher) Check(hash, pw string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// NormalizeEmail returns the form e-mail addresses are stored and compared
// in: trimmed and lower case.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// CheckEmail says what is wrong with an e-mail address, or "".
func CheckEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	switch {
	case email == "":
		return "is required: an e-mail address such as name@example.com"
	case len(email) > 254:
		return "is longer than 254 characters"
	case !ok || local == "" || domain == "" || strings.Contains(domain, "@"):
		return fmt.Sprintf("%q is not an e-mail address (name@example.com)", email)
	case !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, "."):
		return fmt.Sprintf("%q: the domain must be a full domain name such as example.com", email)
	case strings.ContainsAny(email, " \t\r\n<>()[],;:\\\""):
		return fmt.Sprintf("%q contains characters an e-mail address cannot have", email)
	}
	return ""
}

// CheckNewEmail says what is wrong with an address given to an account (a
// sign-up, a user an admin adds, an invitation), or "": CheckEmail's
// problems, and a control character (a NUL), a line or paragraph
// separator or a text direction control anywhere in it, which no address
// has and which the e-mails we send would carry in their headers. Logins
// and password resets check an address with CheckEmail alone, so that an
// account made before such addresses were refused can still sign in.
func CheckNewEmail(email string) string {
	if problem := CheckEmail(email); problem != "" {
		return problem
	}
	if i := strings.IndexFunc(email, rules.Unprintable); i >= 0 {
		r, _ := utf8.DecodeRuneInString(email[i:])
		return fmt.Sprintf("%q has the character %U (a control character, line break or text direction control), which an e-mail address cannot have", email, r)
	}
	return ""
}

// RandomToken returns prefix followed by 32 random bytes in base64url.
func RandomToken(prefix string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashToken returns the hex SHA-256 of a refresh token, API secret,
// password reset or e-mail verification token: what is stored instead of the token. The tokens
// are random, so a fast hash is enough. Of a user's password hash it is
// the fingerprint that reset and refresh tokens keep of the password they
// were made under (a bcrypt hash is salted: its SHA-256 tells nothing of
// the password).
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// Prefixes of the random credentials, so that a leaked one is recognisable
// (and secret scanners can find it).
const (
	RefreshTokenPrefix       = "rt_"
	APISecretPrefix          = "as_"
	PasswordResetTokenPrefix = "pr_"
	// EmailVerificationTokenPrefix starts the token of an e-mail
	// verification link.
	EmailVerificationTokenPrefix = "ev_"
	// InvitationTokenPrefix starts the token of an invitation link.
	InvitationTokenPrefix = "inv_"
	// ClaimTokenPrefix starts the token of a link that claims an address
	// an unverified user holds.
	ClaimTokenPrefix = "cl_"
)

// Issuer signs access tokens.
type Issuer struct {
	Keys      *KeyRing
	Issuer    string
	Audience  string
	AccessTTL time.Duration
	Now       func() time.Time
}

// AccessToken returns a signed access token for id and its expiry.
func (i *Issuer) AccessToken(id tenant.Identity) (string, time.Time, error) {
	if id.Role != tenant.RoleAdmin && id.Role != tenant.RoleViewer {
		return "", time.Time{}, errors.New("access tokens are only issued to admins and viewers")
	}
	now := time.Now()
	if i.Now != nil {
		now = i.Now()
	}
	c := authtoken.NewClaims(id, i.Issuer, i.Audience, now, i.AccessTTL)
	kid, key := i.Keys.Signer()
	tok, err := authtoken.Sign(c, kid, key)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, c.ExpiresAt.Time, nil
}
