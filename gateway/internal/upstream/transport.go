package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Transport is an http.RoundTripper for requests whose URL host is the name
// of an upstream service: each attempt goes to an instance picked from that
// service's pool, and its outcome is reported to the instance's breaker.
//
// A GET, HEAD or OPTIONS request without a body whose attempt fails at the
// connection level (refused, reset, no response) is tried once more on
// another instance; a breaker that is open makes Pick skip its instance
// before any attempt. Nothing else is retried: a request with a body may
// have had effects, and a timeout has used up the request's time.
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
	attempts := 1
	if retryable(req) {
		attempts = 2
	}
	var lastErr error
	exclude := ""
	for a := range attempts {
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
			t.report(pool, done, o)
			return resp, nil
		}
		if t.ClientFault != nil && t.ClientFault(req, err) {
			t.report(pool, done, Excluded)
			return nil, err
		}
		t.report(pool, done, Failure)
		if errors.Is(err, context.DeadlineExceeded) || req.Context().Err() != nil {
			return nil, err
		}
		lastErr = fmt.Errorf("%s instance %s: %w", pool.name, inst.Addr, err)
		exclude = inst.ID
		if a+1 < attempts {
			t.Metrics.retries.WithLabelValues(pool.name).Inc()
		}
	}
	return nil, lastErr
}

func (t *Transport) report(p *Pool, done func(Outcome), o Outcome) {
	done(o)
	t.Metrics.requests.WithLabelValues(p.name, [...]string{"success", "failure", "excluded"}[o]).Inc()
}

func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}
