package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// RestoreProperty puts back what a write changed only while the property
// holds that write, never over a later change.
func TestRestorePropertyLeavesALaterChange(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	before := Property{ID: gocql.MustRandomUUID(), TenantID: gocql.MustRandomUUID(), TrackingID: "AT-RESTORE001", Name: "Shop",
		Hostnames: []string{"shop.example"}, TimeZone: "UTC", Currency: "EUR", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateProperty(ctx, before, configclient.RuleVersion{Version: 1, EffectiveAt: now, Rules: rules.Defaults(), Hostnames: before.Hostnames}); err != nil {
		t.Fatal(err)
	}
	write := func(name string, at time.Time) Property {
		p := before
		p.Name, p.Hostnames, p.UpdatedAt = name, []string{name + ".example"}, at
		if err := st.UpdateProperty(ctx, p, SetName, SetHostnames); err != nil {
			t.Fatal(err)
		}
		return p
	}
	name := func() string {
		p, err := st.Property(ctx, before.ID)
		if err != nil {
			t.Fatal(err)
		}
		return p.Name + " " + strings.Join(p.Hostnames, ",")
	}

	first := write("first", now.Add(time.Second))
	later := write("later", now.Add(2*time.Second))
	if ok, err := st.RestoreProperty(ctx, before, first.UpdatedAt, SetName, SetHostnames); err != nil || ok {
		t.Fatalf("restore under a later change = %v, %v; want false", ok, err)
	}
	if got := name(); got != "later later.example" {
		t.Fatalf("after a refused restore: %q, want the later change", got)
	}
	if ok, err := st.RestoreProperty(ctx, before, later.UpdatedAt, SetName, SetHostnames); err != nil || !ok {
		t.Fatalf("restore of the last write = %v, %v; want true", ok, err)
	}
	if got := name(); got != "Shop shop.example" {
		t.Fatalf("after the restore: %q, want the settings before", got)
	}
}
