package httpapi

import (
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/pkg/eventually"
)

var claimToken = regexp.MustCompile(`"token": "(cl_[A-Za-z0-9_-]{43})"`)

// claimTokens returns the tokens of the claim links mailed to email,
// oldest first.
func claimTokens(t *testing.T, dir, email string) []string {
	t.Helper()
	return mailedTokens(t, dir, email, claimSubject, claimToken)
}

// claimLink waits for the n-th claim link mailed to email and returns its
// token.
func (e *env) claimLink(dir, email string, n int) string {
	e.t.Helper()
	return e.nthMailedToken(dir, email, claimSubject, claimToken, n)
}

func newClaimedAddress() string { return uniqueAddress("owner", "claimed.example") }

// signupWith signs up with email and password, and wants 201.
func (e *env) signupWith(email, password, company string) account {
	e.t.Helper()
	a := account{email: email, password: password}
	e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", map[string]string{"email": email, "password": password, "company": company}).decode(e.t, &a.tokens)
	return a
}

// signupTaken signs up with an address some account has and wants the
// 409 of a taken address.
func (e *env) signupTaken(email, password, company string) response {
	e.t.Helper()
	r := e.do(anonymous, "POST", "/v1/signup", map[string]string{"email": email, "password": password, "company": company})
	if r.code != http.StatusConflict || r.apiError().Code != "conflict" || r.apiError().Field != "email" {
		e.t.Fatalf("signing up with a taken address: %d %s, want 409 conflict on email", r.code, r.body)
	}
	return r
}

func (e *env) claim(token, password string) response {
	e.t.Helper()
	return e.do(anonymous, "POST", "/v1/signup/claim", map[string]string{"token": token, "password": password})
}

func wantInvalidClaimToken(t *testing.T, r response) {
	t.Helper()
	if r.code != http.StatusBadRequest || r.apiError().Code != "invalid_claim_token" || !strings.Contains(r.apiError().Message, "sign up again") {
		t.Fatalf("%d %s, want 400 invalid_claim_token saying to sign up again", r.code, r.body)
	}
}

func wantClaimRefused(t *testing.T, r response) {
	t.Helper()
	if r.code != http.StatusConflict || r.apiError().Code != "conflict" || r.apiError().Field != "email" {
		t.Fatalf("%d %s, want 409 conflict on email", r.code, r.body)
	}
}

// me reads the caller's tenant and user.
func (e *env) me(a account) (TenantJSON, UserJSON) {
	e.t.Helper()
	var got struct {
		Tenant TenantJSON `json:"tenant"`
		User   UserJSON   `json:"user"`
	}
	e.must(http.StatusOK, a.as(), "GET", "/v1/tenants/me", nil).decode(e.t, &got)
	return got.Tenant, got.User
}

// logsIn reports whether email and password log in, as which user.
func (e *env) logsIn(email, password string) (string, bool) {
	e.t.Helper()
	r := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": email, "password": password})
	switch r.code {
	case http.StatusOK:
		var tok TokenResponse
		r.decode(e.t, &tok)
		return tok.UserID, true
	case http.StatusUnauthorized:
		return "", false
	}
	e.t.Fatalf("login: %d %s", r.code, r.body)
	return "", false
}

// Someone signs up with another's address and never verifies it; the
// owner's sign-up is 409 as before, and a link to claim the address is
// mailed to it. With the link and the sign-up's password the owner's
// sign-up completes, as the sign-up would have: a new tenant, its admin
// signed in, the address verified. The holder keeps its user and tenant
// but the address no longer leads to it: it cannot log in with it, nor
// verify it, and its own verification link is refused; a reset of the
// address goes to the owner. The link works once, and not with another
// password.
func TestAddressClaim(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	email := newClaimedAddress()
	holder := e.signupWith(email, "the squatter's password", "Squat")
	holderLink := e.verificationToken(dir, email, 1)

	const password = "the owner's own password"
	r := e.signupTaken(email, password, "Owner Ltd")
	if !strings.Contains(r.apiError().Message, "log in instead") || !strings.Contains(r.apiError().Message, "claim") {
		t.Errorf("the 409's message %q, want it to say to log in, or to claim the address with the link mailed to it", r.apiError().Message)
	}
	token := e.claimLink(dir, email, 1)

	if r := e.claim(token, "the squatter's password"); r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_credentials" {
		t.Fatalf("the link with another password: %d %s, want 401 invalid_credentials", r.code, r.body)
	}
	for _, body := range []any{map[string]string{"password": password}, map[string]string{"token": "ev_not-a-claim", "password": password}} {
		if r := e.do(anonymous, "POST", "/v1/signup/claim", body); r.code != http.StatusBadRequest || r.apiError().Field != "token" {
			t.Errorf("%v: %d %s, want 400 invalid_field token", body, r.code, r.body)
		}
	}
	wantInvalidClaimToken(t, e.claim("cl_made-up", password))

	var tokens TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/signup/claim", map[string]string{"token": token, "password": password}).decode(t, &tokens)
	if tokens.Role != "admin" || tokens.TenantID == holder.tokens.TenantID || tokens.UserID == holder.tokens.UserID || tokens.AccessToken == "" || tokens.RefreshToken == "" {
		t.Fatalf("the claim answered %+v, want the admin of a new tenant signed in", tokens)
	}
	owner := account{email: email, password: password, tokens: tokens}
	tn, u := e.me(owner)
	if tn.Name != "Owner Ltd" || u.Email != email || !u.EmailVerified || u.Role != "admin" {
		t.Fatalf("the owner's tenant %+v and user %+v, want Owner Ltd and a verified admin of %s", tn, u, email)
	}
	wantInvalidClaimToken(t, e.claim(token, password))

	if id, ok := e.logsIn(email, password); !ok || id != tokens.UserID {
		t.Fatalf("the owner's login: %v %s, want the owner's user", ok, id)
	}
	if _, ok := e.logsIn(email, holder.password); ok {
		t.Fatal("the holder still logs in with the claimed address")
	}
	// The holder keeps its user and tenant (its sessions go on), without
	// the address.
	if tn, u := e.me(holder); tn.Name != "Squat" || u.Email == email || u.EmailVerified {
		t.Fatalf("the holder's tenant %+v and user %+v, want Squat, without the address", tn, u)
	}
	wantInvalidVerificationToken(t, e.confirmVerification(holder.as(), holderLink))
	if r := e.do(holder.as(), "POST", "/v1/email-verification", nil); r.code != http.StatusConflict {
		t.Fatalf("the holder asking for a verification link: %d %s, want 409", r.code, r.body)
	}
	e.requestReset(dir, email) // the owner's, verified
	if got := e.metric("config_address_claims_total", "claimed"); got != 1 {
		t.Errorf("%v claims counted, want 1", got)
	}
	// Verified now: a sign-up with it mails nothing more.
	e.signupTaken(email, "a third password", "Third")
	eventually.True(t, 10*time.Second, "the sign-up counted", func() bool { return e.metric("config_address_claims_total", "held_verified") == 1 })
	if got := claimTokens(t, dir, email); len(got) != 1 {
		t.Fatalf("%d claim links to a verified address, want the 1 before", len(got))
	}
}

// A verified holder is never affected: the sign-up's 409 is the very
// answer an unverified holder's address gets (nothing tells the two
// apart), no link is mailed, and a link mailed before the holder verified
// is refused, the holder keeping the address.
func TestAddressClaimVerifiedHolder(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	verified := e.signupWith(newClaimedAddress(), "the holder's password", "Verified")
	e.verify(dir, verified)
	unverified := e.signupWith(newClaimedAddress(), "the holder's password", "Unverified")

	a := e.signupTaken(verified.email, "an owner's password", "Owner")
	b := e.signupTaken(unverified.email, "an owner's password", "Owner")
	if string(a.body) != string(b.body) || a.header.Get("Retry-After") != b.header.Get("Retry-After") {
		t.Fatalf("the answers differ:\nverified   %s\nunverified %s", a.body, b.body)
	}
	token := e.claimLink(dir, unverified.email, 1)
	if got := claimTokens(t, dir, verified.email); len(got) != 0 || e.metric("config_address_claims_total", "held_verified") != 1 {
		t.Fatalf("%d claim links to a verified address, want none", len(got))
	}

	// The holder verifies before the link is used: the link is refused.
	e.verify(dir, unverified)
	wantClaimRefused(t, e.claim(token, "an owner's password"))
	if id, ok := e.logsIn(unverified.email, unverified.password); !ok || id != unverified.tokens.UserID {
		t.Fatal("the holder who verified lost the address")
	}
	if _, u := e.me(unverified); u.Email != unverified.email || !u.EmailVerified {
		t.Fatalf("the holder %+v, want its verified address", u)
	}
}

// A link works once, within 24 hours; sign-ups of one address mail links
// at the throttle's pace; each of several links works, and a newer one
// is not voided by an older. A holder deleted meanwhile leaves the address
// free, and the link completes the sign-up all the same.
func TestAddressClaimLinkLife(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	email := newClaimedAddress()
	holder := e.signupWith(email, "the squatter's password", "Squat")
	e.signupTaken(email, "the owner's password", "Owner")
	expiring := e.claimLink(dir, email, 1)
	e.signupTaken(email, "the owner's password", "Owner") // at once: throttled
	eventually.True(t, 10*time.Second, "the throttled sign-up counted", func() bool { return e.metric("config_address_claims_total", "throttled") == 1 })

	clock.advance(24 * time.Hour)
	wantInvalidClaimToken(t, e.claim(expiring, "the owner's password"))

	second := e.addUser(holder, "admin")
	e.signupTaken(email, "the owner's password", "Owner")
	token := e.claimLink(dir, email, 2)
	e.must(http.StatusNoContent, second.as(), "DELETE", "/v1/users/"+holder.tokens.UserID, nil)
	var tokens TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/signup/claim", map[string]string{"token": token, "password": "the owner's password"}).decode(t, &tokens)
	if id, ok := e.logsIn(email, "the owner's password"); !ok || id != tokens.UserID {
		t.Fatal("the owner does not log in after claiming a freed address")
	}
}

// Uses at once: of one link's, exactly one succeeds; of two links of one
// address (two sign-ups), exactly one takes the address and the other is
// 409; a claim and the holder's verification at once: exactly one wins,
// and the address is the winner's alone.
func TestAddressClaimRaces(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)

	email := newClaimedAddress()
	e.signupWith(email, "the squatter's password", "Squat")
	e.signupTaken(email, "the owner's password", "Owner")
	token := e.claimLink(dir, email, 1)
	_, refused := usedOnce(t, 4, http.StatusCreated, func(int) response { return e.claim(token, "the owner's password") })
	for _, r := range refused {
		wantInvalidClaimToken(t, r)
	}

	email = newClaimedAddress()
	e.signupWith(email, "the squatter's password", "Squat")
	e.signupTaken(email, "the first password", "First")
	first := e.claimLink(dir, email, 1)
	clock.advance(time.Minute) // past the throttle
	e.signupTaken(email, "the second password", "Second")
	second := e.claimLink(dir, email, 2)
	answers := make([]response, 2)
	var wg sync.WaitGroup
	for i, c := range [][2]string{{first, "the first password"}, {second, "the second password"}} {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = e.claim(c[0], c[1]) }()
	}
	wg.Wait()
	winners := 0
	for _, r := range answers {
		if r.code == http.StatusCreated {
			winners++
			continue
		}
		wantClaimRefused(t, r)
	}
	_, firstIn := e.logsIn(email, "the first password")
	_, secondIn := e.logsIn(email, "the second password")
	if winners != 1 || firstIn == secondIn {
		t.Fatalf("two links at once: %d succeeded (first logs in %v, second %v), want exactly one", winners, firstIn, secondIn)
	}

	for round := range 4 {
		email := newClaimedAddress()
		holder := e.signupWith(email, "the squatter's password", "Squat")
		link := e.verificationToken(dir, email, 1)
		e.signupTaken(email, "the owner's password", "Owner")
		token := e.claimLink(dir, email, 1)
		var verified, claimed response
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); verified = e.confirmVerification(holder.as(), link) }()
		go func() { defer wg.Done(); claimed = e.claim(token, "the owner's password") }()
		wg.Wait()
		_, holderIn := e.logsIn(email, holder.password)
		_, ownerIn := e.logsIn(email, "the owner's password")
		switch {
		case verified.code == http.StatusOK:
			wantClaimRefused(t, claimed)
			if !holderIn || ownerIn {
				t.Fatalf("round %d: the verification won, but the holder logs in %v and the owner %v", round, holderIn, ownerIn)
			}
		case claimed.code == http.StatusCreated:
			wantInvalidVerificationToken(t, verified)
			if holderIn || !ownerIn {
				t.Fatalf("round %d: the claim won, but the holder logs in %v and the owner %v", round, holderIn, ownerIn)
			}
		default:
			t.Fatalf("round %d: verification %d %s, claim %d %s: neither won", round, verified.code, verified.body, claimed.code, claimed.body)
		}
		clock.advance(time.Minute)
	}
}

// Without mail delivery nothing can be claimed: the 409 says only to log
// in, as before.
func TestAddressClaimWithoutMail(t *testing.T) {
	e := newEnv(t)
	email := newClaimedAddress()
	e.signupWith(email, "the squatter's password", "Squat")
	r := e.signupTaken(email, "the owner's password", "Owner")
	if strings.Contains(r.apiError().Message, "claim") {
		t.Fatalf("the 409 without mail delivery: %q, want no word of a claim link", r.apiError().Message)
	}
}

// With -email-claim-url the claim e-mail holds a link to the merchant's
// page, the token in it, where it gives the token to post otherwise.
func TestAddressClaimMailWithLink(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, func(o *Options) {
		o.Mailer = startMailer(t, mail.Dir{Path: dir}, mail.QueueConfig{}, o.Registerer, nil)
		o.MailFrom, o.EmailClaimURL = testFrom(t), "https://app.example/claim-address?token={token}"
	})
	email := newClaimedAddress()
	e.signupWith(email, "the squatter's password", "Squat")
	const password = "the owner's own password"
	e.signupTaken(email, password, "Owner Ltd")
	link := regexp.MustCompile(`https://app\.example/claim-address\?token=(cl_[A-Za-z0-9_-]{43})\r\n`)
	token := e.nthMailedToken(dir, email, claimSubject, link, 1)
	if r := e.claim(token, password); r.code != http.StatusCreated {
		t.Fatalf("claiming with the link's token: %d %s, want 201", r.code, r.body)
	}
}
