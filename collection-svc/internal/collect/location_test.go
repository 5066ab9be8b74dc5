package collect

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// TestSplitLocation checks locations as browsers send them in
// location.href, url.Parse's refusals among them.
func TestSplitLocation(t *testing.T) {
	tests := []struct {
		loc, wantHost, wantPath string
		wantOK                  bool
	}{
		{"https://shop.example/products/item-1?utm_source=news", "shop.example", "/products/item-1?utm_source=news", true},
		{"https://shop.example/sale-50%-off", "shop.example", "/sale-50%25-off", true},
		{"https://shop.example/p#100%", "shop.example", "/p", true},
		{"https://shop.example/p?x=1#a%zz", "shop.example", "/p?x=1", true},
		{"https://shop.example/caf%C3%A9-%E", "shop.example", "/caf%C3%A9-%25E", true}, // cut at the tracker's limit
		{"https://shop.example/caf%C3%A9-%", "shop.example", "/caf%C3%A9-%25", true},
		{"https://shop.example/a%2Fb%zz", "shop.example", "/a%2Fb%25zz", true},
		{"https://shop.example/p?q=100%", "shop.example", "/p?q=100%", true}, // the query as sent
		{"https://shop.example%/", "", "", false},
		{"https://sh%op.example/", "", "", false},
		{"https://shop.example/a//b%", "shop.example", "/a//b%25", true},
		{"ftp://shop.example/50%", "", "", false},
		{"/sale-50%-off", "", "", false},
	}
	for _, tt := range tests {
		host, path, ok := splitLocation(tt.loc)
		if host != tt.wantHost || path != tt.wantPath || ok != tt.wantOK {
			t.Errorf("splitLocation(%q) = %q, %q, %v; want %q, %q, %v", tt.loc, host, path, ok, tt.wantHost, tt.wantPath, tt.wantOK)
		}
	}
}

// TestSplitLocationAgreesWithURLParse compares the fast split of plain
// locations with what url.Parse makes of them, on generated locations
// built from the bytes that matter (those url.Parse refuses for a stray
// '%' or a fragment are TestSplitLocation's).
func TestSplitLocationAgreesWithURLParse(t *testing.T) {
	viaParse := func(loc string) (string, string, bool) {
		u, err := url.Parse(loc)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", "", false
		}
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		if u.RawQuery != "" {
			path += "?" + u.RawQuery
		}
		return u.Host, path, true
	}
	prefixes := []string{"https://", "http://", "HTTP://", "https:/", "ftp://", "https://user@", ""}
	const plain = "aZ09.-_~/?=&+,;:"
	const alphabet = plain + "%#@ []!$'()*\"<>\\^`{|}\x00\x7f\xc3\xa9"
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for i := range 300000 {
		b := []byte(prefixes[rng.IntN(len(prefixes))])
		if i%3 == 0 {
			b = append(b, "shop.example"...)
		}
		chars := alphabet
		if i%2 == 0 {
			chars = plain
		}
		for range rng.IntN(14) {
			b = append(b, chars[rng.IntN(len(chars))])
		}
		loc := string(b)
		if _, _, ok := splitPlainLocation(loc); ok {
			fast++
		}
		h, p, ok := splitLocation(loc)
		wh, wp, wok := viaParse(loc)
		if !wok && ok && strings.ContainsAny(loc, "%#") {
			continue // a stray '%' or a fragment url.Parse refuses: TestSplitLocation
		}
		if h != wh || p != wp || ok != wok {
			t.Fatalf("%q: split gives %q %q %v, url.Parse %q %q %v", loc, h, p, ok, wh, wp, wok)
		}
	}
	if fast < 5000 {
		t.Fatalf("only %d locations took the fast path: the test compares little", fast)
	}
	for _, loc := range []string{"https://shop.example/products/item-1?utm_source=news", "http://a.b", "https://a.b?"} {
		if _, _, ok := splitPlainLocation(loc); !ok {
			t.Errorf("%q should be plain", loc)
		}
	}
}
