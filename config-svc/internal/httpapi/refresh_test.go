package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
	"golang.org/x/crypto/bcrypt"
)

// These tests check that a refresh token is bound to the password it was
// issued under: a refresh refuses one whose password is no longer the
// user's, which a reset's revocation of the user's stored tokens cannot
// catch when the token is stored just after it.

// refresh exchanges a refresh token.
func (e *env) refresh(token string) response {
	e.t.Helper()
	return e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": token})
}

// mustRefresh exchanges a refresh token and returns its replacement.
func (e *env) mustRefresh(token string) string {
	e.t.Helper()
	var next TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": token}).decode(e.t, &next)
	return next.RefreshToken
}

// wantRefreshRefused fails the test unless r is 401 invalid_refresh_token
// with a message that has says in it.
func wantRefreshRefused(t *testing.T, r response, says string) {
	t.Helper()
	if r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_refresh_token" || !strings.Contains(r.apiError().Message, says) {
		t.Fatalf("%d %s, want 401 invalid_refresh_token saying %q", r.code, r.body, says)
	}
}

const (
	earlierPassword = "the password was last changed; log in again with the new password"
	usedUp          = "unknown, expired, revoked or already used"
)

// ids are the tenant and user IDs of a's user.
func (a account) ids(t *testing.T) (tid, uid gocql.UUID) {
	t.Helper()
	tid, err := gocql.ParseUUID(a.tokens.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	uid, err = gocql.ParseUUID(a.tokens.UserID)
	if err != nil {
		t.Fatal(err)
	}
	return tid, uid
}

// setPassword gives a's user the password pw in the store alone, as a
// reset does, but revokes none of its refresh tokens: what a token stored
// just after a reset's revocation finds.
func (e *env) setPassword(a account, pw string) {
	e.t.Helper()
	tid, uid := a.ids(e.t)
	u, err := e.store.User(context.Background(), tid, uid)
	if err != nil {
		e.t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.SetPassword(context.Background(), tid, uid, u.PasswordHash, string(hash)); err != nil {
		e.t.Fatal(err)
	}
}

// TestRefreshTokenBoundToPassword: refresh chains from sign-up and login
// work; once the password is another (changed without revoking anything),
// every token of the old one is refused, used up by the refusal, and a
// login with the new password starts a chain that works.
func TestRefreshTokenBoundToPassword(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Bound")
	fromSignup := a.tokens.RefreshToken
	for range 3 {
		fromSignup = e.mustRefresh(fromSignup)
	}
	var login TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &login)
	fromLogin := e.mustRefresh(login.RefreshToken)

	const newPassword = "a brand new password"
	e.setPassword(a, newPassword)
	for _, tok := range []string{fromSignup, fromLogin} {
		wantRefreshRefused(t, e.refresh(tok), earlierPassword)
	}
	for _, tok := range []string{fromSignup, fromLogin} {
		wantRefreshRefused(t, e.refresh(tok), justUsed)
		tid, uid := a.ids(t)
		if err := e.store.RevokeRefreshToken(context.Background(), tid, uid, auth.HashToken(tok)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused token is still among the user's: RevokeRefreshToken = %v, want ErrNotFound", err)
		}
	}

	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": newPassword}).decode(t, &login)
	tok := login.RefreshToken
	for range 3 {
		tok = e.mustRefresh(tok)
	}
}

// TestRefreshTokenWithoutFingerprint: a token stored before migration 10
// (its row without password_sha256) is taken, and its replacement is bound
// to the password of the refresh; a reset revokes such tokens as any.
func TestRefreshTokenWithoutFingerprint(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	a := e.signup("Unbound")
	e.verify(dir, a)
	session, err := cassandra.Connect(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	// stored writes a token as SaveRefreshToken did before migration 10.
	stored := func() string {
		t.Helper()
		tok, err := auth.RandomToken(auth.RefreshTokenPrefix)
		if err != nil {
			t.Fatal(err)
		}
		tid, uid := a.ids(t)
		now := time.Now()
		b := session.NewBatch(gocql.LoggedBatch)
		b.Query(`INSERT INTO refresh_tokens (token_hash, tenant_id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?) USING TTL 3600`,
			auth.HashToken(tok), tid, uid, now, now.Add(time.Hour))
		b.Query(`INSERT INTO refresh_tokens_by_user (tenant_id, user_id, token_hash, expires_at) VALUES (?, ?, ?, ?) USING TTL 3600`,
			tid, uid, auth.HashToken(tok), now.Add(time.Hour))
		if err := session.ExecuteBatch(b); err != nil {
			t.Fatal(err)
		}
		return tok
	}

	next := e.mustRefresh(stored())
	e.setPassword(a, "a brand new password")
	wantRefreshRefused(t, e.refresh(next), earlierPassword)

	old := stored()
	e.confirmReset(http.StatusNoContent, e.requestReset(dir, a.email), "yet another password")
	wantRefreshRefused(t, e.refresh(old), usedUp)
}

// TestSessionRacingAReset: a login that checked the old password, and a
// refresh that read the user, before a reset, and stored their refresh
// token after the reset had revoked the user's tokens, each answer 200
// (their access tokens work until they expire), but their refresh tokens
// are refused at their first use. The reset runs, through the API, in the
// window: while the racing request's token waits to be stored.
func TestSessionRacingAReset(t *testing.T) {
	tests := []struct {
		name string
		race func(e *env, a account) string // returns the raced refresh token
	}{
		{"login", func(e *env, a account) string {
			var login TokenResponse
			e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(e.t, &login)
			return login.RefreshToken
		}},
		{"refresh", func(e *env, a account) string {
			return e.mustRefresh(a.tokens.RefreshToken)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cqltest.Server(t) // before the keyspace, so that it is on this server
			e, dir := mailEnv(t, newTestClock())
			t.Cleanup(func() { srv.SetFault(nil) })
			a := e.signup("Race " + tt.name)
			e.verify(dir, a)
			link := e.requestReset(dir, a.email)

			body, err := json.Marshal(map[string]string{"token": link, "password": "a brand new password"})
			if err != nil {
				t.Fatal(err)
			}
			var armed atomic.Bool
			armed.Store(true)
			reset := make(chan int, 1)
			srv.SetFault(func(cql string) cqlserver.Fault {
				if strings.HasPrefix(cql, "INSERT INTO refresh_tokens (") && armed.CompareAndSwap(true, false) {
					code := 0
					resp, err := e.client.Post(e.url+"/v1/password-reset/confirm", "application/json", bytes.NewReader(body))
					if err == nil {
						code = resp.StatusCode
						resp.Body.Close()
					}
					reset <- code
				}
				return cqlserver.NoFault
			})
			raced := tt.race(e, a)
			srv.SetFault(nil)
			select {
			case code := <-reset:
				if code != http.StatusNoContent {
					t.Fatalf("the reset in the %s's window answered %d, want 204", tt.name, code)
				}
			default:
				t.Fatalf("the %s stored no refresh token", tt.name)
			}
			wantRefreshRefused(t, e.refresh(raced), earlierPassword)
		})
	}
}

// reused is what a refresh with a token used before says: a copy of it was
// used, so the user's sessions were all signed out.
const reused = "every session of this user has been signed out"

// justUsed is what it says within RefreshReuseGrace of the use: taken for
// the same client's retry, only that request refused.
const justUsed = "used a moment ago"

// TestRefreshTokenReuseSignsOutEverySession: a refresh token presented
// again after it was exchanged is what a stolen copy looks like (the thief
// or the user, whoever comes second). The user's refresh tokens are all
// revoked, the replacement the first use got included, so a thief who
// refreshed first keeps nothing past the access token in hand; sessions
// begun after it work.
func TestRefreshTokenReuseSignsOutEverySession(t *testing.T) {
	clock := newTestClock()
	e := newEnv(t, func(o *Options) { o.Now = clock.now })
	a := e.signup("Reuse")
	var other TokenResponse // another device of the same user
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &other)
	stolen := a.tokens.RefreshToken
	thiefs := e.mustRefresh(stolen) // the thief refreshes first
	clock.advance(RefreshReuseGrace + time.Second)

	wantRefreshRefused(t, e.refresh(stolen), reused) // then the user
	wantRefreshRefused(t, e.refresh(thiefs), usedUp)
	wantRefreshRefused(t, e.refresh(other.RefreshToken), usedUp)

	// Sessions begun after it work, and the copy, having signed the user
	// out once, is forgotten: whoever holds it cannot do so again after
	// each new login.
	var login TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &login)
	wantRefreshRefused(t, e.refresh(stolen), usedUp)
	e.mustRefresh(login.RefreshToken)

	// Another user's sessions are not touched.
	b := e.signup("Bystander")
	e.mustRefresh(b.tokens.RefreshToken)
}

// TestRefreshTokenRetriedAtOnceIsRefusedAlone: a refresh token presented
// again within RefreshReuseGrace of its use (a client retrying a refresh
// whose answer it lost, two tabs of one session refreshing at once) is
// refused alone: the replacement the use returned goes on working, as do
// the user's other sessions.
func TestRefreshTokenRetriedAtOnceIsRefusedAlone(t *testing.T) {
	clock := newTestClock()
	e := newEnv(t, func(o *Options) { o.Now = clock.now })
	a := e.signup("Retry")
	var other TokenResponse
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password}).decode(t, &other)
	next := e.mustRefresh(a.tokens.RefreshToken)
	clock.advance(RefreshReuseGrace - 5*time.Second)
	wantRefreshRefused(t, e.refresh(a.tokens.RefreshToken), justUsed)
	e.mustRefresh(next)
	e.mustRefresh(other.RefreshToken)
}
