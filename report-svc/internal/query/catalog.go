package query

import (
	"slices"
	"strings"

	"github.com/acme/analytics/pkg/rollup"
)

// Scope is what a rollup row counts, which decides the metrics it has.
type Scope int

const (
	// ScopeSession rows count sessions once in their dimension value (the
	// total report and the acquisition reports).
	ScopeSession Scope = iota
	// ScopePage rows count pageviews and the sessions entering and leaving
	// a page.
	ScopePage
	// ScopeEvent rows count events by category, action and label.
	ScopeEvent
	// ScopeFiltered rows count hits excluded by the property's rules.
	ScopeFiltered
)

func (s Scope) String() string {
	return [...]string{"session", "page", "event", "filtered"}[s]
}

// filteredReport names the filtered_hits table as a source.
const filteredReport = "filtered_hits"

// source is a set of stored rows a query can read: a rollup report (or the
// filtered_hits table) whose dimension value encodes columns.
type source struct {
	report  string
	scope   Scope
	columns []string
}

// sources lists every readable source. The first source of a scope
// without columns is its dimensionless one. The session source and medium
// alone are read from source_medium (planSource), whose rows add up
// exactly over the other part (rollup.AcquisitionReports).
var sources = []*source{
	{rollup.Total, ScopeSession, nil},
	{rollup.Channel, ScopeSession, []string{"channel"}},
	{rollup.SourceMedium, ScopeSession, []string{"source", "medium"}},
	{rollup.Campaign, ScopeSession, []string{"campaign"}},
	{rollup.Referrer, ScopeSession, []string{"referrer"}},
	{rollup.LandingPage, ScopeSession, []string{"landing_page"}},
	{rollup.Country, ScopeSession, []string{"country"}},
	{rollup.Device, ScopeSession, []string{"device"}},
	{rollup.Browser, ScopeSession, []string{"browser"}},
	{rollup.OS, ScopeSession, []string{"os"}},
	{rollup.UserType, ScopeSession, []string{"user_type"}},
	{rollup.Page, ScopePage, []string{"page"}},
	{rollup.EventCategory, ScopeEvent, []string{"event_category"}},
	{rollup.EventAction, ScopeEvent, []string{"event_category", "event_action"}},
	{rollup.Event, ScopeEvent, []string{"event_category", "event_action", "event_label"}},
	{filteredReport, ScopeFiltered, []string{"reason"}},
}

// decode splits a stored dimension value into the source's columns
// (rollup.SplitDimension: multi-part values are escaped and joined by
// rollup.JoinDimension). A value written before processing escaped, with
// a part holding " / " itself, is split at its first separators, the rest
// in the last column, until its day is reprocessed (docs/reports.md).
func (s *source) decode(dim string) []string {
	return rollup.SplitDimension(dim, len(s.columns))
}

// Dimension is a report dimension: a stored column, or a value derived
// from columns.
type Dimension struct {
	Name string `json:"name"`
	Doc  string `json:"description"`
	// needs are the stored columns it is computed from (itself when
	// stored).
	needs []string
	// derive computes the value from the needs' values; false drops the
	// row (the page-path drill-down keeps only pages under its path).
	derive func(vals []string, q *Query) (string, bool)
	// pages: the values are pages in the form hits carry them
	// (hit.CanonicalPath), so a filter on it tests its values in that
	// form too (Filter.canonicalPages).
	pages bool
}

func stored(name, doc string) *Dimension {
	return &Dimension{Name: name, Doc: doc, needs: []string{name}}
}

func storedPages(name, doc string) *Dimension {
	d := stored(name, doc)
	d.pages = true
	return d
}

var dimensions = map[string]*Dimension{
	"channel":        stored("channel", "default channel group (GA4) or the property's custom channel"),
	"source":         stored("source", "session source: google, (direct), a referring host, a utm_source"),
	"medium":         stored("medium", "session medium: organic, referral, cpc, (none), a utm_medium"),
	"campaign":       stored("campaign", "session campaign, (organic), (referral), (direct) or (not set)"),
	"referrer":       stored("referrer", "external referrer host and path, or (none)"),
	"landing_page":   storedPages("landing_page", "path of the session's first pageview, (not set) without one"),
	"country":        stored("country", "ISO 3166-1 alpha-2 country code, or (not set)"),
	"device":         stored("device", "device category: desktop, mobile, tablet, smart tv, other"),
	"browser":        stored("browser", "browser name"),
	"os":             stored("os", "operating system"),
	"user_type":      stored("user_type", "new (the user's first session) or returning"),
	"page":           storedPages("page", "page path"),
	"event_category": stored("event_category", "event category"),
	"event_action":   stored("event_action", "event action"),
	"event_label":    stored("event_label", "event label"),
	"reason":         stored("reason", "why hits were excluded: ip, user_agent, country, foreign_host, bot, page, too_late, visitor_limit"),
	// source_medium is shown as people read it, unescaped: a source
	// holding " / " makes it ambiguous to the eye, which the source and
	// medium dimensions are not.
	"source_medium": {Name: "source_medium", Doc: `"source / medium"`, needs: []string{"source", "medium"},
		derive: func(v []string, _ *Query) (string, bool) { return v[0] + rollup.Separator + v[1], true }},
	"page_path": {Name: "page_path", Doc: "page-path drill-down: the pages and directories one level below the path parameter",
		needs: []string{"page"}, derive: func(v []string, q *Query) (string, bool) { return drillDown(v[0], q.Path) }, pages: true},
}

// drillDown returns the entry directly under dir that page belongs to: the
// page itself, or the next directory (with its trailing slash). Pages not
// under dir are dropped.
func drillDown(page, dir string) (string, bool) {
	if !strings.HasPrefix(page, dir) {
		return "", false
	}
	rest := page[len(dir):]
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return dir + rest[:i+1], true
	}
	return page, true
}

// Kind says how a metric's value is shown.
type Kind string

// Metric kinds.
const (
	KindCount   Kind = "count"   // an integer
	KindRate    Kind = "rate"    // a fraction: 0.25 is 25%
	KindSeconds Kind = "seconds" // a duration in seconds
	KindValue   Kind = "value"   // a sum of values (goal or event values)
	KindAverage Kind = "average" // a ratio that is neither a rate nor a duration
)

// Metric is a report metric of one scope, computed from a row's sums.
type Metric struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	Doc  string `json:"description"`
	// users: the metric needs the users sketch.
	users bool
	// hourly: rollup_hourly has what it needs.
	hourly bool
	value  func(a *agg) float64
}

// usersOf is the distinct users of a's rows: the count of their merged
// sketches, kept within the bounds the rows' exact sums prove. Every new
// user of the range is one of its users, and every user has a session in
// the rows, so new_users <= users <= sessions. An exact count is within
// them already; an estimate (past sketch.ExactLimit) may not be, and a
// report showing fewer users than new users (a day of 600 new users as
// 593 users), or more users than sessions, is wrong where the truth is
// known: the bound is nearer the true count than the estimate.
func usersOf(a *agg) int64 {
	return min(max(int64(a.users.Count()), a.m.NewUsers), a.m.Sessions)
}

func ratio(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

func fratio(n float64, d int64) float64 {
	if d == 0 {
		return 0
	}
	return n / float64(d)
}

// metrics are the metrics of each scope, in the order the catalog lists
// them.
var metrics = map[Scope][]*Metric{
	ScopeSession: {
		{Name: "users", Kind: KindCount, Doc: "distinct users (merged HyperLogLog sketches; exact up to 512, else within 0.81% standard error, and never below new_users nor above sessions)", users: true, hourly: true,
			value: func(a *agg) float64 { return float64(usersOf(a)) }},
		{Name: "new_users", Kind: KindCount, Doc: "users whose first session started in the range", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.NewUsers) }},
		{Name: "sessions", Kind: KindCount, Doc: "sessions", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.Sessions) }},
		{Name: "engaged_sessions", Kind: KindCount, Doc: "sessions longer than 10 s, or with 2+ pageviews, or a conversion", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.EngagedSessions) }},
		{Name: "engagement_rate", Kind: KindRate, Doc: "engaged_sessions / sessions", hourly: true,
			value: func(a *agg) float64 { return ratio(a.m.EngagedSessions, a.m.Sessions) }},
		{Name: "bounces", Kind: KindCount, Doc: "sessions with exactly one pageview and no interaction event", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.Bounces) }},
		{Name: "bounce_rate", Kind: KindRate, Doc: "bounces / sessions", hourly: true,
			value: func(a *agg) float64 { return ratio(a.m.Bounces, a.m.Sessions) }},
		{Name: "avg_session_duration", Kind: KindSeconds, Doc: "total session duration / sessions, in seconds", hourly: true,
			value: func(a *agg) float64 { return ratio(a.m.DurationMS, a.m.Sessions) / 1000 }},
		{Name: "pageviews", Kind: KindCount, Doc: "pageviews of the sessions", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.Pageviews) }},
		{Name: "pages_per_session", Kind: KindAverage, Doc: "pageviews / sessions", hourly: true,
			value: func(a *agg) float64 { return ratio(a.m.Pageviews, a.m.Sessions) }},
		{Name: "events", Kind: KindCount, Doc: "events of the sessions", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.Events) }},
		{Name: "conversions", Kind: KindCount, Doc: "goal completions (each goal at most once per session)", hourly: true,
			value: func(a *agg) float64 { return float64(a.m.Conversions) }},
		{Name: "conversion_rate", Kind: KindRate, Doc: "conversions / sessions (can pass 1 with several goals)", hourly: true,
			value: func(a *agg) float64 { return ratio(a.m.Conversions, a.m.Sessions) }},
		{Name: "goal_value", Kind: KindValue, Doc: "sum of the values of the conversions", hourly: true,
			value: func(a *agg) float64 { return a.m.ConversionValue }},
	},
	ScopePage: {
		{Name: "pageviews", Kind: KindCount, Doc: "pageviews",
			value: func(a *agg) float64 { return float64(a.m.Pageviews) }},
		{Name: "unique_pageviews", Kind: KindCount, Doc: "sessions that viewed the page",
			value: func(a *agg) float64 { return float64(a.m.UniquePageviews) }},
		{Name: "avg_time_on_page", Kind: KindSeconds, Doc: "measured time on page / measured pageviews, in seconds",
			value: func(a *agg) float64 { return ratio(a.m.TimeOnPageMS, a.m.TimeOnPageViews) / 1000 }},
		{Name: "entrances", Kind: KindCount, Doc: "sessions that started on the page",
			value: func(a *agg) float64 { return float64(a.m.Entrances) }},
		{Name: "exits", Kind: KindCount, Doc: "sessions that ended on the page",
			value: func(a *agg) float64 { return float64(a.m.Exits) }},
		{Name: "exit_rate", Kind: KindRate, Doc: "exits / pageviews",
			value: func(a *agg) float64 { return ratio(a.m.Exits, a.m.Pageviews) }},
		{Name: "bounces", Kind: KindCount, Doc: "bounced sessions that started on the page",
			value: func(a *agg) float64 { return float64(a.m.Bounces) }},
		{Name: "bounce_rate", Kind: KindRate, Doc: "bounces / entrances",
			value: func(a *agg) float64 { return ratio(a.m.Bounces, a.m.Entrances) }},
	},
	ScopeEvent: {
		{Name: "total_events", Kind: KindCount, Doc: "events",
			value: func(a *agg) float64 { return float64(a.m.Events) }},
		{Name: "unique_events", Kind: KindCount, Doc: "sessions with the event (summed over the rows' finest level)",
			value: func(a *agg) float64 { return float64(a.m.UniqueEvents) }},
		{Name: "event_value", Kind: KindValue, Doc: "sum of the events' values",
			value: func(a *agg) float64 { return a.m.EventValue }},
		{Name: "avg_event_value", Kind: KindAverage, Doc: "event_value / total_events",
			value: func(a *agg) float64 { return fratio(a.m.EventValue, a.m.Events) }},
	},
	ScopeFiltered: {
		{Name: "hits", Kind: KindCount, Doc: "hits excluded by the property's rules",
			value: func(a *agg) float64 { return float64(a.hits) }},
	},
}

func metricByName(s Scope, name string) *Metric {
	for _, m := range metrics[s] {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func metricNames(s Scope) []string {
	var out []string
	for _, m := range metrics[s] {
		out = append(out, m.Name)
	}
	return out
}

// Family is one report service's set of reports: acquisition or behavior.
type Family struct {
	Name string
	// Dimensions the family's queries may use.
	Dimensions []string
	// Scopes a dimensionless query may read, in order of preference.
	Scopes  []Scope
	Reports []*Report
}

// Report is a named report: a preset query.
type Report struct {
	Name       string   `json:"name"`
	Doc        string   `json:"description"`
	Dimensions []string `json:"dimensions"`
	Metrics    []string `json:"default_metrics"`
	// Scope of a dimensionless report.
	Scope Scope `json:"-"`
	// NonZero drops rows where this metric is zero (exit pages: exits).
	NonZero string `json:"-"`
	// Generic reports take their dimensions from the request.
	Generic bool `json:"generic,omitempty"`
}

var acquisitionMetrics = []string{"users", "new_users", "sessions", "engaged_sessions", "bounce_rate", "avg_session_duration", "pages_per_session", "conversions", "conversion_rate", "goal_value"}
var pageMetrics = []string{"pageviews", "unique_pageviews", "avg_time_on_page", "entrances", "exits", "exit_rate", "bounce_rate"}
var eventMetrics = []string{"total_events", "unique_events", "event_value", "avg_event_value"}

func acqReport(name, doc string, dims ...string) *Report {
	return &Report{Name: name, Doc: doc, Dimensions: dims, Metrics: acquisitionMetrics}
}

// Acquisition is the acquisition family: how users arrive.
var Acquisition = &Family{
	Name:       "acquisition",
	Dimensions: []string{"channel", "source", "medium", "source_medium", "campaign", "referrer", "landing_page", "country", "device", "browser", "os", "user_type"},
	Scopes:     []Scope{ScopeSession},
	Reports: []*Report{
		acqReport("overview", "totals of the range, or a time series with granularity"),
		acqReport("channel", "by default channel group", "channel"),
		acqReport("source", "by session source", "source"),
		acqReport("medium", "by session medium", "medium"),
		acqReport("source_medium", "by source and medium", "source", "medium"),
		acqReport("campaign", "by campaign", "campaign"),
		acqReport("referrer", "by external referrer", "referrer"),
		acqReport("landing_page", "by landing page", "landing_page"),
		acqReport("country", "by country", "country"),
		acqReport("device", "by device category", "device"),
		acqReport("browser", "by browser", "browser"),
		acqReport("os", "by operating system", "os"),
		acqReport("user_type", "new vs returning", "user_type"),
		{Name: "query", Doc: "any dimensions of the family (dimensions parameter)", Metrics: acquisitionMetrics, Generic: true},
	},
}

// Behavior is the behavior family: what users do.
var Behavior = &Family{
	Name:       "behavior",
	Dimensions: []string{"page", "page_path", "landing_page", "event_category", "event_action", "event_label", "reason"},
	Scopes:     []Scope{ScopePage, ScopeEvent, ScopeFiltered, ScopeSession},
	Reports: []*Report{
		{Name: "overview", Doc: "page totals of the range, or a time series with granularity", Metrics: pageMetrics, Scope: ScopePage},
		{Name: "pages", Doc: "by page path", Dimensions: []string{"page"}, Metrics: pageMetrics},
		{Name: "landing_pages", Doc: "sessions by landing page", Dimensions: []string{"landing_page"},
			Metrics: []string{"sessions", "users", "new_users", "bounce_rate", "pages_per_session", "avg_session_duration", "conversions", "conversion_rate", "goal_value"}},
		{Name: "exit_pages", Doc: "pages sessions ended on", Dimensions: []string{"page"}, Metrics: []string{"exits", "pageviews", "exit_rate"}, NonZero: "exits"},
		{Name: "page_paths", Doc: "page-path drill-down one level below the path parameter (default /)", Dimensions: []string{"page_path"}, Metrics: pageMetrics},
		{Name: "events", Doc: "by event category, action and label", Dimensions: []string{"event_category", "event_action", "event_label"}, Metrics: eventMetrics},
		{Name: "event_categories", Doc: "by event category", Dimensions: []string{"event_category"}, Metrics: eventMetrics},
		{Name: "event_actions", Doc: "by event category and action", Dimensions: []string{"event_category", "event_action"}, Metrics: eventMetrics},
		{Name: "filtered", Doc: "hits excluded by the property's rules, by reason", Dimensions: []string{"reason"}, Metrics: []string{"hits"}},
		{Name: "query", Doc: "any dimensions of the family (dimensions parameter)", Metrics: pageMetrics, Scope: ScopePage, Generic: true},
	},
}

// Report returns the family's report called name, or nil.
func (f *Family) Report(name string) *Report {
	for _, r := range f.Reports {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// ReportNames lists the family's report names.
func (f *Family) ReportNames() []string {
	var out []string
	for _, r := range f.Reports {
		out = append(out, r.Name)
	}
	return out
}

// planSource picks the source with the fewest columns, among the scopes
// allowed, that holds every needed column; for a dimensionless query the
// first scope (in order) that has every metric.
func planSource(scopes []Scope, needed []string, metricNames []string) *source {
	if len(needed) == 0 {
		for _, sc := range scopes {
			ok := true
			for _, n := range metricNames {
				if metricByName(sc, n) == nil {
					ok = false
					break
				}
			}
			if ok {
				for _, s := range sources {
					if s.scope == sc {
						return s
					}
				}
			}
		}
		return nil
	}
	var best *source
	for _, s := range sources {
		if !slices.Contains(scopes, s.scope) {
			continue
		}
		all := true
		for _, n := range needed {
			if !slices.Contains(s.columns, n) {
				all = false
				break
			}
		}
		if all && (best == nil || len(s.columns) < len(best.columns)) {
			best = s
		}
	}
	return best
}

// Catalog describes a family's dimensions and metrics for the catalog
// endpoint.
type Catalog struct {
	Dimensions     []*Dimension
	Metrics        []*Metric
	MetricsByScope map[string][]string
}

// CatalogOf returns f's catalog.
func CatalogOf(f *Family) Catalog {
	c := Catalog{MetricsByScope: map[string][]string{}}
	for _, n := range f.Dimensions {
		c.Dimensions = append(c.Dimensions, dimensions[n])
	}
	seen := map[string]bool{}
	for _, sc := range f.Scopes {
		c.MetricsByScope[sc.String()] = metricNames(sc)
		for _, m := range metrics[sc] {
			if !seen[m.Name+"/"+m.Doc] {
				seen[m.Name+"/"+m.Doc] = true
				c.Metrics = append(c.Metrics, m)
			}
		}
	}
	return c
}
