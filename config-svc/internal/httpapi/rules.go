package httpapi

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
	"github.com/gocql/gocql"
)

// RuleVersionSummary is one entry of the rule history.
type RuleVersionSummary struct {
	Version     int       `json:"version"`
	EffectiveAt time.Time `json:"effective_at"`
	CreatedBy   string    `json:"created_by,omitempty"`
}

// RuleVersionPage is a page of the rule history, newest first. NextBefore,
// when not 0, is the before of the next page (there may be more versions).
type RuleVersionPage struct {
	Versions   []RuleVersionSummary `json:"versions"`
	NextBefore int                  `json:"next_before,omitempty"`
}

// Page sizes of GET .../rules/versions.
const (
	defaultVersionsPage = 100
	maxVersionsPage     = 1000
)

type versionStatus int

const (
	versionCreated versionStatus = iota
	versionUnchanged
	versionFailed
	// versionUnknown: the version's insert failed with an error, which
	// may have been a timeout of an insert made after all (its answer
	// lost). The request is answered as failed; the caller announces a
	// change, so that a pipeline that caches the property reads it again
	// and finds the version if it was made (when not, the read is all it
	// costs).
	versionUnknown
)

// Bounds on a property's rule versions. Every version is fetched and
// compiled by each pipeline instance that caches the property, and kept
// until hit.ArchiveRetention after the next replaced it, so without a
// bound a merchant's script could make the history of one property
// hundreds of megabytes. docs/config.md explains the numbers.
const (
	// MaxRuleVersions bounds the versions a property keeps: a version that
	// would make the history longer is refused until the oldest is past
	// use. A version every hour (a sync job: about 9,500 kept over the
	// retention) never meets it; a script making MaxRuleVersionsPerDay
	// every day meets it after 100 days, and is then refused until its
	// oldest versions are past use (up to the retention).
	MaxRuleVersions = 10_000
	// MaxRuleVersionsPerDay bounds the versions a property makes in any
	// 24 hours: a script in a loop makes 100 a day, not millions.
	MaxRuleVersionsPerDay = 100
)

// maxVersionAttempts bounds the retries of a rule edit that loses the race
// for a version number to a concurrent edit.
const maxVersionAttempts = 5

// newRuleVersion makes the next rule version of p from the current one
// with edit (which reports whether anything changed), validating it with
// the compile step the pipeline runs. The version number is claimed with a
// lightweight transaction; when a concurrent edit took it, the edit is
// redone on top of that one. The current version must satisfy ifMatch,
// else 412 (and with ifMatch set, a concurrent edit is 412 too). It answers the request itself on failure.
func (s *Server) newRuleVersion(w http.ResponseWriter, r *http.Request, p store.Property, userID string, ifMatch precondition,
	edit func(cur configclient.RuleVersion) (configclient.RuleVersion, bool)) (configclient.RuleVersion, versionStatus) {
	ctx := r.Context()
	for range maxVersionAttempts {
		cur, err := s.o.Store.CurrentRules(ctx, p.ID)
		if err != nil {
			s.internalError(w, r, "read the current rules", err)
			return cur, versionFailed
		}
		if !ifMatch.holds(cur.Version) {
			preconditionFailed(w, cur.Version, ifMatch)
			return cur, versionFailed
		}
		next, changed := edit(cur)
		if !changed {
			return cur, versionUnchanged
		}
		next.Version = cur.Version + 1
		next.CreatedBy = userID
		next.Rules = next.Rules.Normalize()
		// Effective times strictly increase, whatever the clocks of the
		// instances say, so the version in effect at a time is unique.
		next.EffectiveAt = s.now()
		if !next.EffectiveAt.After(cur.EffectiveAt) {
			next.EffectiveAt = cur.EffectiveAt.Add(time.Millisecond)
		}
		if _, err := next.Compile(); err != nil {
			writeRulesError(w, err)
			return cur, versionFailed
		}
		if !s.versionAllowed(w, r, p.ID, next) {
			return cur, versionFailed
		}
		applied, err := s.o.Store.InsertRuleVersion(ctx, p.ID, next)
		if err != nil {
			s.internalError(w, r, "save the rule version", err)
			return cur, versionUnknown
		}
		if applied {
			s.metrics.ruleVersions.Inc()
			s.pruneRuleVersions(r, p.ID, next.EffectiveAt)
			return next, versionCreated
		}
		if ifMatch.set {
			preconditionFailed(w, cur.Version+1, ifMatch)
			return cur, versionFailed
		}
	}
	httpserver.WriteError(w, http.StatusConflict, "conflict", "the rules are being changed by someone else right now; read them again and retry")
	return configclient.RuleVersion{}, versionFailed
}

// versionAllowed answers 429 too_many_versions, and returns false, when
// making next would pass a bound on the property's versions:
// MaxRuleVersionsPerDay made in the 24 hours up to next's effective time,
// or MaxRuleVersions kept once next is made (those from the version in
// effect hit.ArchiveRetention before next to next, as pruneRuleVersions
// leaves them). Version numbers have no gaps, so each bound is checked
// by reading the time of one version: the one that many before next.
// When both bounds are passed, the answer names the one lifted later and
// its time, so that a client retrying at Retry-After is not refused again.
// Racing edits cannot pass a bound together: each checks the version
// number it claims, and the loser checks again for the next one.
func (s *Server) versionAllowed(w http.ResponseWriter, r *http.Request, propertyID gocql.UUID, next configclient.RuleVersion) bool {
	type bound struct {
		name  string
		first int           // the version that must be old enough
		age   time.Duration // how old
		what  string
	}
	bounds := []bound{
		{"day", next.Version - s.o.MaxRuleVersionsPerDay, 24 * time.Hour,
			"this property has made " + strconv.Itoa(s.o.MaxRuleVersionsPerDay) + " rule versions in the last 24 hours, the most it may make in a day"},
		{"history", next.Version + 1 - s.o.MaxRuleVersions, hit.ArchiveRetention,
			"this property's rule history holds " + strconv.Itoa(s.o.MaxRuleVersions) + " versions, the most it may keep, and " + keptFor},
	}
	var refused *bound
	var from time.Time // when refused is lifted
	for _, b := range bounds {
		// Below 1, fewer versions than the bound exist. The history keeps
		// versions from the one in effect at the retention's start, or
		// from version 1 when none was: with first 1 it is within its
		// bound however new version 1 is.
		if b.first < 1 || b.name == "history" && b.first == 1 {
			continue
		}
		v, err := s.o.Store.RuleVersionInfo(r.Context(), propertyID, b.first)
		if errors.Is(err, store.ErrNotFound) {
			continue // pruned, so long past either bound
		}
		if err != nil {
			s.internalError(w, r, "read the rule versions", err)
			return false
		}
		if f := v.EffectiveAt.Add(b.age); f.After(next.EffectiveAt) && f.After(from) {
			refused, from = &b, f
		}
	}
	if refused == nil {
		return true
	}
	s.metrics.ruleVersionsRefused.WithLabelValues(refused.name).Inc()
	w.Header().Set("Retry-After", strconv.FormatFloat(math.Ceil(from.Sub(next.EffectiveAt).Seconds()), 'f', 0, 64))
	if t := from.Truncate(time.Second); t.Before(from) {
		from = t.Add(time.Second) // said to the second: not before it
	}
	httpserver.WriteError(w, http.StatusTooManyRequests, "too_many_versions", refused.what+"; the next version can be made from "+
		from.Format(time.RFC3339)+". Make changes in fewer saves: a PUT replaces the whole document, so send a batch of changes in one, and a document equal to the current one makes no version")
	return false
}

// pruneRuleVersions deletes the versions of a property that were replaced
// longer than hit.ArchiveRetention before now (the effective time of the
// version just made): no hit that old is processed or reprocessed, since
// the raw archive keeps hits no longer. The version in effect at that
// limit stays. A failure is logged and not answered: the version is made,
// and the next one prunes what this one left.
func (s *Server) pruneRuleVersions(r *http.Request, propertyID gocql.UUID, now time.Time) {
	n, err := s.o.Store.PruneRuleVersions(r.Context(), propertyID, now.Add(-hit.ArchiveRetention))
	if err != nil {
		if r.Context().Err() == nil {
			s.o.Log.Warn("prune rule versions", slog.String("property_id", propertyID.String()), slog.Any("error", err),
				slog.String("request_id", httpserver.RequestID(r.Context())))
		}
		return
	}
	s.metrics.ruleVersionsPruned.Add(float64(n))
}

func preconditionFailed(w http.ResponseWriter, current int, m precondition) {
	w.Header().Set("ETag", etag(current))
	if len(m.versions) == 0 && slices.Contains(m.weakVersions, current) {
		httpserver.WriteError(w, http.StatusPreconditionFailed, "precondition_failed",
			"If-Match holds only the weak entity tag "+m.weak+", and If-Match compares entity tags strongly (RFC 9110), so a weak one never matches; "+
				"send the ETag of GET .../rules as it is, without W/ (the rules are at version "+strconv.Itoa(current)+`: "`+strconv.Itoa(current)+`"`+
				"; a proxy that compresses answers may have weakened it)")
		return
	}
	if len(m.versions) == 0 {
		// Weak tags of none but older versions: the rules changed since
		// the client read them, which it must hear (were it told only to
		// drop the W/ and given the current tag, it would overwrite the
		// change it never saw).
		httpserver.WriteError(w, http.StatusPreconditionFailed, "precondition_failed",
			"the rules are at version "+strconv.Itoa(current)+", not "+versionList(m.weakVersions)+" as If-Match says; someone changed them: read them again and reapply your change "+
				"(and send the ETag without W/: If-Match compares entity tags strongly (RFC 9110), so a weak one such as "+m.weak+" never matches)")
		return
	}
	httpserver.WriteError(w, http.StatusPreconditionFailed, "precondition_failed",
		"the rules are at version "+strconv.Itoa(current)+", not "+versionList(m.versions)+" as If-Match says; someone changed them: read them again and reapply your change")
}

// versionList says versions as "2 or 3".
func versionList(versions []int) string {
	out := make([]string, len(versions))
	for i, v := range versions {
		out[i] = strconv.Itoa(v)
	}
	return strings.Join(out, " or ")
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

// precondition is the precondition of a PUT's If-Match (RFC 9110, 13.1.1):
// none (no header, or *: the rules always exist), or the versions its
// strong entity tags name. If-Match compares strongly, so a weak tag
// (W/"3") never matches: a header of weak tags alone always fails.
type precondition struct {
	set          bool
	versions     []int  // the strong tags'
	weakVersions []int  // the weak tags', for the answer
	weak         string // the first weak tag, for the answer
}

// holds reports whether the current version satisfies the precondition.
func (m precondition) holds(current int) bool {
	return !m.set || slices.Contains(m.versions, current)
}

// parseIfMatch reads If-Match: a comma-separated list of entity tags, in
// one header or several, or *. Each of ours is a version number in
// quotes ("3"); a tag that cannot be one (unquoted, not a number, "03"),
// and a header that holds none, are refused with 400 rather than read as
// one, as no header, or left to fail.
func parseIfMatch(w http.ResponseWriter, r *http.Request) (precondition, bool) {
	var m precondition
	bad := func(tag, why string) (precondition, bool) {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "If-Match",
			"If-Match: "+quote(tag)+" is not a rule version"+why+`; send the ETag of GET .../rules as it is, quotes included, e.g. "3"`)
		return precondition{}, false
	}
	values := r.Header.Values("If-Match")
	star := false
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			switch {
			case tag == "":
				continue // a list may have empty elements
			case tag == "*":
				star = true
				continue
			}
			m.set = true
			strong, weak := strings.CutPrefix(tag, "W/")
			if len(strong) < 2 || strong[0] != '"' || strong[len(strong)-1] != '"' {
				return bad(tag, ": an entity tag is in double quotes")
			}
			n, err := strconv.Atoi(strong[1 : len(strong)-1])
			if err != nil || n < 1 || etag(n) != strong {
				return bad(tag, "")
			}
			if weak {
				if m.weak == "" {
					m.weak = tag
				}
				m.weakVersions = append(m.weakVersions, n)
				continue
			}
			m.versions = append(m.versions, n)
		}
	}
	if star && m.set {
		return bad(strings.Join(values, ", "), ": * stands alone, it cannot be listed with entity tags")
	}
	if len(values) > 0 && !star && !m.set {
		// A header without a tag (a client's unset $ETAG) was read as no
		// header, and the rules replaced whatever their version.
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "If-Match",
			`If-Match: is empty; send the ETag of GET .../rules as it is, quotes included, e.g. "3", or leave the header out to replace the rules whatever their version`)
		return precondition{}, false
	}
	return m, true
}

// noEntityTag is the handler of a change to what has no ETag (every
// endpoint that changes something but PUT .../rules): an If-Match that
// names entity tags can match none (RFC 9110, 13.1.1), so the change is
// refused with 412 rather than made as if the condition held (it was
// ignored: a PATCH of a property sent with If-Match went through
// whatever had changed). If-Match: * holds for whatever exists.
func noEntityTag(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := strings.TrimSpace(strings.Join(r.Header.Values("If-Match"), ",")); v != "" && v != "*" {
			httpserver.WriteFieldError(w, http.StatusPreconditionFailed, "precondition_failed", "If-Match",
				r.Method+" "+r.URL.Path+" has no ETag, so If-Match "+quote(v)+" cannot match (RFC 9110); only PUT /v1/properties/{id}/rules reads it (with the ETag of GET .../rules): send this request without it")
			return
		}
		next(w, r)
	}
}

func writeRulesError(w http.ResponseWriter, err error) {
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) == 0 {
		httpserver.WriteError(w, http.StatusBadRequest, "invalid_field", err.Error())
		return
	}
	code, field := "invalid_field", ve.Fields[0].Field
	for _, f := range ve.Fields {
		if errors.Is(f.Err, rules.ErrTooExpensive) {
			code, field = "too_expensive", f.Field
			break
		}
	}
	httpserver.WriteFieldError(w, http.StatusBadRequest, code, field, ve.Error())
}

func writeVersion(w http.ResponseWriter, v configclient.RuleVersion, current bool) {
	if current {
		w.Header().Set("ETag", etag(v.Version))
	}
	v.Rules = v.Rules.Normalize()
	httpserver.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) getRules(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if at := query(r).Get("at"); at != "" {
		t, err := parseQueryTime("at", at)
		if err != nil {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "at", err.Error())
			return
		}
		v, current, err := s.o.Store.RuleVersionAt(ctx, p.ID, t)
		if errors.Is(err, store.ErrNotFound) {
			notInEffect(w, p, at, t)
			return
		}
		if err != nil {
			s.internalError(w, r, "read the rule versions", err)
			return
		}
		writeVersion(w, v, current)
		return
	}
	cur, err := s.o.Store.CurrentRules(ctx, p.ID)
	if err != nil {
		s.internalError(w, r, "read the current rules", err)
		return
	}
	writeVersion(w, cur, true)
}

// notInEffect answers a request for the rules at t when no version kept
// took effect by then: t is before the property existed, or the version of
// that time has been pruned.
func notInEffect(w http.ResponseWriter, p store.Property, at string, t time.Time) {
	if t.Before(p.CreatedAt) {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no rules were in effect at "+at+": the property's first rules took effect at "+p.CreatedAt.UTC().Format(time.RFC3339))
		return
	}
	httpserver.WriteError(w, http.StatusNotFound, "not_found", "the rules in effect at "+at+" are no longer kept: "+prunedRule)
}

// keptFor says how long rule versions are kept; prunedRule adds where to
// find those kept.
var (
	keptFor = "a rule version is kept until " + strconv.Itoa(int(hit.ArchiveRetention/(24*time.Hour))) +
		" days after the next version replaced it (the raw archive keeps hits as long, so nothing older can be reprocessed)"
	prunedRule = keptFor + "; list the versions kept with GET .../rules/versions"
)

func (s *Server) putRules(w http.ResponseWriter, r *http.Request) {
	id, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	ifMatch, ok := parseIfMatch(w, r)
	if !ok {
		return
	}
	doc := rules.Defaults()
	if !decodeJSON(w, r, &doc) {
		return
	}
	doc = doc.Normalize()
	// Validate refuses what Compile, which newRuleVersion calls, reads
	// only for the sake of versions stored earlier.
	if _, err := rules.Validate(doc, p.Hostnames); err != nil {
		writeRulesError(w, err)
		return
	}
	v, status := s.newRuleVersion(w, r, p, id.UserID, ifMatch, func(cur configclient.RuleVersion) (configclient.RuleVersion, bool) {
		if reflect.DeepEqual(cur.Rules.Normalize(), doc) {
			return cur, false
		}
		next := cur
		next.Rules = doc
		return next, true
	})
	switch status {
	case versionFailed:
		return
	case versionUnknown:
		s.appendChange(r, configclient.ChangeRules, p)
		return
	case versionCreated:
		s.appendChange(r, configclient.ChangeRules, p)
	}
	writeVersion(w, v, true)
}

func (s *Server) validateRules(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	doc := rules.Defaults()
	if !decodeJSON(w, r, &doc) {
		return
	}
	c, err := rules.Validate(doc, p.Hostnames)
	if err != nil {
		writeRulesError(w, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, map[string]any{"valid": true, "cost": c.Cost(), "max_cost": rules.MaxCost})
}

// listRuleVersions answers a page of the history: limit versions
// numbered below before (from the newest without it), newest first, as
// the change feed pages by position. Versions are read without their
// documents, and one more than the page, to know whether another follows.
func (s *Server) listRuleVersions(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	limit, ok := pageLimit(w, r, defaultVersionsPage, maxVersionsPage)
	if !ok {
		return
	}
	before := 0
	if v := query(r).Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32) // versions are CQL ints
		if err != nil || n < 1 {
			httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "before",
				"before: "+quote(v)+" is not a rule version; give the next_before of the previous page, or leave it out for the newest versions")
			return
		}
		before = int(n)
	}
	infos, err := s.o.Store.RuleVersionInfos(r.Context(), p.ID, before, limit+1)
	if err != nil {
		s.internalError(w, r, "read the rule versions", err)
		return
	}
	page := RuleVersionPage{Versions: make([]RuleVersionSummary, 0, min(len(infos), limit))}
	for _, v := range infos[:min(len(infos), limit)] {
		page.Versions = append(page.Versions, RuleVersionSummary{Version: v.Version, EffectiveAt: v.EffectiveAt, CreatedBy: v.CreatedBy})
	}
	if len(infos) > limit {
		page.NextBefore = page.Versions[limit-1].Version
	}
	httpserver.WriteJSON(w, http.StatusOK, page)
}

func (s *Server) getRuleVersion(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	raw := r.PathValue("version")
	n, err := strconv.ParseInt(raw, 10, 32) // versions are CQL ints
	if err != nil || n < 1 {
		notFound(w, "rule version", raw)
		return
	}
	v, err := s.o.Store.RuleVersion(r.Context(), p.ID, int(n))
	if errors.Is(err, store.ErrNotFound) {
		// Version numbers have no gaps: one below the current was pruned.
		if cur, err := s.o.Store.CurrentRules(r.Context(), p.ID); err == nil && int(n) < cur.Version {
			httpserver.WriteError(w, http.StatusNotFound, "not_found", "rule version "+raw+" is no longer kept: "+prunedRule)
			return
		}
		notFound(w, "rule version", raw)
		return
	}
	if err != nil {
		s.internalError(w, r, "read the rule version", err)
		return
	}
	writeVersion(w, v, false)
}
