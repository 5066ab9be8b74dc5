package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

// PropertyJSON is a property in the public API.
type PropertyJSON struct {
	ID               string    `json:"id"`
	TrackingID       string    `json:"tracking_id"`
	Name             string    `json:"name"`
	Hostnames        []string  `json:"hostnames"`
	TimeZone         string    `json:"time_zone"`
	Currency         string    `json:"currency"`
	Cookieless       bool      `json:"cookieless"`
	ProcessingShards int       `json:"processing_shards"`
	Snippet          string    `json:"snippet"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// PropertyList is a page of a tenant's properties, in the order of their
// IDs; NextAfter (absent on the last page) is the after of the next.
type PropertyList struct {
	Properties []PropertyJSON `json:"properties"`
	NextAfter  string         `json:"next_after,omitempty"`
}

func (s *Server) propertyJSON(p store.Property) PropertyJSON {
	hosts := p.Hostnames
	if hosts == nil {
		hosts = []string{}
	}
	return PropertyJSON{
		ID: p.ID.String(), TrackingID: p.TrackingID, Name: p.Name, Hostnames: hosts, TimeZone: p.TimeZone,
		Currency: p.Currency, Cookieless: p.Cookieless, ProcessingShards: p.ProcessingShards,
		Snippet:   Snippet(s.o.TrackerScriptURL, p.TrackingID, p.Cookieless),
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC(),
	}
}

// Snippet returns the tags a merchant puts on their pages: the command
// queue, so that at(...) called before the script has loaded is kept (and
// throws nothing into the page), then the script; a cookieless property's
// has data-cookieless, so that the tracker sets no cookie (collection
// ignores a cookieless property's client IDs anyway).
func Snippet(scriptURL, trackingID string, cookieless bool) string {
	attr := ""
	if cookieless {
		attr = " data-cookieless"
	}
	return SnippetQueue + "\n" + fmt.Sprintf(`<script async src="%s" data-tid="%s"%s></script>`, html.EscapeString(scriptURL), html.EscapeString(trackingID), attr)
}

// SnippetQueue is the command queue of the snippet: at(...) before
// tracker.js has loaded queues its arguments, which the script runs once
// it has (an element with id "at", which the page's window.at would be, is
// replaced too).
const SnippetQueue = `<script>window.at=typeof at=='function'?at:function(){(at.q=at.q||[]).push(arguments)}</script>`

type propertyFields struct {
	Name       *string   `json:"name"`
	Hostnames  *[]string `json:"hostnames"`
	TimeZone   *string   `json:"time_zone"`
	Currency   *string   `json:"currency"`
	Cookieless *bool     `json:"cookieless"`
	// Read-only fields a client may echo back from a GET; refused with a
	// reason rather than as unknown fields.
	ProcessingShards *json.RawMessage `json:"processing_shards"`
	ID               *json.RawMessage `json:"id"`
	TrackingID       *json.RawMessage `json:"tracking_id"`
}

const maxPropertyName = 100

// settings lists the settings the request gives (store.Set*), the only
// ones a PATCH writes.
func (f *propertyFields) settings() []string {
	var out []string
	for _, s := range []struct {
		given bool
		name  string
	}{
		{f.Name != nil, store.SetName}, {f.Hostnames != nil, store.SetHostnames}, {f.TimeZone != nil, store.SetTimeZone},
		{f.Currency != nil, store.SetCurrency}, {f.Cookieless != nil, store.SetCookieless},
	} {
		if s.given {
			out = append(out, s.name)
		}
	}
	return out
}

// apply validates the fields given and sets them on p; it answers the
// request and returns false on the first bad field.
func (f *propertyFields) apply(w http.ResponseWriter, p *store.Property) bool {
	switch {
	case f.ProcessingShards != nil:
		httpserver.WriteFieldError(w, http.StatusBadRequest, "read_only_field", "processing_shards", "processing_shards: is set by our operators for large properties; leave it out")
		return false
	case f.ID != nil || f.TrackingID != nil:
		field := "id"
		if f.TrackingID != nil {
			field = "tracking_id"
		}
		httpserver.WriteFieldError(w, http.StatusBadRequest, "read_only_field", field, field+": is assigned by the service and cannot be set; leave it out")
		return false
	}
	if f.Name != nil {
		if !checkName(w, "name", *f.Name, maxPropertyName) {
			return false
		}
		p.Name = strings.TrimSpace(*f.Name)
	}
	if f.Hostnames != nil {
		hosts, ok := normalizeHostnames(w, *f.Hostnames)
		if !ok {
			return false
		}
		p.Hostnames = hosts
	}
	if f.TimeZone != nil {
		tz := *f.TimeZone
		if problem := checkTimeZone(tz); problem != "" {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "time_zone", "time_zone: "+quote(tz)+" "+problem)
			return false
		}
		p.TimeZone = tz
	}
	if f.Currency != nil {
		c := *f.Currency
		if !validCurrency(c) {
			msg := "currency: " + quote(c) + " is not an ISO 4217 currency code, e.g. EUR or USD"
			if validCurrency(strings.ToUpper(c)) {
				msg = "currency: " + quote(c) + " must be in upper case: " + quote(strings.ToUpper(c))
			}
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "currency", msg)
			return false
		}
		p.Currency = c
	}
	if f.Cookieless != nil {
		p.Cookieless = *f.Cookieless
	}
	return true
}

func normalizeHostnames(w http.ResponseWriter, in []string) ([]string, bool) {
	if len(in) > rules.MaxHostnames {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "hostnames", fmt.Sprintf("hostnames: has %d entries; the limit is %d", len(in), rules.MaxHostnames))
		return nil, false
	}
	out := make([]string, 0, len(in))
	for i, h := range in {
		field := fmt.Sprintf("hostnames[%d]", i)
		if reason := rules.ValidSiteHost(h); reason != "" {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field, field+": "+reason)
			return nil, false
		}
		n := rules.NormalizeHost(h)
		if slices.Contains(out, n) {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", field, field+": "+quote(h)+" is listed twice")
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func (s *Server) createProperty(w http.ResponseWriter, r *http.Request) {
	id, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	var req propertyFields
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Name == nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "name", "name: is required; name the site or app, e.g. \"Shop\"")
		return
	}
	now := s.now()
	p := store.Property{ID: gocql.MustRandomUUID(), TenantID: tid, Hostnames: []string{}, TimeZone: "UTC", Currency: "USD", ProcessingShards: 1, CreatedAt: now, UpdatedAt: now}
	if !req.apply(w, &p) {
		return
	}
	ctx := r.Context()
	// Listed before its place is taken, taken off after the place is
	// given back: a recount of the list then never misses a place.
	if err := s.o.Store.ListPendingProperty(ctx, tid, p.ID); err != nil {
		s.internalError(w, r, "list the property", err)
		return
	}
	reserved, created := false, false
	defer func() {
		if !created {
			s.giveBackProperty(r, tid, p.ID, reserved)
		}
	}()
	if err := s.o.Store.ReserveProperty(ctx, tid, s.o.MaxPropertiesPerTenant); err != nil {
		if errors.Is(err, store.ErrPropertyLimit) {
			s.metrics.propertyLimitRefused.Inc()
			s.o.Log.Info("property refused: the tenant is at the property limit", slog.String("tenant_id", tid.String()), slog.Int("limit", s.o.MaxPropertiesPerTenant))
			httpserver.WriteError(w, http.StatusConflict, "conflict", fmt.Sprintf("your account already has the maximum of %d properties; delete ones you no longer use first, or ask us to raise the limit", s.o.MaxPropertiesPerTenant))
			return
		}
		s.internalError(w, r, "count the account's properties", err)
		return
	}
	reserved = true
	// The tracking ID: random candidates, each claimed with a lightweight
	// transaction, so two properties can never hold the same one.
	const attempts = 10
	for i := 0; ; i++ {
		if i == attempts {
			w.Header().Set("Retry-After", "1")
			httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "could not allocate a tracking ID; try again")
			return
		}
		cand, err := s.o.NewTrackingID()
		if err != nil {
			s.internalError(w, r, "make a tracking ID", err)
			return
		}
		claimed, err := s.o.Store.ClaimTrackingID(ctx, cand, p.ID, tid)
		if err != nil {
			s.internalError(w, r, "claim the tracking ID", err)
			return
		}
		if claimed {
			p.TrackingID = cand
			break
		}
		s.metrics.trackingIDCollisions.Inc()
	}
	first := configclient.RuleVersion{Version: 1, EffectiveAt: now, Hostnames: p.Hostnames, Rules: rules.Defaults().Normalize(), CreatedBy: id.UserID}
	if err := s.o.Store.CreateProperty(ctx, p, first); err != nil {
		s.internalError(w, r, "create the property", err)
		return
	}
	created = true
	s.appendChange(r, configclient.ChangeProperty, p)
	w.Header().Set("Location", "/v1/properties/"+p.ID.String())
	httpserver.WriteJSON(w, http.StatusCreated, s.propertyJSON(p))
}

// appendChange records a change to p in the feed. The change itself is
// already stored, so a failure to append does not fail the request (a
// retry would find nothing to change, or create a second property): the
// feed takes it in the background (Feed.AppendSoon), and the pipeline
// learns of it once the feed's table answers again, or at the latest at
// its clients' periodic resync.
func (s *Server) appendChange(r *http.Request, kind string, p store.Property) {
	c := configclient.Change{Kind: kind, PropertyID: p.ID.String(), TenantID: p.TenantID.String(), TrackingID: p.TrackingID, At: s.now()}
	s.metrics.changes.WithLabelValues(kind).Inc()
	if err := s.o.Feed.Append(r.Context(), c); err != nil {
		s.o.Log.Error("append to the change feed; retrying in the background", slog.Any("error", err), slog.String("property_id", p.ID.String()), slog.String("kind", kind))
		s.o.Feed.AppendSoon(c)
	}
}

// giveBackProperty gives a tenant's place for a property back when it
// took one (placed), then takes the property off the tenant's list: a
// creation that failed, or a deletion. In that order, the list holds every
// property with a place, so a recount (store.ReserveProperty) is never
// low. It runs even when the client has gone away; a failure is only
// logged: a count left one high refuses early, never late, until the
// tenant's next recount; an entry left in the list is skipped by lists
// (the property is deleted, or was never written and the entry expires)
// but counted by recounts, so refuses early too.
func (s *Server) giveBackProperty(r *http.Request, tid, pid gocql.UUID, placed bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	attrs := []any{slog.String("tenant_id", tid.String()), slog.String("property_id", pid.String()), slog.String("request_id", httpserver.RequestID(r.Context()))}
	if placed {
		if err := s.o.Store.ReleaseProperty(ctx, tid); err != nil {
			s.o.Log.Error("give back a place in the tenant's property count; it stays one high", append(attrs, slog.Any("error", err))...)
		}
	}
	if err := s.o.Store.UnlistProperty(ctx, tid, pid); err != nil {
		s.o.Log.Error("take the property off the tenant's list; recounts count it", append(attrs, slog.Any("error", err))...)
	}
}

// callerProperty reads the caller's identity and the property named in the
// path. Another tenant's property, a deleted one and a malformed ID are all
// answered 404: nobody learns whether someone else's ID exists.
func (s *Server) callerProperty(w http.ResponseWriter, r *http.Request) (tenant.Identity, store.Property, bool) {
	id, tid, _, ok := caller(w, r)
	if !ok {
		return id, store.Property{}, false
	}
	raw := r.PathValue("property_id")
	pid, err := gocql.ParseUUID(raw)
	if err != nil {
		notFound(w, "property", raw)
		return id, store.Property{}, false
	}
	p, err := s.o.Store.Property(r.Context(), pid)
	if errors.Is(err, store.ErrNotFound) || err == nil && p.TenantID != tid {
		notFound(w, "property", raw)
		return id, store.Property{}, false
	}
	if err != nil {
		s.internalError(w, r, "read the property", err)
		return id, store.Property{}, false
	}
	return id, p, true
}

func (s *Server) listProperties(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	after, limit, ok := pageParams(w, r, "property")
	if !ok {
		return
	}
	ps, next, err := s.o.Store.Properties(r.Context(), tid, after, limit)
	if err != nil {
		s.internalError(w, r, "list properties", err)
		return
	}
	out := PropertyList{Properties: make([]PropertyJSON, 0, len(ps)), NextAfter: nextAfter(next)}
	for _, p := range ps {
		out.Properties = append(out.Properties, s.propertyJSON(p))
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) getProperty(w http.ResponseWriter, r *http.Request) {
	if _, p, ok := s.callerProperty(w, r); ok {
		httpserver.WriteJSON(w, http.StatusOK, s.propertyJSON(p))
	}
}

func (s *Server) patchProperty(w http.ResponseWriter, r *http.Request) {
	id, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	var req propertyFields
	if !decodeJSON(w, r, &req) {
		return
	}
	before := p
	if !req.apply(w, &p) {
		return
	}
	if samePropertySettings(before, p) && req.Hostnames == nil {
		// Nothing to change; the answer is the same as to a change. (With
		// hostnames given, the rule version is still checked against them,
		// so a retry completes a change whose first attempt failed half-way.)
		httpserver.WriteJSON(w, http.StatusOK, s.propertyJSON(p))
		return
	}
	p.UpdatedAt = s.now()
	settings := req.settings()
	// A property's hostnames are those of its newest rule version, for the
	// pipeline (configclient.RuleVersion.Hostnames) and the API alike
	// (store.Property), so a change of them is made by making a rule
	// version (compared with the current one, so that a retried request
	// does not make two), and the row's other settings are written after
	// it. A request refused before the version (429 too_many_versions,
	// rules that do not compile with the new hosts, 409 when concurrent
	// rule edits keep taking the version number) changes nothing; one whose
	// version is made while the row's write fails has changed the
	// hostnames, everywhere, and not the rest, and its retry completes it.
	// Nothing is put back, so no concurrent change can leave the API and
	// the pipeline with different hostnames: of racing changes of them,
	// the newest version holds for both.
	if req.Hostnames != nil {
		_, status := s.newRuleVersion(w, r, p, id.UserID, precondition{}, func(cur configclient.RuleVersion) (configclient.RuleVersion, bool) {
			if slices.Equal(cur.Hostnames, p.Hostnames) {
				return cur, false
			}
			next := cur
			next.Hostnames = p.Hostnames
			return next, true
		})
		switch status {
		case versionFailed:
			return
		case versionUnknown:
			s.appendChange(r, configclient.ChangeProperty, p)
			return
		}
	}
	if err := s.o.Store.UpdateProperty(r.Context(), p, settings...); err != nil {
		// The pipeline is told all the same: the hostnames may have
		// changed (a rule version made above), and a write that failed
		// may have been applied (a timeout after the replicas took it),
		// which its retry then finds done and would not tell. A refetch
		// of nothing new costs nothing.
		s.appendChange(r, configclient.ChangeProperty, p)
		s.internalError(w, r, "update the property", err)
		return
	}
	s.appendChange(r, configclient.ChangeProperty, p)
	httpserver.WriteJSON(w, http.StatusOK, s.propertyJSON(p))
}

func samePropertySettings(a, b store.Property) bool {
	return a.Name == b.Name && slices.Equal(a.Hostnames, b.Hostnames) && a.TimeZone == b.TimeZone &&
		a.Currency == b.Currency && a.Cookieless == b.Cookieless
}

func (s *Server) deleteProperty(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	err := s.o.Store.DeleteProperty(r.Context(), p)
	if errors.Is(err, store.ErrNotFound) {
		// A concurrent deletion of the same property did it (and gives
		// the place back): answered as a deletion after it would be.
		notFound(w, "property", p.ID.String())
		return
	}
	if err != nil {
		// Applied or not, the pipeline refetches: a deletion that failed
		// may have been applied, and its retry finds nothing to delete.
		s.appendChange(r, configclient.ChangeDeleted, p)
		s.internalError(w, r, "delete the property", err)
		return
	}
	s.giveBackProperty(r, p.TenantID, p.ID, true)
	s.appendChange(r, configclient.ChangeDeleted, p)
	w.WriteHeader(http.StatusNoContent)
}

// checkTimeZone says what is wrong with a property's time zone, or "".
// time.LoadLocation reads the host's zone files before the database in the
// binary, so besides the IANA names it loaded files of the host's that are
// none: localtime (the host's own zone, another on each host that reads
// the property), posixrules, and the posix/ and right/ copies of the
// database (right/ counting leap seconds, which nothing else here does).
// They were stored, and each service read them as its host has them. The
// database's Factory, a placeholder, is refused too.
func checkTimeZone(tz string) string {
	const notIANA = "is not an IANA time zone name, e.g. Europe/Berlin or America/New_York"
	// A name is its path in the database as written there: ./localtime,
	// Europe//Berlin and Europe/./Berlin name files LoadLocation finds,
	// past the checks of the names themselves below.
	if slices.ContainsFunc(strings.Split(tz, "/"), func(part string) bool { return part == "" || part == "." || part == ".." }) {
		return notIANA
	}
	switch {
	case tz == "" || tz == "Local":
		return notIANA
	case tz == "localtime":
		return "is the server's own time zone, not an IANA time zone name; give the zone of a place, e.g. Europe/Berlin or America/New_York"
	case tz == "posixrules":
		return "is the file of rules for POSIX TZ strings, not an IANA time zone name; give the zone of a place, e.g. America/New_York"
	case tz == "Factory":
		// In the database, but no place's: what a system not set up yet
		// shows (UTC, as -00).
		return "is the zone database's placeholder for a local time not set yet (UTC, shown as -00), not the zone of a place; give one, e.g. Europe/Berlin, or UTC"
	case strings.HasPrefix(tz, "posix/") || strings.HasPrefix(tz, "right/"):
		name := tz[strings.IndexByte(tz, '/')+1:]
		if _, err := time.LoadLocation(name); err == nil && name != "localtime" && name != "posixrules" && name != "Factory" {
			return "names a copy of the zone database, not an IANA time zone name; give " + quote(name)
		}
		return notIANA
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return notIANA
	}
	return ""
}
