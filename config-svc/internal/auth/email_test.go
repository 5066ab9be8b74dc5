package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	const bucher = "anna@xn--bcher-kva.example"
	tests := []struct {
		name, email, want string
	}{
		// Every ASCII address keeps the form it was stored in before:
		// trimmed and lower case, dots and +tags as they are.
		{"ASCII", "owner@shop.example", "owner@shop.example"},
		{"ASCII in upper case, with spaces", "  Owner@Shop.EXAMPLE\t", "owner@shop.example"},
		{"dots and a +tag are kept", "First.Last+News@sub.shop.example", "first.last+news@sub.shop.example"},
		{"an A-label stays", bucher, bucher},
		{"an A-label in upper case", "ANNA@XN--BCHER-KVA.EXAMPLE", bucher},
		{"hyphens in a label, as browsers allow", "a@r3---sn-abc.example", "a@r3---sn-abc.example"},
		{"not an address: CheckEmail's to say", " Not-An-Email ", "not-an-email"},
		{"empty", "", ""},

		// Spellings of one address: the IDN as Unicode or A-label, in
		// NFC or NFD, in any case or width.
		{"IDN in Unicode", "anna@bücher.example", bucher},
		{"IDN in upper case", "ANNA@BÜCHER.EXAMPLE", bucher},
		{"IDN decomposed (NFD)", "anna@bu\u0308cher.example", bucher},
		{"IDN with a fullwidth letter", "anna@ｂücher.example", bucher},
		{"IDN with an ideographic full stop", "anna@bücher。example", bucher},
		{"fullwidth ASCII domain", "a@ＥＸＡＭＰＬＥ.com", "a@example.com"},
		{"local part composed (NFC)", "\u00e9va@shop.example", "\u00e9va@shop.example"},
		{"local part decomposed (NFD)", "e\u0301va@shop.example", "\u00e9va@shop.example"},
		{"local part in upper case, composed", "\u00c9VA@shop.example", "\u00e9va@shop.example"},
		{"local part in upper case, decomposed", "E\u0301VA@shop.example", "\u00e9va@shop.example"},
		{"everything at once", " E\u0301va+X@BU\u0308CHER.example ", "\u00e9va+x@xn--bcher-kva.example"},

		// ß per UTS #46, nontransitional: a letter of its own, so
		// straße.de and strasse.de stay two domains; its capital ẞ is
		// mapped to ss, as UTS #46 has it.
		{"ß kept", "a@straße.de", "a@xn--strae-oqa.de"},
		{"ß as its A-label", "a@XN--STRAE-OQA.de", "a@xn--strae-oqa.de"},
		{"ss is another domain", "a@STRASSE.de", "a@strasse.de"},
		{"ẞ per UTS #46", "a@STRAẞE.de", "a@strasse.de"},
		{"final sigma kept", "a@σας.gr", "a@xn--mxa8ab.gr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeEmail(tt.email)
			if err != nil || got != tt.want {
				t.Errorf("NormalizeEmail(%+q) = %+q, %v; want %+q", tt.email, got, err, tt.want)
			}
			// Canonical is canonical.
			if again, err := NormalizeEmail(got); err != nil || again != got {
				t.Errorf("NormalizeEmail(%+q) = %+q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

// TestASCIIAddressesKeepTheirKeys: no ASCII address's canonical form
// differs from the form it was stored in before; one IDNA refuses keeps
// that form as its only key.
func TestASCIIAddressesKeepTheirKeys(t *testing.T) {
	for c := byte(0x20); c < 0x7f; c++ {
		for _, email := range []string{
			"Lo" + string(c) + "cal@Shop.Example",
			"local@Sh" + string(c) + "op.Example",
			"local@" + string(c) + "shop.example",
			"local@xn--" + string(c) + "bcher-kva.example",
		} {
			got, err := NormalizeEmail(email)
			if err == nil && got != OldEmail(email) {
				t.Errorf("NormalizeEmail(%q) = %q; want %q, its old form", email, got, OldEmail(email))
			}
			if keys := EmailKeys(email); keys[0] != OldEmail(email) {
				t.Errorf("EmailKeys(%q) = %q; want %q first", email, keys, OldEmail(email))
			}
		}
	}
}

func TestNormalizeEmailRefusesDomainsIDNAMaps(t *testing.T) {
	tests := []struct {
		name, email, want string
	}{
		{"a disallowed code point", "a@x\ufffd.example", "disallowed rune U+FFFD"},
		{"private use", "a@x\ue000.example", "disallowed rune U+E000"},
		{"a no-break space", "a@x\u00a0y.example", "disallowed rune U+00A0"},
		{"an underscore (STD3)", "a@my_host.example", "disallowed rune U+005F"},
		{"an A-label of ASCII", "a@xn--zz.example", "invalid label"},
		{"an A-label that is not punycode", "a@xn--abc.example", "invalid label"},
		{"an empty A-label", "a@XN--.example", "the label xn-- is an empty A-label"},
		{"an empty A-label in fullwidth", "a@ｘｎ－－.example", "the label xn-- is an empty A-label"},
		{"a label starting with a combining mark", "a@\u0301x.example", "invalid label"},
		{"right-to-left mixed wrongly (bidi rule)", "a@abc.\u05d0a.example", "invalid label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeEmail(tt.email)
			if !errors.Is(err, ErrEmailDomain) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NormalizeEmail(%+q) = %+q, %v; want ErrEmailDomain saying %q", tt.email, got, err, tt.want)
			}
			// Looked up as stored before; refused for a new account.
			if keys := EmailKeys(tt.email); !slices.Equal(keys, []string{OldEmail(tt.email)}) {
				t.Errorf("EmailKeys(%+q) = %+q; want the old form alone", tt.email, keys)
			}
			if keys, problem := NewEmail(tt.email); keys != nil || !strings.Contains(problem, "the domain is not a valid domain name ("+tt.want) {
				t.Errorf("NewEmail(%+q) = %+q, %q; want refused saying %q", tt.email, keys, problem, tt.want)
			}
		})
	}
}

func TestEmailKeys(t *testing.T) {
	const bucher = "anna@xn--bcher-kva.example"
	tests := []struct {
		name, email string
		want        []string
	}{
		{"ASCII: one key", "Owner@Shop.example", []string{"owner@shop.example"}},
		{"IDN in Unicode: its old form", "Anna@Bücher.example", []string{bucher, "anna@bücher.example"}},
		{"IDN as A-label: the Unicode spelling's old form", "anna@XN--BCHER-KVA.example", []string{bucher, "anna@bücher.example"}},
		{"IDN decomposed: its old form, and the composed one's",
			"anna@bu\u0308cher.example", []string{bucher, "anna@bu\u0308cher.example", "anna@bücher.example"}},
		{"local part decomposed: its old form", "E\u0301va@shop.example", []string{"\u00e9va@shop.example", "e\u0301va@shop.example"}},
		{"a domain IDNA refuses: the old form", "A@My_Host.example", []string{"a@my_host.example"}},
		// strings.ToLower and UTS #46 map two capitals otherwise: İ is
		// i to ToLower and i + U+0307 to UTS #46, ẞ is ß to ToLower and
		// ss to UTS #46. The old form is then another address's
		// (victim@info.example, a@straße.de), not a key of this one.
		{"İ: not the old form, an ASCII address's", "Victim@İnfo.example", []string{"victim@xn--info-qwc.example", "victim@i̇nfo.example"}},
		{"ẞ: not the old form, straße's", "a@STRAẞE.de", []string{"a@strasse.de"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EmailKeys(tt.email); !slices.Equal(got, tt.want) {
				t.Errorf("EmailKeys(%+q) = %+q; want %+q", tt.email, got, tt.want)
			}
		})
	}
}

func TestNewEmail(t *testing.T) {
	tests := []struct {
		name, email string
		want        []string // nil: refused
		problem     string
	}{
		{"ASCII", "Owner@Shop.example", []string{"owner@shop.example"}, ""},
		{"IDN", "anna@Bücher.example", []string{"anna@xn--bcher-kva.example", "anna@bücher.example"}, ""},
		// The domain's spelling with an ideographic full stop has no "."
		// before it is mapped: the canonical form is what is checked.
		{"IDN with an ideographic full stop", "anna@bücher。example", []string{"anna@xn--bcher-kva.example", "anna@bücher。example", "anna@bücher.example"}, ""},
		{"CheckNewEmail's problems", "a@localhost", nil, "full domain name"},
		{"a control character in the domain, named as before", "a@b.example\x7f", nil, "has the character U+007F"},
		{"a control character in the local part", "a\x00@b.example", nil, "has the character U+0000"},
		// Invisible characters in the local part: an address that reads
		// as another, a second account for it.
		{"a zero-width space in the local part", "a\u200b@b.example", nil, "has the invisible character U+200B"},
		{"a soft hyphen in the local part", "an\u00adna@b.example", nil, "has the invisible character U+00AD"},
		{"a zero-width joiner in the local part", "a\u200db@b.example", nil, "has the invisible character U+200D"},
		{"a byte order mark in the local part", "\ufeffa@b.example", nil, "has the invisible character U+FEFF"},
		{"a variation selector in the local part", "a\ufe0f@b.example", nil, "has the invisible character U+FE0F"},
		{"a Hangul filler in the local part", "a\u3164@b.example", nil, "has the invisible character U+3164"},
		{"a combining grapheme joiner in the local part", "a\u034fb@b.example", nil, "has the invisible character U+034F"},
		// UTS #46 maps a zero-width space and a soft hyphen in a domain
		// to nothing: the address is the one without them.
		{"a zero-width space in the domain", "a@sh\u200bop.example", []string{"a@shop.example", "a@sh\u200bop.example"}, ""},
		{"a code point IDNA refuses", "a@x\ufffd.example", nil, ": the domain is not a valid domain name (disallowed rune U+FFFD); check it for a mistyped character"},
		// 129 bytes in Unicode, 329 as A-labels (xn--tda).
		{"too long as A-labels", "a@" + strings.Repeat("ü.", 40) + "example", nil, "longer than 254"},
		// ℵ (U+2135) passes the bidi rule, the Hebrew letter א it maps
		// to does not: the A-label of the mapped form is refused when it
		// is given again, so the account could not be found by it.
		{"a domain whose A-label IDNA refuses", "a@xℵy.example", nil, "the domain is not a valid domain name"},
		// No mail reaches a domain with an empty label or one longer
		// than DNS allows (63 bytes, of the A-label).
		{"an empty label", "a@shop..example", nil, "empty label"},
		{"an empty label in Unicode", "a@shop.\u3002example", nil, "empty label"},
		{"a label of 64 bytes", "a@" + strings.Repeat("x", 64) + ".example", nil, "longer than 63"},
		{"a label of 63 bytes", "a@" + strings.Repeat("x", 63) + ".example", []string{"a@" + strings.Repeat("x", 63) + ".example"}, ""},
		{"a label of 60 bytes, longer as its A-label", "a@" + strings.Repeat("x", 58) + "ü.example", nil, "longer than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, problem := NewEmail(tt.email)
			if !slices.Equal(keys, tt.want) || (tt.problem == "") != (problem == "") || !strings.Contains(problem, tt.problem) {
				t.Errorf("NewEmail(%+q) = %+q, %q; want %+q, %q", tt.email, keys, problem, tt.want, tt.problem)
			}
		})
	}
}

// Every key of a spelling is a spelling of the same address: an account
// found by it is mailed at the same address, and the same throttles count
// its attempts. A key of another address would let a sign-up at a domain
// that looks alike (İnfo.example, whose A-label xn--info-qwc.example
// anyone can hold) be refused as taken by victim@info.example and be
// mailed a link that takes that address from its unverified owner, and
// would let a login with the look-alike spelling guess the account's
// password under another address's throttle. And the canonical form is
// canonical: an address stored in it is found by it.
func TestEmailKeysAreSpellingsOfTheAddress(t *testing.T) {
	for r := rune(0x80); r < 0x30000; r++ {
		if r >= 0xd800 && r < 0xe000 {
			continue
		}
		for _, email := range []string{"Lo" + string(r) + "cal@Shop.example", "local@Sh" + string(r) + "op.example"} {
			canonical, err := NormalizeEmail(email)
			if err != nil {
				continue
			}
			if again, err := NormalizeEmail(canonical); err != nil || again != canonical {
				t.Errorf("%U: NormalizeEmail(%+q) = %+q, but NormalizeEmail(%+q) = %+q, %v", r, email, canonical, canonical, again, err)
			}
			for _, k := range EmailKeys(email) {
				if got, err := NormalizeEmail(k); err != nil || got != canonical {
					t.Errorf("%U: EmailKeys(%+q) has %+q, whose canonical form is %+q (%v), not %+q", r, email, k, got, err, canonical)
				}
			}
		}
	}
}
