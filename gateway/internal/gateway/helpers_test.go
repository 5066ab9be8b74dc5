package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/gateway/internal/gateway"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/tenant"
)

const testSecret = "test-identity-secret-0123456789"

// echo is what a test upstream answers: what it saw of the request.
type echo struct {
	Instance      string `json:"instance"`
	Path          string `json:"path"`
	RawQuery      string `json:"raw_query"`
	TenantID      string `json:"tenant_id"`
	UserID        string `json:"user_id"`
	Role          string `json:"role"`
	IdentityError string `json:"identity_error"`
	RawTenant     string `json:"raw_tenant"`
	Authorization bool   `json:"authorization"`
	XFF           string `json:"xff"`
	RealIP        string `json:"real_ip"`
	BodyBytes     int64  `json:"body_bytes"`
}

// upstream is a real HTTP upstream instance for tests: it answers with an
// echo, serves /readyz as its ready flag says, and (for config) a JWKS.
type upstream struct {
	name    string
	srv     *httptest.Server
	ready   atomic.Bool
	hits    atomic.Int64
	jwksHit atomic.Int64

	mu   sync.Mutex
	jwks *authtoken.JWKS
}

func newUpstream(t testing.TB, name string) *upstream {
	u := &upstream{name: name}
	u.ready.Store(true)
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

func (u *upstream) setJWKS(s authtoken.JWKS) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.jwks = &s
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/readyz":
		if !u.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	case authtoken.JWKSPath:
		u.mu.Lock()
		s := u.jwks
		u.mu.Unlock()
		if s != nil {
			u.jwksHit.Add(1)
			_ = json.NewEncoder(w).Encode(s)
			return
		}
	}
	u.hits.Add(1)
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	n, _ := io.Copy(io.Discard, r.Body)
	e := echo{Instance: u.name, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RawTenant: r.Header.Get(tenant.HeaderTenantID),
		Authorization: r.Header.Get("Authorization") != "", XFF: r.Header.Get("X-Forwarded-For"),
		RealIP: r.Header.Get("X-Real-Ip"), BodyBytes: n}
	if id, err := tenant.FromRequest(r, []byte(testSecret), time.Now()); err != nil {
		e.IdentityError = err.Error()
	} else {
		e.TenantID, e.UserID, e.Role = id.TenantID, id.UserID, string(id.Role)
	}
	// As every service does (httpserver.WithRequestID), the upstream
	// echoes the request ID it was sent.
	if id := r.Header.Get("X-Request-Id"); id != "" {
		w.Header().Set("X-Request-Id", id)
	}
	// An upstream that sets its own CORS header, which the gateway must
	// not let through twice.
	w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
	w.Header().Set("Access-Control-Allow-Methods", "PUT")
	// And one that says which of its headers a page may read.
	w.Header().Set("Access-Control-Expose-Headers", "X-Collect-Error")
	if s, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
		w.WriteHeader(s)
	}
	_ = json.NewEncoder(w).Encode(e)
}

// issuer signs access tokens with an Ed25519 key published in a JWKS.
type issuer struct {
	key ed25519.PrivateKey
	kid string
}

func newIssuer(t testing.TB) *issuer {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := authtoken.KeyID(key.Public())
	return &issuer{key: key, kid: kid}
}

func (is *issuer) jwks() authtoken.JWKS {
	k, _ := authtoken.NewJWK(is.key.Public(), is.kid)
	return authtoken.JWKS{Keys: []authtoken.JWK{k}}
}

func (is *issuer) claims(tenantID string) authtoken.Claims {
	return authtoken.NewClaims(tenant.Identity{TenantID: tenantID, UserID: "user-1", Role: tenant.RoleViewer},
		authtoken.DefaultIssuer, authtoken.DefaultAudience, time.Now(), 15*time.Minute)
}

func (is *issuer) sign(t testing.TB, c authtoken.Claims) string {
	t.Helper()
	s, err := authtoken.Sign(c, is.kid, is.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (is *issuer) token(t testing.TB, tenantID string) string { return is.sign(t, is.claims(tenantID)) }

// testGateway is a gateway started with gateway.Run, as the binary does.
type testGateway struct {
	url     string
	metrics string // base URL of -metrics-addr
	logs    *logtest.Buffer
	stop    func()
}

func staticUpstreams(us ...*upstream) string {
	var parts []string
	for _, u := range us {
		parts = append(parts, u.name+"="+u.addr())
	}
	return "-static-upstreams=" + strings.Join(parts, ",")
}

// startGateway runs the gateway with args (on top of a free port, the test
// secret and no drain delay) until the test ends, and waits until ready.
func startGateway(t testing.TB, args ...string) *testGateway {
	t.Helper()
	return startGatewayLogging(t, nil, args...)
}

// startGatewayLogging is startGateway with the logs also going to w.
func startGatewayLogging(t testing.TB, w io.Writer, args ...string) *testGateway {
	t.Helper()
	// The gateway's ports are free when chosen but bound only as it
	// starts: on a busy machine another listener can take one in between
	// (address already in use), and StartRetrying tries other ports.
	var g *testGateway
	consultest.StartRetrying(t, "gateway start-up", func() (err error) {
		g, err = tryStartGateway(t, w, args)
		return err
	})
	return g
}

// tryStartGateway is one attempt of startGatewayLogging, on ports of its
// own. It returns an error wrapping Run's when the gateway stopped during
// start-up.
func tryStartGateway(t testing.TB, w io.Writer, args []string) (*testGateway, error) {
	t.Helper()
	var cfg gateway.Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	ports := consultest.FreePorts(t, 2)
	base := []string{"-http-addr=127.0.0.1:" + strconv.Itoa(ports[0]), "-identity-secret=" + testSecret,
		"-metrics-addr=127.0.0.1:" + strconv.Itoa(ports[1]), "-drain-delay=0s", "-consul-check-interval=200ms"}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	var out io.Writer = logs
	if w != nil {
		out = w
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{}) // closed once Run has returned runErr
	var runErr error
	go func() { runErr = gateway.Run(ctx, cfg, out); close(stopped) }()
	g := &testGateway{url: "http://" + cfg.Service.HTTP.Addr, metrics: "http://" + cfg.Service.MetricsAddr, logs: logs}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			<-stopped
			if runErr != nil {
				t.Errorf("gateway.Run: %v\n%s", runErr, logs)
			}
		})
	}
	t.Cleanup(g.stop)
	var startErr error
	eventually.NoError(t, 20*time.Second, "gateway ready", func() error {
		select {
		case <-stopped:
			// Reported here, so stop (a cleanup) has nothing left to
			// do. Run's result is read from runErr, not received from a
			// channel: stop waited for a second result, and a gateway
			// that failed to start hung the test until its time-out.
			once.Do(cancel)
			startErr = fmt.Errorf("gateway stopped during start-up: %w\n%s", runErr, logs)
			return nil
		default:
		}
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		return nil
	})
	if startErr != nil {
		return nil, startErr
	}
	return g, nil
}

// response is a completed request through the gateway.
type response struct {
	status int
	header http.Header
	body   []byte
	echo   echo // when an upstream answered
}

func (r response) errorCode() string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	_ = json.Unmarshal(body, &r.echo)
	return r
}

func (g *testGateway) request(t testing.TB, method, path string, body io.Reader, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, g.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return req
}

func (g *testGateway) get(t testing.TB, path string, headers ...string) response {
	t.Helper()
	return do(t, g.request(t, http.MethodGet, path, nil, headers...))
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
