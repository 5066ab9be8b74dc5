package store

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// EmailVerification is a stored e-mail verification token: the hash of a
// token mailed to Email, the address of the user it verifies.
type EmailVerification struct {
	Hash      string
	TenantID  gocql.UUID
	UserID    gocql.UUID
	Email     string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// SaveEmailVerification stores a verification token's hash until it
// expires.
func (st *Store) SaveEmailVerification(ctx context.Context, t EmailVerification) error {
	err := st.s.Query(`INSERT INTO email_verification_tokens (token_hash, tenant_id, user_id, email, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
		t.Hash, t.TenantID, t.UserID, t.Email, t.IssuedAt, t.ExpiresAt, ttlSeconds(t.ExpiresAt, st.now())).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("save email verification: %w", err)
	}
	return nil
}

// EmailVerification reads a verification token, or ErrNotFound (never
// made, used, or past its TTL). Whether it has expired by the caller's
// clock, and whose it is, are the caller's checks.
func (st *Store) EmailVerification(ctx context.Context, hash string) (EmailVerification, error) {
	t := EmailVerification{Hash: hash}
	err := st.s.Query(`SELECT tenant_id, user_id, email, issued_at, expires_at FROM email_verification_tokens WHERE token_hash = ?`, hash).
		WithContext(ctx).Scan(&t.TenantID, &t.UserID, &t.Email, &t.IssuedAt, &t.ExpiresAt)
	if err != nil {
		return EmailVerification{}, fmt.Errorf("read email verification: %w", notFound(err))
	}
	return t, nil
}

// ConsumeEmailVerification deletes a verification token for its one use;
// it returns ErrNotFound when the token is gone, as when a concurrent call
// consumed it first (DELETE ... IF EXISTS: of concurrent calls exactly one
// succeeds).
func (st *Store) ConsumeEmailVerification(ctx context.Context, hash string) error {
	return st.consumeToken(ctx, "email_verification_tokens", hash, "email verification", "already used")
}

// SetEmailVerified records that a user's address email was verified at
// at. It returns ErrNotFound when the user no longer exists or no longer
// has that address (a lightweight transaction: a user deleted meanwhile
// is not brought back as a row with a time alone).
func (st *Store) SetEmailVerified(ctx context.Context, tenantID, userID gocql.UUID, email string, at time.Time) error {
	applied, err := st.s.Query(`UPDATE users SET email_verified_at = ? WHERE tenant_id = ? AND user_id = ? IF email = ?`, at, tenantID, userID, email).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("set email verified: %w", err)
	}
	if !applied {
		return fmt.Errorf("set email verified: user gone or address changed: %w", ErrNotFound)
	}
	return nil
}
