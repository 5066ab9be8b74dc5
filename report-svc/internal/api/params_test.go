package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestQueryString checks that a query string the service cannot read
// in full is refused with a message that says how to send it, instead of
// being answered without the parameters it could not read.
func TestQueryString(t *testing.T) {
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
