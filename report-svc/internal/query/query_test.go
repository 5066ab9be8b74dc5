package query

import (
	"net/url"
	"reflect"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/rules"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		expr    string
		want    [][]Condition // without compiled regexps
		wantErr string
	}{
		{expr: "country==DE", want: [][]Condition{{{Dimension: "country", Op: "==", Value: "DE"}}}},
		{expr: "country==DE;source=~^goo,medium==cpc", want: [][]Condition{
			{{Dimension: "country", Op: "==", Value: "DE"}},
			{{Dimension: "source", Op: "=~", Value: "^goo"}, {Dimension: "medium", Op: "==", Value: "cpc"}}}},
		{expr: "country[]DE|FR|a\\|b", want: [][]Condition{{{Dimension: "country", Op: "[]", Value: `DE|FR|a\|b`, Values: []string{"DE", "FR", "a|b"}}}}},
		{expr: `campaign==a\,b\;c`, want: [][]Condition{{{Dimension: "campaign", Op: "==", Value: "a,b;c"}}}},
		{expr: `page=~^/blog\.html$`, want: [][]Condition{{{Dimension: "page", Op: "=~", Value: `^/blog\.html$`}}}},
		{expr: "page!@x;page!~y;page!=z;page=@w", want: [][]Condition{
			{{Dimension: "page", Op: "!@", Value: "x"}}, {{Dimension: "page", Op: "!~", Value: "y"}},
			{{Dimension: "page", Op: "!=", Value: "z"}}, {{Dimension: "page", Op: "=@", Value: "w"}}}},
		{expr: "country", wantErr: "no operator"},
		{expr: "==DE", wantErr: "dimension name"},
		// An empty condition was called `condition "" does not start with
		// a dimension name`; a capitalised name did not say why it is none.
		{expr: "country==DE;;page==/", wantErr: "the filter has an empty condition"},
		{expr: "country==DE,", wantErr: "the filter has an empty condition"},
		{expr: "Country==DE", wantErr: "dimension names are lower case (country)"},
		{expr: "page=~(", wantErr: "regular expression"},
		// A condition without a value matched every row (=@, !=, =~: the
		// report served unfiltered) or none: no stored value is empty.
		{expr: "country=@", wantErr: `condition "country=@" has no value`},
		{expr: "country==DE;source!=", wantErr: `condition "source!=" has no value`},
		{expr: "page=~", wantErr: `condition "page=~" has no value`},
		{expr: "country[]", wantErr: `condition "country[]" has no value`},
		{expr: "country[]DE||FR", wantErr: `condition "country[]DE||FR" has an empty value in its list (entry 2)`},
		{expr: strings.Repeat("a", maxFilterLen+1), wantErr: "limit"},
		// The limit counts bytes, and the message says so: this filter
		// is 1004 characters and was called "2001 characters long".
		{expr: "page==/" + strings.Repeat("é", 997), wantErr: "filter is 2001 bytes long"},
		// A regular expression's size is bounded, not only its length:
		// this one compiled to 300,000 instructions, in half a second
		// and 13 MB.
		{expr: "page=~" + strings.Repeat(`[^~]{0\,1000}`, 150), wantErr: "is too large"},
		{expr: "page=~(?:abcdef{30}){30}", wantErr: "is too large"},
		{expr: `page=~.{0\,400};source=~.{0\,400}`, wantErr: "with the other regular expressions"},
		{expr: `page=~^/blog/.{0\,300}$`, want: [][]Condition{{{Dimension: "page", Op: "=~", Value: `^/blog/.{0,300}$`}}}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := parseFilter(tt.expr, maxFilterInsts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ors := range f.And {
				for i := range ors {
					ors[i].re = nil
				}
			}
			if !slices.EqualFunc(f.And, tt.want, func(a, b []Condition) bool {
				return slices.EqualFunc(a, b, func(x, y Condition) bool {
					return x.Dimension == y.Dimension && x.Op == y.Op && x.Value == y.Value && slices.Equal(x.Values, y.Values)
				})
			}) {
				t.Errorf("got %+v, want %+v", f.And, tt.want)
			}
		})
	}
}

// TestFilterLimitsOfARequest: repeated filter parameters share one
// filter's limits, its length, the size of its regular expressions and
// what they can cost on a value; each alone was bounded, and a query
// string of hundreds of them (the gateway passes 1 MiB) compiled for
// minutes and held gigabytes.
func TestFilterLimitsOfARequest(t *testing.T) {
	today := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	big := url.QueryEscape("page=~^" + strings.Repeat(`(?:[a-z]{50}|[0-9]{50})`, 9)) // 900 instructions, two alive at a time
	// As large, and all of it alive at every byte: 40 ms on a value of 4 KB.
	dense := url.QueryEscape("page=~" + strings.Repeat(`[^~]{0\,50}`, 9))
	small := url.QueryEscape("page=~^/blog/")
	// Within the limit on 4,096 bytes, but a page with its query can be
	// three times that ([^~]{0,19}~ took 6.3 ms a value on one of 12,284).
	longPage := url.QueryEscape("page=~[^~]{0\\,40}~")
	unanchored := url.QueryEscape("page=~(?i)blog")
	long := url.QueryEscape("page==/" + strings.Repeat("a", maxFilterLen/2))
	cafe := url.QueryEscape("page==/" + strings.Repeat("é", 500)) // 1007 bytes
	tests := []struct {
		query   string
		wantErr string
	}{
		{"filter=" + big, ""},
		{"filter=" + dense, "could cost"},
		{"filter=" + longPage, "could cost"},
		{strings.Repeat("filter="+unanchored+"&", 3) + "filter=" + small, ""},
		{strings.Repeat("filter="+unanchored+"&", 16), "more than the 6000000 a report allows"},
		{"filter=" + big + "&filter=" + small, ""},
		{"filter=" + big + "&filter=" + big, "with the other regular expressions"},
		{strings.Repeat("filter="+small+"&", 30) + "filter=" + big, "with the other regular expressions"},
		{"filter=" + long, ""},
		{"filter=" + long + "&filter=" + long, "together (UTF-8); the limit is 2000"},
		// 1014 characters, 2014 bytes: the message counts bytes, as the
		// limit does.
		{"filter=" + cafe + "&filter=" + cafe, "the filter parameters are 2014 bytes long together"},
	}
	for _, tt := range tests {
		t.Run(tt.query[:min(len(tt.query), 60)], func(t *testing.T) {
			v, err := ParseParams(tt.query, "/test", ReportParams)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(Behavior, Behavior.Report("pages"), v, today)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestPatternInstsIsAnUpperBound: the estimate that refuses a regular
// expression before it is compiled is never below the compiled size, and
// not far above it.
func TestPatternInstsIsAnUpperBound(t *testing.T) {
	for _, p := range []string{`^/blog/`, `(?i)^/BLOG/(2024|2025)/.*$`, `[^~]{0,50}`, `x{3,}`, `(?:ab|cd|e){2,7}z?`,
		`.{0,300}`, `(?:x{30}){30}`, `(a+b*)+|c{5}`, `\pL{10}\d*`, `(?:(?:a|b){2}c){0,20}`} {
		parsed, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		real, err := rules.CompiledSize(p)
		if err != nil {
			t.Fatal(err)
		}
		got := patternInsts(parsed, 1<<20)
		if got < real-2 || got > 2*real { // a program's own: fail and match
			t.Errorf("%s: estimated %d instructions, compiles to %d", p, got, real)
		}
	}
}

func TestConditionMatch(t *testing.T) {
	tests := []struct {
		expr  string
		value string
		want  bool
	}{
		{"x==Google", "Google", true},
		{"x==Google", "google", false}, // case-sensitive
		{"x!=a", "b", true},
		{"x=@oog", "google", true},
		{"x!@oog", "google", false},
		{"x=~(?i)^GOO", "google", true},
		{"x!~^goo", "google", false},
		{"x[]a|b", "b", true},
		{"x[]a|b", "c", false},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.expr, maxFilterInsts)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.And[0][0].match(tt.value); got != tt.want {
			t.Errorf("%s on %q = %v, want %v", tt.expr, tt.value, got, tt.want)
		}
	}
}

func TestDrillDown(t *testing.T) {
	tests := []struct {
		page, dir, want string
		ok              bool
	}{
		{"/", "/", "/", true},
		{"/pricing", "/", "/pricing", true},
		{"/blog/", "/", "/blog/", true},
		{"/blog/a/b", "/", "/blog/", true},
		{"/blog/a/b", "/blog/", "/blog/a/", true},
		{"/blog/post", "/blog/", "/blog/post", true},
		{"/blog/", "/blog/", "/blog/", true},
		{"/search?q=a/b", "/", "/search?q=a/b", true},
		{"/docs/x", "/blog/", "", false},
	}
	for _, tt := range tests {
		got, ok := drillDown(tt.page, tt.dir)
		if got != tt.want || ok != tt.ok {
			t.Errorf("drillDown(%q, %q) = %q, %v; want %q, %v", tt.page, tt.dir, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSourceDecode(t *testing.T) {
	s := &source{columns: []string{"event_category", "event_action", "event_label"}}
	tests := []struct {
		dim  string
		want []string
	}{
		{"video / play / intro", []string{"video", "play", "intro"}},
		{`Video \/ YouTube / play / intro`, []string{"Video / YouTube", "play", "intro"}},
		{`a \/ / \/ b / c\\d`, []string{"a /", "/ b", `c\d`}},
		// Written before processing escaped: the extra separator goes to
		// the last column.
		{"video / play / a / b", []string{"video", "play", "a / b"}},
		{"video / play", []string{"video", "play", ""}},
	}
	for _, tt := range tests {
		if got := s.decode(tt.dim); !slices.Equal(got, tt.want) {
			t.Errorf("decode(%q) = %q, want %q", tt.dim, got, tt.want)
		}
	}
}

func TestPresets(t *testing.T) {
	today := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC) // a Wednesday
	tests := []struct{ preset, from, to string }{
		{"today", "2026-03-18", "2026-03-18"},
		{"yesterday", "2026-03-17", "2026-03-17"},
		{"last_7_days", "2026-03-11", "2026-03-17"},
		{"last_28_days", "2026-02-18", "2026-03-17"},
		{"last_30_days", "2026-02-16", "2026-03-17"},
		{"last_90_days", "2025-12-18", "2026-03-17"},
		{"this_week", "2026-03-16", "2026-03-18"},
		{"last_week", "2026-03-09", "2026-03-15"},
		{"this_month", "2026-03-01", "2026-03-18"},
		{"last_month", "2026-02-01", "2026-02-28"},
	}
	for _, tt := range tests {
		r, ok := presetRange(tt.preset, today)
		if !ok || formatDate(r.From) != tt.from || formatDate(r.To) != tt.to {
			t.Errorf("%s = %s..%s, want %s..%s", tt.preset, formatDate(r.From), formatDate(r.To), tt.from, tt.to)
		}
	}
	for _, p := range Presets {
		if _, ok := presetRange(p, today); !ok {
			t.Errorf("preset %s listed but not defined", p)
		}
	}
}

// Presets on the days where weeks, months and years turn.
func TestPresetsAtTheirEdges(t *testing.T) {
	tests := []struct{ today, preset, from, to string }{
		{"2026-03-16", "this_week", "2026-03-16", "2026-03-16"}, // a Monday: today alone
		{"2026-03-16", "last_week", "2026-03-09", "2026-03-15"},
		{"2026-03-22", "this_week", "2026-03-16", "2026-03-22"}, // a Sunday ends the ISO week
		{"2026-01-01", "this_month", "2026-01-01", "2026-01-01"},
		{"2026-01-01", "last_month", "2025-12-01", "2025-12-31"},
		{"2026-01-01", "yesterday", "2025-12-31", "2025-12-31"},
		{"2026-01-01", "last_week", "2025-12-22", "2025-12-28"},  // a Thursday
		{"2024-03-31", "last_month", "2024-02-01", "2024-02-29"}, // leap year; the 31st
		{"2026-03-31", "last_month", "2026-02-01", "2026-02-28"},
		{"2026-03-01", "last_7_days", "2026-02-22", "2026-02-28"},
		{"2026-03-29", "last_7_days", "2026-03-22", "2026-03-28"}, // Berlin's 23-hour day is today: still 7 dates
	}
	for _, tt := range tests {
		today, _ := time.Parse(time.DateOnly, tt.today)
		r, ok := presetRange(tt.preset, today)
		if !ok || formatDate(r.From) != tt.from || formatDate(r.To) != tt.to {
			t.Errorf("%s on %s = %s..%s, want %s..%s", tt.preset, tt.today, formatDate(r.From), formatDate(r.To), tt.from, tt.to)
		}
	}
}

func TestBuckets(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	labels := func(bs []Bucket) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Label)
		}
		return out
	}
	// ISO weeks start on Monday; the first and last are clipped to the range.
	weeks := buckets(DateRange{d("2026-02-26"), d("2026-03-10")}, Week, ny, now)
	if got := labels(weeks); !slices.Equal(got, []string{"2026-W09", "2026-W10", "2026-W11"}) {
		t.Errorf("weeks %v", got)
	}
	if weeks[1].Start != time.Date(2026, 3, 2, 0, 0, 0, 0, ny) {
		t.Errorf("week 10 starts %v, want Monday 2026-03-02 in New York", weeks[1].Start)
	}
	months := buckets(DateRange{d("2025-12-15"), d("2026-02-01")}, Month, ny, now)
	if got := labels(months); !slices.Equal(got, []string{"2025-12", "2026-01", "2026-02"}) {
		t.Errorf("months %v", got)
	}
	// 2026-03-08 has no 02:00 in New York.
	hours := buckets(DateRange{d("2026-03-08"), d("2026-03-08")}, Hour, ny, now)
	if len(hours) != 23 || hours[2].Label != "2026-03-08T03" {
		t.Errorf("%d hours on the spring-forward day, third %s", len(hours), hours[2].Label)
	}
	// Nothing in the future.
	if got := buckets(DateRange{d("2026-03-30"), d("2026-04-05")}, Day, ny, now); len(got) != 3 {
		t.Errorf("%d day buckets up to 2026-04-01, want 3", len(got))
	}
	// ISO week-years: 2026-01-01 is in week 1 of 2026, 2024-12-30 in week 1 of 2025.
	if got := labels(buckets(DateRange{d("2024-12-30"), d("2024-12-31")}, Week, ny, now)); !slices.Equal(got, []string{"2025-W01"}) {
		t.Errorf("week of 2024-12-30 = %v", got)
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2024-02-29", ""},
		{"2026-02-29", `"2026-02-29" is not a date: February 2026 has no day 29 (it has days 1 to 28)`},
		{"2026-04-31", `"2026-04-31" is not a date: April 2026 has no day 31 (it has days 1 to 30)`},
		{"2026-03-00", `"2026-03-00" is not a date: March 2026 has no day 0 (it has days 1 to 31)`},
		{"2026-00-10", `"2026-00-10" is not a date: there is no month 0 (YYYY-MM-DD: the month comes before the day)`},
		{"2026-31-12", `"2026-31-12" is not a date: there is no month 31 (YYYY-MM-DD: the month comes before the day)`},
		{"2026-3-1", `"2026-3-1" is not a date; use YYYY-MM-DD (e.g. 2026-03-01)`},
		{"2026-0a-01", `"2026-0a-01" is not a date; use YYYY-MM-DD (e.g. 2026-03-01)`},
		{"yesterday", `"yesterday" is not a date; use YYYY-MM-DD (e.g. 2026-03-01)`},
	}
	for _, tt := range tests {
		_, err := parseDate(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("parseDate(%q): %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseChoosesTheSource(t *testing.T) {
	today := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		family *Family
		report string
		params string
		want   string
	}{
		{Acquisition, "overview", "", "total"},
		{Acquisition, "channel", "", "channel"},
		{Acquisition, "query", "dimensions=source", "source_medium"}, // no source report of its own
		{Acquisition, "medium", "", "source_medium"},
		{Acquisition, "query", "dimensions=source&filter=medium==cpc", "source_medium"},
		{Acquisition, "query", "dimensions=source_medium", "source_medium"},
		{Acquisition, "overview", "filter=country==DE", "country"},
		{Behavior, "overview", "", "page"},
		{Behavior, "overview", "metrics=total_events", "event_category"},
		{Behavior, "overview", "metrics=hits", filteredReport},
		{Behavior, "overview", "metrics=sessions", "total"},
		{Behavior, "query", "dimensions=event_category&filter=event_label==x", "event"},
		{Behavior, "landing_pages", "", "landing_page"},
		{Behavior, "page_paths", "", "page"},
		{Behavior, "overview", "filter=event_category==video", "event_category"},
	}
	for _, tt := range tests {
		v, err := ParseParams(tt.params, "/test", ReportParams)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse(tt.family, tt.family.Report(tt.report), v, today)
		if err != nil {
			t.Errorf("%s/%s?%s: %v", tt.family.Name, tt.report, tt.params, err)
			continue
		}
		if q.src.report != tt.want {
			t.Errorf("%s/%s?%s reads %s, want %s", tt.family.Name, tt.report, tt.params, q.src.report, tt.want)
		}
	}
}

// TestAddMetrics guards addMetrics against a field added to
// rollup.Metrics: it must equal Metrics.Add(o, 1) on every field.
func TestAddMetrics(t *testing.T) {
	var a, o rollup.Metrics
	va, vo := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&o).Elem()
	for i := range va.NumField() {
		switch va.Field(i).Kind() {
		case reflect.Int64:
			va.Field(i).SetInt(int64(i + 1))
			vo.Field(i).SetInt(int64(100 * (i + 1)))
		case reflect.Float64:
			va.Field(i).SetFloat(float64(i) + 0.5)
			vo.Field(i).SetFloat(float64(i) * 10.25)
		default:
			t.Fatalf("rollup.Metrics field %s has kind %s", va.Type().Field(i).Name, va.Field(i).Kind())
		}
	}
	want := a
	want.Add(o, 1)
	addMetrics(&a, &o)
	if a != want {
		t.Errorf("addMetrics = %+v, want %+v", a, want)
	}
}

// The hours of a series are the local hours the day's instants have, each
// beginning at its first instant, on every day whose clock changes: found
// here by walking the day minute by minute, in zones whose changes are
// not whole hours at :00 (Chatham's 02:45, Lord Howe's half hour, St
// John's 00:01), that skip or repeat midnight (Havana, Santiago,
// Asuncion), far from UTC (Apia, Kiritimati) or plain (Berlin, New York).
func TestHourBucketsFollowTheClock(t *testing.T) {
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/Havana",
		"America/Santiago", "America/Asuncion", "America/St_Johns", "Asia/Gaza", "Pacific/Apia", "Pacific/Kiritimati",
		"Asia/Kathmandu", "Asia/Kolkata", "Africa/Casablanca", "Antarctica/Troll"}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	checked := 0
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		days := []time.Time{time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)}
		for d := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2028; d = addDays(d, 1) {
			_, before := d.Add(-15 * time.Hour).In(loc).Zone()
			_, after := d.Add(39 * time.Hour).In(loc).Zone()
			if before != after {
				days = append(days, d)
			}
		}
		for _, d := range days {
			var want []string
			seen := map[string]bool{}
			for x := d.Add(-15 * time.Hour); x.Before(d.Add(39 * time.Hour)); x = x.Add(time.Minute) {
				if l := x.In(loc); dateOf(x, loc).Equal(d) && !seen[l.Format("15")] {
					seen[l.Format("15")] = true
					want = append(want, l.Format("2006-01-02T15")+" "+x.UTC().Format(time.RFC3339))
				}
			}
			var got []string
			for _, b := range buckets(DateRange{d, d}, Hour, loc, now) {
				got = append(got, b.Label+" "+b.Start.UTC().Format(time.RFC3339))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s on %s: hours\n%v\nwant\n%v", zone, formatDate(d), got, want)
			}
			checked++
		}
	}
	if checked < 300 {
		t.Errorf("only %d days checked", checked)
	}
}

// TestEmptyParameterIsLeftOut: a parameter with an empty value, or a list
// whose entries are all empty, is the parameter left out (docs/reports.md,
// "Parameters"): the same query, whose result is the same cache entry.
// dimensions= on a named report was refused as fixed_dimensions, and
// sort=, or sort=%20 sorted by no key (the dimension values' order).
func TestEmptyParameterIsLeftOut(t *testing.T) {
	today := time.Date(2026, 3, 18, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		family       *Family
		report, base string
		empty        string
	}{
		{Acquisition, "channel", "", "dimensions="},
		{Acquisition, "channel", "", "dimensions=%20"},
		{Acquisition, "channel", "", "dimensions=,"},
		{Acquisition, "channel", "", "dimensions=&dimensions=%20,%20"},
		{Acquisition, "overview", "granularity=day", "dimensions=,"},
		{Acquisition, "query", "", "dimensions=,"},
		{Behavior, "page_paths", "path=/blog/", "dimensions=%20"},
		// The default order, the first metric descending (after the
		// period in a series), not the dimension values' order.
		{Acquisition, "channel", "", "sort="},
		{Acquisition, "channel", "", "sort=,"},
		{Acquisition, "channel", "", "sort=%20"},
		{Acquisition, "channel", "", "sort=%20,%20"},
		{Acquisition, "channel", "granularity=week", "sort=,"},
		{Behavior, "events", "metrics=unique_events,total_events", "sort=%20"},
	}
	for _, tt := range tests {
		raw := strings.TrimPrefix(tt.base+"&"+tt.empty, "&")
		t.Run(tt.family.Name+"/"+tt.report+"?"+raw, func(t *testing.T) {
			parse := func(raw string) *Query {
				t.Helper()
				v, err := ParseParams(raw, "/test", ReportParams)
				if err != nil {
					t.Fatal(err)
				}
				q, err := Parse(tt.family, tt.family.Report(tt.report), v, today)
				if err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
				return q
			}
			got, want := parse(raw), parse(tt.base)
			if got.Key() != want.Key() || got.Limit != want.Limit || got.Offset != want.Offset {
				t.Errorf("the query is %s, want %s as without %s", got.Key(), want.Key(), tt.empty)
			}
		})
	}
}
