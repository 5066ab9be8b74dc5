package config

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/flagenv"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/tenant"
)

func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := flagenv.Parse(fs, "CONFIG", args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestValidate(t *testing.T) {
	ok := []string{"-identity-secret=0123456789abcdef", "-signing-keys-dir=/tmp/keys"}
	tests := []struct {
		name string
		args []string
		want string // "" for valid
	}{
		{"minimal", ok, ""},
		{"no identity secret", []string{"-signing-keys-dir=/tmp/keys"}, "-identity-secret must be at least 16 bytes"},
		{"short identity secret", []string{"-identity-secret=short", "-signing-keys-dir=/k"}, "at least 16 bytes"},
		{"no keys dir", []string{"-identity-secret=0123456789abcdef"}, "-signing-keys-dir is required"},
		{"access TTL too short", append(ok, "-access-token-ttl=10s"), "-access-token-ttl 10s is out of range"},
		{"refresh shorter than access", append(ok, "-refresh-token-ttl=5m"), "-refresh-token-ttl must be at least"},
		{"refresh past a year", append(ok, "-refresh-token-ttl=100000h"), "-refresh-token-ttl 100000h0m0s is over a year"},
		{"refresh of a year", append(ok, "-refresh-token-ttl=8760h"), ""},
		{"bcrypt too cheap", append(ok, "-bcrypt-cost=4"), "-bcrypt-cost 4 is out of range"},
		{"feed poll too slow", append(ok, "-feed-poll-interval=10s"), "within 5 seconds"},
		{"no properties allowed", append(ok, "-max-properties-per-tenant=0"), "-max-properties-per-tenant must be at least 1"},
		{"tracker URL", append(ok, "-tracker-script-url=collect.example.com/tracker.js"), "not an http(s) URL"},
		{"cassandra consistency", append(ok, "-cassandra-consistency=SOME"), "not a consistency level"},
		{"smtp", append(ok, "-smtp-addr=smtp.example.com:587", "-smtp-username=u", "-smtp-password=p", "-mail-from=Acme <no-reply@acme.example>"), ""},
		{"pickup directory", append(ok, "-mail-dir=/tmp/mail", "-mail-from=no-reply@acme.example", "-password-reset-url=https://app.example/reset?token={token}"), ""},
		{"smtp and directory", append(ok, "-smtp-addr=smtp.example.com:587", "-mail-dir=/tmp/mail", "-mail-from=no-reply@acme.example"), "give one"},
		{"smtp without port", append(ok, "-smtp-addr=smtp.example.com", "-mail-from=no-reply@acme.example"), "not host:port"},
		{"smtps without implicit TLS", append(ok, "-smtp-addr=smtp.example.com:465", "-mail-from=no-reply@acme.example"), "-smtp-implicit-tls"},
		{"smtps", append(ok, "-smtp-addr=smtp.example.com:465", "-smtp-implicit-tls", "-mail-from=no-reply@acme.example"), ""},
		{"mail without sender", append(ok, "-mail-dir=/tmp/mail"), "-mail-from is required"},
		{"bad sender", append(ok, "-mail-dir=/tmp/mail", "-mail-from=no-reply"), "-mail-from"},
		{"password without username", append(ok, "-smtp-addr=smtp.example.com:587", "-smtp-password=p", "-mail-from=no-reply@acme.example"), "without -smtp-username"},
		{"reset URL without token", append(ok, "-password-reset-url=https://app.example/reset"), "holding {token} once"},
		{"reset URL not http", append(ok, "-password-reset-url=app.example/reset?token={token}"), "holding {token} once"},
		{"reset URL over plain http", append(ok, "-password-reset-url=http://app.example/reset?token={token}"), "must be an https URL"},
		{"reset URL over http to this machine", append(ok, "-password-reset-url=http://127.0.0.1:8080/reset?token={token}"), ""},
		{"reset URL over http to localhost", append(ok, "-password-reset-url=http://localhost:8080/reset?token={token}"), ""},
		{"reset TTL", append(ok, "-password-reset-ttl=48h"), "-password-reset-ttl 48h0m0s is out of range"},
		{"verification URL", append(ok, "-email-verification-url=https://app.example/verify?token={token}", "-email-verification-ttl=24h"), ""},
		{"verification URL without token", append(ok, "-email-verification-url=https://app.example/verify"), "holding {token} once"},
		{"verification URL over plain http", append(ok, "-email-verification-url=http://app.example/verify?token={token}"), "must be an https URL"},
		{"verification TTL too long", append(ok, "-email-verification-ttl=200h"), "-email-verification-ttl 200h0m0s is out of range 1h..168h"},
		{"invitation URL", append(ok, "-invitation-url=https://app.example/accept?token={token}"), ""},
		{"invitation URL over plain http", append(ok, "-invitation-url=http://app.example/accept?token={token}"), "-invitation-url"},
		{"claim URL", append(ok, "-email-claim-url=https://app.example/claim?token={token}"), ""},
		{"claim URL without the token", append(ok, "-email-claim-url=https://app.example/claim"), "-email-claim-url"},
		{"verification TTL too short", append(ok, "-email-verification-ttl=10m"), "is out of range 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.args...)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestRunServes runs the binary's whole wiring against the embedded CQL
// server: migrations at start, a development key generated, sign-up, the
// JWKS, an internal call, readiness, and a clean stop.
func TestRunServes(t *testing.T) {
	hosts := cqltest.Hosts(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		keys, mailDir, base string
		done                chan error
		logs                *logtest.Buffer
	)
	// The port is free when chosen but bound only as Run starts: on a busy
	// machine another listener can take it in between, and StartRetrying
	// starts again, on another port, with directories of its own.
	consultest.StartRetrying(t, "config start-up", func() error {
		keys = filepath.Join(t.TempDir(), "keys")
		mailDir = filepath.Join(t.TempDir(), "mail") // made at start
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(consultest.FreePort(t)))
		cfg, err := parse(t, "-mail-dir="+mailDir, "-mail-from=Acme <no-reply@acme.example>",
			"-http-addr="+addr, "-consul-addr=", "-log-level=info",
			"-cassandra-hosts="+strings.Join(hosts, ","), "-cassandra-keyspace="+fmt.Sprintf("run_%d", time.Now().UnixNano()%1e9),
			"-cassandra-consistency=ONE", "-cassandra-migrate",
			"-identity-secret=0123456789abcdef", "-signing-keys-dir="+keys, "-dev-generate-key", "-bcrypt-cost=10", "-drain-delay=0s")
		if err != nil {
			t.Fatal(err)
		}
		done = make(chan error, 1)
		logs = &logtest.Buffer{}
		go func() { done <- Run(ctx, cfg, logs) }()
		base = "http://" + addr
		var ended error
		eventually.NoError(t, 30*time.Second, "config ready", func() error {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("/readyz answered %d", resp.StatusCode)
			}
			select {
			case err := <-done:
				ended = fmt.Errorf("Run ended early: %w", err)
				return nil
			default:
			}
			return err
		})
		return ended
	})
	if files, _ := filepath.Glob(filepath.Join(keys, "*.pem")); len(files) != 1 {
		t.Fatalf("-dev-generate-key made %d keys", len(files))
	}

	resp, err := http.Post(base+"/v1/signup", "application/json", strings.NewReader(`{"email":"run@shop.example","password":"correct horse battery","company":"Run"}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("signup: %v %v", resp, err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	resp, err = http.Post(base+"/v1/password-reset", "application/json", strings.NewReader(`{"email":"run@shop.example"}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("password reset: %v %v", resp, err)
	}
	resp.Body.Close()
	// Sent in the background (the sender is one of Run's components).
	eventually.True(t, 10*time.Second, "the reset mail in -mail-dir", func() bool {
		files, _ := filepath.Glob(filepath.Join(mailDir, "*.eml"))
		return len(files) == 1
	})
	ks := authtoken.NewKeySet(authtoken.URLSource(http.DefaultClient, base+authtoken.JWKSPath), 0)
	v, err := authtoken.NewVerifier(ks, authtoken.VerifierConfig{Issuer: authtoken.DefaultIssuer, Audience: authtoken.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
		t.Fatalf("the token does not verify against the served JWKS: %v", err)
	}

	req, _ := http.NewRequest("GET", base+"/internal/v1/changes", nil)
	tenant.Sign(req.Header, tenant.System("collection"), []byte("0123456789abcdef"), time.Now())
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("internal call: %v %v", resp, err)
	}
	resp.Body.Close()
	// The pipeline's reads of the internal API (a long poll per instance
	// every 30 s, a lookup per cached property at every resync) are logged
	// at debug when they succeed, so that they do not fill config's log;
	// the merchants' requests are logged at info.
	if !strings.Contains(logs.String(), "/v1/signup") {
		t.Errorf("the sign-up is not in the access log at info:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "/internal/v1/changes") {
		t.Errorf("a successful read of the change feed is logged at info:\n%s", logs.String())
	}

	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"config_signups_total 1", "config_feed_head", `config_mail_messages_total{outcome="sent"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop")
	}
}
