package rules

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/hit"
)

// Limits of one rule set. They keep the evaluation of every hit cheap and
// bounded whatever a merchant writes; BenchmarkEvaluateAtLimits measures the
// cost per hit of a rule set at these limits.
const (
	MaxHostnames          = 100
	MaxIPRules            = 500
	MaxUserAgentPatterns  = 50
	MaxCountries          = 250
	MaxKeepParams         = 50
	MaxReplacements       = 20
	MaxPagePatterns       = 50 // each of pages.include and pages.exclude
	MaxReferralExclusions = 200
	MaxGoals              = 50
	MaxChannels           = 50

	MaxPatternLength = 256 // bytes of one pattern
	// MaxPatternInsts bounds the compiled size of one pattern (RE2 program
	// instructions).
	MaxPatternInsts = 1000
	// MaxCost bounds the work of evaluating all patterns of a rule set on
	// one hit, in units of about a nanosecond, on inputs as long as
	// collection keeps them and written to be the worst (cost.go: the
	// model). BenchmarkEvaluateAtLimits measures rule sets at this limit.
	MaxCost = 5_000_000

	MaxSessionTimeoutMinutes = 480
	maxNameLength            = 100
	maxChannelNameLength     = 64
	// An event goal's category and action are matched exactly, so they
	// may be as long as collection keeps them (ec, ea: docs/collection.md).
	maxEventCategoryLength = 150
	maxEventActionLength   = 500
	maxReplaceLength       = 256
	maxParamLength         = 100
	maxGoalValue           = 1e9
	maxErrors              = 50
)

// minPrefixBits refuse exclusions that would drop a large part of the
// internet, which is always a mistake.
const (
	minPrefixBits4 = 8
	minPrefixBits6 = 16
)

var goalID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate reports every problem in r, a document sent to be stored, as a
// *ValidationError, or returns r compiled (as version 0). It is Compile
// made stricter where Compile must read what versions stored earlier may
// hold (the checks added since are Validate's alone, c.sent): it refuses,
// for example, an IPv4-mapped IPv6 address (::ffff:10.0.0.1) in
// exclusions.ip, which Compile reads as its IPv4 form, a replacement
// template referring to a group its pattern does not have, which Compile
// reads as Go's Expand does (nothing written there), and a rule set over
// its cost.
func Validate(r Rules, hostnames []string) (*Compiled, error) {
	return compile(r, 0, hostnames, true)
}

// Compile validates r together with the property's hostnames (its
// allow-list and its own hosts for referral handling) and returns the
// evaluator of version. The error is a *ValidationError naming every bad
// field; errors.Is(err, ErrTooExpensive) tells a rule set refused for its
// cost.
func Compile(r Rules, version int, hostnames []string) (*Compiled, error) {
	return compile(r, version, hostnames, false)
}

// compile is Compile, and Validate when sent.
func compile(r Rules, version int, hostnames []string, sent bool) (*Compiled, error) {
	c := &compiler{cost: map[string]int{}, sent: sent, lowercase: r.PagePath.Lowercase, stripSlash: r.PagePath.StripTrailingSlash}
	for _, rp := range r.PagePath.Replacements {
		c.replaced += rp.Replace
	}
	out := &Compiled{
		version:      version,
		rules:        r,
		countries:    map[string]bool{},
		keepParams:   map[string]bool{},
		hosts:        map[string]bool{},
		referrals:    map[string]bool{},
		ipRules:      map[netip.Prefix]bool{},
		botFiltering: r.BotFiltering,
		anon:         r.IPAnonymization,
		timeoutMin:   r.SessionTimeoutMinutes,
	}

	c.count("hostnames", len(hostnames), MaxHostnames)
	for i, h := range hostnames {
		if n, ok := c.host(fmt.Sprintf("hostnames[%d]", i), h); ok {
			out.hosts[siteDomain(n)] = true
			out.hostList = append(out.hostList, n)
		}
	}

	// Exclusions.
	ex := r.Exclusions
	c.count("exclusions.ip", len(ex.IP), MaxIPRules)
	ips := map[string]int{}
	for i, s := range ex.IP {
		f := fmt.Sprintf("exclusions.ip[%d]", i)
		p, ok := c.ipRule(f, s)
		if !ok {
			continue
		}
		if c.repeats(ips, "exclusions.ip", i, p.String(), s) {
			continue
		}
		out.ipRules[p] = true
		if p.Addr().Is4() {
			out.ip4.add(p, s)
		} else {
			out.ip6.add(p, s)
		}
	}
	out.ip4.finish()
	out.ip6.finish()

	c.count("exclusions.user_agents", len(ex.UserAgents), MaxUserAgentPatterns)
	var uas []string
	uaSeen := map[string]int{}
	for i, p := range ex.UserAgents {
		f := fmt.Sprintf("exclusions.user_agents[%d]", i)
		if c.repeats(uaSeen, "exclusions.user_agents", i, foldedPattern(p), p) {
			continue
		}
		// Costed as an alternative of the alternation below, which serves.
		re := c.pattern("exclusions.user_agents", f, p, true, use{input: inputUserAgent, joined: true})
		if re != nil && c.sent && re.MatchString("") {
			// Hits without a user agent are not checked, and a pattern
			// matching the empty one before "\x01" (where no user agent
			// has it) matches at the start of every user agent.
			if re.MatchString("\x01") {
				c.add(f, "%q matches every user agent, so it would exclude all traffic: an empty alternative (as in \"bot|\") or a pattern of optional parts only (as \".*\") matches the empty text at the start of each; remove the empty alternative or make a part required", p)
			} else {
				c.add(f, "%q matches an empty user agent, which is never excluded (a hit without a user agent is not checked against these patterns); remove that alternative", p)
			}
			re = nil
		}
		if re != nil {
			uas = append(uas, "(?:"+p+")")
			out.userAgentList = append(out.userAgentList, re)
		}
	}
	if len(uas) > 0 && len(uas) == len(uaSeen) {
		// One alternation: a single pass over the user agent. A pattern
		// valid alone may not be valid inside it (\Q without \E quotes
		// the rest, the group's ")" included): then each is matched in
		// turn.
		var err error
		if out.userAgents, err = regexp.Compile("(?i)" + strings.Join(uas, "|")); err == nil {
			out.userAgentList = nil // the alternation serves
		}
	}

	c.count("exclusions.countries", len(ex.Countries), MaxCountries)
	for i, cc := range ex.Countries {
		f := fmt.Sprintf("exclusions.countries[%d]", i)
		switch {
		case ValidCountry(cc):
			if out.countries[cc] {
				c.add(f, "%q is listed twice", cc)
			}
			out.countries[cc] = true
		case ValidCountry(strings.ToUpper(cc)):
			c.add(f, "%q must be in upper case: %q", cc, strings.ToUpper(cc))
		default:
			c.add(f, "%q is not an ISO 3166-1 alpha-2 country code (e.g. DE, US)", cc)
		}
	}

	// Page path clean-up.
	pp := r.PagePath
	out.stripQuery, out.lowercase, out.stripSlash = pp.StripQuery, pp.Lowercase, pp.StripTrailingSlash
	c.count("page_path.keep_params", len(pp.KeepParams), MaxKeepParams)
	for i, k := range pp.KeepParams {
		f := fmt.Sprintf("page_path.keep_params[%d]", i)
		switch {
		case k == "":
			c.add(f, "is empty; give a query parameter name, e.g. id")
		case len(k) > maxParamLength:
			c.add(f, "is longer than %d bytes", maxParamLength)
		case strings.ContainsAny(k, "&=#?"):
			c.add(f, "%q must be a parameter name alone, without &, =, # or ?", k)
		case c.sent && strings.ContainsAny(k, "%+"):
			// Names are compared decoded: "%69d" kept nothing.
			if d, err := url.QueryUnescape(k); err == nil {
				c.add(f, "%q is written encoded, and names are compared decoded: write %q", k, d)
			} else {
				c.add(f, "%q holds a %% that is no escape; names are compared decoded", k)
			}
		case out.keepParams[k]:
			c.add(f, "%q is listed twice", k)
		default:
			out.keepParams[k] = true
		}
	}
	if len(pp.KeepParams) > 0 && !pp.StripQuery {
		c.add("page_path.keep_params", "only applies when page_path.strip_query is true; set it, or leave keep_params empty to keep every parameter")
	}
	if dp := pp.DefaultPage; dp != "" {
		switch {
		case strings.Contains(dp, "/"):
			c.add("page_path.default_page", "%q must be a file name without a slash, e.g. index.html", dp)
		case len(dp) > maxNameLength:
			c.add("page_path.default_page", "is longer than %d bytes", maxNameLength)
		case strings.ContainsAny(dp, "?#& "):
			c.add("page_path.default_page", "%q must be a plain file name, e.g. index.html", dp)
		case c.sent && (dp == "." || dp == ".."):
			// A stored version holding one is read as it was.
			c.add("page_path.default_page", "%q names a directory, not a file; give the page a directory serves, e.g. index.html", dp)
		case c.sent && hit.CanonicalPath(dp) != dp:
			c.add("page_path.default_page", "%q can never be at the end of a path: paths hold it percent-encoded, as %q; write that instead", dp, hit.CanonicalPath(dp))
		default:
			// A stored version holding one that is not in the paths' form
			// is read as it was (it never matches).
			out.defaultPage = dp
		}
	}
	c.count("page_path.replacements", len(pp.Replacements), MaxReplacements)
	for i, rp := range pp.Replacements {
		f := fmt.Sprintf("page_path.replacements[%d]", i)
		re := c.pathPattern("page_path.replacements", f+".pattern", rp.Pattern, use{input: inputPath, replace: true, template: rp.Replace, groups: numGroups(rp.Pattern)})
		if len(rp.Replace) > maxReplaceLength {
			c.add(f+".replace", "is longer than %d bytes", maxReplaceLength)
			continue
		}
		if re == nil {
			continue
		}
		// A stored version keeps the template it was accepted with, which
		// replaces as Expand reads it.
		if reason := checkTemplate(re, rp.Replace); c.sent && reason != "" {
			c.add(f+".replace", "%s", reason)
			continue
		}
		out.replacements = append(out.replacements, replacement{re: re, replace: rp.Replace})
	}

	// Pages.
	c.count("pages.include", len(r.Pages.Include), MaxPagePatterns)
	c.count("pages.exclude", len(r.Pages.Exclude), MaxPagePatterns)
	included, excluded := map[string]int{}, map[string]int{}
	for i, p := range r.Pages.Include {
		if c.repeats(included, "pages.include", i, p, p) {
			continue
		}
		if re := c.pathPattern("pages.include", fmt.Sprintf("pages.include[%d]", i), p, use{input: inputPath}); re != nil {
			out.include = append(out.include, re)
		}
	}
	for i, p := range r.Pages.Exclude {
		if c.repeats(excluded, "pages.exclude", i, p, p) {
			continue
		}
		if re := c.pathPattern("pages.exclude", fmt.Sprintf("pages.exclude[%d]", i), p, use{input: inputPath}); re != nil {
			out.exclude = append(out.exclude, re)
		}
	}

	// Scalars.
	if !r.IPAnonymization.Valid() {
		c.add("ip_anonymization", "%q is not a level; use standard (/24, /48), strict (/16, /32) or remove", r.IPAnonymization)
	}
	if r.SessionTimeoutMinutes < 1 || r.SessionTimeoutMinutes > MaxSessionTimeoutMinutes {
		c.add("session_timeout_minutes", "%d is out of range; give 1 to %d (the default is 30)", r.SessionTimeoutMinutes, MaxSessionTimeoutMinutes)
	}

	c.count("referral_exclusions", len(r.ReferralExclusions), MaxReferralExclusions)
	referrals := map[string]int{}
	for i, h := range r.ReferralExclusions {
		f := fmt.Sprintf("referral_exclusions[%d]", i)
		n, ok := c.host(f, h)
		if !ok || c.repeats(referrals, "referral_exclusions", i, siteDomain(n), h) {
			continue
		}
		if p := oneLabelProblem(h, n); c.sent && p != "" {
			// Refused when sent; a stored version is read as it is.
			c.add(f, "%s", p)
			continue
		}
		out.referrals[siteDomain(n)] = true
	}

	// Goals.
	c.count("goals", len(r.Goals), MaxGoals)
	ids := map[string]int{}
	for i, g := range r.Goals {
		f := fmt.Sprintf("goals[%d]", i)
		cg := goal{id: g.ID}
		ok := true
		switch {
		case !goalID.MatchString(g.ID):
			c.add(f+".id", "%q must be 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit", g.ID)
			ok = false
		default:
			if j, dup := ids[g.ID]; dup {
				c.add(f+".id", "%q is already the id of goals[%d]; goal ids must be unique", g.ID, j)
				ok = false
			}
			ids[g.ID] = i
		}
		if !c.name(f+".name", g.Name, maxNameLength) {
			ok = false
		}
		switch {
		case g.PagePath != "" && g.Event != nil:
			c.add(f, "has both page_path and event; a goal is one or the other")
			ok = false
		case g.PagePath == "" && g.Event == nil:
			c.add(f, "needs page_path (a pattern on the page path) or event (category and/or action)")
			ok = false
		case g.PagePath != "":
			cg.page = c.pathPattern("goals", f+".page_path", g.PagePath, use{input: inputPath})
			ok = ok && cg.page != nil
		default:
			e := g.Event
			switch {
			case e.Category == "" && e.Action == "":
				c.add(f+".event", "needs a category, an action or both")
				ok = false
			case len(e.Category) > maxEventCategoryLength:
				c.add(f+".event.category", "is longer than %d bytes, the most an event's category may have", maxEventCategoryLength)
				ok = false
			case len(e.Action) > maxEventActionLength:
				c.add(f+".event.action", "is longer than %d bytes, the most an event's action may have", maxEventActionLength)
				ok = false
			}
			cg.event, cg.category, cg.action = true, e.Category, e.Action
		}
		if g.Value != nil {
			v := *g.Value
			if math.IsNaN(v) || v < 0 || v > maxGoalValue {
				c.add(f+".value", "%v is out of range; give 0 to %g, or leave it out", v, float64(maxGoalValue))
				ok = false
			}
			cg.value, cg.hasValue = v, true
		}
		if ok {
			out.goals = append(out.goals, cg)
		}
	}

	// Custom channels.
	c.count("channels", len(r.Channels), MaxChannels)
	for i, ch := range r.Channels {
		f := fmt.Sprintf("channels[%d]", i)
		ok := c.name(f+".name", ch.Name, maxChannelNameLength)
		if ch.Source == "" && ch.Medium == "" && ch.Campaign == "" {
			c.add(f, "needs at least one of source, medium and campaign")
			ok = false
		}
		cc := channel{name: ch.Name}
		for _, cond := range []struct {
			field, pattern string
			re             **regexp.Regexp
		}{{"source", ch.Source, &cc.source}, {"medium", ch.Medium, &cc.medium}, {"campaign", ch.Campaign, &cc.campaign}} {
			if cond.pattern == "" {
				continue
			}
			if *cond.re = c.pattern("channels", f+"."+cond.field, cond.pattern, true, use{input: inputChannel}); *cond.re == nil {
				ok = false
			}
		}
		if ok {
			out.channels = append(out.channels, cc)
		}
	}

	c.checkTotal() // of a document sent: a stored version is not costed (pattern)
	if len(c.errs) > 0 {
		return nil, &ValidationError{Fields: c.errs}
	}
	out.cost = c.total
	return out, nil
}

// compiler collects the problems of a document and the cost of its
// patterns.
type compiler struct {
	// sent: the document is one sent to be stored (Validate), not one
	// stored already.
	sent bool
	// replaced is every replacement's template: what a replacement
	// writes, a path holds after all (pathPattern).
	replaced string
	// lowercase: page_path.lowercase is on (pathPattern).
	lowercase bool
	// stripSlash: page_path.strip_trailing_slash is on (pathPattern).
	stripSlash bool
	errs       []FieldError
	cost       map[string]int // cost by list, for the error
	total      int
	explored   int // the patterns' automata, as patternCost counts
}

func (c *compiler) add(field, format string, args ...any) {
	c.addErr(FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// addErr records e among the first maxErrors problems, except that a
// refusal for the cost takes the place of the last other problem past
// them: configctl costly-rules finds a stored version over the cost by
// it, and a version holding many problems Validate refuses and Compile
// takes (::ffff: addresses in exclusions.ip, stored before they were
// refused) left out the rule set's total, which comes last.
func (c *compiler) addErr(e FieldError) {
	if len(c.errs) < maxErrors {
		c.errs = append(c.errs, e)
		return
	}
	if !errors.Is(e.Err, ErrTooExpensive) {
		return
	}
	for i := len(c.errs) - 1; i >= 0; i-- {
		if !errors.Is(c.errs[i].Err, ErrTooExpensive) {
			c.errs = append(slices.Delete(c.errs, i, i+1), e)
			return
		}
	}
}

func (c *compiler) count(field string, n, limit int) {
	if n > limit {
		c.addErr(FieldError{Field: field, Reason: fmt.Sprintf("has %d entries; the limit is %d", n, limit), Err: ErrTooExpensive})
	}
}

func (c *compiler) name(field, s string, limit int) bool {
	switch {
	case strings.TrimSpace(s) == "":
		c.add(field, "is empty; give a name")
	case len(s) > limit:
		c.add(field, "is longer than %d bytes", limit)
	case !utf8.ValidString(s):
		c.add(field, "is not valid UTF-8")
	case c.sent && strings.ContainsFunc(s, Unprintable):
		// A name is a report's value (a channel, a goal's conversions),
		// shown and exported as it is. Versions stored before this
		// check are read as they are.
		r, _ := utf8.DecodeRuneInString(s[strings.IndexFunc(s, Unprintable):])
		c.add(field, "has the character %U (a control character, line break or text direction control); a name is one line of text", r)
	default:
		return true
	}
	return false
}

// Unprintable reports whether r may not be in a name people read (a
// goal's, a channel's; config-svc's names of tenants, properties and
// secrets): a control character (a line break, a tab), a line or
// paragraph separator, or a bidirectional control that reorders what
// follows it.
func Unprintable(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || // line and paragraph separators
		(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') // embeddings, overrides, isolates
}

// repeats reports whether entry i of list, key in its compared form (raw
// as written), equals an earlier one, recording it in seen otherwise. A
// repeat is refused in a document sent to be stored; in a stored version
// it is read as the one before it.
func (c *compiler) repeats(seen map[string]int, list string, i int, key, raw string) bool {
	j, dup := seen[key]
	if !dup {
		seen[key] = i
		return false
	}
	if c.sent {
		c.add(fmt.Sprintf("%s[%d]", list, i), "%q repeats %s[%d]; remove one of them", raw, list, j)
	}
	return true
}

// foldedPattern is the form of a pattern matched without regard to case
// that two patterns matching alike share when they differ only in the case
// of their letters ("Bot" and "bot", not "\\D" and "\\d"): the parsed
// pattern written node by node, its case-folded literals in one case (as
// regexp/syntax's String writes them, which takes a tenth of a second for
// a pattern of sixty negated classes). A pattern that does not parse is
// its own form (compiling it says why).
func foldedPattern(p string) string {
	re, err := syntax.Parse(p, syntax.Perl|syntax.FoldCase)
	if err != nil {
		return "raw:" + p
	}
	var b strings.Builder
	b.WriteString("parsed:")
	writeTree(&b, re)
	return b.String()
}

// writeTree writes re's tree, what (*syntax.Regexp).Equal compares.
func writeTree(b *strings.Builder, re *syntax.Regexp) {
	fmt.Fprintf(b, "(%d %d %d %d %d %q ", re.Op, re.Flags, re.Min, re.Max, re.Cap, re.Name)
	for _, r := range re.Rune {
		if re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase != 0 {
			r = minFold(r)
		}
		b.WriteString(strconv.Itoa(int(r)))
		b.WriteByte(',')
	}
	for _, sub := range re.Sub {
		writeTree(b, sub)
	}
	b.WriteByte(')')
}

// minFold is the least rune r matches without regard to case.
func minFold(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// pattern compiles one regular expression of list (the list's name, for
// the cost error) at field, used as u says; its cost is patternCost's.
func (c *compiler) pattern(list, field, p string, caseInsensitive bool, u use) *regexp.Regexp {
	switch {
	case p == "":
		c.add(field, "is empty; give a regular expression")
		return nil
	case len(p) > MaxPatternLength:
		c.addErr(FieldError{Field: field, Reason: fmt.Sprintf("is %d bytes long; the limit is %d", len(p), MaxPatternLength), Err: ErrTooExpensive})
		return nil
	}
	expr := p
	if caseInsensitive {
		expr = "(?i)" + p
	}
	prog, minLen, err := program(expr)
	if err != nil {
		c.add(field, "%q is not a valid regular expression: %s", p, describeRegexpError(err))
		return nil
	}
	if n := len(prog.Inst); n > MaxPatternInsts {
		c.addErr(FieldError{Field: field, Reason: fmt.Sprintf("%q compiles to %d instructions, more than the %d one pattern may use; simplify it (large repetition counts such as {500} are the usual cause)", p, n, MaxPatternInsts), Err: ErrTooExpensive})
		return nil
	}
	if c.sent {
		// A version stored is evaluated whatever it costs (refusing it
		// would stop its property's processing), so only a document sent
		// is costed: exploring a pattern's automaton takes up to
		// milliseconds.
		cost, why, explored := patternCost(prog, minLen, u, maxRuleSetExploreWork-c.explored)
		c.explored += explored
		if why != "" {
			c.addErr(FieldError{Field: field, Reason: fmt.Sprintf("%q %s", p, why), Err: ErrTooExpensive})
			return nil
		}
		c.cost[list] += cost
		c.total += cost
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		c.add(field, "%q is not a valid regular expression: %s", p, describeRegexpError(err))
		return nil
	}
	return re
}

// CompiledSize is the size of the program a regular expression (Perl
// syntax, as regexp.Compile takes it) compiles to: its RE2 instructions,
// what MaxPatternInsts bounds.
func CompiledSize(expr string) (int, error) {
	prog, _, err := program(expr)
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

// program is expr's RE2 program, as regexp.Compile makes it, and the
// fewest bytes a match of it spans.
func program(expr string) (*syntax.Prog, int, error) {
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, 0, err
	}
	parsed = parsed.Simplify()
	prog, err := syntax.Compile(parsed)
	if err != nil {
		return nil, 0, err
	}
	return prog, minLength(parsed), nil
}

// numGroups is the capture groups of the regular expression p, as
// regexp's NumSubexp counts them (before simplifying: (x){0} is one), or
// 0 when it does not parse (compiling it says why).
func numGroups(p string) int {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return 0
	}
	return re.MaxCap()
}

// pathPattern is pattern for a pattern matched against page paths (cleaned,
// without the query), which a document sent (Validate) may not write in a
// way that can never match a path as collection stores it (neverInPath).
func (c *compiler) pathPattern(list, field, p string, u use) *regexp.Regexp {
	re := c.pattern(list, field, p, false, u)
	if re == nil || !c.sent {
		return re
	}
	if reason := neverInPath(p, c.replaced, c.lowercase); reason != "" {
		c.add(field, "%q can never match %s (docs/collection.md: the path is stored in one canonical form)", p, reason)
		return nil
	}
	if c.stripSlash && endsInSlash(p) {
		c.add(field, "%q can never match: with page_path.strip_trailing_slash no path but / ends in /; leave the last / out", p)
		return nil
	}
	return re
}

// endsInSlash reports whether pattern p ends, at the end of the text, in
// literal text of more than a "/" that ends in "/" (^/admin/$): a path
// clean-up with strip_trailing_slash leaves no path so but "/" itself.
func endsInSlash(p string) bool {
	parsed, err := syntax.Parse(p, syntax.Perl)
	if err != nil || parsed.Op != syntax.OpConcat || len(parsed.Sub) < 2 {
		return false
	}
	last, lit := parsed.Sub[len(parsed.Sub)-1], parsed.Sub[len(parsed.Sub)-2]
	return last.Op == syntax.OpEndText && lit.Op == syntax.OpLiteral && len(lit.Rune) > 1 && lit.Rune[len(lit.Rune)-1] == '/'
}

// neverInPath says what in the literal text of pattern p no cleaned path
// holds, or "": collection stores paths percent-encoded (hit.CanonicalPath:
// non-ASCII characters, space, "|"... as escapes in upper-case hex) and
// without a fragment, and page patterns see the path without its query.
// With lowercase (page_path.lowercase), paths hold no upper-case letter
// outside their escapes either. Only literal text counts (a class such as
// [^ ] also matches what paths hold), and not what a replacement writes
// (replaced): it may put any character in the path.
func neverInPath(p, replaced string, lowercase bool) string {
	parsed, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return ""
	}
	var reason string
	var walk func(re *syntax.Regexp)
	walk = func(re *syntax.Regexp) {
		if reason != "" {
			return
		}
		if re.Op == syntax.OpLiteral {
			reason = literalNeverInPath(re.Rune, re.Flags&syntax.FoldCase != 0, replaced, lowercase)
		}
		for _, sub := range re.Sub {
			walk(sub)
		}
	}
	walk(parsed)
	return reason
}

func literalNeverInPath(lit []rune, folded bool, replaced string, lowercase bool) string {
	escape := 0 // hex digits of an escape still to come
	for i, r := range lit {
		if escape > 0 {
			escape--
			if isHex(r) {
				continue
			}
		}
		if r == '%' {
			escape = 2
		}
		if r != '?' && strings.ContainsRune(replaced, r) {
			continue // a '?' a replacement writes starts the query page patterns never see
		}
		switch s := string(r); {
		case lowercase && !folded && 'A' <= r && r <= 'Z':
			return fmt.Sprintf("%q: page_path.lowercase is on, so paths hold no upper-case letter outside their escapes; write it in lower case, or start the pattern with (?i)", s)
		case r == '#':
			return fmt.Sprintf("%q: the fragment is never part of a path", s)
		case r == '?':
			return fmt.Sprintf("%q: page patterns see the path without its query", s)
		case r != '%':
			if esc := hit.CanonicalPath(s); esc != s {
				return fmt.Sprintf("%q: paths hold it percent-encoded, as %q; write that instead", s, esc)
			}
		case !folded && i+2 < len(lit) && isHex(lit[i+1]) && isHex(lit[i+2]):
			if esc := "%" + strings.ToUpper(string(lit[i+1:i+3])); esc != string(lit[i:i+3]) {
				return fmt.Sprintf("%q: paths hold escapes in upper-case hex, as %q; write that instead, or start the pattern with (?i)", string(lit[i:i+3]), esc)
			}
		}
	}
	return ""
}

func isHex(r rune) bool { return r < 0x80 && hit.IsHex(byte(r)) }

func (c *compiler) checkTotal() {
	if c.total <= MaxCost {
		return
	}
	lists := make([]string, 0, len(c.cost))
	for l := range c.cost {
		lists = append(lists, l)
	}
	sort.Slice(lists, func(i, j int) bool {
		return c.cost[lists[i]] > c.cost[lists[j]] || c.cost[lists[i]] == c.cost[lists[j]] && lists[i] < lists[j]
	})
	c.addErr(FieldError{Field: lists[0], Reason: fmt.Sprintf(
		"the rule set's patterns would cost %d units of work per hit (%d of them here), more than the %d that can be evaluated on every hit; remove or simplify patterns (see the cost limit in docs/config.md)",
		c.total, c.cost[lists[0]], MaxCost), Err: ErrTooExpensive})
}

func describeRegexpError(err error) string {
	if se, ok := err.(*syntax.Error); ok {
		return fmt.Sprintf("%s in `%s`", se.Code, se.Expr)
	}
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

// ipRule parses an address or CIDR prefix.
func (c *compiler) ipRule(field, s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			c.add(field, "%q is not a CIDR prefix (e.g. 10.0.0.0/8 or 2001:db8::/32)", s)
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() {
			if p.Bits() >= 96+minPrefixBits4 {
				c.add(field, "%q is an IPv4-mapped IPv6 prefix; write it in IPv4 form: %q", s, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked().String())
			} else {
				c.add(field, "%q is an IPv4-mapped IPv6 prefix whose IPv4 form is shorter than /%d, the shortest accepted; exclude IPv4 addresses in IPv4 form", s, minPrefixBits4)
			}
			return netip.Prefix{}, false
		}
		minBits := minPrefixBits6
		if p.Addr().Is4() {
			minBits = minPrefixBits4
		}
		if m := p.Masked(); m != p && p.Bits() >= minBits {
			c.add(field, "%q has bits set after the prefix length; did you mean %q?", s, m.String())
			return netip.Prefix{}, false
		}
		if p.Bits() < minBits {
			c.add(field, "%q would exclude a large part of the internet; the shortest prefix accepted is /%d", s, minBits)
			return netip.Prefix{}, false
		}
		return p, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		c.add(field, "%q is neither an IP address nor a CIDR prefix (e.g. 203.0.113.7 or 10.0.0.0/8)", s)
		return netip.Prefix{}, false
	}
	if a.Is4In6() {
		// As a prefix in this form is; versions stored before this was
		// refused may hold one, and it matches what its IPv4 form does.
		if c.sent {
			c.add(field, "%q is an IPv4-mapped IPv6 address; write it in IPv4 form: %q", s, a.Unmap().String())
			return netip.Prefix{}, false
		}
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// host validates a host name and returns its normalised form.
func (c *compiler) host(field, s string) (string, bool) {
	if reason := hostProblem(s); reason != "" {
		c.add(field, "%s", reason)
		return "", false
	}
	return NormalizeHost(s), true
}

// NormalizeHost returns host in the form rules compare: lower case, without
// a port or a trailing dot.
func NormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// hostProblem says what is wrong with a host name written in a document, or
// "" when it is fine.
func hostProblem(s string) string { return hostNameProblem(s, false) }

// hostNameProblem is hostProblem, taking '_' in a label where underscore
// says so: not a host name DNS allows, but one browsers load pages from
// (my_shop.example.com), so a hit's.
func hostNameProblem(s string, underscore bool) string {
	switch {
	case s == "":
		return "is empty; give a host name such as example.com"
	case strings.Contains(s, "://") || strings.Contains(s, "/"):
		return fmt.Sprintf("%q looks like a URL; give only the host name, e.g. example.com", s)
	case strings.HasPrefix(s, "*."):
		return fmt.Sprintf("%q: leave out the *.; subdomains of a host are always included", s)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return ""
	}
	if strings.Contains(s, ":") {
		return fmt.Sprintf("%q: give the host without a port", s)
	}
	n := strings.TrimSuffix(strings.ToLower(s), ".")
	if len(n) > 253 {
		return fmt.Sprintf("%q is longer than 253 characters", s)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Sprintf("%q is not a valid host name (empty or over-long label)", s)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			switch {
			case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
			case ch == '-' && i > 0 && i < len(label)-1:
			case ch == '_' && underscore:
			case ch >= 0x80:
				return fmt.Sprintf("%q: write internationalised names in their xn-- (punycode) form", s)
			default:
				return fmt.Sprintf("%q is not a valid host name (letters, digits, '-' and '.' only)", s)
			}
		}
	}
	return ""
}

// ValidHost reports why host is not acceptable as the host name of a hit's
// page, or "" when it is: as a merchant's hostnames are written, and with
// '_' in its labels, which browsers load pages from (before 2026-12-07
// every hit of such a page was refused as malformed).
func ValidHost(host string) string { return hostNameProblem(host, true) }

// ValidSiteHost reports why host is not acceptable as a site's name in a
// merchant's configuration (a property hostname, a referral exclusion), or
// "" when it is: a host name as DNS allows it (no '_', which ValidHost
// takes), and not a name of one label other than
// localhost. Subdomains of such a name are always included, so "com"
// would take in every .com site.
func ValidSiteHost(host string) string {
	if p := hostProblem(host); p != "" {
		return p
	}
	return oneLabelProblem(host, NormalizeHost(host))
}

// oneLabelProblem is ValidSiteHost's own check of a host name hostProblem
// accepts, n its normal form: a name of one label is refused.
func oneLabelProblem(host, n string) string {
	if _, err := netip.ParseAddr(n); err == nil || n == "localhost" || strings.Contains(n, ".") {
		return ""
	}
	return fmt.Sprintf("%q is a name of one label, which takes in every host under it (subdomains are always included); give the site's own name, e.g. example.com (localhost is accepted)", host)
}
