package collect

import (
	"math/rand/v2"
	"net/url"
	"testing"
)

// TestSplitLocationAgreesWithURLParse compares the fast split of plain
// locations with what url.Parse makes of them, on generated locations
// built from the bytes that matter.
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
