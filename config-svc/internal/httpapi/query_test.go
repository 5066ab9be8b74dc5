package httpapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/api"
	"gopkg.in/yaml.v3"
)

// TestQueryParametersAreReadStrictly sends query strings that r.URL.Query
// would read in part or not at all: each is refused with 400 naming the
// parameter, after the access checks, and the parameters an endpoint
// takes are still read.
func TestQueryParametersAreReadStrictly(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Query")
	viewer := e.addUser(a, "viewer")
	p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
	prop := "/v1/properties/" + p.ID
	rulesPath := prop + "/rules"
	// A time after the property's first rules, written with an offset.
	later := time.Now().Add(time.Hour).In(time.FixedZone("", 2*60*60)).Format(time.RFC3339)
	laterRaw := strings.ReplaceAll(later, "+", "%2B")
	laterSpace := strings.ReplaceAll(later, "+", " ")

	tests := []struct {
		name         string
		who          who
		method, path string
		body         any
		wantStatus   int
		wantCode     string
		wantField    string
		wantIn       string // part of the message
	}{
		// What r.URL.Query ignored.
		{"rules version as a parameter", a.as(), "GET", rulesPath + "?version=3", nil, 400, "unknown_parameter", "version",
			`"version" is not a parameter of GET /v1/properties/{property_id}/rules; it takes only at`},
		{"at in another case", a.as(), "GET", rulesPath + "?At=" + laterRaw, nil, 400, "unknown_parameter", "At", `"At" is not a parameter of GET /v1/properties/{property_id}/rules (did you mean at?); it takes only at`},
		{"history page parameter", viewer.as(), "GET", rulesPath + "/versions?page=2", nil, 400, "unknown_parameter", "page", `"page" is not a parameter of GET /v1/properties/{property_id}/rules/versions; valid: limit, before`},
		{"properties offset", a.as(), "GET", "/v1/properties?offset=100", nil, 400, "unknown_parameter", "offset", "valid: limit, after"},
		{"users cursor", a.as(), "GET", "/v1/users?cursor=x", nil, 400, "unknown_parameter", "cursor", "valid: limit, after"},
		{"an endpoint that takes none", a.as(), "GET", "/v1/tenants/me?verbose=1", nil, 400, "unknown_parameter", "verbose", `"verbose" is not a parameter of GET /v1/tenants/me; it takes no query parameters`},
		{"a property's fields", a.as(), "GET", prop + "?fields=name", nil, 400, "unknown_parameter", "fields", "it takes no query parameters"},
		{"a PUT of the rules", a.as(), "PUT", rulesPath + "?dry_run=true", `{}`, 400, "unknown_parameter", "dry_run", "PUT /v1/properties/{property_id}/rules; it takes no query parameters"},
		{"a sign-up", anonymous, "POST", "/v1/signup?plan=gold", `{}`, 400, "unknown_parameter", "plan", "POST /v1/signup; it takes no query parameters"},
		{"the JWKS", anonymous, "GET", "/.well-known/jwks.json?kid=x", nil, 400, "unknown_parameter", "kid", "it takes no query parameters"},
		{"the feed", service("collection"), "GET", "/internal/v1/changes?since=0&wiat=1s", nil, 400, "unknown_parameter", "wiat", "valid: since, wait, limit"},
		{"internal rule versions", service("processing"), "GET", "/internal/v1/properties/" + p.ID + "/rules/versions?since=5", nil, 400, "unknown_parameter", "since", "it takes no query parameters"},

		// What r.URL.Query took the first of.
		{"limit twice", a.as(), "GET", "/v1/properties?limit=5&limit=500", nil, 400, "repeated_parameter", "limit", `limit is given 2 times ("5", "500"); give it once`},
		{"after twice", a.as(), "GET", "/v1/users?after=a&limit=1&after=b", nil, 400, "repeated_parameter", "after", "after is given 2 times"},
		{"at twice", a.as(), "GET", rulesPath + "?at=" + laterRaw + "&at=2020-01-01T00:00:00Z", nil, 400, "repeated_parameter", "at", "at is given 2 times"},
		{"before twice", a.as(), "GET", rulesPath + "/versions?before=5&before=2", nil, 400, "repeated_parameter", "before", "before is given 2 times"},
		{"since twice", service("collection"), "GET", "/internal/v1/changes?since=0&since=9", nil, 400, "repeated_parameter", "since", "since is given 2 times"},

		// What r.URL.Query dropped.
		{"an unencoded ;", a.as(), "GET", "/v1/properties?limit=5;after=x", nil, 400, "malformed_query", "limit", `the query string has an unencoded ";" in "limit=5;after=x": parameters are separated by &`},
		{"a bad escape", a.as(), "GET", "/v1/properties?after=%zz", nil, 400, "malformed_query", "after", `after has a bad %-escape in "after=%zz"`},
		{"a bad escape in a name", a.as(), "GET", rulesPath + "?%zzat=1", nil, 400, "malformed_query", "%zzat", "bad %-escape"},

		// A + in a time's offset.
		{"at with its + unencoded", a.as(), "GET", rulesPath + "?at=" + later, nil, 400, "invalid_field", "at",
			`at: "` + laterSpace + `" has a space where its UTC offset's + belongs: a + in a query string is read as a space, so send it as %2B: at=` + laterRaw},
		{"at with a space", a.as(), "GET", rulesPath + "?at=" + strings.ReplaceAll(later, "+", "%20"), nil, 400, "invalid_field", "at", "send it as %2B"},
		{"at not a time", a.as(), "GET", rulesPath + "?at=2026-05-01+12:00", nil, 400, "invalid_field", "at", "is not a time in RFC 3339 format"},

		// The access checks come first.
		{"anonymous with an unknown parameter", anonymous, "GET", "/v1/tenants/me?verbose=1", nil, 401, "", "", ""},
		{"a viewer's PUT with an unknown parameter", viewer.as(), "PUT", rulesPath + "?dry_run=true", `{}`, 403, "forbidden", "", ""},

		// What an endpoint takes.
		{"at with its + as %2B", a.as(), "GET", rulesPath + "?at=" + laterRaw, nil, 200, "", "", ""},
		{"at in UTC", viewer.as(), "GET", rulesPath + "?at=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), nil, 200, "", "", ""},
		{"a page of properties", a.as(), "GET", "/v1/properties?limit=1&after=", nil, 200, "", "", ""},
		{"a page of users", a.as(), "GET", "/v1/users?limit=1", nil, 200, "", "", ""},
		{"a page of versions", viewer.as(), "GET", rulesPath + "/versions?limit=1&before=5", nil, 200, "", "", ""},
		{"the feed", service("collection"), "GET", "/internal/v1/changes?since=0&wait=0s&limit=1", nil, 200, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.who, tt.method, tt.path, tt.body)
			if r.code != tt.wantStatus {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.path, r.code, r.body, tt.wantStatus)
			}
			if tt.wantStatus < 400 || tt.wantCode == "" {
				return
			}
			got := r.apiError()
			if got.Code != tt.wantCode || got.Field != tt.wantField || !strings.Contains(got.Message, tt.wantIn) {
				t.Fatalf("%s %s = %d %s\nwant code %s, field %q, message containing %q", tt.method, tt.path, r.code, r.body, tt.wantCode, tt.wantField, tt.wantIn)
			}
		})
	}
}

// TestOpenAPIDocumentsQueryParameters checks that openapi.yaml lists for
// each operation exactly the query parameters its route takes.
func TestOpenAPIDocumentsQueryParameters(t *testing.T) {
	type param struct {
		Ref  string `yaml:"$ref"`
		Name string `yaml:"name"`
		In   string `yaml:"in"`
	}
	var doc struct {
		Paths      map[string]map[string]yaml.Node `yaml:"paths"`
		Components struct {
			Parameters map[string]param `yaml:"parameters"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documentedQuery := map[string][]string{}
	for path, item := range doc.Paths {
		for method, node := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Parameters []param `yaml:"parameters"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			var names []string
			for _, p := range op.Parameters {
				if p.Ref != "" {
					p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				}
				if p.In == "query" {
					names = append(names, p.Name)
				}
			}
			documentedQuery[strings.ToUpper(method)+" "+path] = names
		}
	}
	for _, rt := range New(Options{}).Routes() {
		key := rt.Method + " " + rt.Path
		var takes []string
		for _, p := range rt.Query {
			takes = append(takes, p.Name)
		}
		got, want := slices.Sorted(slices.Values(documentedQuery[key])), slices.Sorted(slices.Values(takes))
		if !slices.Equal(got, want) {
			t.Errorf("%s: openapi.yaml documents the query parameters %q; the route takes %q", key, got, want)
		}
	}
}

// The routes logged at debug when they succeed are exactly the internal
// API's reads: the pipeline's config clients make them by machine, so a
// read added to the internal API is quiet too, and nothing a merchant or an
// operator does is (an operator lists every property: configctl, reprocess
// -property=all).
func TestQuietRoutesAreTheInternalReads(t *testing.T) {
	var reads []string
	for _, rt := range New(Options{}).Routes() {
		if rt.Access == Service && rt.Method == "GET" && rt.Pattern() != "GET /internal/v1/properties" {
			reads = append(reads, rt.Pattern())
		}
	}
	if got, want := slices.Sorted(slices.Values(QuietRoutes)), slices.Sorted(slices.Values(reads)); !slices.Equal(got, want) {
		t.Errorf("QuietRoutes = %q, want the internal reads %q", got, want)
	}
}
