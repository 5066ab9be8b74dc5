package attribution

import (
	"cmp"
	"net/url"
	"strings"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
)

// Campaign is the campaign data a hit's page URL carries.
type Campaign struct {
	Source, Medium, Name, Term, Content string
	// GCLID is the Google Ads click ID: gclid, else gbraid, else wbraid
	// (the IDs Google Ads tags an iOS click with instead of gclid), which
	// GA4 attributes alike. The three share this field rather than each
	// having its own because attribution and session splitting treat them
	// as one, and the visitor state encodes a hit's campaign field by
	// field (visitor/codec.go): a field more would change that encoding.
	GCLID, MSCLKID string
}

// CampaignFromURL extracts the utm_* parameters and click IDs of a page URL
// (absolute, or a path with a query). Values are trimmed, not lowercased:
// "Newsletter" and "newsletter" are different sources, as in GA4. Of
// Google's click IDs, the first non-empty of gclid, gbraid and wbraid is
// the campaign's GCLID.
func CampaignFromURL(raw string) Campaign {
	// The fragment first: a '?' after the '#' is the fragment's, not the
	// start of a query (https://shop.example/#/cart?utm_source=x has no
	// query), as the URL standard and the page dimension read it.
	if j := strings.IndexByte(raw, '#'); j >= 0 {
		raw = raw[:j]
	}
	i := strings.IndexByte(raw, '?')
	if i < 0 {
		return Campaign{}
	}
	q := raw[i+1:]
	if !strings.Contains(q, "utm_") && !strings.Contains(q, "gclid") && !strings.Contains(q, "braid") && !strings.Contains(q, "msclkid") && !strings.Contains(q, "%") {
		return Campaign{} // none of the parameters, not even escaped
	}
	v := queryValues(q)
	g := func(k string) string { return CampaignValue(v[k]) }
	c := Campaign{
		Source: g("utm_source"), Medium: g("utm_medium"), Name: g("utm_campaign"),
		Term: g("utm_term"), Content: g("utm_content"),
		GCLID: g("gclid"), MSCLKID: g("msclkid"),
	}
	if c.GCLID == "" {
		c.GCLID = cmp.Or(g("gbraid"), g("wbraid"))
	}
	return c
}

// queryValues returns the first value of each parameter of a query, read
// as a browser's URLSearchParams (the URL standard's form decoding) and GA
// read it: pairs are separated by & only, so a ; is part of a value; + is
// a space; and a % not followed by two hex digits is itself. Go's
// url.ParseQuery refuses such a pair, which would drop the tag
// (utm_campaign=50%off or utm_source=a;b) from the campaign.
func queryValues(q string) map[string]string {
	v := map[string]string{}
	for pair := range strings.SplitSeq(q, "&") {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		name = formDecode(name)
		if _, ok := v[name]; !ok {
			v[name] = formDecode(value)
		}
	}
	return v
}

// formDecode decodes a query's name or value as the URL standard's form
// decoding does: + is a space, %XX the byte, and any other % itself.
func formDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && hit.IsHex(s[i+1]) && hit.IsHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// CampaignValue is a campaign field's value as given: trimmed, and with
// bytes that are no text (a value escaped in another charset than UTF-8:
// utm_campaign=Fr%FChling) made U+FFFD, as a browser shows them. Cassandra
// refuses such a text value, and a refused write would stop the partition.
func CampaignValue(v string) string {
	return strings.ToValidUTF8(strings.TrimSpace(v), "\uFFFD")
}

// Empty reports whether the campaign has none of the fields that start a
// new session: utm_source, utm_medium, utm_campaign, gclid (or gbraid,
// wbraid), msclkid.
func (c Campaign) Empty() bool {
	return c.Source == "" && c.Medium == "" && c.Name == "" && c.GCLID == "" && c.MSCLKID == ""
}

// Same reports whether two campaigns are the same for session splitting
// (the fields Empty looks at).
func (c Campaign) Same(o Campaign) bool {
	return c.Source == o.Source && c.Medium == o.Medium && c.Name == o.Name && c.GCLID == o.GCLID && c.MSCLKID == o.MSCLKID
}

// Touch is a session's acquisition: where it came from.
type Touch struct {
	Source, Medium, Campaign string
	Term, Content            string
	// Referrer is the external referrer's host and path (no query), or
	// "(none)".
	Referrer string
}

// Campaign names GA4 gives sessions without a utm_campaign.
const (
	CampaignDirect   = "(direct)"
	CampaignOrganic  = "(organic)"
	CampaignReferral = "(referral)"
)

// ReferrerNone is the referrer of a session without an external referrer.
const ReferrerNone = "(none)"

// Attribute returns the acquisition of a session from its first hit's
// campaign and referrer. Click IDs beat utm tags (gclid, gbraid, wbraid:
// google / cpc; msclkid: bing / cpc), utm tags beat the referrer, a search engine referrer
// is organic search, any other external referrer is a referral, and nothing
// is direct. ignore reports referrer hosts that never set attribution (the
// property's own hosts and its referral exclusions).
func Attribute(c Campaign, referrer string, ignore func(host string) bool) Touch {
	t := Touch{Referrer: ReferrerNone}
	host, refPath := splitReferrer(referrer)
	if host != "" && ignore != nil && ignore(host) {
		host = ""
	}
	if host != "" {
		t.Referrer = host + refPath
	}
	switch {
	case c.GCLID != "":
		t.Source, t.Medium, t.Campaign = "google", "cpc", rollup.OrNotSet(c.Name)
	case c.MSCLKID != "":
		t.Source, t.Medium, t.Campaign = "bing", "cpc", rollup.OrNotSet(c.Name)
	case c.Source != "" || c.Medium != "" || c.Name != "":
		t.Source, t.Medium, t.Campaign = rollup.OrNotSet(c.Source), rollup.OrNotSet(c.Medium), rollup.OrNotSet(c.Name)
	case host != "":
		if name, ok := searchName(host); ok {
			t.Source, t.Medium, t.Campaign = name, "organic", CampaignOrganic
		} else {
			t.Source, t.Medium, t.Campaign = host, "referral", CampaignReferral
		}
		return t
	default:
		t.Source, t.Medium, t.Campaign = SourceDirect, MediumNone, CampaignDirect
		return t
	}
	t.Term, t.Content = c.Term, c.Content
	return t
}

// splitReferrer returns the normalized host (lowercase, no "www.") and the
// path of an absolute http(s) referrer URL or of an Android app's
// (android-app://com.slack/, whose host is the app's package: a referral,
// as GA counts it), or "" for anything else.
func splitReferrer(raw string) (host, path string) {
	if raw == "" {
		return "", ""
	}
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil && strings.Contains(raw, "%") {
		// A browser keeps a % that escapes nothing as it is
		// (https://blog.example/100%-free), which url.Parse refuses.
		u, err = url.Parse(hit.EscapeStrayPercent(raw))
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "android-app") || u.Hostname() == "" {
		return "", ""
	}
	p := u.EscapedPath()
	if p == "/" {
		p = ""
	}
	// The host may be escaped too (%FF.example decodes to a byte that is
	// no text): see CampaignFromURL.
	return strings.ToValidUTF8(normalizeHost(u.Hostname()), "\uFFFD"), p
}
