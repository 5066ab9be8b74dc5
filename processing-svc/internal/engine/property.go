package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/attribution"
	"github.com/acme/analytics/processing-svc/internal/session"
	"github.com/acme/analytics/processing-svc/internal/visitor"
)

// ErrUnknownProperty is returned by a Properties source for a property that
// does not exist (its hits go to the dead-letter topic).
var ErrUnknownProperty = errors.New("unknown property")

// Property is what processing needs to know about a property.
type Property struct {
	ID       string
	TenantID string
	Location *time.Location
	// Shards is the property's processing shard count (1 by default):
	// collection keys hits by (property, shard), and the rollups carry
	// the shard so that each row has a single writer.
	Shards int
	// RulesAt returns the rules in effect at t (the hit's receive time,
	// so that a replay applies the same version).
	RulesAt func(t time.Time) *rules.Compiled
	// RulesVersion returns the rules of one version, or nil if unknown
	// (nil: versions are found by time only).
	RulesVersion func(version int) *rules.Compiled
	// CurrentVersion is the version of the property's current rules (0:
	// unknown): the one a reprocessing job with today's rules pins when it
	// is made.
	CurrentVersion int
}

// RulesOf returns the rules in effect when h was received: the version
// collection stamped on it (the one it evaluated the IP rules against),
// which every replay and every reprocessing finds in the hit whatever
// processing's copy of the rule history holds at the time; else, for a hit
// without one or of a version this copy does not have yet, the version in
// effect at its receive time by this copy.
func (p *Property) RulesOf(h *hit.Hit) *rules.Compiled {
	r, _ := p.rulesOf(h)
	return r
}

// rulesOf is RulesOf, and reports whether it fell back: h names a version
// this copy does not have, so that a copy that has it would derive h
// otherwise. (A hit without a version, or of a property whose versions
// are found by time only, RulesVersion nil, did not fall back.)
func (p *Property) rulesOf(h *hit.Hit) (r *rules.Compiled, fellBack bool) {
	if r := p.version(h.RuleVersion); r != nil {
		return r, false
	}
	return p.RulesAt(h.ReceivedAt), h.RuleVersion != 0 && p.RulesVersion != nil
}

// version returns the rules of version n, nil when n is 0 or unknown.
func (p *Property) version(n int) *rules.Compiled {
	if n == 0 || p.RulesVersion == nil {
		return nil
	}
	return p.RulesVersion(n)
}

// stamped returns the rules of the version collection stamped on h when
// they are not r (reprocessing with today's rules), nil if unknown: how h's
// stored IP was truncated is that version's setting.
func (p *Property) stamped(h *hit.Hit, r *rules.Compiled) *rules.Compiled {
	if h.RuleVersion == r.Version() {
		return nil
	}
	return p.version(h.RuleVersion)
}

// liveRules returns the rules a loaded visitor's live sessions were last
// derived under: those of the latest version among its live hits, else
// those in effect at its watermark (which also moves with hits that
// derived nothing: excluded, too late).
func (p *Property) liveRules(v *visitor.Visitor) *rules.Compiled {
	if n := v.LatestRuleVersion(); n != 0 {
		if r := p.version(n); r != nil {
			return r
		}
	}
	return p.RulesAt(v.Watermark)
}

// Properties looks up properties. Implementations cache; a lookup that
// cannot be answered now (config unreachable and nothing cached) returns
// an error other than ErrUnknownProperty, and the batch is retried.
type Properties interface {
	Property(ctx context.Context, id string) (*Property, error)
}

// settings returns the session settings of p under r.
func settings(p *Property, r *rules.Compiled) session.Settings {
	return session.Settings{
		Timeout:        r.SessionTimeout(),
		Location:       p.Location,
		IgnoreReferrer: r.ReferralExcluded,
		CustomChannel:  r.Channel,
		Source:         sourceOf(p, r),
		RuleVersion:    r.Version(),
	}
}

// settingsSource identifies a property's session settings: its rules
// version and its zone, by value, so that the same settings fetched again
// (a configuration refresh makes new objects) are still the same, and a
// visitor's sessions are derived again, and their rows rewritten, only
// when the rules or the zone changed.
type settingsSource struct {
	version int
	zone    string
}

func sourceOf(p *Property, r *rules.Compiled) settingsSource {
	return settingsSource{r.Version(), p.Location.String()}
}

// toSessionHit applies the page rules to h. It returns the reason when the
// page is excluded.
func toSessionHit(h *hit.Hit, r *rules.Compiled) (*session.Hit, string) {
	// Collection stores paths in one canonical form since 2026-12-04;
	// archived hits from before are put in it here, so that reprocessing
	// does not make two rows of one page (fast for a path already in it).
	raw := hit.CanonicalPath(h.Path)
	if raw == "" {
		raw = h.URL
	}
	clean := r.CleanPath(raw)
	// The page rules drop every hit on a page they exclude: its pageviews,
	// events and engagement pings alike (docs/config.md, "Pages"). A hit
	// on no page (a server's event without page_location) is on none they
	// exclude.
	if (raw != "" || h.Type == hit.TypePageview) && !r.PageIncluded(clean) {
		return nil, rules.ReasonPage
	}
	sh := &session.Hit{
		ID:          h.ID,
		Type:        h.Type,
		Time:        h.Time,
		Path:        pagePath(clean),
		Title:       h.Title,
		Referrer:    externalReferrer(h),
		Campaign:    campaignOf(h, raw),
		Category:    h.Category,
		Action:      h.Action,
		Label:       h.Label,
		Value:       h.Value,
		Interaction: h.Params["non_interaction"] != "1",
		Country:     h.Country,
		Device:      h.DeviceCategory,
		Browser:     h.Browser,
		OS:          h.OS,
		RuleVersion: r.Version(),
	}
	for _, g := range r.Goals(h, clean) {
		sh.Goals = append(sh.Goals, session.Goal{ID: g.ID, Value: g.Value})
	}
	return sh, ""
}

// externalReferrer returns h's referrer, or "" when it is the hit's own
// site: the host of the page the hit is about, or a subdomain of it. The
// property's hostnames and referral exclusions, when it has them, cover
// this too (session.Settings.IgnoreReferrer); without hostnames (they are
// optional) the page's own host is still the property's own.
func externalReferrer(h *hit.Hit) string {
	if h.Referrer != "" && h.Hostname != "" && rules.SameSite(hostOf(h.Referrer), h.Hostname) {
		return ""
	}
	return h.Referrer
}

// hostOf returns the host of an absolute http(s) URL as written, with its
// port (SameSite drops it): between "://" and the path, query or fragment,
// after any user info; "" for another URL. Most pageviews have a referrer,
// and this, unlike url.Parse, allocates nothing; a host written escaped is
// not decoded, so it is taken as another site, as before this check.
// Space around the URL is dropped first, as attribution drops it
// (splitReferrer): else the shop's own page sent as " https://shop/"
// would be kept here and read there as a referral from the shop.
func hostOf(rawURL string) string {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(rawURL), "://")
	if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest
}

// campaignOf returns the campaign of a hit: from its document location's
// query, as GA reads it, even when a page path (dp) set apart from it names
// the page; from the page path when the location has none.
func campaignOf(h *hit.Hit, page string) attribution.Campaign {
	var c attribution.Campaign
	if h.URL != "" && h.URL != page {
		c = attribution.CampaignFromURL(h.URL)
	}
	if c.Empty() {
		c = attribution.CampaignFromURL(page)
	}
	// A campaign sent apart from the location (cs, cm, ... collected into
	// these parameters) overrides the location's tags field by field, as
	// in Universal Analytics.
	for _, f := range [...]struct {
		param string
		to    *string
	}{
		{hit.ParamCampaignSource, &c.Source}, {hit.ParamCampaignMedium, &c.Medium}, {hit.ParamCampaignName, &c.Name},
		{hit.ParamCampaignTerm, &c.Term}, {hit.ParamCampaignContent, &c.Content}, {hit.ParamGCLID, &c.GCLID},
	} {
		if v := attribution.CampaignValue(h.Params[f.param]); v != "" {
			*f.to = v
		}
	}
	return c
}

// pagePath is the page dimension of a cleaned path: the attribution
// parameters, which the clean-up keeps for attribution, are removed, so
// that a landing page with utm tags is the same page as without.
func pagePath(clean string) string {
	path, query, ok := strings.Cut(clean, "?")
	if !ok {
		return clean
	}
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		if kv != "" && !rules.AttributionParam(rules.QueryParamName(kv)) {
			kept = append(kept, kv)
		}
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}

// ShardOf returns the processing shard of a client ID among n shards. It
// must agree with collection's Kafka key (pkg/hit).
func ShardOf(clientID string, n int) int { return hit.ShardOf(clientID, n) }
