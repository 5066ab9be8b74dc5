package rules

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// templateRef is one $ of a replacement template as regexp's Expand reads
// it (regexp.extract): a group's name or number, or nothing (name "") for a
// $ that Expand writes as itself.
type templateRef struct {
	name   string
	braced bool // written ${name}
	number int  // the group's number, or -1 for a name (01 is a name)
}

// eachTemplateRef calls f for every $ of tmpl but those of $$ (a literal
// $), in order, while f returns true. It is the one reader of templates:
// the check of a sent rule set (checkTemplate) and the cost model
// (templateRefs) both go through it, so what is accepted is what Expand
// does.
func eachTemplateRef(tmpl string, f func(templateRef) bool) {
	for {
		i := strings.IndexByte(tmpl, '$')
		if i < 0 {
			return
		}
		tmpl = tmpl[i+1:]
		if strings.HasPrefix(tmpl, "$") {
			tmpl = tmpl[1:]
			continue
		}
		s, braced := strings.CutPrefix(tmpl, "{")
		n := 0 // the name's length: letters, digits and _, as unicode has them
		for n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
				break
			}
			n += size
		}
		if n == 0 || braced && (n == len(s) || s[n] != '}') {
			if !f(templateRef{braced: braced, number: -1}) {
				return
			}
			continue
		}
		if !f(templateRef{name: s[:n], braced: braced, number: groupNumber(s[:n])}) {
			return
		}
		if braced {
			n++
		}
		tmpl = s[n:]
	}
}

// groupNumber is the group number regexp's Expand reads name as, or -1 when
// it reads it as a group's name: anything but ASCII digits, a number with a
// leading zero, or one of 1e8 or more.
func groupNumber(name string) int {
	num := 0
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' || num >= 1e8 {
			return -1
		}
		num = num*10 + int(name[i]-'0')
	}
	if name[0] == '0' && len(name) > 1 {
		return -1
	}
	return num
}

// checkTemplate reports what is wrong with the group references of a sent
// replacement template for re, or "": every $ must be $$ or refer to a
// group re has, read as Expand reads it, which writes nothing for a name
// no group has. So the classic $1x (the group named "1x") is refused, and
// $01 (the group named "01"), and $zé (named "zé", not z followed by é).
func checkTemplate(re *regexp.Regexp, tmpl string) (problem string) {
	names := map[string]bool{}
	for _, n := range re.SubexpNames() {
		if n != "" {
			names[n] = true
		}
	}
	eachTemplateRef(tmpl, func(ref templateRef) bool {
		switch {
		case ref.name == "" && ref.braced:
			problem = fmt.Sprintf("%q has a ${ not closed by } right after a group's name or number; write $$ for a literal $", tmpl)
		case ref.name == "":
			problem = fmt.Sprintf("%q has a $ that names no group; write $$ for a literal $", tmpl)
		case ref.number > re.NumSubexp():
			problem = fmt.Sprintf("%q refers to group %d but the pattern has %d", tmpl, ref.number, re.NumSubexp())
		case ref.number >= 0 || names[ref.name]:
		default:
			problem = unknownGroup(tmpl, ref, names, re.NumSubexp())
		}
		return problem == ""
	})
	return problem
}

// unknownGroup says why ref, read as the name of a group re does not have,
// is refused in tmpl, pointing to the group the merchant likely meant: the
// longest start of the name that is a group's number or name, which only
// braces make Expand read so ($1x is the group "1x", ${1}x group 1).
func unknownGroup(tmpl string, ref templateRef, names map[string]bool, groups int) string {
	d := 0
	for d < len(ref.name) && ref.name[d] >= '0' && ref.name[d] <= '9' {
		d++
	}
	if d > 0 {
		num := strings.TrimLeft(ref.name[:d], "0")
		if num == "" {
			num = "0"
		}
		if n := groupNumber(num); n < 0 || n > groups {
			return fmt.Sprintf("%q refers to group %s but the pattern has %d", tmpl, num, groups)
		}
		return fmt.Sprintf("%q: %s is read as a group named %q; write ${%s} to refer to group %s", tmpl, written(ref), ref.name, num, num)
	}
	for end := len(ref.name) - 1; end > 0; end-- {
		if names[ref.name[:end]] {
			return fmt.Sprintf("%q: %s is read as a group named %q; write ${%s} to refer to the group %q", tmpl, written(ref), ref.name, ref.name[:end], ref.name[:end])
		}
	}
	return fmt.Sprintf("%q refers to a group named %q that the pattern does not define", tmpl, ref.name)
}

// written is ref as the template has it.
func written(ref templateRef) string {
	if ref.braced {
		return "${" + ref.name + "}"
	}
	return "$" + ref.name
}

// templateRefs counts the references of a replacement template that
// regexp's Expand expands: refs all of them, named those by name, which it
// looks up among the group names.
func templateRefs(tmpl string) (refs, named int) {
	eachTemplateRef(tmpl, func(ref templateRef) bool {
		if ref.name != "" {
			refs++
			if ref.number < 0 {
				named++
			}
		}
		return true
	})
	return refs, named
}
