package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/sketch"
	"github.com/acme/analytics/report-svc/internal/query"
)

// jsonBuf appends JSON by hand where key order matters (rows list their
// dimensions and metrics in the order asked for).
type jsonBuf struct{ bytes.Buffer }

func (b *jsonBuf) str(s string) {
	if isPlain(s) {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// isPlain reports whether s needs no escaping in JSON (and no HTML-safe
// escaping, which encoding/json applies).
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (b *jsonBuf) key(k string) {
	b.str(k)
	b.WriteByte(':')
}

func (b *jsonBuf) raw(v any) {
	enc, _ := json.Marshal(v)
	b.Write(enc)
}

// appendValue appends a metric value: counts as integers, the others with
// the shortest decimal that reads back as the same float64.
func appendValue(b []byte, m *query.Metric, v float64) []byte {
	if m.Kind == query.KindCount {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func formatValue(m *query.Metric, v float64) string { return string(appendValue(nil, m, v)) }

func (b *jsonBuf) value(m *query.Metric, v float64) {
	b.Write(appendValue(b.AvailableBuffer(), m, v))
}

func (b *jsonBuf) metrics(ms []*query.Metric, vals []float64) {
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.key(m.Name)
		v := 0.0
		if vals != nil {
			v = vals[i]
		}
		b.value(m, v)
	}
	b.WriteByte('}')
}

type rangeJSON struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Preset string `json:"preset,omitempty"`
}

type freshnessJSON struct {
	CompleteUpTo   string  `json:"complete_up_to"`
	Final          bool    `json:"final"`
	NewestActivity *string `json:"newest_activity"`
	ComputedAt     string  `json:"computed_at"`
}

func freshness(f query.Freshness) freshnessJSON {
	out := freshnessJSON{CompleteUpTo: f.CompleteUpTo.UTC().Format(time.RFC3339Nano), Final: f.Final, ComputedAt: f.ComputedAt.UTC().Format(time.RFC3339Nano)}
	if !f.NewestActivity.IsZero() {
		s := f.NewestActivity.UTC().Format(time.RFC3339)
		out.NewestActivity = &s
	}
	return out
}

func page(rows []query.Row, q *query.Query) []query.Row {
	if q.Offset >= len(rows) {
		return nil
	}
	rows = rows[q.Offset:]
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
	}
	return rows
}

func writeReportJSON(w http.ResponseWriter, p query.Property, a *query.Answer) {
	q := a.Query
	body := a.Render("json|"+renderKey(q), func() []byte { return encodeReportJSON(p, a.Result, q) })
	var b jsonBuf
	b.Grow(len(body) + 128)
	b.Write(body)
	writeServed(&b, a.Cached, a.Stale, a.Fallback)
	b.WriteString("}\n")
	httpserver.SetContentType(w.Header(), "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// renderKey names what of a request's query an encoding of a result
// depends on beyond the result's key: the page and the range's preset.
func renderKey(q *query.Query) string {
	return strconv.Itoa(q.Limit) + "|" + strconv.Itoa(q.Offset) + "|" + q.RangeName
}

// encodeReportJSON encodes a result for the request's query q (the
// result may have been computed for another request of the same key),
// without its closing brace, to which writeReportJSON adds how this answer
// was served.
func encodeReportJSON(p query.Property, a *query.Result, q *query.Query) []byte {
	var b jsonBuf
	b.WriteByte('{')
	b.key("property_id")
	b.str(p.ID.String())
	b.WriteString(`,"family":`)
	b.str(q.Family.Name)
	b.WriteString(`,"report":`)
	b.str(q.Report.Name)
	b.WriteString(`,"time_zone":`)
	b.str(p.Location.String())
	b.WriteString(`,"range":`)
	b.raw(rangeJSON{From: q.Range.From.Format(time.DateOnly), To: q.Range.To.Format(time.DateOnly), Preset: q.RangeName})
	if a.PreviousRange != nil {
		b.WriteString(`,"previous_range":`)
		b.raw(rangeJSON{From: a.PreviousRange.From.Format(time.DateOnly), To: a.PreviousRange.To.Format(time.DateOnly)})
	}
	if q.Granularity != query.None {
		b.WriteString(`,"granularity":`)
		b.str(string(q.Granularity))
	}
	b.WriteString(`,"dimensions":`)
	dims := make([]string, len(q.Dimensions))
	for i, d := range q.Dimensions {
		dims[i] = d.Name
	}
	b.raw(dims)
	b.WriteString(`,"metrics":`)
	mets := make([]string, len(q.Metrics))
	for i, m := range q.Metrics {
		mets[i] = m.Name
	}
	b.raw(mets)
	if f := q.FilterText(); f != "" {
		b.WriteString(`,"filter":`)
		b.str(f)
	}
	if q.Path != "" {
		b.WriteString(`,"path":`)
		b.str(q.Path)
	}
	b.WriteString(`,"rows":[`)
	for i, row := range page(a.Rows, q) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		first := true
		sep := func() {
			if !first {
				b.WriteByte(',')
			}
			first = false
		}
		if row.Bucket >= 0 {
			bk := a.Buckets[row.Bucket]
			sep()
			b.key("period")
			b.str(bk.Label)
			b.WriteString(`,"period_start":`)
			b.str(bk.Start.Format(time.RFC3339))
		}
		for j, d := range q.Dimensions {
			sep()
			b.key(d.Name)
			b.str(row.Dims[j])
		}
		for j, m := range q.Metrics {
			sep()
			b.key(m.Name)
			b.value(m, row.Values[j])
		}
		if q.Compare {
			sep()
			b.key("previous")
			b.metrics(q.Metrics, row.Previous)
		}
		b.WriteByte('}')
	}
	b.WriteString(`],"totals":`)
	b.metrics(q.Metrics, a.Totals)
	if q.Compare {
		b.WriteString(`,"previous_totals":`)
		b.metrics(q.Metrics, a.PreviousTotals)
	}
	b.WriteString(`,"row_count":`)
	b.WriteString(strconv.Itoa(len(a.Rows)))
	b.WriteString(`,"limit":`)
	b.WriteString(strconv.Itoa(q.Limit))
	b.WriteString(`,"offset":`)
	b.WriteString(strconv.Itoa(q.Offset))
	for _, m := range q.Metrics {
		if m.Name == "users" {
			b.WriteString(`,"users_estimated":`)
			b.WriteString(strconv.FormatBool(a.UsersEstimated))
			b.WriteString(`,"users_standard_error":`)
			b.WriteString(strconv.FormatFloat(sketch.StandardError, 'f', -1, 64))
		}
	}
	b.WriteString(`,"freshness":`)
	b.raw(freshness(a.Freshness))
	return b.Bytes()
}

func writeServed(b *jsonBuf, cached, stale bool, fallback string) {
	b.WriteString(`,"cached":`)
	b.WriteString(strconv.FormatBool(cached))
	b.WriteString(`,"stale":`)
	b.WriteString(strconv.FormatBool(stale))
	if fallback != "" {
		b.WriteString(`,"fallback":`)
		b.str(fallback)
	}
}

// servedHeaders carry freshness and fallback on CSV responses, which have
// no envelope.
func servedHeaders(w http.ResponseWriter, f query.Freshness, stale bool, fallback string) {
	h := w.Header()
	h.Set("X-Report-Complete-Up-To", f.CompleteUpTo.UTC().Format(time.RFC3339Nano))
	h.Set("X-Report-Final", strconv.FormatBool(f.Final))
	h.Set("X-Report-Stale", strconv.FormatBool(stale))
	if fallback != "" {
		h.Set("X-Report-Fallback", fallback)
	}
}

func writeReportCSV(w http.ResponseWriter, a *query.Answer) {
	q := a.Query
	body := a.Render("csv|"+renderKey(q), func() []byte { return encodeReportCSV(a.Result, q) })
	servedHeaders(w, a.Freshness, a.Stale, a.Fallback)
	w.Header().Set("X-Report-Row-Count", strconv.Itoa(len(a.Rows)))
	httpserver.SetContentType(w.Header(), "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+q.Family.Name+"-"+q.Report.Name+"-"+q.Range.From.Format(time.DateOnly)+"-"+q.Range.To.Format(time.DateOnly)+`.csv"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func encodeReportCSV(a *query.Result, q *query.Query) []byte {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	var header []string
	if q.Granularity != query.None {
		header = append(header, "period", "period_start")
	}
	for _, d := range q.Dimensions {
		header = append(header, d.Name)
	}
	for _, m := range q.Metrics {
		header = append(header, m.Name)
	}
	if q.Compare {
		for _, m := range q.Metrics {
			header = append(header, "previous_"+m.Name)
		}
	}
	_ = cw.Write(header)
	for _, row := range page(a.Rows, q) {
		rec := make([]string, 0, len(header))
		if row.Bucket >= 0 {
			bk := a.Buckets[row.Bucket]
			rec = append(rec, bk.Label, bk.Start.Format(time.RFC3339))
		}
		for _, d := range row.Dims {
			rec = append(rec, csvText(d))
		}
		for j, m := range q.Metrics {
			rec = append(rec, formatValue(m, row.Values[j]))
		}
		if q.Compare {
			for j, m := range q.Metrics {
				v := 0.0
				if row.Previous != nil {
					v = row.Previous[j]
				}
				rec = append(rec, formatValue(m, v))
			}
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	return buf.Bytes()
}

// csvText is a dimension value as a CSV cell. The values come from
// anonymous hits (a campaign, an event label, a page title), and a
// spreadsheet opening the export runs a cell that starts with =, +, -, @,
// a tab or a carriage return as a formula: such a value is written after
// a ' (OWASP's advice for CSV injection), which spreadsheets show as text.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

type namedJSON struct {
	Page      string `json:"page,omitempty"`
	Source    string `json:"source,omitempty"`
	Pageviews int64  `json:"pageviews"`
}

type minuteJSON struct {
	Minute    string `json:"minute"`
	Pageviews int64  `json:"pageviews"`
}

type realtimeJSON struct {
	PropertyID         string        `json:"property_id"`
	Now                string        `json:"now"`
	ActiveUsers5m      uint64        `json:"active_users_5m"`
	ActiveUsers30m     uint64        `json:"active_users_30m"`
	UsersEstimated     bool          `json:"users_estimated"`
	UsersStandardError float64       `json:"users_standard_error"`
	WindowMinutes      int           `json:"window_minutes"`
	Pageviews          int64         `json:"pageviews"`
	PerMinute          []minuteJSON  `json:"per_minute,omitempty"`
	TopPages           []namedJSON   `json:"top_pages,omitempty"`
	TopSources         []namedJSON   `json:"top_sources,omitempty"`
	Freshness          freshnessJSON `json:"freshness"`
	Cached             bool          `json:"cached"`
	Stale              bool          `json:"stale"`
	Fallback           string        `json:"fallback,omitempty"`
}

func writeRealtime(w http.ResponseWriter, p query.Property, a *query.RealtimeAnswer, view, format string) {
	if format == "csv" {
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		switch view {
		case "minutes":
			_ = cw.Write([]string{"minute", "pageviews"})
			for _, m := range a.Minutes {
				_ = cw.Write([]string{m.Minute.UTC().Format(time.RFC3339), strconv.FormatInt(m.Pageviews, 10)})
			}
		default:
			list, col := a.TopPages, "page"
			if view == "sources" {
				list, col = a.TopSources, "source"
			}
			_ = cw.Write([]string{col, "pageviews"})
			for _, n := range list {
				_ = cw.Write([]string{csvText(n.Name), strconv.FormatInt(n.Pageviews, 10)})
			}
		}
		cw.Flush()
		servedHeaders(w, a.Freshness, a.Stale, a.Fallback)
		httpserver.SetContentType(w.Header(), "text/csv; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(buf.Bytes())
		return
	}
	out := realtimeJSON{
		PropertyID: p.ID.String(), Now: a.Now.UTC().Format(time.RFC3339Nano),
		ActiveUsers5m: a.ActiveUsers5m, ActiveUsers30m: a.ActiveUsers30m,
		UsersEstimated: a.UsersEstimated, UsersStandardError: sketch.StandardError,
		WindowMinutes: a.Window, Pageviews: a.Pageviews,
		Freshness: freshness(a.Freshness), Cached: a.Cached, Stale: a.Stale, Fallback: a.Fallback,
	}
	if view == "" || view == "minutes" {
		out.PerMinute = []minuteJSON{}
		for _, m := range a.Minutes {
			out.PerMinute = append(out.PerMinute, minuteJSON{Minute: m.Minute.UTC().Format(time.RFC3339), Pageviews: m.Pageviews})
		}
	}
	if view == "" || view == "pages" {
		out.TopPages = []namedJSON{}
		for _, n := range a.TopPages {
			out.TopPages = append(out.TopPages, namedJSON{Page: n.Name, Pageviews: n.Pageviews})
		}
	}
	if view == "" || view == "sources" {
		out.TopSources = []namedJSON{}
		for _, n := range a.TopSources {
			out.TopSources = append(out.TopSources, namedJSON{Source: n.Name, Pageviews: n.Pageviews})
		}
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

type catalogJSON struct {
	Family       string              `json:"family"`
	Reports      []*query.Report     `json:"reports"`
	Dimensions   []*query.Dimension  `json:"dimensions"`
	Metrics      map[string][]string `json:"metrics_by_row_kind"`
	MetricInfo   []*query.Metric     `json:"metrics"`
	Ranges       []string            `json:"ranges"`
	Granularity  []string            `json:"granularities"`
	FilterSyntax string              `json:"filter_syntax"`
}

// catalogParams are the catalog's parameters: it is the same for every
// property, and property_id is accepted (not read) so that a client may
// send it with every call.
var catalogParams = []query.Param{{Name: "property_id"}}

func (h *Handler) catalog(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.params(w, r, catalogParams); !ok {
		return
	}
	c := query.CatalogOf(h.Family)
	httpserver.WriteJSON(w, http.StatusOK, catalogJSON{
		Family: h.Family.Name, Reports: h.Family.Reports, Dimensions: c.Dimensions, Metrics: c.MetricsByScope, MetricInfo: c.Metrics,
		Ranges: query.Presets, Granularity: []string{"hour", "day", "week", "month"},
		FilterSyntax: "name==value (equals), != , =@ (contains), !@, =~ (RE2 regex), !~, name[]a|b|c (in); ';' is AND, ',' is OR (binds tighter); \\, \\; \\| escape",
	})
}
