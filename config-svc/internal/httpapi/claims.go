package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

// ClaimTTL is how long a claim link works: the TTL of its row (cql/0014).
// Short, as a reset link's, since using it takes an address from an
// account; long enough for a mail that comes late.
const ClaimTTL = 24 * time.Hour

const claimSubject = "Claim your e-mail address on Acme Analytics"

type claimRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// offerClaim mails a link that claims an address (given: as the sign-up
// gave it, trimmed) to it, for a sign-up refused because another user
// holds it, when that user never verified it: the link, with the
// sign-up's password, completes the sign-up and takes the address from
// the holder (claimAddress). Nothing
// of it shows in the answer, the same 409 whoever holds the address and
// whatever happens here (what differs is the token's write, as for a
// reset link). Links of an address are throttled as reset links are. It
// runs before the answer is written, so that the throttle has counted it
// when the client signs up again.
func (s *Server) offerClaim(r *http.Request, given, passwordHash, company string) {
	if s.o.Mailer == nil {
		s.metrics.addressClaims.WithLabelValues("not_configured").Inc()
		return
	}
	ctx := r.Context()
	keys := auth.EmailKeys(given)
	email := keys[0]
	holder, err := s.o.Store.UserByEmail(ctx, keys...)
	if err != nil {
		// Freed meanwhile (signing up again works), or storage failed.
		s.metrics.addressClaims.WithLabelValues("failed").Inc()
		s.o.Log.Info("no claim link for a taken address: its holder could not be read", slog.Any("error", err),
			slog.String("request_id", httpserver.RequestID(ctx)))
		return
	}
	if holder.EmailVerified() {
		s.metrics.addressClaims.WithLabelValues("held_verified").Inc()
		return
	}
	if wait := s.claims.begin(email); wait > 0 {
		s.metrics.addressClaims.WithLabelValues("throttled").Inc()
		s.o.Log.Info("no claim link for a taken address: one was sent to it a short while ago",
			slog.String("tenant_id", holder.TenantID.String()), slog.String("user_id", holder.ID.String()), slog.String("request_id", httpserver.RequestID(ctx)))
		return
	}
	// Logged with the holder's IDs: the user whose address it claims. The
	// pending sign-up keeps the address as given, from which the claim
	// makes its keys again (the key the holder has among them): an old
	// form of it, made from the address lower-cased, may not give the
	// same canonical form (auth.NormalizeEmail).
	to := store.User{TenantID: holder.TenantID, ID: holder.ID, Email: email}
	err = s.queueTokenMail(r, to, "address_claim", auth.ClaimTokenPrefix, claimSubject,
		func(hash string, now time.Time) error {
			return s.o.Store.SaveEmailClaim(ctx, store.EmailClaim{Hash: hash, Email: given, PasswordHash: passwordHash, Company: company,
				IssuedAt: now, ExpiresAt: now.Add(ClaimTTL)})
		},
		func(token string) string { return s.claimMailBody(email, token) })
	if err != nil {
		s.metrics.addressClaims.WithLabelValues("failed").Inc()
		return
	}
	s.metrics.addressClaims.WithLabelValues("mailed").Inc()
}

// claimMailBody is the claim link's e-mail. It says nothing the sign-up
// gave but the address: the company is whatever anyone typed.
func (s *Server) claimMailBody(email, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Someone, hopefully you, signed up to Acme Analytics with the e-mail address %s, which an account has already.\n"+
		"That account has never confirmed that the address is its own.\n\n", email)
	b.WriteString("If that account is yours, ignore this e-mail: log in to it and confirm the address (POST /v1/email-verification).\n\n")
	writeLink(&b, s.o.EmailClaimURL, token,
		"If it is not, you can take the address from it and complete your sign-up: open this link and enter the password you signed up with",
		"If it is not, you can take the address from it and complete your sign-up: send this token, with the password you signed up with, to POST /v1/signup/claim",
		`, "password": "<the password you signed up with>"`)
	fmt.Fprintf(&b, "The other account then keeps its data, but no longer signs in with this address. The token works once, within %s.\n"+
		"If you did not sign up, ignore this e-mail: without the sign-up's password the token does nothing.\n", humanDuration(ClaimTTL))
	return b.String()
}

// claimAddress completes, with a claim link and the password it was made
// for, a sign-up refused because an unverified user held its address: the
// link came to the address, so the address is the claimant's (verified),
// and it is taken from that user (store.CreateVerifiedUser), unless the
// user verified it meanwhile. The answer is sign-up's. The password is
// checked before the link is used (a wrong one does not cost it), and
// counts as a login attempt of the address: whoever reads the mailbox
// cannot complete a sign-up someone else made, and learn its password by
// guessing, faster than they could log in.
func (s *Server) claimAddress(w http.ResponseWriter, r *http.Request) {
	var req claimRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	c, ok := mailedLink(s, w, r, req.Token, auth.ClaimTokenPrefix, "claim", s.o.Store.EmailClaim,
		func(c store.EmailClaim) time.Time { return c.ExpiresAt }, writeInvalidClaimToken)
	if !ok {
		return
	}
	ctx := r.Context()
	// The address as the sign-up gave it (as an earlier version stored
	// it: its old form).
	keys := auth.EmailKeys(c.Email)
	if wait := s.logins.begin(keys[0]); wait > 0 {
		s.metrics.loginFailures.Inc()
		writeTooManyAttempts(w, wait, "too many failed attempts for this e-mail address; try again in %d s")
		return
	}
	if !s.o.Hasher.Check(c.PasswordHash, req.Password) {
		s.metrics.loginFailures.Inc()
		httpserver.WriteError(w, http.StatusUnauthorized, "invalid_credentials",
			"the password is not the one the sign-up this link completes was made with; give that one, or sign up again")
		return
	}
	// The sign-up's password is no account's: failed logins that were
	// guesses at an account of the address stay.
	s.logins.succeeded(keys[0], gocql.UUID{}, true)
	if err := s.o.Store.ConsumeEmailClaim(ctx, c.Hash); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeInvalidClaimToken(w) // a concurrent use was first
			return
		}
		s.internalError(w, r, "use the claim", err)
		return
	}
	// The link is used up: the rest runs to its end even when the client
	// goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := s.now()
	t := store.Tenant{ID: gocql.MustRandomUUID(), Name: c.Company, CreatedAt: now}
	u := store.User{TenantID: t.ID, ID: gocql.MustRandomUUID(), Email: keys[0], PasswordHash: c.PasswordHash, Role: string(tenant.RoleAdmin),
		CreatedAt: now, EmailVerifiedAt: now}
	s.createAccount(w, r.WithContext(ctx), t, u, keys[1:], func() {
		httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email",
			"the account that held this e-mail address confirmed it meanwhile, or another link took it first, so it is not yours to claim; "+
				"log in (POST /v1/login) if that account is yours, or sign up again")
	})
}

// addressTaken records that u, whose address was shown to be its own,
// took it from from, who never verified it.
func (s *Server) addressTaken(r *http.Request, from, u store.User) {
	s.metrics.addressClaims.WithLabelValues("claimed").Inc()
	s.o.Log.Info("e-mail address taken from its unverified holder", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
		slog.String("holder_tenant_id", from.TenantID.String()), slog.String("holder_user_id", from.ID.String()),
		slog.String("request_id", httpserver.RequestID(r.Context())))
}

func writeInvalidClaimToken(w http.ResponseWriter) {
	httpserver.WriteError(w, http.StatusBadRequest, "invalid_claim_token",
		"the claim link is unknown, expired or already used; sign up again to have a new one mailed, or log in (POST /v1/login) if the sign-up completed")
}
