package queryparam

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	accepted := []Param{{Name: "property_id"}, {Name: "from"}, {Name: "to"}, {Name: "filter", Repeatable: true}, {Name: "limit"}}
	aliases := map[string]string{"start_date": "from", "end-date": "to"}
	tests := []struct {
		raw, code, field, message, pair string
	}{
		{"", "", "", "", ""},
		{"property_id=p&filter=a%3D%3Db&filter=c%3D%3Dd&from=2026-03-01&to=2026-03-02&limit=5", "", "", "", ""},
		{"filters=x", "unknown_parameter", "filters",
			`"filters" is not a parameter of /test; valid: property_id, from, to, filter, limit`, ""},
		{"start_date=2026-03-01", "unknown_parameter", "start_date", `"start_date" is not a parameter of /test (did you mean from?)`, ""},
		{"End-Date=2026-03-01", "unknown_parameter", "End-Date", `(did you mean to?)`, ""},
		{"Limit=5", "unknown_parameter", "Limit", `(did you mean limit?)`, ""},
		{"%20limit=5", "unknown_parameter", " limit", `(did you mean limit?)`, ""},
		{"limit=5&limit=999999", "repeated_parameter", "limit", `limit is given 2 times ("5", "999999"); give it once`, ""},
		{"limit=5&limit=5", "repeated_parameter", "limit", `limit is given 2 times ("5", "5")`, ""},
		{"from=2026-03-01&limit=5&from=2026-03-02&bogus=1", "repeated_parameter", "from", `from is given 2 times`, ""},
		{"bogus=1&limit=5&limit=6", "unknown_parameter", "bogus", `"bogus" is not a parameter`, ""},
		{"from=a;to=b", "malformed_query", "from", `the query string has an unencoded ";" in "from=a;to=b": parameters are separated by &, and a ; inside a value must be sent as %3B`, "from=a;to=b"},
		{"filter=a%zz", "malformed_query", "filter", `filter has a bad %-escape in "filter=a%zz" (invalid URL escape "%zz"): % must be followed by two hex digits; send a literal % as %25`, "filter=a%zz"},
		{"%zzlimit=5", "malformed_query", "%zzlimit", `the query string has a bad %-escape in "%zzlimit=5"`, "%zzlimit=5"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.raw, "/test", accepted, aliases)
		if tt.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.raw, err)
			}
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != tt.code || pe.Field != tt.field || !strings.Contains(pe.Message, tt.message) || pe.Pair != tt.pair {
			t.Errorf("%s: %#v; want code %s, field %q, pair %q and a message containing %q", tt.raw, err, tt.code, tt.field, tt.pair, tt.message)
		}
	}
}

func TestUnknownListsWhatIsAccepted(t *testing.T) {
	tests := []struct {
		accepted []Param
		want     string
	}{
		{nil, `"x" is not a parameter of GET /t; it takes no query parameters`},
		{[]Param{{Name: "at"}}, `"x" is not a parameter of GET /t; it takes only at`},
		{[]Param{{Name: "limit"}, {Name: "after"}}, `"x" is not a parameter of GET /t; valid: limit, after`},
	}
	for _, tt := range tests {
		_, err := Parse("x=1", "GET /t", tt.accepted, nil)
		if err == nil || err.(*Error).Message != tt.want {
			t.Errorf("%v: %v; want %q", tt.accepted, err, tt.want)
		}
	}
}

func TestValues(t *testing.T) {
	accepted := []Param{{Name: "limit"}, {Name: "filter", Repeatable: true}, {Name: "after"}}
	v, err := Parse("limit=5&filter=a&filter=b&after=", "/test", accepted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Get("limit"); got != "5" {
		t.Errorf("Get(limit) = %q, want 5", got)
	}
	if got := v.All("filter"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("All(filter) = %q, want [a b]", got)
	}
	if got := v.Unread(); len(got) != 1 || got[0] != "after" {
		t.Errorf("Unread() = %q, want [after]", got)
	}
	if !v.Has("after") || v.Get("after") != "" {
		t.Error("after= is not given and empty")
	}

	for _, tt := range []struct {
		name string
		read func()
	}{
		{"a name read but not listed", func() { v.Get("offset") }},
		{"Has of a name not listed", func() { v.Has("offset") }},
		{"every value of one not Repeatable", func() { v.All("limit") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.read()
		})
	}
}
