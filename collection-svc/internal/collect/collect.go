// Package collect is the HTTP edge of collection: it accepts hits from
// browsers (GET /collect, the pixel; POST /collect, JSON batches) and
// servers (POST /mp/collect, the Measurement API), validates them against
// the property they are for, enriches them (receive time, country, device,
// bot flag, truncated IP, cookieless visitor ID) and answers only once the
// queue has them durably. Rejected hits go to the dead-letter topic with
// their reason. /debug/collect and /debug/mp/collect answer what would
// happen to a hit without storing anything.
package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/geoip"
	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/pixel"
	"github.com/acme/analytics/pkg/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// Property is what collection needs to know about a property.
type Property struct {
	ID         string
	TenantID   string
	TrackingID string
	// Cookieless: the property's browser hits get a derived daily visitor
	// ID, whatever client ID they carry; Measurement API hits keep theirs.
	Cookieless bool
	// Location is the property's time zone: cookieless visitor IDs change
	// at its midnight. nil is UTC.
	Location *time.Location
	// Currency is the ISO 4217 code event and goal values are in; a
	// Measurement API event in another currency is refused. "": not
	// known, not checked.
	Currency string
	// Shards is the property's processing shard count (hit.Key).
	Shards int
	// Rules are the property's current compiled rules (hostnames, IP
	// exclusions, IP anonymization); nil means none, with strict
	// anonymization.
	Rules *rules.Compiled
	// VerifySecret reports whether secret is one of the property's
	// Measurement API secrets; nil accepts none.
	VerifySecret func(secret string) bool
}

// ErrUnknownTrackingID is returned by Properties for a tracking ID that
// belongs to no property.
var ErrUnknownTrackingID = errors.New("unknown tracking ID")

// Properties looks properties up by tracking ID. Any error other than
// ErrUnknownTrackingID means the answer is not known now (the
// configuration service is unreachable and nothing is cached), and the
// client is told to retry.
type Properties interface {
	ByTrackingID(ctx context.Context, trackingID string) (*Property, error)
}

// Queue stores messages durably.
type Queue interface {
	// Send returns nil once the broker has acknowledged every message
	// (holding hits hits between them), or
	// an error when it cannot say so within its time limit; the client is
	// then told to retry (a re-sent hit has the same ID and is counted
	// once).
	Send(ctx context.Context, msgs []*sarama.ProducerMessage, hits int) error
}

// Salts gives the salts of cookieless visitor IDs (configclient.Client).
type Salts interface {
	// CookielessSalt returns the salt of day (YYYY-MM-DD), the same on
	// every instance; an error means it is not to be had now, and the
	// client is told to retry. The salt must not be modified.
	CookielessSalt(ctx context.Context, day string) ([]byte, error)
}

// DeadLetters keeps rejected hits with their reason.
type DeadLetters interface {
	Add(dl hit.DeadLetter)
}

// Config is what a Server is built from.
type Config struct {
	Properties     Properties
	Queue          Queue
	DeadLetters    DeadLetters
	GeoIP          *geoip.DB // nil: no country
	Devices        *device.Parser
	TrustedProxies []netip.Prefix
	// Salts gives the daily salts of cookieless visitor IDs (needed only
	// for cookieless properties).
	Salts    Salts
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Now returns the current time (tests fix it); nil is time.Now.
	Now func() time.Time
}

// Server serves the collection endpoints.
type Server struct {
	cfg      Config
	now      func() time.Time
	accepted *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// New returns a Server for cfg, registering its metrics on cfg.Registry.
func New(cfg Config) *Server {
	s := &Server{
		cfg: cfg,
		now: cfg.Now,
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collection_hits_accepted_total",
			Help: "Hits the broker acknowledged, by origin (browser, mp).",
		}, []string{"origin"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collection_hits_rejected_total",
			Help: "Hits (or whole requests) rejected and sent to the dead-letter topic, by reason and origin.",
		}, []string{"reason", "origin"}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Devices == nil {
		s.cfg.Devices = device.NewParser(10000)
	}
	cfg.Registry.MustRegister(s.accepted, s.rejected)
	return s
}

// HitPaths are the paths hits arrive at, one request per hit or batch:
// the service's access log records their successful requests at debug
// level (service.QuietAccessLog), so that the logs do not grow with the
// traffic; the metrics count every one.
var HitPaths = []string{"/collect", "/mp/collect"}

// Register mounts the endpoints on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /collect", s.pixel)
	mux.HandleFunc("POST /collect", s.batch)
	mux.HandleFunc("OPTIONS /collect", preflight)
	mux.HandleFunc("POST /mp/collect", s.measurement)
	mux.HandleFunc("GET /debug/collect", s.debugPixel)
	mux.HandleFunc("POST /debug/collect", s.debugBatch)
	mux.HandleFunc("OPTIONS /debug/collect", preflight)
	mux.HandleFunc("POST /debug/mp/collect", s.debugMeasurement)
}

// Hits from browsers may come from any site (the merchants' pages).
// Nothing is sent with credentials, so a wildcard origin is enough.
func cors(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
}

func preflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// outcome is what became of one request.
type outcome struct {
	hits     []*hit.Hit     // accepted hits, in order (nil entries for rejected ones)
	rejected []*parse.Error // per item, nil when accepted
	// err rejects the whole request: a *parse.Error, or errUnavailable.
	err      error
	accepted int
	prop     *Property // once looked up
}

// errUnavailable means the hits could not be stored now; retry.
var errUnavailable = errors.New("hits cannot be stored right now; retry later")

// firstRejection returns the first per-hit rejection.
func (o *outcome) firstRejection() *parse.Error {
	for _, e := range o.rejected {
		if e != nil {
			return e
		}
	}
	return nil
}

// input is one request's hits as parsed, with how to describe a rejected
// one in a dead letter.
type input struct {
	trackingID string
	items      []parse.Item
	origin     hit.Origin
	// secret is the Measurement API secret (checked when origin is mp).
	secret string
	// payload returns what the client sent for item i, for a dead letter.
	payload func(i int) string
	// request returns what the client sent, for a dead letter of the
	// whole request; nil: every item's payload, one a line.
	request func() string
	// mem is the request's working memory (getScratch).
	mem *scratch
}

// handle runs one request: look up the property, build every hit, queue
// the accepted ones, dead-letter the rejected ones (unless dryRun).
func (s *Server) handle(ctx context.Context, r *http.Request, in input, received time.Time, dryRun bool) outcome {
	var out outcome
	// reject dead-letters item i, or the whole request when i < 0.
	reject := func(e *parse.Error, i int) {
		if dryRun {
			return
		}
		var payload string
		switch {
		case i >= 0:
			payload = in.payload(i)
		case in.request != nil:
			payload = in.request()
		default:
			var b bytes.Buffer
			for i := range in.items {
				if i > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(in.payload(i))
			}
			payload = b.String()
		}
		s.rejected.WithLabelValues(e.Reason, string(in.origin)).Inc()
		s.cfg.DeadLetters.Add(hit.DeadLetter{
			Reason: e.Reason, Detail: e.Error(), Stage: hit.StageCollection,
			TrackingID: in.trackingID, ReceivedAt: received, Payload: deadLetterPayload(payload, in.origin, out.prop),
		})
	}

	if in.trackingID == "" {
		e := missingTrackingID(&in, r)
		reject(e, -1)
		out.err = e
		return out
	}
	prop, perr := s.property(ctx, in.trackingID, in.origin)
	if perr != nil {
		if errors.Is(perr, errUnavailable) {
			out.err = perr
			return out
		}
		e := perr.(*parse.Error)
		reject(e, -1)
		out.err = e
		return out
	}
	out.prop = prop
	if in.origin == hit.OriginMeasurement && (prop.VerifySecret == nil || !prop.VerifySecret(in.secret)) {
		e := parse.Errorf(parse.ReasonBadSecret, "api_secret", "the API secret is missing, wrong or revoked; create one in the property's settings")
		reject(e, -1)
		out.err = e
		return out
	}

	c := s.clientOf(r, in.origin, in.items, prop, received)
	if prop.Cookieless && in.origin == hit.OriginBrowser && anyRead(in.items) {
		// Before any hit is built or dead-lettered: without the salts the
		// request is retried whole.
		if err := s.salts(ctx, &c, prop.Location); err != nil {
			s.cfg.Log.LogAttrs(ctx, slog.LevelDebug, "cookieless salt not available", slog.String("tracking_id", in.trackingID), slog.Any("error", err))
			out.err = errUnavailable
			return out
		}
	}

	out.hits = make([]*hit.Hit, len(in.items))
	out.rejected = make([]*parse.Error, len(in.items))
	hits := slices.Grow(in.mem.hits[:0], len(in.items))[:len(in.items)]
	in.mem.hits = hits
	recs := records{hint: len(in.items)}
	var key []byte
	var keyOf string         // the client ID key is for
	var twins map[string]int // content IDs of the request's hits so far
	// The hits' encodings, one after the other, sized ahead for what
	// enrichment adds to a hit (the user agent and about 200 bytes).
	var arena []byte
	if !dryRun {
		n := 0
		for i := range in.items {
			n += in.items[i].Fields.Size + len(c.userAgent) + 200
		}
		arena = slices.Grow(in.mem.arena[:0], n)
	}
	for i := range in.items {
		it := &in.items[i]
		if it.Err != nil {
			out.rejected[i] = it.Err
			reject(it.Err, i)
			continue
		}
		h, e := s.build(&hits[i], prop, &it.Fields, &c, in.origin)
		if e == errNoSalt {
			out.err = errUnavailable
			return out
		}
		if e != nil && in.origin == hit.OriginMeasurement {
			e = measurementError(e, i, &it.Fields)
		}
		if e != nil {
			out.rejected[i] = e
			reject(e, i)
			continue
		}
		if it.Fields.EventID == "" && len(in.items) > 1 && purchaseTransaction(&it.Fields, in.origin) == "" {
			// Identical hits of one request are as many hits: a retry
			// sends the request again, not one of its hits twice. (But
			// a transaction's purchase is one, as GA4 counts it.)
			if twins == nil {
				twins = make(map[string]int)
			}
			n := twins[h.ID]
			twins[h.ID] = n + 1
			if n > 0 {
				h.ID = hit.TwinID(h.ID, n)
			}
		}
		h.Time = h.Time.Add(earlierTwins(out.hits[:i], h))
		out.hits[i] = h
		out.accepted++
		if !dryRun {
			// A record keeps a slice of the arena; when the arena grows
			// into a new array, the slices taken before keep the old one.
			start := len(arena)
			arena = hit.AppendMarshal(arena, h)
			if h.ClientID != keyOf { // a batch is usually one visitor's
				key, keyOf = h.Key(prop.Shards), h.ClientID
			}
			recs.add(key, arena[start:len(arena):len(arena)])
		}
	}
	msgs, values := recs.messages(received, in.mem.values[:0]) // copies out of the arena
	in.mem.arena = arena[:0]
	if len(msgs) > 0 {
		if err := s.cfg.Queue.Send(ctx, msgs, out.accepted); err != nil {
			// The producer may still hold the records (a timeout) and
			// send them later: their memory is not reused.
			in.mem.values = nil
			s.cfg.Log.LogAttrs(ctx, slog.LevelDebug, "hits not queued", slog.Int("hits", out.accepted), slog.Any("error", err))
			out.err = errUnavailable
			return out
		}
		// Acknowledged: the producer is done with the records, so the
		// next request may write its own in the same memory.
		in.mem.values = values[:0]
		s.accepted.WithLabelValues(string(in.origin)).Add(float64(out.accepted))
	}
	return out
}

// records gathers a request's accepted hits into the records of the hits
// topic: one per key (usually one for the whole request: a visitor's
// batch), in the order the hits came, each within hit.MaxRecordBytes.
type records struct {
	open []record // the last record of each key
	done []record // full ones
	hint int      // hits expected: the request's
}

type record struct {
	key     []byte
	encoded [][]byte
	size    int
}

func (rs *records) add(key, encoded []byte) {
	i := slices.IndexFunc(rs.open, func(r record) bool { return bytes.Equal(r.key, key) })
	if i < 0 {
		rs.open = append(rs.open, record{key: key, encoded: make([][]byte, 0, rs.hint)})
		i = len(rs.open) - 1
	}
	r := &rs.open[i]
	if len(r.encoded) > 0 && !hit.RecordFits(r.size+len(encoded), len(r.encoded)+1) {
		rs.done = append(rs.done, *r)
		*r = record{key: key, encoded: make([][]byte, 0, rs.hint)}
	}
	r.encoded = append(r.encoded, encoded)
	r.size += len(encoded)
}

// messages returns the records as producer messages, their values
// written one after the other in buf (grown once, so that no value moves),
// which it returns too.
func (rs *records) messages(received time.Time, buf []byte) ([]*sarama.ProducerMessage, []byte) {
	all := slices.Concat(rs.done, rs.open)
	n := 0
	for _, r := range all {
		n += hit.RecordBound(r.size, len(r.encoded))
	}
	buf = slices.Grow(buf, n)
	msgs := make([]*sarama.ProducerMessage, 0, len(all))
	for _, r := range all {
		start := len(buf)
		buf = hit.AppendRecord(buf, r.encoded)
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic:     hit.TopicHits,
			Key:       sarama.ByteEncoder(r.key),
			Value:     sarama.ByteEncoder(buf[start:len(buf):len(buf)]),
			Timestamp: received,
		})
	}
	return msgs, buf
}

// anyRead reports whether a hit of items was read without error: of a
// cookieless property's browser request, one that may need a visitor ID
// (build gives every such hit one, whatever its cid).
func anyRead(items []parse.Item) bool {
	for i := range items {
		if items[i].Err == nil {
			return true
		}
	}
	return false
}

// property looks up a tracking ID; the error is a *parse.Error to reject
// with, or errUnavailable.
func (s *Server) property(ctx context.Context, tid string, origin hit.Origin) (*Property, error) {
	field := "tid"
	if origin == hit.OriginMeasurement {
		field = "tracking_id"
	}
	if !validTrackingID(tid) {
		return nil, parse.Errorf(parse.ReasonUnknownTrackingID, field, "%.40q is not a tracking ID (they look like AT-XXXXXXXXXX)", tid)
	}
	p, err := s.cfg.Properties.ByTrackingID(ctx, tid)
	switch {
	case errors.Is(err, ErrUnknownTrackingID):
		return nil, parse.Errorf(parse.ReasonUnknownTrackingID, field, "no property has the tracking ID %s", tid)
	case err != nil:
		s.cfg.Log.LogAttrs(ctx, slog.LevelDebug, "property lookup failed", slog.String("tracking_id", tid), slog.Any("error", err))
		return nil, errUnavailable
	}
	return p, nil
}

// missingTrackingID is the rejection of a request, of the given method,
// without a tracking ID in its query string. A POST's is there too, never
// in its hits: the gateway rate-limits a request by its query's tracking
// ID, so one read from the body would be counted in no property's bucket
// (hits' own tid may only repeat the query's).
func missingTrackingID(in *input, r *http.Request) *parse.Error {
	switch method := r.Method; {
	case in.origin == hit.OriginMeasurement && hit.QueryTrackingID(r.URL.RawQuery, "measurement_id") != "":
		return parse.Errorf(parse.ReasonMalformed, "tracking_id", "the tracking ID is missing: GA4's measurement_id is tracking_id here, POST /mp/collect?tracking_id=AT-XXXXXXXXXX&api_secret=... (the property's tracking ID, not a G- ID)")
	case in.origin == hit.OriginMeasurement:
		return parse.Errorf(parse.ReasonMalformed, "tracking_id", "the tracking ID is missing; it goes in the query string: POST /mp/collect?tracking_id=AT-XXXXXXXXXX&api_secret=...")
	case method != http.MethodPost:
		return parse.Errorf(parse.ReasonMalformed, "tid", "the tracking ID is missing; send tid=AT-XXXXXXXXXX")
	}
	for i := range in.items {
		if tid := in.items[i].Fields.TrackingID; tid != "" {
			if !validTrackingID(tid) {
				tid = "AT-XXXXXXXXXX"
			}
			return parse.Errorf(parse.ReasonMalformed, "tid", "the tracking ID is missing from the query string: send the batch to POST /collect?tid=%s (the hits' own tid is not read for it; it may only repeat the query's)", tid)
		}
	}
	return parse.Errorf(parse.ReasonMalformed, "tid", "the tracking ID is missing; it goes in the query string: POST /collect?tid=AT-XXXXXXXXXX")
}

// validTrackingID is configclient.ValidTrackingID's check, kept here so a
// malformed ID is refused before any lookup: AT- and ten characters of
// the tracking ID alphabet.
func validTrackingID(s string) bool {
	const alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
	if len(s) != 13 || s[:3] != "AT-" {
		return false
	}
	for i := 3; i < len(s); i++ {
		if !bytes.Contains([]byte(alphabet), []byte{s[i]}) {
			return false
		}
	}
	return true
}

// GET /collect: the pixel. It always answers an image, so that an <img>
// never shows as broken; a rejection is named in X-Collect-Error, and a
// storage failure answers 503 (with the image) so that a client able to
// retry does.
func (s *Server) pixel(w http.ResponseWriter, r *http.Request) {
	cors(w)
	if r.Method == http.MethodHead {
		// The GET pattern matches HEAD too: a link checker or a prefetch
		// asking about the pixel is no hit. It gets the pixel's headers.
		pixel.Write(w, r, http.StatusOK, "")
		return
	}
	received := s.now()
	q := r.URL.RawQuery
	in := input{origin: hit.OriginBrowser, payload: func(int) string { return q }, mem: getScratch()}
	defer putScratch(in.mem)
	tid, perr := queryTrackingID(q, "tid")
	in.trackingID = tid
	if perr != nil {
		s.deadLetterRequest(in, perr, received, q)
		pixel.Write(w, r, http.StatusOK, perr.Reason)
		return
	}
	f, err := parse.Query(q)
	var item parse.Item
	item.Fields = f
	if err != nil {
		item.Err = err.(*parse.Error)
	}
	in.items = []parse.Item{item}
	out := s.handle(r.Context(), r, in, received, false)
	status, reason := http.StatusOK, ""
	switch {
	case errors.Is(out.err, errUnavailable):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case out.err != nil:
		reason = out.err.(*parse.Error).Reason
	case out.firstRejection() != nil:
		reason = out.firstRejection().Reason
	}
	pixel.Write(w, r, status, reason)
}

// POST /collect?tid=...: a JSON batch.
func (s *Server) batch(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	in, perr := s.readBatch(r, parse.Batch)
	defer putScratch(in.mem)
	cors(w)
	if perr != nil {
		s.requestRejected(w, in, perr, received)
		return
	}
	s.respond(w, s.handle(r.Context(), r, in, received, false))
}

// POST /mp/collect?tracking_id=...&api_secret=...: the Measurement API.
func (s *Server) measurement(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	in, perr := s.readBatch(r, parse.Measurement)
	defer putScratch(in.mem)
	if perr != nil {
		s.requestRejected(w, in, perr, received)
		return
	}
	s.respond(w, s.handle(r.Context(), r, in, received, false))
}

// readBatch reads and parses a POST body into in.mem, where the body stays
// for a dead letter; the caller puts in.mem back when the request is done.
func (s *Server) readBatch(r *http.Request, parseBody func([]parse.Item, []byte) ([]parse.Item, error)) (input, *parse.Error) {
	in := input{origin: hit.OriginBrowser, mem: getScratch()}
	param := "tid"
	if r.URL.Path == "/mp/collect" || r.URL.Path == "/debug/mp/collect" {
		in.origin = hit.OriginMeasurement
		param = "tracking_id"
		in.secret = r.URL.Query().Get("api_secret")
	}
	var tidErr *parse.Error
	in.trackingID, tidErr = queryTrackingID(r.URL.RawQuery, param)
	buf := &in.mem.body
	if r.ContentLength > parse.MaxBatchBytes {
		// Its beginning is what the dead letter keeps.
		_, _ = buf.ReadFrom(io.LimitReader(r.Body, parse.MaxRawBytes))
		return in, parse.Errorf(parse.ReasonTooLarge, "", "the body is %d bytes; the limit is %d", r.ContentLength, parse.MaxBatchBytes)
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, parse.MaxBatchBytes+1))
	if err != nil {
		return in, parse.Errorf(parse.ReasonMalformed, "", "the body could not be read: %v", err)
	}
	if n > parse.MaxBatchBytes {
		return in, parse.Errorf(parse.ReasonTooLarge, "", "the body is over the limit of %d bytes", parse.MaxBatchBytes)
	}
	if tidErr != nil {
		// Refused once the body is read, so that the dead letter has it.
		return in, tidErr
	}
	items, err := parseBody(in.mem.items, buf.Bytes())
	if err != nil {
		return in, err.(*parse.Error)
	}
	in.items, in.mem.items = items, items
	in.payload = func(i int) string {
		if items[i].Raw != "" {
			return items[i].Raw
		}
		return fieldsPayload(&items[i].Fields)
	}
	if in.origin == hit.OriginMeasurement {
		// A dead letter of the Measurement API is a request as it takes
		// them, replayable as is: the body for the whole request (its
		// secret is in the query string), else one with just the event.
		body := buf.Bytes()
		var replay func(int) string
		in.payload = func(i int) string {
			if items[i].Raw != "" {
				return items[i].Raw
			}
			if replay == nil {
				replay = parse.Replayable(body)
			}
			return replay(i)
		}
		in.request = func() string { return string(body) }
	}
	return in, nil
}

// requestRejected answers and dead-letters a request rejected as a whole
// before its hits could be read.
func (s *Server) requestRejected(w http.ResponseWriter, in input, e *parse.Error, received time.Time) {
	s.deadLetterRequest(in, e, received, in.mem.body.String())
	writeRejection(w, e)
}

// deadLetterRequest counts and dead-letters a request rejected as a whole,
// with what the client sent.
func (s *Server) deadLetterRequest(in input, e *parse.Error, received time.Time, payload string) {
	s.rejected.WithLabelValues(e.Reason, string(in.origin)).Inc()
	s.cfg.DeadLetters.Add(hit.DeadLetter{
		Reason: e.Reason, Detail: e.Error(), Stage: hit.StageCollection,
		TrackingID: in.trackingID, ReceivedAt: received, Payload: deadLetterPayload(payload, in.origin, nil),
	})
}

// queryTrackingID returns the tracking ID of a request's raw query, in
// its parameter param, as the gateway reads it to rate-limit the request
// (hit.QueryTrackingID). The error refuses a query in which another
// reading (the last value, an unescaped name, url.ParseQuery dropping a
// pair with a ';') finds another tracking ID: a hit accepted for a
// property would have been counted against another's rate limit.
func queryTrackingID(rawQuery, param string) (string, *parse.Error) {
	tid := hit.QueryTrackingID(rawQuery, param)
	if err := hit.CheckQueryTrackingID(rawQuery, param); err != nil {
		return tid, parse.Errorf(parse.ReasonMalformed, param,
			"%v; send %s=AT-XXXXXXXXXX once, under that name as is, its value percent-encoded", err, param)
	}
	return tid, nil
}

func statusOf(e *parse.Error) int {
	switch e.Reason {
	case parse.ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case parse.ReasonBadSecret:
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

func writeRejection(w http.ResponseWriter, e *parse.Error) {
	httpserver.WriteFieldError(w, statusOf(e), e.Reason, e.Field, e.Message)
}

// rejection is one rejected hit of a batch in a response.
type rejection struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// batchError is the answer to a batch with rejected hits: the shared
// error shape (naming the first rejection), the number of hits stored and
// every rejection.
type batchError struct {
	httpserver.ErrorBody
	Accepted int         `json:"accepted"`
	Rejected []rejection `json:"rejected"`
}

// respond answers a POST: 204 when every hit was stored; 503 when they
// could not be; otherwise the status of the first rejection (400, or 413
// for a hit too large) with every rejection listed; the hits that were
// valid are stored all the same.
func (s *Server) respond(w http.ResponseWriter, out outcome) {
	switch {
	case errors.Is(out.err, errUnavailable):
		w.Header().Set("Retry-After", "1")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", out.err.Error())
		return
	case out.err != nil:
		writeRejection(w, out.err.(*parse.Error))
		return
	}
	first := out.firstRejection()
	if first == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body := batchError{Accepted: out.accepted}
	body.Error = httpserver.ErrorDetail{Code: first.Reason, Field: first.Field, Message: first.Message}
	for i, e := range out.rejected {
		if e != nil {
			body.Rejected = append(body.Rejected, rejection{Index: i, Code: e.Reason, Field: e.Field, Message: e.Message})
		}
	}
	httpserver.WriteJSON(w, statusOf(first), body)
}

// earlierTwins returns, as nanoseconds, how many of a request's hits
// before h (nil for a rejected one) are its visitor's at h's time: h is
// dated that much later, so that a visitor's hits of one time (a batch
// without queue times or timestamps, all dated at its receipt) keep the
// order they were sent in, where processing would order them by hit ID.
// A hit whose time none of its visitor's earlier hits in the request has
// keeps it exactly: a gap of exactly the session timeout stays one. (The
// earlier twins are at h's time plus their own counts, less than a
// microsecond on; times the client gives are whole microseconds.)
func earlierTwins(before []*hit.Hit, h *hit.Hit) time.Duration {
	var n time.Duration
	for _, e := range before {
		if e != nil && e.ClientID == h.ClientID && !e.Time.Before(h.Time) && e.Time.Sub(h.Time) < time.Microsecond {
			n++
		}
	}
	return n
}

// fieldsPayload re-encodes parsed fields with their parameter names, for
// a dead letter of a hit that was read but failed validation.
func fieldsPayload(f *parse.Fields) string {
	m := map[string]any{}
	for _, kv := range []struct{ k, v string }{
		{"v", f.Version}, {"tid", f.TrackingID}, {"cid", f.ClientID}, {"uid", f.UserID}, {"t", f.Type},
		{"dl", f.Location}, {"dh", f.Host}, {"dp", f.Path}, {"dt", f.Title}, {"dr", f.Referrer},
		{"ec", f.Category}, {"ea", f.Action}, {"el", f.Label}, {"ev", f.Value}, {"ni", f.NonInteraction},
		{"et", f.EngagementTime}, {"sr", f.ScreenResolution}, {"ul", f.Language}, {"hid", f.EventID},
		{"qt", f.QueueTime}, {"z", f.CacheBuster}, {"timestamp_micros", f.TimestampMicros},
		{"cs", f.CampaignSource}, {"cm", f.CampaignMedium}, {"cn", f.CampaignName}, {"ck", f.CampaignTerm},
		{"cc", f.CampaignContent}, {"gclid", f.GCLID},
		{"utc", f.TimingCategory}, {"utv", f.TimingVariable}, {"utt", f.TimingTime}, {"utl", f.TimingLabel},
		{"exd", f.ExceptionDescription}, {"exf", f.ExceptionFatal},
	} {
		if kv.v != "" {
			m[kv.k] = kv.v
		}
	}
	if len(f.Params) > 0 {
		m["ep"] = f.Params
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// scratch is the memory one request works in: its body, its parsed
// items, its hits, their encodings and the records made of them. It is
// pooled: at hundreds of thousands of hits a second, allocating and
// collecting it for every request cost more CPU than parsing the hits.
// Nothing in it outlives the request: the hits' strings are allocations of
// their own, and the records' memory (values) is kept for the next request
// only once the broker has acknowledged them; when it has not, the
// producer may still send them, and the request drops it.
type scratch struct {
	body   bytes.Buffer
	items  []parse.Item
	hits   []hit.Hit
	arena  []byte
	values []byte
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch {
	sc := scratches.Get().(*scratch)
	sc.body.Reset()
	return sc
}

// putScratch returns sc to the pool, without what it refers to, unless an
// outsized request grew its body (the items and hits are bounded by
// parse.MaxBatchHits, the arena and the values by parse.MaxBatchBytes and
// the user agent).
func putScratch(sc *scratch) {
	if sc.body.Cap() > parse.MaxBatchBytes*2 {
		return
	}
	clear(sc.items)
	clear(sc.hits)
	scratches.Put(sc)
}
