package parse

import (
	"fmt"
	"strings"
	"testing"
)

func TestIgnored(t *testing.T) {
	tests := []struct {
		name string
		got  Ignored
		want string
	}{
		{"query", IgnoredQuery("v=1&tid=AT-X&uip=1.2.3.4&ua=python&ep.plan=pro&ep.=x&%75ip=2&bogus&t=event"), "{[] [[uip ua ep. bogus]]}"},
		{"query without any", IgnoredQuery("v=1&t=pageview&dl=x"), "{[] [[]]}"},
		{"timing and exception parameters are read", IgnoredQuery("t=timing&utc=a&utv=b&utt=1&utl=c&exd=d&exf=1"), "{[] [[]]}"},
		{"batch", IgnoredBatch([]byte(`{"hits":[{"t":"pageview","ep":{"a":1}},{"t":"event","uip":"1.2.3.4","ua":"x"},5]}`)), "{[] [[] [uip ua] []]}"},
		{"batch not JSON", IgnoredBatch([]byte(`{`)), "{[] []}"},
		{"measurement", IgnoredMeasurement([]byte(`{"client_id":"c","user_properties":{},"consent":{},"events":[` +
			`{"name":"purchase","items":[],"params":{"session_id":"1","value":1}},{"name":"page_view","params":{}}]}`)),
			"{[user_properties consent] [[events[0].items events[0].params.session_id] []]}"},
		{"measurement: the visitor's context is read, but not all of it", IgnoredMeasurement([]byte(`{"client_id":"c","ip_override":"192.0.2.1","user_agent":"x",` +
			`"user_location":{"country_id":"DE","city":"Berlin","region_id":"DE-BE"},"device":{"category":"mobile","model":"Pixel 8","browser_version":"120"},` +
			`"events":[{"name":"a"}]}`)),
			"{[user_location.city user_location.region_id device.model device.browser_version] [[]]}"},
	}
	for _, tt := range tests {
		if got := fmt.Sprintf("{%v %v}", tt.got.Request, tt.got.Hits); got != tt.want { // the repeated names are TestRepeated's
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestRepeated: a name read that a request gives more than once is listed
// with which of its values the parsers read, as they read it (Query and
// Batch the last of a hit's fields and parameters, Measurement the first
// of a field and the last of a params name), so that the validation
// endpoints can say so; the tracking ID is refused, not listed.
func TestRepeated(t *testing.T) {
	tests := []struct {
		name string
		got  Ignored
		want string
	}{
		{"query", IgnoredQuery("v=1&tid=AT-X&t=pageview&cid=a&cid=b&t=event&ep.plan=a&ep.plan=b&ep.x=1&uip=1&uip=2&cid=c"),
			"[] [[{t 2 false} {cid 3 false} {ep.plan 2 false}]]"},
		{"query, each once", IgnoredQuery("v=1&tid=AT-X&t=pageview&cid=a"), "[] [[]]"},
		{"batch", IgnoredBatch([]byte(`{"hits":[{"t":"pageview","cid":"a","cid":"b","ep":{"p":1,"p":2}},{"t":"event","ep":{"q":1},"ep":{"q":2,"r":3}}],"hits":[],"tid":"AT-X"}`)),
			"[{hits 2 true}] [[{cid 2 false} {ep.p 2 false}] [{ep.q 2 false}]]"},
		{"measurement", IgnoredMeasurement([]byte(`{"client_id":"a","client_id":"b","user_location":{"country_id":"DE","country_id":"FR"},` +
			`"events":[{"name":"a","name":"b","params":{"v":1,"v":2}},{"name":"c","params":{"w":1},"params":{"w":2}}]}`)),
			"[{client_id 2 true} {user_location.country_id 2 true}] [[{events[0].name 2 true} {events[0].params.v 2 false}] [{events[1].params 2 true}]]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(tt.got.RepeatedRequest, tt.got.RepeatedHits); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// What the parsers read is what the lists say they read.
	q, err := Query("v=1&tid=AT-X&t=pageview&cid=a&cid=b&t=event&ea=x&ep.plan=a&ep.plan=b&cid=c")
	if err != nil || q.Type != "event" || q.ClientID != "c" || q.Params["plan"] != "b" {
		t.Errorf("query: %v, type %q, cid %q, plan %q; want the last of each", err, q.Type, q.ClientID, q.Params["plan"])
	}
	for _, body := range []string{
		`{"hits":[{"t":"pageview","cid":"a","cid":"b","ep":{"p":1,"p":2}}],"hits":[{"t":"event","cid":"z"}]}`,       // the fast path's shape
		`{"hits":[{"t":"pageview","cid":"a","cid":"b\u0062","ep":{"p":1,"p":2}}],"hits":[{"t":"event","cid":"z"}]}`, // fastjson's (an escape)
	} {
		items, err := Batch(nil, []byte(body))
		if err != nil || len(items) != 1 || items[0].Fields.Type != "pageview" || !strings.HasPrefix(items[0].Fields.ClientID, "b") || items[0].Fields.Params["p"] != "2" {
			t.Errorf("batch %s: %v %+v; want the first hits, the last cid and p", body, err, items)
		}
	}
	items, err := Measurement(nil, []byte(`{"client_id":"a","client_id":"b","user_location":{"country_id":"DE","country_id":"FR"},`+
		`"events":[{"name":"a","name":"b","params":{"v":1,"v":2}},{"name":"c","params":{"w":1},"params":{"w":2}}]}`))
	if err != nil || len(items) != 2 {
		t.Fatalf("measurement: %v %+v", err, items)
	}
	if f := items[0].Fields; f.ClientID != "a" || f.Visitor == nil || f.Visitor.CountryID != "DE" || f.Action != "a" || f.Params["v"] != "2" {
		t.Errorf("measurement event 0: client %q, visitor %+v, action %q, v %q; want the first field, the last param", f.ClientID, f.Visitor, f.Action, f.Params["v"])
	}
	if f := items[1].Fields; f.Params["w"] != "1" {
		t.Errorf("measurement event 1: w %q; want the first params object's", f.Params["w"])
	}
	if got := IgnoredBatch([]byte(`{"hits":[{"t":"pageview"}],"tid":"AT-X"}`)).Request; fmt.Sprint(got) != "[tid]" {
		t.Errorf("a batch's top-level tid: ignored %v, want [tid]", got)
	}
}
