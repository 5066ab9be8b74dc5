// Package parse reads hits as clients send them: a query string (the
// pixel, GET /collect), a JSON batch (POST /collect, also sent as
// text/plain by navigator.sendBeacon) and the GA4-style Measurement API
// body (POST /mp/collect). It only splits and decodes: every value comes
// out as the string the client sent, and package collect validates and
// types them, so that all three shapes obey exactly the same rules.
//
// docs/collection.md is the reference of every parameter.
package parse

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/acme/analytics/pkg/hit"
)

// Limits of what one request may carry.
const (
	MaxHitBytes   = 8 << 10   // one hit: the names and values of its fields, decoded (of a query string, of JSON)
	MaxBatchHits  = 500       // hits (or events) in one POST
	MaxBatchBytes = 512 << 10 // one POST body
	MaxParams     = 25        // custom parameters of one hit (GA4's limit)
)

// Reasons a hit or a request is rejected. They are stable: dead letters,
// metrics and client error codes use them.
const (
	ReasonMalformed         = "malformed"
	ReasonTooLarge          = "too_large"
	ReasonTooOld            = "too_old"
	ReasonUnknownTrackingID = "unknown_tracking_id"
	ReasonForeignHost       = "foreign_host"
	ReasonBadSecret         = "bad_secret"
	// ReasonReservedName refuses a Measurement API event whose name GA4
	// reserves for events of its own (session_start, first_visit, ...).
	ReasonReservedName = "reserved_name"
)

// Error is a rejection with its stable reason, the offending field (when
// one is to blame) and a message that tells the sender how to fix it.
type Error struct {
	Reason  string
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Reason + ": " + e.Field + ": " + e.Message
	}
	return e.Reason + ": " + e.Message
}

// Errorf returns an *Error.
func Errorf(reason, field, format string, args ...any) *Error {
	return &Error{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Fields is one hit as sent: every value is the client's string (numbers
// in JSON as their literal text), "" when absent.
type Fields struct {
	Version          string // v
	TrackingID       string // tid
	ClientID         string // cid
	UserID           string // uid
	Type             string // t
	Location         string // dl
	Host             string // dh
	Path             string // dp
	Title            string // dt
	Referrer         string // dr
	Category         string // ec
	Action           string // ea
	Label            string // el
	Value            string // ev
	NonInteraction   string // ni
	EngagementTime   string // et
	ScreenResolution string // sr
	Language         string // ul
	EventID          string // hid
	QueueTime        string // qt
	// CacheBuster is Universal Analytics' z, a random number sent anew
	// with every hit so that no cache answers it: without hid, it tells
	// two identical hits apart (a request sent again repeats it).
	CacheBuster string // z
	// The campaign set apart from the document location, as Universal
	// Analytics' Measurement Protocol sends it.
	CampaignSource  string // cs
	CampaignMedium  string // cm
	CampaignName    string // cn
	CampaignTerm    string // ck
	CampaignContent string // cc
	GCLID           string // gclid
	// A timing hit's content (Universal Analytics' user timings; the
	// Measurement API's timing_complete event), which collection makes an
	// event of.
	TimingCategory string // utc
	TimingVariable string // utv
	TimingTime     string // utt
	TimingLabel    string // utl
	// An exception hit's content (the Measurement API's exception event),
	// which collection makes an event of.
	ExceptionDescription string // exd
	ExceptionFatal       string // exf
	// TimestampMicros is the Measurement API's event time (Unix
	// microseconds); browser hits use QueueTime instead.
	TimestampMicros string
	// Params are custom parameters: ep.<name> in a query string, "ep" in a
	// JSON hit, the event's params in the Measurement API.
	Params map[string]string
	// Visitor is the visitor's context a Measurement API request gives
	// (its device's screen_resolution and language are ScreenResolution
	// and Language); nil when it gives none. Every event of a request
	// shares it.
	Visitor *Visitor
	// For a Measurement API event, where two fields were found, so that an
	// error names them as the sender did: TimestampMicros on the event
	// itself (else the request's), EventID in its params (else the
	// event's own event_id).
	OwnTimestamp, EventIDInParams bool
	// Size is the hit's size as MaxHitBytes measures it.
	Size int
}

// set assigns the value of a known parameter name and reports whether the
// name is known. Unknown names are ignored, as Measurement Protocol
// receivers do, so that newer trackers keep working. It is the one place a
// parameter name is registered: Query, both batch parsers (fastBatch and
// fastjson's) and the validation endpoints' ignored names (known) all read
// names through it.
func (f *Fields) set(name, value string) bool {
	switch name {
	case "v":
		f.Version = value
	case "tid":
		f.TrackingID = value
	case "cid":
		f.ClientID = value
	case "uid":
		f.UserID = value
	case "t":
		f.Type = value
	case "dl":
		f.Location = value
	case "dh":
		f.Host = value
	case "dp":
		f.Path = value
	case "dt":
		f.Title = value
	case "dr":
		f.Referrer = value
	case "ec":
		f.Category = value
	case "ea":
		f.Action = value
	case "el":
		f.Label = value
	case "ev":
		f.Value = value
	case "ni":
		f.NonInteraction = value
	case "et":
		f.EngagementTime = value
	case "sr":
		f.ScreenResolution = value
	case "ul":
		f.Language = value
	case "hid":
		f.EventID = value
	case "qt":
		f.QueueTime = value
	case "z":
		f.CacheBuster = value
	case "cs":
		f.CampaignSource = value
	case "cm":
		f.CampaignMedium = value
	case "cn":
		f.CampaignName = value
	case "ck":
		f.CampaignTerm = value
	case "cc":
		f.CampaignContent = value
	case "gclid":
		f.GCLID = value
	case "utc":
		f.TimingCategory = value
	case "utv":
		f.TimingVariable = value
	case "utt":
		f.TimingTime = value
	case "utl":
		f.TimingLabel = value
	case "exd":
		f.ExceptionDescription = value
	case "exf":
		f.ExceptionFatal = value
	default:
		return false
	}
	return true
}

// setParam adds a custom parameter; an error names the parameters "ep"
// (the caller names them otherwise where they are called otherwise).
func (f *Fields) setParam(name, value string) *Error {
	if f.Params == nil {
		f.Params = make(map[string]string, 4)
	}
	if _, dup := f.Params[name]; !dup && len(f.Params) >= MaxParams {
		return Errorf(ReasonMalformed, "ep", "more than %d custom parameters; send at most %d", MaxParams, MaxParams)
	}
	f.Params[name] = value
	return nil
}

// Query parses a hit sent as a query string (GET /collect?v=1&tid=...).
// Custom parameters are ep.<name>=<value>. A tid given twice is
// malformed; of another parameter given twice, the last value is kept.
// Its size is that of its names and values decoded, as a JSON hit's is
// (a %-escape is three bytes of the query for one of the hit): the same
// hit is as large sent either way.
func Query(raw string) (Fields, error) {
	var f Fields
	// Decoded, a query is at least a third of its length: one longer than
	// three limits is too large before it is read.
	if len(raw) > 3*MaxHitBytes {
		return f, Errorf(ReasonTooLarge, "", "the hit is at least %d bytes; the limit is %d", (len(raw)+2)/3, MaxHitBytes)
	}
	seenTID := false
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, v = unescape(k), unescape(v)
		if f.Size += len(k) + len(v); f.Size > MaxHitBytes {
			return f, Errorf(ReasonTooLarge, "", "the hit is more than %d bytes (its names and values, decoded); the limit is %d", MaxHitBytes, MaxHitBytes)
		}
		if k == "tid" {
			// The gateway rate-limits by the first: the last, which set
			// keeps, may be another property's.
			if seenTID {
				return f, Errorf(ReasonMalformed, "tid", "tid is given more than once; send it once")
			}
			seenTID = true
		}
		if f.set(k, v) {
			continue
		}
		if name, ok := strings.CutPrefix(k, "ep."); ok && name != "" {
			if err := f.setParam(name, v); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// unescape decodes a name or a value of a query string as a form's: '+'
// is a space, and %XX a byte. A '%' not followed by two hex digits is a
// '%', as a browser sends it in a URL written by hand (dt=Sale 50% off),
// and as processing reads a utm tag's: url.QueryUnescape refuses it, and
// with it the whole hit.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	u, err := url.QueryUnescape(hit.EscapeStrayPercent(s))
	if err != nil {
		return s // not reached: every '%' now begins an escape
	}
	return u
}
