package query

import (
	"strings"
	"testing"
	"time"
)

// TestParseReadsEveryParameter guards ReportParams against drift: Parse
// panics on a parameter read but not listed, and here must read every
// parameter listed (one it never read would be accepted and ignored).
func TestParseReadsEveryParameter(t *testing.T) {
	for _, f := range []*Family{Acquisition, Behavior} {
		for _, r := range f.Reports {
			v, err := ParseParams("", "/test", ReportParams)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(f, r, v, time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)); err != nil {
				t.Fatalf("%s/%s: %v", f.Name, r.Name, err)
			}
			if u := v.Unread(); len(u) > 0 {
				t.Errorf("%s/%s: Parse did not read %v", f.Name, r.Name, u)
			}
		}
	}
}

// TestParseParams covers what report-svc adds to queryparam.Parse: GA's
// names suggested as ours, and a filter with an unencoded ";" answered
// with the filter encoded (the rest is queryparam's own tests).
func TestParseParams(t *testing.T) {
	accepted := []Param{{Name: "property_id"}, {Name: "from"}, {Name: "to"}, {Name: "filter", Repeatable: true}, {Name: "limit"}}
	tests := []struct {
		raw, code, field, message string
	}{
		{"property_id=p&filter=a%3D%3Db&filter=c%3D%3Dd&from=2026-03-01&to=2026-03-02&limit=5", "", "", ""},
		{"filters=country%3D%3DDE", "unknown_parameter", "filters",
			`"filters" is not a parameter of /test (did you mean filter?); valid: property_id, from, to, filter, limit`},
		{"start_date=2026-03-01", "unknown_parameter", "start_date", `"start_date" is not a parameter of /test (did you mean from?)`},
		{"End-Date=2026-03-01", "unknown_parameter", "End-Date", `(did you mean to?)`},
		{"max-results=5", "unknown_parameter", "max-results", `(did you mean limit?)`},
		{"metric=users", "unknown_parameter", "metric", `"metric" is not a parameter of /test; valid:`},
		{"limit=5&limit=999999", "repeated_parameter", "limit", `limit is given 2 times ("5", "999999"); give it once`},
		{"filter=a==b;c==d", "malformed_query", "filter", `filter has an unencoded ";" (filter=a==b;c==d). In a filter, ; means AND and must be URL-encoded as %3B, as the whole expression should be: filter=a%3D%3Db%3Bc%3D%3Dd`},
		{"limit=5;from=x", "malformed_query", "limit", `the query string has an unencoded ";" in "limit=5;from=x"`},
	}
	for _, tt := range tests {
		_, err := ParseParams(tt.raw, "/test", accepted)
		if tt.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.raw, err)
			}
			continue
		}
		pe, ok := err.(*ParamError)
		if !ok || pe.Code != tt.code || pe.Field != tt.field || !strings.Contains(pe.Message, tt.message) {
			t.Errorf("%s: %#v; want code %s, field %s and a message containing %q", tt.raw, err, tt.code, tt.field, tt.message)
		}
	}
}
