package api

import "testing"

// Dimension values come from anonymous hits: none may reach a spreadsheet
// as a formula.
func TestCSVTextNeverAFormula(t *testing.T) {
	for in, want := range map[string]string{
		`=HYPERLINK("http://evil/","x")`: `'=HYPERLINK("http://evil/","x")`,
		"+1":                             "'+1",
		"-2+3":                           "'-2+3",
		"@SUM(A1)":                       "'@SUM(A1)",
		"\t=1":                           "'\t=1",
		"\r=1":                           "'\r=1",
		"/pricing":                       "/pricing",
		"summer=sale":                    "summer=sale",
		"":                               "",
	} {
		if got := csvText(in); got != want {
			t.Errorf("csvText(%q) = %q, want %q", in, got, want)
		}
	}
}
