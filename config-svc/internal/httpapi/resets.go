package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
)

// DefaultPasswordResetTTL is how long a password reset link works.
const DefaultPasswordResetTTL = time.Hour

// TokenPlaceholder is replaced by the token in -password-reset-url and
// -email-verification-url.
const TokenPlaceholder = "{token}"

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

// requestPasswordReset has a reset link mailed to the account with the
// address, if there is one, and answers 202 at once, the same either way:
// the mail is handed to the background sender (Options.Mailer), so
// neither its time nor its failure shows in the answer. Requests for an
// address are throttled alike, known or not.
func (s *Server) requestPasswordReset(w http.ResponseWriter, r *http.Request) {
	var req passwordResetRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	keys := auth.EmailKeys(req.Email)
	email := keys[0]
	if problem := auth.CheckEmail(email); problem != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "email", "email: "+problem)
		return
	}
	if s.o.Mailer == nil {
		writeMailNotConfigured(w, "password reset by e-mail is not available")
		return
	}
	if wait := s.resets.begin(email); wait > 0 {
		s.metrics.resetRequests.WithLabelValues("throttled").Inc()
		writeTooManyAttempts(w, wait, "a password reset was asked for this e-mail address a short while ago (if an account has it, the e-mail is on its way: look in the inbox and the spam folder); ask again in %d s")
		return
	}
	ctx := r.Context()
	users, err := s.o.Store.UsersByEmail(ctx, keys...)
	if err != nil {
		// Alike for every address: nothing is known of it yet.
		s.internalError(w, r, "look up the user", err)
		return
	}
	if len(users) == 0 {
		s.metrics.resetRequests.WithLabelValues("no_account").Inc()
		s.writeResetRequested(w)
		return
	}
	// Of two accounts of the address (made before for two spellings, or
	// one made before under a rare spelling and one since), the first
	// that verified it, the canonical key's tried first: an unverified
	// one, anyone's, must not keep the owner's from its reset links. The
	// keys are spellings of one address, so the link goes to the mailbox
	// that account showed to be its own.
	u := users[0]
	if i := slices.IndexFunc(users, store.User.EmailVerified); i >= 0 {
		u = users[i]
	}
	// From here on the answer is 202 whatever happens, as for an address
	// without an account: a failure answered otherwise would tell that
	// the address has one. The user, who gets no mail, asks again after
	// the throttle's wait.
	if !u.EmailVerified() {
		// Nobody has shown that the address reaches the account's holder:
		// it may be mistyped (an admin's typo, someone else's address
		// given at sign-up), and a link there would hand the account, with
		// its role, to whoever reads it. The user needs an admin of the
		// tenant, or support.
		s.metrics.resetRequests.WithLabelValues("unverified").Inc()
		s.o.Log.Info("password reset not mailed: the address is not verified", slog.String("tenant_id", u.TenantID.String()),
			slog.String("user_id", u.ID.String()), slog.String("request_id", httpserver.RequestID(ctx)))
		s.writeResetRequested(w)
		return
	}
	if s.queueResetLink(r, u) {
		s.metrics.resetRequests.WithLabelValues("queued").Inc()
	} else {
		s.metrics.resetRequests.WithLabelValues("failed").Inc()
	}
	s.writeResetRequested(w)
}

func (s *Server) writeResetRequested(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusAccepted, PasswordResetResponse{Message: fmt.Sprintf(
		"if an account has this e-mail address, a link to reset its password has been sent to it; the link works once, within %s",
		humanDuration(s.o.PasswordResetTTL))})
}

// queueResetLink stores a new reset token of u and hands its mail to the
// background sender; it reports whether the mail was queued, having
// logged why not (never the token).
func (s *Server) queueResetLink(r *http.Request, u store.User) bool {
	err := s.queueTokenMail(r, u, "password_reset", auth.PasswordResetTokenPrefix, "Reset your Acme Analytics password",
		func(hash string, now time.Time) error {
			return s.o.Store.SavePasswordReset(r.Context(), store.PasswordReset{Hash: hash, TenantID: u.TenantID, UserID: u.ID,
				PasswordSHA256: auth.HashToken(u.PasswordHash), IssuedAt: now, ExpiresAt: now.Add(s.o.PasswordResetTTL)})
		},
		func(token string) string { return s.resetMailBody(u.Email, token) })
	return err == nil
}

// queueTokenMail makes a one-use token (prefix + random bytes), stores its
// hash with save, and hands the e-mail with body(token) to u's address to
// the background sender: the shape of every link config-svc mails to a
// user. A failure is logged here (never the token); errMailQueueFull is
// the sender's refusal (logged and counted by the queue).
func (s *Server) queueTokenMail(r *http.Request, u store.User, kind, prefix, subject string,
	save func(hash string, now time.Time) error, body func(token string) string) error {
	ctx := r.Context()
	attrs := []slog.Attr{slog.String("mail", kind), slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
		slog.String("request_id", httpserver.RequestID(ctx))}
	token, err := auth.RandomToken(prefix)
	if err != nil {
		s.o.Log.LogAttrs(ctx, slog.LevelError, "make a token to mail", append(attrs, slog.Any("error", err))...)
		return err
	}
	if err := save(auth.HashToken(token), s.now()); err != nil {
		s.o.Log.LogAttrs(ctx, slog.LevelError, "store the token to mail", append(attrs, slog.Any("error", err))...)
		return err
	}
	// To the canonical form of the address (the user's own, but for an
	// account made before it): its domain as the A-label, which every
	// mail server takes.
	to := auth.EmailKeys(u.Email)[0]
	if !s.o.Mailer.Enqueue(mail.Message{From: s.o.MailFrom, To: to, Subject: subject, Body: body(token)}, attrs...) {
		return errMailQueueFull
	}
	s.o.Log.LogAttrs(ctx, slog.LevelInfo, "link queued", attrs...)
	return nil
}

// mailedTokenField reports whether token has the prefix of the links of
// its kind ("reset", "verification", "invitation"), having answered 400
// invalid_field token if not: a field left out or another link's token.
func mailedTokenField(w http.ResponseWriter, token, prefix, kind string) bool {
	if strings.HasPrefix(token, prefix) {
		return true
	}
	httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "token",
		"token: is required and must be the "+kind+" token of the e-mail ("+prefix+"...)")
	return false
}

// mailedLink reads the stored row of a mailed link from its token, as
// every endpoint that takes one does: a token without the prefix of its
// kind is 400 invalid_field (mailedTokenField), a failed read 500 or 503,
// and a link unknown, used or past expiresAt is answered by invalid. It
// reports false having answered.
func mailedLink[T any](s *Server, w http.ResponseWriter, r *http.Request, token, prefix, kind string,
	read func(ctx context.Context, hash string) (T, error), expiresAt func(T) time.Time, invalid func(http.ResponseWriter)) (T, bool) {
	var zero T
	if !mailedTokenField(w, token, prefix, kind) {
		return zero, false
	}
	row, err := read(r.Context(), auth.HashToken(token))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "read the "+kind+" token", err)
		return zero, false
	}
	if err != nil || !s.now().Before(expiresAt(row)) {
		invalid(w)
		return zero, false
	}
	return row, true
}

// writeLink writes to b how to use a mailed token: url's link, the token
// in place of TokenPlaceholder, after linkIntro; with no url, the token in
// the JSON body to post (with otherFields, as shown to the reader) after
// tokenIntro.
func writeLink(b *strings.Builder, url, token, linkIntro, tokenIntro, otherFields string) {
	if url != "" {
		fmt.Fprintf(b, "%s:\n\n%s\n\n", linkIntro, strings.Replace(url, TokenPlaceholder, token, 1))
		return
	}
	fmt.Fprintf(b, "%s:\n\n  {\"token\": \"%s\"%s}\n\n", tokenIntro, token, otherFields)
}

func (s *Server) resetMailBody(email, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Someone, hopefully you, asked to reset the password of the Acme Analytics account %s.\n\n", email)
	writeLink(&b, s.o.PasswordResetURL, token, "To choose a new password, open this link",
		"To choose a new password, send this reset token with it to POST /v1/password-reset/confirm", `, "password": "<your new password>"`)
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
	t, ok := mailedLink(s, w, r, req.Token, auth.PasswordResetTokenPrefix, "reset", s.o.Store.PasswordReset,
		func(t store.PasswordReset) time.Time { return t.ExpiresAt }, writeInvalidResetToken)
	if !ok {
		return
	}
	ctx := r.Context()
	u, err := s.o.Store.User(ctx, t.TenantID, t.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "read the user", err)
		return
	}
	// A user deleted since, or whose password changed since (another link
	// used), has no use for the link; nor has one whose address is not
	// verified (a link made before verification was required).
	if err != nil || auth.HashToken(u.PasswordHash) != t.PasswordSHA256 || !u.EmailVerified() {
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
	// As login keys it; failed logins that were guesses at another
	// account of the address stay.
	s.logins.succeeded(auth.EmailKeys(u.Email)[0], u.ID, false)
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
	secs := int((wait + time.Second - 1) / time.Second) // rounded up
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	httpserver.WriteError(w, http.StatusTooManyRequests, "too_many_attempts", fmt.Sprintf(format, secs))
}

// humanDuration says a link's lifetime in words: "1 hour", "90 minutes",
// "7 days".
func humanDuration(d time.Duration) string {
	unit, n := "minute", int(d/time.Minute)
	switch {
	case d%(24*time.Hour) == 0:
		unit, n = "day", int(d/(24*time.Hour))
	case d%time.Hour == 0:
		unit, n = "hour", int(d/time.Hour)
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.Itoa(n) + " " + unit
}
