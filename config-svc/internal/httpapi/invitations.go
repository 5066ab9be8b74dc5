package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

// InvitationTTL is how long an invitation (its link) works: the TTL of
// its rows (cql/0012).
const InvitationTTL = 7 * 24 * time.Hour

// MaxPendingInvitations bounds a tenant's pending invitations, so that
// the list needs no paging and the partition stays tiny.
const MaxPendingInvitations = 100

// InvitationJSON is a pending invitation in the API (never its token).
type InvitationJSON struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	InvitedBy string    `json:"invited_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// InvitationList is a tenant's pending invitations, in the order of their
// IDs.
type InvitationList struct {
	Invitations []InvitationJSON `json:"invitations"`
}

type createInvitationRequest struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

type acceptInvitationRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

func invitationJSON(inv store.Invitation) InvitationJSON {
	return InvitationJSON{ID: inv.ID.String(), Email: inv.Email, Role: inv.Role, InvitedBy: inv.InvitedBy.String(),
		CreatedAt: inv.CreatedAt.UTC(), ExpiresAt: inv.ExpiresAt.UTC()}
}

// createInvitation invites an address to the caller's tenant: a link is
// mailed to it, with which its reader becomes a user of the role given.
func (s *Server) createInvitation(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	var req createInvitationRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	keys, reason := auth.NewEmail(req.Email)
	if reason != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "email", "email: "+reason)
		return
	}
	email := keys[0]
	if !checkRole(w, req.Role) {
		return
	}
	if s.o.Mailer == nil {
		writeMailNotConfigured(w, "invitations are not available")
		return
	}
	ctx := r.Context()
	if _, err := s.o.Store.UserByEmail(ctx, keys...); err == nil {
		httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email", "a user with this e-mail address already exists")
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "look up the address", err)
		return
	}
	pending, err := s.o.Store.Invitations(ctx, tid)
	if err != nil {
		s.internalError(w, r, "list the invitations", err)
		return
	}
	if len(pending) >= MaxPendingInvitations {
		writeTooManyInvitations(w, "")
		return
	}
	if wait := s.invites.begin(email); wait > 0 {
		writeTooManyAttempts(w, wait, "an invitation was mailed to this e-mail address a short while ago; invite it again in %d s")
		return
	}
	t, err := s.o.Store.Tenant(ctx, tid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "read the tenant", err)
		return
	}
	// No user, and none deleted: an external identity provider's admin.
	// (A user deleted since adminHolds read it is refused here; one
	// deleted later leaves an invitation its acceptance refuses.)
	inviter, external, ok := s.callerUserOrExternal(w, r, tid, uid)
	if !ok {
		return
	}
	token, err := auth.RandomToken(auth.InvitationTokenPrefix)
	if err != nil {
		s.internalError(w, r, "make an invitation token", err)
		return
	}
	now := s.now()
	inv := store.Invitation{TenantID: tid, ID: gocql.MustRandomUUID(), Email: email, Role: req.Role, InvitedBy: uid, InviterExternal: external,
		TokenHash: auth.HashToken(token), CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
	if err := s.o.Store.SaveInvitation(ctx, inv); err != nil {
		s.internalError(w, r, "store the invitation", err)
		return
	}
	// Invitations made at the same moment all passed the count above:
	// whichever finds the tenant over the limit afterwards takes its own
	// back (not mailed yet), so the limit holds.
	pending, err = s.o.Store.Invitations(ctx, tid)
	if err == nil && len(pending) > MaxPendingInvitations {
		if err = s.o.Store.DeleteInvitation(ctx, inv); err == nil {
			writeTooManyInvitations(w, " (another invitation was made at the same moment)")
			return
		}
	}
	if err != nil {
		s.internalError(w, r, "check the pending invitations' limit", err)
		return
	}
	attrs := []slog.Attr{slog.String("mail", "invitation"), slog.String("tenant_id", tid.String()), slog.String("invitation_id", inv.ID.String()),
		slog.String("request_id", httpserver.RequestID(ctx))}
	m := mail.Message{From: s.o.MailFrom, To: email, Subject: "You are invited to Acme Analytics", Body: s.invitationMailBody(t.Name, inviter.Email, inv.Role, token)}
	if !s.o.Mailer.Enqueue(m, attrs...) {
		// Not mailed: nobody can accept it, so it is not kept.
		if err := s.o.Store.DeleteInvitation(context.WithoutCancel(ctx), inv); err != nil {
			s.o.Log.Error("remove an invitation whose e-mail was not queued", slog.Any("error", err), slog.String("invitation_id", inv.ID.String()))
		}
		w.Header().Set("Retry-After", "60")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "too many e-mails are waiting to be sent; invite again in a minute")
		return
	}
	s.metrics.invitations.WithLabelValues("sent").Inc()
	s.o.Log.LogAttrs(ctx, slog.LevelInfo, "invitation queued", attrs...)
	w.Header().Set("Location", "/v1/invitations/"+inv.ID.String())
	httpserver.WriteJSON(w, http.StatusCreated, invitationJSON(inv))
}

func (s *Server) invitationMailBody(tenantName, inviter, role, token string) string {
	var b strings.Builder
	who := "An admin"
	if inviter != "" {
		who = inviter
	}
	// The name is whoever signed up's text: quoted with anything that is
	// not printable escaped, so that a name stored before checkName
	// refused line breaks cannot write lines of this e-mail.
	fmt.Fprintf(&b, "%s invited you to %s on Acme Analytics, as %s.\n\n", who, strconv.QuoteToGraphic(tenantName), role)
	writeLink(&b, s.o.InvitationURL, token, "To accept, open this link and choose your password",
		"To accept, send this token with the password you choose to POST /v1/invitations/accept", `, "password": "<your password>"`)
	fmt.Fprintf(&b, "It works once, within %s. If you did not expect it, ignore this e-mail.\n", humanDuration(InvitationTTL))
	return b.String()
}

func (s *Server) listInvitations(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	pending, err := s.o.Store.Invitations(r.Context(), tid)
	if err != nil {
		s.internalError(w, r, "list the invitations", err)
		return
	}
	out := InvitationList{Invitations: make([]InvitationJSON, 0, len(pending))}
	now := s.now()
	for _, inv := range pending {
		if now.Before(inv.ExpiresAt) {
			out.Invitations = append(out.Invitations, invitationJSON(inv))
		}
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

// revokeInvitation deletes a pending invitation: its link no longer works.
func (s *Server) revokeInvitation(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	raw := r.PathValue("invitation_id")
	id, err := gocql.ParseUUID(raw)
	if err != nil {
		notFound(w, "invitation", raw)
		return
	}
	inv, err := s.o.Store.Invitation(r.Context(), tid, id)
	if errors.Is(err, store.ErrNotFound) {
		notFound(w, "invitation", raw)
		return
	}
	if err != nil {
		s.internalError(w, r, "read the invitation", err)
		return
	}
	if err := s.o.Store.DeleteInvitation(r.Context(), inv); err != nil {
		s.internalError(w, r, "revoke the invitation", err)
		return
	}
	s.metrics.invitations.WithLabelValues("revoked").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// acceptInvitation makes the invited user, with the password given and
// the address verified (the link came to it), and signs it in. The
// address is claimed only now: taken meanwhile by a user who verified it,
// it is 409; one who never did loses it to the invitee.
func (s *Server) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	var req acceptInvitationRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	inv, ok := mailedLink(s, w, r, req.Token, auth.InvitationTokenPrefix, "invitation", s.o.Store.InvitationByToken,
		func(inv store.Invitation) time.Time { return inv.ExpiresAt }, writeInvalidInvitationToken)
	if !ok {
		return
	}
	ctx := r.Context()
	// The invitation has the canonical form (one an earlier version made,
	// the old form): the user is keyed by the canonical form, and an
	// account made before under an old form of it holds the address.
	keys := auth.EmailKeys(inv.Email)
	if reason := auth.CheckPassword(req.Password, inv.Email); reason != "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "password", "password: "+reason)
		return
	}
	// The invitation is the inviter's word: it holds while they are an
	// admin of the tenant. An admin removed or demoted (for cause, say)
	// could otherwise come back, as admin, through an invitation to an
	// address of theirs made before, or in the minutes their access token
	// outlived the change. Refused before the link is used up, so it works
	// again should the inviter be an admin again.
	switch held, err := s.inviterHolds(ctx, inv); {
	case errors.Is(err, store.ErrNotFound): // revoked meanwhile
		writeInvalidInvitationToken(w)
		return
	case err != nil:
		s.internalError(w, r, "read the inviter", err)
		return
	case !held:
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_invitation_token",
			"the admin who invited you is no longer an admin of this account, so the invitation no longer holds; ask one of its admins for a new one")
		return
	}
	// Taken meanwhile by a user who verified it: refused before the link
	// is used up, so it works again should the address be freed. One who
	// never verified it loses it below: the link came to the address, as
	// a claim link does.
	if holder, err := s.o.Store.UserByEmail(ctx, keys...); err == nil {
		// Taken by an acceptance of this very link, which used it up
		// before claiming the address: a second use, not a conflict.
		if _, err := s.o.Store.InvitationByToken(ctx, inv.TokenHash); errors.Is(err, store.ErrNotFound) {
			writeInvalidInvitationToken(w)
			return
		}
		if holder.EmailVerified() {
			writeInvitedAddressTaken(w)
			return
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, r, "look up the address", err)
		return
	}
	hash, err := s.o.Hasher.Hash(req.Password)
	if err != nil {
		s.internalError(w, r, "hash the password", err)
		return
	}
	if err := s.o.Store.ConsumeInvitationToken(ctx, inv.TokenHash); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeInvalidInvitationToken(w) // a concurrent use, or a revocation, was first
			return
		}
		s.internalError(w, r, "use the invitation", err)
		return
	}
	// The link is used up: the rest runs to its end even when the client
	// goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := s.now()
	u := store.User{TenantID: inv.TenantID, ID: gocql.MustRandomUUID(), Email: keys[0], PasswordHash: hash, Role: inv.Role, CreatedAt: now, EmailVerifiedAt: now}
	from, err := s.o.Store.CreateVerifiedUser(ctx, u, keys[1:]...)
	if err != nil {
		if errors.Is(err, store.ErrEmailTaken) {
			writeInvitedAddressTaken(w)
			return
		}
		// The claim may have been applied with its answer lost: whose the
		// address is, read back, decides.
		owner, rerr := s.o.Store.EmailOwner(ctx, u.Email)
		switch {
		case rerr == nil && owner == u.ID:
			s.o.Log.Info("an acceptance whose e-mail claim seemed to fail made it", slog.String("user_id", u.ID.String()), slog.Any("error", err))
		case rerr == nil:
			writeInvitedAddressTaken(w)
			return
		default:
			s.internalErrorAfter(w, r, "create the user", errors.Join(err, rerr),
				"the invitation is used up and your user may or may not have been created: log in with this address and password (POST /v1/login); if that answers invalid_credentials, ask for a new invitation")
			return
		}
	}
	if err := s.o.Store.DeleteInvitation(ctx, inv); err != nil {
		// Its token is gone: the row is only listed until its TTL.
		s.o.Log.Warn("remove an accepted invitation from the list", slog.Any("error", err), slog.String("invitation_id", inv.ID.String()))
	}
	if from.ID != (gocql.UUID{}) {
		s.addressTaken(r, from, u)
	}
	s.metrics.invitations.WithLabelValues("accepted").Inc()
	s.o.Log.Info("invitation accepted", slog.String("tenant_id", u.TenantID.String()), slog.String("user_id", u.ID.String()),
		slog.String("invitation_id", inv.ID.String()), slog.String("request_id", httpserver.RequestID(r.Context())))
	s.issueTokens(w, r.WithContext(ctx), u, http.StatusCreated)
}

// inviterHolds reports whether the user who made inv is an admin of its
// tenant now (not when deleted or demoted since). An external identity
// provider's admin, of whom config-svc keeps no user, is taken at the
// word of the token it made the invitation with. The invitation's row
// gone (revoked meanwhile) is store.ErrNotFound.
func (s *Server) inviterHolds(ctx context.Context, inv store.Invitation) (bool, error) {
	row, err := s.o.Store.Invitation(ctx, inv.TenantID, inv.ID)
	if err != nil {
		return false, err
	}
	if row.InviterExternal {
		return true, nil
	}
	inviter, err := s.o.Store.User(ctx, inv.TenantID, row.InvitedBy)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return inviter.Role == string(tenant.RoleAdmin), nil
}

func writeTooManyInvitations(w http.ResponseWriter, why string) {
	httpserver.WriteError(w, http.StatusConflict, "conflict", fmt.Sprintf(
		"your tenant has %d pending invitations, the most it may have%s; revoke some (DELETE /v1/invitations/{id}) or wait until they are accepted or expire", MaxPendingInvitations, why))
}

func writeInvalidInvitationToken(w http.ResponseWriter) {
	httpserver.WriteError(w, http.StatusBadRequest, "invalid_invitation_token",
		"the invitation is unknown, expired, revoked or already accepted; ask the admin who invited you for a new one")
}

func writeInvitedAddressTaken(w http.ResponseWriter) {
	httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email",
		"an account with the invited e-mail address exists now; log in with it (POST /v1/login), or ask the admin to delete it and invite you again")
}
