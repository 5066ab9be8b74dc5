package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"
)

// ErrPropertyLimit is returned by ReserveProperty when a tenant already has
// as many properties as it may.
var ErrPropertyLimit = errors.New("tenant has the most properties allowed")

// maxCountAttempts bounds the compare-and-set retries of one change of a
// tenant's property count under contention.
const maxCountAttempts = 20

// ReserveProperty counts a property about to be created against its
// tenant's limit: it returns ErrPropertyLimit, having written nothing,
// when the tenant already has limit properties. A creation that fails
// afterwards gives its place back with ReleaseProperty, and so does a
// deletion. (A failure between the two leaves the count one high, which
// only ever refuses early, never lets a tenant past the limit.)
func (st *Store) ReserveProperty(ctx context.Context, tenantID gocql.UUID, limit int) error {
	n, _, err := st.propertyCount(ctx, tenantID)
	if err != nil {
		return err
	}
	for range maxCountAttempts {
		if n >= limit {
			return fmt.Errorf("tenant %s has %d properties: %w", tenantID, n, ErrPropertyLimit)
		}
		applied, cur, err := st.setPropertyCount(ctx, tenantID, n, n+1)
		if err != nil || applied {
			return err
		}
		n = cur
	}
	return errors.New("reserve a property: too much contention on the tenant's property count")
}

// ReleaseProperty counts one property of a tenant less (never below zero),
// once the property is gone from the tenant's list (deleted, or never
// written).
func (st *Store) ReleaseProperty(ctx context.Context, tenantID gocql.UUID) error {
	n, counted, err := st.propertyCount(ctx, tenantID)
	if err != nil || counted {
		return err // a count just taken from the list is without the property already
	}
	for range maxCountAttempts {
		if n <= 0 {
			return nil
		}
		applied, cur, err := st.setPropertyCount(ctx, tenantID, n, n-1)
		if err != nil || applied {
			return err
		}
		n = cur
	}
	return errors.New("release a property: too much contention on the tenant's property count")
}

// propertyCount reads a tenant's property count. A tenant without one (made
// before the count was kept) is counted from properties_by_tenant, once:
// counted says the count was taken from the list just now.
func (st *Store) propertyCount(ctx context.Context, tenantID gocql.UUID) (n int, counted bool, err error) {
	err = st.s.Query(`SELECT properties FROM tenant_property_counts WHERE tenant_id = ?`, tenantID).WithContext(ctx).Scan(&n)
	if err == nil {
		return n, false, nil
	}
	if !errors.Is(err, gocql.ErrNotFound) {
		return 0, false, fmt.Errorf("read property count: %w", err)
	}
	var listed int64
	if err := st.s.Query(`SELECT COUNT(*) FROM properties_by_tenant WHERE tenant_id = ?`, tenantID).WithContext(ctx).Scan(&listed); err != nil {
		return 0, false, fmt.Errorf("count the tenant's properties: %w", err)
	}
	cur := map[string]any{}
	applied, err := st.s.Query(`INSERT INTO tenant_property_counts (tenant_id, properties) VALUES (?, ?) IF NOT EXISTS`, tenantID, int(listed)).
		WithContext(ctx).MapScanCAS(cur)
	if err != nil {
		return 0, false, fmt.Errorf("start property count: %w", err)
	}
	if applied {
		return int(listed), true, nil
	}
	n, _ = cur["properties"].(int) // a concurrent request started it
	return n, false, nil
}

// setPropertyCount changes a tenant's count from was to n; when another
// request changed it first, applied is false and cur is its value now.
func (st *Store) setPropertyCount(ctx context.Context, tenantID gocql.UUID, was, n int) (applied bool, cur int, err error) {
	row := map[string]any{}
	applied, err = st.s.Query(`UPDATE tenant_property_counts SET properties = ? WHERE tenant_id = ? IF properties = ?`, n, tenantID, was).
		WithContext(ctx).MapScanCAS(row)
	if err != nil {
		return false, 0, fmt.Errorf("change property count: %w", err)
	}
	cur, _ = row["properties"].(int)
	return applied, cur, nil
}
