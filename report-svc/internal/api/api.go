// Package api serves the report endpoints of one family (acquisition or
// behavior, plus realtime for behavior) over HTTP: it authorises the
// caller for the property, parses the query parameters, runs the query
// engine and writes JSON or CSV. docs/reports.md is its reference.
package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/query"
	"github.com/acme/analytics/report-svc/internal/store"
	"github.com/gocql/gocql"
)

// PropertyInfo is what the API needs to know about a property.
type PropertyInfo struct {
	TenantID string
	Location *time.Location
}

// Errors of a PropertyLookup.
var (
	// ErrPropertyNotFound: no such property (or it was deleted).
	ErrPropertyNotFound = errors.New("property not found")
	// ErrLookupUnavailable: the property could not be looked up now.
	ErrLookupUnavailable = errors.New("property lookup unavailable")
)

// PropertyLookup finds a property's owner and time zone (config-svc's
// client in production).
type PropertyLookup interface {
	Lookup(ctx context.Context, propertyID string) (PropertyInfo, error)
}

// Handler serves one family's endpoints.
type Handler struct {
	Family     *query.Family
	Engine     *query.Engine
	Properties PropertyLookup
	// Realtime adds the realtime endpoints (the behavior service).
	Realtime bool
	Log      *slog.Logger
	Now      func() time.Time
}

// Register mounts the endpoints on mux, behind the gateway-signed identity
// check (tenant.Require with secret) and a role check: admins and viewers
// may read reports.
func (h *Handler) Register(mux *http.ServeMux, secret []byte) {
	guard := func(f http.HandlerFunc) http.Handler {
		return tenant.Require(secret)(tenant.RequireRole(tenant.RoleAdmin, tenant.RoleViewer)(noBody(f)))
	}
	base := "/v1/reports/" + h.Family.Name
	mux.Handle("GET "+base, guard(h.catalog))
	mux.Handle("GET "+base+"/{report}", guard(h.report))
	if h.Realtime {
		mux.Handle("GET /v1/reports/realtime", guard(h.realtime))
		mux.Handle("GET /v1/reports/realtime/{view}", guard(h.realtime))
	}
}

// maxIgnoredBody is how much of a request body noBody reads to see that
// it holds nothing (the gateway's -max-body).
const maxIgnoredBody = 1 << 20

// noBody refuses a request whose body holds anything but white space, {}
// or null: a report's parameters are in its query string, and a body was
// ignored, so a client that sent {"filter": ...} as a body got the report
// unfiltered, as if that were what it asked for. {} and null (what a
// client sends that marshals a nil value) ask for nothing.
func noBody(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxIgnoredBody+1))
		if err != nil {
			httpserver.WriteError(w, http.StatusBadRequest, "unexpected_body", "could not read the request body ("+err.Error()+"); a report takes none")
			return
		}
		if httpserver.EmptyBody(body) {
			next(w, r)
			return
		}
		httpserver.WriteError(w, http.StatusBadRequest, "unexpected_body",
			"GET "+r.URL.Path+" takes no body: a report's parameters go in the query string (filter=..., metrics=..., docs/reports.md); send the request without one")
	}
}

// property authorises the caller for the property_id parameter and
// returns it; on failure it has written the error.
func (h *Handler) property(w http.ResponseWriter, r *http.Request, v *query.Params) (query.Property, bool) {
	raw := v.Get("property_id")
	if raw == "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "missing_parameter", "property_id", "property_id is required: the ID of the property to report on")
		return query.Property{}, false
	}
	id, err := gocql.ParseUUID(raw)
	if err != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_parameter", "property_id", "property_id "+strconv.Quote(raw)+" is not a property ID (a UUID)")
		return query.Property{}, false
	}
	caller, err := tenant.Extract(r.Context())
	if err != nil {
		httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", "no verified identity on this request")
		return query.Property{}, false
	}
	info, err := h.Properties.Lookup(r.Context(), id.String())
	switch {
	case errors.Is(err, ErrPropertyNotFound) || (err == nil && info.TenantID != caller.TenantID):
		// Another tenant's property is answered exactly like a missing one,
		// so that IDs cannot be probed.
		httpserver.WriteError(w, http.StatusNotFound, "property_not_found", "there is no property "+id.String()+" in your account")
		return query.Property{}, false
	case err != nil:
		h.Log.Warn("property lookup failed", slog.String("property_id", id.String()), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "config_unavailable", "the property's settings cannot be read right now; retry in a second")
		return query.Property{}, false
	}
	loc := info.Location
	if loc == nil {
		loc = time.UTC
	}
	return query.Property{ID: id, Location: loc}, true
}

// reportParams are the parameters of a report: property_id (read by
// property), format (formatOf) and those Parse reads.
var reportParams = slices.Concat([]query.Param{{Name: "property_id"}, {Name: "format"}}, query.ReportParams)

// article is the indefinite article of a family's name: an acquisition
// report, a behavior report.
func article(name string) string {
	if name != "" && strings.ContainsRune("aeiou", rune(name[0])) {
		return "an"
	}
	return "a"
}

func (h *Handler) report(w http.ResponseWriter, r *http.Request) {
	rep := h.Family.Report(r.PathValue("report"))
	if rep == nil {
		httpserver.WriteError(w, http.StatusNotFound, "unknown_report", strconv.Quote(r.PathValue("report"))+" is not "+article(h.Family.Name)+" "+h.Family.Name+" report; valid: "+strings.Join(h.Family.ReportNames(), ", "))
		return
	}
	v, ok := h.params(w, r, reportParams)
	if !ok {
		return
	}
	format, ok := formatOf(w, r, v)
	if !ok {
		return
	}
	p, ok := h.property(w, r, v)
	if !ok {
		return
	}
	q, err := query.Parse(h.Family, rep, v, dateIn(h.Now(), p.Location))
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	ans, err := h.Engine.Report(r.Context(), p, q)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	if format == "csv" {
		writeReportCSV(w, ans)
		return
	}
	writeReportJSON(w, p, ans)
}

// realtimeParams are the parameters of the realtime endpoints: property_id
// (read by property), format (formatOf), window and limit (realtime).
var realtimeParams = []query.Param{{Name: "property_id"}, {Name: "format"}, {Name: "window"}, {Name: "limit"}}

func (h *Handler) realtime(w http.ResponseWriter, r *http.Request) {
	view := r.PathValue("view")
	switch view {
	case "", "pages", "sources", "minutes":
	default:
		httpserver.WriteError(w, http.StatusNotFound, "unknown_report", strconv.Quote(view)+" is not a realtime view; valid: pages, sources, minutes (or /v1/reports/realtime for all)")
		return
	}
	v, ok := h.params(w, r, realtimeParams)
	if !ok {
		return
	}
	format, ok := formatOf(w, r, v)
	if !ok {
		return
	}
	if format == "csv" && view == "" && v.Get("format") == "" {
		format = "json" // asked for by Accept: the summary is JSON only
	}
	if format == "csv" && view == "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_parameter", "format", "the realtime summary is JSON only; CSV is available for /v1/reports/realtime/pages, /sources and /minutes")
		return
	}
	p, ok := h.property(w, r, v)
	if !ok {
		return
	}
	window, err := intParam(v.Get("window"), query.RealtimeWindow, 1, query.RealtimeWindow)
	if err != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_window", "window", "window "+err.Error()+" (minutes the top pages and sources cover)")
		return
	}
	limit, err := intParam(v.Get("limit"), 10, 1, 1000)
	if err != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_limit", "limit", "limit "+err.Error())
		return
	}
	ans, err := h.Engine.Realtime(r.Context(), p, window, limit)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	writeRealtime(w, p, ans, view, format)
}

// params returns the request's query parameters, which must be among
// accepted, each given once unless Repeatable; on a query string that is
// malformed (which r.URL.Query would read in part), or has another
// parameter, or one twice, it has written the error.
func (h *Handler) params(w http.ResponseWriter, r *http.Request, accepted []query.Param) (*query.Params, bool) {
	v, err := query.ParseParams(r.URL.RawQuery, r.URL.Path, accepted)
	if err != nil {
		h.writeErr(w, r, err)
		return nil, false
	}
	return v, true
}

func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errors.New(strconv.Quote(s) + " is not a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi))
	}
	return n, nil
}

// formatOf returns "json" or "csv": the format parameter, else CSV when
// the Accept header prefers it (prefersCSV), else JSON.
func formatOf(w http.ResponseWriter, r *http.Request, v *query.Params) (string, bool) {
	switch f := v.Get("format"); f {
	case "json", "csv":
		return f, true
	case "":
		if prefersCSV(r.Header.Values("Accept")) {
			return "csv", true
		}
		return "json", true
	default:
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_parameter", "format", strconv.Quote(f)+" is not a format; use json (the default) or csv")
		return "", false
	}
}

// prefersCSV reports whether Accept headers ask for text/csv over JSON:
// text/csv with a quality above 0 and above application/json's, when
// that is listed (a wildcard decides nothing; a tie is JSON, the
// default). Any header naming text/csv was taken for CSV, even one
// refusing it ("text/csv;q=0") or preferring JSON.
func prefersCSV(accept []string) bool {
	csv, _ := httpserver.Quality(accept, "text/csv")
	jsonQ, listed := httpserver.Quality(accept, "application/json")
	return csv > 0 && (!listed || csv > jsonQ)
}

func (h *Handler) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var pe *query.ParamError
	var ue *store.UnavailableError
	switch {
	case errors.As(err, &pe):
		httpserver.WriteFieldError(w, http.StatusBadRequest, pe.Code, pe.Field, pe.Message)
	case errors.As(err, &ue):
		secs := int(math.Ceil(ue.RetryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		httpserver.WriteError(w, http.StatusServiceUnavailable, "store_unavailable",
			"reports cannot be read right now: the report store is unavailable ("+ue.Reason+"); retry after "+strconv.Itoa(secs)+"s")
	case query.TimedOut(r.Context(), err):
		// The engine counts it as unavailable by the same test.
		w.Header().Set("Retry-After", "1")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "report_timeout", "the report took too long to compute; retry, or ask for a shorter range")
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		h.Log.Error("report failed", slog.String("path", httpserver.LoggedPath(r.URL.Path)), slog.String("request_id", httpserver.RequestID(r.Context())), slog.Any("error", err))
		httpserver.WriteError(w, http.StatusInternalServerError, "internal", "the report failed; the request ID identifies it in our logs")
	}
}

func dateIn(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
