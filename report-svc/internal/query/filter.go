package query

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
)

// Filter is a dimension filter: an AND of ORs of conditions, written as in
// GA's Core Reporting API:
//
//	country==DE;source=~^goo,medium==cpc
//
// means country is DE AND (source matches ^goo OR medium is cpc). ';' is
// AND, ',' is OR (it binds tighter). Operators: == (equals), != (does not
// equal), =@ (contains), !@ (does not contain), =~ (matches the RE2
// regular expression), !~ (does not match), [] (is one of the values
// separated by '|'). Matching is case-sensitive (use (?i) in a regular
// expression). A backslash before ',' or ';' (and '|' in a list) makes it
// part of the value; other backslashes are kept as they are. On a
// dimension of pages, values are also tested in the form pages are stored
// in (canonicalPages); regular expressions match the stored form only.
type Filter struct {
	And [][]Condition // every inner slice must have a match
	// insts is the size its regular expressions compile to together, as
	// patternInsts estimates it; cost what they can cost together on one
	// value (rules.MatchCost).
	insts, cost int
}

// Condition is one test of a dimension's value.
type Condition struct {
	Dimension string
	Op        string
	Value     string
	Values    []string // for []
	re        *regexp.Regexp
	// forms are the spellings of Value that ==, !=, =@ and !@ test; nil:
	// Value alone (canonicalPages sets them).
	forms []string
}

var operators = []string{"==", "!=", "=@", "!@", "=~", "!~", "[]"}

// Limits of a request's filters: maxFilterLen bounds a filter expression,
// and the filter parameters of a request together (they may be repeated),
// in bytes (UTF-8, as the query string decodes: é counts 2), which the
// messages say, since a character count would come out lower;
// maxFilterInsts bounds the size (RE2 instructions) that the regular
// expressions of a request compile to together, as config-svc bounds a
// rule's pattern (pkg/rules.MaxPatternInsts). A regular expression costs
// its size to compile and its size times a value's length on every row
// that it tests. Before 2026-12-07 only the length of each filter was
// bounded: one of 2000 bytes (.{0\,1000} repeated) compiled to 330,000
// instructions, in half a second and 13 MB that the request held, and a
// query string of repeated filters asked for hundreds of them at once.
//
// maxFilterCost bounds what the regular expressions of a request's filters
// can cost together on one value (rules.MatchCost: 6 ms at most, most
// filters far less), on values as long as the longest a dimension holds
// (maxValueBytes, a page with its query): the instructions they keep alive
// together, not only their size, at every byte of it. A report tests each
// distinct value of its days once.
//
// A page is stored as collection keeps it, canonical (hit.CanonicalPath),
// and cleaned (rules' CleanPath cuts the path to MaxPathBytes, not the
// query): a dp of 4,096 bytes sent whose query escaping makes three times
// as long is a page of 12,284 bytes. Until 2026-12-07 the cost was
// bounded on 4,096 bytes: [^~]{0,19}~, charged 1,917,128, took 6.3 ms on
// such a page.
const (
	maxFilterLen   = 2000
	maxFilterInsts = 1000
	maxFilterCost  = 6_000_000
	maxValueBytes  = 3 * hit.MaxURLBytes
)

// parseFilter parses expr, whose regular expressions may compile to at most
// insts instructions together.
func parseFilter(expr string, insts int) (*Filter, error) {
	if len(expr) > maxFilterLen {
		return nil, fmt.Errorf("filter is %d bytes long (UTF-8); the limit is %d", len(expr), maxFilterLen)
	}
	f := &Filter{}
	for _, andPart := range splitEscaped(expr, ';') {
		var ors []Condition
		for _, orPart := range splitEscaped(andPart, ',') {
			c, n, err := parseCondition(orPart, insts-f.insts)
			if err != nil {
				return nil, err
			}
			f.insts += n
			if c.re != nil {
				cost, err := rules.MatchCost(c.Value, maxValueBytes)
				if err != nil {
					return nil, err
				}
				f.cost += cost
			}
			ors = append(ors, c)
		}
		f.And = append(f.And, ors)
	}
	return f, nil
}

// patternInsts is an upper bound of the instructions that re compiles to
// (regexp.Compile simplifies x{n,m} into n copies of x and m-n nested x?),
// counting no further than just past limit: estimated from the parse
// alone, so that a pattern too large is refused without the cost of
// compiling it.
func patternInsts(re *syntax.Regexp, limit int) int {
	n := 0
	switch re.Op {
	case syntax.OpLiteral:
		n = len(re.Rune)
	case syntax.OpRepeat:
		sub := patternInsts(re.Sub[0], limit)
		most, plus := re.Max, 0
		if most < 0 {
			most, plus = re.Min, sub+1 // x{n,} is n copies and x+
		}
		if most > 0 && sub+1 > (limit+1)/most {
			return limit + 1
		}
		n = re.Min*sub + (most-re.Min)*(sub+1) + plus
	case syntax.OpConcat:
		for _, s := range re.Sub {
			n += patternInsts(s, limit)
		}
	default:
		// The operator's own: one (a class, *, +, ?), two (a capture),
		// one per branch (an alternation).
		n = 1 + len(re.Sub)
		for _, s := range re.Sub {
			n += patternInsts(s, limit)
		}
	}
	return min(n, limit+1)
}

// parseCondition parses one condition; a regular expression of it may
// compile to at most insts instructions, and the second result is what it
// does (patternInsts).
func parseCondition(s string, insts int) (Condition, int, error) {
	c, err := parseConditionText(s)
	if err != nil || (c.Op != "=~" && c.Op != "!~") {
		return c, 0, err
	}
	parsed, err := syntax.Parse(c.Value, syntax.Perl)
	if err != nil {
		return Condition{}, 0, fmt.Errorf("regular expression %q of %s: %v", c.Value, c.Dimension, err)
	}
	n := patternInsts(parsed, maxFilterInsts)
	if n > insts {
		what := "it would compile to more than that"
		if n <= maxFilterInsts {
			what = "with the other regular expressions of the request's filters, it would compile to more than that"
		}
		return Condition{}, 0, fmt.Errorf("regular expression %.80q of %s is too large: a request's regular expressions may compile to %d RE2 instructions together, and %s; simplify it (large repetition counts such as {500} are the usual cause)",
			c.Value, c.Dimension, maxFilterInsts, what)
	}
	re, err := regexp.Compile(c.Value)
	if err != nil {
		return Condition{}, 0, fmt.Errorf("regular expression %q of %s: %v", c.Value, c.Dimension, err)
	}
	c.re = re
	return c, n, nil
}

// parseConditionText parses one condition, its regular expression not yet
// compiled.
func parseConditionText(s string) (Condition, error) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] == '_' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	name := s[:i]
	rest := s[i:]
	if name == "" {
		if strings.TrimSpace(s) == "" {
			// It was called a condition "" that does not start with a
			// dimension name.
			return Condition{}, errors.New("the filter has an empty condition (a ; or , at its start or end, or two in a row); remove the extra separator")
		}
		if i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && r != '_' }); i > 0 && strings.ToLower(s[:i]) != s[:i] {
			return Condition{}, fmt.Errorf("condition %q does not start with a dimension name: dimension names are lower case (%s)", unescape(s, ",;"), strings.ToLower(s[:i]))
		}
		return Condition{}, fmt.Errorf("condition %q does not start with a dimension name; write e.g. country==DE", unescape(s, ",;"))
	}
	op := ""
	for _, o := range operators {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if op == "" {
		return Condition{}, fmt.Errorf("condition %q has no operator after %q; use one of %s", unescape(s, ",;"), name, strings.Join(operators, " "))
	}
	raw := rest[len(op):]
	// No stored value is empty (a value a hit did not have is rollup.NotSet),
	// so a condition without one matched every row (=@, !=, =~: the report
	// was served unfiltered) or none: a value left out, not one meant.
	if raw == "" {
		return Condition{}, fmt.Errorf("condition %q has no value after %q: dimension values are never empty (%s==%s finds the rows without one), "+
			"so it would match every row or none; give the value to test", unescape(s, ",;"), op, name, rollup.NotSet)
	}
	c := Condition{Dimension: name, Op: op, Value: unescape(raw, ",;")}
	switch op {
	case "[]":
		for i, v := range splitEscaped(raw, '|') {
			if v == "" {
				return Condition{}, fmt.Errorf("condition %q has an empty value in its list (entry %d): dimension values are never empty; "+
					"separate the values with a single |", unescape(s, ",;"), i+1)
			}
			c.Values = append(c.Values, unescape(v, ",;|"))
		}
	}
	return c, nil
}

// splitEscaped splits s at every sep not preceded by a backslash, keeping
// the escapes (unescape removes them). A backslash escapes only the next
// character.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslash before each of chars; other backslashes
// stay (a regular expression's \. keeps its meaning).
func unescape(s, chars string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(chars, s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// match tests v.
func (c *Condition) match(v string) bool {
	switch c.Op {
	case "==":
		return c.equals(v)
	case "!=":
		return !c.equals(v)
	case "=@":
		return c.contained(v)
	case "!@":
		return !c.contained(v)
	case "=~":
		return c.re.MatchString(v)
	case "!~":
		return !c.re.MatchString(v)
	case "[]":
		return slices.Contains(c.Values, v)
	}
	return false
}

func (c *Condition) equals(v string) bool {
	if c.forms == nil {
		return v == c.Value
	}
	return slices.Contains(c.forms, v)
}

func (c *Condition) contained(v string) bool {
	if c.forms == nil {
		return strings.Contains(v, c.Value)
	}
	for _, f := range c.forms {
		if strings.Contains(v, f) {
			return true
		}
	}
	return false
}

// canonicalPages makes the conditions on dimensions of pages (isPages)
// test their values as given and in the form collection stores pages in
// (pageForms), so that page==/café/ finds the page stored as /caf%C3%A9/,
// as page==/caf%C3%A9/ and page==/caf%c3%a9/ do. Regular expressions are
// left to match the stored form as written. A value holding '#' is
// refused: pages are stored without their fragment, and a '#' that is
// part of a path is stored as %23, so which was meant cannot be known.
func (f *Filter) canonicalPages(isPages func(dim string) bool) error {
	for _, ors := range f.And {
		for i := range ors {
			c := &ors[i]
			if !isPages(c.Dimension) || c.Op == "=~" || c.Op == "!~" {
				continue
			}
			values := c.Values
			if c.Op != "[]" {
				values = []string{c.Value}
			}
			for _, v := range values {
				if strings.Contains(v, "#") {
					return fmt.Errorf("%s value %q holds '#': pages are stored without their #fragment, so leave the fragment out; "+
						"a '#' that is part of the path is stored as %%23, so write that (%%2523 in a query string)", c.Dimension, v)
				}
			}
			if c.Op == "[]" {
				var all []string
				for _, v := range c.Values {
					for _, form := range pageForms(v, false) {
						if !slices.Contains(all, form) {
							all = append(all, form)
						}
					}
				}
				c.Values = all
				continue
			}
			c.forms = pageForms(c.Value, c.Op == "=@" || c.Op == "!@")
		}
	}
	return nil
}

// pageForms returns the spellings of a value of a page dimension that a
// condition tests: as given, and in hit.CanonicalPath's form,
// percent-encoded as collection stores every page since 2026-12-04, with
// upper-case hex digits. As given finds a page in rows written before
// (which kept dp as sent, and are canonical only once reprocessed), and a
// value that is no page, such as (not set). A part of a page (part: the
// value of a contains) without '?' may be in the path or in the query,
// whose escapes differ (the query escapes ', the path ` { } | ^), so it
// is tested in the query's form too.
func pageForms(v string, part bool) []string {
	forms := []string{v}
	add := func(f string) {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	add(hit.CanonicalPath(v))
	if part && !strings.Contains(v, "?") {
		add(strings.TrimPrefix(hit.CanonicalPath("?"+v), "?"))
	}
	return forms
}

// dimensions returns the dimension names f tests, in order of appearance.
func (f *Filter) dimensions() []string {
	var out []string
	for _, ors := range f.And {
		for _, c := range ors {
			if !slices.Contains(out, c.Dimension) {
				out = append(out, c.Dimension)
			}
		}
	}
	return out
}
