package rollup

import "strings"

// Separator joins the parts of a multi-part dimension value
// (JoinDimension). The report services also show a value derived from
// several columns joined with it, unescaped (source_medium:
// "google / organic").
const Separator = " / "

// JoinDimension encodes the parts of a multi-part dimension value (source
// and medium; event category, action and label) as the one string a
// rollup row keeps: each part with a backslash put before every `\` and
// `/` in it, joined with Separator. No part then holds a "/" without a
// backslash before it, so every " / " whose slash is not escaped is a
// separator, and SplitDimension gives the parts back whatever they hold:
// " / ", a trailing " /" or a leading "/ ", backslashes, nothing. Parts
// without `\` or `/` read as they are ("google / organic"); a URL label
// is stored as `outbound / click / https:\/\/shop.example\/`.
//
// A single part is stored as it is, unescaped: the one-column reports
// (source, page, event_category...) keep the value itself, and
// SplitDimension(v, 1) is v.
func JoinDimension(parts ...string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	n := len(Separator) * max(len(parts)-1, 0)
	for _, p := range parts {
		n += len(p) + strings.Count(p, `\`) + strings.Count(p, "/")
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range parts {
		if i > 0 {
			b.WriteString(Separator)
		}
		for {
			k := strings.IndexAny(p, `\/`)
			if k < 0 {
				b.WriteString(p)
				break
			}
			b.WriteString(p[:k])
			b.WriteByte('\\')
			b.WriteByte(p[k])
			p = p[k+1:]
		}
	}
	return b.String()
}

// SplitDimension returns the n parts of v, the stored dimension value of
// a report with n columns: SplitDimension(JoinDimension(p...), len(p)) is
// p for any parts. It splits v at each Separator whose slash no backslash
// escapes, at most n-1 times (what follows the last split is the last
// part), and takes a backslash as escaping the byte after it (one at the
// very end is kept). It always returns n parts, those v lacks empty: v
// itself when n is 1 (JoinDimension stores one part unescaped), nil when
// n is 0.
//
// Values written before JoinDimension escaped (the parts as they were,
// joined with Separator) read as they did then when they hold no
// backslash: split at their first n-1 " / ", the rest in the last part.
// So a part that held " / " is still split wrongly: "Video / YouTube /
// play / intro", written for category "Video / YouTube", reads Video,
// YouTube and "play / intro". A backslash in such a value is read as an
// escape: dropped, and the byte after it kept as it is (`C:\tmp / x`
// reads C:tmp and x; `a\ / b` is the one part "a / b"). Reprocessing a
// day rewrites its rows in the escaped form.
func SplitDimension(v string, n int) []string {
	switch {
	case n <= 0:
		return nil
	case n == 1:
		return []string{v}
	}
	parts := make([]string, 0, n)
	start := 0
	for i := 0; i < len(v) && len(parts) < n-1; i++ {
		switch {
		case v[i] == '\\':
			i++ // the byte it escapes is no separator
		case strings.HasPrefix(v[i:], Separator):
			parts = append(parts, unescape(v[start:i]))
			start = i + len(Separator)
			i = start - 1
		}
	}
	parts = append(parts, unescape(v[start:]))
	for len(parts) < n {
		parts = append(parts, "")
	}
	return parts
}

// unescape drops every backslash but one at the end, keeping the byte
// after it.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
