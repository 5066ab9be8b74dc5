package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
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

// ErrEmailDomain is an address whose domain fails IDNA mapping (UTS #46):
// a code point no domain name may have, a label that is not valid
// punycode, a right-to-left label mixed wrongly. No domain has such a
// name, so no mail reaches the address.
var ErrEmailDomain = errors.New("the domain is not a valid domain name")

// emailDomains maps the domain of an address to its A-label form. It is
// idna.Lookup but for the hyphen rules: UTS #46 mapping (case, width,
// compatibility forms, NFC), the joiner and bidi rules, and STD3: letters,
// digits and hyphens only, as a mail host's name has. Nontransitional
// (UTS #46 and IDNA2008 today, and browsers since 2017): ß, ς and the
// joiners stay what they are, so that straße.de (xn--strae-oqa.de) and
// strasse.de, two domains, stay two; transitional processing would make
// ß "ss", an address at a domain its owner does not hold. The hyphen
// rules are left out, as browsers leave them out: ASCII labels such as
// "r3---sn-x" or "-a" are in use and were accepted before, and they are
// the registries' concern, not of who looks a name up.
var emailDomains = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.BidiRule(), idna.CheckHyphens(false))

// NormalizeEmail returns the canonical form of an address, the one every
// spelling of it has, which accounts, invitations and throttles are keyed
// by: trimmed; the local part lower-cased and in Unicode NFC (composed: é,
// not e + U+0301); the domain mapped by UTS #46 to its A-label
// (anna@Bücher.example, anna@bu\u0308cher.example and
// anna@xn--bcher-kva.example are all anna@xn--bcher-kva.example). Dots and
// +tags of the local part are kept: what they mean is up to each provider.
//
// The A-label and not the Unicode form, because every address that is
// ASCII, which most accounts' are, keeps the form it was stored in before
// (trimmed and lower case), those whose domain was given as an A-label
// included: the Unicode form would have changed those keys. (An ASCII
// domain that fails the mapping, one with an _ or a label xn--
// that is not punycode, keeps its old form as its only key: found as
// before, refused for a new account.) The A-label is also the domain's
// one spelling in DNS and in SMTP, which every mail server takes, so the
// e-mails we send to the canonical form reach it.
//
// A domain that fails the mapping is an error wrapping ErrEmailDomain. An
// address without a local part or a domain is returned as it was stored
// before, for CheckEmail to say what is wrong.
//
// The domain is mapped as given, not lower-cased first: UTS #46 maps case
// itself, and for a few code points otherwise than strings.ToLower does
// (ẞ, U+1E9E, is ss to UTS #46 and was ß to ToLower). So the canonical
// form of an address and that of its old form (OldEmail) can differ
// there: what is stored to be looked up again later (a claim link's
// pending sign-up) keeps the address as given.
func NormalizeEmail(email string) (string, error) {
	local, domain, ok := strings.Cut(strings.TrimSpace(email), "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return OldEmail(email), nil
	}
	a, err := emailDomains.ToASCII(domain)
	if err != nil {
		// idna's errors say which code point or label ("idna: disallowed
		// rune U+2603").
		return "", fmt.Errorf("%w (%s)", ErrEmailDomain, strings.TrimPrefix(err.Error(), "idna: "))
	}
	// A label "xn--" is an error to UTS #46 (its punycode is empty);
	// x/net/idna makes it an empty label: x@xn--.example would be
	// x@.example.
	labels := strings.FieldsFunc(norm.NFKC.String(strings.ToLower(domain)), func(r rune) bool { return r == '.' || r == '\u3002' })
	if slices.Contains(labels, "xn--") {
		return "", fmt.Errorf("%w (the label xn-- is an empty A-label)", ErrEmailDomain)
	}
	// The A-label must be one the mapping takes as it is: the bidi rule
	// is checked on the domain as given, so ℵ (U+2135, left to right)
	// passes it, and the Hebrew א (right to left) it maps to makes an
	// A-label that is refused when given again. Such a form would be no
	// address's canonical form (an account stored under it not found by
	// it), and no domain has it.
	if again, err := emailDomains.ToASCII(a); err != nil || again != a {
		return "", fmt.Errorf("%w (its A-label %s is refused: %s)", ErrEmailDomain, a, strings.TrimPrefix(fmt.Sprint(err), "idna: "))
	}
	return norm.NFC.String(strings.ToLower(local)) + "@" + a, nil
}

// OldEmail is the form addresses were stored in before NormalizeEmail
// (until 2026-12-07): trimmed and lower case. Accounts made then are
// keyed by it; for an ASCII address it is the canonical form.
func OldEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// EmailKeys returns the keys an account with the address may be stored
// under, in the order to look them up: the canonical form
// (NormalizeEmail), then those of the forms accounts made before it were
// stored in that differ from it: the old form of the address as given
// (OldEmail), then the old form of the address spelt in Unicode, composed
// (anna@bücher.example, as most people type it), so that an account made
// before with that spelling is found by any spelling. An ASCII address not
// in punycode has one key. A new account is keyed by the first and
// refused when any is taken. An address whose domain fails IDNA mapping
// has its old form alone (an account made before may have it).
//
// Each key is a spelling of the address: an old form whose canonical
// form is another address's is left out. strings.ToLower and UTS #46
// map a few capitals otherwise (İ, U+0130, is i to ToLower and i +
// U+0307 to UTS #46; ẞ is ß to one and ss to the other), so the old
// form of victim@İnfo.example is victim@info.example, another address:
// as a key it would have a sign-up at the look-alike domain refused as
// taken by that account, and mailed (at the look-alike) a link that
// takes the address from it, and a login with that spelling try the
// account's password under another address's throttle. An account made
// before with such a spelling was mailed at its old form, and is found
// by it.
func EmailKeys(email string) []string {
	old := OldEmail(email)
	canonical, err := NormalizeEmail(email)
	if err != nil {
		return []string{old}
	}
	keys := []string{canonical}
	add := func(k string) {
		if slices.Contains(keys, k) {
			return
		}
		if c, err := NormalizeEmail(k); err == nil && c == canonical {
			keys = append(keys, k)
		}
	}
	add(old)
	local, domain, _ := strings.Cut(canonical, "@")
	if u, err := emailDomains.ToUnicode(domain); err == nil && u != domain {
		add(local + "@" + u)
	}
	return keys
}

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
// problems; a control character (a NUL), a line or paragraph separator or
// a text direction control anywhere in it, which no address has and which
// the e-mails we send would carry in their headers; and an invisible
// character (invisible). Logins and password resets check an address
// with CheckEmail alone, so that an account made before such addresses
// were refused can still sign in.
func CheckNewEmail(email string) string {
	if problem := CheckEmail(email); problem != "" {
		return problem
	}
	if i := strings.IndexFunc(email, rules.Unprintable); i >= 0 {
		r, _ := utf8.DecodeRuneInString(email[i:])
		return fmt.Sprintf("%q has the character %U (a control character, line break or text direction control), which an e-mail address cannot have", email, r)
	}
	if i := strings.IndexFunc(email, invisible); i >= 0 {
		r, _ := utf8.DecodeRuneInString(email[i:])
		return fmt.Sprintf("%+q has the invisible character %U, which an e-mail address cannot have; type the address again without it", email, r)
	}
	return ""
}

// invisible reports whether r is a character that shows nothing: a
// format character (Unicode's Cf: a zero-width space, joiner or
// non-joiner, a soft hyphen, a byte order mark, a word joiner), a
// variation selector or another default-ignorable code point (a
// combining grapheme joiner, a Hangul filler). In a local part each made
// an address that reads as another (a\u200b@shop.example is
// a@shop.example on screen) and so a second account for what its reader
// takes to be one address, mailed at a literal address no mailbox has.
// UTS #46 maps them out of a domain or refuses them there, so what is
// left to check is the local part; the joiners, which some scripts need
// inside words, are refused too: no mail provider gives out an address
// with one.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// NewEmail returns the keys (EmailKeys, the canonical form first) of an
// address given to an account (a sign-up, a user an admin adds, an
// invitation), or what is wrong with it: CheckNewEmail's problems, of its
// canonical form, or a domain that fails IDNA mapping (ErrEmailDomain),
// which is refused rather than stored.
func NewEmail(email string) (keys []string, problem string) {
	canonical, err := NormalizeEmail(email)
	if err != nil {
		// A control character, say, is named as CheckNewEmail names it.
		if problem := CheckNewEmail(OldEmail(email)); problem != "" {
			return nil, problem
		}
		return nil, fmt.Sprintf("%q: %v; check it for a mistyped character", OldEmail(email), err)
	}
	if problem := CheckNewEmail(canonical); problem != "" {
		return nil, problem
	}
	// No mail reaches a domain with an empty label or a label longer
	// than DNS allows (63 bytes, of its A-label).
	_, domain, _ := strings.Cut(canonical, "@")
	for _, label := range strings.Split(domain, ".") {
		switch {
		case label == "":
			return nil, fmt.Sprintf("%q: the domain has an empty label (two dots in a row)", canonical)
		case len(label) > 63:
			return nil, fmt.Sprintf("%q: the domain's label %q is longer than 63 characters, which no domain name has", canonical, label)
		}
	}
	return EmailKeys(email), ""
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
