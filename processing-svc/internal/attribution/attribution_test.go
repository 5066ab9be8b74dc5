package attribution

import (
	"testing"
	"unicode/utf8"
)

func TestDefaultChannel(t *testing.T) {
	tests := []struct {
		source, medium, campaign string
		want                     string
	}{
		{"(direct)", "(none)", "(direct)", Direct},
		{"(direct)", "(not set)", "", Direct},
		{"google", "cpc", "summer cross-network push", CrossNetwork},
		{"amazon", "cpc", "", PaidShopping},
		{"newsletter", "paid", "summer-shop", PaidShopping},
		{"google", "cpc", "", PaidSearch},
		{"bing", "ppc", "", PaidSearch},
		{"duckduckgo", "paid_search", "", PaidSearch},
		{"facebook", "cpc", "", PaidSocial},
		{"m.facebook.com", "paid-social", "", PaidSocial},
		{"youtube", "cpv", "", PaidVideo},
		{"someadnet", "display", "", Display},
		{"someadnet", "cpm", "", Display},
		{"someadnet", "banner", "", Display},
		{"someadnet", "retargeting", "", PaidOther},
		{"ebay.com", "referral", "", OrganicShopping},
		{"partner", "referral", "shopping-week", OrganicShopping},
		{"l.facebook.com", "referral", "(referral)", OrganicSocial},
		{"t.co", "referral", "", OrganicSocial},
		{"forum", "social", "", OrganicSocial},
		{"youtube.com", "referral", "", OrganicVideo},
		{"partner", "video", "", OrganicVideo},
		{"google", "organic", "(organic)", OrganicSearch},
		{"www.google.co.uk", "referral", "", OrganicSearch},
		{"sites.google.com", "referral", "(referral)", OrganicSocial},
		{"groups.google.com", "referral", "(referral)", OrganicSocial},
		{"cafe.naver.com", "referral", "(referral)", OrganicSocial},
		{"shopping.yahoo.com", "referral", "(referral)", OrganicShopping},
		{"shopping.google.com", "referral", "(referral)", OrganicShopping},
		{"mail.google.com", "referral", "(referral)", Referral},
		{"accounts.google.com", "referral", "(referral)", Referral},
		{"someblog", "organic", "", OrganicSearch},
		{"example.com", "referral", "(referral)", Referral},
		{"myapp", "app", "", Referral},
		{"newsletter", "email", "", Email},
		{"e-mail", "whatever", "", Email},
		{"partner", "affiliate", "", Affiliates},
		{"spotify", "audio", "", Audio},
		{"sms", "text", "", SMS},
		{"vendor", "web-push", "", MobilePush},
		{"vendor", "mobile-notification", "", MobilePush},
		{"firebase", "x", "", MobilePush},
		{"something", "else", "", Unassigned},
		{"(not set)", "(not set)", "launch", Unassigned},
		{"GOOGLE", "CPC", "", PaidSearch}, // case-insensitive
	}
	for _, tt := range tests {
		if got := DefaultChannel(tt.source, tt.medium, tt.campaign); got != tt.want {
			t.Errorf("DefaultChannel(%q, %q, %q) = %q, want %q", tt.source, tt.medium, tt.campaign, got, tt.want)
		}
	}
}

func TestAttribute(t *testing.T) {
	own := func(h string) bool { return h == "shop.example" || h == "checkout.stripe.com" }
	tests := []struct {
		name, url, referrer string
		want                Touch
	}{
		{"nothing is direct", "https://shop.example/", "", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		{"own host is direct", "https://shop.example/b", "https://shop.example/a", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		{"excluded referrer is direct", "https://shop.example/thanks", "https://checkout.stripe.com/pay", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		{"search engine", "https://shop.example/", "https://www.google.com/", Touch{"google", "organic", "(organic)", "", "", "google.com"}},
		{"search engine ccTLD", "https://shop.example/", "https://www.google.co.uk/search?q=x", Touch{"google", "organic", "(organic)", "", "", "google.co.uk/search"}},
		{"referral", "https://shop.example/", "https://blog.example.org/post/1?utm=x", Touch{"blog.example.org", "referral", "(referral)", "", "", "blog.example.org/post/1"}},
		{"utm beats referrer", "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=may&utm_term=t&utm_content=c", "https://www.google.com/",
			Touch{"news", "email", "may", "t", "c", "google.com"}},
		{"utm source only", "https://shop.example/?utm_source=partner", "", Touch{"partner", "(not set)", "(not set)", "", "", "(none)"}},
		{"gclid beats utm", "https://shop.example/?gclid=abc&utm_source=news&utm_medium=email&utm_campaign=may", "", Touch{"google", "cpc", "may", "", "", "(none)"}},
		{"msclkid", "https://shop.example/?msclkid=zz", "https://www.bing.com/", Touch{"bing", "cpc", "(not set)", "", "", "bing.com"}},
		// Google Ads tags an iOS click with gbraid or wbraid instead of
		// gclid; GA4 attributes them alike.
		{"gbraid", "https://shop.example/landing?gbraid=0AAAAA", "", Touch{"google", "cpc", "(not set)", "", "", "(none)"}},
		{"wbraid beats utm", "https://shop.example/?wbraid=Cj0K&utm_source=news&utm_medium=email&utm_campaign=ios", "https://www.google.com/",
			Touch{"google", "cpc", "ios", "", "", "google.com"}},
		{"gbraid beats msclkid", "https://shop.example/?msclkid=zz&gbraid=0AAAAA", "", Touch{"google", "cpc", "(not set)", "", "", "(none)"}},
		{"a search brand's other service is a referral", "https://shop.example/", "https://mail.google.com/mail/u/0/",
			Touch{"mail.google.com", "referral", "(referral)", "", "", "mail.google.com/mail/u/0/"}},
		{"a search brand's social site", "https://shop.example/", "https://sites.google.com/view/club",
			Touch{"sites.google.com", "referral", "(referral)", "", "", "sites.google.com/view/club"}},
		{"not a URL referrer", "https://shop.example/", "android", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		{"an Android app's referrer", "https://shop.example/", "android-app://com.slack/", Touch{"com.slack", "referral", "(referral)", "", "", "com.slack"}},
		{"a relative referrer", "https://shop.example/", "/relative/path", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		{"another scheme", "https://shop.example/", "ftp://files.example.org/", Touch{"(direct)", "(none)", "(direct)", "", "", "(none)"}},
		// A browser keeps a % that escapes nothing as it is (document.referrer
		// of https://blog.example/100%-free); url.Parse refused it, which
		// made the session direct.
		{"a referrer path with a bare %", "https://shop.example/", "https://blog.example/100%-free",
			Touch{"blog.example", "referral", "(referral)", "", "", "blog.example/100%25-free"}},
		{"a search referrer with a bare %", "https://shop.example/", "https://www.google.com/search%",
			Touch{"google", "organic", "(organic)", "", "", "google.com/search%25"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Attribute(CampaignFromURL(tt.url), tt.referrer, own)
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCampaignSame(t *testing.T) {
	a := CampaignFromURL("/?utm_source=a&utm_medium=b&utm_content=x")
	b := CampaignFromURL("/?utm_source=a&utm_medium=b&utm_content=y")
	if !a.Same(b) {
		t.Error("utm_content must not split sessions")
	}
	if a.Same(CampaignFromURL("/?gclid=1")) || CampaignFromURL("/?gclid=1").Same(CampaignFromURL("/?gclid=2")) {
		t.Error("a different click ID is a different campaign")
	}
	if CampaignFromURL("/?gbraid=1").Same(CampaignFromURL("/?gbraid=2")) || CampaignFromURL("/?gclid=1").Same(CampaignFromURL("/?wbraid=2")) {
		t.Error("a different gbraid or wbraid is a different campaign")
	}
	// The click ID compared is the one attribution reads: gclid, else
	// gbraid, else wbraid.
	if both := CampaignFromURL("/?gclid=1&wbraid=2"); !both.Same(CampaignFromURL("/?gclid=1")) || both.Same(CampaignFromURL("/?wbraid=2")) {
		t.Error("gclid must come before wbraid")
	}
	if !CampaignFromURL("/a").Empty() || CampaignFromURL("/?utm_campaign=x").Empty() || CampaignFromURL("/?wbraid=x").Empty() {
		t.Error("Empty is wrong")
	}
}

// CampaignFromURL reads the parameters whether spelled out or escaped, and
// finds none in a query without them.
func TestCampaignFromURLQueries(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want Campaign
	}{
		{"/p?x=1&y=2#utm_source=frag", Campaign{}},
		// A '?' in the fragment starts no query: the location has none.
		{"/p#x?utm_source=frag&utm_medium=cpc", Campaign{}},
		{"https://shop.example/#/cart?gclid=g1", Campaign{}},
		{"https://shop.example/p?utm_source=a#x?utm_source=b", Campaign{Source: "a"}},
		{"/p?utm_source=news&utm_medium=email", Campaign{Source: "news", Medium: "email"}},
		{"/p?utm%5Fsource=news", Campaign{Source: "news"}},
		{"/p?%67clid=abc", Campaign{GCLID: "abc"}},
		{"/p?msclkid=m1", Campaign{MSCLKID: "m1"}},
		{"/p?gclid=g1&x=1", Campaign{GCLID: "g1"}},
		// gbraid and wbraid are kept as gclid (Campaign.GCLID): gclid
		// first, then gbraid, then wbraid, whatever their order.
		{"/p?gbraid=b1", Campaign{GCLID: "b1"}},
		{"/p?wbraid=w1", Campaign{GCLID: "w1"}},
		{"/p?wbraid=w1&gbraid=b1", Campaign{GCLID: "b1"}},
		{"/p?wbraid=w1&gbraid=b1&gclid=g1", Campaign{GCLID: "g1"}},
		{"/p?gclid=&gbraid=+b1+", Campaign{GCLID: "b1"}},
		{"/p?%67braid=b1", Campaign{GCLID: "b1"}},
		{"/p?GBRAID=b1&WBraid=w1", Campaign{}}, // read in lower case only, as gclid
		// As a browser (URLSearchParams) and GA read a query: pairs are
		// separated by & only, and a % without two hex digits after it
		// is itself. Go's url.ParseQuery dropped such a pair whole.
		{"/p?utm_source=a;b&utm_medium=email", Campaign{Source: "a;b", Medium: "email"}},
		{"/p?utm_campaign=50%off&utm_source=news", Campaign{Source: "news", Name: "50%off"}},
		{"/p?utm_campaign=100%25+off%2", Campaign{Name: "100% off%2"}},
		{"/p?utm_source=&utm_source=second", Campaign{}},
		{"/p?utm_source=first&utm_source=second&&=x&utm_medium", Campaign{Source: "first"}},
	} {
		if got := CampaignFromURL(tt.url); got != tt.want {
			t.Errorf("CampaignFromURL(%q) = %+v, want %+v", tt.url, got, tt.want)
		}
	}
}

// Values escaped in another charset than UTF-8 come out as text (with
// U+FFFD for what is not), never as bytes Cassandra refuses in a text
// column: such a value in a dimension stopped its partition's flushes.
func TestEscapedNonUTF8IsText(t *testing.T) {
	c := CampaignFromURL("https://www.shop.example/?utm_source=news&utm_campaign=Fr%FChling&utm_medium=e%E9mail")
	for _, v := range []string{c.Source, c.Medium, c.Name} {
		if !utf8.ValidString(v) {
			t.Errorf("campaign value %q is not valid UTF-8", v)
		}
	}
	if c.Name != "Fr\uFFFDhling" {
		t.Errorf("utm_campaign = %q, want Fr\uFFFDhling", c.Name)
	}
	tc := Attribute(Campaign{}, "https://%FF.example/page", nil)
	if !utf8.ValidString(tc.Source) || !utf8.ValidString(tc.Referrer) {
		t.Errorf("referral source %q, referrer %q: not valid UTF-8", tc.Source, tc.Referrer)
	}
}
