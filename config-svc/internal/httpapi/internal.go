package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/gocql/gocql"
)

// propertyDoc assembles the internal document of a property: its settings,
// current rules and the hashes of its valid API secrets.
func (s *Server) propertyDoc(ctx context.Context, p store.Property) (configclient.Property, error) {
	cur, err := s.o.Store.CurrentRules(ctx, p.ID)
	if err != nil {
		return configclient.Property{}, err
	}
	secrets, err := s.o.Store.Secrets(ctx, p.ID)
	if err != nil {
		return configclient.Property{}, err
	}
	hashes := []string{}
	for _, sec := range secrets {
		if sec.RevokedAt.IsZero() {
			hashes = append(hashes, sec.Hash)
		}
	}
	// The hostnames of the version sent, as the API's (store.Property),
	// read once.
	hosts := cur.Hostnames
	if hosts == nil {
		hosts = []string{}
	}
	cur.Rules = cur.Rules.Normalize()
	return configclient.Property{
		PropertyID: p.ID.String(), TenantID: p.TenantID.String(), TrackingID: p.TrackingID, Name: p.Name,
		Hostnames: hosts, TimeZone: p.TimeZone, Currency: p.Currency, Cookieless: p.Cookieless,
		ProcessingShards: p.ProcessingShards, APISecretSHA256: hashes, Rules: cur,
	}, nil
}

func (s *Server) writeDoc(w http.ResponseWriter, r *http.Request, p store.Property, err error, what string) {
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+quote(what))
		return
	}
	if err != nil {
		s.internalError(w, r, "read the property", err)
		return
	}
	doc, err := s.propertyDoc(r.Context(), p)
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+quote(what))
		return
	}
	if err != nil {
		s.internalError(w, r, "assemble the property document", err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, doc)
}

func (s *Server) internalByTrackingID(w http.ResponseWriter, r *http.Request) {
	tid := r.PathValue("tracking_id")
	if !configclient.ValidTrackingID(tid) {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property with tracking ID "+quote(tid)+" (not of the form AT-XXXXXXXXXX)")
		return
	}
	p, err := s.o.Store.PropertyByTrackingID(r.Context(), tid)
	s.writeDoc(w, r, p, err, tid)
}

// maxPropertiesPage bounds a page of every property's IDs: a read of that
// many rows of the properties table.
const maxPropertiesPage = 1000

// internalProperties answers a page of the IDs of every property
// (store.AllProperties). Its position, after, is a partition token.
func (s *Server) internalProperties(w http.ResponseWriter, r *http.Request) {
	limit, ok := pageLimit(w, r, maxPropertiesPage, maxPropertiesPage)
	if !ok {
		return
	}
	var after *int64
	if v := query(r).Get("after"); v != "" {
		token, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "after",
				"after: "+quote(v)+" is not a position in the list; give the next_after of the previous page, or leave it out for the first page")
			return
		}
		after = &token
	}
	ids, next, err := s.o.Store.AllProperties(r.Context(), after, limit)
	if err != nil {
		s.internalError(w, r, "list the properties", err)
		return
	}
	out := configclient.PropertyList{PropertyIDs: make([]string, len(ids))}
	for i, id := range ids {
		out.PropertyIDs[i] = id.String()
	}
	if next != nil {
		out.NextAfter = strconv.FormatInt(*next, 10)
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

// internalPropertyID parses the property ID of an internal route.
func internalPropertyID(w http.ResponseWriter, r *http.Request) (gocql.UUID, bool) {
	raw := r.PathValue("property_id")
	id, err := gocql.ParseUUID(raw)
	if err != nil {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+quote(raw))
		return id, false
	}
	return id, true
}

func (s *Server) internalProperty(w http.ResponseWriter, r *http.Request) {
	id, ok := internalPropertyID(w, r)
	if !ok {
		return
	}
	p, err := s.o.Store.PropertyRow(r.Context(), id)
	s.writeDoc(w, r, p, err, id.String())
}

func (s *Server) internalRuleVersions(w http.ResponseWriter, r *http.Request) {
	id, ok := internalPropertyID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if _, err := s.o.Store.PropertyRow(ctx, id); err != nil {
		s.writeDoc(w, r, store.Property{}, err, id.String())
		return
	}
	// Versions past use that the property's next change has not pruned
	// yet (a property whose rules stopped changing) are not sent: the
	// pipeline would compile and keep them for nothing.
	versions, err := s.o.Store.RuleVersionsSince(ctx, id, s.now().Add(-hit.ArchiveRetention))
	if err != nil {
		s.internalError(w, r, "read the rule versions", err)
		return
	}
	for i := range versions {
		versions[i].Rules = versions[i].Rules.Normalize()
	}
	httpserver.WriteJSON(w, http.StatusOK, configclient.RuleVersions{PropertyID: id.String(), Versions: versions})
}

type shardsRequest struct {
	// A pointer: a body without it was called "0 is out of range".
	ProcessingShards *int `json:"processing_shards"`
}

func (s *Server) internalSetShards(w http.ResponseWriter, r *http.Request) {
	id, ok := internalPropertyID(w, r)
	if !ok {
		return
	}
	var req shardsRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.ProcessingShards == nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "processing_shards",
			"processing_shards: is required; give 1 to "+strconv.Itoa(hit.MaxShards))
		return
	}
	shards := *req.ProcessingShards
	if shards < 1 || shards > hit.MaxShards {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "processing_shards",
			"processing_shards: "+strconv.Itoa(shards)+" is out of range; give 1 to "+strconv.Itoa(hit.MaxShards))
		return
	}
	ctx := r.Context()
	p, err := s.o.Store.PropertyRow(ctx, id)
	if err != nil {
		s.writeDoc(w, r, p, err, id.String())
		return
	}
	if err := s.o.Store.SetProcessingShards(ctx, id, shards); err != nil {
		s.internalError(w, r, "set the processing shards", err)
		return
	}
	p.ProcessingShards = shards
	s.o.Log.Info("processing shards changed", slog.String("property_id", id.String()), slog.Int("processing_shards", shards))
	s.appendChange(r, configclient.ChangeProperty, p)
	s.writeDoc(w, r, p, nil, id.String())
}

// Long-poll bounds of GET /internal/v1/changes.
const (
	defaultWait    = 30 * time.Second
	maxWait        = 50 * time.Second // below the server's write timeout
	maxChangesPage = 1000
)

func (s *Server) internalChanges(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := query(r)
	if !q.Has("since") {
		head, err := s.o.Store.Head(ctx)
		if err != nil {
			s.internalError(w, r, "read the feed head", err)
			return
		}
		s.o.Feed.advance(head)
		httpserver.WriteJSON(w, http.StatusOK, configclient.Changes{Seq: head, Changes: []configclient.Change{}})
		return
	}
	since, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if err != nil || since < 0 {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "since", "since: "+quote(q.Get("since"))+" is not a feed position; use the seq of the previous answer (0 or more)")
		return
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		wait, err = time.ParseDuration(v)
		if err != nil || wait < 0 {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "wait", "wait: "+quote(v)+" is not a duration such as 30s")
			return
		}
		wait = min(wait, maxWait)
	}
	limit, ok := pageLimit(w, r, maxChangesPage, maxChangesPage)
	if !ok {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	waiting := false
	defer func() {
		if waiting {
			s.metrics.longPolls.Dec()
		}
	}()
	for {
		head, wake := s.o.Feed.state()
		switch {
		case since < head:
			changes, err := s.o.Store.ChangesSince(ctx, since, head, limit)
			if errors.Is(err, store.ErrFeedGone) {
				feedGone(w, since)
				return
			}
			if err != nil {
				s.internalError(w, r, "read the change feed", err)
				return
			}
			if len(changes) > 0 {
				httpserver.WriteJSON(w, http.StatusOK, configclient.Changes{Seq: changes[len(changes)-1].Seq, Changes: changes})
				return
			}
		case since > head:
			// Another instance may be ahead of this one's tail.
			fresh, err := s.o.Store.Head(ctx)
			if err != nil {
				s.internalError(w, r, "read the feed head", err)
				return
			}
			if since > fresh {
				feedGone(w, since)
				return
			}
			s.o.Feed.advance(fresh)
			continue
		}
		if !waiting {
			waiting = true
			s.metrics.longPolls.Inc()
		}
		select {
		case <-wake:
		case <-timer.C:
			httpserver.WriteJSON(w, http.StatusOK, configclient.Changes{Seq: since, Changes: []configclient.Change{}})
			return
		case <-s.o.Feed.closing:
			httpserver.WriteJSON(w, http.StatusOK, configclient.Changes{Seq: since, Changes: []configclient.Change{}})
			return
		case <-ctx.Done():
			return
		}
	}
}

func feedGone(w http.ResponseWriter, since int64) {
	httpserver.WriteError(w, http.StatusGone, "feed_gone",
		"the change feed no longer holds position "+strconv.FormatInt(since, 10)+"; refetch what you cached and follow from the current head (GET /internal/v1/changes without since)")
}

// internalCookielessSalt answers the salt of collection's cookieless
// visitor IDs for a date, made on the first request for it (the store's
// CookielessSalt). Only yesterday, today and tomorrow (UTC) are served: a
// salt lives three days, and an older date's, once destroyed, must never
// be made again.
func (s *Server) internalCookielessSalt(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("date")
	day, err := time.Parse(time.DateOnly, raw)
	if err != nil {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "date", "date: "+quote(raw)+" is not a date; give it as YYYY-MM-DD")
		return
	}
	now := s.o.Now()
	salt, err := s.o.Store.CookielessSalt(r.Context(), day, now)
	if errors.Is(err, store.ErrSaltDayOutOfRange) {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "date",
			"date: "+raw+" is more than one day from today ("+now.UTC().Format(time.DateOnly)+" UTC); salts exist only for yesterday, today and tomorrow, "+
				"and are destroyed three days after they are made, so that no past day's salt is ever made again (check this caller's clock)")
		return
	}
	if err != nil {
		s.internalError(w, r, "read or make the cookieless salt", err)
		return
	}
	// Nothing on the way may keep it.
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusOK, configclient.CookielessSalt{Date: raw, Salt: salt})
}
