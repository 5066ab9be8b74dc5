package store

import (
	"context"
	"fmt"
	"time"
)

// EmailClaim is a pending sign-up for an address an unverified user
// holds: the hash of the claim link mailed to Email, and what the sign-up
// gave (the bcrypt hash of its password, its company), which the link
// completes.
type EmailClaim struct {
	Hash         string
	Email        string
	PasswordHash string
	Company      string
	IssuedAt     time.Time
	ExpiresAt    time.Time
}

// SaveEmailClaim stores a claim link's pending sign-up until it expires.
func (st *Store) SaveEmailClaim(ctx context.Context, c EmailClaim) error {
	err := st.s.Query(`INSERT INTO email_claim_tokens (token_hash, email, password_hash, company, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
		c.Hash, c.Email, c.PasswordHash, c.Company, c.IssuedAt, c.ExpiresAt, ttlSeconds(c.ExpiresAt, st.now())).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("save email claim: %w", err)
	}
	return nil
}

// EmailClaim reads a claim link's pending sign-up, or ErrNotFound (never
// made, used, or past its TTL). Whether it has expired by the caller's
// clock is the caller's check.
func (st *Store) EmailClaim(ctx context.Context, hash string) (EmailClaim, error) {
	c := EmailClaim{Hash: hash}
	err := st.s.Query(`SELECT email, password_hash, company, issued_at, expires_at FROM email_claim_tokens WHERE token_hash = ?`, hash).
		WithContext(ctx).Scan(&c.Email, &c.PasswordHash, &c.Company, &c.IssuedAt, &c.ExpiresAt)
	if err != nil {
		return EmailClaim{}, fmt.Errorf("read email claim: %w", notFound(err))
	}
	return c, nil
}

// ConsumeEmailClaim deletes a claim link for its one use; it returns
// ErrNotFound when the link is gone, as when a concurrent call consumed
// it first (DELETE ... IF EXISTS: of concurrent calls exactly one
// succeeds).
func (st *Store) ConsumeEmailClaim(ctx context.Context, hash string) error {
	return st.consumeToken(ctx, "email_claim_tokens", hash, "email claim", "already used")
}
