package query

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
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
// part of the value; other backslashes are kept as they are.
type Filter struct {
	And [][]Condition // every inner slice must have a match
}

// Condition is one test of a dimension's value.
type Condition struct {
	Dimension string
	Op        string
	Value     string
	Values    []string // for []
	re        *regexp.Regexp
}

var operators = []string{"==", "!=", "=@", "!@", "=~", "!~", "[]"}

// maxFilterLen bounds a filter expression (and so its regular expressions).
const maxFilterLen = 2000

// parseFilter parses expr.
func parseFilter(expr string) (*Filter, error) {
	if len(expr) > maxFilterLen {
		return nil, fmt.Errorf("filter is %d characters long; the limit is %d", len(expr), maxFilterLen)
	}
	f := &Filter{}
	for _, andPart := range splitEscaped(expr, ';') {
		var ors []Condition
		for _, orPart := range splitEscaped(andPart, ',') {
			c, err := parseCondition(orPart)
			if err != nil {
				return nil, err
			}
			ors = append(ors, c)
		}
		f.And = append(f.And, ors)
	}
	return f, nil
}

func parseCondition(s string) (Condition, error) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] == '_' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	name := s[:i]
	rest := s[i:]
	if name == "" {
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
	c := Condition{Dimension: name, Op: op, Value: unescape(raw, ",;")}
	switch op {
	case "[]":
		for _, v := range splitEscaped(raw, '|') {
			c.Values = append(c.Values, unescape(v, ",;|"))
		}
	case "=~", "!~":
		re, err := regexp.Compile(c.Value)
		if err != nil {
			return Condition{}, fmt.Errorf("regular expression %q of %s: %v", c.Value, name, err)
		}
		c.re = re
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
		return v == c.Value
	case "!=":
		return v != c.Value
	case "=@":
		return strings.Contains(v, c.Value)
	case "!@":
		return !strings.Contains(v, c.Value)
	case "=~":
		return c.re.MatchString(v)
	case "!~":
		return !c.re.MatchString(v)
	case "[]":
		return slices.Contains(c.Values, v)
	}
	return false
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
