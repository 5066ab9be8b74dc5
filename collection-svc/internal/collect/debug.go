package collect

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
)

// DebugResult is the answer of the validation endpoints: whether every hit
// would be accepted, and for each hit either the hit as it would be queued
// (enriched, with the truncated IP) or what is wrong with it. Nothing is
// stored and nothing goes to the dead-letter topic. Warnings say what
// would happen that the sender may not expect: a valid hit that reports
// will not show (a bot, an excluded address), a field that is not read.
type DebugResult struct {
	Valid    bool                    `json:"valid"`
	Error    *httpserver.ErrorDetail `json:"error,omitempty"`    // the request as a whole
	Warnings []Warning               `json:"warnings,omitempty"` // the request as a whole
	Hits     []DebugHit              `json:"hits,omitempty"`
	// ValidationMessages is every error above as GA4's Measurement
	// Protocol validation server lists them (empty, not absent, for a
	// valid request), so that tools written for it read ours: on the
	// Measurement API's endpoint only.
	ValidationMessages *[]ValidationMessage `json:"validationMessages,omitempty"`
}

// ValidationMessage is an error in GA4's validation server's form.
type ValidationMessage struct {
	FieldPath      string `json:"fieldPath,omitempty"`
	Description    string `json:"description"`
	ValidationCode string `json:"validationCode"` // VALUE_INVALID, NAME_RESERVED or VALUE_OUT_OF_BOUNDS
}

func validationMessage(d *httpserver.ErrorDetail) ValidationMessage {
	code := "VALUE_INVALID"
	switch d.Code {
	case parse.ReasonTooLarge:
		code = "VALUE_OUT_OF_BOUNDS"
	case parse.ReasonReservedName:
		code = "NAME_RESERVED"
	}
	return ValidationMessage{FieldPath: d.Field, Description: d.Message, ValidationCode: code}
}

// DebugHit is one hit of a DebugResult.
type DebugHit struct {
	Index    int                     `json:"index"`
	Valid    bool                    `json:"valid"`
	Hit      *hit.Hit                `json:"hit,omitempty"`
	Error    *httpserver.ErrorDetail `json:"error,omitempty"`
	Warnings []Warning               `json:"warnings,omitempty"`
}

// Warning is something about an accepted request or hit that its sender
// should know: its code is stable (bot, ip_excluded, user_agent_excluded,
// country_excluded, ignored_parameter, repeated_parameter), its field the parameter it is
// about, if one, its message what follows and what to do.
type Warning struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func detail(e *parse.Error) *httpserver.ErrorDetail {
	return &httpserver.ErrorDetail{Code: e.Reason, Field: e.Field, Message: e.Message}
}

func (s *Server) debugPixel(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	tid, perr := queryTrackingID(r.URL.RawQuery, "tid")
	if perr != nil {
		cors(w)
		httpserver.WriteJSON(w, http.StatusOK, DebugResult{Error: detail(perr)})
		return
	}
	f, err := parse.Query(r.URL.RawQuery)
	item := parse.Item{Fields: f}
	if err != nil {
		item.Err = err.(*parse.Error)
	}
	in := input{trackingID: tid, origin: hit.OriginBrowser, items: []parse.Item{item}, payload: func(int) string { return "" }, mem: getScratch()}
	defer putScratch(in.mem)
	s.debugRespond(w, s.handle(r.Context(), r, in, received, true), in.origin, parse.IgnoredQuery(r.URL.RawQuery))
}

func (s *Server) debugBatch(w http.ResponseWriter, r *http.Request) {
	s.debugPost(w, r, parse.Batch, parse.IgnoredBatch)
}

func (s *Server) debugMeasurement(w http.ResponseWriter, r *http.Request) {
	s.debugPost(w, r, parse.Measurement, parse.IgnoredMeasurement)
}

func (s *Server) debugPost(w http.ResponseWriter, r *http.Request, parseBody func([]parse.Item, []byte) ([]parse.Item, error), ignored func([]byte) parse.Ignored) {
	received := s.now()
	in, perr := s.readBatch(r, parseBody)
	defer putScratch(in.mem)
	if perr != nil {
		cors(w)
		httpserver.WriteJSON(w, http.StatusOK, DebugResult{Error: detail(perr)})
		return
	}
	s.debugRespond(w, s.handle(r.Context(), r, in, received, true), in.origin, ignored(in.mem.body.Bytes()))
}

// debugRespond answers what became of a request of origin, which carried
// the ignored fields ig.
func (s *Server) debugRespond(w http.ResponseWriter, out outcome, origin hit.Origin, ig parse.Ignored) {
	cors(w)
	var res DebugResult
	switch {
	case errors.Is(out.err, errUnavailable):
		// As /collect answers it: config-svc (or the day's salt) every
		// instance shares is unreachable, not this instance failing.
		w.Header().Set("Retry-After", "1")
		httpserver.WriteError(w, http.StatusServiceUnavailable, "unavailable", "the property's configuration (or, for a cookieless property, the day's salt) cannot be read right now; retry later")
		return
	case out.err != nil:
		res.Error = detail(out.err.(*parse.Error))
	default:
		res.Valid = out.firstRejection() == nil
		for _, name := range ig.Request {
			w := ignoredWarning(name, origin)
			if origin == hit.OriginBrowser {
				// A batch's top level, beside its hits.
				w.Message = name + ` is not read: a batch is {"hits": [...]}, its tracking ID in the query string (POST /collect?tid=AT-...) and each hit's fields in the hit`
			}
			res.Warnings = append(res.Warnings, w)
		}
		for _, rep := range ig.RepeatedRequest {
			res.Warnings = append(res.Warnings, repeatedWarning(rep))
		}
		for i := range out.hits {
			// The answer's hit without the IDs it was stored under: the
			// endpoint asks for no token, and a tracking ID's tenant and
			// property (which sites one customer has) are not anyone's
			// to learn (report-svc answers an unknown property and
			// another tenant's alike for the same reason).
			dh := DebugHit{Index: i, Valid: out.rejected[i] == nil}
			if h := out.hits[i]; h != nil {
				shown := *h
				shown.TenantID, shown.PropertyID = "", ""
				dh.Hit = &shown
			}
			if out.rejected[i] != nil {
				dh.Error = detail(out.rejected[i])
			} else {
				dh.Warnings = exclusionWarnings(out.prop, out.hits[i])
			}
			if i < len(ig.Hits) {
				for _, name := range ig.Hits[i] {
					dh.Warnings = append(dh.Warnings, ignoredWarning(name, origin))
				}
			}
			if i < len(ig.RepeatedHits) {
				for _, rep := range ig.RepeatedHits[i] {
					dh.Warnings = append(dh.Warnings, repeatedWarning(rep))
				}
			}
			if origin == hit.OriginMeasurement && out.rejected[i] == nil {
				if w, ok := engagementWarning(i, out.hits[i]); ok {
					dh.Warnings = append(dh.Warnings, w)
				}
			}
			res.Hits = append(res.Hits, dh)
		}
	}
	if origin == hit.OriginMeasurement {
		msgs := []ValidationMessage{}
		if res.Error != nil {
			msgs = append(msgs, validationMessage(res.Error))
		}
		for _, h := range res.Hits {
			if h.Error != nil {
				msgs = append(msgs, validationMessage(h.Error))
			}
		}
		res.ValidationMessages = &msgs
	}
	httpserver.WriteJSON(w, http.StatusOK, res)
}

// exclusionWarnings says why reports will not show (or will set apart) h,
// valid as it is: what processing asks the property's rules
// (rules.Compiled.Exclusion), the same question.
func exclusionWarnings(p *Property, h *hit.Hit) []Warning {
	var ws []Warning
	filtering := p.Rules != nil && p.Rules.BotFiltering()
	mp := h.Origin == hit.OriginMeasurement
	if h.Bot {
		msg := "the user agent matches the crawler list (" + h.BotName + "): "
		if mp {
			msg = "the visitor's user_agent matches the crawler list (" + h.BotName + "): "
		}
		if filtering {
			msg += "with bot filtering on (the property's setting), this hit is not in reports, only among the filtered hits"
		} else {
			msg += "the property's bot filtering is off, so this hit is in reports, flagged as a bot"
		}
		if h.Origin == hit.OriginBrowser {
			msg += "; a server sending its visitors' hits should use POST /mp/collect, which takes no user agent or address from the request"
		}
		ws = append(ws, Warning{Code: "bot", Message: msg})
	}
	if p.Rules == nil {
		return ws
	}
	// A Measurement API request's are the visitor's, as it gave them.
	address, userAgent, country := "the client's address", "the user agent", "the client's country"
	if mp {
		address, userAgent, country = "the visitor's address (ip_override)", "the visitor's user_agent", "the visitor's country"
	}
	switch reason, excluded := p.Rules.Exclusion(h); {
	case !excluded:
	case reason == rules.ReasonIP:
		ws = append(ws, Warning{Code: "ip_excluded", Message: address + " matches the property's IP exclusion " + h.IPExcludedBy + ": this hit is not in reports, only among the filtered hits"})
	case reason == rules.ReasonUserAgent:
		ws = append(ws, Warning{Code: "user_agent_excluded", Message: userAgent + " matches one of the property's user-agent exclusions: this hit is not in reports, only among the filtered hits"})
	case reason == rules.ReasonCountry:
		ws = append(ws, Warning{Code: "country_excluded", Message: country + " (" + h.Country + ") is excluded by the property's rules: this hit is not in reports, only among the filtered hits"})
	}
	return ws
}

// ignoredWarning tells that name, sent to an endpoint of origin, is not
// read.
func ignoredWarning(name string, origin hit.Origin) Warning {
	w := Warning{Code: "ignored_parameter", Field: name}
	switch {
	case origin == hit.OriginBrowser && name == "uip":
		w.Message = "uip is not read: /collect takes the visitor's address from the request (here, the sender's); a server sending its visitors' hits should use POST /mp/collect"
	case origin == hit.OriginBrowser && name == "ua":
		w.Message = "ua is not read: /collect takes the user agent from the request's User-Agent header (here, the sender's); a server sending its visitors' hits should use POST /mp/collect"
	case origin == hit.OriginBrowser:
		w.Message = name + " is not a parameter of /collect and is ignored (docs/collection.md lists them; custom parameters are ep.<name>)"
	case isSessionID(name):
		w.Message = "session_id is kept as a parameter but not used: sessions are derived from the visitor's hits (a gap of 30 minutes, midnight, a new campaign), so this event joins the session its client_id has at its time"
	case strings.HasPrefix(name, "user_location."):
		w.Message = name + " is not read: of the visitor's location, hits keep the country only (user_location.country_id, else the one of ip_override)"
	case strings.HasPrefix(name, "device."):
		w.Message = name + " is not read: of the visitor's device, hits keep its category, browser, operating system, screen resolution and language"
	default:
		w.Message = name + " is not read by /mp/collect and is ignored (it reads client_id, user_id, timestamp_micros, the visitor's user_location, ip_override, device and user_agent, and events: name, params, timestamp_micros, event_id)"
	}
	return w
}

// repeatedWarning says that a name read was given more than once and
// which of its values is read: the hit is accepted, but perhaps not as
// its sender meant (t=pageview&t=event is an event).
func repeatedWarning(r parse.Repeated) Warning {
	which := "last"
	if r.First {
		which = "first"
	}
	return Warning{Code: "repeated_parameter", Field: r.Name,
		Message: fmt.Sprintf("%s is given %d times; only its %s value is read and the others are ignored: send it once", r.Name, r.Times, which)}
}

// engagementWarning tells that the i-th event of a Measurement API request,
// accepted as h, carries a params.engagement_time_msec that is not read as
// its engagement time (on an event other than user_engagement, which
// refuses it, such a value stays a plain parameter).
func engagementWarning(i int, h *hit.Hit) (Warning, bool) {
	v, ok := h.Params["engagement_time_msec"]
	if !ok {
		return Warning{}, false
	}
	if _, ok := engagementMS(v, true); ok {
		return Warning{}, false
	}
	why := "is not a number"
	if f, err := strconv.ParseFloat(v, 64); err == nil && decimalNumber(v) {
		why = "is negative"
		if f >= 0 {
			why = "is over a day"
		}
	}
	return Warning{Code: "ignored_parameter", Field: parse.EventField(i, "params.engagement_time_msec"),
		Message: fmt.Sprintf("engagement_time_msec %.20q %s, so it is not read as this event's engagement time: it is kept as a plain parameter "+
			"(send a number of milliseconds between 0 and one day, 86400000; user_engagement refuses such a value)", v, why)}, true
}

func isSessionID(name string) bool {
	return strings.HasSuffix(name, ".params.session_id")
}
