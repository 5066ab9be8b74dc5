package store

import (
	"context"
	"fmt"

	"github.com/gocql/gocql"
)

// PasswordReset is a stored password reset token.
type PasswordReset UserToken

// SavePasswordReset stores a reset token's hash until it expires.
func (st *Store) SavePasswordReset(ctx context.Context, t PasswordReset) error {
	err := st.s.Query(`INSERT INTO password_reset_tokens (token_hash, tenant_id, user_id, password_sha256, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
		t.Hash, t.TenantID, t.UserID, t.PasswordSHA256, t.IssuedAt, t.ExpiresAt, ttlSeconds(t.ExpiresAt, st.now())).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("save password reset: %w", err)
	}
	return nil
}

// PasswordReset reads a reset token, or ErrNotFound (never made, used, or
// past its TTL). Whether it has expired by the caller's clock is the
// caller's check.
func (st *Store) PasswordReset(ctx context.Context, hash string) (PasswordReset, error) {
	t := PasswordReset{Hash: hash}
	err := st.s.Query(`SELECT tenant_id, user_id, password_sha256, issued_at, expires_at FROM password_reset_tokens WHERE token_hash = ?`, hash).
		WithContext(ctx).Scan(&t.TenantID, &t.UserID, &t.PasswordSHA256, &t.IssuedAt, &t.ExpiresAt)
	if err != nil {
		return PasswordReset{}, fmt.Errorf("read password reset: %w", notFound(err))
	}
	return t, nil
}

// ConsumePasswordReset deletes a reset token for its one use; it returns
// ErrNotFound when the token is gone, as when a concurrent call consumed
// it first (DELETE ... IF EXISTS: of concurrent calls exactly one
// succeeds).
func (st *Store) ConsumePasswordReset(ctx context.Context, hash string) error {
	return st.consumeToken(ctx, "password_reset_tokens", hash, "password reset", "already used")
}

// consumeToken deletes the row of a one-use token's hash from table, for
// its one use (DELETE ... IF EXISTS: of concurrent calls exactly one
// succeeds); it returns ErrNotFound, said as what is gone, when the row
// was gone already.
func (st *Store) consumeToken(ctx context.Context, table, hash, what, gone string) error {
	applied, err := st.s.Query(`DELETE FROM `+table+` WHERE token_hash = ? IF EXISTS`, hash).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("consume %s: %w", what, err)
	}
	if !applied {
		return fmt.Errorf("%s %s: %w", what, gone, ErrNotFound)
	}
	return nil
}

// SetPassword replaces a user's password hash old with hash. It returns
// ErrNotFound when the user no longer exists or its hash is no longer old
// (a lightweight transaction: a user deleted meanwhile is not brought back
// as a row with a password alone).
func (st *Store) SetPassword(ctx context.Context, tenantID, userID gocql.UUID, old, hash string) error {
	applied, err := st.s.Query(`UPDATE users SET password_hash = ? WHERE tenant_id = ? AND user_id = ? IF password_hash = ?`, hash, tenantID, userID, old).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if !applied {
		return fmt.Errorf("set password: user gone or password changed: %w", ErrNotFound)
	}
	return nil
}
