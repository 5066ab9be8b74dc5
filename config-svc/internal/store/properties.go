package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"
)

// Property is a site or app of a tenant.
type Property struct {
	ID               gocql.UUID
	TenantID         gocql.UUID
	TrackingID       string
	Name             string
	Hostnames        []string
	TimeZone         string
	Currency         string
	Cookieless       bool
	ProcessingShards int
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

const propertyColumns = `tenant_id, tracking_id, name, hostnames, time_zone, currency, cookieless, processing_shards, created_at, updated_at, deleted_at`

func scanProperty(id gocql.UUID, scan func(...any) error) (Property, error) {
	p := Property{ID: id}
	var deleted time.Time
	if err := scan(&p.TenantID, &p.TrackingID, &p.Name, &p.Hostnames, &p.TimeZone, &p.Currency, &p.Cookieless, &p.ProcessingShards, &p.CreatedAt, &p.UpdatedAt, &deleted); err != nil {
		return Property{}, err
	}
	if !deleted.IsZero() {
		return Property{}, ErrNotFound
	}
	if p.ProcessingShards < 1 {
		p.ProcessingShards = 1
	}
	return p, nil
}

// ClaimTrackingID records tid as the tracking ID of a property with a
// lightweight transaction; false means another property already has it.
func (st *Store) ClaimTrackingID(ctx context.Context, tid string, propertyID, tenantID gocql.UUID) (bool, error) {
	applied, err := st.s.Query(`INSERT INTO tracking_ids (tracking_id, property_id, tenant_id, created_at) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
		tid, propertyID, tenantID, st.now()).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return false, fmt.Errorf("claim tracking id: %w", err)
	}
	return applied, nil
}

// CreateProperty writes a property whose tracking ID is already claimed,
// and its first rule version, and lists it for good in its tenant's list
// (where ListPendingProperty put it for a while). The rule version goes
// first: until the property's rows are written nothing reads it, so a
// failure between the two leaves no property without rules (listed, with a
// snippet, whose hits and rules all fail), only an unreachable rule
// version.
func (st *Store) CreateProperty(ctx context.Context, p Property, first configclient.RuleVersion) error {
	applied, err := st.InsertRuleVersion(ctx, p.ID, first)
	if err != nil {
		return err
	}
	if !applied {
		return fmt.Errorf("insert first rule version of %s: version %d exists", p.ID, first.Version)
	}
	b := st.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(`INSERT INTO properties (property_id, tenant_id, tracking_id, name, hostnames, time_zone, currency, cookieless, processing_shards, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.TenantID, p.TrackingID, p.Name, p.Hostnames, p.TimeZone, p.Currency, p.Cookieless, p.ProcessingShards, p.CreatedAt, p.UpdatedAt)
	// Without a TTL: it replaces the pending entry's.
	b.Query(`INSERT INTO properties_by_tenant (tenant_id, property_id) VALUES (?, ?)`, p.TenantID, p.ID)
	if err := st.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("insert property: %w", err)
	}
	return nil
}

// Property reads a property that is not deleted. Its Hostnames are those
// of its newest rule version, where the pipeline takes them from
// (configclient.RuleVersion.Hostnames), not those of its row: a change of
// hostnames is made by making a rule version, so what the API shows and
// what collection checks hosts with are one value and cannot disagree,
// whichever writes of a change failed or raced. (The row's hostnames
// column is written, but read only for a property without a version,
// which CreateProperty never leaves: it makes the version first.)
func (st *Store) Property(ctx context.Context, id gocql.UUID) (Property, error) {
	p, err := st.PropertyRow(ctx, id)
	if err != nil {
		return Property{}, err
	}
	var hosts []string
	err = st.s.Query(`SELECT hostnames FROM rule_versions WHERE property_id = ? LIMIT 1`, id).WithContext(ctx).Scan(&hosts)
	switch {
	case err == nil:
		p.Hostnames = hosts
		if p.Hostnames == nil {
			p.Hostnames = []string{}
		}
	case !errors.Is(err, gocql.ErrNotFound):
		return Property{}, fmt.Errorf("read the hostnames of property %s: %w", id, err)
	}
	return p, nil
}

// PropertyRow reads a property that is not deleted without its newest
// rule version: its Hostnames are the row's, which are not the property's
// (Property). For a caller that reads the rule version itself
// (configclient's document) or needs no hostnames.
func (st *Store) PropertyRow(ctx context.Context, id gocql.UUID) (Property, error) {
	q := st.s.Query(`SELECT `+propertyColumns+` FROM properties WHERE property_id = ?`, id).WithContext(ctx)
	p, err := scanProperty(id, q.Scan)
	if err != nil {
		return Property{}, fmt.Errorf("read property %s: %w", id, notFound(err))
	}
	return p, nil
}

// PropertyByTrackingID reads the row of the property that holds a
// tracking ID (PropertyRow: its Hostnames are the row's).
func (st *Store) PropertyByTrackingID(ctx context.Context, tid string) (Property, error) {
	var id gocql.UUID
	if err := st.s.Query(`SELECT property_id FROM tracking_ids WHERE tracking_id = ?`, tid).WithContext(ctx).Scan(&id); err != nil {
		return Property{}, fmt.Errorf("look up tracking id: %w", notFound(err))
	}
	p, err := st.PropertyRow(ctx, id)
	if err != nil {
		return Property{}, err
	}
	if p.TrackingID != tid {
		// A claim whose property was never written (a failed creation).
		return Property{}, fmt.Errorf("tracking id %s: %w", tid, ErrNotFound)
	}
	return p, nil
}

// AllProperties pages through every property that is not deleted, of
// every tenant, in the order of their partition tokens (the order in which
// a scan of the table finds them), for operators' work over all of them
// (reprocessing every property after a change to processing's logic):
// the IDs after position after (nil: from the first), up to limit rows of
// the table read. next is the position of the next page, nil after the
// last. A page may hold fewer than limit IDs (deleted properties are
// skipped); only a nil next means the end. A property created while the
// pages are read is in them or not, depending on where its token falls.
func (st *Store) AllProperties(ctx context.Context, after *int64, limit int) (ids []gocql.UUID, next *int64, err error) {
	const columns = `SELECT property_id, token(property_id), deleted_at FROM properties`
	cql, args := columns+` LIMIT ?`, []any{limit}
	if after != nil {
		cql, args = columns+` WHERE token(property_id) > ? LIMIT ?`, []any{*after, limit}
	}
	iter := st.s.Query(cql, args...).WithContext(ctx).Iter()
	var id gocql.UUID
	var token int64
	var deleted time.Time
	rows := 0
	for iter.Scan(&id, &token, &deleted) {
		rows++
		if deleted.IsZero() {
			ids = append(ids, id)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, nil, fmt.Errorf("list every property: %w", err)
	}
	if rows == limit {
		next = &token
	}
	return ids, next, nil
}

// propertyReads bounds the properties of one page read at once: a page
// of 500 takes about 32 round trips instead of 500, without one request
// taking more than a few of gocql's streams.
const propertyReads = 16

// Properties returns up to limit of a tenant's properties in the order of
// their IDs (as Cassandra orders uuid: for the random IDs we make, the
// order of their text form), those after the ID after (the zero UUID: from
// the first). next is the ID to pass as after for the next page, zero when
// none follows. A page may hold fewer than limit properties (an entry of
// the tenant's list whose property is deleted, or not yet written by a
// creation under way, is skipped); only a zero next means the end.
func (st *Store) Properties(ctx context.Context, tenantID, after gocql.UUID, limit int) (ps []Property, next gocql.UUID, err error) {
	iter := st.pageQuery(ctx, `SELECT property_id FROM properties_by_tenant WHERE tenant_id = ?`, `property_id`, tenantID, after, limit).Iter()
	var ids []gocql.UUID
	var id gocql.UUID
	for iter.Scan(&id) {
		ids = append(ids, id)
	}
	if err := iter.Close(); err != nil {
		return nil, gocql.UUID{}, fmt.Errorf("list properties: %w", err)
	}
	ids, next = trimPage(ids, limit, func(id gocql.UUID) gocql.UUID { return id })
	read := make([]Property, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(propertyReads)
	for i, id := range ids {
		g.Go(func() error {
			p, err := st.Property(gctx, id)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if p.TenantID == tenantID {
				read[i] = p
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, gocql.UUID{}, err
	}
	ps = make([]Property, 0, len(read))
	for _, p := range read {
		if p.ID != (gocql.UUID{}) {
			ps = append(ps, p)
		}
	}
	return ps, next, nil
}

// Merchant-editable settings of a property, for UpdateProperty.
const (
	SetName       = "name"
	SetHostnames  = "hostnames"
	SetTimeZone   = "time_zone"
	SetCurrency   = "currency"
	SetCookieless = "cookieless"
)

// UpdateProperty writes the given merchant-editable settings of p (Set*
// columns) and its updated_at, and no other: two concurrent changes of
// different settings (a name here, hostnames there) both stay.
func (st *Store) UpdateProperty(ctx context.Context, p Property, settings ...string) error {
	values := map[string]any{SetName: p.Name, SetHostnames: p.Hostnames, SetTimeZone: p.TimeZone, SetCurrency: p.Currency, SetCookieless: p.Cookieless}
	var set []string
	var args []any
	for _, col := range settings {
		v, ok := values[col]
		if !ok {
			return fmt.Errorf("update property: %q is not a setting", col)
		}
		set, args = append(set, col+" = ?"), append(args, v)
	}
	set, args = append(set, "updated_at = ?"), append(args, p.UpdatedAt)
	err := st.s.Query(`UPDATE properties SET `+strings.Join(set, ", ")+` WHERE property_id = ?`, append(args, p.ID)...).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("update property: %w", err)
	}
	return nil
}

// SetProcessingShards sets a property's processing shard count.
func (st *Store) SetProcessingShards(ctx context.Context, id gocql.UUID, n int) error {
	err := st.s.Query(`UPDATE properties SET processing_shards = ?, updated_at = ? WHERE property_id = ?`, n, st.now(), id).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("set processing shards: %w", err)
	}
	return nil
}

// DeleteProperty marks a property deleted; the caller then gives its place
// back (ReleaseProperty) and takes it off its tenant's list
// (UnlistProperty). Its tracking ID stays claimed, so it is never reused.
// The mark is a lightweight transaction: of concurrent deletions of one
// property exactly one succeeds, and the others get ErrNotFound, as they
// would after it; only the one that succeeded gives the place back.
func (st *Store) DeleteProperty(ctx context.Context, p Property) error {
	now := st.now()
	applied, err := st.s.Query(`UPDATE properties SET deleted_at = ?, updated_at = ? WHERE property_id = ? IF deleted_at = null`, now, now, p.ID).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("delete property: %w", err)
	}
	if !applied {
		return fmt.Errorf("delete property %s: already deleted: %w", p.ID, ErrNotFound)
	}
	return nil
}

// Secret is a Measurement API secret of a property (its hash).
type Secret struct {
	PropertyID gocql.UUID
	ID         gocql.UUID
	Name       string
	Hash       string // hex SHA-256
	Hint       string // last characters
	CreatedAt  time.Time
	RevokedAt  time.Time // zero while valid
}

// CreateSecret stores a secret.
func (st *Store) CreateSecret(ctx context.Context, s Secret) error {
	err := st.s.Query(`INSERT INTO api_secrets (property_id, secret_id, name, secret_hash, hint, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		s.PropertyID, s.ID, s.Name, s.Hash, s.Hint, s.CreatedAt).WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("insert api secret: %w", err)
	}
	return nil
}

// DeleteSecret deletes a secret (a revoked one, past the time it is listed).
func (st *Store) DeleteSecret(ctx context.Context, propertyID, secretID gocql.UUID) error {
	if err := st.s.Query(`DELETE FROM api_secrets WHERE property_id = ? AND secret_id = ?`, propertyID, secretID).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("delete api secret: %w", err)
	}
	return nil
}

// Secrets lists a property's secrets, revoked ones included, oldest first.
func (st *Store) Secrets(ctx context.Context, propertyID gocql.UUID) ([]Secret, error) {
	iter := st.s.Query(`SELECT secret_id, name, secret_hash, hint, created_at, revoked_at FROM api_secrets WHERE property_id = ?`, propertyID).WithContext(ctx).Iter()
	var out []Secret
	s := Secret{PropertyID: propertyID}
	for iter.Scan(&s.ID, &s.Name, &s.Hash, &s.Hint, &s.CreatedAt, &s.RevokedAt) {
		out = append(out, s)
		s = Secret{PropertyID: propertyID}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("list api secrets: %w", err)
	}
	slices.SortFunc(out, func(a, b Secret) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// RevokeSecret marks a secret revoked and reports whether this call did;
// a secret revoked before keeps its revocation time (false, nil).
// ErrNotFound when it does not exist. The mark is a lightweight
// transaction, so of concurrent revocations exactly one reports true.
func (st *Store) RevokeSecret(ctx context.Context, propertyID, secretID gocql.UUID) (bool, error) {
	// IF revoked_at = null alone would hold for a row that does not exist,
	// and write one; created_at is set on every secret.
	prev := map[string]any{}
	applied, err := st.s.Query(`UPDATE api_secrets SET revoked_at = ? WHERE property_id = ? AND secret_id = ? IF revoked_at = null AND created_at != null`, st.now(), propertyID, secretID).
		WithContext(ctx).MapScanCAS(prev)
	if err != nil {
		return false, fmt.Errorf("revoke api secret: %w", err)
	}
	if applied {
		return true, nil
	}
	if created, _ := prev["created_at"].(time.Time); created.IsZero() {
		return false, fmt.Errorf("revoke api secret %s: %w", secretID, ErrNotFound)
	}
	return false, nil
}

// InsertRuleVersion claims version v.Version of a property's rules; false
// means that version already exists (a concurrent edit made it).
func (st *Store) InsertRuleVersion(ctx context.Context, propertyID gocql.UUID, v configclient.RuleVersion) (bool, error) {
	doc, err := json.Marshal(v.Rules)
	if err != nil {
		return false, fmt.Errorf("encode rules: %w", err)
	}
	hosts := v.Hostnames
	if hosts == nil {
		hosts = []string{}
	}
	applied, err := st.s.Query(`INSERT INTO rule_versions (property_id, version, effective_at, rules, hostnames, created_by) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
		propertyID, v.Version, v.EffectiveAt, string(doc), hosts, v.CreatedBy).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return false, fmt.Errorf("insert rule version %d: %w", v.Version, err)
	}
	return applied, nil
}

const ruleColumns = `version, effective_at, rules, hostnames, created_by`

func scanRuleVersion(scan func(...any) bool) (configclient.RuleVersion, bool, error) {
	var v configclient.RuleVersion
	var doc string
	if !scan(&v.Version, &v.EffectiveAt, &doc, &v.Hostnames, &v.CreatedBy) {
		return v, false, nil
	}
	// Stored documents were validated when saved; decoding over the
	// defaults keeps fields added since at their defaults.
	v.Rules = rules.Defaults()
	if err := json.Unmarshal([]byte(doc), &v.Rules); err != nil {
		return v, true, fmt.Errorf("decode rule version %d: %w", v.Version, err)
	}
	if v.Hostnames == nil {
		v.Hostnames = []string{}
	}
	v.EffectiveAt = v.EffectiveAt.UTC()
	return v, true, nil
}

// CurrentRules reads the newest rule version of a property.
func (st *Store) CurrentRules(ctx context.Context, propertyID gocql.UUID) (configclient.RuleVersion, error) {
	iter := st.s.Query(`SELECT `+ruleColumns+` FROM rule_versions WHERE property_id = ? LIMIT 1`, propertyID).WithContext(ctx).Iter()
	v, ok, err := scanRuleVersion(iter.Scan)
	if cerr := iter.Close(); cerr != nil {
		return v, fmt.Errorf("read current rules: %w", cerr)
	}
	if err != nil {
		return v, err
	}
	if !ok {
		return v, fmt.Errorf("read current rules of %s: %w", propertyID, ErrNotFound)
	}
	return v, nil
}

// RuleVersion reads one rule version.
func (st *Store) RuleVersion(ctx context.Context, propertyID gocql.UUID, version int) (configclient.RuleVersion, error) {
	iter := st.s.Query(`SELECT `+ruleColumns+` FROM rule_versions WHERE property_id = ? AND version = ?`, propertyID, version).WithContext(ctx).Iter()
	v, ok, err := scanRuleVersion(iter.Scan)
	if cerr := iter.Close(); cerr != nil {
		return v, fmt.Errorf("read rule version: %w", cerr)
	}
	if err != nil {
		return v, err
	}
	if !ok {
		return v, fmt.Errorf("read rule version %d of %s: %w", version, propertyID, ErrNotFound)
	}
	return v, nil
}

// RuleVersionsSince lists the rule versions of a property that a hit
// received at or after t can need, oldest first: the one in effect at t
// and every later one (all of them when every version took effect after
// t).
func (st *Store) RuleVersionsSince(ctx context.Context, propertyID gocql.UUID, t time.Time) ([]configclient.RuleVersion, error) {
	from, _, err := st.versionInEffect(ctx, propertyID, t, false)
	if err != nil {
		return nil, err
	}
	iter := st.s.Query(`SELECT `+ruleColumns+` FROM rule_versions WHERE property_id = ? AND version >= ? ORDER BY version ASC`, propertyID, from).
		WithContext(ctx).Iter()
	var out []configclient.RuleVersion
	for {
		v, ok, err := scanRuleVersion(iter.Scan)
		if err != nil {
			_ = iter.Close()
			return nil, err
		}
		if !ok {
			break
		}
		out = append(out, v)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("list rule versions: %w", err)
	}
	return out, nil
}

// VersionInfo is a rule version without its document.
type VersionInfo struct {
	Version     int
	EffectiveAt time.Time
	CreatedBy   string
}

// versionInEffect finds the rule version of a property in effect at t:
// the newest that took effect at or before t (effective times increase
// with the version number); 0 when every version took effect after t. It
// reads version numbers and times only, newest first or oldest first, and
// stops as soon as it knows: newest first suits a recent t, oldest first
// an old one. first is the version it read first (the newest, or the
// oldest kept); 0 when the property has none.
func (st *Store) versionInEffect(ctx context.Context, propertyID gocql.UUID, t time.Time, newestFirst bool) (inEffect, first int, err error) {
	q, pageSize := `SELECT version, effective_at FROM rule_versions WHERE property_id = ?`, 32
	if !newestFirst {
		q, pageSize = q+` ORDER BY version ASC`, 16
	}
	iter := st.s.Query(q, propertyID).WithContext(ctx).PageSize(pageSize).Iter()
	var v int
	var at time.Time
	for iter.Scan(&v, &at) {
		if first == 0 {
			first = v
		}
		if !at.After(t) {
			inEffect = v
			if newestFirst {
				break // the newest that took effect by t
			}
		} else if !newestFirst {
			break // every later version took effect after t too
		}
	}
	if err := iter.Close(); err != nil {
		return 0, 0, fmt.Errorf("read rule versions: %w", err)
	}
	return inEffect, first, nil
}

// RuleVersionAt reads the rule version in effect at t (versionInEffect,
// newest first, so a recent t costs a page of version numbers, not the
// history); current reports whether it is the newest. ErrNotFound when
// every version kept took effect after t.
func (st *Store) RuleVersionAt(ctx context.Context, propertyID gocql.UUID, t time.Time) (v configclient.RuleVersion, current bool, err error) {
	found, newest, err := st.versionInEffect(ctx, propertyID, t, true)
	if err != nil {
		return v, false, err
	}
	if found == 0 {
		return v, false, fmt.Errorf("rules of %s at %s: %w", propertyID, t.Format(time.RFC3339Nano), ErrNotFound)
	}
	v, err = st.RuleVersion(ctx, propertyID, found)
	return v, found == newest, err
}

// RuleVersionInfos lists up to limit rule versions of a property numbered
// below before (0: from the newest), newest first, without their
// documents.
func (st *Store) RuleVersionInfos(ctx context.Context, propertyID gocql.UUID, before, limit int) ([]VersionInfo, error) {
	q, args := `SELECT version, effective_at, created_by FROM rule_versions WHERE property_id = ?`, []any{propertyID}
	if before > 0 {
		q, args = q+` AND version < ?`, append(args, before)
	}
	iter := st.s.Query(q+` LIMIT ?`, append(args, limit)...).WithContext(ctx).Iter()
	var out []VersionInfo
	var v VersionInfo
	for iter.Scan(&v.Version, &v.EffectiveAt, &v.CreatedBy) {
		v.EffectiveAt = v.EffectiveAt.UTC()
		out = append(out, v)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("list rule versions: %w", err)
	}
	return out, nil
}

// RuleVersionInfo reads one rule version's number, time and author,
// without its document.
func (st *Store) RuleVersionInfo(ctx context.Context, propertyID gocql.UUID, version int) (VersionInfo, error) {
	v := VersionInfo{Version: version}
	err := st.s.Query(`SELECT effective_at, created_by FROM rule_versions WHERE property_id = ? AND version = ?`, propertyID, version).
		WithContext(ctx).Scan(&v.EffectiveAt, &v.CreatedBy)
	if err != nil {
		return VersionInfo{}, fmt.Errorf("read rule version %d of %s: %w", version, propertyID, notFound(err))
	}
	v.EffectiveAt = v.EffectiveAt.UTC()
	return v, nil
}

// PruneRuleVersions deletes the rule versions of a property that no hit
// received at or after cutoff can need: those older than the version in
// effect at cutoff (which stays, as do all later ones). It finds that
// version oldest first (versionInEffect), so it reads only what it deletes
// and two more rows. It returns how many versions it deleted (version
// numbers have no gaps).
func (st *Store) PruneRuleVersions(ctx context.Context, propertyID gocql.UUID, cutoff time.Time) (int, error) {
	inEffect, oldest, err := st.versionInEffect(ctx, propertyID, cutoff, false)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if inEffect <= oldest {
		return 0, nil
	}
	// One range tombstone, whatever the number of versions.
	if err := st.s.Query(`DELETE FROM rule_versions WHERE property_id = ? AND version < ?`, propertyID, inEffect).WithContext(ctx).Exec(); err != nil {
		return 0, fmt.Errorf("delete rule versions before %d: %w", inEffect, err)
	}
	return inEffect - oldest, nil
}
