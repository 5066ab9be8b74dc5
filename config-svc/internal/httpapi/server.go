// Package httpapi is config-svc's HTTP API: the public /v1 endpoints that
// the gateway routes to (with its signed identity headers), the public
// sign-up, login, refresh and JWKS endpoints, and the /internal/v1
// endpoints that collection and processing call directly (role service).
//
// Every route is listed in Routes with its access level; the OpenAPI
// document in config-svc/api documents exactly these, which a test checks.
package httpapi

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/queryparam"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	_ "time/tzdata" // time zones are validated whatever the host has installed
)

// Access is who may call a route.
type Access int

const (
	// Public routes need no identity (sign-up, login, refresh, password
	// reset, invitation acceptance, address claims, JWKS).
	Public Access = iota
	// Member routes need a signed-in user of any role.
	Member
	// Admin routes need a signed-in admin.
	Admin
	// Service routes are /internal: another service of the product,
	// signed with tenant.System.
	Service
)

// Route is one endpoint.
type Route struct {
	Method  string
	Path    string // ServeMux pattern path, e.g. /v1/properties/{id}
	Access  Access
	Handler http.HandlerFunc
	// Query lists the query parameters the route takes (none when nil);
	// any other is refused (withQuery).
	Query []queryparam.Param
}

// Pattern is the route's ServeMux pattern, as Register mounts it.
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// QuietRoutes are the patterns of the routes whose successful requests the
// access log records at debug rather than info (service.QuietAccessLog):
// the internal API's reads. The pipeline's config clients make them by
// machine: a long poll of the change feed every 30 s from every instance
// of collection, processing and the report services, and a lookup of each
// property they cache at every resync (up to 50 a second per instance).
// At info they were nearly all of config's log, growing with instances
// times properties; their failures are still logged at info, and
// http_requests_total counts them all.
var QuietRoutes = []string{
	"GET /internal/v1/properties/by-tracking-id/{tracking_id}",
	"GET /internal/v1/properties/{property_id}",
	"GET /internal/v1/properties/{property_id}/rules/versions",
	"GET /internal/v1/changes",
	"GET /internal/v1/cookieless-salts/{date}",
}

// Options configure a Server.
type Options struct {
	Store          *store.Store
	Keys           *auth.KeyRing
	Issuer         *auth.Issuer
	Hasher         *auth.Hasher
	Feed           *Feed
	IdentitySecret []byte
	RefreshTTL     time.Duration
	// TrackerScriptURL is the URL of tracker.js put in tracking snippets.
	TrackerScriptURL string
	Log              *slog.Logger
	Registerer       prometheus.Registerer
	// MaxPropertiesPerTenant is the most properties one tenant may have
	// (0: DefaultMaxPropertiesPerTenant).
	MaxPropertiesPerTenant int
	// NewTrackingID makes a candidate tracking ID (tests inject a small ID
	// space to force collisions); nil means NewTrackingID.
	NewTrackingID func() (string, error)
	Now           func() time.Time
	// MaxRuleVersions and MaxRuleVersionsPerDay bound the rule versions of
	// a property (see newRuleVersion); 0 means the product's bounds (tests
	// set small ones).
	MaxRuleVersions       int
	MaxRuleVersionsPerDay int
	// Mailer sends password reset and e-mail verification links in the
	// background (nil: mail delivery is not configured, a reset request
	// answers 503 and no address can be verified), from MailFrom.
	// Whoever makes it runs it (Queue.Run).
	Mailer   *mail.Queue
	MailFrom *netmail.Address
	// PasswordResetURL is the link of a reset e-mail, with
	// TokenPlaceholder for the token ("": the e-mail gives the token and
	// how to post it).
	PasswordResetURL string
	// PasswordResetTTL is how long a reset link works (0:
	// DefaultPasswordResetTTL).
	PasswordResetTTL time.Duration
	// EmailVerificationURL is the link of a verification e-mail, with
	// TokenPlaceholder for the token ("": the e-mail gives the token and
	// how to post it).
	EmailVerificationURL string
	// EmailVerificationTTL is how long a verification link works (0:
	// DefaultEmailVerificationTTL).
	EmailVerificationTTL time.Duration
	// InvitationURL is the link of an invitation e-mail, with
	// TokenPlaceholder for the token ("": the e-mail gives the token and
	// how to post it).
	InvitationURL string
	// EmailClaimURL is the link of an address claim e-mail, with
	// TokenPlaceholder for the token ("": the e-mail gives the token and
	// how to post it).
	EmailClaimURL string
}

// Server serves the API.
type Server struct {
	o       Options
	metrics *metrics
	logins  *addressThrottle
	resets  *addressThrottle
	// verifyMails throttles verification e-mails per address, those of
	// new users included.
	verifyMails *addressThrottle
	// invites throttles invitation e-mails per address.
	invites *addressThrottle
	// claims throttles claim links per address.
	claims *addressThrottle
}

// DefaultMaxPropertiesPerTenant bounds the properties of one tenant: twice
// the largest tenants we plan for (agencies and platforms with about
// 100,000 sites), and small enough that a tenant's partition of
// properties_by_tenant stays under about 10 MB.
const DefaultMaxPropertiesPerTenant = 200_000

// maxBody bounds request bodies; a rule set at every limit is well below.
const maxBody = 1 << 20

// New returns a Server.
func New(o Options) *Server {
	if o.NewTrackingID == nil {
		o.NewTrackingID = NewTrackingID
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPropertiesPerTenant == 0 {
		o.MaxPropertiesPerTenant = DefaultMaxPropertiesPerTenant
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.MaxRuleVersions == 0 {
		o.MaxRuleVersions = MaxRuleVersions
	}
	if o.MaxRuleVersionsPerDay == 0 {
		o.MaxRuleVersionsPerDay = MaxRuleVersionsPerDay
	}
	if o.PasswordResetTTL == 0 {
		o.PasswordResetTTL = DefaultPasswordResetTTL
	}
	if o.EmailVerificationTTL == 0 {
		o.EmailVerificationTTL = DefaultEmailVerificationTTL
	}
	return &Server{o: o, metrics: newMetrics(o.Registerer), logins: newAddressThrottle(o.Now, loginThrottle),
		resets: newAddressThrottle(o.Now, resetThrottle), verifyMails: newAddressThrottle(o.Now, resetThrottle),
		invites: newAddressThrottle(o.Now, resetThrottle), claims: newAddressThrottle(o.Now, resetThrottle)}
}

// Routes returns every endpoint of the API.
func (s *Server) Routes() []Route {
	return []Route{
		{"POST", "/v1/signup", Public, s.signup, nil},
		{"POST", "/v1/login", Public, s.login, nil},
		{"POST", "/v1/refresh", Public, s.refresh, nil},
		{"POST", "/v1/password-reset", Public, s.requestPasswordReset, nil},
		{"POST", "/v1/password-reset/confirm", Public, s.confirmPasswordReset, nil},
		{"POST", "/v1/invitations/accept", Public, s.acceptInvitation, nil},
		{"POST", "/v1/signup/claim", Public, s.claimAddress, nil},
		{"GET", "/.well-known/jwks.json", Public, s.jwks, nil},

		{"POST", "/v1/logout", Member, s.logout, nil},
		{"POST", "/v1/email-verification", Member, noBody(s.resendEmailVerification), nil},
		{"POST", "/v1/email-verification/confirm", Member, s.confirmEmailVerification, nil},
		{"GET", "/v1/tenants/me", Member, s.getTenant, nil},
		{"PATCH", "/v1/tenants/me", Admin, s.patchTenant, nil},
		{"GET", "/v1/users", Admin, s.listUsers, pageQuery},
		{"POST", "/v1/users", Admin, s.createUser, nil},
		{"GET", "/v1/users/{user_id}", Admin, s.getUser, nil},
		{"PATCH", "/v1/users/{user_id}", Admin, s.patchUser, nil},
		{"DELETE", "/v1/users/{user_id}", Admin, s.deleteUser, nil},
		{"GET", "/v1/invitations", Admin, s.listInvitations, nil},
		{"POST", "/v1/invitations", Admin, s.createInvitation, nil},
		{"DELETE", "/v1/invitations/{invitation_id}", Admin, s.revokeInvitation, nil},

		{"GET", "/v1/properties", Member, s.listProperties, pageQuery},
		{"POST", "/v1/properties", Admin, s.createProperty, nil},
		{"GET", "/v1/properties/{property_id}", Member, s.getProperty, nil},
		{"PATCH", "/v1/properties/{property_id}", Admin, s.patchProperty, nil},
		{"DELETE", "/v1/properties/{property_id}", Admin, s.deleteProperty, nil},

		{"GET", "/v1/properties/{property_id}/rules", Member, s.getRules, rulesQuery},
		{"PUT", "/v1/properties/{property_id}/rules", Admin, s.putRules, nil},
		{"POST", "/v1/properties/{property_id}/rules/validate", Admin, s.validateRules, nil},
		{"GET", "/v1/properties/{property_id}/rules/versions", Member, s.listRuleVersions, versionsQuery},
		{"GET", "/v1/properties/{property_id}/rules/versions/{version}", Member, s.getRuleVersion, nil},

		{"GET", "/v1/properties/{property_id}/api-secrets", Admin, s.listSecrets, nil},
		{"POST", "/v1/properties/{property_id}/api-secrets", Admin, s.createSecret, nil},
		{"DELETE", "/v1/properties/{property_id}/api-secrets/{secret_id}", Admin, s.revokeSecret, nil},

		{"GET", "/internal/v1/properties", Service, s.internalProperties, pageQuery},
		{"GET", "/internal/v1/properties/by-tracking-id/{tracking_id}", Service, s.internalByTrackingID, nil},
		{"GET", "/internal/v1/properties/{property_id}", Service, s.internalProperty, nil},
		{"GET", "/internal/v1/properties/{property_id}/rules/versions", Service, s.internalRuleVersions, nil},
		{"PUT", "/internal/v1/properties/{property_id}/processing-shards", Service, s.internalSetShards, nil},
		{"GET", "/internal/v1/changes", Service, s.internalChanges, changesQuery},
		{"GET", "/internal/v1/cookieless-salts/{date}", Service, s.internalCookielessSalt, nil},
	}
}

// Register mounts every route on mux with its access checks, a body
// size limit and the check of its query parameters (after the access
// checks: a caller who may not call the route learns that first).
func (s *Server) Register(mux *http.ServeMux) {
	for _, rt := range s.Routes() {
		mux.Handle(rt.Pattern(), s.wrap(rt))
	}
}

func (s *Server) wrap(rt Route) http.Handler {
	handler := rt.Handler
	if rt.Method == http.MethodGet || rt.Method == http.MethodDelete {
		handler = noBody(handler)
	}
	if rt.Method != http.MethodGet && rt.Handler != nil && !(rt.Method == http.MethodPut && rt.Path == "/v1/properties/{property_id}/rules") {
		handler = noEntityTag(handler)
	}
	h := withQuery(rt, handler)
	switch rt.Access {
	case Member:
		h = tenant.RequireRole(tenant.RoleAdmin, tenant.RoleViewer)(h)
	case Admin:
		h = tenant.RequireRole(tenant.RoleAdmin)(s.adminHolds(h))
	case Service:
		h = tenant.RequireRole(tenant.RoleService)(h)
	}
	if rt.Access != Public {
		h = tenant.Require(s.o.IdentitySecret)(h)
	}
	return httpserver.MaxBytes(maxBody)(h)
}

// Who a signed-in caller is, to config-svc (lookupCaller).
type callerState int

const (
	callerUser     callerState = iota // a user config-svc keeps
	callerDeleted                     // a user deleted within an access token's lifetime
	callerExternal                    // no user, none deleted: an external identity provider's
)

// lookupCaller reads the caller's user, and without one tells a user
// deleted since its token was issued (Store.UserDeleted) from an external
// identity provider's user, taken at its token's word.
func (s *Server) lookupCaller(ctx context.Context, tid, uid gocql.UUID) (store.User, callerState, error) {
	u, err := s.o.Store.User(ctx, tid, uid)
	if !errors.Is(err, store.ErrNotFound) {
		return u, callerUser, err
	}
	deleted, err := s.o.Store.UserDeleted(ctx, tid, uid)
	if deleted {
		return store.User{}, callerDeleted, err
	}
	return store.User{}, callerExternal, err
}

// adminHolds lets a request to an Admin route through only while its
// caller is an admin still. An access token is checked by its signature
// alone, so it works for -access-token-ttl after its user was demoted or
// deleted; on these routes such a token could make its rights outlast
// it (set its own role back to admin, then delete the admin who demoted
// it; create an admin whose password it knows; mint an API secret). So the
// caller's user is read: a role other than admin is refused (403), a user
// deleted since its token was issued too (401: DeleteUser marks it for a
// token's lifetime). A caller of whom there is no row and no such mark is
// a user of an external identity provider, taken at its token's word.
// Reads (Member routes) are not checked: a token's lifetime bounds them.
func (s *Server) adminHolds(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tid, uid, ok := caller(w, r)
		if !ok {
			return
		}
		u, state, err := s.lookupCaller(r.Context(), tid, uid)
		switch {
		case err != nil:
			s.internalError(w, r, "read the caller's user", err)
			return
		case state == callerDeleted:
			httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", "your user has been deleted")
			return
		case state == callerUser && u.Role != string(tenant.RoleAdmin):
			httpserver.WriteError(w, http.StatusForbidden, "forbidden", "your role is now "+u.Role+" and this needs admin (your access token was issued before the change: refresh it for one of your current role)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// deletedUserMemory is how long a deleted user is remembered as deleted
// (Store.DeleteUser): as long as an access token issued to it just before
// is accepted, signed identity headers' window and a minute of clock skew
// included.
func (s *Server) deletedUserMemory() time.Duration {
	return s.o.Issuer.AccessTTL + tenant.MaxSignatureAge + time.Minute
}

// caller returns the identity of a Member or Admin route's caller with its
// tenant and user as UUIDs. A malformed identity (which the gateway never
// signs) is answered 401. A user ID that is not a UUID is an external
// identity provider's subject (Auth0's "auth0|5f7c…", Okta's "00u1…"),
// named here by externalUserID.
func caller(w http.ResponseWriter, r *http.Request) (tenant.Identity, gocql.UUID, gocql.UUID, bool) {
	id, err := tenant.Extract(r.Context())
	if err != nil {
		httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", "no verified identity on this request")
		return id, gocql.UUID{}, gocql.UUID{}, false
	}
	tid, err := gocql.ParseUUID(id.TenantID)
	if err != nil || id.UserID == "" {
		httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", "the identity of this request does not name a tenant and user of this service")
		return id, gocql.UUID{}, gocql.UUID{}, false
	}
	uid, err := gocql.ParseUUID(id.UserID)
	if err != nil {
		uid = externalUserID(id.UserID)
	}
	return id, tid, uid, true
}

// externalSubjects is the namespace of externalUserID's UUIDs.
var externalSubjects = uuid.MustParse("6b1e520d-3c41-4f2a-9d07-5e8311c4709a")

// externalUserID names an external identity provider's subject that is
// not a UUID by a UUID of its own: the name-based (version 5) UUID of the
// subject, the same at every request, and never one of the random
// (version 4) IDs config-svc gives its users.
func externalUserID(subject string) gocql.UUID {
	return gocql.UUID(uuid.NewSHA1(externalSubjects, []byte(subject)))
}

// internalError logs err and answers 500 (503 when Cassandra is
// unavailable, so callers retry). When the client has gone away (the
// request's context is done, so the store's call failed with it) nothing
// is logged or written: nobody reads the answer, and it is not a fault.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.internalErrorAfter(w, r, what, err, "")
}

// internalErrorAfter is internalError for a request that failed after it
// had done something a client must not take as undone: done, said first
// in the message (e.g. "your account was created, but signing you in
// failed"), with advice, tells the client what holds and what to do.
func (s *Server) internalErrorAfter(w http.ResponseWriter, r *http.Request, what string, err error, done string) {
	if r.Context().Err() != nil {
		return
	}
	s.o.Log.Error(what, slog.Any("error", err), slog.String("request_id", httpserver.RequestID(r.Context())))
	if storageUnavailable(err) {
		msg := "storage is unavailable; retry in a few seconds"
		if done != "" {
			msg = done + "; storage is unavailable, so wait a few seconds first"
		}
		// Retry-After: a store every instance shares is down, which the
		// gateway's breaker then leaves out of this instance's count (a
		// moment of Cassandra's opened every instance's breaker at once).
		w.Header().Set("Retry-After", "2")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", msg)
		return
	}
	msg := "internal error while trying to " + what + "; the request ID identifies it in our logs"
	if done != "" {
		msg = done + "; " + msg
	}
	httpserver.WriteError(w, http.StatusInternalServerError, "internal", msg)
}

// storageUnavailable reports whether err is Cassandra not doing a request
// now, which a retry is the fix for: no connection or no answer, too few
// replicas alive (Unavailable) or answering in time (a read or write
// timeout). A write that timed out may have been applied, as one whose
// connection was lost may: the same 503 for both.
func storageUnavailable(err error) bool {
	var unavailable *gocql.RequestErrUnavailable
	var writeTimeout *gocql.RequestErrWriteTimeout
	var readTimeout *gocql.RequestErrReadTimeout
	return errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, gocql.ErrTimeoutNoResponse) || errors.Is(err, gocql.ErrConnectionClosed) ||
		errors.As(err, &unavailable) || errors.As(err, &writeTimeout) || errors.As(err, &readTimeout)
}

func notFound(w http.ResponseWriter, what, id string) {
	httpserver.WriteError(w, http.StatusNotFound, "not_found", "no "+what+" "+quote(id)+" in your account")
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// NewTrackingID returns a random tracking ID: AT- and ten characters of
// configclient.TrackingIDAlphabet (about 49 bits).
func NewTrackingID() (string, error) {
	const alphabet = configclient.TrackingIDAlphabet
	// Rejection sampling keeps the characters uniform.
	limit := byte(256 - 256%len(alphabet))
	out := make([]byte, 0, len(configclient.TrackingIDPrefix)+configclient.TrackingIDLength)
	out = append(out, configclient.TrackingIDPrefix...)
	var buf [32]byte
	for len(out) < cap(out) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < limit && len(out) < cap(out) {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

type metrics struct {
	signups, logins, loginFailures, refreshes prometheus.Counter
	refreshReuses                             *prometheus.CounterVec
	resetRequests                             *prometheus.CounterVec
	passwordResets                            prometheus.Counter
	verificationMails                         *prometheus.CounterVec
	emailVerifications                        prometheus.Counter
	invitations                               *prometheus.CounterVec
	addressClaims                             *prometheus.CounterVec
	trackingIDCollisions                      prometheus.Counter
	propertyLimitRefused                      prometheus.Counter
	ruleVersions, ruleVersionsPruned          prometheus.Counter
	ruleVersionsRefused                       *prometheus.CounterVec
	changes                                   *prometheus.CounterVec
	longPolls                                 prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		signups:       prometheus.NewCounter(prometheus.CounterOpts{Name: "config_signups_total", Help: "Tenants created by sign-up."}),
		logins:        prometheus.NewCounter(prometheus.CounterOpts{Name: "config_logins_total", Help: "Successful logins."}),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "config_login_failures_total", Help: "Logins refused for a wrong e-mail or password."}),
		refreshes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "config_token_refreshes_total", Help: "Refresh tokens exchanged for new tokens."}),
		refreshReuses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_refresh_token_reuses_total",
			Help: "Refresh tokens presented again after their use, by outcome: signed_out (later than 30 s after it, as a stolen copy is: every refresh token of its user revoked), within_grace (within 30 s: a client retrying a lost answer, or two tabs at once; only that request refused)."}, []string{"outcome"}),
		resetRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_password_reset_requests_total",
			Help: "Password reset requests by outcome: queued (a link handed to the mail sender, config_mail_messages_total), no_account, unverified (the account's address is not verified: nothing sent), throttled, failed (no link queued: the token not stored, or the mail queue full)."}, []string{"outcome"}),
		verificationMails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_email_verification_mails_total",
			Help: "E-mail verification links, of new users and asked for again, by outcome: queued (handed to the mail sender), throttled, failed (the token not stored, or the mail queue full), not_configured (a new user on an installation without mail delivery)."}, []string{"outcome"}),
		invitations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_invitations_total",
			Help: "Invitations by event: sent (handed to the mail sender), accepted, revoked."}, []string{"event"}),
		addressClaims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_address_claims_total",
			Help: "Sign-ups refused for a taken address, and addresses taken from users who never verified them, by event: mailed (a claim link handed to the mail sender), held_verified (the holder verified the address: nothing sent), throttled, failed (no link queued: the lookup or the token's write failed, or the mail queue is full), not_configured (no mail delivery), claimed (a claim link or an invitation took an address from its unverified holder)."}, []string{"event"}),
		emailVerifications:   prometheus.NewCounter(prometheus.CounterOpts{Name: "config_email_verifications_total", Help: "E-mail addresses verified with a link."}),
		passwordResets:       prometheus.NewCounter(prometheus.CounterOpts{Name: "config_password_resets_total", Help: "Passwords set with a reset link."}),
		trackingIDCollisions: prometheus.NewCounter(prometheus.CounterOpts{Name: "config_tracking_id_collisions_total", Help: "Tracking ID candidates that were already taken (retried)."}),
		propertyLimitRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "config_property_limit_refused_total", Help: "Properties not created because their tenant has -max-properties-per-tenant."}),
		ruleVersions:         prometheus.NewCounter(prometheus.CounterOpts{Name: "config_rule_versions_total", Help: "Rule versions created."}),
		ruleVersionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_rule_versions_refused_total",
			Help: "Rule versions refused because the property reached a bound on its versions, by bound (day, history)."}, []string{"bound"}),
		ruleVersionsPruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "config_rule_versions_pruned_total", Help: "Rule versions deleted because they were replaced longer ago than the raw archive keeps hits."}),
		changes:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: "config_feed_appends_total", Help: "Changes appended to the change feed, by kind."}, []string{"kind"}),
		longPolls:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "config_feed_long_polls", Help: "Change-feed long polls waiting now."}),
	}
	reg.MustRegister(m.signups, m.logins, m.loginFailures, m.refreshes, m.refreshReuses, m.resetRequests, m.passwordResets, m.verificationMails, m.emailVerifications, m.invitations, m.addressClaims, m.trackingIDCollisions, m.propertyLimitRefused, m.ruleVersions, m.ruleVersionsPruned, m.ruleVersionsRefused, m.changes, m.longPolls)
	return m
}

// now is the current time as Cassandra stores it (milliseconds, UTC), so
// what an answer shows is what a later read returns.
func (s *Server) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }
