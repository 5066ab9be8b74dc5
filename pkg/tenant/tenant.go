// Package tenant carries the verified identity of the caller (tenant, user,
// role) through a request's context.
//
// The identity is established once, at the edge: the gateway verifies the JWT
// and forwards the claims to upstreams in signed headers (see FromRequest and
// Sign). Nothing below the edge reads a tenant from a request body or from an
// unsigned client header.
package tenant

import (
	"context"
	"errors"
)

// ErrNoTenant is returned by Extract when the context carries no identity.
var ErrNoTenant = errors.New("no tenant in context")

// Role is what a user may do within their tenant.
type Role string

const (
	// RoleAdmin manages properties, rules, users and API secrets.
	RoleAdmin Role = "admin"
	// RoleViewer reads reports.
	RoleViewer Role = "viewer"
	// RoleService is another service of the product calling an internal
	// endpoint directly (not through the gateway); see System.
	RoleService Role = "service"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleViewer || r == RoleService }

// SystemTenant is the tenant ID of service-to-service calls.
const SystemTenant = "system"

// System returns the identity a service signs its internal calls with.
func System(service string) Identity {
	return Identity{TenantID: SystemTenant, UserID: service, Role: RoleService}
}

// Identity is the verified caller.
type Identity struct {
	TenantID string
	UserID   string
	Role     Role
}

type ctxKey struct{}

// Inject returns a copy of ctx carrying id.
func Inject(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Extract returns the identity carried by ctx, or ErrNoTenant when there is
// none or its tenant ID is empty.
func Extract(ctx context.Context) (Identity, error) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	if !ok || id.TenantID == "" {
		return Identity{}, ErrNoTenant
	}
	return id, nil
}

// ID returns the tenant ID carried by ctx, or ErrNoTenant.
func ID(ctx context.Context) (string, error) {
	id, err := Extract(ctx)
	return id.TenantID, err
}
