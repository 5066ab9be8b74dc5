package rules

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestCheckTemplateReadsAsExpand: a sent template is accepted only where
// every $ is $$ or a group the pattern has, read as regexp's Expand reads
// it, so what a merchant sees accepted is what replaces; where it is
// refused, the reason names the reading and what to write instead.
func TestCheckTemplateReadsAsExpand(t *testing.T) {
	re := regexp.MustCompile(`^/(?P<z>[a-z])(?P<name>\d+)/(x)`)
	const path = "/a12/x"
	for _, tc := range []struct {
		tmpl    string
		problem string // part of the reason; "" when accepted
		out     string // what Expand writes for path, when accepted
	}{
		{"/p/$1", "", "/p/a"},
		{"/p/${1}x", "", "/p/ax"},
		{"/$z-$name/$3$$", "", "/a-12/x$"},
		{"${0}|${z}é", "", "/a12/x|aé"},
		{"/:id", "", "/:id"},
		{"/p/$1x", `$1x is read as a group named "1x"; write ${1} to refer to group 1`, ""},
		{"/p/$01", `$01 is read as a group named "01"; write ${1} to refer to group 1`, ""},
		{"/p/${01}", `${01} is read as a group named "01"; write ${1} to refer to group 1`, ""},
		{"/p/$00", `$00 is read as a group named "00"; write ${0} to refer to group 0`, ""},
		{"/p/$zé", `$zé is read as a group named "zé"; write ${z} to refer to the group "z"`, ""},
		{"/p/$namex", `$namex is read as a group named "namex"; write ${name} to refer to the group "name"`, ""},
		{"/p/$nope", `refers to a group named "nope" that the pattern does not define`, ""},
		{"/p/$4", "refers to group 4 but the pattern has 3", ""},
		{"/p/$9x", "refers to group 9 but the pattern has 3", ""},
		{"/p/$1234567890", "refers to group 1234567890 but the pattern has 3", ""},
		{"/p/$", "has a $ that names no group", ""},
		{"/p/$-", "has a $ that names no group", ""},
		{"/p/${1", "has a ${ not closed by }", ""},
		{"/p/${a-b}", "has a ${ not closed by }", ""},
		{"/p/${}", "has a ${ not closed by }", ""},
	} {
		problem := checkTemplate(re, tc.tmpl)
		switch {
		case tc.problem == "" && problem != "":
			t.Errorf("%q refused: %s", tc.tmpl, problem)
		case tc.problem != "" && !strings.Contains(problem, tc.problem):
			t.Errorf("%q: problem %q, want it to say %q", tc.tmpl, problem, tc.problem)
		case tc.problem == "":
			if got := re.ReplaceAllString(path, tc.tmpl); got != tc.out {
				t.Errorf("%q replaces %q with %q, want %q", tc.tmpl, path, got, tc.out)
			}
		}
	}
}

// TestStoredTemplatesCompileAsExpandReadsThem: a version stored before the
// check read templates as Expand does keeps compiling, and replaces as
// Expand reads its template ($01 is the group named "01": nothing).
func TestStoredTemplatesCompileAsExpandReadsThem(t *testing.T) {
	r := Defaults()
	r.PagePath.Replacements = []Replacement{{Pattern: `^/p/(\d+)$`, Replace: "/p/$01"}}
	if _, err := Validate(r, nil); err == nil || !strings.Contains(err.Error(), "write ${1}") {
		t.Fatalf("Validate: %v, want the template refused", err)
	}
	c, err := Compile(r, 7, nil)
	if err != nil {
		t.Fatalf("Compile of a stored version: %v", err)
	}
	if got := c.CleanPath("/p/42"); got != "/p/" {
		t.Errorf("CleanPath = %q, want %q", got, "/p/")
	}
}

// TestTemplateReaderAgreesWithExpand: on random templates, the references
// the reader finds (eachTemplateRef) are those regexp's Expand expands,
// group by group, and a template checkTemplate accepts has every $ but
// $$ expand to a group: groups 1 to 3 match A, B and C, group 0 ABC, and
// the template's own characters have none of them, so the letters of
// Expand's output count each group's expansions.
func TestTemplateReaderAgreesWithExpand(t *testing.T) {
	re := regexp.MustCompile(`(?P<a>A)(?P<b1>B)(C)`)
	pieces := []string{"$", "$", "$$", "{", "}", "0", "1", "2", "3", "01", "a", "b", "b1", "x", "é", "_", "-", "/", "٣"}
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		tmpl := b.String()
		var want [4]int // expansions of groups 0 to 3, as the reader reads them
		eachTemplateRef(tmpl, func(ref templateRef) bool {
			n := ref.number
			if n < 0 {
				n = re.SubexpIndex(ref.name)
			}
			if ref.name != "" && n >= 0 && n <= 3 {
				want[n]++
			}
			return true
		})
		out := string(re.ExpandString(nil, tmpl, "ABC", re.FindStringSubmatchIndex("ABC")))
		got := [3]int{strings.Count(out, "A"), strings.Count(out, "B"), strings.Count(out, "C")}
		if read := [3]int{want[0] + want[1], want[0] + want[2], want[0] + want[3]}; got != read {
			t.Fatalf("%q: Expand writes %q (A, B, C: %v); the reader reads %v", tmpl, out, got, read)
		}
		if checkTemplate(re, tmpl) != "" {
			continue
		}
		accepted++
		refs, _ := templateRefs(tmpl)
		if n := want[0] + want[1] + want[2] + want[3]; n != refs {
			t.Fatalf("%q accepted, but %d of its %d references expand to nothing", tmpl, refs-n, refs)
		}
	}
	if accepted < 1000 {
		t.Fatalf("%d templates accepted: the test checked too few", accepted)
	}
}
