package geoip_test

import (
	"net/netip"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/geoip"
	"github.com/acme/analytics/collection-svc/internal/geoip/geoiptest"
)

func TestCountry(t *testing.T) {
	db, err := geoip.Open(geoiptest.Write(t, map[string]string{
		"203.0.113.0/24": "DE",
		"2001:db8::/32":  "FR",
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		ip   string
		want string
	}{
		{"203.0.113.7", "DE"},
		{"::ffff:203.0.113.7", "DE"},
		{"2001:db8::1", "FR"},
		{"198.51.100.1", ""},
	}
	for _, tt := range tests {
		if got := db.Country(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Country(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
	var none *geoip.DB
	if got := none.Country(netip.MustParseAddr("203.0.113.7")); got != "" {
		t.Errorf("nil DB Country = %q", got)
	}
}

func TestRealDatabaseIfPresent(t *testing.T) {
	const path = "../../.geoip/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"
	db, err := geoip.Open(path)
	if err != nil {
		t.Skip("no production database here (make geoip installs it)")
	}
	defer db.Close()
	if got := db.Country(netip.MustParseAddr("8.8.8.8")); got != "US" {
		t.Errorf("Country(8.8.8.8) = %q, want US", got)
	}
}
