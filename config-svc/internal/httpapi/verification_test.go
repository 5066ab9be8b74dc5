package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	netmail "net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/gocql/gocql"
)

const (
	verifyURL     = "https://app.example/verify-email?token={token}"
	resetSubject  = "Reset your Acme Analytics password"
	verifySubject = "Verify your Acme Analytics e-mail address"
)

var verifyLink = regexp.MustCompile(`https://app\.example/verify-email\?token=(ev_[A-Za-z0-9_-]{43})\r\n`)

// mailsAbout returns the messages in the pickup directory with subject,
// oldest first.
func mailsAbout(t *testing.T, dir, subject string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, raw := range mails(t, dir) {
		m, err := netmail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("read message: %v\n%s", err, raw)
		}
		if m.Header.Get("Subject") == subject {
			out = append(out, raw)
		}
	}
	return out
}

// verificationTokens returns the tokens of the verification messages to
// email in the pickup directory, oldest first.
func verificationTokens(t *testing.T, dir, email string) []string {
	t.Helper()
	return mailedTokens(t, dir, email, verifySubject, verifyLink)
}

// mailedTokens returns the tokens (token's first group) of the messages
// with subject to email in the pickup directory, oldest first.
func mailedTokens(t *testing.T, dir, email, subject string, token *regexp.Regexp) []string {
	t.Helper()
	var out []string
	for _, raw := range mailsAbout(t, dir, subject) {
		m, _ := netmail.ReadMessage(bytes.NewReader(raw))
		addr, err := netmail.ParseAddress(m.Header.Get("To"))
		if err != nil {
			t.Fatal(err)
		}
		if addr.Address != email {
			continue
		}
		body, _ := io.ReadAll(m.Body)
		match := token.FindSubmatch(body)
		if match == nil {
			t.Fatalf("no token in the message (%s):\n%s", subject, raw)
		}
		out = append(out, string(match[1]))
	}
	return out
}

// verificationToken waits for the n-th verification message to email and
// returns its token.
func (e *env) verificationToken(dir, email string, n int) string {
	e.t.Helper()
	return e.nthMailedToken(dir, email, verifySubject, verifyLink, n)
}

// nthMailedToken waits for the n-th message with subject to email and
// returns its token (token's first group); more messages fail the test.
func (e *env) nthMailedToken(dir, email, subject string, token *regexp.Regexp, n int) string {
	e.t.Helper()
	var got []string
	eventually.True(e.t, 10*time.Second, "the mail "+quote(subject), func() bool {
		got = mailedTokens(e.t, dir, email, subject, token)
		return len(got) >= n
	})
	if len(got) != n {
		e.t.Fatalf("%d messages %q to %s, want %d", len(got), subject, email, n)
	}
	return got[n-1]
}

func (e *env) confirmVerification(c who, token string) response {
	e.t.Helper()
	return e.do(c, "POST", "/v1/email-verification/confirm", map[string]string{"token": token})
}

// verify confirms a's address with the newest link mailed to it.
func (e *env) verify(dir string, a account) {
	e.t.Helper()
	tokens := verificationTokens(e.t, dir, a.email)
	token := e.verificationToken(dir, a.email, max(len(tokens), 1))
	var u UserJSON
	e.must(http.StatusOK, a.as(), "POST", "/v1/email-verification/confirm", map[string]string{"token": token}).decode(e.t, &u)
	if !u.EmailVerified {
		e.t.Fatalf("after the confirmation: %+v, want email_verified", u)
	}
}

// markVerified marks a's address verified in storage (for instances that
// send no verification mail the test can read).
func (e *env) markVerified(a account) {
	e.t.Helper()
	tid, uid := mustUUID(a.tokens.TenantID), mustUUID(a.tokens.UserID)
	if err := e.store.SetEmailVerified(context.Background(), tid, uid, a.email, time.Now().UTC()); err != nil {
		e.t.Fatal(err)
	}
}

// sibling starts another instance of e's deployment (its keyspace and
// keys), without mail.
func (e *env) sibling() *env {
	e.t.Helper()
	return startInstance(e.t, e.cfg, e.keysDir)
}

func mustUUID(s string) gocql.UUID {
	id, err := gocql.ParseUUID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func wantInvalidVerificationToken(t *testing.T, r response) {
	t.Helper()
	if r.code != http.StatusBadRequest || r.apiError().Code != "invalid_verification_token" || !strings.Contains(r.apiError().Message, "ask for a new one") {
		t.Fatalf("%d %s, want 400 invalid_verification_token", r.code, r.body)
	}
}

// userOf reads a's user as its admin sees it.
func (e *env) userOf(admin, a account) UserJSON {
	e.t.Helper()
	var u UserJSON
	e.must(http.StatusOK, admin.as(), "GET", "/v1/users/"+a.tokens.UserID, nil).decode(e.t, &u)
	return u
}

// Sign-up mails a link; the user signed in confirms it, and from then on
// the user reads as verified, with the time. The same link presented by
// another user (of another tenant, or of the same one) is refused and not
// used up; once used it is refused; a second link keeps the first time;
// asking for a link once verified is 409.
func TestEmailVerification(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Verify")
	token := e.verificationToken(dir, a.email, 1)

	if u := e.userOf(a, a); u.EmailVerified || u.EmailVerifiedAt != nil {
		t.Fatalf("a new user: %+v, want unverified", u)
	}
	// Sign-up does not need the address verified to use the API.
	e.createProperty(a, map[string]any{"name": "Shop"})

	stranger := e.signup("Stranger")
	wantInvalidVerificationToken(t, e.confirmVerification(stranger.as(), token))
	colleague := e.addUser(a, "admin")
	wantInvalidVerificationToken(t, e.confirmVerification(colleague.as(), token))
	if u := e.userOf(a, a); u.EmailVerified {
		t.Fatalf("after others used the link: %+v, want unverified", u)
	}

	clock.advance(time.Hour)
	var got UserJSON
	e.must(http.StatusOK, a.as(), "POST", "/v1/email-verification/confirm", map[string]string{"token": token}).decode(t, &got)
	if !got.EmailVerified || got.EmailVerifiedAt == nil || !got.EmailVerifiedAt.Equal(clock.now()) || got.Email != a.email {
		t.Fatalf("the confirmation answered %+v, want the user verified at %s", got, clock.now())
	}
	if u := e.userOf(colleague, a); !u.EmailVerified || !u.EmailVerifiedAt.Equal(clock.now()) {
		t.Fatalf("GET of the user: %+v, want verified at %s", u, clock.now())
	}
	var me struct{ User UserJSON }
	e.must(http.StatusOK, a.as(), "GET", "/v1/tenants/me", nil).decode(t, &me)
	if !me.User.EmailVerified {
		t.Fatalf("GET /v1/tenants/me: %+v, want verified", me.User)
	}
	wantInvalidVerificationToken(t, e.confirmVerification(a.as(), token))

	r := e.do(a.as(), "POST", "/v1/email-verification", nil)
	if r.code != http.StatusConflict || r.apiError().Field != "email" {
		t.Fatalf("asking for a link once verified: %d %s, want 409 on email", r.code, r.body)
	}

	for _, tt := range []struct {
		body      any
		code, fld string
	}{
		{map[string]string{}, "invalid_field", "token"},
		{map[string]string{"token": "pr_not-a-verification-token"}, "invalid_field", "token"},
		{map[string]string{"token": token, "email": a.email}, "unknown_field", "email"},
		{"", "invalid_json", ""},
	} {
		r := e.do(a.as(), "POST", "/v1/email-verification/confirm", tt.body)
		if r.code != http.StatusBadRequest || r.apiError().Code != tt.code || r.apiError().Field != tt.fld {
			t.Errorf("%v: %d %s, want 400 %s on %q", tt.body, r.code, r.body, tt.code, tt.fld)
		}
	}
	wantInvalidVerificationToken(t, e.confirmVerification(a.as(), "ev_made-up"))
	if got := e.metric("config_email_verifications_total", ""); got != 1 {
		t.Errorf("%v verifications counted, want 1", got)
	}
}

// A link works once, also under concurrent use, and expires; a user
// added by an admin gets one too, and asks for another for themselves.
func TestEmailVerificationTokenLife(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Life")
	token := e.verificationToken(dir, a.email, 1)
	usedOnce(t, 8, http.StatusOK, func(int) response { return e.confirmVerification(a.as(), token) })

	v := e.addUser(a, "viewer")
	expiring := e.verificationToken(dir, v.email, 1)
	clock.advance(DefaultEmailVerificationTTL)
	wantInvalidVerificationToken(t, e.confirmVerification(v.as(), expiring))
	var resp EmailVerificationResponse
	e.must(http.StatusAccepted, v.as(), "POST", "/v1/email-verification", nil).decode(t, &resp)
	if !strings.Contains(resp.Message, v.email) || !strings.Contains(resp.Message, "within 7 days") {
		t.Errorf("message %q", resp.Message)
	}
	e.must(http.StatusOK, v.as(), "POST", "/v1/email-verification/confirm", map[string]string{"token": e.verificationToken(dir, v.email, 2)})
	if u := e.userOf(a, v); !u.EmailVerified {
		t.Fatalf("the viewer after its new link: %+v, want verified", u)
	}
}

// Links are throttled per address as reset requests are, the one mailed
// at creation included; deleting a user and adding it again at once
// mails nothing more.
func TestEmailVerificationThrottle(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Throttle")
	e.verificationToken(dir, a.email, 1)
	r := e.do(a.as(), "POST", "/v1/email-verification", nil)
	if r.code != http.StatusTooManyRequests || r.apiError().Code != "too_many_attempts" || r.header.Get("Retry-After") != "60" {
		t.Fatalf("asking again right after sign-up: %d %s (Retry-After %q), want 429 after 60 s", r.code, r.body, r.header.Get("Retry-After"))
	}
	clock.advance(time.Minute)
	e.must(http.StatusAccepted, a.as(), "POST", "/v1/email-verification", nil)
	second := e.verificationToken(dir, a.email, 2)
	if r := e.do(a.as(), "POST", "/v1/email-verification", nil); r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "120" {
		t.Fatalf("a third request: %d (Retry-After %q), want 429 after 120 s (the wait doubles)", r.code, r.header.Get("Retry-After"))
	}
	// Both links work (the first is not voided by the second).
	e.must(http.StatusOK, a.as(), "POST", "/v1/email-verification/confirm", map[string]string{"token": second})

	v := e.addUser(a, "viewer")
	e.verificationToken(dir, v.email, 1)
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+v.tokens.UserID, nil)
	e.must(http.StatusCreated, a.as(), "POST", "/v1/users", map[string]string{"email": v.email, "password": v.password, "role": "viewer"})
	if got := e.metric("config_email_verification_mails_total", "throttled"); got != 3 {
		t.Errorf("%v verification mails counted throttled, want 3 (two asked for, one of a new user)", got)
	}
	if got := e.metric("config_email_verification_mails_total", "queued"); got != 3 {
		t.Errorf("%v verification mails counted queued, want 3", got)
	}
	eventually.True(t, 10*time.Second, "the queue empty", func() bool { return e.metric("config_mail_queued", "") == 0 })
	if n := len(verificationTokens(t, dir, v.email)); n != 1 {
		t.Fatalf("%d verification messages to the user added again at once, want the 1 before", n)
	}
}

// The defect this closes: an admin adds a user with a mistyped address.
// Whoever reads that mailbox gets the verification link, but cannot use
// it without signing in as the user, and asking for a password reset of
// the address mails nothing (202 as for any address, counted
// unverified). Once the user has verified the address, a reset is mailed.
func TestPasswordResetOnlyToVerified(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	admin := e.signup("Typo")
	typo := e.addUser(admin, "admin") // the address is someone else's
	stolen := e.verificationToken(dir, typo.email, 1)

	// The owner of the mailbox has an account of their own, not the user's.
	owner := e.signup("Owner")
	wantInvalidVerificationToken(t, e.confirmVerification(owner.as(), stolen))

	unknown := e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": "nobody." + typo.email})
	r := e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": typo.email})
	if !bytes.Equal(r.body, unknown.body) {
		t.Fatalf("an unverified address answered %s, an unknown one %s; want the same", r.body, unknown.body)
	}
	if got := e.metric("config_password_reset_requests_total", "unverified"); got != 1 {
		t.Fatalf("%v reset requests counted unverified, want 1", got)
	}
	// Three verification mails (admin, typo, owner), no reset.
	eventually.True(t, 10*time.Second, "the queue empty", func() bool {
		return e.metric("config_mail_queued", "") == 0 && e.metric("config_mail_messages_total", mail.OutcomeSent) == 3
	})
	if n := len(mailsAbout(t, dir, resetSubject)); n != 0 {
		t.Fatalf("%d reset messages for an unverified address, want none", n)
	}

	// The user themself (who knows the password) verifies, and then a
	// reset is mailed.
	e.verify(dir, typo)
	clock.advance(time.Minute) // past the reset throttle
	token := e.requestReset(dir, typo.email)
	e.confirmReset(http.StatusNoContent, token, "a verified reset")
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": typo.email, "password": "a verified reset"})
}

// A reset link made for an unverified address (before verification was
// required: an older instance during the rollout) is refused.
func TestPasswordResetLinkOfUnverifiedAddress(t *testing.T) {
	e, _ := mailEnv(t, newTestClock())
	a := e.signup("Old link")
	u, err := e.store.User(context.Background(), mustUUID(a.tokens.TenantID), mustUUID(a.tokens.UserID))
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.RandomToken(auth.PasswordResetTokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := e.store.SavePasswordReset(context.Background(), store.PasswordReset{Hash: auth.HashToken(token), TenantID: u.TenantID, UserID: u.ID,
		PasswordSHA256: auth.HashToken(u.PasswordHash), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": token, "password": "an old link's password"}))
}

// Without mail delivery sign-up and adding users work as before (the
// address stays unverified, counted), and asking for a link is 503.
func TestEmailVerificationWithoutMail(t *testing.T) {
	e := newEnv(t)
	a := e.signup("No mail")
	e.addUser(a, "viewer")
	if got := e.metric("config_email_verification_mails_total", "not_configured"); got != 2 {
		t.Errorf("%v verification mails counted not_configured, want 2", got)
	}
	r := e.do(a.as(), "POST", "/v1/email-verification", nil)
	if r.code != http.StatusServiceUnavailable || r.apiError().Code != "mail_not_configured" || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s (Retry-After %q), want 503 mail_not_configured with Retry-After", r.code, r.body, r.header.Get("Retry-After"))
	}
}
