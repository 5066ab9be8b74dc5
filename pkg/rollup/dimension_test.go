package rollup

import (
	"slices"
	"strings"
	"testing"
)

func TestJoinDimension(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"google", "organic"}, "google / organic"},
		{[]string{"news / letter", "email"}, `news \/ letter / email`},
		{[]string{"Video / YouTube", "play", "intro"}, `Video \/ YouTube / play / intro`},
		{[]string{"a /", "/ b"}, `a \/ / \/ b`},
		{[]string{`C:\tmp`, "x"}, `C:\\tmp / x`},
		{[]string{"outbound", "click", "https://shop.example/"}, `outbound / click / https:\/\/shop.example\/`},
		{[]string{"", ""}, " / "},
		{[]string{"/blog/a / b"}, "/blog/a / b"}, // one part: stored as it is
		{nil, ""},
	}
	for _, tt := range tests {
		if got := JoinDimension(tt.parts...); got != tt.want {
			t.Errorf("JoinDimension(%q) = %q, want %q", tt.parts, got, tt.want)
		}
	}
}

// splitCases are parts that joined and split again must come back as
// they were: separators inside a part, at its ends, backslashes, empty
// parts.
var splitCases = [][]string{
	{"google", "organic"},
	{"news / letter", "email"},
	{"Video / YouTube", "play", "intro"},
	{"a /", "/ b"},
	{"a / ", " / b", " / "},
	{"/", "/", "/"},
	{`\`, `\\`, `\/`},
	{`a\`, "b"},
	{`a \`, `/ b`},
	{"", ""},
	{"", "", ""},
	{" ", "  ", ""},
	{"x", ""},
	{"/blog/a / b"},
	{"über / straße", "ä/ö", "日本 / 語"},
}

func TestSplitDimensionInvertsJoin(t *testing.T) {
	for _, parts := range splitCases {
		v := JoinDimension(parts...)
		if got := SplitDimension(v, len(parts)); !slices.Equal(got, parts) {
			t.Errorf("SplitDimension(%q, %d) = %q, want %q", v, len(parts), got, parts)
		}
	}
}

// Values stored before JoinDimension escaped keep reading as they did
// when they hold no backslash; a backslash in one is read as an escape.
func TestSplitDimensionOldValues(t *testing.T) {
	tests := []struct {
		v    string
		n    int
		want []string
	}{
		{"video / play / intro", 3, []string{"video", "play", "intro"}},
		{"video / play / a / b", 3, []string{"video", "play", "a / b"}}, // the rest goes to the last part
		{"Video / YouTube / play / intro", 3, []string{"Video", "YouTube", "play / intro"}},
		{"news / letter / email", 2, []string{"news", "letter / email"}},
		{"video / play", 3, []string{"video", "play", ""}},
		{"a / / b", 2, []string{"a", "/ b"}},
		{"/search?q=a/b / x", 2, []string{"/search?q=a/b", "x"}},
		{"", 2, []string{"", ""}},
		{`C:\tmp / x`, 2, []string{"C:tmp", "x"}},
		{`a\ / b`, 2, []string{"a / b", ""}}, // an escaped space: no separator
		{`a\`, 2, []string{`a\`, ""}},
		{"a / b", 1, []string{"a / b"}},
		{`a\/b`, 1, []string{`a\/b`}},
		{"a / b", 0, nil},
	}
	for _, tt := range tests {
		if got := SplitDimension(tt.v, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("SplitDimension(%q, %d) = %q, want %q", tt.v, tt.n, got, tt.want)
		}
	}
}

// FuzzJoinSplit: SplitDimension(JoinDimension(parts), len(parts)) is
// parts, and a joined value of n parts holds exactly n-1 separators (a
// part's own " / " is escaped).
func FuzzJoinSplit(f *testing.F) {
	for _, parts := range splitCases {
		p := append(slices.Clone(parts), "", "")
		f.Add(p[0], p[1], p[2], uint8(len(parts)-1))
	}
	f.Fuzz(func(t *testing.T, a, b, c string, n uint8) {
		parts := []string{a, b, c}[:1+n%3]
		v := JoinDimension(parts...)
		if got := SplitDimension(v, len(parts)); !slices.Equal(got, parts) {
			t.Fatalf("SplitDimension(%q, %d) = %q, want %q", v, len(parts), got, parts)
		}
		if len(parts) > 1 && strings.Count(v, Separator) != len(parts)-1 {
			t.Fatalf("JoinDimension(%q) = %q holds %d separators", parts, v, strings.Count(v, Separator))
		}
	})
}

// FuzzSplitOldValue: a value without a backslash (every value stored
// before JoinDimension escaped, but those holding one) splits as
// strings.SplitN did, with missing parts empty.
func FuzzSplitOldValue(f *testing.F) {
	for _, v := range []string{"video / play / a / b", "Video / YouTube / play / intro", "news / letter / email", "a / / b", " / ", "", "a /", "/ b"} {
		f.Add(v, uint8(2))
	}
	f.Fuzz(func(t *testing.T, v string, n uint8) {
		if strings.Contains(v, `\`) {
			t.Skip("a backslash is read as an escape")
		}
		k := 1 + int(n%3)
		want := strings.SplitN(v, Separator, k)
		for len(want) < k {
			want = append(want, "")
		}
		if got := SplitDimension(v, k); !slices.Equal(got, want) {
			t.Fatalf("SplitDimension(%q, %d) = %q, want %q", v, k, got, want)
		}
	})
}
