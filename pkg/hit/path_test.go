package hit

import "testing"

func TestEscapeStrayPercent(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"/a%20b":           "/a%20b",
		"/100%-free":       "/100%25-free",
		"%":                "%25",
		"/a%2":             "/a%252",
		"/a%zz%41%":        "/a%25zz%41%25",
		"/caf%c3%a9?x=50%": "/caf%c3%a9?x=50%25",
	} {
		if got := EscapeStrayPercent(in); got != want {
			t.Errorf("EscapeStrayPercent(%q) = %q, want %q", in, got, want)
		}
	}
}
