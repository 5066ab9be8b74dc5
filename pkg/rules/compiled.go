package rules

import (
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/hit"
)

// Compiled is a validated rule set ready to evaluate. It is immutable and
// safe for concurrent use.
type Compiled struct {
	version int
	rules   Rules
	cost    int

	hostList []string
	hosts    map[string]bool

	ip4, ip6      ipSet
	ipRules       map[netip.Prefix]bool // the entries' prefixes (an address is its /32 or /128)
	userAgents    *regexp.Regexp        // the patterns in one alternation
	userAgentList []*regexp.Regexp      // each, when they make no valid alternation
	countries     map[string]bool

	stripQuery, lowercase, stripSlash bool
	keepParams                        map[string]bool
	defaultPage                       string
	replacements                      []replacement

	include, exclude []*regexp.Regexp

	botFiltering bool
	anon         Anonymization
	timeoutMin   int
	referrals    map[string]bool
	goals        []goal
	channels     []channel
}

type replacement struct {
	re      *regexp.Regexp
	replace string
}

type goal struct {
	id               string
	page             *regexp.Regexp
	event            bool
	category, action string
	value            float64
	hasValue         bool
}

type channel struct {
	name                     string
	source, medium, campaign *regexp.Regexp
}

// ipSet finds the rule matching an address with one map lookup per
// distinct prefix length, so hundreds of prefixes cost a handful of lookups.
type ipSet struct {
	lens  []int // distinct prefix lengths, longest first
	byLen map[int]map[netip.Addr]string
}

func (s *ipSet) add(p netip.Prefix, id string) {
	if s.byLen == nil {
		s.byLen = map[int]map[netip.Addr]string{}
	}
	m := s.byLen[p.Bits()]
	if m == nil {
		m = map[netip.Addr]string{}
		s.byLen[p.Bits()] = m
		s.lens = append(s.lens, p.Bits())
	}
	m[p.Addr()] = id
}

func (s *ipSet) finish() { sort.Sort(sort.Reverse(sort.IntSlice(s.lens))) }

// match returns the most specific rule containing a, considering only
// prefixes of at most maxBits bits.
func (s *ipSet) match(a netip.Addr, maxBits int) (string, bool) {
	for _, l := range s.lens {
		if l > maxBits {
			continue
		}
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if id, ok := s.byLen[l][p.Addr()]; ok {
			return id, true
		}
	}
	return "", false
}

// Version returns the rule version this was compiled from.
func (c *Compiled) Version() int { return c.version }

// Rules returns the document this was compiled from.
func (c *Compiled) Rules() Rules { return c.rules }

// Hostnames returns the property's hostnames, normalised.
func (c *Compiled) Hostnames() []string { return c.hostList }

// Cost returns the bound on the work of evaluating the patterns on one
// hit, the measure MaxCost bounds, of a rule set Validate compiled (0 for
// a stored version Compile compiled: those are not costed).
func (c *Compiled) Cost() int { return c.cost }

// BotFiltering reports whether hits flagged as bots are excluded.
func (c *Compiled) BotFiltering() bool { return c.botFiltering }

// IPAnonymization returns how much of the client IP may be stored.
func (c *Compiled) IPAnonymization() Anonymization { return c.anon }

// SessionTimeout returns the inactivity that ends a session.
func (c *Compiled) SessionTimeout() time.Duration {
	return time.Duration(c.timeoutMin) * time.Minute
}

// MatchIP returns the IP exclusion rule matching the full client address
// (the entry as written in exclusions.ip, which collection puts in
// hit.IPExcludedBy). Collection calls it in flight; the full address is
// never stored.
func (c *Compiled) MatchIP(addr netip.Addr) (ruleID string, ok bool) {
	if !addr.IsValid() {
		return "", false
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return c.ip4.match(addr, 32)
	}
	return c.ip6.match(addr, 128)
}

// Exclusion returns why h is excluded, or false. The checks run in this
// order and the first that matches gives the reason:
//
//   - ReasonIP: the full IP matched an exclusion at collection. When h was
//     evaluated against this same version, or a later one (collection
//     knew a version processing has not learned yet), h.IPExcludedBy
//     decides. Against an earlier version (reprocessing with today's
//     rules), h is excluded if the rule it matched is still in this
//     version (the same address or prefix, however written: 10.0.0.1 is
//     10.0.0.1/32 and ::ffff:10.0.0.1), or if its stored, truncated IP lies wholly inside one of
//     this version's prefixes: truncated as the level of the version it
//     was collected under says (ExclusionStored), else, unknown, this
//     version's.
//   - ReasonUserAgent, ReasonCountry.
//   - ReasonForeignHost: the property has hostnames and the hit's host is
//     none of them nor a subdomain of one. A hit without a host (server
//     side) is never foreign.
//   - ReasonBot: bot filtering is on and collection flagged h as a bot.
func (c *Compiled) Exclusion(h *hit.Hit) (reason string, excluded bool) {
	return c.ExclusionStored(h, nil)
}

// ExclusionStored is Exclusion for a hit collected under stamped (the
// version h.RuleVersion names; nil when unknown), whose IP anonymization
// level says how h's stored IP was truncated.
func (c *Compiled) ExclusionStored(h *hit.Hit, stamped *Compiled) (reason string, excluded bool) {
	if c.ipExcluded(h, stamped) {
		return ReasonIP, true
	}
	if h.UserAgent != "" && c.userAgentExcluded(h.UserAgent) {
		return ReasonUserAgent, true
	}
	if len(c.countries) > 0 && h.Country != "" && c.countries[strings.ToUpper(h.Country)] {
		return ReasonCountry, true
	}
	if len(c.hosts) > 0 && c.foreignHost(h) {
		return ReasonForeignHost, true
	}
	if c.botFiltering && h.Bot {
		return ReasonBot, true
	}
	return "", false
}

func (c *Compiled) userAgentExcluded(ua string) bool {
	if c.userAgents != nil {
		return c.userAgents.MatchString(ua)
	}
	for _, re := range c.userAgentList {
		if re.MatchString(ua) {
			return true
		}
	}
	return false
}

func (c *Compiled) ipExcluded(h *hit.Hit, stamped *Compiled) bool {
	if h.RuleVersion >= c.version && h.RuleVersion != 0 {
		return h.IPExcludedBy != ""
	}
	if p, ok := ruleCIDR(h.IPExcludedBy); ok && c.ipRules[p] {
		return true // the rule is still there, however it is written now
	}
	if h.IP == "" {
		return false
	}
	a, err := netip.ParseAddr(h.IP)
	if err != nil {
		return false
	}
	a = a.Unmap()
	anon := c.anon
	if stamped != nil && stamped.version == h.RuleVersion {
		anon = stamped.anon
	}
	v4, v6 := anon.Bits()
	if a.Is4() {
		_, ok := c.ip4.match(a, v4)
		return ok
	}
	_, ok := c.ip6.match(a, v6)
	return ok
}

// ruleCIDR returns the prefix of an entry of exclusions.ip as a version
// Compile accepted holds it (an address is its /32 or /128, an IPv4-mapped
// address its IPv4 form), so that the rule a hit matched (IPExcludedBy, as
// written then) is found in a version that writes it otherwise: 10.0.0.1
// and 10.0.0.1/32, 2001:DB8::1 and 2001:db8::1, ::ffff:10.0.0.1 (which
// Validate has refused since, to be rewritten) and 10.0.0.1.
func ruleCIDR(id string) (netip.Prefix, bool) {
	if id == "" {
		return netip.Prefix{}, false
	}
	if strings.Contains(id, "/") {
		p, err := netip.ParsePrefix(id)
		return p, err == nil
	}
	a, err := netip.ParseAddr(id)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// matchDomain reports whether host is one of domains or a subdomain of
// one, with one map lookup per label.
func matchDomain(domains map[string]bool, host string) bool {
	for host != "" {
		if domains[host] {
			return true
		}
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return false
		}
		host = host[i+1:]
	}
	return false
}

// ReferralExcluded reports whether a referral from host neither sets
// attribution nor starts a session: host is one of the property's own
// hostnames or its referral exclusions, or a subdomain of one (matchHost:
// a hostname saved as www.shop.com excludes referrals from shop.com, which
// is also how attribution passes a referrer host, without its "www.").
func (c *Compiled) ReferralExcluded(host string) bool {
	if host == "" {
		return false
	}
	host = NormalizeHost(host)
	return matchHost(c.hosts, host) || matchHost(c.referrals, host)
}

// foreignHost reports whether h is not from the property's hostnames (which
// it has): its host is none of them nor a subdomain of one, or it is a
// browser hit that names no host (no document location or host), as the
// tracker never sends and referral spam does. A server-side hit without a
// host never is.
func (c *Compiled) foreignHost(h *hit.Hit) bool {
	if h.Hostname == "" {
		return h.Origin == hit.OriginBrowser
	}
	return !matchHost(c.hosts, NormalizeHost(h.Hostname))
}

// matchHost is matchDomain for a host of a site, where a leading "www." is
// no difference, neither in the host nor in the domains (which Compile
// keeps as siteDomain gives them): shop.com matches www.shop.com, and an
// entry www.paypal.com is paypal.com, subdomains included
// (checkout.paypal.com).
func matchHost(domains map[string]bool, host string) bool {
	return matchDomain(domains, siteDomain(host))
}

// SameSite reports whether host is site or a subdomain of it, a leading
// "www." being no difference on either side, as with the property's
// hostnames; either empty is false.
func SameSite(host, site string) bool {
	if host == "" || site == "" {
		return false
	}
	h, s := siteDomain(NormalizeHost(host)), siteDomain(NormalizeHost(site))
	return h == s || len(h) > len(s) && h[len(h)-len(s)-1] == '.' && h[len(h)-len(s):] == s
}

// siteDomain returns a host without its leading "www.", unless that would
// leave a top-level domain alone (www.com stays).
func siteDomain(host string) string {
	if rest, ok := strings.CutPrefix(host, "www."); ok && strings.Contains(rest, ".") {
		return rest
	}
	return host
}

// AttributionParam reports whether a query parameter carries attribution
// (utm_*, gclid, gbraid, wbraid, msclkid, dclid, fbclid; any case);
// CleanPath always keeps these.
func AttributionParam(name string) bool {
	if len(name) >= 4 && strings.EqualFold(name[:4], "utm_") {
		return true
	}
	for _, p := range [...]string{"gclid", "gbraid", "wbraid", "msclkid", "dclid", "fbclid"} {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

// CleanPath applies the page path clean-up to a path with its query string
// ("/a/b?x=1", as the hit carries it; a full URL is reduced to its path),
// in this order:
//
//  1. the fragment is dropped, and an empty path becomes "/";
//  2. strip_query: parameters other than keep_params and the attribution
//     parameters are dropped (those kept stay as sent, in their order);
//  3. lowercase: the path (not the query, nor its percent-escapes) is
//     lowercased;
//  4. strip_trailing_slash: trailing slashes are dropped, except from "/";
//  5. default_page: a path ending in "/<default_page>" loses the file name
//     (4 and 5 again until neither changes the path);
//  6. the path is cut to MaxPathBytes, then replacements, in order, on the
//     path, each result cut to MaxPathBytes;
//  7. strip_trailing_slash again (after 5 and 6).
//
// Cleaning a cleaned path changes nothing unless replacements say so.
func (c *Compiled) CleanPath(raw string) string {
	raw, _, _ = strings.Cut(raw, "#")
	if i := strings.Index(raw, "://"); i >= 0 && i < 10 && !strings.ContainsAny(raw[:i], "/?") {
		rest := raw[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			raw = rest[j:]
		} else {
			raw = "/"
		}
	}
	path, query, _ := strings.Cut(raw, "?")
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	query = c.filterQuery(query)
	if c.lowercase {
		path = lowerOutsideEscapes(path)
	}
	// Trailing slashes go before the default page too, and both until
	// neither changes the path, so that /docs/index.html/ and
	// /docs/index.html/index.html are /docs as /docs/index.html is (and
	// cleaning a cleaned path changes nothing).
	for {
		if c.stripSlash {
			path = trimTrailingSlashes(path)
		}
		dp := c.defaultPage
		if dp == "" || len(path) <= len(dp) || path[len(path)-len(dp)-1] != '/' || !strings.EqualFold(path[len(path)-len(dp):], dp) {
			break
		}
		path = path[:len(path)-len(dp)]
		if !c.stripSlash {
			break // it ends in "/": no default page follows
		}
	}
	// Collection keeps dp and dl to MaxPathBytes as sent, and escaping
	// them (hit.CanonicalPath: a space is %20) can make a path three
	// times that: replacements and page patterns see no more than the
	// cost model counts.
	path = capPath(path)
	for _, r := range c.replacements {
		path = capPath(r.re.ReplaceAllString(path, r.replace))
	}
	if path == "" || path[0] != '/' {
		path = capPath("/" + path) // a replacement took the "/" away
	}
	if c.stripSlash {
		path = trimTrailingSlashes(path)
	}
	if query == "" {
		return path
	}
	return path + "?" + query
}

// trimTrailingSlashes drops a path's trailing slashes, except from "/".
func trimTrailingSlashes(path string) string {
	if path = strings.TrimRight(path, "/"); path == "" {
		return "/"
	}
	return path
}

func (c *Compiled) filterQuery(q string) string {
	if q == "" || !c.stripQuery {
		return q
	}
	var b strings.Builder
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		if part == "" {
			continue
		}
		if name := QueryParamName(part); c.keepParams[name] || AttributionParam(name) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(part)
		}
	}
	return b.String()
}

// QueryParamName returns the name of a query-string pair ("name=value") as
// a query parser reads it: percent-escapes and '+' decoded (a name that
// does not decode is taken as it is), so that utm%5Fsource is utm_source.
func QueryParamName(pair string) string {
	name, _, _ := strings.Cut(pair, "=")
	if strings.ContainsAny(name, "%+") {
		if n, err := url.QueryUnescape(name); err == nil {
			return n
		}
	}
	return name
}

// lowerOutsideEscapes lowercases path but not its percent-escapes, which
// stay in the upper-case hex collection writes them in (docs/collection.md:
// rules match the encoded form), so that lowercase keeps /caf%C3%A9 one
// page with /CAF%C3%A9 and a rule written for it still matches.
func lowerOutsideEscapes(path string) string {
	if !strings.Contains(path, "%") {
		return strings.ToLower(path)
	}
	var b strings.Builder
	b.Grow(len(path))
	for path != "" {
		i := strings.IndexByte(path, '%')
		if i < 0 || i+2 >= len(path) {
			b.WriteString(strings.ToLower(path))
			break
		}
		b.WriteString(strings.ToLower(path[:i]))
		b.WriteString(path[i : i+3])
		path = path[i+3:]
	}
	return b.String()
}

// pathOnly returns a cleaned path without its query string.
func pathOnly(cleanPath string) string {
	p, _, _ := strings.Cut(cleanPath, "?")
	return p
}

// PageIncluded reports whether the page at cleanPath (a CleanPath result)
// is reported: it matches an include pattern (when there are any) and no
// exclude pattern. Patterns see the path without its query string. A
// pageview it rejects is filtered with ReasonPage.
func (c *Compiled) PageIncluded(cleanPath string) bool {
	p := pathOnly(cleanPath)
	if len(c.include) > 0 {
		in := false
		for _, re := range c.include {
			if re.MatchString(p) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, re := range c.exclude {
		if re.MatchString(p) {
			return false
		}
	}
	return true
}

// GoalMatch is one goal a hit completed.
type GoalMatch struct {
	ID    string
	Value float64
}

// Goals returns the goals h completes, in the order of the document: a
// pageview whose cleaned path (without query) matches a page goal, an event
// whose category and action match an event goal. The value is the goal's
// own, else the event's value for an event goal, else 0.
func (c *Compiled) Goals(h *hit.Hit, cleanPath string) []GoalMatch {
	var out []GoalMatch
	var p string
	for i := range c.goals {
		g := &c.goals[i]
		switch {
		case g.page != nil:
			if h.Type != hit.TypePageview {
				continue
			}
			if p == "" {
				p = pathOnly(cleanPath)
			}
			if !g.page.MatchString(p) {
				continue
			}
		case g.event:
			if h.Type != hit.TypeEvent || g.category != "" && g.category != h.Category || g.action != "" && g.action != h.Action {
				continue
			}
		default:
			continue
		}
		m := GoalMatch{ID: g.id}
		switch {
		case g.hasValue:
			m.Value = g.value
		case g.event && h.HasValue:
			m.Value = h.Value
		}
		out = append(out, m)
	}
	return out
}

// Channel returns the name of the first custom channel rule whose patterns
// all match (case-insensitive), or false, in which case the default channel
// group applies. The patterns see the first MaxChannelInputBytes of the
// source, medium and campaign.
func (c *Compiled) Channel(source, medium, campaign string) (string, bool) {
	source = hit.CutUTF8(source, MaxChannelInputBytes)
	medium = hit.CutUTF8(medium, MaxChannelInputBytes)
	campaign = hit.CutUTF8(campaign, MaxChannelInputBytes)
	for i := range c.channels {
		ch := &c.channels[i]
		if ch.source != nil && !ch.source.MatchString(source) ||
			ch.medium != nil && !ch.medium.MatchString(medium) ||
			ch.campaign != nil && !ch.campaign.MatchString(campaign) {
			continue
		}
		return ch.name, true
	}
	return "", false
}

// MaxChannelInputBytes is what custom channel rules see of a source,
// medium or campaign: a tag of the page's address may be nearly as long as
// the address (4 KB), and an unanchored pattern costs its input's length
// on each visit (cost.go). GA4 keeps 100 characters of them.
const MaxChannelInputBytes = 256

// MaxPathBytes bounds a page path as the replacements leave it, as
// collection bounds what a hit sends (dp, dl: 4096 bytes). A replacement
// can multiply a path's length (a template repeating a group, a pattern
// matching the empty string at every position), and a few in a row
// turned a 100-byte path into gigabytes: the processor applying a
// merchant's rules ran out of memory on every replay of the hit.
const MaxPathBytes = 4096

// capPath cuts path to MaxPathBytes, not inside a %-escape or a UTF-8
// character.
func capPath(path string) string {
	if len(path) <= MaxPathBytes {
		return path
	}
	path = hit.CutUTF8(path, MaxPathBytes)
	n := len(path)
	if i := strings.LastIndexByte(path[max(n-2, 0):n], '%'); i >= 0 {
		n = max(n-2, 0) + i
	}
	return path[:n]
}
