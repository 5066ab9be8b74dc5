package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/queryparam"
)

// Limits of a query.
const (
	DefaultLimit     = 1000
	MaxLimit         = 10000
	MaxOffset        = 1_000_000
	MaxRangeDays     = 400 // about 13 months: this year against the last
	MaxHourRangeDays = 92
	MaxDimensions    = 3
)

// ParamError is a request parameter that is missing or wrong. Code is
// stable; Message tells a person how to fix it. It is queryparam's, so
// that the refusals of a query string and of its values are one kind.
type ParamError = queryparam.Error

func paramErr(field, code, format string, args ...any) *ParamError {
	return &ParamError{Field: field, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Query is a validated report request.
type Query struct {
	Family      *Family
	Report      *Report
	Range       DateRange
	RangeName   string // the preset, or "" for explicit dates
	Compare     bool   // also compute the previous period
	Granularity Granularity
	Dimensions  []*Dimension
	Metrics     []*Metric
	Filter      *Filter // nil: none
	Sort        []SortKey
	Limit       int
	Offset      int
	Path        string // page_path drill-down directory
	NonZero     *Metric

	filterRaw []string
	src       *source
	hourly    bool
}

// SortKey orders rows by a dimension, a metric or the period.
type SortKey struct {
	Field string
	Desc  bool
	dim   int // index into Dimensions, or -1
	met   int // index into Metrics, or -1
}

// scopeDefaults are the metrics of a generic query without a metrics
// parameter.
var scopeDefaults = map[Scope][]string{
	ScopeSession:  acquisitionMetrics,
	ScopePage:     pageMetrics,
	ScopeEvent:    eventMetrics,
	ScopeFiltered: {"hits"},
}

// ReportParams are the query parameters that Parse reads: those of a
// report besides the API's own (property_id, format). filter may be
// repeated (the filters are ANDed), and so may dimensions and metrics
// (their lists are joined).
var ReportParams = []Param{
	{Name: "range"}, {Name: "from"}, {Name: "to"}, {Name: "granularity"}, {Name: "compare"},
	{Name: "dimensions", Repeatable: true}, {Name: "metrics", Repeatable: true}, {Name: "filter", Repeatable: true},
	{Name: "sort"}, {Name: "limit"}, {Name: "offset"}, {Name: "path"},
}

// Parse validates the parameters of report r of family f; v must accept
// ReportParams. today is the current date in the property's time zone.
func Parse(f *Family, r *Report, v *Params, today time.Time) (*Query, error) {
	q := &Query{Family: f, Report: r, Limit: DefaultLimit}
	if err := q.parseRange(v, today); err != nil {
		return nil, err
	}
	switch g := Granularity(v.Get("granularity")); g {
	case None, Hour, Day, Week, Month:
		q.Granularity = g
	default:
		return nil, paramErr("granularity", "invalid_granularity", "%q is not a granularity; use hour, day, week or month", g)
	}
	switch c := v.Get("compare"); c {
	case "":
	case "previous_period":
		q.Compare = true
	default:
		return nil, paramErr("compare", "invalid_compare", "%q is not a comparison; the only one is previous_period", c)
	}

	// Dimensions.
	// A list of no names (dimensions=, dimensions=%20, dimensions=,) is
	// the parameter left out, as any empty parameter is: not a choice of
	// dimensions that a named report refuses.
	dimNames := r.Dimensions
	if names := splitList(strings.Join(v.All("dimensions"), ",")); len(names) > 0 {
		if !r.Generic {
			return nil, paramErr("dimensions", "fixed_dimensions", "the %s report has fixed dimensions (%s); use /v1/reports/%s/query?dimensions=... to choose them",
				r.Name, orNone(r.Dimensions), f.Name)
		}
		dimNames = names
	}
	if len(dimNames) > MaxDimensions {
		return nil, paramErr("dimensions", "too_many_dimensions", "%d dimensions given; at most %d", len(dimNames), MaxDimensions)
	}
	for _, name := range dimNames {
		d := dimensions[name]
		if d == nil || !slices.Contains(f.Dimensions, name) {
			return nil, paramErr("dimensions", "unknown_dimension", "%q is not a dimension of %s reports; valid: %s", name, f.Name, strings.Join(f.Dimensions, ", "))
		}
		for _, have := range q.Dimensions {
			if have == d {
				return nil, paramErr("dimensions", "duplicate_dimension", "dimension %q is given twice", name)
			}
		}
		q.Dimensions = append(q.Dimensions, d)
	}

	// Filters: every filter parameter is ANDed, all of them within one
	// filter's limits.
	filterLen, insts, cost := 0, 0, 0
	for _, raw := range v.All("filter") {
		if raw == "" {
			continue
		}
		if filterLen += len(raw); filterLen > maxFilterLen && filterLen > len(raw) {
			return nil, paramErr("filter", "invalid_filter", "the filter parameters are %d bytes long together (UTF-8); the limit is %d, for one filter or all of them together", filterLen, maxFilterLen)
		}
		fl, err := parseFilter(raw, maxFilterInsts-insts)
		if err != nil {
			return nil, paramErr("filter", "invalid_filter", "%v", err)
		}
		for _, name := range fl.dimensions() {
			if dimensions[name] == nil || !slices.Contains(f.Dimensions, name) {
				return nil, paramErr("filter", "unknown_dimension", "the filter tests %q, which is not a dimension of %s reports; valid: %s", name, f.Name, strings.Join(f.Dimensions, ", "))
			}
		}
		if err := fl.canonicalPages(func(name string) bool { return dimensions[name].pages }); err != nil {
			return nil, paramErr("filter", "invalid_filter", "%v", err)
		}
		if cost += fl.cost; cost > maxFilterCost {
			return nil, paramErr("filter", "invalid_filter", "the regular expressions of the request's filters could cost %d units of work for each value they test (about a nanosecond each, on values of up to %d bytes), more than the %d a report allows; anchor them with ^ (an anchored expression without .* or + costs a few hundred) or simplify them (docs/reports.md)", cost, maxValueBytes, maxFilterCost)
		}
		if q.Filter == nil {
			q.Filter = &Filter{}
		}
		q.Filter.And = append(q.Filter.And, fl.And...)
		insts += fl.insts
		q.filterRaw = append(q.filterRaw, raw)
	}

	// The source: the rollup that holds every needed column.
	var needed []string
	var filterDims []string
	if q.Filter != nil {
		filterDims = q.Filter.dimensions()
	}
	for _, name := range append(dimNamesOf(q.Dimensions), filterDims...) {
		for _, c := range dimensions[name].needs {
			if !slices.Contains(needed, c) {
				needed = append(needed, c)
			}
		}
	}
	metNames := splitList(strings.Join(v.All("metrics"), ","))
	explicitMetrics := len(metNames) > 0
	scopes := append([]Scope{r.Scope}, f.Scopes...)
	if !explicitMetrics {
		metNames = r.Metrics
	}
	q.src = planSource(scopes, needed, metNames)
	if q.src == nil && len(needed) > 0 {
		return nil, paramErr(fieldOf(q.Dimensions, filterDims), "incompatible_dimensions",
			"no stored rollup combines %s; each rollup holds one of: %s", strings.Join(needed, " and "), describeSources(f))
	}
	if q.src == nil {
		// A dimensionless query whose metrics no scope has all of.
		for _, n := range metNames {
			found := false
			for _, sc := range scopes {
				if metricByName(sc, n) != nil {
					found = true
				}
			}
			if !found {
				return nil, paramErr("metrics", "unknown_metric", "%q is not a metric of %s reports; valid: %s", n, f.Name, strings.Join(familyMetricNames(f), ", "))
			}
		}
		return nil, paramErr("metrics", "incompatible_metrics", "metrics %s are not all counted by one kind of row; session metrics: %s; page metrics: %s; event metrics: %s",
			strings.Join(metNames, ", "), strings.Join(metricNames(ScopeSession), ", "), strings.Join(metricNames(ScopePage), ", "), strings.Join(metricNames(ScopeEvent), ", "))
	}
	if !explicitMetrics && (r.Generic || len(r.Dimensions) == 0) && len(needed) > 0 {
		// A generic query, or an overview filtered on a dimension, shows
		// the default metrics of the rows it reads.
		metNames = scopeDefaults[q.src.scope]
	}
	for _, n := range metNames {
		m := metricByName(q.src.scope, n)
		if m == nil {
			return nil, paramErr("metrics", "unknown_metric", "%q is not a metric of %s rows (%s); valid: %s",
				n, q.src.scope, describeSource(q.src), strings.Join(metricNames(q.src.scope), ", "))
		}
		if slices.Contains(q.Metrics, m) {
			return nil, paramErr("metrics", "duplicate_metric", "metric %q is given twice", n)
		}
		q.Metrics = append(q.Metrics, m)
	}
	if r.NonZero != "" {
		q.NonZero = metricByName(q.src.scope, r.NonZero)
	}

	if q.Granularity == Hour {
		if q.src.scope != ScopeSession || len(q.src.columns) > 0 {
			return nil, paramErr("granularity", "hour_unavailable",
				"hour granularity is stored only as session totals (rollup_hourly): use it without dimensions or filters on session metrics, or use day")
		}
		if q.Range.Days() > MaxHourRangeDays {
			return nil, paramErr("granularity", "range_too_long", "hour granularity covers at most %d days; the range has %d", MaxHourRangeDays, q.Range.Days())
		}
		q.hourly = true
	}

	if err := q.parseSort(v.Get("sort")); err != nil {
		return nil, err
	}
	var err error
	if q.Limit, err = intParam(v, "limit", DefaultLimit, 1, MaxLimit); err != nil {
		return nil, err
	}
	if q.Offset, err = intParam(v, "offset", 0, 0, MaxOffset); err != nil {
		return nil, err
	}

	usesPath := false
	for _, name := range append(dimNamesOf(q.Dimensions), filterDims...) {
		usesPath = usesPath || name == "page_path"
	}
	if p := v.Get("path"); p != "" || usesPath {
		if !usesPath {
			return nil, paramErr("path", "unused_parameter", "path applies to the page_path drill-down (the page_paths report)")
		}
		if p == "" {
			p = "/"
		}
		if !strings.HasPrefix(p, "/") {
			return nil, paramErr("path", "invalid_path", "%q is not a directory path; it must start with / (e.g. /blog/)", p)
		}
		if strings.Contains(p, "#") {
			return nil, paramErr("path", "invalid_path", "%q holds '#': pages are stored without their #fragment, so leave it out; "+
				"a '#' that is part of the path is stored as %%23, so write that (%%2523 in a query string)", p)
		}
		if before, query, ok := strings.Cut(p, "?"); ok {
			// A '?' begins a page's query, which is no part of a
			// directory: drillDown cuts pages at it, so no directory it
			// shows holds one. /blog/?x was read as the directory
			// /blog/?x/: an empty report (but for queries beginning x/,
			// split at their slashes as if directories). Pages with a
			// query are listed, as pages, under their directory.
			return nil, paramErr("path", "invalid_path", "%q holds '?': path is a directory, and a page's query is no part of one; "+
				"the pages with a query are listed, as pages, in the drill-down of their directory (path=%s), and a filter on page finds them by their query (filter=page=@?%s); "+
				"a '?' that is part of the path is stored as %%3F, so write that (%%253F in a query string)", p, before[:strings.LastIndexByte(before, '/')+1], query)
		}
		// Pages are stored percent-encoded (hit.CanonicalPath): /café/
		// and /caf%c3%a9/ are the directory /caf%C3%A9/.
		p = hit.CanonicalPath(p)
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		q.Path = p
	}
	return q, nil
}

func (q *Query) parseRange(v *Params, today time.Time) error {
	from, to, preset := v.Get("from"), v.Get("to"), v.Get("range")
	switch {
	case preset != "" && (from != "" || to != ""):
		return paramErr("range", "invalid_range", "give either range or from and to, not both")
	case from != "" || to != "":
		if from == "" || to == "" {
			return paramErr("from", "invalid_range", "give both from and to (YYYY-MM-DD, inclusive, in the property's time zone)")
		}
		f, err := parseDate(from)
		if err != nil {
			return paramErr("from", "invalid_date", "%v", err)
		}
		if f.Before(EarliestDate) {
			// No hit is that old; and 0001-01-01, Go's zero time, is
			// sent to Cassandra as an empty date, which it refuses in a
			// partition key.
			return paramErr("from", "invalid_date", "%q is before %s, the earliest date a report covers", from, EarliestDate.Format(time.DateOnly))
		}
		t, err := parseDate(to)
		if err != nil {
			return paramErr("to", "invalid_date", "%v", err)
		}
		if t.Before(f) {
			return paramErr("to", "invalid_range", "to (%s) is before from (%s)", to, from)
		}
		q.Range = DateRange{f, t}
	default:
		if preset == "" {
			preset = DefaultPreset
		}
		r, ok := presetRange(preset, today)
		if !ok {
			return paramErr("range", "invalid_range", "%q is not a range; use one of %s, or from and to", preset, strings.Join(Presets, ", "))
		}
		q.Range, q.RangeName = r, preset
	}
	if n := q.Range.Days(); n > MaxRangeDays {
		if q.RangeName == "" {
			// The dates were given: name them, not the range parameter
			// the request did not send.
			return paramErr("from,to", "range_too_long", "from %s to %s is %d days; a report covers at most %d", from, to, n, MaxRangeDays)
		}
		return paramErr("range", "range_too_long", "the range %s has %d days; at most %d", q.RangeName, n, MaxRangeDays)
	}
	return nil
}

func (q *Query) parseSort(s string) error {
	keys := splitList(s)
	if len(keys) == 0 {
		// No field (sort empty, or only blanks and commas): the default
		// order, as without the parameter. Time series in time order;
		// otherwise the first metric, largest first. Ties by period and
		// dimension values, for stable pages.
		if q.Granularity != None {
			q.Sort = append(q.Sort, SortKey{Field: "period", dim: -1, met: -1})
		}
		if len(q.Metrics) > 0 {
			q.Sort = append(q.Sort, SortKey{Field: q.Metrics[0].Name, Desc: true, dim: -1, met: 0})
		}
		return nil
	}
	for _, f := range keys {
		k := SortKey{Field: strings.TrimPrefix(f, "-"), Desc: strings.HasPrefix(f, "-"), dim: -1, met: -1}
		if k.Field == "" {
			// It was "cannot sort by \"\"".
			return paramErr("sort", "invalid_sort", "sort has a - that names no field (%s); write - and the field together, e.g. -users for users descending", s)
		}
		for _, have := range q.Sort {
			if have.Field == k.Field {
				// The second key could never order anything, and users,-users
				// asks for two orders: which was meant cannot be known.
				return paramErr("sort", "invalid_sort", "sort gives %q twice (%s); give each field once, with - for descending", k.Field, s)
			}
		}
		for i, d := range q.Dimensions {
			if d.Name == k.Field {
				k.dim = i
			}
		}
		for i, m := range q.Metrics {
			if m.Name == k.Field {
				k.met = i
			}
		}
		if k.dim < 0 && k.met < 0 && (k.Field != "period" || q.Granularity == None) {
			valid := dimNamesOf(q.Dimensions)
			for _, m := range q.Metrics {
				valid = append(valid, m.Name)
			}
			if q.Granularity != None {
				valid = append(valid, "period")
			}
			return paramErr("sort", "invalid_sort", "cannot sort by %q: it is not one of the query's dimensions or metrics (%s); prefix - for descending", k.Field, strings.Join(valid, ", "))
		}
		q.Sort = append(q.Sort, k)
	}
	return nil
}

// Key identifies the query's result for the result cache (everything but
// limit and offset, which apply when a result is shown).
func (q *Query) Key() string {
	var b strings.Builder
	b.WriteString(q.Family.Name + "|" + q.Report.Name + "|" + formatDate(q.Range.From) + "|" + formatDate(q.Range.To) + "|" + string(q.Granularity))
	if q.Compare {
		b.WriteString("|cmp")
	}
	b.WriteString("|d=" + strings.Join(dimNamesOf(q.Dimensions), ","))
	b.WriteString("|m=")
	for _, m := range q.Metrics {
		b.WriteString(m.Name + ",")
	}
	// Filters and the path are the request's own text, which may hold any
	// byte: each is quoted, so that no two lists of them read alike.
	b.WriteString("|f=")
	for _, f := range q.filterRaw {
		b.WriteString(strconv.Quote(f))
	}
	b.WriteString("|s=")
	for _, k := range q.Sort {
		if k.Desc {
			b.WriteByte('-')
		}
		b.WriteString(k.Field + ",")
	}
	b.WriteString("|p=" + strconv.Quote(q.Path))
	return b.String()
}

// FilterText returns the filter as given (several filter parameters joined
// by ;), or "".
func (q *Query) FilterText() string { return strings.Join(q.filterRaw, ";") }

func intParam(v *Params, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, paramErr(name, "invalid_"+name, "%q is not a whole number from %d to %d", s, lo, hi)
	}
	return n, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func dimNamesOf(ds []*Dimension) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name
	}
	return out
}

func fieldOf(dims []*Dimension, filterDims []string) string {
	if len(filterDims) > 0 && len(dims) == 0 {
		return "filter"
	}
	return "dimensions"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func describeSource(s *source) string {
	if s.report == filteredReport {
		return "filtered_hits"
	}
	return "the " + s.report + " rollup"
}

func describeSources(f *Family) string {
	var out []string
	for _, s := range sources {
		if len(s.columns) == 0 || !slices.Contains(f.Scopes, s.scope) {
			continue
		}
		ok := true
		for _, c := range s.columns {
			if !slices.Contains(f.Dimensions, c) {
				ok = false
			}
		}
		if ok {
			out = append(out, "("+strings.Join(s.columns, ", ")+")")
		}
	}
	return strings.Join(out, "; ")
}

func familyMetricNames(f *Family) []string {
	var out []string
	for _, sc := range f.Scopes {
		for _, n := range metricNames(sc) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
