// Package store is config-svc's Cassandra storage: tenants, users, refresh
// tokens, properties, tracking IDs, API secrets, rule versions and the change
// feed (schema in cql/0001_config.cql), the daily salts of cookieless
// visitor IDs (cql/0009_cookieless_salts.cql), password reset tokens
// (cql/0010_password_resets.cql) and e-mail verification: the time a
// user's address was verified and the tokens mailed to verify it
// (cql/0011_email_verification.cql), invitations (cql/0012_invitations.cql),
// the links that claim an address an unverified user holds
// (cql/0014_email_claims.cql) and the mark of a used refresh token
// (cql/0015_refresh_token_reuse.cql).
//
// Every method takes the IDs that key its tables; tenant checks (a property
// read for another tenant is not found) are the callers' job, made on the
// rows returned here. Uniqueness is enforced with lightweight transactions.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

var (
	// ErrNotFound is returned when the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrEmailTaken is returned when an e-mail address already belongs to a
	// user.
	ErrEmailTaken = errors.New("email already registered")
	// ErrFeedGone is returned for a feed position older than what the feed
	// retains, or newer than its head.
	ErrFeedGone = errors.New("change feed position no longer available")
	// ErrRefreshTokenReused is returned (wrapped) for a refresh token used
	// before: what a stolen copy looks like. It is an ErrNotFound too (the
	// token does not work).
	ErrRefreshTokenReused = fmt.Errorf("refresh token used before: %w", ErrNotFound)
)

// RefreshTokenReusedError is the ErrRefreshTokenReused of one token: when
// it was used.
type RefreshTokenReusedError struct{ UsedAt time.Time }

func (e *RefreshTokenReusedError) Error() string {
	return fmt.Sprintf("%v at %s", ErrRefreshTokenReused, e.UsedAt.UTC().Format(time.RFC3339Nano))
}

func (e *RefreshTokenReusedError) Unwrap() error { return ErrRefreshTokenReused }

// completeTimeout bounds the steps a method completes after its context
// ended (context.WithoutCancel): those after its first irreversible write.
const completeTimeout = 10 * time.Second

// Store reads and writes config-svc's tables.
type Store struct {
	s   *gocql.Session
	now func() time.Time
	// pendingTTL is how long the list entry of a property being created
	// lives unless the creation completes (ListPendingProperty).
	pendingTTL time.Duration

	feed feedState
}

// New returns a Store over a session on the product's keyspace.
func New(s *gocql.Session) *Store {
	return &Store{s: s, now: time.Now, pendingTTL: time.Hour}
}

// Ping checks that Cassandra answers.
func (st *Store) Ping(ctx context.Context) error {
	var v string
	if err := st.s.Query("SELECT release_version FROM system.local").WithContext(ctx).Scan(&v); err != nil {
		return fmt.Errorf("query cassandra: %w", err)
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return ErrNotFound
	}
	return err
}

// Tenant is a merchant.
type Tenant struct {
	ID        gocql.UUID
	Name      string
	CreatedAt time.Time
}

// CreateTenant inserts t, with its property count (0), so that its first
// creations are not counted from its list while they are under way. The
// count is written as every later change of it is, by a lightweight
// transaction: a plain write carries the client's clock and Paxos writes
// the coordinator's, so a client clock ahead of the cluster's would have
// hidden the first changes behind the seed.
func (st *Store) CreateTenant(ctx context.Context, t Tenant) error {
	if _, err := st.s.Query(`INSERT INTO tenant_property_counts (tenant_id, properties, changes, recounted_at) VALUES (?, 0, 1, ?) IF NOT EXISTS`,
		t.ID, t.CreatedAt).WithContext(ctx).MapScanCAS(map[string]any{}); err != nil {
		return fmt.Errorf("insert tenant's property count: %w", err)
	}
	if err := st.s.Query(`INSERT INTO tenants (tenant_id, name, created_at) VALUES (?, ?, ?)`, t.ID, t.Name, t.CreatedAt).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("insert tenant: %w", err)
	}
	return nil
}

// Tenant reads a tenant.
func (st *Store) Tenant(ctx context.Context, id gocql.UUID) (Tenant, error) {
	t := Tenant{ID: id}
	err := st.s.Query(`SELECT name, created_at FROM tenants WHERE tenant_id = ?`, id).WithContext(ctx).Scan(&t.Name, &t.CreatedAt)
	if err != nil {
		return Tenant{}, fmt.Errorf("read tenant: %w", notFound(err))
	}
	return t, nil
}

// RenameTenant sets a tenant's name.
func (st *Store) RenameTenant(ctx context.Context, id gocql.UUID, name string) error {
	if err := st.s.Query(`UPDATE tenants SET name = ? WHERE tenant_id = ?`, name, id).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("rename tenant: %w", err)
	}
	return nil
}

// DeleteTenant removes a tenant row (used to undo a failed sign-up).
func (st *Store) DeleteTenant(ctx context.Context, id gocql.UUID) error {
	if err := st.s.Query(`DELETE FROM tenants WHERE tenant_id = ?`, id).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("delete tenant: %w", err)
	}
	return nil
}
