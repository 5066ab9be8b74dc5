package store

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// Invitation is a pending invitation of an address to a tenant, with the
// role its user will have. TokenHash is the hash of the token mailed to
// the address. InviterExternal says InvitedBy is an external identity
// provider's admin, of whom config-svc keeps no user.
type Invitation struct {
	TenantID        gocql.UUID
	ID              gocql.UUID
	Email           string
	Role            string
	InvitedBy       gocql.UUID
	InviterExternal bool
	TokenHash       string
	CreatedAt       time.Time
	ExpiresAt       time.Time
}

// SaveInvitation stores an invitation and its token until it expires, in
// one logged batch.
func (st *Store) SaveInvitation(ctx context.Context, inv Invitation) error {
	ttl := ttlSeconds(inv.ExpiresAt, st.now())
	b := st.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(`INSERT INTO invitations (tenant_id, invitation_id, email, role, invited_by, inviter_external, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		inv.TenantID, inv.ID, inv.Email, inv.Role, inv.InvitedBy, inv.InviterExternal, inv.TokenHash, inv.CreatedAt, inv.ExpiresAt, ttl)
	b.Query(`INSERT INTO invitation_tokens (token_hash, tenant_id, invitation_id, email, role, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
		inv.TokenHash, inv.TenantID, inv.ID, inv.Email, inv.Role, inv.ExpiresAt, ttl)
	if err := st.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("save invitation: %w", err)
	}
	return nil
}

// Invitations lists a tenant's pending invitations (those not expired by
// their TTL), in the order of their IDs.
func (st *Store) Invitations(ctx context.Context, tenantID gocql.UUID) ([]Invitation, error) {
	iter := st.s.Query(`SELECT invitation_id, email, role, invited_by, inviter_external, token_hash, created_at, expires_at FROM invitations WHERE tenant_id = ?`, tenantID).
		WithContext(ctx).Iter()
	var out []Invitation
	inv := Invitation{TenantID: tenantID}
	for iter.Scan(&inv.ID, &inv.Email, &inv.Role, &inv.InvitedBy, &inv.InviterExternal, &inv.TokenHash, &inv.CreatedAt, &inv.ExpiresAt) {
		out = append(out, inv)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	return out, nil
}

// Invitation reads one pending invitation of a tenant, or ErrNotFound.
func (st *Store) Invitation(ctx context.Context, tenantID, id gocql.UUID) (Invitation, error) {
	inv := Invitation{TenantID: tenantID, ID: id}
	err := st.s.Query(`SELECT email, role, invited_by, inviter_external, token_hash, created_at, expires_at FROM invitations WHERE tenant_id = ? AND invitation_id = ?`, tenantID, id).
		WithContext(ctx).Scan(&inv.Email, &inv.Role, &inv.InvitedBy, &inv.InviterExternal, &inv.TokenHash, &inv.CreatedAt, &inv.ExpiresAt)
	if err != nil {
		return Invitation{}, fmt.Errorf("read invitation: %w", notFound(err))
	}
	return inv, nil
}

// InvitationByToken reads the invitation of a token hash, or ErrNotFound
// (never made, accepted, revoked, or past its TTL). Its CreatedAt,
// InvitedBy and TokenHash are not read. Whether it has expired by the
// caller's clock is the caller's check.
func (st *Store) InvitationByToken(ctx context.Context, hash string) (Invitation, error) {
	inv := Invitation{TokenHash: hash}
	err := st.s.Query(`SELECT tenant_id, invitation_id, email, role, expires_at FROM invitation_tokens WHERE token_hash = ?`, hash).
		WithContext(ctx).Scan(&inv.TenantID, &inv.ID, &inv.Email, &inv.Role, &inv.ExpiresAt)
	if err != nil {
		return Invitation{}, fmt.Errorf("read invitation token: %w", notFound(err))
	}
	return inv, nil
}

// ConsumeInvitationToken deletes an invitation's token for its one use; it
// returns ErrNotFound when the token is gone: used by a concurrent call
// (DELETE ... IF EXISTS: of concurrent calls exactly one succeeds), or
// revoked.
func (st *Store) ConsumeInvitationToken(ctx context.Context, hash string) error {
	return st.consumeToken(ctx, "invitation_tokens", hash, "invitation", "already used or revoked")
}

// DeleteInvitation removes an invitation: its token first (so that once
// this returns nobody can accept it, whatever follows), then its row.
// Deleting one that is gone succeeds.
func (st *Store) DeleteInvitation(ctx context.Context, inv Invitation) error {
	if err := st.s.Query(`DELETE FROM invitation_tokens WHERE token_hash = ?`, inv.TokenHash).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("delete invitation token: %w", err)
	}
	if err := st.s.Query(`DELETE FROM invitations WHERE tenant_id = ? AND invitation_id = ?`, inv.TenantID, inv.ID).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("delete invitation: %w", err)
	}
	return nil
}
