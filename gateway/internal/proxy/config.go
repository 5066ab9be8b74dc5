package proxy

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"time"

	"github.com/acme/analytics/pkg/clientaddr"
)

// Config holds the flags of the request pipeline: limits, timeouts and the
// proxies trusted to report the client's address.
type Config struct {
	TrustedProxies string
	HitRate        float64
	HitBurst       int
	TenantRate     float64
	TenantBurst    int
	AccountRate    float64
	AccountBurst   int
	BadTokenRate   float64
	BadTokenBurst  int
	RateLimitKeys  int
	MaxHitBody     int64
	MaxBody        int64
	CollectTimeout time.Duration
	APITimeout     time.Duration
	ReportTimeout  time.Duration

	trusted []netip.Prefix
}

// RegisterFlags registers the pipeline flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs or single addresses of proxies (e.g. the load balancer) whose X-Forwarded-For is trusted; from any other peer it is replaced")
	fs.Float64Var(&c.HitRate, "hit-rate", 500, "hit requests per second allowed per tracking ID and client network (an IPv4 address, an IPv6 /64) on each gateway instance (0: unlimited)")
	fs.IntVar(&c.HitBurst, "hit-burst", 1000, "burst of hit requests per tracking ID and client network")
	fs.Float64Var(&c.TenantRate, "tenant-rate", 50, "API requests per second allowed per tenant on each gateway instance (0: unlimited)")
	fs.IntVar(&c.TenantBurst, "tenant-burst", 100, "burst of API requests per tenant")
	fs.Float64Var(&c.AccountRate, "account-rate", 2, "sign-up, login, refresh, password reset, invitation acceptance and address claim requests per second allowed per client network (an IPv4 address, an IPv6 /64) (0: unlimited)")
	fs.IntVar(&c.AccountBurst, "account-burst", 20, "burst of sign-up, login, refresh, password reset, invitation acceptance and address claim requests per client network")
	fs.Float64Var(&c.BadTokenRate, "bad-token-rate", 10, "refused bearer tokens per second allowed per client network (an IPv4 address, an IPv6 /64); past it, a token from that network is answered 429 before its signature is checked (0: unlimited)")
	fs.IntVar(&c.BadTokenBurst, "bad-token-burst", 100, "burst of refused bearer tokens per client network")
	fs.IntVar(&c.RateLimitKeys, "rate-limit-keys", 100000, "most keys (tracking IDs, tenants, IPs) each rate limiter tracks; beyond it new keys share an overflow bucket")
	// Above collection's own limit (512 KiB), so that collection answers
	// the bodies between, and dead-letters them, as it does every
	// rejected hit; bigger ones the gateway refuses and counts.
	fs.Int64Var(&c.MaxHitBody, "max-hit-body", 1<<20, "largest request body accepted on the collection endpoints, in bytes")
	fs.Int64Var(&c.MaxBody, "max-body", 1<<20, "largest request body accepted on the API, in bytes")
	fs.DurationVar(&c.CollectTimeout, "collect-timeout", 5*time.Second, "time limit of a request to the collection endpoints and the tracker script")
	fs.DurationVar(&c.APITimeout, "api-timeout", 10*time.Second, "time limit of a request to the config API (including sign-up and login)")
	fs.DurationVar(&c.ReportTimeout, "report-timeout", 30*time.Second, "time limit of a report request")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	trusted, err := clientaddr.ParsePrefixes(c.TrustedProxies)
	if err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	c.trusted = trusted
	for _, r := range []struct {
		name  string
		rate  float64
		burst int
	}{{"hit", c.HitRate, c.HitBurst}, {"tenant", c.TenantRate, c.TenantBurst}, {"account", c.AccountRate, c.AccountBurst}, {"bad-token", c.BadTokenRate, c.BadTokenBurst}} {
		if r.rate < 0 {
			return fmt.Errorf("-%s-rate must not be negative", r.name)
		}
		if r.rate > 0 && r.burst < 1 {
			return fmt.Errorf("-%s-burst must be at least 1", r.name)
		}
	}
	switch {
	case c.RateLimitKeys < 64:
		return errors.New("-rate-limit-keys must be at least 64")
	case c.MaxHitBody < 1 || c.MaxBody < 1:
		return errors.New("-max-hit-body and -max-body must be positive")
	case c.CollectTimeout <= 0 || c.APITimeout <= 0 || c.ReportTimeout <= 0:
		return errors.New("-collect-timeout, -api-timeout and -report-timeout must be positive")
	}
	return nil
}
