package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/hit"
)

// A shape of pattern atLimits fills a rule set with: the pattern of index i
// is pattern with i in place of its %d, which comes after anything
// worstInput writes, so that one input is the worst for every pattern.
type shape struct {
	name, pattern string
	// replacements: the shape fills page_path.replacements alone (each
	// match replaced by "x"); otherwise every other pattern list.
	replacements bool
}

var shapes = []shape{
	{name: "repetitions", pattern: `[^~]{0,6}[^~]{0,6}~%d`},
	{name: "loops", pattern: `.*q.*z.*j~%d`},
	{name: "classes", pattern: `[a-z]+[0-9]{2}[-_.](x|y)+~%d`},
	{name: "replaced", pattern: `[0-9][a-z]%d`, replacements: true},
}

// atLimits returns one of the most expensive rule sets config-svc accepts:
// every list that has no pattern filled up to its count limit, and sh's
// patterns added round-robin to its pattern lists while the cost stays
// within MaxCost.
func atLimits(tb testing.TB, sh shape) Rules {
	r := Defaults()
	for i := range MaxIPRules {
		r.Exclusions.IP = append(r.Exclusions.IP, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
	}
	r.Exclusions.Countries = sortedCountries()[:MaxCountries-1]
	r.PagePath.StripQuery, r.PagePath.Lowercase, r.PagePath.StripTrailingSlash = true, true, true
	r.PagePath.DefaultPage = "index.html"
	for i := range MaxKeepParams {
		r.PagePath.KeepParams = append(r.PagePath.KeepParams, fmt.Sprintf("p%d", i))
	}
	for i := range MaxReferralExclusions {
		r.ReferralExclusions = append(r.ReferralExclusions, fmt.Sprintf("pay%d.example", i))
	}
	cost := 0
	add := func(i int, u use, ci bool, put func(p string)) bool {
		p := fmt.Sprintf(sh.pattern, i)
		c := costOf(tb, p, ci, u)
		if cost+c > MaxCost {
			return false
		}
		cost += c
		put(p)
		return true
	}
	for i := 0; ; i++ {
		added := false
		if sh.replacements {
			if len(r.PagePath.Replacements) < MaxReplacements {
				added = add(i, use{input: inputPath, replace: true, template: "x"}, false, func(p string) {
					r.PagePath.Replacements = append(r.PagePath.Replacements, Replacement{Pattern: p, Replace: "x"})
				})
			}
			if !added {
				return r
			}
			continue
		}
		if len(r.Exclusions.UserAgents) < MaxUserAgentPatterns {
			added = add(i, use{input: inputUserAgent, joined: true}, true, func(p string) { r.Exclusions.UserAgents = append(r.Exclusions.UserAgents, p) }) || added
		}
		if len(r.Pages.Exclude) < MaxPagePatterns {
			added = add(i, use{input: inputPath}, false, func(p string) { r.Pages.Exclude = append(r.Pages.Exclude, p) }) || added
		}
		if len(r.Goals) < MaxGoals {
			added = add(i, use{input: inputPath}, false, func(p string) {
				r.Goals = append(r.Goals, Goal{ID: fmt.Sprintf("g%d", i), Name: "Goal", PagePath: p})
			}) || added
		}
		if len(r.Channels) < MaxChannels {
			added = add(i, use{input: inputChannel}, true, func(p string) { r.Channels = append(r.Channels, ChannelRule{Name: "C", Source: p}) }) || added
		}
		if !added {
			return r
		}
	}
}

// costOf is what pattern p used as u adds to a rule set's cost.
func costOf(tb testing.TB, p string, caseInsensitive bool, u use) int {
	tb.Helper()
	if caseInsensitive {
		p = "(?i)" + p
	}
	prog, minLen, err := program(p)
	if err != nil {
		tb.Fatal(err)
	}
	c, _, _ := patternCost(prog, minLen, u, maxExploreWork)
	return c
}

// worstInput is an input of n bytes that keeps many of p's instructions
// alive: from the start, each next character is the one (of those a path
// holds as collection stores it, in lower case) that leads to the most.
func worstInput(tb testing.TB, p string, n int) string {
	tb.Helper()
	prog, _, err := program(p)
	if err != nil {
		tb.Fatal(err)
	}
	a := explore(prog, false, maxExploreWork)
	if a.gaveUp {
		tb.Fatalf("%s: exploring its automaton gave up", p)
	}
	var out []byte
	for i := 0; len(out) < n; {
		best, next, char := -1, 0, byte(0)
		for _, c := range []byte("abcdefghijklmnopqrstuvwxyz0123456789-_.~/") {
			for _, j := range a.step(i, rune(c)) {
				if a.states[j].size > best {
					best, next, char = a.states[j].size, j, c
				}
			}
		}
		if best < 0 {
			break // nothing lives on: the rest costs nothing
		}
		out = append(out, char)
		i = next
	}
	return string(out)
}

func sortedCountries() []string {
	out := make([]string, 0, len(countryCodes))
	for c := range countryCodes {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

func TestAtLimitsIsAccepted(t *testing.T) {
	for _, sh := range shapes {
		c, err := Validate(atLimits(t, sh), []string{"example.com"})
		if err != nil {
			t.Fatalf("%s: the rule set at the limits is refused: %v", sh.name, err)
		}
		if c.Cost() < MaxCost*7/10 {
			t.Fatalf("%s: cost %d is not near the limit %d; the benchmark would understate the worst case", sh.name, c.Cost(), MaxCost)
		}
	}
}

var sink any

// BenchmarkEvaluateAtLimits is the worst case per hit: everything processing
// and collection evaluate, with rule sets at the cost limit, on a hit whose
// path, user agent and source are as long as collection keeps them and
// written to keep the patterns busiest (worstInput). ns/unit is what a
// unit of MaxCost took.
func BenchmarkEvaluateAtLimits(b *testing.B) {
	for _, sh := range shapes {
		c, err := Validate(atLimits(b, sh), []string{"example.com"})
		if err != nil {
			b.Fatal(err)
		}
		p := fmt.Sprintf(sh.pattern, 0)
		in := inputs{
			path:   "/" + worstInput(b, p, inputPath-1),
			ua:     worstInput(b, "(?i)"+p, inputUserAgent),
			source: worstInput(b, "(?i)"+p, inputChannel),
		}
		b.Run("shape="+sh.name, func(b *testing.B) {
			benchEvaluate(b, c, in)
			b.ReportMetric(float64(c.Cost()), "cost")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.Cost()), "ns/unit")
		})
	}
}

// BenchmarkEvaluateTypical is a realistic rule set on a typical hit.
func BenchmarkEvaluateTypical(b *testing.B) {
	c, err := Compile(fullRules(), 1, []string{"example.com"})
	if err != nil {
		b.Fatal(err)
	}
	benchEvaluate(b, c, inputs{})
}

// inputs are what a benchmarked hit's rules see, where not the typical
// hit's.
type inputs struct{ path, ua, source string }

func benchEvaluate(b *testing.B, c *Compiled, in inputs) {
	h := &hit.Hit{
		Type:      hit.TypePageview,
		Hostname:  "www.example.com",
		Path:      "/Shop/Category/Running-Shoes/Trail/Mens/Size-44/index.html?session=abc123&utm_source=newsletter&utm_medium=email&p3=1",
		UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Country:   "ZW",
		IP:        "198.18.4.0",
	}
	source := "newsletter"
	if in.path != "" {
		h.Path = in.path
	}
	if in.ua != "" {
		h.UserAgent = in.ua
	}
	if in.source != "" {
		source = in.source
	}
	addr := netip.MustParseAddr("198.18.4.77")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, _ = c.MatchIP(addr)
		_, _ = c.Exclusion(h)
		p := c.CleanPath(h.Path)
		_ = c.PageIncluded(p)
		sink = c.Goals(h, p)
		_, _ = c.Channel(source, "email", "spring-sale")
		_ = c.ReferralExcluded("checkout.payments.example.net")
	}
}

// BenchmarkValidateCostliestToExplore is what config-svc spends checking
// the rule set whose patterns' automata are the largest it explores: every
// pattern list full of patterns that exhaust maxExploreWork (each then
// charged as if every instruction were alive), until the set's
// maxRuleSetExploreWork is spent.
func BenchmarkValidateCostliestToExplore(b *testing.B) {
	r := Defaults()
	for i := range MaxPagePatterns {
		p := fmt.Sprintf("(a|b)*a(a|b){14}~%d", i)
		r.Pages.Include = append(r.Pages.Include, p)
		r.Pages.Exclude = append(r.Pages.Exclude, p)
		r.Goals = append(r.Goals, Goal{ID: fmt.Sprintf("g%d", i), Name: "Goal", PagePath: p})
		r.Exclusions.UserAgents = append(r.Exclusions.UserAgents, p)
		r.Channels = append(r.Channels, ChannelRule{Name: "C", Source: p})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(r, nil); !errors.Is(err, ErrTooExpensive) {
			b.Fatalf("Validate = %v, want it refused for its cost", err)
		}
	}
}

// BenchmarkValidateNegatedClasses: user-agent patterns of sixty negated
// classes each, which regexp/syntax's String (how repeated patterns were
// told apart before 2026-12-07) wrote in a tenth of a second each: 6 s a
// rule set.
func BenchmarkValidateNegatedClasses(b *testing.B) {
	r := Defaults()
	for i := range MaxUserAgentPatterns {
		r.Exclusions.UserAgents = append(r.Exclusions.UserAgents, strings.Repeat("[^a]", 62)+fmt.Sprintf("~%d", i))
	}
	for b.Loop() {
		_, _ = Validate(r, nil)
	}
}
