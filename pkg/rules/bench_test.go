package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/hit"
)

// atLimits returns the most expensive rule set config-svc accepts: every
// list that has no pattern filled up to its count limit, and patterns of the
// shapes that cost the most per unit (unanchored, starting with a class or
// .*, never matching typical traffic, so each is tried over the whole
// input) added round-robin to every pattern list until the cost is within
// 5% of MaxCost.
func atLimits(tb testing.TB) Rules {
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
	shapes := []string{`[a-z]+[0-9]{2}[-_.]%d(x|y)+$`, `.*q%d.*z.*j$`, `(\w+)-%d-(\w+)\.x`}
	cost := 0
	add := func(i int, weight int, ci bool, put func(p string)) bool {
		p := fmt.Sprintf(shapes[i%len(shapes)], i)
		expr := p
		if ci {
			expr = "(?i)" + p
		}
		n, err := CompiledSize(expr)
		if err != nil {
			tb.Fatal(err)
		}
		c := n * weight
		if cost+c > MaxCost {
			return false
		}
		cost += c
		put(p)
		return true
	}
	for i := 0; cost < MaxCost*95/100; i++ {
		added := false
		if len(r.Exclusions.UserAgents) < MaxUserAgentPatterns {
			added = add(i, weightUserAgent, true, func(p string) { r.Exclusions.UserAgents = append(r.Exclusions.UserAgents, p) }) || added
		}
		if len(r.PagePath.Replacements) < MaxReplacements {
			added = add(i, weightPath, false, func(p string) {
				r.PagePath.Replacements = append(r.PagePath.Replacements, Replacement{Pattern: p, Replace: "x"})
			}) || added
		}
		if len(r.Pages.Exclude) < MaxPagePatterns {
			added = add(i, weightPath, false, func(p string) { r.Pages.Exclude = append(r.Pages.Exclude, p) }) || added
		}
		if len(r.Goals) < MaxGoals {
			added = add(i, weightPath, false, func(p string) {
				r.Goals = append(r.Goals, Goal{ID: fmt.Sprintf("g%d", i), Name: "Goal", PagePath: p})
			}) || added
		}
		if len(r.Channels) < MaxChannels {
			added = add(i, weightChannel, true, func(p string) { r.Channels = append(r.Channels, ChannelRule{Name: "C", Source: p}) }) || added
		}
		if !added {
			break
		}
	}
	return r
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
	c, err := Compile(atLimits(t), 1, []string{"example.com"})
	if err != nil {
		t.Fatalf("the rule set at the limits is refused: %v", err)
	}
	if c.Cost() < MaxCost*9/10 {
		t.Fatalf("cost %d is not near the limit %d; the benchmark would understate the worst case", c.Cost(), MaxCost)
	}
}

var sink any

// BenchmarkEvaluateAtLimits is the worst case per hit: everything processing
// and collection evaluate, with the most expensive rule set accepted.
func BenchmarkEvaluateAtLimits(b *testing.B) {
	c, err := Compile(atLimits(b), 1, []string{"example.com"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.Cost()), "cost")
	benchEvaluate(b, c)
}

// BenchmarkEvaluateTypical is a realistic rule set.
func BenchmarkEvaluateTypical(b *testing.B) {
	c, err := Compile(fullRules(), 1, []string{"example.com"})
	if err != nil {
		b.Fatal(err)
	}
	benchEvaluate(b, c)
}

func benchEvaluate(b *testing.B, c *Compiled) { benchEvaluatePath(b, c, "") }

// benchEvaluatePath is benchEvaluate with the hit's path replaced by path
// unless it is empty.
func benchEvaluatePath(b *testing.B, c *Compiled, path string) {
	h := &hit.Hit{
		Type:      hit.TypePageview,
		Hostname:  "www.example.com",
		Path:      "/Shop/Category/Running-Shoes/Trail/Mens/Size-44/index.html?session=abc123&utm_source=newsletter&utm_medium=email&p3=1",
		UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Country:   "ZW",
		IP:        "198.18.4.0",
	}
	if path != "" {
		h.Path = path
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
		_, _ = c.Channel("newsletter", "email", "spring-sale")
		_ = c.ReferralExcluded("checkout.payments.example.net")
	}
}

// denseRepetitions is a rule set the cost limit accepts whose patterns keep
// hundreds of RE2 threads alive at every byte of a path: page exclusions of
// bounded repetitions of a broad class, which never match (no '~'). The
// cost model counts a pattern's compiled size times 64 bytes of path; a
// match here costs about that size times the path's real length, at a few
// times the work per unit of atLimits' shapes.
func denseRepetitions(tb testing.TB) Rules {
	r := Defaults()
	for i := 0; ; i++ {
		p := fmt.Sprintf("[^~]{0,60}[^~]{0,60}[^~]{0,60}[^~]{0,60}[^~]{0,60}~%d", i)
		r.Pages.Exclude = append(r.Pages.Exclude, p)
		if _, err := Compile(r, 1, []string{"example.com"}); err != nil {
			r.Pages.Exclude = r.Pages.Exclude[:i]
			if i == 0 {
				tb.Fatal(err)
			}
			return r
		}
	}
}

// BenchmarkEvaluateDenseRepetitions is denseRepetitions on the benchmark's
// usual hit (a 120-byte path) and on one whose path is 4 KB, collection's
// limit: what a merchant's accepted rules can cost per hit
// (docs/config.md, "Limits and cost").
func BenchmarkEvaluateDenseRepetitions(b *testing.B) {
	c, err := Compile(denseRepetitions(b), 1, []string{"example.com"})
	if err != nil {
		b.Fatal(err)
	}
	long := "/" + strings.Repeat("abcdefgh/", 455)
	for _, tc := range []struct{ name, path string }{{"path=120B", ""}, {"path=4KB", long}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportMetric(float64(c.Cost()), "cost")
			benchEvaluatePath(b, c, tc.path)
		})
	}
}
