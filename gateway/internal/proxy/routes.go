package proxy

import (
	"net/http"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
)

// Upstream service names, as registered in Consul.
const (
	Collection  = "collection"
	ConfigSvc   = "config"
	Acquisition = "acquisition"
	Behavior    = "behavior"
)

// Upstreams lists every upstream service the gateway routes to.
var Upstreams = []string{Collection, ConfigSvc, Acquisition, Behavior}

// Limit says what a route's requests are rate-limited by.
type Limit int

const (
	// NoLimit: the route is not rate-limited.
	NoLimit Limit = iota
	// PerTrackingID: by the tracking ID in the query string; requests
	// without one share a bucket.
	PerTrackingID
	// PerTenant: by the tenant of the verified token.
	PerTenant
	// PerClientIP: by the client's address.
	PerClientIP
)

// Route is where a set of paths goes and what the gateway checks first.
type Route struct {
	Name     string   // label in logs and metrics
	Patterns []string // http.ServeMux patterns (exact paths, or subtrees ending in /)
	Upstream string
	Auth     bool // a valid bearer token is required
	CORS     bool // browsers on any site may call it
	Limit    Limit
	// TrackingIDParam is the query parameter holding the tracking ID
	// (PerTrackingID routes), read with hit.QueryTrackingID as collection
	// reads it.
	TrackingIDParam string
	// Pixel is the path whose GET and HEAD answer an image (collection's
	// pixel, pkg/pixel), whatever became of the hit: the gateway's own
	// refusals of them (a rate limit, no instance, a time-out) are that
	// image too, with the refusal's status and code. Empty: none.
	Pixel   string
	MaxBody int64
	Timeout time.Duration
}

// Routes returns the route table. Paths are matched by http.ServeMux: the
// most specific pattern wins; anything unmatched, and /internal/, is 404.
func Routes(c Config) []Route {
	return []Route{
		{Name: "collect", Patterns: []string{"/collect", "/debug/collect"}, Upstream: Collection, CORS: true,
			Limit: PerTrackingID, TrackingIDParam: "tid", Pixel: "/collect", MaxBody: c.MaxHitBody, Timeout: c.CollectTimeout},
		{Name: "mp-collect", Patterns: []string{"/mp/collect", "/debug/mp/collect"}, Upstream: Collection, CORS: true,
			Limit: PerTrackingID, TrackingIDParam: "tracking_id", MaxBody: c.MaxHitBody, Timeout: c.CollectTimeout},
		{Name: "tracker", Patterns: []string{"/tracker.js", "/tracker/"}, Upstream: Collection, CORS: true,
			MaxBody: c.MaxBody, Timeout: c.CollectTimeout},
		{Name: "account", Patterns: []string{"/v1/signup", "/v1/login", "/v1/refresh", "/v1/password-reset", "/v1/password-reset/confirm",
			"/v1/invitations/accept", "/v1/signup/claim"}, Upstream: ConfigSvc,
			Limit: PerClientIP, MaxBody: c.MaxBody, Timeout: c.APITimeout},
		{Name: "jwks", Patterns: []string{authtoken.JWKSPath}, Upstream: ConfigSvc,
			MaxBody: c.MaxBody, Timeout: c.APITimeout},
		{Name: "acquisition", Patterns: []string{"/v1/reports/acquisition", "/v1/reports/acquisition/"}, Upstream: Acquisition,
			Auth: true, Limit: PerTenant, MaxBody: c.MaxBody, Timeout: c.ReportTimeout},
		{Name: "behavior", Patterns: []string{"/v1/reports/behavior", "/v1/reports/behavior/", "/v1/reports/realtime", "/v1/reports/realtime/"}, Upstream: Behavior,
			Auth: true, Limit: PerTenant, MaxBody: c.MaxBody, Timeout: c.ReportTimeout},
		{Name: "config-api", Patterns: []string{"/v1/"}, Upstream: ConfigSvc,
			Auth: true, Limit: PerTenant, MaxBody: c.MaxBody, Timeout: c.APITimeout},
	}
}

// pixel reports whether r is to be answered with the pixel image.
func (rt *Route) pixel(r *http.Request) bool {
	return rt.Pixel != "" && r.URL.Path == rt.Pixel && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}
