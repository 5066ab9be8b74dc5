package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
)

// DefaultPasswordResetTTL is how long a password reset link works.
const DefaultPasswordResetTTL = time.Hour

// ResetTokenPlaceholder is replaced by the token in -password-reset-url.
const ResetTokenPlaceholder = "{token}"

type passwordResetRequest struct {
	Email string `json:"email"`
}

type passwordResetConfirmRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// PasswordResetResponse is the answer of POST /v1/password-reset, the same
// whether an account has the address or not.
type PasswordResetResponse struct {
	Message string `json:"message"`
}

// requestPasswordReset mails a reset link to the account with the address,
// if there is one; the answer is the same either way, and takes as long
// (sendTimes). Requests for an address are throttled alike, known or not.
func (s *Server) requestPasswordReset(w http.ResponseWriter, r *http.Request) {
	var req passwordResetRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	email := auth.NormalizeEmail(req.Email)
	if problem := auth.CheckEmail(email); problem != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "email", "email: "+problem)
		return
	}
	if s.o.Mailer == nil {
		// Retry-After makes it a 503 the gateway's breaker excludes (a
		// dependency every instance lacks), not a failure of this instance:
		// five of these in a row, which anyone may send, would otherwise
		// open its breaker. An hour: only a rollout changes it.
		w.Header().Set("Retry-After", "3600")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "mail_not_configured",
			"password reset by e-mail is not available: this installation has no mail delivery configured (config-svc's -smtp-addr or -mail-dir); ask its operators")
		return
	}
	if wait := s.resets.begin(email); wait > 0 {
		s.metrics.resetRequests.WithLabelValues("throttled").Inc()
		writeTooManyAttempts(w, wait, "a password reset was asked for this e-mail address a short while ago (if an account has it, the e-mail is on its way: look in the inbox and the spam folder); ask again in %d s")
		return
	}
	ctx := r.Context()
	u, err := s.o.Store.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "look up the user", err)
		return
	}
	if err != nil {
		// No account: wait as long as a mail takes to store and send.
		s.metrics.resetRequests.WithLabelValues("no_account").Inc()
		t := time.NewTimer(s.sendTimes.sample())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		s.writeResetRequested(w)
		return
	}
	start := time.Now()
	if err := s.mailResetLink(w, r, u); err != nil {
		s.metrics.resetRequests.WithLabelValues("failed").Inc()
		return
	}
	s.sendTimes.add(time.Since(start))
	s.metrics.resetRequests.WithLabelValues("sent").Inc()
	s.o.Log.Info("password reset link sent", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
		slog.String("request_id", httpserver.RequestID(ctx)))
	s.writeResetRequested(w)
}

func (s *Server) writeResetRequested(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusAccepted, PasswordResetResponse{Message: fmt.Sprintf(
		"if an account has this e-mail address, a link to reset its password has been sent to it; the link works once, within %s",
		humanDuration(s.o.PasswordResetTTL))})
}

// mailResetLink stores a new reset token of u and mails it. On failure it
// has answered, and returns the error.
func (s *Server) mailResetLink(w http.ResponseWriter, r *http.Request, u store.User) error {
	token, err := auth.RandomToken(auth.PasswordResetTokenPrefix)
	if err != nil {
		s.internalError(w, r, "make a reset token", err)
		return err
	}
	now := s.now()
	t := store.PasswordReset{Hash: auth.HashToken(token), TenantID: u.TenantID, UserID: u.ID, PasswordSHA256: auth.HashToken(u.PasswordHash),
		IssuedAt: now, ExpiresAt: now.Add(s.o.PasswordResetTTL)}
	if err := s.o.Store.SavePasswordReset(r.Context(), t); err != nil {
		s.internalError(w, r, "store the reset token", err)
		return err
	}
	m := mail.Message{From: s.o.MailFrom, To: u.Email, Subject: "Reset your Acme Analytics password", Body: s.resetMailBody(u.Email, token)}
	// Once begun, a send is not abandoned for a client that went away;
	// the sender bounds it.
	err = s.o.Mailer.Send(context.WithoutCancel(r.Context()), m)
	if err == nil {
		return nil
	}
	s.o.Log.Error("send a password reset e-mail", slog.Any("error", err), slog.Bool("temporary", mail.Temporary(err)),
		slog.String("user_id", u.ID.String()), slog.String("request_id", httpserver.RequestID(r.Context())))
	if mail.Temporary(err) {
		// The throttle lets the address ask again after its wait, which
		// is what the answer says.
		secs := waitSeconds(s.resets.wait(u.Email))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		httpserver.WriteError(w, http.StatusServiceUnavailable, "mail_unavailable",
			fmt.Sprintf("the e-mail could not be sent now (the mail server did not take it); ask again in %d s", secs))
		return err
	}
	httpserver.WriteError(w, http.StatusInternalServerError, "internal",
		"the e-mail could not be sent; the request ID identifies it in our logs")
	return err
}

func (s *Server) resetMailBody(email, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Someone, hopefully you, asked to reset the password of the Acme Analytics account %s.\n\n", email)
	if s.o.PasswordResetURL != "" {
		fmt.Fprintf(&b, "To choose a new password, open this link:\n\n%s\n\n", strings.Replace(s.o.PasswordResetURL, ResetTokenPlaceholder, token, 1))
	} else {
		fmt.Fprintf(&b, "To choose a new password, send this reset token with it to POST /v1/password-reset/confirm:\n\n"+
			"  {\"token\": \"%s\", \"password\": \"<your new password>\"}\n\n", token)
	}
	fmt.Fprintf(&b, "It works once, within %s, and signs out every session of the old password.\n"+
		"If you did not ask for it, ignore this e-mail: your password stays as it is.\n", humanDuration(s.o.PasswordResetTTL))
	return b.String()
}

// confirmPasswordReset sets a new password with a reset token: the token
// works once, the password follows the rules of new passwords (checked
// before the token is used, so that a refused password does not cost the
// link), and every refresh token of the user is revoked.
func (s *Server) confirmPasswordReset(w http.ResponseWriter, r *http.Request) {
	var req passwordResetConfirmRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if !strings.HasPrefix(req.Token, auth.PasswordResetTokenPrefix) {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "token", "token: is required and must be the reset token of the e-mail ("+auth.PasswordResetTokenPrefix+"...)")
		return
	}
	ctx := r.Context()
	t, err := s.o.Store.PasswordReset(ctx, auth.HashToken(req.Token))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "read the reset token", err)
		return
	}
	if err != nil || !s.now().Before(t.ExpiresAt) {
		writeInvalidResetToken(w)
		return
	}
	u, err := s.o.Store.User(ctx, t.TenantID, t.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "read the user", err)
		return
	}
	// A user deleted since, or whose password changed since (another link
	// used), has no use for the link.
	if err != nil || auth.HashToken(u.PasswordHash) != t.PasswordSHA256 {
		writeInvalidResetToken(w)
		return
	}
	if reason := auth.CheckPassword(req.Password, u.Email); reason != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "password", "password: "+reason)
		return
	}
	hash, err := s.o.Hasher.Hash(req.Password)
	if err != nil {
		s.internalError(w, r, "hash the password", err)
		return
	}
	if err := s.o.Store.ConsumePasswordReset(ctx, t.Hash); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeInvalidResetToken(w) // a concurrent use was first
			return
		}
		s.internalError(w, r, "use the reset token", err)
		return
	}
	// The link is used up: what follows runs to its end even when the
	// client goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.o.Store.SetPassword(ctx, u.TenantID, u.ID, u.PasswordHash, hash); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeInvalidResetToken(w) // deleted, or another link used, meanwhile
			return
		}
		s.internalErrorAfter(w, r, "set the password", err, "the reset link is used up and the password was not changed: ask for a new link (POST /v1/password-reset)")
		return
	}
	if err := s.o.Store.RevokeUserTokens(ctx, u.TenantID, u.ID); err != nil {
		s.internalErrorAfter(w, r, "revoke the refresh tokens", err,
			"your password was changed, but signing out the sessions of the old one failed: log in with the new password, and ask for another reset link to sign them out")
		return
	}
	s.logins.cleared(u.Email)
	s.metrics.passwordResets.Inc()
	s.o.Log.Info("password reset", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
		slog.String("request_id", httpserver.RequestID(r.Context())))
	w.WriteHeader(http.StatusNoContent)
}

func writeInvalidResetToken(w http.ResponseWriter) {
	httpserver.WriteError(w, http.StatusBadRequest, "invalid_reset_token",
		"the reset link is unknown, expired or already used; ask for a new one (POST /v1/password-reset)")
}

// writeTooManyAttempts answers 429 too_many_attempts with Retry-After;
// format has a %d for the seconds to wait.
func writeTooManyAttempts(w http.ResponseWriter, wait time.Duration, format string) {
	secs := waitSeconds(wait)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	httpserver.WriteError(w, http.StatusTooManyRequests, "too_many_attempts", fmt.Sprintf(format, secs))
}

// waitSeconds is a wait in whole seconds, rounded up.
func waitSeconds(wait time.Duration) int { return int((wait + time.Second - 1) / time.Second) }

// humanDuration says a reset link's lifetime in words: "1 hour",
// "90 minutes".
func humanDuration(d time.Duration) string {
	unit, n := "minute", int(d/time.Minute)
	if d%time.Hour == 0 {
		unit, n = "hour", int(d/time.Hour)
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.Itoa(n) + " " + unit
}

// sendTimes keeps how long the last reset mails took to store and send,
// so that a request for an address without an account waits as long as
// one with: for one of those times picked at random, which makes the two
// answers' times alike in distribution rather than in their mean. Until
// the instance has sent a mail there is nothing to wait for.
type sendTimes struct {
	mu sync.Mutex
	d  [64]time.Duration
	n  int // times recorded, the newest at d[(n-1)%len(d)]
}

func (t *sendTimes) add(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.d[t.n%len(t.d)] = d
	t.n++
}

func (t *sendTimes) sample() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return 0
	}
	return t.d[rand.IntN(min(t.n, len(t.d)))]
}
