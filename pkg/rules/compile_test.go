package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/hit"
)

func ptr[T any](v T) *T { return &v }

func TestDefaultsCompile(t *testing.T) {
	c, err := Compile(Defaults(), 1, nil)
	if err != nil {
		t.Fatalf("the defaults do not compile: %v", err)
	}
	if c.SessionTimeout().Minutes() != 30 || !c.BotFiltering() || c.IPAnonymization() != AnonymizeStandard {
		t.Fatalf("defaults = timeout %v, bots %v, anonymization %q", c.SessionTimeout(), c.BotFiltering(), c.IPAnonymization())
	}
}

// TestValidate checks that every kind of bad input names its field and
// says why.
func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(r *Rules)
		hosts     []string
		wantField string
		wantIn    string // part of the reason
		expensive bool
	}{
		{"bad CIDR", func(r *Rules) { r.Exclusions.IP = []string{"10.0.0.1", "192.168.0.0/16", "10.0.0.0/33"} }, nil,
			"exclusions.ip[2]", `"10.0.0.0/33" is not a CIDR`, false},
		{"host bits set", func(r *Rules) { r.Exclusions.IP = []string{"10.1.2.3/8"} }, nil,
			"exclusions.ip[0]", `did you mean "10.0.0.0/8"`, false},
		{"not an address", func(r *Rules) { r.Exclusions.IP = []string{"office"} }, nil,
			"exclusions.ip[0]", "neither an IP address nor a CIDR", false},
		{"whole internet", func(r *Rules) { r.Exclusions.IP = []string{"0.0.0.0/0"} }, nil,
			"exclusions.ip[0]", "large part of the internet", false},
		{"v6 too short", func(r *Rules) { r.Exclusions.IP = []string{"2000::/3"} }, nil,
			"exclusions.ip[0]", "shortest prefix accepted is /16", false},
		{"IPv4-mapped address", func(r *Rules) { r.Exclusions.IP = []string{"203.0.113.7", "::ffff:10.0.0.1"} }, nil,
			"exclusions.ip[1]", `"::ffff:10.0.0.1" is an IPv4-mapped IPv6 address; write it in IPv4 form: "10.0.0.1"`, false},
		{"IPv4-mapped prefix", func(r *Rules) { r.Exclusions.IP = []string{"::ffff:10.0.0.0/104"} }, nil,
			"exclusions.ip[0]", "IPv4-mapped IPv6 prefix; write it in IPv4 form", false},
		{"duplicate IP", func(r *Rules) { r.Exclusions.IP = []string{"10.0.0.0/8", "10.0.0.0/8"} }, nil,
			"exclusions.ip[1]", "repeats exclusions.ip[0]", false},
		{"bad user agent regex", func(r *Rules) { r.Exclusions.UserAgents = []string{"Headless(Chrome"} }, nil,
			"exclusions.user_agents[0]", "not a valid regular expression: missing closing )", false},
		{"empty pattern", func(r *Rules) { r.Exclusions.UserAgents = []string{""} }, nil,
			"exclusions.user_agents[0]", "is empty", false},
		{"duplicate user agent", func(r *Rules) { r.Exclusions.UserAgents = []string{"Headless", "bot", "Headless"} }, nil,
			"exclusions.user_agents[2]", "repeats exclusions.user_agents[0]", false},
		{"user agent repeated in another case", func(r *Rules) { r.Exclusions.UserAgents = []string{"HeadlessChrome", "bot", "headlesschrome"} }, nil,
			"exclusions.user_agents[2]", "repeats exclusions.user_agents[0]", false},
		{"duplicate page pattern", func(r *Rules) { r.Pages.Exclude = []string{"^/admin", "^/admin"} }, nil,
			"pages.exclude[1]", "repeats pages.exclude[0]", false},
		{"referral exclusion repeated with www.", func(r *Rules) { r.ReferralExclusions = []string{"paypal.com", "WWW.PayPal.com"} }, nil,
			"referral_exclusions[1]", "repeats referral_exclusions[0]", false},
		{"default page a directory", func(r *Rules) { r.PagePath.DefaultPage = ".." }, nil,
			"page_path.default_page", "names a directory", false},
		{"referral exclusion of one label", func(r *Rules) { r.ReferralExclusions = []string{"paypal.com", "com"} }, nil,
			"referral_exclusions[1]", "name of one label", false},
		{"lower-case country", func(r *Rules) { r.Exclusions.Countries = []string{"de"} }, nil,
			"exclusions.countries[0]", `must be in upper case: "DE"`, false},
		{"unknown country", func(r *Rules) { r.Exclusions.Countries = []string{"XX"} }, nil,
			"exclusions.countries[0]", "not an ISO 3166-1 alpha-2", false},
		{"keep params without strip", func(r *Rules) { r.PagePath.KeepParams = []string{"id"} }, nil,
			"page_path.keep_params", "only applies when page_path.strip_query", false},
		{"param with =", func(r *Rules) { r.PagePath.StripQuery = true; r.PagePath.KeepParams = []string{"a=b"} }, nil,
			"page_path.keep_params[0]", "parameter name alone", false},
		{"default page with slash", func(r *Rules) { r.PagePath.DefaultPage = "/index.html" }, nil,
			"page_path.default_page", "without a slash", false},
		{"bad replacement regex", func(r *Rules) { r.PagePath.Replacements = []Replacement{{Pattern: "[a-", Replace: "x"}} }, nil,
			"page_path.replacements[0].pattern", "missing closing ]", false},
		{"ambiguous group reference", func(r *Rules) {
			r.PagePath.Replacements = []Replacement{{Pattern: `^/p/(\d+)`, Replace: "/p/$1x"}}
		}, nil, "page_path.replacements[0].replace", "write ${1} to refer to group 1", false},
		{"missing group", func(r *Rules) { r.PagePath.Replacements = []Replacement{{Pattern: `^/p/(\d+)`, Replace: "${2}"}} }, nil,
			"page_path.replacements[0].replace", "refers to group 2 but the pattern has 1", false},
		{"bad page include", func(r *Rules) { r.Pages.Include = []string{"*"} }, nil,
			"pages.include[0]", "missing argument to repetition operator", false},
		{"bad page exclude", func(r *Rules) { r.Pages.Exclude = []string{`\p{Nope}`} }, nil,
			"pages.exclude[0]", "invalid character class range", false},
		{"anonymization", func(r *Rules) { r.IPAnonymization = "none" }, nil,
			"ip_anonymization", `"none" is not a level`, false},
		{"timeout zero", func(r *Rules) { r.SessionTimeoutMinutes = 0 }, nil,
			"session_timeout_minutes", "0 is out of range", false},
		{"timeout huge", func(r *Rules) { r.SessionTimeoutMinutes = 10000 }, nil,
			"session_timeout_minutes", "10000 is out of range", false},
		{"referral URL", func(r *Rules) { r.ReferralExclusions = []string{"https://paypal.com/"} }, nil,
			"referral_exclusions[0]", "looks like a URL", false},
		{"referral wildcard", func(r *Rules) { r.ReferralExclusions = []string{"*.paypal.com"} }, nil,
			"referral_exclusions[0]", "subdomains of a host are always included", false},
		{"hostname with port", nil, []string{"example.com", "shop.example.com:8080"},
			"hostnames[1]", "without a port", false},
		{"hostname unicode", nil, []string{"bücher.de"},
			"hostnames[0]", "punycode", false},
		{"hostname underscore", nil, []string{"my_site.com"},
			"hostnames[0]", "not a valid host name", false},
		{"goal id", func(r *Rules) { r.Goals = []Goal{{ID: "Sign Up", Name: "x", PagePath: "^/x"}} }, nil,
			"goals[0].id", "lowercase letters", false},
		{"goal duplicate id", func(r *Rules) {
			r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "^/a"}, {ID: "a", Name: "B", PagePath: "^/b"}}
		}, nil, "goals[1].id", "already the id of goals[0]", false},
		{"goal without name", func(r *Rules) { r.Goals = []Goal{{ID: "a", PagePath: "^/a"}} }, nil,
			"goals[0].name", "is empty", false},
		{"goal name with a control character", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "Sign\nup", PagePath: "^/a"}} }, nil,
			"goals[0].name", `has the character U+000A`, false},
		{"channel name with a control character", func(r *Rules) { r.Channels = []ChannelRule{{Name: "Partners\x00", Source: "^partner$"}} }, nil,
			"channels[0].name", `has the character U+0000`, false},
		{"channel name with a text direction control", func(r *Rules) { r.Channels = []ChannelRule{{Name: "Partners\u202e", Source: "^partner$"}} }, nil,
			"channels[0].name", `has the character U+202E`, false},
		{"goal both kinds", func(r *Rules) {
			r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "^/a", Event: &EventMatch{Action: "buy"}}}
		}, nil, "goals[0]", "has both page_path and event", false},
		{"goal neither kind", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "A"}} }, nil,
			"goals[0]", "needs page_path", false},
		{"goal empty event", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "A", Event: &EventMatch{}}} }, nil,
			"goals[0].event", "needs a category, an action or both", false},
		{"goal bad regex", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "(?P<x"}} }, nil,
			"goals[0].page_path", "not a valid regular expression", false},
		{"goal negative value", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "^/a", Value: ptr(-1.0)}} }, nil,
			"goals[0].value", "-1 is out of range", false},
		{"goal action longer than collection keeps", func(r *Rules) {
			r.Goals = []Goal{{ID: "a", Name: "A", Event: &EventMatch{Action: strings.Repeat("a", 501)}}}
		}, nil, "goals[0].event.action", "longer than 500 bytes", false},
		{"page pattern with a character paths never hold", func(r *Rules) { r.Pages.Exclude = []string{"^/café$"} }, nil,
			"pages.exclude[0]", `can never match "é": paths hold it percent-encoded, as "%C3%A9"`, false},
		{"goal pattern with a space", func(r *Rules) { r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "^/thank you$"}} }, nil,
			"goals[0].page_path", `can never match " ": paths hold it percent-encoded, as "%20"`, false},
		{"replacement pattern with a quoted pipe", func(r *Rules) { r.PagePath.Replacements = []Replacement{{Pattern: `a\|b`, Replace: "x"}} }, nil,
			"page_path.replacements[0].pattern", `can never match "|": paths hold it percent-encoded, as "%7C"`, false},
		{"page pattern with a fragment", func(r *Rules) { r.Pages.Include = []string{"^/faq#top"} }, nil,
			"pages.include[0]", `can never match "#": the fragment is never part of a path`, false},
		{"page pattern with a query", func(r *Rules) { r.Pages.Exclude = []string{`^/search\?q=`} }, nil,
			"pages.exclude[0]", `can never match "?": page patterns see the path without its query`, false},
		{"page pattern with lower-case escapes", func(r *Rules) { r.Pages.Include = []string{"^/caf%c3%a9"} }, nil,
			"pages.include[0]", `can never match "%c3": paths hold escapes in upper-case hex, as "%C3"`, false},
		{"upper-case page pattern under lowercase", func(r *Rules) {
			r.PagePath.Lowercase = true
			r.Goals = []Goal{{ID: "a", Name: "A", PagePath: "^/Thanks$"}}
		}, nil, "goals[0].page_path", `can never match "T": page_path.lowercase is on`, false},
		{"user agent pattern with an empty alternative", func(r *Rules) { r.Exclusions.UserAgents = []string{"HeadlessChrome|"} }, nil,
			"exclusions.user_agents[0]", "matches every user agent", false},
		{"user agent pattern of the empty user agent", func(r *Rules) { r.Exclusions.UserAgents = []string{"^$"} }, nil,
			"exclusions.user_agents[0]", "matches an empty user agent", false},
		{"channel without condition", func(r *Rules) { r.Channels = []ChannelRule{{Name: "Partners"}} }, nil,
			"channels[0]", "needs at least one of source", false},
		{"channel without name", func(r *Rules) { r.Channels = []ChannelRule{{Source: "x"}} }, nil,
			"channels[0].name", "is empty", false},
		{"channel bad regex", func(r *Rules) { r.Channels = []ChannelRule{{Name: "P", Medium: "a{2,1}"}} }, nil,
			"channels[0].medium", "invalid repeat count", false},
		{"too many IPs", func(r *Rules) {
			for i := range MaxIPRules + 1 {
				r.Exclusions.IP = append(r.Exclusions.IP, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
			}
		}, nil, "exclusions.ip", "has 501 entries; the limit is 500", true},
		{"pattern too long", func(r *Rules) { r.Pages.Exclude = []string{strings.Repeat("a", MaxPatternLength+1)} }, nil,
			"pages.exclude[0]", "the limit is 256", true},
		{"pattern too big compiled", func(r *Rules) { r.Pages.Exclude = []string{`(\w+\s*){300}x`} }, nil,
			"pages.exclude[0]", "more than the 1000 one pattern may use", true},
		{"rule set too big in total", func(r *Rules) {
			for i := range 40 {
				r.Exclusions.UserAgents = append(r.Exclusions.UserAgents, fmt.Sprintf(`bot%d[a-z]{0,20}[a-z]{0,20}~`, i))
			}
		}, nil, "exclusions.user_agents", fmt.Sprintf("more than the %d that can be evaluated on every hit", MaxCost), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Defaults()
			if tt.edit != nil {
				tt.edit(&r)
			}
			_, err := Validate(r, tt.hosts)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			found := false
			for _, f := range ve.Fields {
				if f.Field == tt.wantField && strings.Contains(f.Reason, tt.wantIn) {
					found = true
				}
			}
			if !found {
				t.Fatalf("errors %q lack field %s with reason containing %q", ve.Error(), tt.wantField, tt.wantIn)
			}
			if got := errors.Is(err, ErrTooExpensive); got != tt.expensive {
				t.Fatalf("errors.Is(err, ErrTooExpensive) = %v, want %v (%v)", got, tt.expensive, err)
			}
		})
	}
}

func TestValidateAcceptsAFullRuleSet(t *testing.T) {
	r := fullRules()
	v, err := Validate(r, []string{"Example.com", "shop.example.org."})
	if err != nil {
		t.Fatal(err)
	}
	if v.Cost() == 0 || v.Cost() > MaxCost {
		t.Fatalf("cost %d", v.Cost())
	}
	c, err := Compile(r, 7, []string{"Example.com", "shop.example.org."})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 7 {
		t.Fatalf("version %d", c.Version())
	}
	if got := strings.Join(c.Hostnames(), ","); got != "example.com,shop.example.org" {
		t.Fatalf("hostnames = %s, want them normalised", got)
	}
}

// fullRules uses every field.
func fullRules() Rules {
	r := Defaults()
	r.Exclusions = Exclusions{
		IP:         []string{"10.0.0.0/8", "203.0.113.7", "2001:db8::/32", "198.51.100.0/24"},
		UserAgents: []string{"HeadlessChrome", `^curl/`},
		Countries:  []string{"KP", "XK"},
	}
	r.PagePath = PagePath{
		StripQuery:         true,
		KeepParams:         []string{"id", "q"},
		Lowercase:          true,
		DefaultPage:        "index.html",
		Replacements:       []Replacement{{Pattern: `^/product/\d+`, Replace: "/product/:id"}, {Pattern: `^/u/(?P<user>[^/]+)/(\w+)`, Replace: "/u/:user/${2}"}},
		StripTrailingSlash: true,
	}
	r.Pages = Pages{Include: []string{"^/"}, Exclude: []string{"^/admin(/|$)"}}
	r.ReferralExclusions = []string{"paypal.com", "checkout.stripe.com"}
	r.Goals = []Goal{
		{ID: "signup", Name: "Signed up", PagePath: "^/welcome$", Value: ptr(5.0)},
		{ID: "purchase", Name: "Purchase", Event: &EventMatch{Category: "shop", Action: "purchase"}},
		{ID: "any-download", Name: "Download", Event: &EventMatch{Action: "download"}},
	}
	r.Channels = []ChannelRule{
		{Name: "Partners", Source: `^(partner-a|partner-b)\.com$`},
		{Name: "Newsletter", Medium: "^email$", Campaign: "^newsletter"},
	}
	return r
}

// TestCompileReadsAStoredMappedAddress: Validate refuses ::ffff:10.0.0.1,
// but a version stored before it did must still compile (collection and
// processing compile every version kept) and exclude what it excluded.
func TestCompileReadsAStoredMappedAddress(t *testing.T) {
	r := Defaults()
	r.Exclusions.IP = []string{"::ffff:10.0.0.1"}
	c, err := Compile(r, 3, nil)
	if err != nil {
		t.Fatalf("Compile of a stored version: %v", err)
	}
	for _, addr := range []string{"10.0.0.1", "::ffff:10.0.0.1"} {
		if id, ok := c.MatchIP(netip.MustParseAddr(addr)); !ok || id != "::ffff:10.0.0.1" {
			t.Errorf("MatchIP(%s) = %q, %v; want the entry as written", addr, id, ok)
		}
	}
}

// TestValidateAcceptsPatternsOfEncodedPaths: page patterns written for the
// form paths are stored in (docs/collection.md) are accepted, and so are
// those whose characters a path can hold after all: in a class that also
// matches others, folded by (?i), or written by a replacement.
func TestValidateAcceptsPatternsOfEncodedPaths(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(r *Rules)
		path    string // a path the pattern must see, as collection stores it
		exclude bool
	}{
		{"encoded non-ASCII", func(r *Rules) { r.Pages.Exclude = []string{"^/caf%C3%A9$"} }, "/café", true},
		{"encoded space", func(r *Rules) { r.Pages.Exclude = []string{"^/thank%20you$"} }, "/thank you", true},
		{"any escape", func(r *Rules) { r.Pages.Exclude = []string{"%[0-9A-Fa-f]{2}"} }, "/a b", true},
		{"lower-case escape folded", func(r *Rules) { r.Pages.Exclude = []string{"(?i)^/caf%c3%a9$"} }, "/CAF%c3%a9", true},
		{"negated class", func(r *Rules) { r.Pages.Exclude = []string{"^/[^ é]+$"} }, "/docs", true},
		{"escapes under lowercase", func(r *Rules) {
			r.PagePath.Lowercase = true
			r.Pages.Exclude = []string{"^/caf%C3%A9$"}
		}, "/CAFé", true},
		{"upper case folded under lowercase", func(r *Rules) {
			r.PagePath.Lowercase = true
			r.Pages.Exclude = []string{"(?i)^/Thanks$"}
		}, "/THANKS", true},
		{"upper case written by a replacement under lowercase", func(r *Rules) {
			r.PagePath.Lowercase = true
			r.PagePath.Replacements = []Replacement{{Pattern: "^/p/", Replace: "/P/"}}
			r.Pages.Exclude = []string{"^/P/"}
		}, "/p/1", true},
		{"written by a replacement", func(r *Rules) {
			r.PagePath.Replacements = []Replacement{{Pattern: "^/cafe$", Replace: "/café"}}
			r.Pages.Exclude = []string{"^/café$"}
		}, "/cafe", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Defaults()
			tt.edit(&r)
			c, err := Validate(r, nil)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := !c.PageIncluded(c.CleanPath(hit.CanonicalPath(tt.path))); got != tt.exclude {
				t.Fatalf("%q excluded = %v, want %v", tt.path, got, tt.exclude)
			}
		})
	}
}

// TestCompileReadsStoredPatternsValidateRefuses: versions stored before
// Validate refused patterns that can never match, or that match every user
// agent, still compile in the pipeline and do what they did.
func TestCompileReadsStoredPatternsValidateRefuses(t *testing.T) {
	r := Defaults()
	r.Exclusions.UserAgents = []string{"HeadlessChrome|"}
	r.Pages.Exclude = []string{"^/café$"}
	c, err := Compile(r, 3, nil)
	if err != nil {
		t.Fatalf("Compile of a stored version: %v", err)
	}
	if reason, _ := c.Exclusion(&hit.Hit{UserAgent: "Mozilla/5.0"}); reason != ReasonUserAgent {
		t.Errorf("a stored pattern with an empty alternative excludes %q, want every user agent as before", reason)
	}
}

// TestStoredNamesWithControlCharacters: a goal or channel name holding a
// control character is refused when sent (TestValidate), and a version
// stored before that check still compiles, its names read as they are.
func TestStoredNamesWithControlCharacters(t *testing.T) {
	stored := Defaults()
	stored.Goals = []Goal{{ID: "a", Name: "Sign\tup", PagePath: "^/a"}}
	stored.Channels = []ChannelRule{{Name: "Partners\r", Source: "^partner$"}}
	if _, err := Compile(stored, 3, nil); err != nil {
		t.Fatalf("a stored version with control characters in names: %v, want it compiled", err)
	}
}

// TestValidHostTakesUnderscores: a hit's page may be on a host with '_' in
// a label (browsers load them), which a merchant's configuration does not
// take; neither takes other characters DNS refuses.
func TestValidHostTakesUnderscores(t *testing.T) {
	for host, ok := range map[string]bool{"my_shop.shop.example": true, "_dmarc.shop.example": true, "shop.example": true,
		"my shop.example": false, "my$shop.example": false, "-shop.example": false} {
		if got := ValidHost(host); (got == "") != ok {
			t.Errorf("ValidHost(%q) = %q, want accepted %v", host, got, ok)
		}
	}
	if ValidSiteHost("my_shop.shop.example") == "" {
		t.Error("ValidSiteHost took a host name with '_'")
	}
}

// TestValidSiteHost: a site's name in a configuration may not be one label
// (it would take in every host under it) but localhost or an address;
// a stored version holding one still compiles, read as it was.
func TestValidSiteHost(t *testing.T) {
	for host, ok := range map[string]bool{"com": false, "paypal": false, "COM.": false, "localhost": true, "shop.example": true,
		"127.0.0.1": true, "::1": true, "www.shop.example": true} {
		if got := ValidSiteHost(host); (got == "") != ok {
			t.Errorf("ValidSiteHost(%q) = %q, want accepted %v", host, got, ok)
		}
	}
	stored := Defaults()
	stored.ReferralExclusions = []string{"com"}
	if _, err := Compile(stored, 3, nil); err != nil {
		t.Errorf("a stored version with a referral exclusion of one label: %v, want it compiled", err)
	}
	// So does one that repeats an entry, read as the one before it.
	stored = Defaults()
	stored.Exclusions.UserAgents = []string{"Headless", "Headless"}
	stored.Exclusions.IP = []string{"10.0.0.1", "10.0.0.1/32"}
	stored.Pages.Include = []string{"^/shop", "^/shop"}
	stored.ReferralExclusions = []string{"paypal.com", "www.paypal.com"}
	c, err := Compile(stored, 4, nil)
	if err != nil {
		t.Fatalf("a stored version repeating entries: %v, want it compiled", err)
	}
	if !c.userAgentExcluded("Mozilla Headless") {
		t.Errorf("a stored version repeating a user agent pattern no longer excludes it")
	}
}

// User-agent patterns are matched without regard to case, so two that
// differ only in the case of their letters repeat each other (TestValidate);
// patterns whose case carries meaning (\d and \D, \w and \W) do not.
func TestUserAgentPatternsDifferingInMeaningAreNoRepeat(t *testing.T) {
	r := Defaults()
	r.Exclusions.UserAgents = []string{`\d+bot`, `\D+bot`, `\w+spider`, `\W+spider`, `[a-z]crawler`, `[A-Z]crawler`}
	c, err := Validate(r, nil)
	if err == nil {
		// [a-z] and [A-Z] fold to the same class: the last is a repeat.
		t.Fatal("[a-z]crawler and [A-Z]crawler, alike without regard to case, were both accepted")
	}
	var fe FieldError
	if !errors.As(err, &fe) || fe.Field != "exclusions.user_agents[5]" {
		t.Fatalf("compile: %v, want only exclusions.user_agents[5] refused", err)
	}
	r.Exclusions.UserAgents = r.Exclusions.UserAgents[:4]
	if c, err = Validate(r, nil); err != nil {
		t.Fatalf("compile: %v", err)
	}
	if !c.userAgentExcluded("Mozilla 5bot") || !c.userAgentExcluded("Mozilla xbot") {
		t.Fatal(`\d+bot and \D+bot do not both exclude`)
	}
}

// TestPatternsThatCouldNeverMatch: a document whose page pattern, goal
// or default page could never match what it is compared with is refused
// when sent, saying so. A goal on text after a "?" that a replacement
// writes was accepted (the "?" a replacement writes was exempt from the
// refusal of a "?" in a page pattern), but page patterns and goals see
// the path before its query, so the goal never converted; a default_page
// holding a character paths hold percent-encoded (café.html, a|b.html)
// was accepted and never matched.
func TestPatternsThatCouldNeverMatch(t *testing.T) {
	r := Defaults()
	r.PagePath.Replacements = []Replacement{{Pattern: `^/p/(\d+)$`, Replace: "/p?id=${1}"}}
	r.Goals = []Goal{{ID: "p5", Name: "Product 5", PagePath: `^/p\?id=5$`}}
	if _, err := Validate(r, nil); err == nil || !strings.Contains(err.Error(), "goals[0]") {
		t.Errorf("a goal on a query a replacement writes: %v; want it refused", err)
	}
	for _, dp := range []string{"café.html", "a|b.html", "a^b.html"} {
		r := Defaults()
		r.PagePath.DefaultPage = dp
		_, err := Validate(r, nil)
		if want := hit.CanonicalPath(dp); err == nil || !strings.Contains(err.Error(), strconv.Quote(want)) {
			t.Errorf("default_page %q: %v; want it refused, naming %q", dp, err, want)
		}
		r.PagePath.DefaultPage = hit.CanonicalPath(dp)
		c, err := Validate(r, nil)
		if err != nil {
			t.Fatalf("default_page %q: %v", r.PagePath.DefaultPage, err)
		}
		if got := c.CleanPath(hit.CanonicalPath("/docs/" + dp)); got != "/docs/" {
			t.Errorf("default_page %q: /docs/%s cleaned to %q, want /docs/", r.PagePath.DefaultPage, dp, got)
		}
	}
}

// TestIPRuleSuggestions: a refused IP rule's suggestion is one that would
// be accepted: the IPv4 form of an IPv4-mapped prefix (it was not given),
// and a prefix with host bits is told its masked form only when that is
// long enough (10.1.2.3/4 was told "did you mean 0.0.0.0/4?", itself
// refused as too short).
func TestIPRuleSuggestions(t *testing.T) {
	for _, c := range []struct{ rule, want, not string }{
		{"::ffff:10.0.0.0/104", `write it in IPv4 form: "10.0.0.0/8"`, ""},
		{"::ffff:0.0.0.0/100", "shorter than /8", "IPv4 form: "},
		{"10.1.2.3/4", "the shortest prefix accepted is /8", "did you mean"},
		{"10.1.2.3/16", `did you mean "10.1.0.0/16"?`, ""},
	} {
		r := Defaults()
		r.Exclusions.IP = []string{c.rule}
		_, err := Validate(r, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || c.not != "" && strings.Contains(err.Error(), c.not) {
			t.Errorf("%s: %v; want it refused saying %q", c.rule, err, c.want)
		}
	}
}

// TestKeepParamsWrittenDecoded: keep_params names are compared decoded,
// so one written encoded ("%69d", "a+b") is refused, naming the decoded
// form; it was accepted and kept nothing.
func TestKeepParamsWrittenDecoded(t *testing.T) {
	for _, c := range []struct{ name, want string }{{"%69d", `write "id"`}, {"a+b", `write "a b"`}, {"a%zz", "no escape"}} {
		r := Defaults()
		r.PagePath.StripQuery = true
		r.PagePath.KeepParams = []string{c.name}
		if _, err := Validate(r, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("keep_params %q: %v; want it refused saying %q", c.name, err, c.want)
		}
	}
	r := Defaults()
	r.PagePath.StripQuery = true
	r.PagePath.KeepParams = []string{"id"}
	c, err := Validate(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CleanPath("/a?%69d=2&x=1"); got != "/a?%69d=2" {
		t.Errorf("keep_params id: /a?%%69d=2&x=1 cleaned to %q, want /a?%%69d=2", got)
	}
}

// TestTrailingSlashPatternUnderStrip: with strip_trailing_slash no
// cleaned path but "/" ends in "/", so a page pattern requiring one at its
// end is refused when sent (it was accepted and never matched); one that
// the root matches, or without the clean-up, is accepted.
func TestTrailingSlashPatternUnderStrip(t *testing.T) {
	for _, c := range []struct {
		pattern string
		strip   bool
		refused bool
	}{
		{`^/admin/$`, true, true},
		{`/blog/$`, true, true},
		{`^/$`, true, false},
		{`/$`, true, false},
		{`^/admin/`, true, false},
		{`^/admin/$`, false, false},
	} {
		r := Defaults()
		r.PagePath.StripTrailingSlash = c.strip
		r.Pages.Exclude = []string{c.pattern}
		_, err := Validate(r, nil)
		if refused := err != nil && strings.Contains(err.Error(), "strip_trailing_slash"); refused != c.refused || !c.refused && err != nil {
			t.Errorf("%s (strip %v): %v; want refused %v", c.pattern, c.strip, err, c.refused)
		}
	}
}
