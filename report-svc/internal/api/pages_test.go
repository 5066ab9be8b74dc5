package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/report-svc/internal/reporttest"
)

// TestPagesAsTyped: pages are stored as collection keeps them,
// percent-encoded (hit.CanonicalPath: /café/ is /caf%C3%A9/); a filter on
// page, landing_page or page_path, and the path of the page_path
// drill-down, find a page written either way (as read, as stored, with
// lower-case hex), while a regular expression matches the stored form. A
// '+' in a query string is a space (send %2B), and a value holding '#' (or
// a path holding '?') is refused with the reason. Before, path=/café/ and
// filter=page==/café answered 200 with no rows.
func TestPagesAsTyped(t *testing.T) {
	day := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	ds := dayDataset(day)
	// Each session views its pages in order; the first is its landing page.
	for i, pages := range [][]string{
		{"/caf%C3%A9/", "/caf%C3%A9/men%C3%BC"},
		{"/caf%C3%A9/men%C3%BC"},
		{"/a%20b", "/c++"},
		{"/search?q=it%27s", "/it's"},
		{"/100%25", "/blog/c%23/"},
		nil, // no pageview (an event alone): landing page (not set)
	} {
		start := day.Add(10*time.Hour + time.Duration(i)*time.Minute)
		var views []reporttest.Pageview
		for j, p := range pages {
			views = append(views, reporttest.Pageview{Path: p, At: start.Add(time.Duration(j) * time.Second), TimeMS: -1})
		}
		ds.Sessions = append(ds.Sessions, &reporttest.Session{
			Client: fmt.Sprintf("c%d", i), Start: start, Day: day, Hour: 10,
			Channel: "Direct", Source: "(direct)", Medium: "(none)", Campaign: "(direct)", Referrer: "(none)",
			Country: "DE", Device: "desktop", Browser: "Firefox", OS: "Linux", New: true,
			Pageviews: views, DurationMS: int64(max(len(views)-1, 0)) * 1000,
		})
		if views == nil {
			ds.Sessions[i].Events = []reporttest.Event{{Category: "video", Action: "play", At: start}}
		}
	}
	e := newEnv(t, ds, defaultOptions())

	// rows GETs path with the raw query (dates added) and renders its rows
	// as "dimension=metric", sorted.
	rows := func(t *testing.T, path, metric, rawQuery string) []string {
		t.Helper()
		status, body, _ := e.getRaw(viewer, path, "property_id="+ds.Property.String()+"&from=2026-03-18&to=2026-03-18&metrics="+metric+"&"+rawQuery)
		if status != http.StatusOK {
			t.Fatalf("GET %s?%s: %d %s", path, rawQuery, status, body)
		}
		var r report
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, row := range r.Rows {
			out = append(out, fmt.Sprintf("%v=%v", row[r.Dimensions[0]], row[metric]))
		}
		slices.Sort(out)
		return out
	}
	filter := func(expr string) string { return "filter=" + url.QueryEscape(expr) }
	const pages, landing, drill = "/v1/reports/behavior/pages", "/v1/reports/behavior/landing_pages", "/v1/reports/behavior/page_paths"
	menu := []string{"/caf%C3%A9/men%C3%BC=2"}
	cafe := []string{"/caf%C3%A9/=1", "/caf%C3%A9/men%C3%BC=2"} // the directory's own page, and the one below
	tests := []struct {
		name, path, metric, query string
		want                      []string
	}{
		{"equals, as read", pages, "pageviews", filter("page==/café/menü"), menu},
		{"equals, as stored", pages, "pageviews", filter("page==/caf%C3%A9/men%C3%BC"), menu},
		{"equals, lower-case hex", pages, "pageviews", filter("page==/caf%c3%a9/men%c3%bc"), menu},
		{"equals, a space", pages, "pageviews", filter("page==/a b"), []string{"/a%20b=1"}},
		{"equals, a literal %", pages, "pageviews", filter("page==/100%"), []string{"/100%25=1"}},
		{"equals, an escaped #", pages, "pageviews", filter("page==/blog/c%23/"), []string{"/blog/c%23/=1"}},
		{"+ sent as %2B", pages, "pageviews", "filter=page%3D%3D%2Fc%2B%2B", []string{"/c++=1"}},
		{"+ sent as itself is a space", pages, "pageviews", "filter=page%3D%3D%2Fa+b", []string{"/a%20b=1"}},
		{"contains", pages, "pageviews", filter("page=@café"), cafe},
		{"contains, in the path or the query", pages, "pageviews", filter("page=@it's"), []string{"/it's=1", "/search?q=it%27s=1"}},
		{"does not contain", pages, "pageviews", filter("page!@é;page!@+;page!@'"), []string{"/100%25=1", "/a%20b=1", "/blog/c%23/=1"}},
		{"does not equal", pages, "pageviews", filter("page!=/café/menü;page=@café"), []string{"/caf%C3%A9/=1"}},
		{"one of", pages, "pageviews", filter("page[]/café/|/a b"), []string{"/a%20b=1", "/caf%C3%A9/=1"}},
		{"regular expression, the stored form", pages, "pageviews", filter("page=~^/caf%C3%A9/"), cafe},
		{"regular expression, as read, finds nothing", pages, "pageviews", filter("page=~^/café/"), nil},
		{"landing page", landing, "sessions", filter("landing_page==/café/menü"), []string{"/caf%C3%A9/men%C3%BC=1"}},
		{"landing page not set is no path", landing, "sessions", filter("landing_page==(not set)"), []string{"(not set)=1"}},
		{"landing page not (not set)", landing, "sessions", filter("landing_page!=(not set);landing_page!@/"), nil},
		{"drill-down path, as read", drill, "pageviews", "path=" + url.QueryEscape("/café/"), cafe},
		{"drill-down path, as stored", drill, "pageviews", "path=" + url.QueryEscape("/caf%c3%a9"), cafe},
		{"drill-down filter", drill, "pageviews", filter("page_path==/café/"), []string{"/caf%C3%A9/=3"}},
		{"a page with a query is a page of its directory", drill, "pageviews", "path=/&" + filter("page_path=@search"), []string{"/search?q=it%27s=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rows(t, tt.path, tt.metric, tt.query); !slices.Equal(got, tt.want) {
				t.Errorf("rows %q, want %q", got, tt.want)
			}
		})
	}

	// A '?' in the drill-down's path (a directory) was taken as part of
	// it: /search?q= became the directory /search?q=/, which holds no
	// page, and the report was empty.
	for _, tt := range []struct{ name, query, code, field, says string }{
		{"# in a filter", filter("page==/pricing#plans"), "invalid_filter", "filter", "%23"},
		{"# in the drill-down path", "path=" + url.QueryEscape("/blog/c#/"), "invalid_path", "path", "%23"},
		{"? in the drill-down path", "path=" + url.QueryEscape("/search?q="), "invalid_path", "path", "(path=/)"},
		{"? in the drill-down path, a directory's", "path=" + url.QueryEscape("/blog/?x"), "invalid_path", "path", "(path=/blog/)"},
		{"? in the drill-down path, as part of it", "path=" + url.QueryEscape("/what?/"), "invalid_path", "path", "%3F"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := pages
			if tt.field == "path" {
				path = drill
			}
			status, body, _ := e.getRaw(viewer, path, "property_id="+ds.Property.String()+"&"+tt.query)
			apiErr := decodeError(t, body)
			if status != http.StatusBadRequest || apiErr.Error.Code != tt.code || apiErr.Error.Field != tt.field || !strings.Contains(apiErr.Error.Message, tt.says) {
				t.Fatalf("%d %s; want 400 %s on %s saying %s", status, body, tt.code, tt.field, tt.says)
			}
		})
	}
}
