// Package auth authenticates API requests at the gateway: it takes the
// bearer token from the Authorization header, verifies it with
// pkg/authtoken against the keys of its issuer (config-svc, or an optional
// external identity provider chosen by the token's iss claim), and keeps
// those key sets fresh in the background.
package auth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the token-checking flags.
type Config struct {
	JWKSURL            string
	RefreshInterval    time.Duration
	MinRefreshInterval time.Duration
	Issuer             string
	Audience           string
	Leeway             time.Duration
	ExternalJWKSURL    string
	ExternalIssuer     string
	ExternalAudience   string
	// ExternalTenants lists the tenants (comma-separated IDs) the external
	// identity provider may assert: it belongs to a customer, and its
	// tokens' tid claim must not reach another customer's data.
	ExternalTenants string
}

// RegisterFlags registers the token-checking flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "URL of the JWKS of access tokens (empty: "+authtoken.JWKSPath+" of a healthy config instance)")
	fs.DurationVar(&c.RefreshInterval, "jwks-refresh-interval", 5*time.Minute, "how often the JWKS is refetched in the background")
	fs.DurationVar(&c.MinRefreshInterval, "jwks-min-refresh-interval", authtoken.DefaultMinRefreshInterval, "at most one JWKS refetch per this interval when a token names an unknown kid")
	fs.StringVar(&c.Issuer, "token-issuer", authtoken.DefaultIssuer, "required iss claim of access tokens")
	fs.StringVar(&c.Audience, "token-audience", authtoken.DefaultAudience, "required aud claim of access tokens")
	fs.DurationVar(&c.Leeway, "token-leeway", authtoken.DefaultLeeway, "clock difference tolerated on exp, nbf and iat")
	fs.StringVar(&c.ExternalJWKSURL, "external-jwks-url", "", "JWKS URL of an external identity provider whose tokens carry tid and role claims (empty: none)")
	fs.StringVar(&c.ExternalIssuer, "external-issuer", "", "iss claim of the external identity provider's tokens (required with -external-jwks-url)")
	fs.StringVar(&c.ExternalAudience, "external-audience", authtoken.DefaultAudience, "required aud claim of the external identity provider's tokens")
	fs.StringVar(&c.ExternalTenants, "external-tenants", "", "comma-separated tenant IDs the external identity provider may assert (required with -external-jwks-url); a token of it for another tenant is refused")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	for _, u := range []struct{ flag, v string }{{"-jwks-url", c.JWKSURL}, {"-external-jwks-url", c.ExternalJWKSURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", u.flag, u.v)
		}
	}
	switch {
	case c.Issuer == "" || c.Audience == "":
		return errors.New("-token-issuer and -token-audience must not be empty")
	case c.Leeway < 0 || c.Leeway > 5*time.Minute:
		return errors.New("-token-leeway must be between 0 and 5m")
	case c.RefreshInterval < time.Second:
		return errors.New("-jwks-refresh-interval must be at least 1s")
	case c.MinRefreshInterval < time.Second:
		return errors.New("-jwks-min-refresh-interval must be at least 1s")
	case c.ExternalJWKSURL != "" && (c.ExternalIssuer == "" || c.ExternalAudience == ""):
		return errors.New("-external-jwks-url needs -external-issuer and -external-audience")
	case c.ExternalJWKSURL == "" && c.ExternalIssuer != "":
		return errors.New("-external-issuer is set but -external-jwks-url is not")
	case c.ExternalJWKSURL != "" && c.ExternalIssuer == c.Issuer:
		return errors.New("-external-issuer must differ from -token-issuer")
	case c.ExternalJWKSURL != "" && len(c.externalTenants()) == 0:
		return errors.New("-external-jwks-url needs -external-tenants: the tenants its tokens may be for (the provider is a customer's; any other tenant in its tokens is refused)")
	case c.ExternalJWKSURL == "" && c.ExternalTenants != "":
		return errors.New("-external-tenants is set but -external-jwks-url is not")
	}
	return nil
}

// externalTenants returns the set -external-tenants lists.
func (c *Config) externalTenants() map[string]bool {
	out := map[string]bool{}
	for _, t := range strings.Split(c.ExternalTenants, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out[t] = true
		}
	}
	return out
}

// issuer is one trusted token issuer.
type issuer struct {
	name     string // "primary" or "external", for logs and metrics
	iss      string
	keys     *authtoken.KeySet
	verifier *authtoken.Verifier
	tenants  map[string]bool // the tenants it may assert; nil: any (the primary)
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	primary  *issuer
	external *issuer // nil when no external identity provider is configured
	refresh  time.Duration
	log      *slog.Logger
	fetches  *prometheus.CounterVec
}

// New returns an Authenticator. primaryJWKS is where config-svc's keys come
// from unless c.JWKSURL overrides it; client fetches JWKS URLs.
func New(c Config, primaryJWKS authtoken.Source, client *http.Client, log *slog.Logger, reg prometheus.Registerer) (*Authenticator, error) {
	a := &Authenticator{
		refresh: c.RefreshInterval,
		log:     log,
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_jwks_fetches_total",
			Help: "JWKS fetches, by issuer (primary, external) and result (ok, error).",
		}, []string{"issuer", "result"}),
	}
	reg.MustRegister(a.fetches)
	if c.JWKSURL != "" {
		primaryJWKS = authtoken.URLSource(client, c.JWKSURL)
	}
	var err error
	if a.primary, err = a.newIssuer("primary", c.Issuer, c.Audience, c.Leeway, c.MinRefreshInterval, primaryJWKS); err != nil {
		return nil, err
	}
	if c.ExternalJWKSURL != "" {
		src := authtoken.URLSource(client, c.ExternalJWKSURL)
		if a.external, err = a.newIssuer("external", c.ExternalIssuer, c.ExternalAudience, c.Leeway, c.MinRefreshInterval, src); err != nil {
			return nil, err
		}
		a.external.tenants = c.externalTenants()
	}
	return a, nil
}

func (a *Authenticator) newIssuer(name, iss, aud string, leeway, minRefresh time.Duration, src authtoken.Source) (*issuer, error) {
	counted := func(ctx context.Context) (authtoken.JWKS, error) {
		s, err := src(ctx)
		result := "ok"
		if err != nil {
			result = "error"
		}
		a.fetches.WithLabelValues(name, result).Inc()
		return s, err
	}
	keys := authtoken.NewKeySet(counted, minRefresh)
	v, err := authtoken.NewVerifier(keys, authtoken.VerifierConfig{Issuer: iss, Audience: aud, Leeway: leeway})
	if err != nil {
		return nil, fmt.Errorf("%s token verifier: %w", name, err)
	}
	return &issuer{name: name, iss: iss, keys: keys, verifier: v}, nil
}

// Authenticate verifies a bearer token and returns the identity it vouches
// for. The error is a verification error for authtoken.Reason; it never
// contains the token.
func (a *Authenticator) Authenticate(ctx context.Context, raw string) (tenant.Identity, error) {
	is := a.primary
	if a.external != nil && len(raw) <= authtoken.MaxTokenBytes && unverifiedIssuer(raw) == a.external.iss {
		is = a.external
	}
	c, err := is.verifier.Verify(ctx, raw)
	if err != nil {
		return tenant.Identity{}, err
	}
	if is.tenants != nil && !is.tenants[c.TenantID] {
		return tenant.Identity{}, fmt.Errorf("%w: the %s issuer may not assert tenant %s (-external-tenants)", authtoken.ErrInvalidClaims, is.name, c.TenantID)
	}
	return c.Identity(), nil
}

// unverifiedIssuer reads iss without checking anything, only to choose
// which issuer's keys verify the token.
func unverifiedIssuer(raw string) string {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return ""
	}
	return c.Issuer
}

// Run keeps the key sets fresh until ctx is done: it fetches each at once,
// retrying with backoff until the first fetch succeeds, then every refresh
// interval. Failures keep the cached keys and are logged.
func (a *Authenticator) Run(ctx context.Context) error {
	done := make(chan struct{})
	n := 0
	for _, is := range []*issuer{a.primary, a.external} {
		if is == nil {
			continue
		}
		n++
		go func() { a.keepFresh(ctx, is); done <- struct{}{} }()
	}
	for range n {
		<-done
	}
	return nil
}

func (a *Authenticator) keepFresh(ctx context.Context, is *issuer) {
	backoff := 250 * time.Millisecond
	for {
		wait := a.refresh
		if err := is.keys.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("jwks fetch failed; keeping the cached keys", slog.String("issuer", is.name), slog.Int("cached_keys", is.keys.Len()), slog.Any("error", err))
			if !is.keys.Loaded() {
				wait = backoff
				backoff = min(2*backoff, 10*time.Second)
			}
		} else {
			backoff = 250 * time.Millisecond
			a.log.Debug("jwks fetched", slog.String("issuer", is.name), slog.Int("keys", is.keys.Len()))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
