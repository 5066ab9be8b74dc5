package parse

import (
	"strings"

	"github.com/valyala/fastjson"
)

// Ignored lists what a request carried that the parsers do not read
// (unknown names are ignored, so that newer senders keep working): for
// the validation endpoints, which warn about it. Names are as the sender
// wrote them: a query's or a batch hit's parameter (uip), a Measurement
// API request's field (user_properties) or event's (events[0].items).
type Ignored struct {
	Request []string   // of the request as a whole (Measurement API)
	Hits    [][]string // of each hit or event, in order
}

// known reports whether Fields has a field of name.
func known(name string) bool {
	var f Fields
	return f.set(name, "")
}

// IgnoredQuery returns the names of a pixel's query that Query ignores.
func IgnoredQuery(raw string) Ignored {
	var names []string
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, _, _ := strings.Cut(kv, "=")
		k = unescape(k)
		if k == "" || known(k) {
			continue
		}
		if name, ok := strings.CutPrefix(k, "ep."); ok && name != "" {
			continue
		}
		names = appendNew(names, k)
	}
	return Ignored{Hits: [][]string{names}}
}

// IgnoredBatch returns the names of each hit of a batch body that Batch
// ignores; nothing for a body Batch refuses.
func IgnoredBatch(body []byte) Ignored {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return Ignored{}
	}
	var ig Ignored
	for _, h := range v.GetArray("hits") {
		var names []string
		if o, err := h.Object(); err == nil {
			o.Visit(func(key []byte, _ *fastjson.Value) {
				if k := string(key); k != "ep" && !known(k) {
					names = appendNew(names, k)
				}
			})
		}
		ig.Hits = append(ig.Hits, names)
	}
	return ig
}

// IgnoredMeasurement returns the fields of a Measurement API body that
// Measurement does not read (those of its user_location and device too:
// user_location.city, device.model), and of each event, besides its params
// (all kept), session_id among them: kept, but sessions are derived.
func IgnoredMeasurement(body []byte) Ignored {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return Ignored{}
	}
	var ig Ignored
	if o, err := v.Object(); err == nil {
		o.Visit(func(key []byte, val *fastjson.Value) {
			switch k := string(key); k {
			case "client_id", "user_id", "timestamp_micros", "events", "ip_override", "user_agent":
			case "user_location", "device":
				if inner, err := val.Object(); err == nil {
					inner.Visit(func(key []byte, _ *fastjson.Value) {
						if !visitorField(k, string(key)) {
							ig.Request = appendNew(ig.Request, k+"."+string(key))
						}
					})
				}
			default:
				ig.Request = appendNew(ig.Request, k)
			}
		})
	}
	for i, e := range v.GetArray("events") {
		var names []string
		if o, err := e.Object(); err == nil {
			o.Visit(func(key []byte, _ *fastjson.Value) {
				switch k := string(key); k {
				case "name", "params", "timestamp_micros", "event_id":
				default:
					names = appendNew(names, EventField(i, k))
				}
			})
		}
		if e.Exists("params", "session_id") {
			names = appendNew(names, EventField(i, "params.session_id"))
		}
		ig.Hits = append(ig.Hits, names)
	}
	return ig
}

func appendNew(names []string, name string) []string {
	for _, n := range names {
		if n == name {
			return names
		}
	}
	return append(names, name)
}

// visitorField reports whether Measurement reads the field key of the
// request's object (user_location, device).
func visitorField(object, key string) bool {
	for _, fd := range visitorFields {
		if fd.object == object && fd.key == key {
			return true
		}
	}
	return false
}
