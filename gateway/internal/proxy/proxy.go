// Package proxy is the gateway's request pipeline: the route table, and for
// each route the checks made before a request is forwarded (CORS, bearer
// token, client-supplied identity headers, rate limits, body size) and the
// forwarding itself (identity signed for upstreams, X-Forwarded-For, a time
// limit, errors mapped to JSON answers, or to the pixel image on the
// pixel's path).
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/gateway/internal/ratelimit"
	"github.com/acme/analytics/gateway/internal/upstream"
	"github.com/acme/analytics/pkg/authtoken"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/pixel"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/prometheus/client_golang/prometheus"
)

// Authenticator verifies the Authorization header of a request.
type Authenticator interface {
	// Authenticate returns the identity vouched for by a bearer token. Its
	// error is one that authtoken.Reason summarises and never contains the
	// token.
	Authenticate(ctx context.Context, token string) (tenant.Identity, error)
}

// HeaderRealIP carries the client address the gateway worked out (see
// -trusted-proxies) to upstreams, beside X-Forwarded-For.
const HeaderRealIP = "X-Real-Ip"

// Handler serves the routes. Build it with New.
type Handler struct {
	cfg        Config
	routes     []Route
	auth       Authenticator
	secret     []byte
	retryAfter time.Duration
	log        *slog.Logger
	now        func() time.Time
	proxy      *httputil.ReverseProxy
	limiters   map[Limit]*ratelimit.Limiter
	badTokens  *ratelimit.Limiter // refused tokens per client network
	rejected   *prometheus.CounterVec
}

// Options are the collaborators of a Handler.
type Options struct {
	Config Config // validated
	Auth   Authenticator
	// Transport sends a request whose URL host is an upstream name to one
	// of its instances (an *upstream.Transport).
	Transport http.RoundTripper
	// IdentitySecret signs the identity headers (tenant.Sign).
	IdentitySecret []byte
	// RetryAfter is advertised with a 503 when no instance is available.
	RetryAfter time.Duration
	Log        *slog.Logger
	Registry   prometheus.Registerer
}

// New returns the handler of the gateway's routes.
func New(o Options) *Handler {
	c := o.Config
	h := &Handler{
		cfg:        c,
		routes:     Routes(c),
		auth:       o.Auth,
		secret:     o.IdentitySecret,
		retryAfter: o.RetryAfter,
		log:        o.Log,
		now:        time.Now,
		limiters: map[Limit]*ratelimit.Limiter{
			PerTrackingID: ratelimit.New(c.HitRate, c.HitBurst, c.RateLimitKeys),
			PerTenant:     ratelimit.New(c.TenantRate, c.TenantBurst, c.RateLimitKeys),
			PerClientIP:   ratelimit.New(c.AccountRate, c.AccountBurst, c.RateLimitKeys),
		},
		badTokens: ratelimit.New(c.BadTokenRate, c.BadTokenBurst, c.RateLimitKeys),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rejected_requests_total",
			Help: "Requests the gateway answered itself with an error, by route and reason.",
		}, []string{"route", "reason"}),
	}
	o.Registry.MustRegister(h.rejected)
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	return h
}

// Register mounts every route on mux, and a JSON 404 for everything else.
func (h *Handler) Register(mux *http.ServeMux) {
	for i := range h.routes {
		rt := &h.routes[i]
		for _, p := range rt.Patterns {
			mux.Handle(p, h.serve(rt))
		}
	}
	// Service-to-service endpoints are reached through Consul directly,
	// never through the public entry point.
	mux.HandleFunc("/internal/", h.notFound)
	mux.HandleFunc("/", h.notFound)
}

// Run sweeps idle rate-limit buckets until ctx is done.
func (h *Handler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range h.limiters {
		wg.Go(func() { _ = l.Run(ctx, 30*time.Second) })
	}
	wg.Go(func() { _ = h.badTokens.Run(ctx, 30*time.Second) })
	wg.Wait()
	return nil
}

// ClientFault reports whether err, met while forwarding req, was the
// client's doing, for upstream.Transport.ClientFault: it went away, sent
// too large a body, or one cut short, sent its body too slowly for the
// route's time limit, or read the answer so slowly that the gateway spent
// half the limit waiting for it. Counted against the instance, a slow
// client (anyone's: a hit needs no account) opened the breaker of a
// healthy instance.
func ClientFault(req *http.Request, _ error) bool {
	st := stateFrom(req.Context())
	return st != nil && (st.bodyTooLarge.Load() || st.bodyCutShort.Load() || st.bodySlow.Load() || st.clientCtx.Err() != nil ||
		time.Duration(st.writeBlocked.Load()) >= st.route.Timeout/2)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.reject(w, r, nil, http.StatusNotFound, "no_route", "no such endpoint; the API is under /v1/ and hits go to /collect")
}

type stateKey struct{}

// reqState is what the checks learnt about a request, for the forwarding.
type reqState struct {
	route        *Route
	identity     tenant.Identity // set on Auth routes
	clientCtx    context.Context // before the route's time limit
	clientIP     string
	proto        string
	bodyTooLarge atomic.Bool  // set from the transport's body-writing goroutine
	bodyCutShort atomic.Bool  // the client's body ended before its Content-Length
	bodySlow     atomic.Bool  // the client's body had not come when the route's time was up
	bodyRead     atomic.Int64 // how much of it came, when it was cut short or slow
	writeBlocked atomic.Int64 // time.Duration spent writing the answer to the client
}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// serve is the pipeline of one route.
func (h *Handler) serve(rt *Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.CORS {
			// Set before any check, so that browsers can read our errors too.
			w.Header().Set("Access-Control-Allow-Origin", "*")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
				w.Header().Set("Access-Control-Max-Age", "86400")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
			h.reject(w, r, rt, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not supported")
			return
		}
		st := &reqState{route: rt, clientCtx: r.Context()}
		st.clientIP, st.proto = h.forwarded(r)

		if rt.Auth {
			if n := len(r.Header.Values("Authorization")); n > 1 {
				// Which of them was meant cannot be known, and a proxy in
				// front may have checked another than the first, which
				// Header.Get would take (RFC 6750: invalid_request, 400).
				h.refuseRepeatedAuthorization(w, r, rt, st, n)
				return
			}
			tok, ok := bearerToken(r.Header.Get("Authorization"))
			if !ok {
				h.refuseToken(w, r, rt, st, nil)
				return
			}
			// Checking a signature is most of the CPU an authenticated
			// request costs the gateway, and a refused token is limited by
			// nothing else (the tenant's bucket needs a verified one): a
			// network that sent too many refused tokens waits before any
			// more of its tokens are checked.
			network := clientNetwork(st.clientIP)
			if spent, wait := h.badTokens.Spent(network); spent {
				w.Header().Set("Retry-After", seconds(wait))
				h.reject(w, r, rt, http.StatusTooManyRequests, "too_many_bad_tokens",
					"too many refused access tokens from your network; retry after "+seconds(wait)+"s with a valid token")
				return
			}
			id, err := h.auth.Authenticate(r.Context(), tok)
			if err != nil {
				if authtoken.Reason(err) != "keys_unavailable" {
					h.badTokens.Allow(network)
				}
				h.refuseToken(w, r, rt, st, err)
				return
			}
			// Identity comes only from the token. A client that sends the
			// gateway's own headers is trying to be someone else.
			if name := identityHeader(r.Header); name != "" {
				h.log.LogAttrs(r.Context(), slog.LevelWarn, "client-supplied identity header refused",
					slog.String("header", name), slog.String("route", rt.Name), slog.String("tenant", id.TenantID),
					slog.String("user", id.UserID), slog.String("client_network", loggedNetwork(st.clientIP)),
					slog.String("request_id", httpserver.RequestID(r.Context())))
				h.reject(w, r, rt, http.StatusForbidden, "identity_header_forbidden",
					name+" is set by the gateway from your token; remove it from the request")
				return
			}
			st.identity = id
		}

		if lim := h.limiters[rt.Limit]; lim != nil && lim.Enabled() {
			if ok, wait := lim.Allow(h.limitKey(rt, st, r)); !ok {
				w.Header().Set("Retry-After", seconds(wait))
				h.reject(w, r, rt, http.StatusTooManyRequests, "rate_limited",
					"too many requests; retry after "+seconds(wait)+"s")
				return
			}
		}

		if r.ContentLength > rt.MaxBody {
			h.tooLarge(w, r, rt)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), rt.Timeout)
		defer cancel()
		if r.Body != nil && r.Body != http.NoBody {
			// The route's time limit covers reading the client's body
			// too: without a deadline on the connection, a client that
			// stopped sending mid-body held the request until the
			// server's ReadTimeout (30 s), the transport waiting for its
			// body. limitedBody lifts it once the body is read: the
			// server's read after the body, which tells a client gone,
			// would take it for one.
			// The body's deadline comes a tenth of the time (at most a
			// second) before the route's: at the same instant, the
			// request's context could end first and a slow client's
			// request read as the upstream's time-out (504, counted
			// against the instance), where a stalled read must end it.
			ctl := http.NewResponseController(w)
			deadline, _ := ctx.Deadline()
			_ = ctl.SetReadDeadline(deadline.Add(-min(rt.Timeout/10, time.Second)))
			r.Body = &limitedBody{rc: r.Body, remaining: rt.MaxBody, st: st, ctl: ctl}
		}
		h.proxy.ServeHTTP(&clientWriter{ResponseWriter: w, st: st}, r.WithContext(context.WithValue(ctx, stateKey{}, st)))
	})
}

// maxKeyLen bounds rate-limit keys taken from the request: a longer
// tracking ID is not a real one and shares the bucket of requests without.
const maxKeyLen = 64

func (h *Handler) limitKey(rt *Route, st *reqState, r *http.Request) string {
	switch rt.Limit {
	case PerTrackingID:
		// Tracking IDs are public (every page carries its own), so a
		// bucket per tracking ID alone would let anyone spend a
		// merchant's: each client network has its own per tracking ID.
		tid := hit.QueryTrackingID(r.URL.RawQuery, rt.TrackingIDParam)
		if len(tid) > maxKeyLen {
			tid = ""
		}
		return tid + " " + clientNetwork(st.clientIP)
	case PerTenant:
		return st.identity.TenantID
	default:
		return clientNetwork(st.clientIP)
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value (the scheme is case-insensitive, RFC 6750).
func bearerToken(authorization string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func identityHeader(h http.Header) string {
	for _, k := range tenant.IdentityHeaders {
		if _, ok := h[k]; ok {
			return k
		}
	}
	return ""
}

// refuseToken answers a request whose token is missing (err nil) or was
// refused.
func (h *Handler) refuseToken(w http.ResponseWriter, r *http.Request, rt *Route, st *reqState, err error) {
	reason := "missing_token"
	if err != nil {
		reason = authtoken.Reason(err)
	}
	level := slog.LevelWarn
	if reason == "missing_token" {
		level = slog.LevelInfo
	}
	// The reason only: the token, even an invalid one, is a credential.
	h.log.LogAttrs(r.Context(), level, "bearer token refused", slog.String("reason", reason),
		slog.String("route", rt.Name), slog.String("path", httpserver.LoggedPath(r.URL.Path)), slog.String("client_network", loggedNetwork(st.clientIP)),
		slog.String("request_id", httpserver.RequestID(r.Context())))
	if reason == "keys_unavailable" {
		w.Header().Set("Retry-After", seconds(h.retryAfter))
		h.reject(w, r, rt, http.StatusServiceUnavailable, "auth_unavailable",
			"tokens cannot be checked right now; retry shortly")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="acme-analytics", error="invalid_token", error_description="`+reason+`"`)
	if reason == "missing_token" {
		h.reject(w, r, rt, http.StatusUnauthorized, "missing_token",
			"this endpoint needs an access token: send Authorization: Bearer <token> (sign in at /v1/login to get one)")
		return
	}
	if reason == "expired" {
		// The usual case, and one a refresh token mends without the
		// password.
		h.reject(w, r, rt, http.StatusUnauthorized, "invalid_token",
			"the access token has expired: get a new one with POST /v1/refresh and your refresh token; if that has expired too, sign in again with POST /v1/login (a token of your own identity provider is renewed there)")
		return
	}
	h.reject(w, r, rt, http.StatusUnauthorized, "invalid_token",
		"the access token was refused ("+reason+"); sign in again to get a new one")
}

// refuseRepeatedAuthorization answers a request that carries the
// Authorization header n (more than one) times.
func (h *Handler) refuseRepeatedAuthorization(w http.ResponseWriter, r *http.Request, rt *Route, st *reqState, n int) {
	const reason = "repeated_authorization"
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "bearer token refused", slog.String("reason", reason),
		slog.String("route", rt.Name), slog.String("path", httpserver.LoggedPath(r.URL.Path)), slog.String("client_network", loggedNetwork(st.clientIP)),
		slog.String("request_id", httpserver.RequestID(r.Context())))
	w.Header().Set("WWW-Authenticate", `Bearer realm="acme-analytics", error="invalid_request", error_description="`+reason+`"`)
	h.reject(w, r, rt, http.StatusBadRequest, "invalid_request",
		"the Authorization header is given "+strconv.Itoa(n)+" times; send it once: Authorization: Bearer <token>")
}

func (h *Handler) tooLarge(w http.ResponseWriter, r *http.Request, rt *Route) {
	// The rest of the body is not read; the connection closes after this.
	w.Header().Set("Connection", "close")
	h.reject(w, r, rt, http.StatusRequestEntityTooLarge, "body_too_large",
		"the request body is larger than "+strconv.FormatInt(rt.MaxBody, 10)+" bytes")
}

// reject answers a request the gateway refuses itself, on route rt (nil:
// none): in JSON, but with the pixel image (and the code in its header)
// for the pixel, which must answer an image whoever refuses it.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, rt *Route, status int, code, msg string) {
	name := "none"
	if rt != nil {
		name = rt.Name
	}
	h.rejected.WithLabelValues(name, code).Inc()
	if rt != nil && rt.pixel(r) {
		pixel.Write(w, r, status, code)
		return
	}
	httpserver.WriteError(w, status, code, msg)
}

// rewrite turns the client's request into the upstream request.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = st.route.Upstream // the transport picks the instance
	pr.Out.Host = ""
	// The query as sent: the reverse proxy drops the pairs url.ParseQuery
	// cannot read (a ';', a bad escape), which collection takes (a
	// location's ;jsessionid=) and report-svc refuses with a reason; either
	// way the service, not the gateway, decides.
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	hdr := pr.Out.Header
	for _, k := range tenant.IdentityHeaders {
		hdr.Del(k)
	}
	hdr.Del("Forwarded")
	// A token goes no further than the gateway, on a public route too
	// (a signed-in page's calls to sign-up or collection carry it): no
	// upstream reads it, and one that logged or forwarded headers would
	// hold a credential it has no use for. Upstreams get the identity of
	// an authenticated route in signed headers.
	hdr.Del("Authorization")
	if st.route.Auth {
		tenant.Sign(hdr, st.identity, h.secret, h.now())
	}
	hdr.Set("X-Forwarded-For", st.clientIP)
	hdr.Set("X-Forwarded-Proto", st.proto)
	hdr.Set("X-Forwarded-Host", pr.In.Host)
	hdr.Set(HeaderRealIP, st.clientIP)
}

func (h *Handler) modifyResponse(resp *http.Response) error {
	// The upstream echoes the request ID the gateway passed on (every
	// service does, httpserver.WithRequestID), which the gateway's own
	// middleware has already set on the answer: copied as well, the
	// client got the header twice.
	if id := httpserver.RequestID(resp.Request.Context()); id != "" && resp.Header.Get(httpserver.HeaderRequestID) == id {
		resp.Header.Del(httpserver.HeaderRequestID)
	}
	st := stateFrom(resp.Request.Context())
	if st != nil && st.route.CORS {
		// The gateway owns CORS on these routes; two Allow-Origin values
		// would make browsers refuse the response. Which of its headers a
		// page may read is the upstream's to say (collection's pixel
		// exposes X-Collect-Error), and the gateway sets none.
		for k := range resp.Header {
			if len(k) > 15 && k[:15] == "Access-Control-" && k != "Access-Control-Expose-Headers" {
				delete(resp.Header, k)
			}
		}
	}
	return nil
}

// proxyError answers a request that got no response from an upstream.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	rt := st.route
	attrs := []slog.Attr{slog.String("route", rt.Name), slog.String("upstream", rt.Upstream),
		slog.String("request_id", httpserver.RequestID(r.Context())), slog.Any("error", err)}
	switch {
	case st.bodyTooLarge.Load():
		h.tooLarge(w, r, rt)
	case st.bodySlow.Load():
		// The client's body had not all come when the time was up: its
		// doing, not the upstream's (408, and the connection closed: what
		// is left of the body is not read).
		w.Header().Set("Connection", "close")
		h.reject(w, r, rt, http.StatusRequestTimeout, "request_timeout",
			"the request body had not all arrived within "+rt.Timeout.String()+" ("+strconv.FormatInt(st.bodyRead.Load(), 10)+
				" bytes had); send it faster, or in smaller requests")
	case st.bodyCutShort.Load():
		// The body ended before the length the client declared: a
		// client that half-closed its connection after a truncated body
		// still reads the answer (the server cancels the request's
		// context on the read error all the same, so this comes before
		// the client-gone case, which answered it a bare 499).
		msg := "the request body ended after " + strconv.FormatInt(st.bodyRead.Load(), 10) + " of the " +
			strconv.FormatInt(r.ContentLength, 10) + " bytes its Content-Length declared; send the whole body"
		if r.ContentLength < 0 {
			msg = "the chunked request body ended after " + strconv.FormatInt(st.bodyRead.Load(), 10) + " bytes, before its last chunk; send the whole body"
		}
		h.reject(w, r, rt, http.StatusBadRequest, "incomplete_body", msg)
	case st.clientCtx.Err() != nil:
		// The client went away; nobody reads this, but logs and metrics
		// should not call it a success (499, as nginx does).
		w.WriteHeader(499)
	case errors.Is(err, upstream.ErrUnavailable):
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "no upstream instance available", attrs...)
		w.Header().Set("Retry-After", seconds(h.retryAfter))
		h.reject(w, r, rt, http.StatusServiceUnavailable, "upstream_unavailable",
			"the "+rt.Upstream+" service is unavailable; retry after "+seconds(h.retryAfter)+"s")
	case errors.Is(err, context.DeadlineExceeded):
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream timed out", attrs...)
		h.reject(w, r, rt, http.StatusGatewayTimeout, "upstream_timeout",
			"the "+rt.Upstream+" service did not answer within "+rt.Timeout.String())
	default:
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed", attrs...)
		h.reject(w, r, rt, http.StatusBadGateway, "upstream_error",
			"the "+rt.Upstream+" service could not be reached")
	}
}

// seconds formats d for Retry-After: whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// limitedBody passes a request body through up to a limit and records
// going past it, so that the answer is a 413 rather than a 502.
type limitedBody struct {
	rc        io.ReadCloser
	remaining int64
	read      int64
	st        *reqState
	ctl       *http.ResponseController // lifts the connection's read deadline at the body's end
}

var errBodyTooLarge = errors.New("request body too large")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.st.bodyTooLarge.Load() {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.remaining+1 {
		p = p[:b.remaining+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) <= b.remaining {
		b.remaining -= int64(n)
		b.read += int64(n)
		switch {
		case err == io.EOF: //nolint:errorlint // io.Reader returns io.EOF itself
			_ = b.ctl.SetReadDeadline(time.Time{})
		case errors.Is(err, io.ErrUnexpectedEOF):
			// net/http's body reader: the connection ended before the
			// declared Content-Length.
			b.st.bodyRead.Store(b.read)
			b.st.bodyCutShort.Store(true)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's read deadline, the route's time limit
			// (serve), passed with the body still coming.
			b.st.bodyRead.Store(b.read)
			b.st.bodySlow.Store(true)
		}
		return n, err
	}
	n = int(b.remaining)
	b.remaining = 0
	b.st.bodyTooLarge.Store(true)
	return n, errBodyTooLarge
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// clientWriter counts the time spent writing the answer to the client
// (reqState.writeBlocked): a client reading slowly holds the writes, and
// the upstream's body then waits, past the route's time limit, for the
// client's doing.
type clientWriter struct {
	http.ResponseWriter
	st *reqState
}

func (c *clientWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := c.ResponseWriter.Write(p)
	c.st.writeBlocked.Add(int64(time.Since(start)))
	return n, err
}

// Flush flushes the answer as written (the reverse proxy flushes streamed
// answers); Unwrap lets http.ResponseController reach the connection.
func (c *clientWriter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

// Unwrap returns the ResponseWriter wrapped.
func (c *clientWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// bufferPool recycles the buffers that copy response bodies.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
