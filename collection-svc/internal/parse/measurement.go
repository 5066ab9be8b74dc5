package parse

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// Measurement parses the body of POST /mp/collect, the shape of GA4's
// Measurement Protocol:
//
//	{"client_id": "...", "user_id": "...", "timestamp_micros": 1700000000000000,
//	 "events": [{"name": "purchase", "params": {"value": 12.5, ...}}, ...]}
//
// Each event becomes one hit: page_view a pageview, user_engagement an
// engagement ping, timing_complete a timing hit (params.name, value,
// event_category and event_label), exception an exception hit
// (params.description and fatal), campaign_details a non-interaction event
// carrying the campaign of params source, medium, campaign, term and
// content (cs, cm, cn, ck, cc), any other name an event whose action is
// the name and whose category is params.event_category or else the name,
// with params.event_label, params.value and params.non_interaction; names
// GA4 reserves are refused (reservedName). On every
// event, params page_location, page_title, page_referrer and
// engagement_time_msec are the hit's page, title, referrer and engagement
// time; all params are kept. An event's own timestamp_micros overrides the
// request's (a timestamp_micros of 0 is none, as in GA4), and event_id (on
// the event or in its params) is the de-duplication key.
//
// An event's error names the field as the sender wrote it, with the
// event's index: events[2].name, events[0].params.
//
// Like Batch, it makes the items in dst's memory when it is large enough.
// It sets no item's Raw: a rejected event's dead letter is made by
// Replayable, only once it is sent (after the API secret's check), since
// each holds the request's other fields too.
func Measurement(dst []Item, body []byte) ([]Item, error) {
	return withObject(dst, body, `{"client_id": ..., "events": [...]}`, measurement)
}

func measurement(dst []Item, v *fastjson.Value) ([]Item, error) {
	var common Fields
	for _, k := range [...]struct {
		key string
		dst *string
	}{{"client_id", &common.ClientID}, {"user_id", &common.UserID}, {"timestamp_micros", &common.TimestampMicros}} {
		fv := v.Get(k.key)
		if fv == nil {
			continue
		}
		s, _, e := scalar(fv)
		if e != nil {
			return nil, Errorf(ReasonMalformed, k.key, "%s", e.Message)
		}
		if k.key == "timestamp_micros" && zeroNumber(s) {
			continue
		}
		*k.dst = s
	}
	vis, e := visitor(v, &common)
	if e != nil {
		return nil, e
	}
	common.Visitor = vis
	ev := v.Get("events")
	if ev == nil || ev.Type() != fastjson.TypeArray {
		return nil, Errorf(ReasonMalformed, "events", "events must be an array of {name, params}")
	}
	events, _ := ev.Array()
	if len(events) == 0 {
		return nil, Errorf(ReasonMalformed, "events", "the request has no events")
	}
	if len(events) > MaxBatchHits {
		return nil, Errorf(ReasonTooLarge, "events", "the request has %d events; the limit is %d", len(events), MaxBatchHits)
	}
	items := reuse(dst, len(events))
	for i, e := range events {
		items[i] = measurementEvent(e, common)
		if err := items[i].Err; err != nil {
			err.Field = EventField(i, err.Field)
		}
	}
	return items, nil
}

// Visitor is what a Measurement API request says of the visitor whose
// events a server forwards, as GA4's Measurement Protocol lets it (the
// request's user_location, ip_override, device and user_agent), each
// value as sent: a browser's request says as much of itself in its
// address and User-Agent header. Collection validates it and enriches the
// events with it as a browser's hits are enriched.
type Visitor struct {
	CountryID  string // user_location.country_id
	IPOverride string // ip_override: the visitor's full address, in flight only
	UserAgent  string // user_agent
	// device.category, device.operating_system and device.browser
	// (device.screen_resolution and language are the hit's sr and ul).
	Category, OS, Browser string
}

// visitorFields are the fields of a Measurement API request that Visitor
// reads (and the screen resolution and language of its device, which
// are the hit's), by their names in the request.
var visitorFields = [...]struct {
	object, key string
	dst         func(*Visitor, *Fields) *string
}{
	{"user_location", "country_id", func(v *Visitor, _ *Fields) *string { return &v.CountryID }},
	{"", "ip_override", func(v *Visitor, _ *Fields) *string { return &v.IPOverride }},
	{"", "user_agent", func(v *Visitor, _ *Fields) *string { return &v.UserAgent }},
	{"device", "category", func(v *Visitor, _ *Fields) *string { return &v.Category }},
	{"device", "operating_system", func(v *Visitor, _ *Fields) *string { return &v.OS }},
	{"device", "browser", func(v *Visitor, _ *Fields) *string { return &v.Browser }},
	{"device", "screen_resolution", func(_ *Visitor, f *Fields) *string { return &f.ScreenResolution }},
	{"device", "language", func(_ *Visitor, f *Fields) *string { return &f.Language }},
}

// visitor reads the visitor's context of the request v into a Visitor and
// common's screen resolution and language; nil when the request gives
// none. A value of another JSON type than the field's refuses the
// request, naming the field as the sender wrote it.
func visitor(v *fastjson.Value, common *Fields) (*Visitor, *Error) {
	for _, name := range [...]string{"user_location", "device"} {
		if o := v.Get(name); o != nil && o.Type() != fastjson.TypeObject && o.Type() != fastjson.TypeNull {
			return nil, Errorf(ReasonMalformed, name, "%s must be a JSON object {...}, as GA4's Measurement Protocol has it", name)
		}
	}
	var vis Visitor
	for _, fd := range visitorFields {
		var fv *fastjson.Value
		if fd.object == "" {
			fv = v.Get(fd.key)
		} else {
			fv = v.Get(fd.object, fd.key)
		}
		if fv == nil {
			continue
		}
		s, _, e := scalar(fv)
		if e != nil {
			name := fd.key
			if fd.object != "" {
				name = fd.object + "." + fd.key
			}
			return nil, Errorf(ReasonMalformed, name, "%s", e.Message)
		}
		*fd.dst(&vis, common) = s
	}
	if vis == (Visitor{}) {
		return nil, nil
	}
	return &vis, nil
}

// zeroNumber reports whether s, a timestamp_micros as sent, is a zero
// (0, 0.0, -0, 0e0), which is none: GA4 reads its Measurement Protocol
// into protocol buffers, whose zero is a field's default, and a client
// written in a typed language sends 0 for every event it does not date (a
// Go struct's int64 without omitempty).
func zeroNumber(s string) bool {
	digits := strings.TrimPrefix(s, "-")
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && v == 0 && strings.HasPrefix(digits, "0") && !strings.ContainsAny(digits, "xX")
}

// EventField is the name of field of the Measurement API's event i, as
// the sender wrote it: "events[i]." + field, or "events[i]" for the event
// itself ("").
func EventField(i int, field string) string {
	name := "events[" + strconv.Itoa(i) + "]"
	if field != "" {
		name += "." + field
	}
	return name
}

// measurementEvent reads one event; a rejected one gets its Raw from
// Measurement. Its error's field is relative to the event (name,
// params.value; "" for the event as a whole).
func measurementEvent(v *fastjson.Value, common Fields) Item {
	it := Item{Fields: common}
	f := &it.Fields
	f.Version = "1"
	fail := func(e *Error) Item {
		it.Err = e
		return it
	}
	if v.Type() != fastjson.TypeObject {
		return fail(Errorf(ReasonMalformed, "", "an event must be a JSON object {name, params}"))
	}
	var name string
	nv := v.Get("name")
	if nv != nil && nv.Type() == fastjson.TypeString {
		b, _ := nv.StringBytes()
		name = string(b)
	}
	if e := eventName(name); e != nil {
		return fail(e)
	}
	if e := reservedName(name); e != nil {
		return fail(e)
	}
	for _, k := range [...]struct {
		key string
		dst *string
	}{{"timestamp_micros", &f.TimestampMicros}, {"event_id", &f.EventID}} {
		if fv := v.Get(k.key); fv != nil {
			s, ok, e := scalar(fv)
			if e != nil {
				return fail(Errorf(ReasonMalformed, k.key, "%s", e.Message))
			}
			if ok && !(k.key == "timestamp_micros" && zeroNumber(s)) {
				*k.dst = s
				f.OwnTimestamp = f.OwnTimestamp || k.key == "timestamp_micros"
			}
		}
	}
	f.Size = len(name) + len(f.ClientID) + len(f.UserID)
	if pv := v.Get("params"); pv != nil {
		if e := params(f, pv, "params"); e != nil {
			return fail(e)
		}
	}
	if f.Size > MaxHitBytes {
		if items := f.Params["items"]; len(items) > f.Size/2 {
			// A purchase's cart, the usual cause: GA4 takes 200 items.
			return fail(Errorf(ReasonTooLarge, "params.items", "the event is %d bytes, %d of them its items; the limit of an event is %d: send each item with fewer fields (item_id, price and quantity are what reports need), or the purchase without items", f.Size, len(items), MaxHitBytes))
		}
		return fail(Errorf(ReasonTooLarge, "", "the event is %d bytes; the limit is %d", f.Size, MaxHitBytes))
	}
	p := f.Params
	// The page and the engagement time, on every event as GA4 sends them:
	// a server's purchase that opens a session takes its attribution from
	// its page_referrer.
	f.Location, f.Title, f.Referrer = p["page_location"], p["page_title"], p["page_referrer"]
	f.EngagementTime = p["engagement_time_msec"]
	switch name {
	case "page_view":
		f.Type = "pageview"
	case "user_engagement":
		f.Type = "engagement"
	case "timing_complete":
		// GA4's form of Universal Analytics' timing hit: the same
		// fields under the names gtag.js sends them with, which collection
		// maps to an event as it maps /collect's utc, utv, utt and utl.
		f.Type = "timing"
		f.TimingCategory, f.TimingVariable = p["event_category"], p["name"]
		f.TimingTime, f.TimingLabel = p["value"], p["event_label"]
		f.NonInteraction = p["non_interaction"]
	case "exception":
		// GA4's form of the exception hit (exd, exf).
		f.Type = "exception"
		f.ExceptionDescription, f.ExceptionFatal = p["description"], p["fatal"]
		f.NonInteraction = p["non_interaction"]
	default:
		f.Type = "event"
		f.Action = name
		f.Category = p["event_category"]
		if f.Category == "" {
			f.Category = name
		}
		f.Label = p["event_label"]
		f.Value = p["value"]
		f.NonInteraction = p["non_interaction"] // validated as ni is
		if name == "campaign_details" {
			// GA4's way to give the campaign apart from page_location:
			// /collect's cs, cm, cn, ck and cc, which processing reads
			// as it reads utm tags. It says where the visitor came from,
			// not what the visitor did: never an interaction.
			f.CampaignSource, f.CampaignMedium, f.CampaignName = p["source"], p["medium"], p["campaign"]
			f.CampaignTerm, f.CampaignContent = p["term"], p["content"]
			f.NonInteraction = "1"
		}
	}
	if f.EventID == "" {
		f.EventID = p["event_id"]
		f.EventIDInParams = f.EventID != ""
	}
	return it
}

// requestHead is what the Measurement API request req's events are
// replayed after: every field of req but its events (client_id, user_id,
// timestamp_micros, and any other) as sent, then `"events":[`; cut to
// MaxRawBytes, since no dead letter keeps more.
func requestHead(req *fastjson.Value) []byte {
	b := []byte{'{'}
	if o, err := req.Object(); err == nil {
		o.Visit(func(key []byte, v *fastjson.Value) {
			if string(key) == "events" || len(b) > MaxRawBytes {
				return
			}
			k, _ := json.Marshal(string(key))
			b = append(append(b, k...), ':')
			b = append(v.MarshalTo(b), ',')
		})
	}
	b = append(b, `"events":[`...)
	return b[:min(len(b), MaxRawBytes)]
}

// Replayable returns, for a Measurement API body that Measurement read,
// a function that gives its event i as a request of its own, replayable as
// is (the request's other fields as sent, and just that event, its bytes
// as sent), at most the 16 KiB a dead letter keeps: the payload of a
// rejected event's dead letter. The body is parsed again at the first call
// (rejections are rare), and not used after it; the request's other fields
// are written once for all its events, and a dead letter holds no more
// than it keeps (a request of 500 bad events beside a field of 500 KiB
// made 500 copies of that field).
func Replayable(body []byte) func(i int) string {
	var p fastjson.Parser // copies the body
	var req *fastjson.Value
	var events []*fastjson.Value
	var head []byte
	var full string // every event's payload when the head alone fills one
	return func(i int) string {
		if req == nil {
			v, err := p.ParseBytes(body)
			if err != nil {
				return truncate(string(body)) // not a body Measurement read
			}
			req, events, head = v, v.GetArray("events"), requestHead(v)
			if len(head) == MaxRawBytes {
				full = string(head)
			}
		}
		switch {
		case i < 0 || i >= len(events):
			return truncate(req.String())
		case full != "":
			return full
		}
		b := append(make([]byte, 0, MaxRawBytes), head...)
		b = append(events[i].MarshalTo(b), "]}"...)
		return string(b[:min(len(b), MaxRawBytes)])
	}
}

// NotStored stands in a dead letter for an address field (ip_override,
// uip) that is no address: it may hold one all the same (with a port, a
// space), which must not be stored.
const NotStored = "(not stored)"

// TextField finds a field of a payload that is not JSON (a body that is
// not, or one cut to a dead letter's size): "name": and its value, a
// string, or anything up to the next ',', '}' or ']'.
type TextField struct {
	name string
	re   *regexp.Regexp
}

// NewTextField is the TextField of name.
func NewTextField(name string) TextField {
	return TextField{name: name, re: regexp.MustCompile(`"` + regexp.QuoteMeta(name) + `"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}\]]*)`)}
}

// Replace returns payload with the value of every occurrence of the field
// replaced by the string value gives, told the value as sent and whether
// it is a JSON string (else it is given "").
func (f TextField) Replace(payload string, value func(v string, isString bool) string) string {
	return f.re.ReplaceAllStringFunc(payload, func(m string) string {
		var v string
		isString := json.Unmarshal([]byte(f.re.FindStringSubmatch(m)[1]), &v) == nil
		q, _ := json.Marshal(value(v, isString))
		return `"` + f.name + `":` + string(q)
	})
}

var ipOverrideInText = NewTextField("ip_override")

// StoredIPOverride returns payload, a Measurement API request kept in a
// dead letter (the body as sent, or a replayable request of one event),
// with its ip_override, the visitor's full address, as stored gives what
// may be stored of it: its truncation (the request stays replayable), ""
// when nothing may be (the field is left out), or false when it is no
// address, which is kept as "(not stored)". The rest stays as sent. The
// full address is used in flight only, as a browser's is: a dead letter
// is stored.
func StoredIPOverride(payload string, stored func(ip string) (string, bool)) string {
	if !strings.Contains(payload, "override") && !strings.Contains(payload, `\u`) {
		return payload // no ip_override, however escaped
	}
	var p fastjson.Parser
	v, err := p.Parse(payload)
	if err != nil {
		return ipOverrideInText.Replace(payload, func(ip string, isString bool) string {
			if t, ok := stored(ip); isString && ok && t != "" {
				return t
			}
			return NotStored
		})
	}
	o, err := v.Object()
	if err != nil || o.Get("ip_override") == nil {
		return payload
	}
	b := []byte{'{'}
	o.Visit(func(key []byte, v *fastjson.Value) {
		k, _ := json.Marshal(string(key))
		if string(key) == "ip_override" && v.Type() != fastjson.TypeNull {
			t, ok := "", false
			if s, err := v.StringBytes(); err == nil {
				t, ok = stored(string(s))
			}
			switch {
			case ok && t == "":
				return
			case !ok:
				t = NotStored
			}
			k = append(k, ':')
			q, _ := json.Marshal(t)
			b = append(append(b, k...), q...)
			b = append(b, ',')
			return
		}
		b = append(append(b, k...), ':')
		b = append(v.MarshalTo(b), ',')
	})
	if b[len(b)-1] == ',' {
		b = b[:len(b)-1]
	}
	return string(append(b, '}'))
}

// eventName checks a GA4 event name: a letter, then letters, digits and
// underscores, at most 40 characters.
func eventName(s string) *Error {
	if s == "" {
		return Errorf(ReasonMalformed, "name", "every event needs a name, e.g. page_view or sign_up")
	}
	if len(s) > 40 {
		return Errorf(ReasonMalformed, "name", "event name %.40q... is longer than 40 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_')) {
			return Errorf(ReasonMalformed, "name", "event name %q: use a letter, then letters, digits and underscores", s)
		}
	}
	return nil
}

// reservedName refuses the event names GA4's Measurement Protocol reserves
// for events Google's own SDKs log (its reference's list), and those with
// its reserved prefixes: stored as events of ours, a server forwarding
// session_start or first_visit would cancel the bounce of every session it
// touched and add events the merchant never sent. user_engagement is
// reserved too but ours (the engagement ping), as page_view is GA4's own;
// names are compared as sent, case-sensitive as GA4's are.
func reservedName(name string) *Error {
	switch name {
	case "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward", "adunit_exposure",
		"app_background", "app_clear_data", "app_exception", "app_install", "app_remove", "app_store_refund",
		"app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
		"app_update", "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open",
		"error", "firebase_campaign", "firebase_in_app_message_action", "firebase_in_app_message_dismiss",
		"firebase_in_app_message_impression", "first_open", "first_visit", "in_app_purchase",
		"notification_dismiss", "notification_foreground", "notification_open", "notification_receive",
		"notification_send", "os_update", "screen_view", "session_start":
		return Errorf(ReasonReservedName, "name", "event name %q is reserved: GA4 keeps it for events its own SDKs log, and sessions and first visits are derived from the visitor's hits; do not forward it (an event of your own needs another name)", name)
	}
	for _, prefix := range [...]string{"firebase_", "google_", "ga_"} {
		if strings.HasPrefix(name, prefix) {
			return Errorf(ReasonReservedName, "name", "event name %q is reserved: GA4 keeps names starting with %s for its own; send the event under another name", name, prefix)
		}
	}
	return nil
}
