package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// newStore gives a test a Store on its own keyspace of the embedded CQL
// server, reached through gocql.
func newStore(t *testing.T) *Store {
	t.Helper()
	cfg := migratetest.Keyspace(t)
	s, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return New(s)
}

// twoInstances returns two stores on one fresh keyspace, each with its own
// session: two config-svc instances.
func twoInstances(t *testing.T) []*Store {
	t.Helper()
	cfg := migratetest.Keyspace(t)
	var stores []*Store
	for range 2 {
		s, err := cassandra.Connect(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores = append(stores, New(s))
	}
	return stores
}

func TestFeedIsGapFreeUnderConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	stores := twoInstances(t)
	if h, err := stores[0].Head(ctx); err != nil || h != 0 {
		t.Fatalf("empty feed head = %d, %v", h, err)
	}
	const perStore = 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*perStore)
	for _, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perStore {
				if _, err := st.AppendChange(ctx, configclient.Change{Kind: configclient.ChangeRules, PropertyID: gocql.MustRandomUUID().String(), At: time.Now()}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head, err := stores[1].Head(ctx)
	if err != nil || head != 2*perStore {
		t.Fatalf("head = %d, %v; want %d", head, err, 2*perStore)
	}
	changes, err := stores[0].ChangesSince(ctx, 0, head, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changes {
		if c.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d: the feed has a gap or a duplicate", i, c.Seq)
		}
	}
	if len(changes) != 2*perStore {
		t.Fatalf("read %d changes, want %d", len(changes), 2*perStore)
	}
	later, err := stores[0].ChangesSince(ctx, 25, head, 3)
	if err != nil || len(later) != 3 || later[0].Seq != 26 {
		t.Fatalf("ChangesSince(25, limit 3) = %+v, %v", later, err)
	}
}

func TestFeedAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	// Start just before a bucket boundary, as if 998 changes had been made.
	if err := st.s.Query(`INSERT INTO config_changes (bucket, seq, kind, at) VALUES (0, 998, 'rules', ?)`, time.Now()).Exec(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := st.AppendChange(ctx, configclient.Change{Kind: configclient.ChangeProperty, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := New(st.s) // no cached head: must find it across buckets
	head, err := fresh.Head(ctx)
	if err != nil || head != 1002 {
		t.Fatalf("head = %d, %v; want 1002", head, err)
	}
	changes, err := fresh.ChangesSince(ctx, 998, head, 100)
	if err != nil || len(changes) != 4 || changes[0].Seq != 999 || changes[3].Seq != 1002 {
		t.Fatalf("changes across the bucket boundary = %+v, %v", changes, err)
	}
	// Positions 1 to 997 never existed (as if expired): gone.
	if _, err := fresh.ChangesSince(ctx, 10, head, 100); !errors.Is(err, ErrFeedGone) {
		t.Fatalf("ChangesSince(an expired position) = %v, want ErrFeedGone", err)
	}
}

func TestRefreshTokenWorksOnce(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	tok := RefreshToken{Hash: "h1", TenantID: gocql.MustRandomUUID(), UserID: gocql.MustRandomUUID(), IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.SaveRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.ConsumeRefreshToken(ctx, "h1")
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrNotFound):
			t.Fatal(err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent uses of one refresh token succeeded, want exactly 1", ok)
	}
	// Used, it is known as used (with its user, whose tokens the caller
	// revokes) until it would have expired.
	got, err := st.ConsumeRefreshToken(ctx, "h1")
	if !errors.Is(err, ErrRefreshTokenReused) || got.UserID != tok.UserID || got.TenantID != tok.TenantID {
		t.Fatalf("ConsumeRefreshToken of a used token = %+v, %v; want its user and ErrRefreshTokenReused", got, err)
	}
	if _, err := st.ConsumeRefreshToken(ctx, "never-issued"); err == nil || errors.Is(err, ErrRefreshTokenReused) {
		t.Fatalf("ConsumeRefreshToken of an unknown token = %v; want ErrNotFound alone", err)
	}
}

// A refresh token keeps the fingerprint of the password it was issued
// under; one stored before migration 10 (no password_sha256) has none.
func TestRefreshTokenKeepsItsPassword(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	now := time.Now()
	tok := RefreshToken{Hash: "h1", TenantID: gocql.MustRandomUUID(), UserID: gocql.MustRandomUUID(), PasswordSHA256: "p1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.SaveRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ConsumeRefreshToken(ctx, "h1"); err != nil || got.PasswordSHA256 != "p1" {
		t.Fatalf("ConsumeRefreshToken = %+v, %v; want PasswordSHA256 p1", got, err)
	}
	err := st.s.Query(`INSERT INTO refresh_tokens (token_hash, tenant_id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		"h2", tok.TenantID, tok.UserID, now, now.Add(time.Hour)).Exec()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.ConsumeRefreshToken(ctx, "h2"); err != nil || got.PasswordSHA256 != "" {
		t.Fatalf("ConsumeRefreshToken of a token stored without a fingerprint = %+v, %v; want PasswordSHA256 empty", got, err)
	}
}

func TestRuleVersionNumbersAreClaimedOnce(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	pid := gocql.MustRandomUUID()
	v := configclient.RuleVersion{Version: 1, EffectiveAt: time.Now().UTC().Truncate(time.Millisecond), Rules: rules.Defaults(), Hostnames: []string{"example.com"}}
	for i, want := range []bool{true, false} {
		applied, err := st.InsertRuleVersion(ctx, pid, v)
		if err != nil || applied != want {
			t.Fatalf("insert %d: applied=%v err=%v, want %v", i, applied, err, want)
		}
	}
	got, err := st.CurrentRules(ctx, pid)
	if err != nil || got.Version != 1 || !got.EffectiveAt.Equal(v.EffectiveAt) || len(got.Hostnames) != 1 || !got.Rules.BotFiltering {
		t.Fatalf("CurrentRules = %+v, %v", got, err)
	}
}

// Two changes of different settings made from the same read of a property
// (two admins' PATCH requests at once) both stay: each writes only its own.
func TestConcurrentSettingChangesBothStay(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := Property{ID: gocql.MustRandomUUID(), TenantID: gocql.MustRandomUUID(), TrackingID: "AT-PATCHRACE1", Name: "Shop",
		Hostnames: []string{"shop.example"}, TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	first := configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults(), Hostnames: p.Hostnames}
	if err := st.CreateProperty(ctx, p, first); err != nil {
		t.Fatal(err)
	}
	a, b := p, p // both read before either writes
	a.Name = "Shop (EU)"
	b.Currency = "GBP" // (hostnames are read from the rule version)
	if err := st.UpdateProperty(ctx, a, SetName); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateProperty(ctx, b, SetCurrency); err != nil {
		t.Fatal(err)
	}
	got, err := st.Property(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != a.Name || got.Currency != b.Currency {
		t.Errorf("after both changes: name %q, currency %q; want %q and %q", got.Name, got.Currency, a.Name, b.Currency)
	}
	if err := st.UpdateProperty(ctx, p, "tracking_id"); err == nil {
		t.Error("UpdateProperty wrote a column that is not a setting")
	}
}

// Of two deletions of one property (two requests that both read it before
// either wrote), only the first deletes it; the second is told it is gone,
// so that only one gives the tenant's place back.
func TestPropertyIsDeletedOnce(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := Property{ID: gocql.MustRandomUUID(), TenantID: gocql.MustRandomUUID(), TrackingID: "AT-DELETE0001", Name: "Shop",
		Hostnames: []string{}, TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateProperty(ctx, p, configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults()}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteProperty(ctx, p); err != nil {
		t.Fatalf("first deletion: %v", err)
	}
	if err := st.DeleteProperty(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second deletion = %v, want ErrNotFound", err)
	}
	if _, err := st.Property(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted property read = %v, want ErrNotFound", err)
	}
}

// The list entry of a property being created stays only while the
// creation can be under way, unless the creation completes: one abandoned
// by an instance that died is not counted for ever.
func TestPendingListEntryExpiresUnlessCreated(t *testing.T) {
	st := newStore(t)
	st.pendingTTL = time.Second
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	tenantID := gocql.MustRandomUUID()
	abandoned := gocql.MustRandomUUID()
	p := Property{ID: gocql.MustRandomUUID(), TenantID: tenantID, TrackingID: "AT-PENDING001", Name: "Shop",
		Hostnames: []string{}, TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	for _, id := range []gocql.UUID{abandoned, p.ID} {
		if err := st.ListPendingProperty(ctx, tenantID, id); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.listedProperties(ctx, tenantID); err != nil || n != 2 {
		t.Fatalf("listed while pending = %d, %v; want 2", n, err)
	}
	if ps, _, err := st.Properties(ctx, tenantID, gocql.UUID{}, 10); err != nil || len(ps) != 0 {
		t.Fatalf("properties while pending = %v, %v; want none", ps, err)
	}
	if err := st.CreateProperty(ctx, p, configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults()}); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, "the created property listed alone after the pending TTL of 1 s", func() error {
		n, err := st.listedProperties(ctx, tenantID)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			return fmt.Errorf("%d entries listed", n)
		}
		return nil
	})
	ps, _, err := st.Properties(ctx, tenantID, gocql.UUID{}, 10)
	if err != nil || len(ps) != 1 || ps[0].ID != p.ID {
		t.Fatalf("properties = %v, %v; want the created one", ps, err)
	}
}
