package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// reportParams is what an unknown_parameter error of a report lists.
const reportParams = "property_id, format, range, from, to, granularity, compare, dimensions, metrics, filter, sort, limit, offset, path"

// TestQueryParameters checks that a query string the service cannot read
// in full, a parameter the endpoint does not have and one given twice are
// refused with a message that says what was wrong, instead of being
// answered as if they were not there; and that a request with every
// parameter of an endpoint still works.
func TestQueryParameters(t *testing.T) {
	ds := reporttest.Generate(reporttest.Config{Seed: 4, Location: newYork, Now: time.Date(2026, 3, 20, 19, 30, 0, 0, time.UTC), Days: 3, Clients: 80, Shards: 1})
	e := newEnv(t, ds, defaultOptions())
	prop := "property_id=" + ds.Property.String()
	tests := []struct {
		name, path, query    string
		code, field, message string
	}{
		{"unencoded ; in a filter", "/v1/reports/acquisition/query", prop + "&dimensions=source&filter=source==google;medium==organic",
			"malformed_query", "filter", `filter has an unencoded ";" (filter=source==google;medium==organic). In a filter, ; means AND and must be URL-encoded as %3B, as the whole expression should be: filter=source%3D%3Dgoogle%3Bmedium%3D%3Dorganic (or send one filter parameter per condition)`},
		{"; between parameters", "/v1/reports/behavior/pages", prop + "&range=yesterday;limit=5",
			"malformed_query", "range", `the query string has an unencoded ";" in "range=yesterday;limit=5": parameters are separated by &, and a ; inside a value must be sent as %3B`},
		{"unencoded ; in realtime", "/v1/reports/realtime/pages", prop + "&window=5;limit=3",
			"malformed_query", "window", `the query string has an unencoded ";" in "window=5;limit=3"`},
		{"bad escape in a value", "/v1/reports/behavior/pages", prop + "&filter=page=@100%",
			"malformed_query", "filter", `filter has a bad %-escape in "filter=page=@100%" (invalid URL escape "%"): % must be followed by two hex digits; send a literal % as %25`},
		{"bad escape in a name", "/v1/reports/behavior/pages", prop + "&%zzlimit=5",
			"malformed_query", "%zzlimit", `the query string has a bad %-escape in "%zzlimit=5"`},

		// Parameters an endpoint does not have.
		{"GA's filters", "/v1/reports/acquisition/channel", prop + "&filters=channel%3D%3DDirect",
			"unknown_parameter", "filters", `"filters" is not a parameter of /v1/reports/acquisition/channel (did you mean filter?); valid: ` + reportParams},
		{"start_date and end_date", "/v1/reports/acquisition/overview", prop + "&start_date=2026-03-01&end_date=2026-03-07",
			"unknown_parameter", "start_date", `"start_date" is not a parameter of /v1/reports/acquisition/overview (did you mean from?); valid: ` + reportParams},
		{"end_date", "/v1/reports/acquisition/overview", prop + "&end_date=2026-03-07",
			"unknown_parameter", "end_date", `(did you mean to?)`},
		{"dimension", "/v1/reports/behavior/query", prop + "&dimension=page",
			"unknown_parameter", "dimension", `(did you mean dimensions?)`},
		{"metric", "/v1/reports/behavior/pages", prop + "&metric=exits",
			"unknown_parameter", "metric", `(did you mean metrics?)`},
		{"unknown in CSV", "/v1/reports/acquisition/channel", prop + "&format=csv&sort=-sessions&Limit=5",
			"unknown_parameter", "Limit", `(did you mean limit?)`},
		{"range in realtime", "/v1/reports/realtime", prop + "&range=today",
			"unknown_parameter", "range", `"range" is not a parameter of /v1/reports/realtime; valid: property_id, format, window, limit`},
		{"filter in a realtime view", "/v1/reports/realtime/pages", prop + "&format=csv&filter=page%3D%3D/",
			"unknown_parameter", "filter", `"filter" is not a parameter of /v1/reports/realtime/pages; valid: property_id, format, window, limit`},
		{"format of the catalog", "/v1/reports/behavior", prop + "&format=csv",
			"unknown_parameter", "format", `"format" is not a parameter of /v1/reports/behavior; it takes only property_id`},

		// Parameters given twice.
		{"limit twice", "/v1/reports/acquisition/channel", prop + "&limit=5&limit=999999",
			"repeated_parameter", "limit", `limit is given 2 times ("5", "999999"); give it once`},
		{"range twice", "/v1/reports/acquisition/channel", prop + "&range=yesterday&range=bogus",
			"repeated_parameter", "range", `range is given 2 times ("yesterday", "bogus")`},
		{"sort twice", "/v1/reports/behavior/pages", prop + "&sort=pageviews&sort=-exits",
			"repeated_parameter", "sort", `sort is given 2 times`},
		{"granularity twice", "/v1/reports/acquisition/overview", prop + "&granularity=day&granularity=week",
			"repeated_parameter", "granularity", `granularity is given 2 times`},
		{"format twice", "/v1/reports/acquisition/channel", prop + "&format=csv&format=json",
			"repeated_parameter", "format", `format is given 2 times`},
		{"property_id twice", "/v1/reports/acquisition/channel", prop + "&" + prop,
			"repeated_parameter", "property_id", `property_id is given 2 times`},
		{"from twice", "/v1/reports/acquisition/channel", prop + "&from=2026-03-01&to=2026-03-02&from=2026-03-02",
			"repeated_parameter", "from", `from is given 2 times`},
		{"realtime limit twice", "/v1/reports/realtime/sources", prop + "&limit=3&limit=5",
			"repeated_parameter", "limit", `limit is given 2 times`},
		{"realtime window twice", "/v1/reports/realtime", prop + "&window=5&window=30",
			"repeated_parameter", "window", `window is given 2 times`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := e.getRaw(viewer, tt.path, tt.query)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			got := decodeError(t, body).Error
			if got.Code != tt.code || got.Field != tt.field || !strings.Contains(got.Message, tt.message) {
				t.Errorf("error %+v; want code %q, field %q and a message containing %q", got, tt.code, tt.field, tt.message)
			}
		})
	}

	t.Run("every parameter", func(t *testing.T) {
		for _, tt := range []struct{ path, query string }{
			{"/v1/reports/behavior/query", prop + "&format=csv&range=last_7_days&granularity=day&compare=previous_period&dimensions=page_path" +
				"&metrics=pageviews&metrics=exits&filter=page_path%3D@/&filter=page_path!%3D/x/&sort=-pageviews,period&limit=5&offset=1&path=/blog/"},
			{"/v1/reports/behavior/query", prop + "&format=json&from=2026-03-01&to=2026-03-19&granularity=week&compare=previous_period&dimensions=page_path" +
				"&metrics=pageviews,exits&filter=page_path%3D@/%3Bpage_path!%3D/x/&sort=-pageviews&limit=5&offset=0&path=/"},
			{"/v1/reports/acquisition/channel", prop + "&range=last_28_days&metrics=sessions&metrics=users&filter=channel!%3DDirect&sort=channel&limit=10&offset=0&path=&dimensions=&format=csv"},
			{"/v1/reports/realtime", prop + "&format=json&window=5&limit=3"},
			{"/v1/reports/realtime/pages", prop + "&format=csv&window=30&limit=1000"},
			{"/v1/reports/acquisition", prop},
			{"/v1/reports/behavior", ""},
		} {
			if status, body, _ := e.getRaw(viewer, tt.path, tt.query); status != http.StatusOK {
				t.Errorf("%s?%s: status %d: %s", tt.path, tt.query, status, body)
			}
		}
	})

	t.Run("an encoded ; is AND", func(t *testing.T) {
		get := func(query string) *report {
			t.Helper()
			status, body, _ := e.getRaw(viewer, "/v1/reports/acquisition/query", prop+"&dimensions=source&metrics=sessions"+query)
			if status != http.StatusOK {
				t.Fatalf("%s: status %d: %s", query, status, body)
			}
			var r report
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			return &r
		}
		all := get("")
		encoded := get("&filter=source%3D%3Dgoogle%3Bmedium%3D%3Dorganic")
		twoFilters := get("&filter=source%3D%3Dgoogle&filter=medium%3D%3Dorganic")
		if got, want := encoded.Totals["sessions"], twoFilters.Totals["sessions"]; got != want || got == 0 || got >= all.Totals["sessions"] {
			t.Errorf("sessions: %v with filter=A%%3BB, %v with filter=A&filter=B, %v unfiltered; want the first two equal, above 0 and below the third",
				got, want, all.Totals["sessions"])
		}
	})
}
