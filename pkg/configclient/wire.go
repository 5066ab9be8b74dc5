package configclient

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

// Property is the document config-svc serves about one property to the
// pipeline (GET /internal/v1/properties/{id} and .../by-tracking-id/{tid}).
type Property struct {
	PropertyID string `json:"property_id"`
	TenantID   string `json:"tenant_id"`
	TrackingID string `json:"tracking_id"`
	Name       string `json:"name"`
	// Hostnames are the property's allowed hosts (hits for other hosts are
	// filtered as foreign) and its own hosts (their referrals never start a
	// session). They are also in Rules.Hostnames, the copy the rules were
	// versioned with.
	Hostnames []string `json:"hostnames"`
	TimeZone  string   `json:"time_zone"` // IANA name
	Currency  string   `json:"currency"`  // ISO 4217 code
	// Cookieless: collection gives the property's browser hits a derived
	// daily visitor ID, ignoring any client ID they carry.
	Cookieless bool `json:"cookieless"`
	// ProcessingShards is the number of processing shards of the property
	// (1 to 64): collection keys hits by (property, hit.ShardOf(client)).
	ProcessingShards int `json:"processing_shards"`
	// APISecretSHA256 are the hex SHA-256 hashes of the property's
	// Measurement API secrets that are not revoked; see VerifySecret.
	APISecretSHA256 []string `json:"api_secret_sha256"`
	// Rules is the version in effect now.
	Rules RuleVersion `json:"rules"`

	compiled *rules.Compiled
	location *time.Location
	derived  *atomic.Pointer[any] // see Derived; set by prepare
}

// Compiled returns the compiled current rules. It is set on documents
// returned by a Client; nil on a document decoded by other means (use
// Prepare).
func (p *Property) Compiled() *rules.Compiled { return p.compiled }

// Location returns the property's time zone (UTC when unknown). Set on
// documents returned by a Client.
func (p *Property) Location() *time.Location {
	if p.location == nil {
		return time.UTC
	}
	return p.location
}

// Derived returns derive(p), computed once per document: a service's own
// form of the document lives as long as the client caches the document,
// and a changed property is a new document, derived anew. A document has
// one slot: a binary derives with one function.
// (A document not prepared is derived at every call.)
func (p *Property) Derived(derive func(*Property) any) any {
	if p.derived == nil {
		return derive(p)
	}
	if v := p.derived.Load(); v != nil {
		return *v
	}
	v := derive(p)
	if p.derived.CompareAndSwap(nil, &v) {
		return v
	}
	return *p.derived.Load() // another lookup derived it first
}

// VerifySecret reports whether secret is one of the property's Measurement
// API secrets that are not revoked.
func (p *Property) VerifySecret(secret string) bool {
	if secret == "" {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	got := hex.EncodeToString(sum[:])
	ok := 0
	for _, h := range p.APISecretSHA256 {
		ok |= subtle.ConstantTimeCompare([]byte(got), []byte(h))
	}
	return ok == 1
}

// Prepare compiles the rules and loads the time zone, for Compiled,
// Location and Derived. The Client prepares every document it returns; a
// document decoded otherwise (a test's) needs it.
func (p *Property) Prepare() error {
	c, err := p.Rules.Compile()
	if err != nil {
		return err
	}
	// The zone database is in the binary (time/tzdata, imported in
	// client.go), as in config-svc, which refuses a zone it does not
	// know: a zone config-svc accepted always loads here, whatever the
	// host has installed, so this fallback is for documents written by
	// hand.
	p.compiled, p.location, p.derived = c, zone(p.TimeZone), new(atomic.Pointer[any])
	return nil
}

// zones holds each time zone loaded once (name -> *time.Location): a
// Location holds the zone's transitions (about 3 KB for Europe/Berlin),
// which a cache of a million properties would otherwise hold a million
// times. A Location is immutable, so sharing it is safe.
var zones sync.Map

// zone returns the named time zone, or UTC when it does not load.
func zone(name string) *time.Location {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC // not remembered: the name may be anything
	}
	actual, _ := zones.LoadOrStore(name, loc)
	return actual.(*time.Location)
}

// RuleVersion is one immutable version of a property's rules.
type RuleVersion struct {
	Version int `json:"version"`
	// EffectiveAt is when the version took effect; it applies to hits
	// received from then until the next version's EffectiveAt.
	EffectiveAt time.Time `json:"effective_at"`
	// Hostnames are the property's hostnames when the version was made
	// (changing them makes a new version).
	Hostnames []string    `json:"hostnames"`
	Rules     rules.Rules `json:"rules"`
	// CreatedBy is the user (or "system") that made the version.
	CreatedBy string `json:"created_by,omitempty"`
}

// Compile compiles the version.
func (v RuleVersion) Compile() (*rules.Compiled, error) {
	return rules.Compile(v.Rules, v.Version, v.Hostnames)
}

// RuleVersions is the answer of GET /internal/v1/properties/{id}/rules/versions:
// every version a hit still in the raw archive can need (config-svc drops
// a version hit.ArchiveRetention after the next replaced it), oldest first.
type RuleVersions struct {
	PropertyID string        `json:"property_id"`
	Versions   []RuleVersion `json:"versions"`
}

// Change kinds.
const (
	ChangeProperty = "property" // created or settings changed
	ChangeRules    = "rules"    // a new rule version
	ChangeSecrets  = "secrets"  // an API secret created or revoked
	ChangeDeleted  = "deleted"  // the property was deleted
)

// Change is one entry of the change feed: something about a property
// changed; clients refetch it.
type Change struct {
	Seq        int64     `json:"seq"`
	Kind       string    `json:"kind"`
	PropertyID string    `json:"property_id"`
	TenantID   string    `json:"tenant_id"`
	TrackingID string    `json:"tracking_id"`
	At         time.Time `json:"at"`
}

// Changes is the answer of GET /internal/v1/changes: the changes after the
// requested sequence number, and Seq, the sequence number to ask from next.
type Changes struct {
	Seq     int64    `json:"seq"`
	Changes []Change `json:"changes"`
}

// CookielessSalt is the answer of GET /internal/v1/cookieless-salts/{date}:
// the salt of collection's cookieless visitor IDs for a date (YYYY-MM-DD),
// random, the same for every caller, and destroyed about three days after
// it was made (docs/collection.md, "Cookieless properties").
type CookielessSalt struct {
	Date string `json:"date"`
	Salt []byte `json:"salt"` // base64 in JSON
}

// PropertyList is a page of GET /internal/v1/properties: the IDs of every
// property that is not deleted, of every tenant, for operators' work over
// all of them (reprocessing after a change to processing's logic).
type PropertyList struct {
	PropertyIDs []string `json:"property_ids"`
	// NextAfter is the after of the next page, "" after the last.
	NextAfter string `json:"next_after"`
}

// TrackingIDAlphabet is the alphabet of tracking IDs: digits and upper-case
// letters without the ambiguous 0, O, 1, I and L.
const TrackingIDAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// TrackingIDPrefix starts every tracking ID.
const TrackingIDPrefix = "AT-"

// TrackingIDLength is the number of random characters after the prefix.
const TrackingIDLength = 10

// ValidTrackingID reports whether s has the form of a tracking ID (AT-
// followed by ten characters of TrackingIDAlphabet). Collection checks it
// before looking a tracking ID up.
func ValidTrackingID(s string) bool {
	if len(s) != len(TrackingIDPrefix)+TrackingIDLength || s[:len(TrackingIDPrefix)] != TrackingIDPrefix {
		return false
	}
	for i := len(TrackingIDPrefix); i < len(s); i++ {
		if !inAlphabet(s[i]) {
			return false
		}
	}
	return true
}

func inAlphabet(c byte) bool {
	for i := 0; i < len(TrackingIDAlphabet); i++ {
		if TrackingIDAlphabet[i] == c {
			return true
		}
	}
	return false
}
