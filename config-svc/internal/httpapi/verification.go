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
)

// DefaultEmailVerificationTTL is how long an e-mail verification link
// works, and MaxEmailVerificationTTL the longest it may be made to (the
// default TTL of email_verification_tokens, cql/0011). A link is of use
// only to someone signed in as its user, so it may live much longer than
// a reset link, which signs nobody in but sets the password.
const (
	DefaultEmailVerificationTTL = 7 * 24 * time.Hour
	MaxEmailVerificationTTL     = 7 * 24 * time.Hour
)

type emailVerificationConfirmRequest struct {
	Token string `json:"token"`
}

// EmailVerificationResponse is the answer of POST /v1/email-verification.
type EmailVerificationResponse struct {
	Message string `json:"message"`
}

// errMailQueueFull is a verification e-mail the background sender did not
// take (logged and counted by the queue).
var errMailQueueFull = errors.New("the e-mail queue is full")

// mailNewUserVerification mails a verification link to a user just made
// (sign-up, POST /v1/users), through the same throttle per address as
// asking again does, so that deleting and adding a user again does not
// fill someone's mailbox. Nothing of it shows in the answer: a user who
// gets no e-mail asks for another (POST /v1/email-verification). It runs
// before the answer is written, so that the throttle has counted it when
// the client asks again.
func (s *Server) mailNewUserVerification(r *http.Request, u store.User) {
	if s.o.Mailer == nil {
		s.metrics.verificationMails.WithLabelValues("not_configured").Inc()
		return
	}
	if wait := s.verifyMails.begin(u.Email); wait > 0 {
		s.metrics.verificationMails.WithLabelValues("throttled").Inc()
		s.o.Log.Info("verification e-mail of a new user not sent: one was sent to the address a short while ago",
			slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()), slog.String("request_id", httpserver.RequestID(r.Context())))
		return
	}
	if err := s.queueVerificationLink(r, u); err != nil {
		s.metrics.verificationMails.WithLabelValues("failed").Inc()
		return
	}
	s.metrics.verificationMails.WithLabelValues("queued").Inc()
}

// resendEmailVerification mails the caller a new verification link.
func (s *Server) resendEmailVerification(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	if s.o.Mailer == nil {
		writeMailNotConfigured(w, "e-mail verification is not available")
		return
	}
	u, ok := s.callerUser(w, r, tid, uid)
	if !ok {
		return
	}
	if u.EmailVerified() {
		httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email", "your e-mail address "+quote(u.Email)+" is already verified")
		return
	}
	if u.EmailClaimed() {
		httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email",
			"your user has no e-mail address any more: its owner claimed "+quote(strings.TrimPrefix(u.Email, store.ClaimedEmailPrefix))+
				", which your user never verified; to sign in again, have an admin of your tenant invite an address of yours (POST /v1/invitations)")
		return
	}
	if wait := s.verifyMails.begin(u.Email); wait > 0 {
		s.metrics.verificationMails.WithLabelValues("throttled").Inc()
		writeTooManyAttempts(w, wait, "a verification link was sent to your e-mail address a short while ago (look in the inbox and the spam folder); ask again in %d s")
		return
	}
	err := s.queueVerificationLink(r, u)
	switch {
	case errors.Is(err, errMailQueueFull):
		s.metrics.verificationMails.WithLabelValues("failed").Inc()
		w.Header().Set("Retry-After", "60")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "too many e-mails are waiting to be sent; ask again in a minute")
		return
	case err != nil:
		s.metrics.verificationMails.WithLabelValues("failed").Inc()
		s.internalError(w, r, "store the verification token", err)
		return
	}
	s.metrics.verificationMails.WithLabelValues("queued").Inc()
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusAccepted, EmailVerificationResponse{Message: fmt.Sprintf(
		"a link to verify %s has been sent to it; it works once, within %s, signed in as this user (POST /v1/email-verification/confirm)",
		u.Email, humanDuration(s.o.EmailVerificationTTL))})
}

// queueVerificationLink stores a new verification token of u's address
// and hands its e-mail to the background sender (queueTokenMail).
func (s *Server) queueVerificationLink(r *http.Request, u store.User) error {
	return s.queueTokenMail(r, u, "email_verification", auth.EmailVerificationTokenPrefix, "Verify your Acme Analytics e-mail address",
		func(hash string, now time.Time) error {
			return s.o.Store.SaveEmailVerification(r.Context(), store.EmailVerification{Hash: hash, TenantID: u.TenantID, UserID: u.ID,
				Email: u.Email, IssuedAt: now, ExpiresAt: now.Add(s.o.EmailVerificationTTL)})
		},
		func(token string) string { return s.verificationMailBody(u.Email, token) })
}

func (s *Server) verificationMailBody(email, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "An Acme Analytics account has the e-mail address %s.\n\n", email)
	writeLink(&b, s.o.EmailVerificationURL, token,
		"If it is yours, confirm that the address is yours by opening this link, signed in to the account",
		"If it is yours, confirm that the address is yours by sending this token, signed in to the account, to POST /v1/email-verification/confirm", "")
	fmt.Fprintf(&b, "It works once, within %s. Until the address is confirmed, a forgotten password cannot be reset by e-mail.\n"+
		"If you have no such account, ignore this e-mail: the link does nothing without the account's password.\n", humanDuration(s.o.EmailVerificationTTL))
	return b.String()
}

// confirmEmailVerification marks the caller's address verified with the
// token of a link mailed to it. The token must be the caller's own, for
// the address the caller has now: whoever reads a mistyped address
// cannot sign in as the user, so cannot verify it (and so cannot have a
// reset link sent there). A token presented by another user is refused
// and not used up.
func (s *Server) confirmEmailVerification(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	var req emailVerificationConfirmRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	t, ok := mailedLink(s, w, r, req.Token, auth.EmailVerificationTokenPrefix, "verification", s.o.Store.EmailVerification,
		func(t store.EmailVerification) time.Time { return t.ExpiresAt }, writeInvalidVerificationToken)
	if !ok {
		return
	}
	if t.TenantID != tid || t.UserID != uid {
		writeInvalidVerificationToken(w) // another user's: not used up
		return
	}
	ctx := r.Context()
	u, ok := s.callerUser(w, r, tid, uid)
	if !ok {
		return
	}
	if u.Email != t.Email {
		writeInvalidVerificationToken(w) // mailed to an address the user no longer has
		return
	}
	if err := s.o.Store.ConsumeEmailVerification(ctx, t.Hash); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeInvalidVerificationToken(w) // a concurrent use was first
			return
		}
		s.internalError(w, r, "use the verification token", err)
		return
	}
	if !u.EmailVerified() { // a second link keeps the time of the first
		// The link is used up: the rest runs to its end even when the
		// client goes away.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		at := s.now()
		if err := s.o.Store.SetEmailVerified(ctx, tid, uid, t.Email, at); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				writeInvalidVerificationToken(w) // deleted meanwhile
				return
			}
			s.internalErrorAfter(w, r, "mark the address verified", err,
				"the verification link is used up and the address was not verified: ask for a new link (POST /v1/email-verification)")
			return
		}
		u.EmailVerifiedAt = at
		s.metrics.emailVerifications.Inc()
		s.o.Log.Info("e-mail address verified", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
			slog.String("request_id", httpserver.RequestID(r.Context())))
	}
	httpserver.WriteJSON(w, http.StatusOK, userJSON(u))
}

func writeInvalidVerificationToken(w http.ResponseWriter) {
	httpserver.WriteError(w, http.StatusBadRequest, "invalid_verification_token",
		"the verification link is unknown, expired, already used, or not for the user you are signed in as: sign in as the user it was mailed to, or ask for a new one (POST /v1/email-verification)")
}

// writeMailNotConfigured answers a request that needs mail on an
// installation without mail delivery: 503 mail_not_configured, with
// Retry-After, which makes it a 503 the gateway's breaker excludes (a
// dependency every instance lacks), not a failure of this instance: five
// of these in a row, which anyone may send, would otherwise open its
// breaker. An hour: only a rollout changes it.
func writeMailNotConfigured(w http.ResponseWriter, what string) {
	w.Header().Set("Retry-After", "3600")
	httpserver.WriteError(w, http.StatusServiceUnavailable, "mail_not_configured",
		what+": this installation has no mail delivery configured (config-svc's -smtp-addr or -mail-dir); ask its operators")
}
