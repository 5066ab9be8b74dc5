package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper for requests whose URL host is the name
// of an upstream service: each attempt goes to an instance picked from that
// service's pool, and its outcome is reported to the instance's breaker.
//
// A failed attempt is tried once more on another instance when it cannot
// have reached the instance: a request of any method (a POST /collect too)
// whose connection could not be established (refused, no route, the dial
// timed out), before any byte of its body was read. The body is not
// buffered: it is the client's stream, handed to the second attempt
// unread. A GET, HEAD or OPTIONS request without a body is also retried
// after any other connection-level failure (reset, no response). Nothing
// else is retried: a request whose bytes may have reached an instance may
// have had effects there, and a timeout has used up the request's time. A
// breaker that is open makes Pick skip its instance before any attempt.
type Transport struct {
	Pools   map[string]*Pool
	Base    http.RoundTripper
	Metrics *Metrics
	// ClientFault reports whether err, returned for req, is the client's
	// doing (it went away, or its body was too large): such an error is
	// neither counted against the instance nor retried. Optional.
	ClientFault func(req *http.Request, err error) bool
}

// NewBaseTransport returns the HTTP transport to upstream instances:
// plain HTTP/1.1 keep-alive connections, a short dial timeout so that a dead
// instance fails fast, and no transparent compression (bodies pass through
// as they are).
func NewBaseTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	pool, ok := t.Pools[req.URL.Host]
	if !ok {
		return nil, fmt.Errorf("%w: no upstream named %q", ErrUnavailable, req.URL.Host)
	}
	var lastErr error
	exclude := ""
	for a := range maxAttempts {
		inst, done, err := pool.Pick(exclude)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, err
		}
		// A shallow copy aimed at the instance: RoundTrip must not change
		// the request it was given.
		out := req.WithContext(req.Context())
		u := *req.URL
		u.Host = inst.Addr
		out.URL = &u
		var body *unsentBody
		if a+1 < maxAttempts && hasBody(req) {
			// Kept open and watched, so that a second attempt can send it
			// if this one fails before reading it. The last attempt gets
			// the body itself.
			body = &unsentBody{rc: req.Body}
			out.Body = body
		}
		resp, err := t.Base.RoundTrip(out)
		if err == nil {
			o := Success
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
				// A live instance saying a dependency shared by every
				// instance is down (the broker, the store): opening this
				// instance's breaker would not help, and would hide what
				// it can still serve (a report's stale answer).
				o = Excluded
			case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
				o = Failure
			}
			if o == Success && resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil && resp.Body != http.NoBody {
				// The exchange is over when the body is: an instance
				// that dies or stalls after its headers fails then. Not
				// an upgrade's: its body is the connection, which
				// ReverseProxy splices only as an io.ReadWriteCloser,
				// and the switch is the exchange's end.
				resp.Body = &reportedBody{rc: resp.Body, t: t, pool: pool, done: done, req: req}
				return resp, nil
			}
			t.report(pool, done, o)
			return resp, nil
		}
		if t.ClientFault != nil && t.ClientFault(req, err) {
			t.report(pool, done, Excluded)
			return nil, err
		}
		t.report(pool, done, Failure)
		if req.Context().Err() != nil {
			return nil, err
		}
		unsent := dialFailed(err) && (body == nil || !body.read.Load())
		if !unsent && errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		lastErr = fmt.Errorf("%s instance %s: %w", pool.name, inst.Addr, err)
		if !unsent && !idempotentWithoutBody(req) {
			return nil, lastErr
		}
		exclude = inst.ID
		if a+1 < maxAttempts {
			t.Metrics.retries.WithLabelValues(pool.name).Inc()
		}
	}
	return nil, lastErr
}

// maxAttempts is how many instances a request is tried on.
const maxAttempts = 2

func (t *Transport) report(p *Pool, done func(Outcome), o Outcome) {
	done(o)
	t.Metrics.requests.WithLabelValues(p.name, [...]string{"success", "failure", "excluded"}[o]).Inc()
}

// idempotentWithoutBody reports whether req may be sent again after an
// attempt that may have reached the instance.
func idempotentWithoutBody(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return !hasBody(req)
	}
	return false
}

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

// dialFailed reports whether err is a failure to connect: not one byte of
// the request was written.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// unsentBody is a request body lent to an attempt that may be followed by
// another: it records whether the attempt read from it, and it is closed
// only once read (http.Transport closes a body when the dial fails, which
// would leave the next attempt nothing to send).
type unsentBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *unsentBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *unsentBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

// reportedBody is the body of a response whose status was a success: it
// reports the outcome to the instance's breaker when the body ends. Its
// end is a success; a read error a failure (the instance reset the
// connection or stalled past the route's time limit); a close before the
// end (the reader had what it wanted: a JSON decoder) a success. Either is
// neither when the client caused it (it went away).
type reportedBody struct {
	rc io.ReadCloser
	// What reporting needs, rather than closures over it: one allocation
	// per response instead of three, on the path of every pixel hit.
	t        *Transport
	pool     *Pool
	done     func(Outcome)
	req      *http.Request
	reported atomic.Bool
}

func (b *reportedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF: //nolint:errorlint // io.Reader returns io.EOF itself
		b.report(Success)
	case err != nil && b.clientFault(err):
		b.report(Excluded)
	case err != nil:
		b.report(Failure)
	}
	return n, err
}

func (b *reportedBody) Close() error {
	if !b.reported.Load() { // read to its end or failed: reported
		o := Success
		if b.clientFault(nil) {
			o = Excluded
		}
		b.report(o)
	}
	return b.rc.Close()
}

// report reports o unless an outcome was reported already.
func (b *reportedBody) report(o Outcome) {
	if b.reported.CompareAndSwap(false, true) {
		b.t.report(b.pool, b.done, o)
	}
}

func (b *reportedBody) clientFault(err error) bool {
	return b.t.ClientFault != nil && b.t.ClientFault(b.req, err)
}
