package collection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
)

type fakeSource map[string]*configclient.Property

func (f fakeSource) ByTrackingID(_ context.Context, tid string) (*configclient.Property, error) {
	if tid == "AT-DDDDDDDDDD" {
		return nil, fmt.Errorf("fetch: %w", configclient.ErrUnavailable)
	}
	if p, ok := f[tid]; ok {
		return p, nil
	}
	return nil, configclient.ErrNotFound
}

func TestPropertiesFromConfigClient(t *testing.T) {
	sum := sha256.Sum256([]byte("the-secret"))
	r := rules.Defaults()
	r.Exclusions.IP = []string{"10.0.0.0/8"}
	doc := &configclient.Property{
		PropertyID: "p1", TenantID: "t1", TrackingID: tidShop, Currency: "EUR", Cookieless: true, ProcessingShards: 4,
		APISecretSHA256: []string{hex.EncodeToString(sum[:])},
		Rules:           configclient.RuleVersion{Version: 3, Hostnames: []string{"shop.example"}, Rules: r},
	}
	if err := doc.Prepare(); err != nil {
		t.Fatal(err)
	}
	src := fakeSource{tidShop: doc}
	props := Properties(src)
	ctx := context.Background()

	p, err := props.ByTrackingID(ctx, tidShop)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(p.ID, p.TenantID, p.TrackingID, p.Currency, p.Cookieless, p.Shards)
	if want := fmt.Sprint("p1", "t1", tidShop, "EUR", true, 4); got != want {
		t.Errorf("property = %s, want %s", got, want)
	}
	if p.Rules == nil || p.Rules.Version() != 3 {
		t.Fatalf("rules not compiled: %+v", p.Rules)
	}
	if id, ok := p.Rules.MatchIP(netip.MustParseAddr("10.1.2.3")); !ok || id != "10.0.0.0/8" {
		t.Errorf("MatchIP = %q, %v", id, ok)
	}
	if !p.VerifySecret("the-secret") || p.VerifySecret("other") {
		t.Error("VerifySecret does not check the secret hashes")
	}
	if again, _ := props.ByTrackingID(ctx, tidShop); again != p {
		t.Error("the same document was converted twice")
	}
	src[tidShop] = &configclient.Property{PropertyID: "p1", TrackingID: tidShop, ProcessingShards: 8}
	if changed, _ := props.ByTrackingID(ctx, tidShop); changed.Shards != 8 {
		t.Error("a changed document was not converted again")
	}

	if _, err := props.ByTrackingID(ctx, tidUnknown); !errors.Is(err, collect.ErrUnknownTrackingID) {
		t.Errorf("unknown tracking ID: err = %v", err)
	}
	if _, err := props.ByTrackingID(ctx, "AT-DDDDDDDDDD"); err == nil || errors.Is(err, collect.ErrUnknownTrackingID) {
		t.Errorf("unavailable config-svc: err = %v, want an error that is not unknown", err)
	}
}
