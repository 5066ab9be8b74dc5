// Package config wires the config service: merchants, properties, tracking
// IDs, credentials and per-tenant rules: its configuration and its
// lifecycle.
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/httpapi"
	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/migrate"
	"github.com/acme/analytics/pkg/retry"
	"github.com/acme/analytics/pkg/service"
	"golang.org/x/crypto/bcrypt"
)

// Config is the complete configuration of the config binary.
type Config struct {
	Service   service.Config
	Cassandra cassandra.Config

	IdentitySecret string

	SigningKeysDir    string
	SigningKID        string
	SigningKeysReload time.Duration
	DevGenerateKey    bool
	Issuer            string
	Audience          string
	AccessTokenTTL    time.Duration
	RefreshTokenTTL   time.Duration
	BcryptCost        int

	TrackerScriptURL       string
	FeedPollInterval       time.Duration
	MaxPropertiesPerTenant int

	Mail             mail.Config
	PasswordResetURL string
	PasswordResetTTL time.Duration

	EmailVerificationURL string
	EmailVerificationTTL time.Duration
	InvitationURL        string
	EmailClaimURL        string
}

// RegisterFlags registers every flag of the binary on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Service.Name = "config"
	c.Service.RegisterFlags(fs, "127.0.0.1:8082")
	c.Cassandra.RegisterFlags(fs)
	fs.StringVar(&c.IdentitySecret, "identity-secret", "", "secret shared with the gateway and the services that signs identity headers (at least 16 bytes; required)")
	fs.StringVar(&c.SigningKeysDir, "signing-keys-dir", "", "directory of PEM PKCS#8 Ed25519 private keys that sign access tokens, one per .pem file; all are published in the JWKS (required)")
	fs.StringVar(&c.SigningKID, "signing-kid", "", "kid (RFC 7638 thumbprint) of the key that signs new tokens (empty: the newest file)")
	fs.DurationVar(&c.SigningKeysReload, "signing-keys-reload", 30*time.Second, "how often the signing keys directory is reread, so a rotation needs no restart")
	fs.BoolVar(&c.DevGenerateKey, "dev-generate-key", false, "DEVELOPMENT ONLY: create a signing key when -signing-keys-dir has none (production keys are made and distributed by operators)")
	fs.StringVar(&c.Issuer, "jwt-issuer", authtoken.DefaultIssuer, "iss claim of the access tokens")
	fs.StringVar(&c.Audience, "jwt-audience", authtoken.DefaultAudience, "aud claim of the access tokens")
	fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", 15*time.Minute, "lifetime of an access token (a retired signing key must stay published this long)")
	fs.DurationVar(&c.RefreshTokenTTL, "refresh-token-ttl", 30*24*time.Hour, "lifetime of a refresh token (each is usable once)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 12, "bcrypt cost of password hashes (10 to 16)")
	fs.StringVar(&c.TrackerScriptURL, "tracker-script-url", "http://127.0.0.1:8080/tracker.js", "URL of tracker.js put in tracking snippets (production: https://<collection host>/tracker.js)")
	fs.IntVar(&c.MaxPropertiesPerTenant, "max-properties-per-tenant", httpapi.DefaultMaxPropertiesPerTenant, "most properties one tenant may have; creating one more is refused (409) with the limit")
	fs.DurationVar(&c.FeedPollInterval, "feed-poll-interval", 250*time.Millisecond, "how often this instance reads the change feed for changes made through other instances")
	c.Mail.RegisterFlags(fs)
	fs.StringVar(&c.PasswordResetURL, "password-reset-url", "", "link put in password reset e-mails, {token} replaced by the reset token, e.g. 'https://app.example/reset-password?token={token}'; https, or http to a loopback host (empty: the e-mail gives the token and how to post it to /v1/password-reset/confirm)")
	fs.DurationVar(&c.PasswordResetTTL, "password-reset-ttl", httpapi.DefaultPasswordResetTTL, "how long a password reset link works (5m to 24h; once)")
	fs.StringVar(&c.EmailVerificationURL, "email-verification-url", "", "link put in e-mail verification e-mails, {token} replaced by the verification token, e.g. 'https://app.example/verify-email?token={token}' (a page that posts it, signed in, to /v1/email-verification/confirm); https, or http to a loopback host (empty: the e-mail gives the token and how to post it)")
	fs.StringVar(&c.InvitationURL, "invitation-url", "", "link put in invitation e-mails, {token} replaced by the invitation token, e.g. 'https://app.example/accept-invitation?token={token}' (a page that posts it with the password chosen to /v1/invitations/accept); https, or http to a loopback host (empty: the e-mail gives the token and how to post it)")
	fs.StringVar(&c.EmailClaimURL, "email-claim-url", "", "link put in address claim e-mails (a sign-up refused because an unverified user holds its address), {token} replaced by the claim token, e.g. 'https://app.example/claim-address?token={token}' (a page that posts it with the sign-up's password to /v1/signup/claim); https, or http to a loopback host (empty: the e-mail gives the token and how to post it)")
	fs.DurationVar(&c.EmailVerificationTTL, "email-verification-ttl", httpapi.DefaultEmailVerificationTTL, "how long an e-mail verification link works (1h to 168h; once, signed in as its user)")
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if err := c.Service.Validate(); err != nil {
		return err
	}
	if err := c.Cassandra.Validate(); err != nil {
		return err
	}
	switch {
	case len(c.IdentitySecret) < 16:
		return errors.New("-identity-secret must be at least 16 bytes (the same value as the gateway's)")
	case c.SigningKeysDir == "":
		return errors.New("-signing-keys-dir is required: a directory of PEM Ed25519 private keys (development: add -dev-generate-key)")
	case c.Issuer == "" || c.Audience == "":
		return errors.New("-jwt-issuer and -jwt-audience must not be empty")
	case c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour:
		return fmt.Errorf("-access-token-ttl %s is out of range 1m..24h", c.AccessTokenTTL)
	case c.RefreshTokenTTL < c.AccessTokenTTL:
		return errors.New("-refresh-token-ttl must be at least -access-token-ttl")
	case c.RefreshTokenTTL > 365*24*time.Hour:
		// Its rows carry it as their TTL: Cassandra refuses one past 20
		// years, and 4.1 one whose expiry is past 2038, every login then.
		return fmt.Errorf("-refresh-token-ttl %s is over a year (8760h)", c.RefreshTokenTTL)
	case c.BcryptCost < 10 || c.BcryptCost > 16:
		return fmt.Errorf("-bcrypt-cost %d is out of range 10..16", c.BcryptCost)
	case c.SigningKeysReload < time.Second:
		return errors.New("-signing-keys-reload must be at least 1s")
	case c.MaxPropertiesPerTenant < 1:
		return errors.New("-max-properties-per-tenant must be at least 1")
	case c.FeedPollInterval < 10*time.Millisecond || c.FeedPollInterval > 5*time.Second:
		return errors.New("-feed-poll-interval must be 10ms to 5s (changes must reach the pipeline within 5 seconds)")
	}
	if !httpURL(c.TrackerScriptURL) {
		return fmt.Errorf("-tracker-script-url %q is not an http(s) URL", c.TrackerScriptURL)
	}
	if err := c.Mail.Validate(); err != nil {
		return err
	}
	for _, link := range []struct{ flag, url, example string }{
		{"password-reset-url", c.PasswordResetURL, "reset-password"},
		{"email-verification-url", c.EmailVerificationURL, "verify-email"},
		{"invitation-url", c.InvitationURL, "accept-invitation"},
		{"email-claim-url", c.EmailClaimURL, "claim-address"},
	} {
		if link.url != "" && (strings.Count(link.url, httpapi.TokenPlaceholder) != 1 || !secureLink(link.url)) {
			return fmt.Errorf("-%s %q must be an https URL (http only to a loopback host) holding %s once, e.g. 'https://app.example/%s?token=%[3]s'", link.flag, link.url, httpapi.TokenPlaceholder, link.example)
		}
	}
	if c.PasswordResetTTL < 5*time.Minute || c.PasswordResetTTL > 24*time.Hour {
		return fmt.Errorf("-password-reset-ttl %s is out of range 5m..24h", c.PasswordResetTTL)
	}
	if c.EmailVerificationTTL < time.Hour || c.EmailVerificationTTL > httpapi.MaxEmailVerificationTTL {
		return fmt.Errorf("-email-verification-ttl %s is out of range 1h..%s", c.EmailVerificationTTL, httpapi.MaxEmailVerificationTTL)
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// secureLink reports whether s is a link a reset token may travel in:
// https, or http to this machine (a development stack); over plain http
// anyone on the way would read the token and could take the account.
func secureLink(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		ip, err := netip.ParseAddr(h)
		return h == "localhost" || err == nil && ip.IsLoopback()
	}
	return false
}

// mailRetryFor is how long a reset mail whose sends fail temporarily is
// retried, at most.
const mailRetryFor = 10 * time.Minute

// Run serves until ctx is done, logging to w. The signing keys are read
// first (a missing key exits at once); then it waits for Cassandra,
// serving /healthz meanwhile (service.Setup).
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	svc := service.New(cfg.Service, w)
	svc.QuietAccessLog(httpapi.QuietRoutes...)
	log := svc.Log
	if cfg.DevGenerateKey {
		log.Warn("-dev-generate-key is set: a signing key is generated when the directory is empty; never use this in production", slog.String("dir", cfg.SigningKeysDir))
	}
	keys, err := auth.LoadKeyRing(cfg.SigningKeysDir, cfg.SigningKID, cfg.DevGenerateKey, log)
	if err != nil {
		return err
	}
	hasher, err := auth.NewHasher(max(cfg.BcryptCost, bcrypt.MinCost))
	if err != nil {
		return err
	}
	switch {
	case cfg.Mail.Dir != "":
		if err := os.MkdirAll(cfg.Mail.Dir, 0o700); err != nil {
			return fmt.Errorf("-mail-dir: %w", err)
		}
		log.Info("e-mail is written into a pickup directory", slog.String("dir", cfg.Mail.Dir))
	case cfg.Mail.SMTPAddr != "":
		log.Info("e-mail is sent by SMTP", slog.String("smtp_addr", cfg.Mail.SMTPAddr), slog.Bool("starttls", cfg.Mail.SMTPStartTLS), slog.Bool("auth", cfg.Mail.SMTPUsername != ""))
	default:
		log.Info("mail delivery is not configured (-smtp-addr or -mail-dir): password reset requests answer 503, and no e-mail address can be verified")
	}
	svc.Setup(func(ctx context.Context) error { return setUp(ctx, svc, cfg, keys, hasher) })
	return svc.Run(ctx)
}

// setUp connects to Cassandra (waiting for it), reads the change feed's
// position and adds the API, the feed and the key reloading to svc.
func setUp(ctx context.Context, svc *service.Service, cfg Config, keys *auth.KeyRing, hasher *auth.Hasher) error {
	log := svc.Log
	session, err := migrate.Open(ctx, &cfg.Cassandra, log)
	if err != nil {
		return err
	}
	svc.OnClose(session.Close)
	st := store.New(session)
	svc.Health.Add("cassandra", st.Ping)

	// Long polls end as soon as shutdown begins (ctx is cancelled first),
	// so they do not hold up the drain.
	feed := httpapi.NewFeed(st, cfg.FeedPollInterval, ctx.Done(), log, svc.Registry)
	// Retried as the connect is: just after the migrate job made the
	// keyspace its tables may still be coming.
	if err := retry.Until(ctx, retry.Default, log, "read the change feed", feed.Init); err != nil {
		return err
	}
	var mailer *mail.Queue
	sender, from := cfg.Mail.Sender()
	if sender != nil {
		mailer = mail.NewQueue(sender, mail.QueueConfig{
			// A link mailed late is still of use for half its life.
			RetryFor: min(mailRetryFor, cfg.PasswordResetTTL/2),
			// The components' stop follows the HTTP drain within
			// -shutdown-timeout; reset requests no longer wait for mail,
			// so the drain takes little of it.
			Drain: cfg.Service.HTTP.ShutdownTimeout / 2,
		}, log, svc.Registry)
		svc.Go(mailer.Run)
	}
	api := httpapi.New(httpapi.Options{
		Store: st, Keys: keys, Hasher: hasher, Feed: feed,
		Issuer:                 &auth.Issuer{Keys: keys, Issuer: cfg.Issuer, Audience: cfg.Audience, AccessTTL: cfg.AccessTokenTTL},
		IdentitySecret:         []byte(cfg.IdentitySecret),
		RefreshTTL:             cfg.RefreshTokenTTL,
		TrackerScriptURL:       cfg.TrackerScriptURL,
		MaxPropertiesPerTenant: cfg.MaxPropertiesPerTenant,
		Mailer:                 mailer,
		MailFrom:               from,
		PasswordResetURL:       cfg.PasswordResetURL,
		PasswordResetTTL:       cfg.PasswordResetTTL,
		EmailVerificationURL:   cfg.EmailVerificationURL,
		EmailVerificationTTL:   cfg.EmailVerificationTTL,
		InvitationURL:          cfg.InvitationURL,
		EmailClaimURL:          cfg.EmailClaimURL,
		Log:                    log,
		Registerer:             svc.Registry,
	})
	api.Register(svc.Mux)
	svc.Go(feed.Run)
	svc.Go(func(ctx context.Context) error { return keys.Run(ctx, cfg.SigningKeysReload) })
	return nil
}
