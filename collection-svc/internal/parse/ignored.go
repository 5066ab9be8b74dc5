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
	Request []string   // of the request as a whole (Measurement API, a batch's top level)
	Hits    [][]string // of each hit or event, in order
	// RepeatedRequest and RepeatedHits are the names read that the request
	// (or each hit or event) gives more than once, of which one value is
	// read and the others are not: which one the parsers take, said so that
	// a sender finds the mistake (the tracking ID is refused instead).
	RepeatedRequest []Repeated
	RepeatedHits    [][]Repeated
}

// Repeated is a name given Times times, of which the first value is read
// (First) or the last.
type Repeated struct {
	Name  string
	Times int
	First bool
}

// repeats counts names in the order they first appear.
type repeats struct {
	names []string
	count map[string]int
}

func (r *repeats) add(name string) {
	if r.count == nil {
		r.count = map[string]int{}
	}
	if r.count[name] == 0 {
		r.names = append(r.names, name)
	}
	r.count[name]++
}

// list returns the names added more than once; first says which value of
// each the parser reads.
func (r *repeats) list(first func(name string) bool) []Repeated {
	var out []Repeated
	for _, n := range r.names {
		if c := r.count[n]; c > 1 {
			out = append(out, Repeated{Name: n, Times: c, First: first(n)})
		}
	}
	return out
}

func last(string) bool  { return false }
func first(string) bool { return true }

// known reports whether Fields has a field of name.
func known(name string) bool {
	var f Fields
	return f.set(name, "")
}

// IgnoredQuery returns the names of a pixel's query that Query ignores,
// and those it reads that are given more than once (the last is read).
func IgnoredQuery(raw string) Ignored {
	var names []string
	var rep repeats
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, _, _ := strings.Cut(kv, "=")
		k = unescape(k)
		if k == "" {
			continue
		}
		if known(k) {
			rep.add(k)
			continue
		}
		if name, ok := strings.CutPrefix(k, "ep."); ok && name != "" {
			rep.add(k)
			continue
		}
		names = appendNew(names, k)
	}
	return Ignored{Hits: [][]string{names}, RepeatedHits: [][]Repeated{rep.list(last)}}
}

// IgnoredBatch returns the names of a batch body that Batch ignores (at
// its top level, besides hits; and of each hit), and those it reads that
// are given more than once: of a hit's fields and its ep parameters the
// last is read (two ep objects are both read), of hits the first; nothing
// for a body Batch refuses.
func IgnoredBatch(body []byte) Ignored {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return Ignored{}
	}
	var ig Ignored
	var top repeats
	if o, err := v.Object(); err == nil {
		o.Visit(func(key []byte, _ *fastjson.Value) {
			if k := string(key); k == "hits" {
				top.add(k)
			} else {
				ig.Request = appendNew(ig.Request, k)
			}
		})
	}
	ig.RepeatedRequest = top.list(first)
	for _, h := range v.GetArray("hits") {
		var names []string
		var rep repeats
		if o, err := h.Object(); err == nil {
			o.Visit(func(key []byte, val *fastjson.Value) {
				switch k := string(key); {
				case k == "ep":
					if po, err := val.Object(); err == nil {
						po.Visit(func(key []byte, _ *fastjson.Value) { rep.add("ep." + string(key)) })
					}
				case known(k):
					rep.add(k)
				default:
					names = appendNew(names, k)
				}
			})
		}
		ig.Hits = append(ig.Hits, names)
		ig.RepeatedHits = append(ig.RepeatedHits, rep.list(last))
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
	var top repeats
	if o, err := v.Object(); err == nil {
		seen := map[string]bool{}
		o.Visit(func(key []byte, val *fastjson.Value) {
			switch k := string(key); k {
			case "client_id", "user_id", "timestamp_micros", "events", "ip_override", "user_agent":
				top.add(k)
			case "user_location", "device":
				top.add(k)
				if seen[k] {
					return // not read: the first is
				}
				seen[k] = true
				if inner, err := val.Object(); err == nil {
					inner.Visit(func(key []byte, _ *fastjson.Value) {
						if !visitorField(k, string(key)) {
							ig.Request = appendNew(ig.Request, k+"."+string(key))
						} else {
							top.add(k + "." + string(key))
						}
					})
				}
			default:
				ig.Request = appendNew(ig.Request, k)
			}
		})
	}
	// Fields are read with Get, the first of a name; params with Visit,
	// the last.
	ig.RepeatedRequest = top.list(first)
	for i, e := range v.GetArray("events") {
		var names []string
		var rep repeats
		if o, err := e.Object(); err == nil {
			readParams := false
			o.Visit(func(key []byte, val *fastjson.Value) {
				switch k := string(key); k {
				case "name", "timestamp_micros", "event_id":
					rep.add(EventField(i, k))
				case "params":
					rep.add(EventField(i, k))
					if readParams {
						return
					}
					readParams = true
					if po, err := val.Object(); err == nil {
						po.Visit(func(key []byte, _ *fastjson.Value) { rep.add(EventField(i, "params."+string(key))) })
					}
				default:
					names = appendNew(names, EventField(i, k))
				}
			})
		}
		if e.Exists("params", "session_id") {
			names = appendNew(names, EventField(i, "params.session_id"))
		}
		ig.Hits = append(ig.Hits, names)
		ig.RepeatedHits = append(ig.RepeatedHits, rep.list(func(name string) bool {
			return !strings.HasPrefix(name, EventField(i, "params."))
		}))
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
