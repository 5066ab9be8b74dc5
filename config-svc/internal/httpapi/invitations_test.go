package httpapi

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

const inviteSubject = "You are invited to Acme Analytics"

var invitationToken = regexp.MustCompile(`"token": "(inv_[A-Za-z0-9_-]{43})"`)

// invitationTokens returns the tokens of the invitations mailed to email,
// oldest first.
func invitationTokens(t *testing.T, dir, email string) []string {
	t.Helper()
	return mailedTokens(t, dir, email, inviteSubject, invitationToken)
}

// invite invites email to admin's tenant as role and returns the
// invitation and the token mailed.
func (e *env) invite(dir string, admin account, email, role string) (InvitationJSON, string) {
	e.t.Helper()
	before := len(invitationTokens(e.t, dir, email))
	var inv InvitationJSON
	r := e.must(http.StatusCreated, admin.as(), "POST", "/v1/invitations", map[string]string{"email": email, "role": role})
	r.decode(e.t, &inv)
	if r.header.Get("Location") != "/v1/invitations/"+inv.ID || inv.Email != email || inv.Role != role || inv.InvitedBy != admin.tokens.UserID {
		e.t.Fatalf("invitation %+v (Location %q)", inv, r.header.Get("Location"))
	}
	var got []string
	eventually.True(e.t, 10*time.Second, "the invitation mail", func() bool {
		got = invitationTokens(e.t, dir, email)
		return len(got) > before
	})
	return inv, got[len(got)-1]
}

func (e *env) accept(token, password string) response {
	e.t.Helper()
	return e.do(anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": token, "password": password})
}

func (e *env) pendingInvitations(admin account) []InvitationJSON {
	e.t.Helper()
	var l InvitationList
	e.must(http.StatusOK, admin.as(), "GET", "/v1/invitations", nil).decode(e.t, &l)
	return l.Invitations
}

func wantInvalidInvitationToken(t *testing.T, r response) {
	t.Helper()
	if r.code != http.StatusBadRequest || r.apiError().Code != "invalid_invitation_token" {
		t.Fatalf("%d %s, want 400 invalid_invitation_token", r.code, r.body)
	}
}

func newInvitee() string { return uniqueAddress("invitee", "invited.example") }

// An admin invites an address; the invitation is listed; whoever reads the
// mail chooses a password and is signed in as a user of the tenant with
// the role, the address verified (so a reset is mailed to it); the link
// works once, also under concurrent use; bad input is refused with its
// field, and only admins invite.
func TestInvitationAccepted(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Inviting")
	email := newInvitee()
	inv, token := e.invite(dir, a, email, "viewer")
	if got := e.pendingInvitations(a); len(got) != 1 || got[0].ID != inv.ID || !got[0].ExpiresAt.Equal(clock.now().Add(InvitationTTL)) {
		t.Fatalf("pending %+v, want the invitation, expiring in 7 days", got)
	}

	if r := e.accept(token, "short"); r.code != http.StatusBadRequest || r.apiError().Field != "password" {
		t.Fatalf("a short password: %d %s, want 400 invalid_field password", r.code, r.body)
	}
	won, refused := usedOnce(t, 4, http.StatusCreated, func(i int) response {
		return e.do(anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": token, "password": fmt.Sprintf("invited password %d", i)})
	})
	for _, r := range refused {
		wantInvalidInvitationToken(t, r)
	}
	var tokens TokenResponse
	won.decode(t, &tokens)
	if tokens.TenantID != a.tokens.TenantID || tokens.Role != "viewer" || tokens.AccessToken == "" || tokens.RefreshToken == "" {
		t.Fatalf("the acceptance answered %+v, want a viewer of the tenant signed in", tokens)
	}
	invitee := account{email: email, tokens: tokens}
	if u := e.userOf(a, invitee); !u.EmailVerified || u.Email != email || u.Role != "viewer" {
		t.Fatalf("the invited user: %+v, want a verified viewer", u)
	}
	e.must(http.StatusOK, invitee.as(), "GET", "/v1/properties", nil)
	wantInvalidInvitationToken(t, e.accept(token, "yet another password"))
	if got := e.pendingInvitations(a); len(got) != 0 {
		t.Fatalf("pending after the acceptance: %+v, want none", got)
	}
	e.requestReset(dir, email) // verified: the reset is mailed

	viewer := account{tokens: tokens}
	if r := e.do(viewer.as(), "POST", "/v1/invitations", map[string]string{"email": newInvitee(), "role": "viewer"}); r.code != http.StatusForbidden {
		t.Fatalf("a viewer inviting: %d %s, want 403", r.code, r.body)
	}
	if r := e.do(a.as(), "POST", "/v1/invitations", map[string]string{"email": email, "role": "viewer"}); r.code != http.StatusConflict || r.apiError().Field != "email" {
		t.Fatalf("inviting a user's address: %d %s, want 409 on email", r.code, r.body)
	}
	for _, tt := range []struct {
		body        any
		code, field string
	}{
		{map[string]string{"role": "viewer"}, "invalid_field", "email"},
		{map[string]string{"email": "not an address", "role": "viewer"}, "invalid_field", "email"},
		{map[string]string{"email": newInvitee(), "role": "owner"}, "invalid_field", "role"},
		{map[string]string{"email": newInvitee(), "role": "viewer", "password": "x"}, "unknown_field", "password"},
	} {
		r := e.do(a.as(), "POST", "/v1/invitations", tt.body)
		if r.code != http.StatusBadRequest || r.apiError().Code != tt.code || r.apiError().Field != tt.field {
			t.Errorf("%v: %d %s, want 400 %s on %s", tt.body, r.code, r.body, tt.code, tt.field)
		}
	}
	for _, body := range []any{map[string]string{"password": "a long password"}, map[string]string{"token": "ev_not-an-invitation", "password": "a long password"}} {
		if r := e.do(anonymous, "POST", "/v1/invitations/accept", body); r.code != http.StatusBadRequest || r.apiError().Field != "token" {
			t.Errorf("%v: %d %s, want 400 invalid_field token", body, r.code, r.body)
		}
	}
	wantInvalidInvitationToken(t, e.accept("inv_made-up", "a long password"))
}

// A revoked invitation cannot be accepted; another tenant cannot revoke
// it; an expired one cannot be accepted and is no longer listed; inviting
// an address again at once is throttled.
func TestInvitationRevokedAndExpired(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Revoking")
	email := newInvitee()
	inv, token := e.invite(dir, a, email, "admin")

	other := e.signup("Other tenant")
	e.must(http.StatusNotFound, other.as(), "DELETE", "/v1/invitations/"+inv.ID, nil)
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/invitations/"+inv.ID, nil)
	e.must(http.StatusNotFound, a.as(), "DELETE", "/v1/invitations/"+inv.ID, nil)
	e.must(http.StatusNotFound, a.as(), "DELETE", "/v1/invitations/not-an-id", nil)
	wantInvalidInvitationToken(t, e.accept(token, "a revoked password"))
	if got := e.pendingInvitations(a); len(got) != 0 {
		t.Fatalf("pending after the revocation: %+v", got)
	}
	e.must(http.StatusUnauthorized, anonymous, "POST", "/v1/login", map[string]string{"email": email, "password": "a revoked password"})

	r := e.do(a.as(), "POST", "/v1/invitations", map[string]string{"email": email, "role": "admin"})
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "60" {
		t.Fatalf("inviting the address again at once: %d %s (Retry-After %q), want 429 after 60 s", r.code, r.body, r.header.Get("Retry-After"))
	}
	clock.advance(time.Minute)
	_, token = e.invite(dir, a, email, "admin")
	clock.advance(InvitationTTL)
	wantInvalidInvitationToken(t, e.accept(token, "an expired password"))
	if got := e.pendingInvitations(a); len(got) != 0 {
		t.Fatalf("pending after the expiry: %+v", got)
	}
	if got := e.metric("config_invitations_total", "sent"); got != 2 {
		t.Errorf("%v invitations counted sent, want 2", got)
	}
}

// An address taken between the invitation and its acceptance by someone
// who verified it is 409, and the link is not used up: once the address
// is free again it works.
func TestInvitationAddressTaken(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	a := e.signup("Taken")
	email := newInvitee()
	_, token := e.invite(dir, a, email, "viewer")

	var squatter TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", map[string]string{"email": email, "password": "first come first served", "company": "Squat"}).decode(t, &squatter)
	e.verify(dir, account{email: email, tokens: squatter})
	if r := e.accept(token, "the invited password"); r.code != http.StatusConflict || r.apiError().Field != "email" {
		t.Fatalf("accepting for a taken address: %d %s, want 409 on email", r.code, r.body)
	}
	// The squatter's tenant gets a second admin, who deletes the squatter.
	second := e.addUser(account{tokens: squatter}, "admin")
	e.must(http.StatusNoContent, second.as(), "DELETE", "/v1/users/"+squatter.UserID, nil)
	var tokens TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": token, "password": "the invited password"}).decode(t, &tokens)
	if tokens.TenantID != a.tokens.TenantID {
		t.Fatalf("accepted into %s, want %s", tokens.TenantID, a.tokens.TenantID)
	}
}

// An address taken between the invitation and its acceptance by someone
// who never verified it is the invitee's: the link came to the address,
// as a claim link does, so the acceptance takes it from the holder, who
// keeps its user and tenant but no longer logs in with it.
func TestInvitationClaimsUnverifiedAddress(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	a := e.signup("Claiming")
	email := newInvitee()
	_, token := e.invite(dir, a, email, "viewer")
	holder := e.signupWith(email, "first come first served", "Squat")

	var tokens TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": token, "password": "the invited password"}).decode(t, &tokens)
	if tokens.TenantID != a.tokens.TenantID || tokens.Role != "viewer" {
		t.Fatalf("accepted as %+v, want a viewer of %s", tokens, a.tokens.TenantID)
	}
	if u := e.userOf(a, account{tokens: tokens}); u.Email != email || !u.EmailVerified {
		t.Fatalf("the invited user %+v, want %s verified", u, email)
	}
	if id, ok := e.logsIn(email, "the invited password"); !ok || id != tokens.UserID {
		t.Fatal("the invitee does not log in")
	}
	if _, ok := e.logsIn(email, holder.password); ok {
		t.Fatal("the holder still logs in with the address")
	}
	if _, u := e.me(holder); u.Email == email {
		t.Fatalf("the holder %+v still has the address", u)
	}
}

func TestInvitationWithoutMail(t *testing.T) {
	e := newEnv(t)
	a := e.signup("No mail invites")
	r := e.do(a.as(), "POST", "/v1/invitations", map[string]string{"email": newInvitee(), "role": "viewer"})
	if r.code != http.StatusServiceUnavailable || r.apiError().Code != "mail_not_configured" {
		t.Fatalf("%d %s, want 503 mail_not_configured", r.code, r.body)
	}
}

// TestInvitationMailCannotBeWrittenByTheTenantName: the tenant's name is
// anyone's text (whoever signs up chooses it), and the invitation e-mail,
// sent from our address to any address an admin gives, quotes it. A name
// with a line break could write paragraphs of its own there (a link to
// follow, a password to give), so names with control characters are
// refused, and a name stored before that is quoted with them escaped.
func TestInvitationMailCannotBeWrittenByTheTenantName(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	const forged = "Shop\r\n\r\nTo accept, open https://evil.example/accept and give your Acme password:\r\n"
	if r := e.do(anonymous, "POST", "/v1/signup", map[string]string{"email": newInvitee(), "password": "correct horse battery", "company": forged}); r.code != http.StatusBadRequest || r.apiError().Field != "company" {
		t.Fatalf("sign-up with a line break in the company: %d %s, want 400 invalid_field company", r.code, r.body)
	}
	a := e.signup("Inviting")
	if r := e.do(a.as(), "PATCH", "/v1/tenants/me", map[string]string{"name": "Shop\u2028To accept, open https://evil.example"}); r.code != http.StatusBadRequest || r.apiError().Field != "name" {
		t.Fatalf("rename with a line separator: %d %s, want 400 invalid_field name", r.code, r.body)
	}

	// A name stored by an earlier version.
	tid, _ := a.ids(t)
	if err := e.store.RenameTenant(t.Context(), tid, forged); err != nil {
		t.Fatal(err)
	}
	e.invite(dir, a, newInvitee(), "viewer")
	msgs := mailsAbout(t, dir, inviteSubject)
	body := string(msgs[len(msgs)-1])
	if strings.Contains(body, "\r\nTo accept, open https://evil.example") {
		t.Fatalf("the tenant's name wrote a line of the invitation e-mail:\n%s", body)
	}
	if !strings.Contains(body, `"Shop\r\n\r\nTo accept, open https://evil.example/accept`) {
		t.Fatalf("the e-mail does not quote the name, escaped:\n%s", body)
	}
}

// TestInvitationOfAnotherTenantIsNotFound: another tenant's admin cannot
// see or revoke a tenant's invitation, and learns nothing of its ID: 404 as
// for an ID that exists nowhere.
func TestInvitationOfAnotherTenantIsNotFound(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	alice, bob := e.signup("Alice Invites"), e.signup("Bob Probes")
	inv, _ := e.invite(dir, alice, newInvitee(), "admin")
	for _, id := range []string{inv.ID, "00000000-0000-4000-8000-000000000000"} {
		if r := e.do(bob.as(), "DELETE", "/v1/invitations/"+id, nil); r.code != http.StatusNotFound || r.apiError().Code != "not_found" {
			t.Fatalf("bob revoking %s: %d %s, want 404 not_found", id, r.code, r.body)
		}
	}
	if got := e.pendingInvitations(bob); len(got) != 0 {
		t.Fatalf("bob lists %+v", got)
	}
	if got := e.pendingInvitations(alice); len(got) != 1 || got[0].ID != inv.ID {
		t.Fatalf("alice's pending invitations are %+v, want hers", got)
	}
}

// An invitation holds while its inviter is an admin of the tenant: an
// admin demoted or deleted since cannot come back through an invitation
// to an address of theirs made before (or in the minutes their access
// token outlived the change). The link is not used up by the refusal: it
// works again once the inviter is an admin again.
func TestInvitationHoldsWhileTheInviterIsAnAdmin(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	a := e.signup("Demoting")
	b := e.addUser(a, "admin")
	_, token := e.invite(dir, b, newInvitee(), "admin")

	e.must(http.StatusOK, a.as(), "PATCH", "/v1/users/"+b.tokens.UserID, map[string]string{"role": "viewer"})
	r := e.accept(token, "a password of mine")
	wantInvalidInvitationToken(t, r)
	if !strings.Contains(r.apiError().Message, "no longer an admin") {
		t.Errorf("the refusal says %q, want that the inviter is no longer an admin", r.apiError().Message)
	}
	e.must(http.StatusOK, a.as(), "PATCH", "/v1/users/"+b.tokens.UserID, map[string]string{"role": "admin"})
	var tokens TokenResponse
	e.must(http.StatusCreated, anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": token, "password": "a password of mine"}).decode(t, &tokens)
	if tokens.Role != "admin" || tokens.TenantID != a.tokens.TenantID {
		t.Fatalf("accepted once the inviter is an admin again: %+v", tokens)
	}

	c := e.addUser(a, "admin")
	_, token = e.invite(dir, c, newInvitee(), "viewer")
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+c.tokens.UserID, nil)
	wantInvalidInvitationToken(t, e.accept(token, "a password of mine"))
}

// TestInvitationByExternalAdmin: an external identity provider's admin (a
// caller config-svc keeps no user of) invites, and the invitation holds
// on acceptance as the admin's token did when it was made. It was refused
// as made by someone "no longer an admin", its inviter having no user.
func TestInvitationByExternalAdmin(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	owner := e.signup("IdP Invites")
	for _, sub := range []string{gocql.MustRandomUUID().String(), "auth0|5f7c8ec7c33c6c004bbafe82"} {
		email := newInvitee()
		var inv InvitationJSON
		e.must(http.StatusCreated, externalUser(owner.tokens.TenantID, sub, tenant.RoleAdmin), "POST", "/v1/invitations",
			map[string]string{"email": email, "role": "viewer"}).decode(t, &inv)
		if want := externalUserID(sub).String(); inv.InvitedBy != sub && inv.InvitedBy != want {
			t.Errorf("invited_by %q; want %q or %q", inv.InvitedBy, sub, want)
		}
		var tokens []string
		eventually.True(t, 10*time.Second, "the invitation mail", func() bool {
			tokens = invitationTokens(t, dir, email)
			return len(tokens) > 0
		})
		var got TokenResponse
		e.must(http.StatusCreated, anonymous, "POST", "/v1/invitations/accept", map[string]string{"token": tokens[0], "password": "a long enough password"}).decode(t, &got)
		if got.Role != "viewer" || got.TenantID != owner.tokens.TenantID {
			t.Errorf("accepted an external admin's invitation: %+v", got)
		}
	}
}

// TestPendingInvitationLimitUnderConcurrency: invitations made at the
// same moment keep the tenant within its 100 pending ones. Each counted
// them before writing its own, so all of them passed the count.
func TestPendingInvitationLimitUnderConcurrency(t *testing.T) {
	e, _ := mailEnv(t, newTestClock())
	a := e.signup("Invitations Race")
	const before = MaxPendingInvitations - 2
	for range before {
		e.must(http.StatusCreated, a.as(), "POST", "/v1/invitations", map[string]string{"email": newInvitee(), "role": "viewer"})
	}
	const n = 16
	created, codes := atOnce(t, n, func(int) int {
		return e.do(a.as(), "POST", "/v1/invitations", map[string]string{"email": newInvitee(), "role": "viewer"}).code
	})
	pending := len(e.pendingInvitations(a))
	t.Logf("%d of %d made; %d pending", created, n, pending)
	if pending > MaxPendingInvitations || pending != before+created {
		t.Errorf("%d pending invitations after %d made at once answered %v; want at most %d, and %d before plus those answered 201",
			pending, n, codes, MaxPendingInvitations, before)
	}
}

// TestInvitationOfAnAdminDeletedMeanwhile: an admin deleted while its
// invitation is made (after its token was checked) makes no invitation
// that holds: it was taken for an external identity provider's admin (no
// user row), and its invitation held for good. The deletion runs from
// the store's hook, at the request's read of the tenant.
func TestInvitationOfAnAdminDeletedMeanwhile(t *testing.T) {
	srv := cqltest.Server(t)
	e, dir := mailEnv(t, newTestClock())
	t.Cleanup(func() { srv.SetFault(nil) })
	a := e.signup("Deleted Inviter")
	b := e.addUser(a, "admin")
	email := newInvitee()
	var once atomic.Bool
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(strings.TrimSpace(cql), "SELECT name, created_at FROM tenants") && once.CompareAndSwap(false, true) {
			e.do(a.as(), "DELETE", "/v1/users/"+b.tokens.UserID, nil)
		}
		return cqlserver.NoFault
	})
	created := e.do(b.as(), "POST", "/v1/invitations", map[string]string{"email": email, "role": "admin"})
	srv.SetFault(nil)
	if !once.Load() {
		t.Fatal("the hook never ran")
	}
	if created.code != http.StatusCreated {
		return // refused: the inviter was deleted
	}
	var tokens []string
	eventually.True(t, 10*time.Second, "the invitation mail", func() bool {
		tokens = invitationTokens(t, dir, email)
		return len(tokens) > 0
	})
	wantInvalidInvitationToken(t, e.accept(tokens[0], "the deleted admin's other password"))
}
