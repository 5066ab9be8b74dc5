package configclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

func TestValidTrackingID(t *testing.T) {
	tests := map[string]bool{
		"AT-23456789AB":  true,
		"AT-ZZZZZZZZZZ":  true,
		"AT-2345678":     false, // short
		"AT-23456789ABC": false,
		"at-23456789AB":  false,
		"AT-0345678923":  false, // 0
		"AT-O345678923":  false, // O
		"AT-1345678923":  false, // 1
		"AT-I345678923":  false, // I
		"AT-L345678923":  false, // L
		"AT-l345678923":  false, // lower case
		"UA-23456789AB":  false,
		"":               false,
	}
	for id, want := range tests {
		if got := ValidTrackingID(id); got != want {
			t.Errorf("ValidTrackingID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestVerifySecret(t *testing.T) {
	sum := sha256.Sum256([]byte("as_right"))
	p := &Property{APISecretSHA256: []string{strings.Repeat("0", 64), hex.EncodeToString(sum[:])}}
	for secret, want := range map[string]bool{"as_right": true, "as_wrong": false, "": false} {
		if got := p.VerifySecret(secret); got != want {
			t.Errorf("VerifySecret(%q) = %v", secret, got)
		}
	}
}

// TestDocumentRoundTrip: a document as config-svc encodes it decodes and
// compiles here, with its time zone loaded.
func TestDocumentRoundTrip(t *testing.T) {
	in := Property{PropertyID: "p", TrackingID: "AT-23456789AB", TimeZone: "Europe/Berlin", ProcessingShards: 2,
		Rules: RuleVersion{Version: 4, EffectiveAt: time.Now().UTC(), Hostnames: []string{"example.com"}, Rules: rules.Defaults().Normalize()}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Property
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if err := out.Prepare(); err != nil {
		t.Fatal(err)
	}
	if out.Compiled().Version() != 4 || out.Location().String() != "Europe/Berlin" || out.Compiled().ReferralExcluded("www.example.com") != true {
		t.Fatalf("prepared document: version %d, zone %s", out.Compiled().Version(), out.Location())
	}
}

func TestConfigValidate(t *testing.T) {
	secret := []byte("0123456789abcdef")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"static URL", Config{BaseURL: "http://127.0.0.1:8082", Caller: "collection", IdentitySecret: secret}, ""},
		{"bad URL", Config{BaseURL: "127.0.0.1:8082", Caller: "collection", IdentitySecret: secret}, "not an http(s) URL"},
		{"no way to find it", Config{Caller: "collection", IdentitySecret: secret}, "-config-svc-url or a Consul agent"},
		{"no caller", Config{BaseURL: "http://x", IdentitySecret: secret}, "Caller"},
		{"short secret", Config{BaseURL: "http://x", Caller: "c", IdentitySecret: []byte("short")}, "16 bytes"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want %q", tt.name, err, tt.want)
		}
	}
}
