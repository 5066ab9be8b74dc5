package gateway_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/gateway/internal/gateway"
	"github.com/acme/analytics/pkg/clientaddr"
	"github.com/acme/analytics/pkg/consultest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/pixel"
)

// fixture is a gateway with static upstreams, one instance of each.
type fixture struct {
	g                                         *testGateway
	is                                        *issuer
	collection, config, acquisition, behavior *upstream
}

func newFixture(t *testing.T, args ...string) *fixture {
	f := &fixture{is: newIssuer(t), collection: newUpstream(t, "collection"), config: newUpstream(t, "config"),
		acquisition: newUpstream(t, "acquisition"), behavior: newUpstream(t, "behavior")}
	f.config.setJWKS(f.is.jwks())
	f.g = startGateway(t, append([]string{"-consul-addr=", staticUpstreams(f.collection, f.config, f.acquisition, f.behavior)}, args...)...)
	tok := f.is.token(t, "t0")
	eventually.NoError(t, 10*time.Second, "keys fetched", func() error {
		if r := f.g.get(t, "/v1/properties", "Authorization", "Bearer "+tok); r.status != http.StatusOK {
			return errorf("status %d", r.status)
		}
		return nil
	})
	return f
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	tok := "Bearer " + f.is.token(t, "t1")
	tests := []struct {
		method, path string
		auth         bool
		wantStatus   int
		wantUpstream string
	}{
		{"POST", "/collect?tid=UA-1", false, 200, "collection"},
		{"GET", "/collect?tid=UA-1", false, 200, "collection"},
		{"POST", "/mp/collect?tracking_id=UA-1", false, 200, "collection"},
		{"POST", "/debug/collect?tid=UA-1", false, 200, "collection"},
		{"GET", "/tracker.js", false, 200, "collection"},
		{"GET", "/tracker/v2/tracker.js", false, 200, "collection"},
		{"POST", "/v1/signup", false, 200, "config"},
		{"POST", "/v1/login", false, 200, "config"},
		{"POST", "/v1/refresh", false, 200, "config"},
		{"POST", "/v1/password-reset", false, 200, "config"},
		{"POST", "/v1/password-reset/confirm", false, 200, "config"},
		{"POST", "/v1/password-reset/other", false, 401, ""}, // exact paths only
		// Verifying an address needs the user signed in: under /v1/.
		{"POST", "/v1/email-verification", true, 200, "config"},
		{"POST", "/v1/email-verification/confirm", true, 200, "config"},
		{"POST", "/v1/email-verification", false, 401, ""},
		{"POST", "/v1/email-verification/confirm", false, 401, ""},
		// Accepting an invitation is public (the invitee has no account
		// yet); inviting, listing and revoking are the config API's.
		{"POST", "/v1/invitations/accept", false, 200, "config"},
		// Claiming an address: the claimant has no account yet.
		{"POST", "/v1/signup/claim", false, 200, "config"},
		{"POST", "/v1/signup/other", false, 401, ""}, // exact paths only
		{"POST", "/v1/invitations", true, 200, "config"},
		{"POST", "/v1/invitations", false, 401, ""},
		{"DELETE", "/v1/invitations/x", false, 401, ""},
		{"GET", "/.well-known/jwks.json", false, 200, ""}, // served by config, not an echo
		{"GET", "/v1/reports/acquisition/channels", true, 200, "acquisition"},
		{"GET", "/v1/reports/behavior/pages", true, 200, "behavior"},
		{"GET", "/v1/reports/realtime", true, 200, "behavior"},
		{"GET", "/v1/reports/realtime/active-users", true, 200, "behavior"},
		{"GET", "/v1/properties", true, 200, "config"},
		{"PUT", "/v1/properties/p1/rules", true, 200, "config"},
		{"GET", "/v1/reports/acquisition/channels", false, 401, ""},
		{"GET", "/v1/properties", false, 401, ""},
		{"GET", "/internal/tracking-ids/UA-1", true, 404, ""},
		{"GET", "/internal/", false, 404, ""},
		{"GET", "/", false, 404, ""},
		{"GET", "/admin", false, 404, ""},
		{"GET", "/collector", false, 404, ""},
		{"GET", "/v1/../internal/x", true, 307, ""}, // cleaned by the mux (redirect), then 404
		{"TRACE", "/v1/properties", true, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var h []string
			if tt.auth {
				h = []string{"Authorization", tok}
			}
			r := do(t, f.g.request(t, tt.method, tt.path, nil, h...))
			if r.status != tt.wantStatus || r.echo.Instance != tt.wantUpstream {
				t.Fatalf("got %d from %q, want %d from %q: %s", r.status, r.echo.Instance, tt.wantStatus, tt.wantUpstream, r.body)
			}
			if tt.wantStatus == 404 && r.errorCode() != "no_route" {
				t.Fatalf("404 body %s", r.body)
			}
		})
	}
	t.Run("own health endpoints", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := f.g.get(t, p); r.status != 200 || r.echo.Instance != "" {
				t.Fatalf("%s: %d from %q", p, r.status, r.echo.Instance)
			}
		}
	})
	t.Run("metrics only on the metrics address", func(t *testing.T) {
		if r := f.g.get(t, "/metrics"); r.status != 404 || r.echo.Instance != "" {
			t.Fatalf("public /metrics: %d from %q, want 404", r.status, r.echo.Instance)
		}
		resp, err := http.Get(f.g.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("/metrics on -metrics-addr: %d %.200s", resp.StatusCode, body)
		}
	})
}

func TestRateLimits(t *testing.T) {
	f := newFixture(t, "-hit-rate=1", "-hit-burst=3", "-tenant-rate=1", "-tenant-burst=2", "-account-rate=1", "-account-burst=2",
		"-trusted-proxies=127.0.0.0/8")
	statuses := func(n int, req func() *http.Request) []int {
		var out []int
		for range n {
			out = append(out, do(t, req()).status)
		}
		return out
	}
	post := func(path string, h ...string) func() *http.Request {
		return func() *http.Request { return f.g.request(t, "POST", path, strings.NewReader("v=1"), h...) }
	}
	tests := []struct {
		name string
		req  func() *http.Request
		n    int
		want string
	}{
		{"per tracking ID", post("/collect?v=2&tid=UA-1&t=pageview"), 5, "[200 200 200 429 429]"},
		{"another tracking ID has its own bucket", post("/collect?tid=UA-2"), 4, "[200 200 200 429]"},
		{"measurement protocol uses tracking_id", post("/mp/collect?tracking_id=UA-3"), 4, "[200 200 200 429]"},
		{"the same ID on /mp/collect", post("/mp/collect?tracking_id=UA-1"), 1, "[429]"},
		{"the same ID from another client: its own bucket (tracking IDs are public)",
			post("/collect?tid=UA-1", "X-Forwarded-For", "203.0.113.7"), 4, "[200 200 200 429]"},
		{"an IPv6 client", post("/collect?tid=UA-1", "X-Forwarded-For", "2001:db8::1"), 3, "[200 200 200]"},
		{"another address of its /64 shares its bucket", post("/collect?tid=UA-1", "X-Forwarded-For", "2001:db8::2"), 1, "[429]"},
		{"another /64 does not", post("/collect?tid=UA-1", "X-Forwarded-For", "2001:db8:0:1::1"), 1, "[200]"},
		{"login from an address of that /64", post("/v1/login", "X-Forwarded-For", "2001:db8::3"), 3, "[200 200 429]"},
		{"login from another address of it", post("/v1/login", "X-Forwarded-For", "2001:db8::4"), 1, "[429]"},
		{"no tracking ID: shared unknown bucket, still forwarded", post("/collect?v=2"), 4, "[200 200 200 429]"},
		{"an absurd tracking ID counts as unknown", post("/collect?tid=" + strings.Repeat("x", 65)), 1, "[429]"},
		{"per tenant", func() *http.Request {
			return f.g.request(t, "GET", "/v1/properties", nil, "Authorization", "Bearer "+f.is.token(t, "t-limited"))
		}, 3, "[200 200 429]"},
		{"another tenant", func() *http.Request {
			return f.g.request(t, "GET", "/v1/reports/behavior/pages", nil, "Authorization", "Bearer "+f.is.token(t, "t-other"))
		}, 2, "[200 200]"},
		{"login per client IP", post("/v1/login"), 3, "[200 200 429]"},
		{"password resets share the bucket", post("/v1/password-reset"), 1, "[429]"},
		{"and their confirmation", post("/v1/password-reset/confirm"), 1, "[429]"},
		{"password reset from another client", post("/v1/password-reset", "X-Forwarded-For", "203.0.113.9"), 3, "[200 200 429]"},
		{"invitation acceptances share the bucket", post("/v1/invitations/accept", "X-Forwarded-For", "203.0.113.9"), 1, "[429]"},
		{"and address claims", post("/v1/signup/claim", "X-Forwarded-For", "203.0.113.9"), 1, "[429]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statuses(tt.n, tt.req); strings.Join(strings.Fields(strings.Trim(strconvInts(got), "[]")), " ") != strings.Trim(tt.want, "[]") {
				t.Fatalf("statuses %v, want %s", got, tt.want)
			}
		})
	}
	r := do(t, post("/collect?tid=UA-1")())
	if r.status != 429 || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") != "1" || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("429 answer: %d %s, Retry-After %q, CORS %q", r.status, r.body, r.header.Get("Retry-After"), r.header.Get("Access-Control-Allow-Origin"))
	}
}

func strconvInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}

func TestBodyLimits(t *testing.T) {
	f := newFixture(t, "-max-hit-body=1000", "-max-body=2000", "-hit-rate=0")
	tok := "Bearer " + f.is.token(t, "t1")
	tests := []struct {
		name       string
		path       string
		size       int
		chunked    bool
		wantStatus int
	}{
		{"hit batch at the limit", "/collect?tid=UA-1", 1000, false, 200},
		{"hit batch over the limit", "/collect?tid=UA-1", 1001, false, 413},
		{"chunked hit batch at the limit", "/collect?tid=UA-1", 1000, true, 200},
		{"chunked hit batch over the limit", "/collect?tid=UA-1", 5000, true, 413},
		{"API body at its own limit", "/v1/properties", 2000, false, 200},
		{"API body over it", "/v1/properties", 2001, false, 413},
		{"chunked API body over it", "/v1/properties", 100000, true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(make([]byte, tt.size))
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			r := do(t, f.g.request(t, "POST", tt.path, body, "Authorization", tok))
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if r.status == 200 && r.echo.BodyBytes != int64(tt.size) {
				t.Fatalf("upstream got %d bytes, want %d", r.echo.BodyBytes, tt.size)
			}
			if r.status == 413 && r.errorCode() != "body_too_large" {
				t.Fatalf("413 body %s", r.body)
			}
		})
	}
}

// TestIncompleteBody: a client that sends less than its Content-Length
// (or a chunked body without its last chunk) and half-closes its side is
// still reading; it was answered "HTTP/1.1 499 status code 499" with no
// body, nginx's log-only status for a client gone, since net/http cancels
// the request's context on the read error. It gets 400 incomplete_body.
func TestIncompleteBody(t *testing.T) {
	f := newFixture(t, "-hit-rate=0")
	tok := "Bearer " + f.is.token(t, "t1")
	host := strings.TrimPrefix(f.g.url, "http://")
	for _, tt := range []struct {
		name, path, headers, body, want string
	}{
		{"hit batch", "/collect?tid=UA-1", "Content-Length: 200\r\n", `{"hits":[{"t":"pageview"`, "ended after 24 of the 200 bytes"},
		{"API body", "/v1/properties", "Authorization: " + tok + "\r\nContent-Length: 100\r\n", `{"name":`, "ended after 8 of the 100 bytes"},
		{"chunked API body", "/v1/properties", "Authorization: " + tok + "\r\nTransfer-Encoding: chunked\r\n", "8\r\n{\"name\":\r\n", "before its last chunk"},
	} {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n%s", tt.path, host, tt.headers, tt.body)
		_ = conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: no answer: %v", tt.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"incomplete_body"`) || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %d %s, want 400 incomplete_body saying %q", tt.name, resp.StatusCode, body, tt.want)
		}
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, "-hit-rate=0")
	before := f.collection.hits.Load()
	pre := do(t, f.g.request(t, "OPTIONS", "/collect?tid=UA-1", nil, "Origin", "https://shop.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type"))
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.EqualFold(pre.header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight: %d %v", pre.status, pre.header)
	}
	if f.collection.hits.Load() != before {
		t.Fatal("the preflight reached collection")
	}
	r := do(t, f.g.request(t, "POST", "/collect?tid=UA-1", strings.NewReader("x"), "Origin", "https://shop.example"))
	if got := r.header.Values("Access-Control-Allow-Origin"); r.status != 200 || len(got) != 1 || got[0] != "*" {
		t.Fatalf("hit answer: %d, Access-Control-Allow-Origin %q (want one value, *)", r.status, got)
	}
	if got := r.header.Get("Access-Control-Expose-Headers"); got != "X-Collect-Error" {
		t.Fatalf("hit answer: Access-Control-Expose-Headers %q, want the upstream's X-Collect-Error", got)
	}
	if got := r.header.Get("Access-Control-Allow-Methods"); got != "" {
		t.Fatalf("hit answer: the upstream's Access-Control-Allow-Methods %q came through", got)
	}
	api := do(t, f.g.request(t, "OPTIONS", "/v1/properties", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET"))
	if api.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("the API allows cross-origin calls: %v", api.header)
	}
}

// TestRequestIDOnce checks that an answer carries one X-Request-Id: the
// gateway's, which the upstream was given and echoes (the header came
// twice when the gateway copied the upstream's beside its own).
func TestRequestIDOnce(t *testing.T) {
	f := newFixture(t)
	tok := "Bearer " + f.is.token(t, "t1")
	for _, tt := range []struct{ path, id string }{
		{"/collect?tid=UA-1", ""},
		{"/v1/properties", ""},
		{"/v1/reports/behavior/pages", "client-chosen-id"},
	} {
		h := []string{"Authorization", tok}
		if tt.id != "" {
			h = append(h, "X-Request-Id", tt.id)
		}
		r := f.g.get(t, tt.path, h...)
		got := r.header.Values("X-Request-Id")
		if r.status != http.StatusOK || len(got) != 1 || got[0] == "" || tt.id != "" && got[0] != tt.id {
			t.Errorf("GET %s: %d, X-Request-Id %q; want one value%s", tt.path, r.status, got, map[bool]string{true: " " + tt.id}[tt.id != ""])
		}
	}
}

// TestForwardedFor checks the client address the upstream is told: in
// X-Real-Ip, and as the one address of X-Forwarded-For, so that
// collection, which trusts the gateway but not necessarily the proxies in
// front of it (deploy/ gives it the internal networks, the gateway the load
// balancer's), reads the client the gateway worked out and nothing a client
// wrote. (Appended to the incoming header, it let collection take a cloud
// load balancer's address for every visitor's: the hop right of the client.)
func TestForwardedFor(t *testing.T) {
	collectionTrusts := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // the gateway alone
	tests := []struct {
		name       string
		trusted    string
		xff        string
		wantClient string
	}{
		{"untrusted peer: spoofed header replaced", "", "6.6.6.6", "127.0.0.1"},
		{"untrusted peer, no header", "", "", "127.0.0.1"},
		{"trusted load balancer", "127.0.0.0/8", "203.0.113.7", "203.0.113.7"},
		{"trusted: the client is the rightmost untrusted hop", "127.0.0.0/8,10.0.0.0/8", "6.6.6.6, 203.0.113.7, 10.1.2.3", "203.0.113.7"},
		// A cloud load balancer of public addresses, as GCP's writes it
		// (the client, then its own address), trusted by the gateway only.
		{"load balancer collection does not trust", "127.0.0.0/8,198.51.100.0/24", "6.6.6.6, 203.0.113.7, 198.51.100.9", "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newUpstream(t, "collection")
			g := startGateway(t, "-consul-addr=", staticUpstreams(c), "-trusted-proxies="+tt.trusted)
			var h []string
			if tt.xff != "" {
				h = []string{"X-Forwarded-For", tt.xff}
			}
			r := g.get(t, "/collect?tid=UA-1", h...)
			if r.echo.XFF != tt.wantClient || r.echo.RealIP != tt.wantClient {
				t.Errorf("upstream saw X-Forwarded-For %q, X-Real-Ip %q; want %q in both", r.echo.XFF, r.echo.RealIP, tt.wantClient)
			}
			if got := clientaddr.Client(netip.MustParseAddr("127.0.0.1"), []string{r.echo.XFF}, collectionTrusts); got.String() != tt.wantClient {
				t.Errorf("collection reads the client %s, the gateway %s", got, tt.wantClient)
			}
		})
	}
}

// The query reaches the upstream as sent, a ';' and a bad escape too (an
// old Java site's ;jsessionid= in dl, a report filter's AND written
// unencoded): net/http's reverse proxy drops such pairs, and the upstream
// must see them to take them (collection) or refuse them clearly (reports).
func TestQueryPassesUnchanged(t *testing.T) {
	c := newUpstream(t, "collection")
	g := startGateway(t, "-consul-addr=", staticUpstreams(c))
	const q = "tid=UA-1&dl=https://shop.example/p;jsessionid=1&filter=country==DE;medium==cpc&bad=%zz"
	if r := g.get(t, "/collect?"+q); r.echo.RawQuery != q {
		t.Fatalf("upstream saw the query %q, want %q", r.echo.RawQuery, q)
	}
}

func TestTimeout(t *testing.T) {
	f := newFixture(t, "-report-timeout=300ms")
	tok := "Bearer " + f.is.token(t, "t1")
	if r := f.g.get(t, "/v1/reports/acquisition/channels?sleep=10ms", "Authorization", tok); r.status != 200 {
		t.Fatalf("fast report: %d", r.status)
	}
	start := time.Now()
	r := f.g.get(t, "/v1/reports/acquisition/channels?sleep=5s", "Authorization", tok)
	if r.status != http.StatusGatewayTimeout || r.errorCode() != "upstream_timeout" {
		t.Fatalf("slow report: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the 504 took %v with a 300ms timeout", d)
	}
}

// TestRetryAndBreaker uses static upstreams, one of them dead.
func TestRetryAndBreaker(t *testing.T) {
	live := newUpstream(t, "live")
	dead := consultest.RefusedAddr(t) // connecting is refused
	g := startGateway(t, "-consul-addr=", "-static-upstreams=collection="+dead+",collection="+live.addr(),
		"-hit-rate=0", "-breaker-failures=3", "-breaker-open-timeout=1m")

	// A hit whose connection to the dead instance is refused reached
	// nothing there: it goes to the live instance, body and all (the
	// gateway streams bodies, so the retry sends the client's stream,
	// unread by the first attempt).
	body := strings.Repeat("v=2&tid=UA-1&en=page_view&", 400)
	for i := range 6 {
		r := do(t, g.request(t, http.MethodPost, "/collect?tid=UA-1", strings.NewReader(body)))
		if r.status != http.StatusOK || r.echo.Instance != "live" || r.echo.BodyBytes != int64(len(body)) {
			t.Fatalf("POST %d: %d from %q with %d body bytes, want 200 from live with %d", i, r.status, r.echo.Instance, r.echo.BodyBytes, len(body))
		}
	}
	// The refused attempts opened the dead instance's breaker by now.
	if got := served(t, g, http.MethodGet, 6); got["live"] != 6 {
		t.Fatalf("GETs served %v, want all 6 by the live instance", got)
	}

	t.Run("all dead: 502 until the breakers open, then 503", func(t *testing.T) {
		g := startGateway(t, "-consul-addr=", "-static-upstreams=collection="+consultest.RefusedAddr(t)+",collection="+consultest.RefusedAddr(t),
			"-hit-rate=0", "-breaker-failures=2", "-breaker-open-timeout=1m")
		// A refused POST is tried on both instances, so two of them give
		// each instance its two consecutive failures.
		var got []string
		for range 3 {
			r := do(t, g.request(t, "POST", "/collect?tid=UA-1", strings.NewReader("v=1")))
			got = append(got, strconv.Itoa(r.status)+" "+r.errorCode()+" "+r.header.Get("Retry-After"))
		}
		want := "502 upstream_error ,502 upstream_error ,503 upstream_unavailable 60"
		if strings.Join(got, ",") != want {
			t.Fatalf("answers %q\nwant %q", strings.Join(got, ","), want)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error; "" for valid
	}{
		{"defaults with a secret", []string{"-identity-secret=0123456789abcdef"}, ""},
		{"no secret", nil, "-identity-secret"},
		{"short secret", []string{"-identity-secret=short"}, "at least 16"},
		{"unknown static upstream", []string{"-identity-secret=0123456789abcdef", "-static-upstreams=reports=1.2.3.4:80"}, "unknown upstream"},
		{"static upstream without port", []string{"-identity-secret=0123456789abcdef", "-static-upstreams=config=1.2.3.4"}, "not host:port"},
		{"bad CIDR", []string{"-identity-secret=0123456789abcdef", "-trusted-proxies=10.0.0.0/33"}, "not a CIDR"},
		{"external IdP without issuer", []string{"-identity-secret=0123456789abcdef", "-external-jwks-url=https://idp.example/jwks"}, "-external-issuer"},
		{"external IdP without its tenants", []string{"-identity-secret=0123456789abcdef", "-external-jwks-url=https://idp.example/jwks", "-external-issuer=https://idp.example"}, "-external-tenants"},
		{"JWKS URL not http", []string{"-identity-secret=0123456789abcdef", "-jwks-url=file:///etc/jwks"}, "not an http(s) URL"},
		{"negative rate", []string{"-identity-secret=0123456789abcdef", "-hit-rate=-1"}, "-hit-rate"},
		{"zero timeout", []string{"-identity-secret=0123456789abcdef", "-report-timeout=0s"}, "-report-timeout"},
		{"huge leeway", []string{"-identity-secret=0123456789abcdef", "-token-leeway=1h"}, "-token-leeway"},
		// The default was every service's 15 s, under the default
		// -report-timeout's 30 s: a report in flight at a stop was cut off.
		{"shutdown shorter than a route's time limit", []string{"-identity-secret=0123456789abcdef", "-shutdown-timeout=20s"}, "-shutdown-timeout (20s) must be at least"},
		{"shutdown as long as the longest route's", []string{"-identity-secret=0123456789abcdef", "-shutdown-timeout=20s", "-report-timeout=20s"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg gateway.Config
			fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestPixelRefusals: the pixel (GET and HEAD /collect) answers an image
// whoever refuses it, so the gateway's own refusals are collection's 1x1
// GIF with their status, Retry-After where there is one, and their code in
// X-Collect-Error, as collection's are; every other request of the route
// (a POST, the debug endpoint) still gets the JSON error.
func TestPixelRefusals(t *testing.T) {
	type want struct {
		status     int
		code       string
		retryAfter string
	}
	check := func(t *testing.T, r response, method string, w want) {
		t.Helper()
		body := pixel.GIF
		if method == http.MethodHead {
			body = ""
		}
		if r.status != w.status || r.header.Get("Content-Type") != "image/gif" || string(r.body) != body ||
			r.header.Get("X-Collect-Error") != w.code || r.header.Get("Retry-After") != w.retryAfter ||
			r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Expose-Headers") != "X-Collect-Error" {
			t.Fatalf("%s: %d %v %q\nwant %d, the GIF, X-Collect-Error %q, Retry-After %q", method, r.status, r.header, r.body, w.status, w.code, w.retryAfter)
		}
	}
	checkJSON := func(t *testing.T, r response, w want) {
		t.Helper()
		if r.status != w.status || r.errorCode() != w.code || r.header.Get("Content-Type") == "image/gif" {
			t.Fatalf("%d %q %s, want %d JSON %s", r.status, r.header.Get("Content-Type"), r.body, w.status, w.code)
		}
	}

	t.Run("rate limited", func(t *testing.T) {
		f := newFixture(t, "-hit-rate=1", "-hit-burst=1")
		const q = "/collect?tid=AT-23456789AB&t=pageview"
		if r := f.g.get(t, q); r.status != 200 || r.echo.Instance != "collection" {
			t.Fatalf("first hit: %d %s", r.status, r.body)
		}
		w := want{http.StatusTooManyRequests, "rate_limited", "1"}
		check(t, f.g.get(t, q), http.MethodGet, w)
		check(t, do(t, f.g.request(t, http.MethodHead, q, nil)), http.MethodHead, w)
		checkJSON(t, do(t, f.g.request(t, http.MethodPost, q, strings.NewReader(`{"hits":[]}`))), w)
		checkJSON(t, f.g.get(t, "/debug"+q), w)
	})

	t.Run("no instance: 502 while the breaker counts, then 503", func(t *testing.T) {
		g := startGateway(t, "-consul-addr=", "-static-upstreams=collection="+consultest.RefusedAddr(t), "-hit-rate=0",
			"-breaker-failures=1", "-breaker-open-timeout=1m")
		const q = "/collect?tid=AT-23456789AB"
		check(t, g.get(t, q), http.MethodGet, want{http.StatusBadGateway, "upstream_error", ""})
		check(t, g.get(t, q), http.MethodGet, want{http.StatusServiceUnavailable, "upstream_unavailable", "60"})
		check(t, do(t, g.request(t, http.MethodHead, q, nil)), http.MethodHead, want{http.StatusServiceUnavailable, "upstream_unavailable", "60"})
		checkJSON(t, g.get(t, "/debug"+q), want{http.StatusServiceUnavailable, "upstream_unavailable", ""})
	})

	t.Run("time-out", func(t *testing.T) {
		f := newFixture(t, "-collect-timeout=300ms", "-hit-rate=0")
		check(t, f.g.get(t, "/collect?tid=AT-23456789AB&sleep=5s"), http.MethodGet, want{http.StatusGatewayTimeout, "upstream_timeout", ""})
	})
}

// TestUpstreamDiesMidResponse: an instance that sends a response's headers
// and dies before its body is complete fails the request (the client's
// connection is cut, never a shortened body presented as whole), and such
// failures count against its breaker, as a reset before the headers does.
// They counted as successes, the outcome being taken when the headers came:
// the breaker of an instance failing every response after its headers never
// opened.
func TestUpstreamDiesMidResponse(t *testing.T) {
	is := newIssuer(t)
	config := newUpstream(t, "config")
	config.setJWKS(is.jwks())
	var hits atomic.Int64
	dying := &upstream{name: "acquisition", srv: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"rows":[`)) // chunked: no length says the body is short
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))}
	t.Cleanup(dying.srv.Close)
	g := startGateway(t, "-consul-addr=", staticUpstreams(config, dying), "-breaker-failures=3", "-breaker-open-timeout=1m")
	tok := "Bearer " + is.token(t, "t1")
	eventually.NoError(t, 10*time.Second, "keys fetched", func() error {
		resp, err := client.Do(g.request(t, http.MethodGet, "/v1/reports/acquisition/channel", nil, "Authorization", tok))
		if err != nil {
			return err
		}
		// Read to the cut, as the loop below does: a client hanging up
		// first would make this response its fault, not the instance's
		// (Excluded, not a failure), and the breaker one failure short.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusServiceUnavailable {
			return errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	deadline := time.Now().Add(30 * time.Second)
	for hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d responses reached the dying instance in 30s, want 3", hits.Load())
		}
		resp, err := client.Do(g.request(t, http.MethodGet, "/v1/reports/acquisition/channel", nil, "Authorization", tok))
		if err != nil {
			continue // the gateway cut the connection
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("a body cut short by the upstream read as whole: %d %q", resp.StatusCode, body)
		}
	}
	before := hits.Load()
	resp, err := client.Do(g.request(t, http.MethodGet, "/v1/reports/acquisition/channel", nil, "Authorization", tok))
	if err != nil {
		t.Fatalf("after %d responses cut short: %v; want 503 upstream_unavailable (the breaker open)", before, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || hits.Load() != before {
		t.Errorf("after %d responses cut short: %d %s, the instance asked again; want 503 upstream_unavailable (the breaker open)", before, resp.StatusCode, body)
	}
}
