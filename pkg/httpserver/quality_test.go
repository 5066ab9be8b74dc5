package httpserver

import "testing"

func TestQuality(t *testing.T) {
	for _, c := range []struct {
		values []string
		name   string
		q      float64
		listed bool
	}{
		{[]string{"gzip, br"}, "gzip", 1, true},
		{[]string{"br", "GZIP; q=0.5"}, "gzip", 0.5, true},
		{[]string{"gzip;level=1;q=0"}, "gzip", 0, true},
		{[]string{"gzip;q=x"}, "gzip", 0, true},
		{[]string{"text/csv;q=0.1, text/csv"}, "text/csv", 0.1, true}, // the first entry
		{[]string{"*/*"}, "text/csv", 0, false},
		{nil, "gzip", 0, false},
	} {
		if q, listed := Quality(c.values, c.name); q != c.q || listed != c.listed {
			t.Errorf("Quality(%q, %q) = %v, %v; want %v, %v", c.values, c.name, q, listed, c.q, c.listed)
		}
	}
}
