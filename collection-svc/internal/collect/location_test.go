package collect

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
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
		{"https://shop.example/p?q=100%", "shop.example", "/p?q=100%25", true},
		{"https://shop.example/a//b%", "shop.example", "/a//b%25", true},
		{"https://shop.example%/", "", "", false},
		{"https://sh%op.example/", "", "", false},
		{"ftp://shop.example/50%", "", "", false},
		{"/sale-50%-off", "", "", false},
		// One page, however it is spelled: the canonical form.
		{"https://shop.example/café", "shop.example", "/caf%C3%A9", true},
		{"https://shop.example/caf%c3%a9", "shop.example", "/caf%C3%A9", true},
		{"https://shop.example/caf%C3%A9", "shop.example", "/caf%C3%A9", true},
		{"https://shop.example/café%2fx?q=é&r=%c3%a9", "shop.example", "/caf%C3%A9%2Fx?q=%C3%A9&r=%C3%A9", true},
		{"https://shop.example/a b|c?d e|f'g", "shop.example", "/a%20b%7Cc?d%20e|f%27g", true},
	}
	for _, tt := range tests {
		host, path, ok := splitLocation(tt.loc)
		if host != tt.wantHost || path != tt.wantPath || ok != tt.wantOK {
			t.Errorf("splitLocation(%q) = %q, %q, %v; want %q, %q, %v", tt.loc, host, path, ok, tt.wantHost, tt.wantPath, tt.wantOK)
		}
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/", "/"},
		{"/products/item-1?utm_source=news&x=1", "/products/item-1?utm_source=news&x=1"},
		{"/café", "/caf%C3%A9"},
		{"/caf%c3%a9", "/caf%C3%A9"},
		{"/caf%C3%A9", "/caf%C3%A9"},
		{"/a%2fb", "/a%2Fb"}, // an escaped '/' stays escaped
		{"/a%2Fb?x=%26y", "/a%2Fb?x=%26y"},
		{"/%41", "/%41"}, // never decoded
		{"/50%-off?q=100%&r=%e", "/50%25-off?q=100%25&r=%25e"},
		{"/a b\"<>`{}|^'!$&()*+,;=:@[]~\\", "/a%20b%22%3C%3E%60%7B%7D%7C%5E'!$&()*+,;=:@[]~\\"},
		{"/?q=a b\"<>`{}|^'!$&()*+,;=:@[]~?/", "/?q=a%20b%22%3C%3E`{}|^%27!$&()*+,;=:@[]~?/"},
		{"/x\x01\x7f\xff", "/x%01%7F%FF"},
		{"/page#section", "/page"},
		{"/page?q=1#%zz", "/page?q=1"},
	}
	for _, tt := range tests {
		got := hit.CanonicalPath(tt.path)
		if got != tt.want {
			t.Errorf("hit.CanonicalPath(%q) = %q, want %q", tt.path, got, tt.want)
		}
		if again := hit.CanonicalPath(got); again != got {
			t.Errorf("hit.CanonicalPath(%q) = %q, not canonical: %q again", tt.path, got, again)
		}
	}
}

// TestDocumentPathIsCanonical checks that a page has one path whether it
// comes as dp or in dl, and however it is escaped.
func TestDocumentPathIsCanonical(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	c := &client{}
	c.addr = addressingOf(p, c.ip)
	for _, f := range []struct{ dl, dp string }{
		{dp: "/café?q=é"},
		{dp: "/caf%c3%a9?q=%c3%a9"},
		{dp: "/caf%C3%A9?q=%C3%A9#top"},
		{dl: "https://shop.example/café?q=é"},
		{dl: "https://shop.example/caf%c3%a9?q=%c3%a9"},
		{dl: "https://shop.example/caf%C3%A9?q=%C3%A9#top"},
	} {
		fields := parse.Fields{ClientID: "c", Type: "pageview", Location: f.dl, Host: "shop.example", Path: f.dp}
		h, e := s.build(new(hit.Hit), p, &fields, c, hit.OriginBrowser)
		if e != nil {
			t.Fatalf("%+v: %v", f, e)
		}
		if want := "/caf%C3%A9?q=%C3%A9"; h.Path != want {
			t.Errorf("%+v: path %q, want %q", f, h.Path, want)
		}
	}
}

// TestSplitLocationAgreesWithURLParse compares the fast split of plain
// locations with the split through url.Parse, and that one with
// url.Parse, on generated locations built from the bytes that matter.
func TestSplitLocationAgreesWithURLParse(t *testing.T) {
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
		h, p, ok := splitLocation(loc)
		if fh, fp, fok := splitPlainLocation(loc); fok {
			fast++
			if ph, pp, pok := splitParsedLocation(loc); fh != ph || fp != pp || !pok {
				t.Fatalf("%q: the fast split gives %q %q, url.Parse %q %q %v", loc, fh, fp, ph, pp, pok)
			}
		}
		u, err := url.Parse(loc)
		wok := err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
		if !wok && ok && strings.ContainsAny(loc, "%#") {
			continue // a stray '%' or a fragment url.Parse refuses: TestSplitLocation
		}
		if ok != wok || ok && h != u.Host {
			t.Fatalf("%q: split gives %q %q %v, url.Parse %v %v", loc, h, p, ok, u, err)
		}
		if ok && (p == "" || p[0] != '/' || hit.CanonicalPath(p) != p) {
			t.Fatalf("%q: path %q", loc, p)
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

// Credentials in a page's or a referrer's address are dropped before
// anything keeps the hit; an '@' elsewhere stays.
func TestAddressesLoseTheirCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@shop.example/cart?x=1": "https://shop.example/cart?x=1",
		"http://user@shop.example":                  "http://shop.example",
		"https://a@b:c@shop.example:8443/#top":      "https://shop.example:8443/#top",
		"https://shop.example/@team?to=a@b.example": "https://shop.example/@team?to=a@b.example",
		"https://shop.example?to=a@b.example":       "https://shop.example?to=a@b.example",
		"mailto:a@b.example":                        "mailto:a@b.example",
		"":                                          "",
	} {
		if got := withoutUserinfo(in); got != want {
			t.Errorf("withoutUserinfo(%q) = %q, want %q", in, got, want)
		}
	}

	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	req := httptest.NewRequest("GET", "/debug/collect?tid="+p.TrackingID+"&v=1&t=pageview&cid=c"+
		"&dl="+url.QueryEscape("https://admin:hunter2@shop.example/a")+"&dr="+url.QueryEscape("https://me:pw@ref.example/"), nil)
	req.RemoteAddr = "203.0.113.7:5000"
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	var res DebugResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res.Hits) != 1 || !res.Valid {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if h := res.Hits[0].Hit; h.URL != "https://shop.example/a" || h.Referrer != "https://ref.example/" || h.Hostname != "shop.example" {
		t.Errorf("hit URL %q, referrer %q, host %q: want the addresses without their credentials", h.URL, h.Referrer, h.Hostname)
	}
	if strings.Contains(w.Body.String(), "hunter2") {
		t.Errorf("the answer holds the password: %s", w.Body)
	}
}
