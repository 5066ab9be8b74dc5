package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies mws to h so that the first one listed runs first.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// HeaderRequestID carries the request ID between services and back to the
// client.
const HeaderRequestID = "X-Request-Id"

type requestIDKey struct{}

// RequestID returns the ID of the request carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID keeps a well-formed incoming X-Request-Id (so one ID follows a
// request through the gateway and upstreams) or makes a new one, puts it in
// the context and echoes it in the response.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
			r.Header.Set(HeaderRequestID, id)
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// AccessLog logs one line per request at info level; at debug level for
// health and metrics probes, and for the requests to quiet paths or routes
// that succeed: a service's high-volume paths, such as the hit endpoints,
// or the internal reads other services make by machine (config-svc's
// lookups and change feed), whose every request at info would make the
// logs grow with the traffic or the fleet (the metrics count every
// request; a failed one is still logged at info). An entry of quiet is an
// exact path ("/collect") or a route's ServeMux pattern as registered
// ("GET /internal/v1/properties/{property_id}"), matched against the
// pattern the mux chose for the request. It never logs headers, so tokens
// and secrets stay out of the logs.
func AccessLog(log *slog.Logger, quiet ...string) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := wrapStatus(w)
			next.ServeHTTP(sw, r)
			level := slog.LevelInfo
			switch p := r.URL.Path; {
			case p == "/healthz" || p == "/readyz" || p == "/metrics":
				level = slog.LevelDebug
			case sw.code < http.StatusBadRequest && (slices.Contains(quiet, p) || r.Pattern != "" && slices.Contains(quiet, r.Pattern)):
				level = slog.LevelDebug
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			log.LogAttrs(r.Context(), level, "http request",
				slog.String("method", Method(r.Method)),
				slog.String("path", LoggedPath(r.URL.Path)),
				slog.Int("status", sw.code),
				slog.Int64("bytes", sw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("request_id", RequestID(r.Context())),
			)
		})
	}
}

// Recover turns a panic in a handler into a 500 response and an error log
// with the stack, instead of a dropped connection.
func Recover(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					panic(v)
				}
				log.Error("panic in handler", slog.Any("panic", v), slog.String("path", LoggedPath(r.URL.Path)),
					slog.String("request_id", RequestID(r.Context())), slog.String("stack", string(debug.Stack())))
				WriteError(w, http.StatusInternalServerError, "internal", "internal error; the request ID identifies it in our logs")
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// MaxBytes limits request bodies to n bytes. A handler that reads past the
// limit gets an error satisfying IsTooLarge and should answer 413.
func MaxBytes(n int64) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large",
					"the request body is "+strconv.FormatInt(r.ContentLength, 10)+" bytes; the limit is "+bytesOf(n))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

// IsTooLarge reports whether err came from reading past a MaxBytes limit.
func IsTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// WriteTooLarge answers 413 body_too_large for err, which IsTooLarge: a
// body sent without Content-Length (chunked), which MaxBytes cannot refuse
// before it is read. The message says the limit, as MaxBytes's does
// (http.MaxBytesError's own text does not).
func WriteTooLarge(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	msg := "the request body is too large"
	if errors.As(err, &mbe) {
		msg = "the request body is larger than the limit of " + bytesOf(mbe.Limit)
	}
	WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", msg)
}

// bytesOf says n bytes for people: 1048576 bytes (1 MiB).
func bytesOf(n int64) string {
	s := strconv.FormatInt(n, 10) + " bytes"
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		s += " (" + strconv.FormatInt(n>>20, 10) + " MiB)"
	case n >= 1<<10 && n%(1<<10) == 0:
		s += " (" + strconv.FormatInt(n>>10, 10) + " KiB)"
	}
	return s
}

// Metrics counts requests and observes latencies by route. The route label
// comes from the request's matched ServeMux pattern, so it stays bounded.
func Metrics(reg prometheus.Registerer) Middleware {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "HTTP requests served, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds",
		Help: "Time to serve an HTTP request, by route pattern.",
		// Up to 30 s, the gateway's time limit of a report: a p99 past the
		// largest bound reads as that bound, so alerts compare below it.
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	reg.MustRegister(requests, duration)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := wrapStatus(w)
			next.ServeHTTP(sw, r)
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			requests.WithLabelValues(route, Method(r.Method), strconv.Itoa(sw.code)).Inc()
			duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		})
	}
}

// Method is a request's method as logs and metrics name it: one of the
// methods HTTP defines, or "other". net/http accepts any token as a method
// (up to its 1 MiB header limit), and a client's own token as a label
// would add a series that is never dropped for every new one.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// maxLoggedPath bounds the path a log line carries: the client chooses
// it, up to net/http's 1 MiB header limit.
const maxLoggedPath = 512

// LoggedPath is a request's path as a log line carries it: cut to 512
// bytes (at a UTF-8 boundary), marked with "…" when cut.
func LoggedPath(path string) string {
	n := maxLoggedPath
	if len(path) <= n {
		return path
	}
	for n > 0 && !utf8.RuneStart(path[n]) {
		n--
	}
	return path[:n] + "…"
}

// statusWriter records the status code and body size written.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func wrapStatus(w http.ResponseWriter) *statusWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw
	}
	return &statusWriter{ResponseWriter: w, code: http.StatusOK}
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
