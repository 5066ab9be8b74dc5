// Package crawlers recognises the user agents of known crawlers, bots and
// HTTP libraries, from the list maintained as the npm package
// crawler-user-agents (MIT; patterns.go is generated from it by
// `make crawlers`, since the build cannot fetch it).
//
// The list has about 1,500 regular expressions. Running them all on every
// user agent would cost tens of microseconds, and user agents are chosen by
// whoever sends the hit, so a cache alone does not bound the cost. Each
// pattern is indexed instead by four bytes of a literal it requires
// (lower-cased); a user agent is matched only against the patterns whose
// literal occurs in it, plus the few patterns without such a literal, and
// the regular expression runs only once a required literal is found.
package crawlers

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
)

type pattern struct {
	expr string
	name string
}

// Matcher finds the crawler a user agent belongs to. It is immutable and
// safe for concurrent use.
type Matcher struct {
	res   []*regexp.Regexp
	names []string
	lits  [][]string // per pattern: lower-cased literals, one of which every match contains

	byGram map[uint32][]int // 4-byte lower-case gram -> pattern indexes
	always []int            // patterns without a usable literal
}

// Default is the matcher of the generated list.
var Default = New()

// New compiles the generated list.
func New() *Matcher {
	m := &Matcher{byGram: map[uint32][]int{}}
	for i, p := range patterns {
		m.res = append(m.res, regexp.MustCompile(p.expr))
		m.names = append(m.names, p.name)
		lits := requiredLiterals(p.expr)
		m.lits = append(m.lits, lits)
		indexed := len(lits) > 0
		for _, l := range lits {
			indexed = indexed && len(l) >= 4
		}
		if !indexed {
			m.always = append(m.always, i)
			continue
		}
		for _, l := range lits {
			g := gram(l)
			if n := len(m.byGram[g]); n == 0 || m.byGram[g][n-1] != i {
				m.byGram[g] = append(m.byGram[g], i)
			}
		}
	}
	return m
}

// Match returns the name of the first listed crawler pattern matching ua.
func (m *Matcher) Match(ua string) (name string, ok bool) {
	if ua == "" {
		return "", false
	}
	var buf [512]byte
	lower := buf[:0]
	if len(ua) > len(buf) {
		lower = make([]byte, 0, len(ua))
	}
	for i := 0; i < len(ua); i++ {
		lower = append(lower, toLower(ua[i]))
	}
	best := -1
	consider := func(i int) {
		if best >= 0 && i >= best {
			return
		}
		if lits := m.lits[i]; len(lits) > 0 {
			found := false
			for _, l := range lits {
				if bytes.Contains(lower, []byte(l)) {
					found = true
					break
				}
			}
			if !found {
				return
			}
		}
		if m.res[i].MatchString(ua) {
			best = i
		}
	}
	for _, i := range m.always {
		consider(i)
	}
	for i := 0; i+4 <= len(lower); i++ {
		g := uint32(lower[i]) | uint32(lower[i+1])<<8 | uint32(lower[i+2])<<16 | uint32(lower[i+3])<<24
		for _, j := range m.byGram[g] {
			consider(j)
		}
	}
	if best < 0 {
		return "", false
	}
	return m.names[best], true
}

func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func gram(lit string) uint32 {
	return uint32(lit[0]) | uint32(lit[1])<<8 | uint32(lit[2])<<16 | uint32(lit[3])<<24
}

// requiredLiterals returns lower-cased literals one of which every match
// of expr contains: the required literal of each branch of a top-level
// alternation, or of expr itself. It returns nil when some branch has
// none.
func requiredLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	branches := []*syntax.Regexp{re}
	if re.Op == syntax.OpAlternate {
		branches = re.Sub
	}
	var out []string
	for _, b := range branches {
		l := requiredLiteral(b)
		if l == "" {
			return nil
		}
		out = append(out, l)
	}
	return out
}

// requiredLiteral returns the longest lower-cased ASCII string that every
// match of expr contains, as far as a walk of the top-level concatenation
// sees it (a character class of one letter in both cases counts as the
// letter), or "".
func requiredLiteral(re *syntax.Regexp) string {
	var subs []*syntax.Regexp
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	} else {
		subs = []*syntax.Regexp{re}
	}
	var best, cur strings.Builder
	flush := func() {
		if cur.Len() > best.Len() {
			best.Reset()
			best.WriteString(cur.String())
		}
		cur.Reset()
	}
	for _, s := range subs {
		switch {
		case s.Op == syntax.OpLiteral:
			ok := true
			for _, r := range s.Rune {
				if r > unicode.MaxASCII {
					ok = false
					break
				}
			}
			if !ok {
				flush()
				continue
			}
			cur.WriteString(strings.ToLower(string(s.Rune)))
		case s.Op == syntax.OpCharClass && len(s.Rune) == 4 && s.Rune[0] == s.Rune[1] && s.Rune[2] == s.Rune[3] &&
			s.Rune[0] < unicode.MaxASCII && unicode.ToLower(s.Rune[0]) == unicode.ToLower(s.Rune[2]) && s.Rune[0] != s.Rune[2]:
			cur.WriteRune(unicode.ToLower(s.Rune[0]))
		default:
			flush()
		}
	}
	flush()
	return best.String()
}
