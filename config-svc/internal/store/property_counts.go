package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// ErrPropertyLimit is returned by ReserveProperty when a tenant already has
// as many properties as it may.
var ErrPropertyLimit = errors.New("tenant has the most properties allowed")

// maxCountAttempts bounds the compare-and-set retries of one change of a
// tenant's property count under contention.
const maxCountAttempts = 20

// recountInterval bounds how often a tenant at its limit is counted from
// its list: the count of a tenant of 200,000 properties reads a few MB, and
// a script retrying a refused creation should not read them each time.
const recountInterval = time.Minute

// A tenant's place for a property is counted in tenant_property_counts
// while the property is in the tenant's list (properties_by_tenant), so
// that the list can correct the count: a creation lists its property
// (ListPendingProperty) before it takes a place (ReserveProperty), and a
// deletion or a failed creation gives the place back (ReleaseProperty)
// before it takes the property off the list (UnlistProperty). The list
// then holds every property that has a place, and a count taken from it is
// never below the places taken: at worst above, by creations under way,
// which only refuses early.

// ListPendingProperty puts a property about to be created in its tenant's
// list, before ReserveProperty takes its place. Lists skip it until
// CreateProperty writes the property (and lists it for good); should the
// creation be abandoned without UnlistProperty (the instance died), the
// entry expires after pendingTTL, far past any request.
func (st *Store) ListPendingProperty(ctx context.Context, tenantID, propertyID gocql.UUID) error {
	err := st.s.Query(`INSERT INTO properties_by_tenant (tenant_id, property_id) VALUES (?, ?) USING TTL ?`,
		tenantID, propertyID, int(st.pendingTTL/time.Second)).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("list the property being created: %w", err)
	}
	return nil
}

// UnlistProperty takes a property off its tenant's list: a deleted one, or
// one whose creation failed, once its place is given back.
func (st *Store) UnlistProperty(ctx context.Context, tenantID, propertyID gocql.UUID) error {
	if err := st.s.Query(`DELETE FROM properties_by_tenant WHERE tenant_id = ? AND property_id = ?`, tenantID, propertyID).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("take the property off its tenant's list: %w", err)
	}
	return nil
}

// ReserveProperty counts a property about to be created, already put in
// the tenant's list with ListPendingProperty, against the tenant's limit:
// it returns ErrPropertyLimit, having taken no place, when the tenant
// already has limit properties. When the count says so, it is first taken
// again from the list (at most once every recountInterval): a count left
// high (a place not given back, a deletion through an instance older than
// the count) would otherwise refuse the tenant for ever. A creation that
// fails afterwards gives its place back with ReleaseProperty, and so does a
// deletion.
func (st *Store) ReserveProperty(ctx context.Context, tenantID gocql.UUID, limit int) error {
	c, err := st.propertyCount(ctx, tenantID, 1)
	if err != nil {
		return err
	}
	for range maxCountAttempts {
		if c.n >= limit && st.now().Sub(c.recountedAt) >= recountInterval {
			listed, err := st.listedProperties(ctx, tenantID)
			if err != nil {
				return err
			}
			// Without this creation's own entry: its place is not taken.
			if _, c, err = st.setPropertyCount(ctx, tenantID, c, max(listed-1, 0), true); err != nil {
				return err
			}
			continue // with the count corrected, or changed meanwhile
		}
		if c.n >= limit {
			return fmt.Errorf("tenant %s has %d properties: %w", tenantID, c.n, ErrPropertyLimit)
		}
		var applied bool
		if applied, c, err = st.setPropertyCount(ctx, tenantID, c, c.n+1, false); err != nil || applied {
			return err
		}
	}
	return errors.New("reserve a property: too much contention on the tenant's property count")
}

// ReleaseProperty counts one property of a tenant less (never below zero):
// a deleted one, or one whose creation failed after its place was taken,
// while it is still in the tenant's list.
func (st *Store) ReleaseProperty(ctx context.Context, tenantID gocql.UUID) error {
	c, err := st.propertyCount(ctx, tenantID, 0)
	if err != nil {
		return err
	}
	for range maxCountAttempts {
		if c.n <= 0 {
			return nil
		}
		var applied bool
		if applied, c, err = st.setPropertyCount(ctx, tenantID, c, c.n-1, false); err != nil || applied {
			return err
		}
	}
	return errors.New("release a property: too much contention on the tenant's property count")
}

// propertyCount is a tenant's row of tenant_property_counts.
type propertyCount struct {
	n int
	// changes is incremented by every write, from 1; 0 stands for none
	// (a row written before migration 8).
	changes     int64
	recountedAt time.Time
}

// propertyCount reads a tenant's property count. A tenant without one (made
// before the count was kept) is counted from its list, less the pending
// entries of the caller (1 for a creation: its own).
func (st *Store) propertyCount(ctx context.Context, tenantID gocql.UUID, pending int) (propertyCount, error) {
	var c propertyCount
	err := st.s.Query(`SELECT properties, changes, recounted_at FROM tenant_property_counts WHERE tenant_id = ?`, tenantID).
		WithContext(ctx).Scan(&c.n, &c.changes, &c.recountedAt)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, gocql.ErrNotFound) {
		return c, fmt.Errorf("read property count: %w", err)
	}
	listed, err := st.listedProperties(ctx, tenantID)
	if err != nil {
		return c, err
	}
	c = propertyCount{n: max(listed-pending, 0), changes: 1, recountedAt: st.now()}
	applied, err := st.s.Query(`INSERT INTO tenant_property_counts (tenant_id, properties, changes, recounted_at) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
		tenantID, c.n, c.changes, c.recountedAt).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return c, fmt.Errorf("start property count: %w", err)
	}
	if !applied { // a concurrent request started it
		return st.propertyCount(ctx, tenantID, pending)
	}
	return c, nil
}

// listedProperties counts the entries of a tenant's list: one read of its
// partition.
func (st *Store) listedProperties(ctx context.Context, tenantID gocql.UUID) (int, error) {
	var n int64
	if err := st.s.Query(`SELECT COUNT(*) FROM properties_by_tenant WHERE tenant_id = ?`, tenantID).WithContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the tenant's properties: %w", err)
	}
	return int(n), nil
}

// setPropertyCount changes a tenant's count from was to n (recounted: n
// was taken from the list just now) if nothing changed it since was was
// read. It returns the count now: the one written, or, when another
// request changed it first (applied false), the one that request left.
func (st *Store) setPropertyCount(ctx context.Context, tenantID gocql.UUID, was propertyCount, n int, recounted bool) (applied bool, cur propertyCount, err error) {
	next := propertyCount{n: n, changes: was.changes + 1, recountedAt: was.recountedAt}
	set, args := `properties = ?, changes = ?`, []any{next.n, next.changes}
	if recounted {
		next.recountedAt = st.now()
		set, args = set+`, recounted_at = ?`, append(args, next.recountedAt)
	}
	cond, args := `properties = ? AND changes = ?`, append(args, tenantID, was.n, was.changes)
	if was.changes == 0 {
		cond, args = `properties = ? AND changes = null`, args[:len(args)-1]
	}
	applied, err = st.s.Query(`UPDATE tenant_property_counts SET `+set+` WHERE tenant_id = ? IF `+cond, args...).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return false, was, fmt.Errorf("change property count: %w", err)
	}
	if applied {
		return true, next, nil
	}
	cur, err = st.propertyCount(ctx, tenantID, 0)
	return false, cur, err
}
