package store

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// Property's hostnames are those of the newest rule version, as the
// pipeline's, whatever the row's column holds.
func TestPropertyHostnamesAreTheNewestVersions(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := Property{ID: gocql.MustRandomUUID(), TenantID: gocql.MustRandomUUID(), TrackingID: "AT-HOSTVER001", Name: "Shop",
		Hostnames: []string{"shop.example"}, TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateProperty(ctx, p, configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults(), Hostnames: p.Hostnames}); err != nil {
		t.Fatal(err)
	}
	hosts := func() string {
		t.Helper()
		got, err := st.Property(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got.Hostnames, ",")
	}
	row := p
	row.Hostnames, row.UpdatedAt = []string{"row.example"}, now.Add(time.Second)
	if err := st.UpdateProperty(ctx, row, SetHostnames); err != nil {
		t.Fatal(err)
	}
	if got, want := hosts(), "shop.example"; got != want {
		t.Fatalf("hostnames with the row changed alone = %q, want the version's %q", got, want)
	}
	v := configclient.RuleVersion{Version: 2, EffectiveAt: now.Add(time.Second), Rules: rules.Defaults(), Hostnames: []string{"new.example", "shop.example"}}
	if ok, err := st.InsertRuleVersion(ctx, p.ID, v); err != nil || !ok {
		t.Fatalf("insert version 2 = %v, %v", ok, err)
	}
	if got, want := hosts(), "new.example,shop.example"; got != want {
		t.Fatalf("hostnames after version 2 = %q, want %q", got, want)
	}
}

// AllProperties pages through every tenant's properties, each once, in
// pages of at most limit rows, without the deleted ones.
func TestAllPropertiesPages(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	want := map[gocql.UUID]bool{}
	var deleted Property
	for i := range 7 {
		p := Property{ID: gocql.MustRandomUUID(), TenantID: gocql.MustRandomUUID(), TrackingID: fmt.Sprintf("AT-ALLPROP%03d", i), Name: "Shop",
			TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateProperty(ctx, p, configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults()}); err != nil {
			t.Fatal(err)
		}
		want[p.ID] = true
		deleted = p
	}
	if err := st.DeleteProperty(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	delete(want, deleted.ID)
	for _, limit := range []int{1, 3, 6, 7, 100} {
		got := map[gocql.UUID]bool{}
		var after *int64
		for pages := 1; ; pages++ {
			ids, next, err := st.AllProperties(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(ids))
			}
			for _, id := range ids {
				if got[id] {
					t.Fatalf("limit %d: %s twice", limit, id)
				}
				got[id] = true
			}
			if next == nil {
				break
			}
			if pages > 10 {
				t.Fatalf("limit %d: no end after %d pages", limit, pages)
			}
			after = next
		}
		if !maps.Equal(got, want) {
			t.Errorf("limit %d: %d properties, want the %d not deleted", limit, len(got), len(want))
		}
	}
}
