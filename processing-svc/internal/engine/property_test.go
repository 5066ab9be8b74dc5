package engine

import (
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/attribution"
)

// A hit's campaign is in its document location even when a page path set
// apart from it (dp, a Measurement Protocol client's page_path) names the
// page, as GA reads it.
func TestCampaignOfAHitWithItsOwnPath(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, path string
		source, page    string
	}{
		{"location only", "https://shop.example/landing?utm_source=news&utm_medium=email", "", "news", "/landing"},
		{"path set apart", "https://shop.example/?utm_source=news&utm_medium=email", "/landing", "news", "/landing"},
		{"tags in the path only", "https://shop.example/", "/landing?utm_source=partner", "partner", "/landing"},
		{"location wins", "https://shop.example/?utm_source=news", "/landing?utm_source=partner", "news", "/landing"},
		{"none", "https://shop.example/a", "/b", "", "/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hit.Hit{Type: hit.TypePageview, URL: tt.url, Path: tt.path}
			if tt.path == "" {
				h.Path = tt.url[len("https://shop.example"):]
			}
			sh, reason := toSessionHit(h, r)
			if reason != "" {
				t.Fatalf("excluded: %s", reason)
			}
			if sh.Campaign.Source != tt.source || sh.Path != tt.page {
				t.Errorf("campaign source %q, page %q; want %q, %q", sh.Campaign.Source, sh.Path, tt.source, tt.page)
			}
		})
	}
}

// A hit gets the rules version collection stamped on it, whatever
// processing's copy of the history says at the time (it learns of a new
// version a moment after it takes effect, and a processor restarted later
// knows it): the first run, a replay and historical reprocessing agree.
// A version the copy does not have, or none, falls back to the receive
// time.
func TestRulesOfAHitAreTheVersionItCarries(t *testing.T) {
	v1, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2 := rules.Defaults()
	r2.ReferralExclusions = []string{"partner.example"}
	v2, err := rules.Compile(r2, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := &Property{RulesAt: func(time.Time) *rules.Compiled { return v1 },
		RulesVersion: func(n int) *rules.Compiled { return map[int]*rules.Compiled{1: v1, 2: v2}[n] }}
	for _, tc := range []struct {
		stamped, want int
	}{{2, 2}, {1, 1}, {0, 1}, {3, 1}} {
		if got := stale.RulesOf(&hit.Hit{RuleVersion: tc.stamped}).Version(); got != tc.want {
			t.Errorf("a hit stamped with version %d got version %d, want %d", tc.stamped, got, tc.want)
		}
	}
}

// An archived hit stored before collection put paths in one form is put in
// it when derived: reprocessing makes one page row of /café as of
// /caf%C3%A9.
func TestArchivedPathsInCanonicalForm(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/café", "/caf%c3%a9", "/caf%C3%A9"} {
		sh, _ := toSessionHit(&hit.Hit{Type: hit.TypePageview, Path: p}, r)
		if sh.Path != "/caf%C3%A9" {
			t.Errorf("path %q derived as %q, want /caf%%C3%%A9", p, sh.Path)
		}
	}
}

// A referrer on the hit's own site (its page's host or a subdomain) never
// sets attribution, even for a property without hostnames (they are
// optional): a visitor back on a tab left open for an hour is direct, not
// a referral from the shop itself.
func TestOwnSiteReferrerWithoutHostnames(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, referrer, want string
	}{
		{"shop.example", "https://shop.example/cart", ""},
		{"www.shop.example", "https://shop.example/", ""},
		{"shop.example", "https://blog.shop.example/post", ""},
		{"shop.example", "https://me@Shop.Example:8443?q#f", ""},
		{"shop.example", "android-app://com.shop.example", "android-app://com.shop.example"},
		{"blog.shop.example", "https://shop.example/", "https://shop.example/"}, // the parent is another site
		{"shop.example", "https://search.example/?q=shop", "https://search.example/?q=shop"},
		{"", "https://shop.example/", "https://shop.example/"}, // a server-side hit without a page
		// Space around the URL, as a server may send it: attribution
		// reads the referrer trimmed (shop.example / referral), so the
		// own-site check must too.
		{"shop.example", " https://shop.example/cart", ""},
		{"shop.example", "https://shop.example\t", ""},
		{"shop.example", "\nhttps://search.example/ ", "\nhttps://search.example/ "},
	}
	for _, tt := range tests {
		sh, _ := toSessionHit(&hit.Hit{Type: hit.TypePageview, Hostname: tt.host, Path: "/", Referrer: tt.referrer}, r)
		if sh.Referrer != tt.want {
			t.Errorf("page on %q, referrer %q: session hit referrer %q, want %q", tt.host, tt.referrer, sh.Referrer, tt.want)
		}
	}
}

// A campaign sent apart from the location (cs, cm, ...; collection keeps
// them in the hit's parameters) overrides the location's tags field by
// field, and stands alone when the location has none.
func TestCampaignApartFromTheLocation(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url    string
		params map[string]string
		want   attribution.Campaign
	}{
		{"https://shop.example/", map[string]string{hit.ParamCampaignSource: "newsletter", hit.ParamCampaignMedium: "email"},
			attribution.Campaign{Source: "newsletter", Medium: "email"}},
		{"https://shop.example/?utm_source=ads&utm_medium=cpc&utm_campaign=spring", map[string]string{hit.ParamCampaignSource: " partner "},
			attribution.Campaign{Source: "partner", Medium: "cpc", Name: "spring"}},
		{"https://shop.example/", map[string]string{hit.ParamGCLID: "abc", "plan": "pro"}, attribution.Campaign{GCLID: "abc"}},
		// A gclid sent apart takes over the location's gbraid (both are
		// the Google click ID, gclid first); gbraid and wbraid are read
		// from the location only, as no protocol sends them apart: a
		// parameter of that name is a custom parameter.
		{"https://shop.example/?gbraid=b", map[string]string{hit.ParamGCLID: "abc"}, attribution.Campaign{GCLID: "abc"}},
		{"https://shop.example/?wbraid=w", map[string]string{"gbraid": "b"}, attribution.Campaign{GCLID: "w"}},
		{"https://shop.example/", map[string]string{"gbraid": "b", "wbraid": "w"}, attribution.Campaign{}},
	}
	for _, tt := range tests {
		sh, _ := toSessionHit(&hit.Hit{Type: hit.TypePageview, URL: tt.url, Path: "/", Params: tt.params}, r)
		if sh.Campaign != tt.want {
			t.Errorf("%s with %v: campaign %+v, want %+v", tt.url, tt.params, sh.Campaign, tt.want)
		}
	}
}

// The page dimension drops the attribution parameters the clean-up keeps,
// whatever spelling of their names a query parser reads as theirs.
func TestPagePathDropsAttributionParameters(t *testing.T) {
	for in, want := range map[string]string{
		"/a?utm_source=x":                  "/a",
		"/a?utm%5Fsource=x":                "/a",
		"/a?UTM_Medium=y&id=7&gclid=g":     "/a?id=7",
		"/a?gbraid=b&id=7&WBRAID=w":        "/a?id=7",
		"/a?%67braid=b&wbraidx=1":          "/a?wbraidx=1",
		"/a?id=7":                          "/a?id=7",
		"/a":                               "/a",
		"/a?%75tm_campaign=z&utm_term=t&b": "/a?b",
	} {
		if got := pagePath(in); got != want {
			t.Errorf("pagePath(%q) = %q, want %q", in, got, want)
		}
	}
}
