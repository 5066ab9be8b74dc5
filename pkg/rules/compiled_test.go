package rules

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
)

func mustCompile(t testing.TB, r Rules, version int, hosts ...string) *Compiled {
	t.Helper()
	c, err := Compile(r, version, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMatchIP(t *testing.T) {
	c := mustCompile(t, fullRules(), 1)
	tests := []struct {
		addr   string
		wantID string
	}{
		{"10.1.2.3", "10.0.0.0/8"},
		{"::ffff:10.1.2.3", "10.0.0.0/8"},
		{"203.0.113.7", "203.0.113.7"},
		{"203.0.113.8", ""},
		{"198.51.100.255", "198.51.100.0/24"},
		{"2001:db8:1::1", "2001:db8::/32"},
		{"2001:db9::1", ""},
		{"8.8.8.8", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			id, ok := c.MatchIP(netip.MustParseAddr(tt.addr))
			if id != tt.wantID || ok != (tt.wantID != "") {
				t.Fatalf("MatchIP(%s) = %q, %v; want %q", tt.addr, id, ok, tt.wantID)
			}
		})
	}
	if _, ok := c.MatchIP(netip.Addr{}); ok {
		t.Fatal("the zero address matched")
	}
}

func TestMatchIPMostSpecific(t *testing.T) {
	r := Defaults()
	r.Exclusions.IP = []string{"10.0.0.0/8", "10.1.0.0/16"}
	c := mustCompile(t, r, 1)
	if id, _ := c.MatchIP(netip.MustParseAddr("10.1.9.9")); id != "10.1.0.0/16" {
		t.Fatalf("MatchIP = %q, want the most specific prefix", id)
	}
}

func TestExclusion(t *testing.T) {
	c := mustCompile(t, fullRules(), 5, "example.com")
	noBots := Defaults()
	noBots.BotFiltering = false
	cNoBots := mustCompile(t, noBots, 1)
	cWWW := mustCompile(t, Defaults(), 1, "www.shop.example")
	tests := []struct {
		name string
		c    *Compiled
		h    hit.Hit
		want string
	}{
		{"clean", c, hit.Hit{Hostname: "www.example.com", UserAgent: "Mozilla/5.0", Country: "DE", IP: "198.18.0.0"}, ""},
		{"ip by collection, same version", c, hit.Hit{IPExcludedBy: "10.0.0.0/8", RuleVersion: 5}, ReasonIP},
		{"no ip match at collection, same version, truncated IP inside a prefix", c, hit.Hit{IP: "10.1.2.0", RuleVersion: 5}, ""},
		{"reprocessing: rule still present", c, hit.Hit{IPExcludedBy: "203.0.113.7", RuleVersion: 2}, ReasonIP},
		{"reprocessing: rule gone, truncated IP outside", c, hit.Hit{IPExcludedBy: "192.0.2.0/24", RuleVersion: 2, IP: "192.0.2.0"}, ""},
		{"reprocessing: new rule covers the truncated network", c, hit.Hit{IP: "10.9.8.0", RuleVersion: 2}, ReasonIP},
		{"reprocessing: /32 rule cannot be told from a truncated IP", c, hit.Hit{IP: "203.0.113.0", RuleVersion: 2}, ""},
		{"reprocessing: /24 rule covers a /24 truncated IP", c, hit.Hit{IP: "198.51.100.0", RuleVersion: 2}, ReasonIP},
		{"reprocessing: v6", c, hit.Hit{IP: "2001:db8:5::", RuleVersion: 2}, ReasonIP},
		{"user agent", c, hit.Hit{UserAgent: "Mozilla/5.0 headlesschrome/120", Hostname: "example.com"}, ReasonUserAgent},
		{"user agent anchored", c, hit.Hit{UserAgent: "curl/8.0", Hostname: "example.com"}, ReasonUserAgent},
		{"country", c, hit.Hit{Country: "KP", Hostname: "example.com"}, ReasonCountry},
		{"country lower case from a client", c, hit.Hit{Country: "kp", Hostname: "example.com"}, ReasonCountry},
		{"foreign host", c, hit.Hit{Hostname: "evil.test"}, ReasonForeignHost},
		{"foreign host that ends like ours", c, hit.Hit{Hostname: "notexample.com"}, ReasonForeignHost},
		{"own host with port and case", c, hit.Hit{Hostname: "Shop.Example.com:8443"}, ""},
		{"no host (server side)", c, hit.Hit{Hostname: "", Origin: hit.OriginMeasurement}, ""},
		{"no host on a browser hit (referral spam)", c, hit.Hit{Hostname: "", Origin: hit.OriginBrowser}, ReasonForeignHost},
		{"no host on a browser hit, no hostnames", cNoBots, hit.Hit{Hostname: "", Origin: hit.OriginBrowser}, ""},
		{"bot", c, hit.Hit{Hostname: "example.com", Bot: true}, ReasonBot},
		{"bot without filtering", cNoBots, hit.Hit{Hostname: "anything.test", Bot: true}, ""},
		{"ip beats everything", c, hit.Hit{IPExcludedBy: "10.0.0.0/8", RuleVersion: 5, Bot: true, Hostname: "evil.test"}, ReasonIP},
		{"user agent before country", c, hit.Hit{UserAgent: "curl/1", Country: "KP"}, ReasonUserAgent},
		{"country before foreign host", c, hit.Hit{Country: "KP", Hostname: "evil.test"}, ReasonCountry},
		{"foreign host before bot", c, hit.Hit{Hostname: "evil.test", Bot: true}, ReasonForeignHost},
		{"own host saved with www., hit without", cWWW, hit.Hit{Hostname: "shop.example"}, ""},
		{"own host saved with www.", cWWW, hit.Hit{Hostname: "www.shop.example"}, ""},
		{"another subdomain of a host saved with www.", cWWW, hit.Hit{Hostname: "blog.shop.example"}, ""},
		{"www.com is not com", mustCompile(t, Defaults(), 1, "www.com"), hit.Hit{Hostname: "shop.com"}, ReasonForeignHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.c.Exclusion(&tt.h)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Exclusion = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	full := mustCompile(t, fullRules(), 1)
	asSent := mustCompile(t, Defaults(), 1)
	keepAll := Defaults()
	keepAll.PagePath.Lowercase = true
	lower := mustCompile(t, keepAll, 1)
	tests := []struct {
		name string
		c    *Compiled
		in   string
		want string
	}{
		{"defaults keep everything", asSent, "/A/b/?x=1&y=2#top", "/A/b/?x=1&y=2"},
		{"empty", asSent, "", "/"},
		{"no leading slash", asSent, "a/b", "/a/b"},
		{"full URL", asSent, "https://example.com/a?b=1", "/a?b=1"},
		{"full URL without path", asSent, "https://example.com", "/"},
		{"empty query dropped", asSent, "/a?", "/a"},
		{"lowercase path only", lower, "/Shop/Cart?Ref=ABC", "/shop/cart?Ref=ABC"},
		{"strip query keeps listed and attribution", full, "/search?q=shoes&session=123&utm_source=news&id=7&GCLID=abc&fbclid=f&x", "/search?q=shoes&utm_source=news&id=7&GCLID=abc&fbclid=f"},
		{"strip query keeps Google's iOS click IDs", full, "/landing?gbraid=0AAA&session=1&WBRAID=Cj0&wbraidx=1", "/landing?gbraid=0AAA&WBRAID=Cj0"},
		{"strip query drops all others", full, "/a?session=1&tracking=2", "/a"},
		{"encoded param name", full, "/a?%71=1", "/a?%71=1"},
		{"default page", full, "/Docs/INDEX.html", "/docs"},
		{"default page at root", full, "/index.html?utm_medium=email", "/?utm_medium=email"},
		{"default page only as a whole file name", full, "/myindex.html", "/myindex.html"},
		{"replacement", full, "/product/12345/reviews", "/product/:id/reviews"},
		{"replacement with groups", full, "/u/alice/settings", "/u/:user/settings"},
		{"trailing slash", full, "/about/", "/about"},
		{"trailing slashes", full, "/about//", "/about"},
		{"root keeps its slash", full, "/", "/"},
		{"fragment dropped", full, "/a#b?c=d", "/a"},
		{"default page before a trailing slash", full, "/docs/index.html/", "/docs"},
		{"default page twice", full, "/docs/index.html/index.html", "/docs"},
		{"lowercase keeps percent-escapes as collection writes them", lower, "/CAF%C3%A9/X%2FY", "/caf%C3%A9/x%2Fy"},
		{"a percent sign at the end", lower, "/A%4", "/a%4"},
		{"an encoded attribution parameter's name", full, "/a?utm%5Fsource=x&session=1", "/a?utm%5Fsource=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.CleanPath(tt.in)
			if got != tt.want {
				t.Fatalf("CleanPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
			// Cleaning a cleaned path changes nothing (the replacements
			// here map their output to itself): two spellings of a page
			// are never two pages.
			if again := tt.c.CleanPath(got); again != got {
				t.Fatalf("CleanPath(%q) = %q, but cleaned again %q", tt.in, got, again)
			}
		})
	}
}

func TestQueryParamName(t *testing.T) {
	for in, want := range map[string]string{"utm_source=x": "utm_source", "utm%5Fsource=x": "utm_source", "a+b": "a b", "%zz=1": "%zz", "": ""} {
		if got := QueryParamName(in); got != want {
			t.Errorf("QueryParamName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPageIncluded(t *testing.T) {
	r := Defaults()
	r.Pages = Pages{Include: []string{"^/shop", "^/blog"}, Exclude: []string{"^/shop/admin", `\?`}}
	c := mustCompile(t, r, 1)
	none := mustCompile(t, Defaults(), 1)
	tests := []struct {
		c    *Compiled
		path string
		want bool
	}{
		{c, "/shop/cart", true},
		{c, "/blog", true},
		{c, "/about", false},
		{c, "/shop/admin/users", false},
		{c, "/shop?utm_source=x", true}, // patterns never see the query
		{none, "/anything", true},
	}
	for _, tt := range tests {
		if got := tt.c.PageIncluded(tt.path); got != tt.want {
			t.Errorf("PageIncluded(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestGoals(t *testing.T) {
	c := mustCompile(t, fullRules(), 1)
	tests := []struct {
		name string
		h    hit.Hit
		path string
		want []GoalMatch
	}{
		{"page goal with value", hit.Hit{Type: hit.TypePageview}, "/welcome?utm_source=x", []GoalMatch{{ID: "signup", Value: 5}}},
		{"page goal needs a pageview", hit.Hit{Type: hit.TypeEvent, Action: "x"}, "/welcome", nil},
		{"no page goal", hit.Hit{Type: hit.TypePageview}, "/welcome/back", nil},
		{"event goal takes the event value", hit.Hit{Type: hit.TypeEvent, Category: "shop", Action: "purchase", Value: 99.5, HasValue: true}, "/checkout",
			[]GoalMatch{{ID: "purchase", Value: 99.5}}},
		{"event goal without value", hit.Hit{Type: hit.TypeEvent, Category: "shop", Action: "purchase"}, "/", []GoalMatch{{ID: "purchase"}}},
		{"category must match", hit.Hit{Type: hit.TypeEvent, Category: "blog", Action: "purchase"}, "/", nil},
		{"action only goal matches any category", hit.Hit{Type: hit.TypeEvent, Category: "docs", Action: "download"}, "/", []GoalMatch{{ID: "any-download"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Goals(&tt.h, tt.path); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Goals = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestChannel(t *testing.T) {
	c := mustCompile(t, fullRules(), 1)
	tests := []struct {
		source, medium, campaign string
		want                     string
	}{
		{"partner-a.com", "referral", "", "Partners"},
		{"PARTNER-B.COM", "", "", "Partners"},
		{"partner-c.com", "", "", ""},
		{"mailchimp", "email", "Newsletter-2026-05", "Newsletter"},
		{"mailchimp", "email", "promo", ""},
		{"google", "cpc", "", ""},
	}
	for _, tt := range tests {
		got, ok := c.Channel(tt.source, tt.medium, tt.campaign)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Channel(%q, %q, %q) = %q, %v; want %q", tt.source, tt.medium, tt.campaign, got, ok, tt.want)
		}
	}
}

func TestReferralExcluded(t *testing.T) {
	c := mustCompile(t, fullRules(), 1, "example.com")
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"blog.example.com", true},
		{"www.paypal.com", true},
		{"PayPal.com", true},
		{"checkout.stripe.com", true},
		{"stripe.com", false},
		{"google.com", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := c.ReferralExcluded(tt.host); got != tt.want {
			t.Errorf("ReferralExcluded(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

// A hostname or exclusion saved with "www." is the bare domain, its
// subdomains included: attribution passes a referrer's host without its
// "www.", and an internal link after 30 idle minutes must not make the
// site its own referral; www.paypal.com excludes checkout.paypal.com.
func TestReferralExcludedWithWWW(t *testing.T) {
	r := Defaults()
	r.ReferralExclusions = []string{"www.paypal.com"}
	c := mustCompile(t, r, 1, "www.shop.example")
	tests := []struct {
		host string
		want bool
	}{
		{"www.shop.example", true},
		{"shop.example", true},
		{"WWW.Shop.Example", true},
		{"m.www.shop.example", true},
		{"blog.shop.example", true},
		{"paypal.com", true},
		{"www.paypal.com", true},
		{"checkout.paypal.com", true},
		{"paypal.com.evil.example", false},
		{"shop.example.net", false},
	}
	for _, tt := range tests {
		if got := c.ReferralExcluded(tt.host); got != tt.want {
			t.Errorf("ReferralExcluded(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestSameSite(t *testing.T) {
	tests := []struct {
		host, site string
		want       bool
	}{
		{"shop.example", "shop.example", true},
		{"blog.shop.example", "shop.example", true},
		{"www.shop.example", "shop.example", true},
		{"shop.example", "www.shop.example", true},
		{"SHOP.example:443", "shop.example", true},
		{"shop.example", "blog.shop.example", false}, // a parent is another site
		{"blog.shop.example", "store.shop.example", false},
		{"evilshop.example", "shop.example", false},
		{"shop.example.net", "shop.example", false},
		{"", "shop.example", false},
		{"shop.example", "", false},
	}
	for _, tt := range tests {
		if got := SameSite(tt.host, tt.site); got != tt.want {
			t.Errorf("SameSite(%q, %q) = %v, want %v", tt.host, tt.site, got, tt.want)
		}
	}
}

func TestSessionTimeout(t *testing.T) {
	r := Defaults()
	r.SessionTimeoutMinutes = 45
	if got := mustCompile(t, r, 1).SessionTimeout(); got != 45*time.Minute {
		t.Fatalf("SessionTimeout = %v", got)
	}
}

func TestAnonymization(t *testing.T) {
	tests := []struct {
		level Anonymization
		in    string
		want  string // "" for nothing stored
	}{
		{AnonymizeStandard, "203.0.113.77", "203.0.113.0"},
		{AnonymizeStandard, "::ffff:203.0.113.77", "203.0.113.0"},
		{AnonymizeStandard, "2001:db8:abcd:1234::1", "2001:db8:abcd::"},
		{AnonymizeStrict, "203.0.113.77", "203.0.0.0"},
		{AnonymizeStrict, "2001:db8:abcd:1234::1", "2001:db8::"},
		{AnonymizeRemove, "203.0.113.77", ""},
	}
	for _, tt := range tests {
		got, ok := tt.level.Apply(netip.MustParseAddr(tt.in))
		if tt.want == "" {
			if ok {
				t.Errorf("%s.Apply(%s) = %s, want nothing", tt.level, tt.in, got)
			}
			continue
		}
		if !ok || got.String() != tt.want {
			t.Errorf("%s.Apply(%s) = %s, %v; want %s", tt.level, tt.in, got, ok, tt.want)
		}
	}
}

func TestAttributionParam(t *testing.T) {
	for name, want := range map[string]bool{"utm_source": true, "UTM_Campaign": true, "gclid": true, "MSCLKID": true, "dclid": true, "fbclid": true,
		"gbraid": true, "wbraid": true, "GBraid": true, "WBRAID": true, "braid": false, "gbraidx": false, "utm": false, "id": false, "gclidx": false} {
		if got := AttributionParam(name); got != want {
			t.Errorf("AttributionParam(%q) = %v", name, got)
		}
	}
}

// A user-agent pattern that is valid alone is valid among the others:
// \Q without \E (a literal user agent with brackets) quoted the rest of
// the alternation the patterns are joined in, and compiling panicked.
func TestUserAgentPatternQuotedToTheEnd(t *testing.T) {
	r := Defaults()
	r.Exclusions.UserAgents = []string{`\QMozilla/5.0 (compatible; Foo)`, "^curl/"}
	c := mustCompile(t, r, 1)
	for ua, want := range map[string]bool{
		"Mozilla/5.0 (compatible; Foo) Bar/1": true,
		"mozilla/5.0 (COMPATIBLE; foo)":       true,
		"curl/8.5":                            true,
		"Mozilla/5.0 (X11; Linux)":            false,
	} {
		reason, excluded := c.Exclusion(&hit.Hit{UserAgent: ua})
		if excluded != want || (excluded && reason != ReasonUserAgent) {
			t.Errorf("%q: excluded %v (%s), want %v", ua, excluded, reason, want)
		}
	}
}

// A hit's stored IP is matched as truncated by the level of the version
// it was collected under, not by the level of the version applied; and a
// hit collected under a later version than the one applied (collection
// learned of it first) keeps collection's decision on its full IP.
func TestIPExclusionAcrossVersions(t *testing.T) {
	with := func(anon Anonymization, ips []string, version int) *Compiled {
		r := Defaults()
		r.IPAnonymization, r.Exclusions.IP = anon, ips
		return mustCompile(t, r, version)
	}
	strict1, standard1 := with(AnonymizeStrict, nil, 1), with(AnonymizeStandard, nil, 1)
	tests := []struct {
		name    string
		applied *Compiled
		h       hit.Hit
		stamped *Compiled
		want    bool
	}{
		// 10.1.57.9 stored as 10.1.0.0 (strict): not known to lie in 10.1.0.0/24.
		{"strict /16 against a /24", with(AnonymizeStandard, []string{"10.1.0.0/24"}, 2), hit.Hit{IP: "10.1.0.0", RuleVersion: 1}, strict1, false},
		{"strict /16 inside a /16", with(AnonymizeStandard, []string{"10.1.0.0/16"}, 2), hit.Hit{IP: "10.1.0.0", RuleVersion: 1}, strict1, true},
		// Stored as a /24 (standard), applied under strict.
		{"standard /24 inside a /24", with(AnonymizeStrict, []string{"10.1.2.0/24"}, 2), hit.Hit{IP: "10.1.2.0", RuleVersion: 1}, standard1, true},
		// The rule that matched, written otherwise in the version applied:
		// still the rule (a mapped address must be rewritten in IPv4 form
		// since Validate refuses it).
		{"mapped address rewritten in IPv4 form", with(AnonymizeStandard, []string{"10.0.0.1"}, 2), hit.Hit{IP: "10.0.0.0", IPExcludedBy: "::ffff:10.0.0.1", RuleVersion: 1}, standard1, true},
		{"IPv6 address in upper case rewritten", with(AnonymizeStandard, []string{"2001:db8::1"}, 2), hit.Hit{IP: "2001:db8::", IPExcludedBy: "2001:DB8::1", RuleVersion: 1}, standard1, true},
		{"a /32 rewritten as its address", with(AnonymizeStandard, []string{"203.0.113.7"}, 2), hit.Hit{IP: "203.0.113.0", IPExcludedBy: "203.0.113.7/32", RuleVersion: 1}, standard1, true},
		{"a prefix rewritten with its zeros in full", with(AnonymizeStandard, []string{"2001:db8:0:0:0:0:0:0/120"}, 2), hit.Hit{IP: "2001:db8::", IPExcludedBy: "2001:db8::/120", RuleVersion: 1}, standard1, true},
		{"the rule removed", with(AnonymizeStandard, []string{"203.0.113.8"}, 2), hit.Hit{IP: "203.0.113.0", IPExcludedBy: "203.0.113.7", RuleVersion: 1}, standard1, false},
		{"collected under a later version, excluded there", with(AnonymizeStandard, nil, 1), hit.Hit{IP: "203.0.113.0", IPExcludedBy: "203.0.113.7", RuleVersion: 2}, nil, true},
		{"collected under a later version, not excluded there", with(AnonymizeStandard, []string{"203.0.113.0/24"}, 1), hit.Hit{IP: "203.0.113.0", RuleVersion: 2}, nil, false},
	}
	for _, tt := range tests {
		_, got := tt.applied.ExclusionStored(&tt.h, tt.stamped)
		if got != tt.want {
			t.Errorf("%s: excluded %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReplacementsCannotBlowAPathUp: replacements that multiply a path's
// length (a template repeating its group; a pattern matching the empty
// string everywhere), which Validate accepts, leave a path of at most
// MaxPathBytes, at once: three of them made a 100-byte path 26 MB, and
// the five the API took, about 100 GB, so the processor applying them ran
// out of memory on every replay of the hit.
func TestReplacementsCannotBlowAPathUp(t *testing.T) {
	for name, rep := range map[string]Replacement{
		"a group repeated":         {Pattern: "^(.*)$", Replace: strings.Repeat("${1}", 64)},
		"the empty string matched": {Pattern: "x*", Replace: strings.Repeat("%41", 20)},
	} {
		// As many as the cost limit accepts.
		r := Defaults()
		var c *Compiled
		for range MaxReplacements {
			r.PagePath.Replacements = append(r.PagePath.Replacements, rep)
			more, err := Validate(r, nil)
			if err != nil {
				break
			}
			c = more
		}
		if c == nil {
			t.Fatalf("%s: refused alone", name)
		}
		got := c.CleanPath("/" + strings.Repeat("a", 99) + "?q=1")
		path, _, _ := strings.Cut(got, "?")
		if len(path) > MaxPathBytes || len(path) < MaxPathBytes-2 {
			t.Errorf("%s: a path of %d bytes, want it cut to %d", name, len(path), MaxPathBytes)
		}
		if strings.HasSuffix(path, "%") || strings.HasSuffix(path[:len(path)-1], "%") {
			t.Errorf("%s: cut inside a %%-escape: ...%s", name, path[len(path)-6:])
		}
	}
}

// TestEscapedPathsAreCut: a dp of 4,096 spaces, as collection keeps it,
// is a path of 12,286 bytes escaped (hit.CanonicalPath); page patterns,
// goals and replacements see no more than MaxPathBytes of it, what the
// cost model counts (three times as much took 3 ms a hit where the
// model's figure for those page patterns was 2.46 ms at 4 KB).
func TestEscapedPathsAreCut(t *testing.T) {
	c, err := Compile(Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := hit.CanonicalPath("/" + strings.Repeat(" ", MaxPathBytes-1))
	got := c.CleanPath(raw + "?q=1")
	path, query, _ := strings.Cut(got, "?")
	if len(path) > MaxPathBytes || len(path) < MaxPathBytes-2 || query != "q=1" {
		t.Fatalf("a path of %d bytes escaped cleans to %d bytes and query %q, want it cut to %d", len(raw), len(path), query, MaxPathBytes)
	}
}

// TestChannelRulesSeeTheFirstBytes: custom channel patterns see the first
// MaxChannelInputBytes of a source, medium or campaign, cut at a character
// boundary, as the cost model charges them.
func TestChannelRulesSeeTheFirstBytes(t *testing.T) {
	r := Defaults()
	r.Channels = []ChannelRule{{Name: "Ends in x", Source: "x$"}, {Name: "Starts with a", Campaign: "^aé+$"}}
	c, err := Validate(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("s", MaxChannelInputBytes) + "x"
	if name, ok := c.Channel(long, "", ""); ok {
		t.Errorf("a source whose x is past the first %d bytes is in channel %q", MaxChannelInputBytes, name)
	}
	if name, ok := c.Channel(long[1:], "", ""); !ok || name != "Ends in x" {
		t.Errorf("a source of %d bytes ending in x: channel %q, %v", len(long)-1, name, ok)
	}
	// 1 + 2×128 bytes: cut inside the last é, which goes whole.
	if name, ok := c.Channel("", "", "a"+strings.Repeat("é", 128)); !ok || name != "Starts with a" {
		t.Errorf("a campaign cut inside a character: channel %q, %v", name, ok)
	}
}
