package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

// TokenResponse is the answer of sign-up, login and refresh.
type TokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
	TenantID         string `json:"tenant_id"`
	UserID           string `json:"user_id"`
	Role             string `json:"role"`
}

type signupRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Company  string `json:"company"`
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

const maxTenantName = 100

// checkName validates the name of a tenant, property or API secret: not
// blank, at most limit bytes, on one line. A name is anyone's text (the
// tenant's is chosen at sign-up) and is shown to others: the invitation
// e-mail, sent from our address to any address an admin gives, quotes
// the tenant's. So control characters (a line break would start a
// paragraph of the name's own there), line and paragraph separators and
// the bidirectional controls that reorder what follows them are refused.
func checkName(w http.ResponseWriter, field, name string, limit int) bool {
	bad := strings.IndexFunc(name, rules.Unprintable)
	switch {
	case strings.TrimSpace(name) == "":
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field, field+": is required; give a name")
	case len(name) > limit:
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field, field+": is longer than the limit of "+itoa(limit)+" bytes")
	case bad >= 0:
		r, _ := utf8.DecodeRuneInString(name[bad:])
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field,
			field+": has the character "+fmt.Sprintf("%U", r)+" (a control character, line break or text direction control); a name is one line of text")
	default:
		return true
	}
	return false
}

// checkCredentials validates an e-mail address given to an account and a
// new password. It returns the address's keys (auth.NewEmail: the
// canonical form, which the account is keyed by, then the old forms an
// account made before may hold it under), or nil having answered 400.
func checkCredentials(w http.ResponseWriter, email, password string) []string {
	keys, reason := auth.NewEmail(email)
	if reason != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "email", "email: "+reason)
		return nil
	}
	if reason := auth.CheckPassword(password, keys[0]); reason != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "password", "password: "+reason)
		return nil
	}
	return keys
}

func (s *Server) signup(w http.ResponseWriter, r *http.Request) {
	var req signupRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	keys := checkCredentials(w, req.Email, req.Password)
	if keys == nil || !checkName(w, "company", req.Company, maxTenantName) {
		return
	}
	email := keys[0]
	hash, err := s.o.Hasher.Hash(req.Password)
	if err != nil {
		s.internalError(w, r, "hash the password", err)
		return
	}
	now := s.now()
	t := store.Tenant{ID: gocql.MustRandomUUID(), Name: strings.TrimSpace(req.Company), CreatedAt: now}
	u := store.User{TenantID: t.ID, ID: gocql.MustRandomUUID(), Email: email, PasswordHash: hash, Role: string(tenant.RoleAdmin), CreatedAt: now}
	s.createAccount(w, r, t, u, keys[1:], func() {
		s.offerClaim(r, strings.TrimSpace(req.Email), hash, t.Name)
		s.writeEmailTaken(w)
	})
}

// createAccount makes a sign-up's tenant t and its admin u, claims u's
// address (u.Email, its canonical form; oldKeys, the old forms an account
// made before may hold it under) and signs u in (201). A u whose address
// is verified (a claim link showed it to be the claimant's) takes it from
// a holder who never verified it (store.CreateVerifiedUser); otherwise,
// and from a verified holder, the address taken is answered by taken,
// after the tenant is undone.
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, t store.Tenant, u store.User, oldKeys []string, taken func()) {
	ctx := r.Context()
	if err := s.o.Store.CreateTenant(ctx, t); err != nil {
		s.internalError(w, r, "create the tenant", err)
		return
	}
	var from store.User
	var err error
	if u.EmailVerified() {
		from, err = s.o.Store.CreateVerifiedUser(ctx, u, oldKeys...)
	} else {
		err = s.o.Store.CreateUser(ctx, u, oldKeys...)
	}
	if err != nil {
		if errors.Is(err, store.ErrEmailTaken) {
			s.undoSignup(r, t, u, false)
			taken()
			return
		}
		// The claim of the address may have been applied with its answer
		// lost (a timeout): undoing then would leave a user whose tenant
		// is gone. Whose it is, read back, decides.
		owner, rerr := s.o.Store.EmailOwner(context.WithoutCancel(ctx), u.Email)
		switch {
		case rerr == nil && owner == u.ID:
			s.o.Log.Info("a sign-up whose e-mail claim seemed to fail made it", slog.String("user_id", u.ID.String()), slog.Any("error", err))
		case rerr == nil:
			// Another user's: the claim was refused, as a plain
			// conflict is, and a retry would be refused again.
			s.undoSignup(r, t, u, true)
			taken()
			return
		case rerr != nil && !errors.Is(rerr, store.ErrNotFound):
			// Unknown: undoing might break an account that exists; a
			// tenant left without a user harms nobody.
			s.internalErrorAfter(w, r, "create the user", errors.Join(err, rerr),
				"your account may or may not have been created: log in with this e-mail address and password (POST /v1/login); if that answers invalid_credentials, sign up again")
			return
		default:
			s.undoSignup(r, t, u, true)
			s.internalError(w, r, "create the user", err)
			return
		}
	}
	s.metrics.signups.Inc()
	s.o.Log.Info("tenant signed up", slog.String("tenant_id", t.ID.String()), slog.String("user_id", u.ID.String()))
	if from.ID != (gocql.UUID{}) {
		s.addressTaken(r, from, u)
	}
	if !u.EmailVerified() {
		s.mailNewUserVerification(r, u)
	}
	s.issueTokens(w, r, u, http.StatusCreated)
}

// writeEmailTaken answers a sign-up for an address that belongs to another
// user. The answer is the same whether that user verified the address or
// not (a claim link mailed, or nothing), so it tells nothing more than
// that the address has an account; only an installation without mail
// delivery, where nothing can be claimed, leaves the claim unsaid.
func (s *Server) writeEmailTaken(w http.ResponseWriter) {
	msg := "an account with this e-mail address already exists; log in instead (POST /v1/login)"
	if s.o.Mailer != nil {
		msg += ". If the address is yours and that account is not: when the account has never confirmed the address, a link to claim it, " +
			"which completes this sign-up, has been mailed to the address (look in its inbox)"
	}
	httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email", msg)
}

// undoSignup removes what a failed sign-up made: the user (hadUser: its
// claim of the address, then its row; a lightweight transaction settles
// the claim first, so no later answer can make it the user's) and the
// tenant. It runs even when the client has gone away; a failure is only
// logged: what is left is a tenant without users, or a user row no
// address leads to, which nobody reaches.
func (s *Server) undoSignup(r *http.Request, t store.Tenant, u store.User, hadUser bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	attrs := []any{slog.String("tenant_id", t.ID.String()), slog.String("request_id", httpserver.RequestID(r.Context()))}
	if hadUser {
		if err := s.o.Store.DeleteUser(ctx, u, 0); err != nil { // it was never issued a token
			s.o.Log.Error("remove the user of a failed sign-up; its tenant stays too", append(attrs, slog.Any("error", err))...)
			return
		}
	}
	if err := s.o.Store.DeleteTenant(ctx, t.ID); err != nil {
		s.o.Log.Error("remove the tenant of a failed sign-up", append(attrs, slog.Any("error", err))...)
	}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	// Any spelling of the address finds its account: keyed by the
	// canonical form, or by the old form of one made before.
	keys := auth.EmailKeys(req.Email)
	email := keys[0]
	if email == "" || req.Password == "" {
		field := "email"
		if email != "" {
			field = "password"
		}
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field, field+": is required")
		return
	}
	if problem := auth.CheckEmail(email); problem != "" {
		// No account can have it (and the throttle keeps only addresses).
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "email", "email: "+problem)
		return
	}
	if wait := s.logins.begin(email); wait > 0 {
		s.metrics.loginFailures.Inc()
		writeTooManyAttempts(w, wait, "too many failed logins for this e-mail address; try again in %d s")
		return
	}
	users, err := s.o.Store.UsersByEmail(r.Context(), keys...)
	if err != nil {
		s.internalError(w, r, "look up the user", err)
		return
	}
	// An unknown address costs the same comparison as a known one. Two
	// accounts made before for two spellings of the address (each keyed
	// by its old form) each sign in with their own password, the one of
	// the canonical key tried first: neither is shut out by the other.
	if len(users) == 0 {
		s.o.Hasher.Check("", req.Password) // false, at the cost of a comparison
	}
	i := slices.IndexFunc(users, func(c store.User) bool { return s.o.Hasher.Check(c.PasswordHash, req.Password) })
	if i < 0 {
		ids := make([]gocql.UUID, len(users))
		for j, u := range users {
			ids[j] = u.ID
		}
		s.logins.failed(email, ids...)
		s.metrics.loginFailures.Inc()
		httpserver.WriteError(w, http.StatusUnauthorized, "invalid_credentials", "the e-mail address or the password is wrong")
		return
	}
	// Clears the failures, unless some were guesses at another account
	// of the address.
	s.logins.succeeded(email, users[i].ID, true)
	s.metrics.logins.Inc()
	s.issueTokens(w, r, users[i], http.StatusOK)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if !strings.HasPrefix(req.RefreshToken, auth.RefreshTokenPrefix) {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "refresh_token", "refresh_token: is required and must be a refresh token from login (rt_...)")
		return
	}
	ctx := r.Context()
	t, err := s.o.Store.ConsumeRefreshToken(ctx, auth.HashToken(req.RefreshToken))
	if reused := (*store.RefreshTokenReusedError)(nil); errors.As(err, &reused) {
		if s.o.Now().Sub(reused.UsedAt) < RefreshReuseGrace {
			// A client retrying a refresh whose answer it lost, or two
			// tabs of one session refreshing at once: only this request
			// is refused.
			s.metrics.refreshReuses.WithLabelValues("within_grace").Inc()
			httpserver.WriteError(w, http.StatusUnauthorized, "invalid_refresh_token",
				"the refresh token was used a moment ago (by a retry, or another tab of this session); use the refresh token that use returned, or log in again")
			return
		}
		s.refreshTokenReused(w, r, t)
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteError(w, http.StatusUnauthorized, "invalid_refresh_token", "the refresh token is unknown, expired, revoked or already used; log in again")
		return
	}
	if err != nil {
		s.internalError(w, r, "use the refresh token", err)
		return
	}
	// The role comes from the user as it is now, so a role change or a
	// deleted user takes effect at the next refresh.
	u, err := s.o.Store.User(ctx, t.TenantID, t.UserID)
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteError(w, http.StatusUnauthorized, "invalid_refresh_token", "the user of this refresh token no longer exists")
		return
	}
	if err != nil {
		s.internalError(w, r, "read the user", err)
		return
	}
	// A token is bound to the password it was issued under, so one stored
	// after a reset revoked the user's tokens, by a login or refresh that
	// had read the old password, is refused here (used up by its
	// consumption above). A token stored before migration 10 has no
	// fingerprint and is taken: every reset revokes all stored tokens.
	if t.PasswordSHA256 != "" && t.PasswordSHA256 != auth.HashToken(u.PasswordHash) {
		s.o.Log.Info("refresh token of an earlier password refused", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
			slog.String("request_id", httpserver.RequestID(ctx)))
		httpserver.WriteError(w, http.StatusUnauthorized, "invalid_refresh_token", "the refresh token was issued before the password was last changed; log in again with the new password")
		return
	}
	s.metrics.refreshes.Inc()
	s.issueTokens(w, r, u, http.StatusOK)
}

// RefreshReuseGrace is how long after its use a refresh token presented
// again is taken for the same client's retry (its answer lost) or a second
// tab refreshing at the same moment, and refused alone; later, it is taken
// for a stolen copy (refreshTokenReused).
const RefreshReuseGrace = 30 * time.Second

// refreshTokenReused answers a refresh with a token used before: a copy of
// it was used, by a thief or by the user, and which came first cannot be
// told, so every refresh token of the user is revoked (the replacement
// the first use got among them), as a password reset does, and each
// session signs in again. The token is then forgotten: presented once
// more it is unknown, and signs nobody out. The access tokens already issued work until
// they expire. The revocation runs to its end even when the client goes
// away.
func (s *Server) refreshTokenReused(w http.ResponseWriter, r *http.Request, t store.RefreshToken) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	attrs := []any{slog.String("tenant_id", t.TenantID.String()), slog.String("user_id", t.UserID.String()),
		slog.String("request_id", httpserver.RequestID(r.Context()))}
	if err := s.o.Store.RevokeUserTokens(ctx, t.TenantID, t.UserID); err != nil {
		s.internalError(w, r, "revoke the refresh tokens of a user whose refresh token was used twice", err)
		return
	}
	// Signed out once for it: the copy is forgotten, so that whoever holds
	// it cannot sign the user out again after each new login.
	if err := s.o.Store.ForgetRefreshToken(ctx, t.Hash); err != nil {
		s.internalError(w, r, "forget a refresh token used twice", err)
		return
	}
	s.metrics.refreshReuses.WithLabelValues("signed_out").Inc()
	s.o.Log.Warn("refresh token used twice; every refresh token of its user revoked", attrs...)
	httpserver.WriteError(w, http.StatusUnauthorized, "invalid_refresh_token",
		"the refresh token was used before, as a stolen copy of it would be, so every session of this user has been signed out; log in again")
}

// issueTokens signs u in: an access token and a new refresh token, in an
// answer with status. The refresh token is bound to u.PasswordHash (the
// hash a login verified, or the user's as a refresh read it): a refresh
// refuses it once the user's password is another. A failure after a
// sign-up (status 201) says that the account exists, so that the client
// logs in rather than signs up again.
func (s *Server) issueTokens(w http.ResponseWriter, r *http.Request, u store.User, status int) {
	fail := func(what string, err error) {
		if status == http.StatusCreated {
			s.internalErrorAfter(w, r, what, err, "your account was created, but signing you in failed: log in with your e-mail address and password (POST /v1/login)")
			return
		}
		s.internalError(w, r, what, err)
	}
	id := tenant.Identity{TenantID: u.TenantID.String(), UserID: u.ID.String(), Role: tenant.Role(u.Role)}
	access, exp, err := s.o.Issuer.AccessToken(id)
	if err != nil {
		fail("sign the access token", err)
		return
	}
	refresh, err := auth.RandomToken(auth.RefreshTokenPrefix)
	if err != nil {
		fail("make a refresh token", err)
		return
	}
	now := s.now()
	rt := store.RefreshToken{Hash: auth.HashToken(refresh), TenantID: u.TenantID, UserID: u.ID, PasswordSHA256: auth.HashToken(u.PasswordHash),
		IssuedAt: now, ExpiresAt: now.Add(s.o.RefreshTTL)}
	if err := s.o.Store.SaveRefreshToken(r.Context(), rt); err != nil {
		fail("store the refresh token", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, status, TokenResponse{
		AccessToken:      access,
		TokenType:        "Bearer",
		ExpiresIn:        int(time.Until(exp).Round(time.Second).Seconds()),
		RefreshToken:     refresh,
		RefreshExpiresIn: int(s.o.RefreshTTL.Seconds()),
		TenantID:         id.TenantID,
		UserID:           id.UserID,
		Role:             u.Role,
	})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	var req refreshRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.RefreshToken == "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "refresh_token", "refresh_token: is required (the token to revoke)")
		return
	}
	err := s.o.Store.RevokeRefreshToken(r.Context(), tid, uid, auth.HashToken(req.RefreshToken))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "revoke the refresh token", err)
		return
	}
	// Revoking a token that is gone (or never was the caller's) is not an
	// error: the token does not work either way.
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	// Short caching: a verifier also refetches on an unknown kid.
	w.Header().Set("Cache-Control", "public, max-age=60")
	httpserver.WriteJSON(w, http.StatusOK, s.o.Keys.JWKS())
}
