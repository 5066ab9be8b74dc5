// Package geoip maps client IP addresses to countries with a MaxMind-format
// database. Production and the local stack use the CC0 database of the npm
// package @ip-location-db/geo-whois-asn-country-mmdb (`make geoip`); a
// MaxMind GeoLite2/GeoIP2 Country database works too.
package geoip

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB looks up countries. The zero value and a nil *DB know no country.
// It is safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// record covers both layouts: ip-location-db's flat country_code and
// MaxMind's country.iso_code.
type record struct {
	CountryCode string `maxminddb:"country_code"`
	Country     struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// Open opens the database at path (memory-mapped).
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open geoip database %s: %w", path, err)
	}
	return &DB{r: r}, nil
}

// Country returns the ISO 3166-1 alpha-2 code of addr's country, or "" when
// unknown.
func (db *DB) Country(addr netip.Addr) string {
	if db == nil || db.r == nil || !addr.IsValid() {
		return ""
	}
	var rec record
	if err := db.r.Lookup(addr.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	if rec.CountryCode != "" {
		return rec.CountryCode
	}
	return rec.Country.ISOCode
}

// Close releases the database.
func (db *DB) Close() error {
	if db == nil || db.r == nil {
		return nil
	}
	return db.r.Close()
}
