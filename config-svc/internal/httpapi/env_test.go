package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

var testSecret = []byte("test-identity-secret-0123456789")

// observed records every (method, route pattern, status) the API answered
// during the package's tests; TestMain checks each against openapi.yaml.
var observed sync.Map

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	// Only a full run has exercised the responses worth checking.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if problems := undocumentedResponses(); len(problems) > 0 {
			fmt.Fprintln(os.Stderr, "responses the API gave that openapi.yaml does not document:")
			for _, p := range problems {
				fmt.Fprintln(os.Stderr, "  "+p)
			}
			code = 1
		}
	}
	os.Exit(code)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sr, r)
		// Code 0: the handler wrote nothing because the client went away.
		if r.Pattern != "" && sr.code != 0 {
			observed.Store(fmt.Sprintf("%s %d", r.Pattern, sr.code), true)
		}
	})
}

// env is one config-svc instance on a real HTTP server over the embedded
// CQL server, plus a stand-in for the gateway: it verifies access tokens
// against the instance's own JWKS and forwards the identity in signed
// headers, as the real gateway does.
type env struct {
	t        *testing.T
	url      string
	cfg      *cassandra.Config
	store    *store.Store
	feed     *Feed
	keysDir  string
	keys     *auth.KeyRing
	verifier *authtoken.Verifier
	client   *http.Client
	handler  http.Handler
	// feedRegistry holds the instance's metrics.
	feedRegistry *prometheus.Registry
	// shutdown begins the instance's shutdown: long polls end.
	shutdown func()

	srvMu sync.Mutex
	srv   *httptest.Server
}

// newEnv starts an instance on a fresh keyspace.
func newEnv(t *testing.T, mods ...func(*Options)) *env {
	return startInstance(t, migratetest.Keyspace(t), "", mods...)
}

// startInstance starts an instance on cfg's keyspace; instances started on
// one keyspace behave as one deployment with several instances (pass the
// same keysDir so they sign with the same keys; "" makes a new one).
func startInstance(t *testing.T, cfg *cassandra.Config, keysDir string, mods ...func(*Options)) *env {
	t.Helper()
	session, err := cassandra.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	st := store.New(session)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if keysDir == "" {
		keysDir = t.TempDir()
		if _, err := auth.WriteNewKey(keysDir); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := auth.LoadKeyRing(keysDir, "", false, log)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	feed := NewFeed(st, 50*time.Millisecond, ctx.Done(), log, reg)
	if err := feed.Init(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = feed.Run(ctx) }()
	o := Options{
		Store: st, Keys: keys, Hasher: hasher, Feed: feed, IdentitySecret: testSecret,
		Issuer:           &auth.Issuer{Keys: keys, Issuer: authtoken.DefaultIssuer, Audience: authtoken.DefaultAudience, AccessTTL: 15 * time.Minute},
		RefreshTTL:       time.Hour,
		TrackerScriptURL: "https://collect.example.test/tracker.js",
		Log:              log,
		Registerer:       reg,
	}
	for _, m := range mods {
		m(&o)
	}
	mux := http.NewServeMux()
	httpserver.NewHealth().Register(mux)
	New(o).Register(mux)
	handler := httpserver.Chain(mux, httpserver.WithRequestID, record)
	srv := httptest.NewServer(handler)
	e := &env{t: t, url: srv.URL, cfg: cfg, store: st, feed: feed, keysDir: keysDir, keys: keys, client: srv.Client(), srv: srv, handler: handler,
		feedRegistry: reg, shutdown: cancel}
	t.Cleanup(func() {
		cancel() // ends long polls first, so the server can close
		e.down()
		<-done
	})
	keySet := authtoken.NewKeySet(authtoken.URLSource(srv.Client(), srv.URL+authtoken.JWKSPath), time.Millisecond)
	verifier, err := authtoken.NewVerifier(keySet, authtoken.VerifierConfig{Issuer: authtoken.DefaultIssuer, Audience: authtoken.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	e.verifier = verifier
	return e
}

// down stops the instance's HTTP server, cutting open connections, as if
// the instance had crashed.
func (e *env) down() {
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	if e.srv != nil {
		e.srv.CloseClientConnections()
		e.srv.Close()
		e.srv = nil
	}
}

// up serves the instance again on its old address.
func (e *env) up() {
	e.t.Helper()
	e.srvMu.Lock()
	defer e.srvMu.Unlock()
	if e.srv != nil {
		return
	}
	l, err := net.Listen("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		e.t.Fatalf("listen again on %s: %v", e.url, err)
	}
	srv := httptest.NewUnstartedServer(e.handler)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	e.srv = srv
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

// decode decodes the body into v, failing the test on error.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// apiError is the error of the answer ("" fields when it has none).
func (r response) apiError() httpserver.ErrorDetail {
	var b httpserver.ErrorBody
	_ = json.Unmarshal(r.body, &b)
	return b.Error
}

// who is who makes a request: a bearer token (through the gateway
// stand-in), a service identity, or nobody.
type who struct {
	token   string
	service string
	raw     func(h http.Header) // sets headers by hand (forgeries)
}

var anonymous = who{}

func bearer(tok string) who   { return who{token: tok} }
func service(name string) who { return who{service: name} }

// do sends a request and returns the answer. body is JSON-encoded unless it
// is a string (sent as is), an io.Reader (sent as is, chunked) or nil.
func (e *env) do(c who, method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rdr io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rdr = strings.NewReader(b)
	case io.Reader:
		// Sent as it is and without Content-Length (chunked).
		rdr = io.MultiReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rdr = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rdr)
	if err != nil {
		e.t.Fatal(err)
	}
	if rdr != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	switch {
	case c.token != "":
		claims, err := e.verifier.Verify(context.Background(), c.token)
		if err != nil {
			// The gateway answers 401 itself; tests never get here with
			// a bad token unless they mean to.
			return response{code: http.StatusUnauthorized, body: []byte(`{"error":{"code":"gateway_` + authtoken.Reason(err) + `"}}`)}
		}
		tenant.Sign(req.Header, claims.Identity(), testSecret, time.Now())
	case c.service != "":
		tenant.Sign(req.Header, tenant.System(c.service), testSecret, time.Now())
	case c.raw != nil:
		c.raw(req.Header)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// must sends a request and fails the test unless the status is want.
func (e *env) must(want int, c who, method, path string, body any, headers ...string) response {
	e.t.Helper()
	r := e.do(c, method, path, body, headers...)
	if r.code != want {
		e.t.Fatalf("%s %s = %d %s; want %d", method, path, r.code, r.body, want)
	}
	return r
}

// account is a signed-up tenant's admin.
type account struct {
	email, password string
	tokens          TokenResponse
}

func (a account) as() who { return bearer(a.tokens.AccessToken) }

var addressSeq atomic.Int64

// uniqueAddress returns an e-mail address no other test's has:
// local<n>-<nanoseconds>@domain.
func uniqueAddress(local, domain string) string {
	return fmt.Sprintf("%s%d-%d@%s", local, addressSeq.Add(1), time.Now().UnixNano(), domain)
}

// signup creates a tenant with a unique admin e-mail.
func (e *env) signup(company string) account {
	e.t.Helper()
	a := account{email: uniqueAddress("owner", strings.ToLower(strings.ReplaceAll(company, " ", ""))+".example"), password: "correct horse battery"}
	r := e.must(http.StatusCreated, anonymous, "POST", "/v1/signup", map[string]string{"email": a.email, "password": a.password, "company": company})
	r.decode(e.t, &a.tokens)
	return a
}

// createProperty creates a property and returns it.
func (e *env) createProperty(a account, body map[string]any) PropertyJSON {
	e.t.Helper()
	var p PropertyJSON
	e.must(http.StatusCreated, a.as(), "POST", "/v1/properties", body).decode(e.t, &p)
	return p
}

// addUser adds a user of role to a's tenant and logs them in.
func (e *env) addUser(a account, role string) account {
	e.t.Helper()
	u := account{email: fmt.Sprintf("%s-%d@team.example", role, time.Now().UnixNano()), password: "another long password"}
	e.must(http.StatusCreated, a.as(), "POST", "/v1/users", map[string]string{"email": u.email, "password": u.password, "role": role})
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": u.email, "password": u.password}).decode(e.t, &u.tokens)
	return u
}

func filepathGlob(dir string) ([]string, error) { return filepath.Glob(filepath.Join(dir, "*.pem")) }

func chtimes(path string, t time.Time) error { return os.Chtimes(path, t, t) }

// usedOnce sends use(0) ... use(n-1) at once, the uses of one one-use link,
// and fails the test unless exactly one answers success and every other
// 400; it returns the winning answer and the refused ones.
func usedOnce(t *testing.T, n, success int, use func(i int) response) (won response, refused []response) {
	t.Helper()
	answers := make(chan response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- use(i)
		}()
	}
	wg.Wait()
	close(answers)
	for r := range answers {
		switch {
		case r.code == success && won.code == 0:
			won = r
		case r.code == success:
			t.Fatalf("%d uses of one link at once: two succeeded", n)
		case r.code == http.StatusBadRequest:
			refused = append(refused, r)
		default:
			t.Fatalf("a concurrent use answered %d %s", r.code, r.body)
		}
	}
	if won.code == 0 {
		t.Fatalf("%d uses of one link at once: none succeeded", n)
	}
	return won, refused
}

// atOnce makes n requests at the same moment, create(i) each answering
// its status, and wants each answered 201 or 409: it returns how many
// were 201, and the answers.
func atOnce(t *testing.T, n int, create func(i int) int) (created int, codes []int) {
	t.Helper()
	codes = make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = create(i)
		}()
	}
	wg.Wait()
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("answers %v; want 201 or 409 each", codes)
		}
	}
	return created, codes
}
