package collect

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
)

// TestTimingAndExceptionHits: a timing or an exception hit is validated
// field by field and queued as the non-interaction event it stands for;
// its fields on another hit type, and an event's on it, are refused.
func TestTimingAndExceptionHits(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	long := func(n int) string { return strings.Repeat("x", n) }
	type event struct {
		Category, Action, Label string
		Value                   float64
		HasValue                bool
	}
	tests := []struct {
		name      string
		hit       string // a query string, or a batch's hit in JSON
		want      event
		wantField string // "" when accepted
		inText    string // in the rejection's message
	}{
		{"timing", "t=timing&utc=JS%20Dependencies&utv=load&utt=3549&utl=jQuery", event{"JS Dependencies", "load", "jQuery", 3549, true}, "", ""},
		{"timing without a category", "t=timing&utv=load&utt=120", event{"timing", "load", "", 120, true}, "", ""},
		{"timing of 0 ms", "t=timing&utv=load&utt=0", event{"timing", "load", "", 0, true}, "", ""},
		{"timing of one day", "t=timing&utv=load&utt=86400000", event{"timing", "load", "", 86400000, true}, "", ""},
		{"timing in JSON", `{"t":"timing","utc":"img","utv":"hero","utt":250,"utl":null}`, event{"img", "hero", "", 250, true}, "", ""},
		{"timing ni=0 is still non-interaction", "t=timing&utv=load&utt=1&ni=0", event{"timing", "load", "", 1, true}, "", ""},
		{"timing without utv", "t=timing&utc=JS&utt=1", event{}, "utv", "needs the name of what was timed"},
		{"timing without utt", "t=timing&utv=load", event{}, "utt", "needs the time in milliseconds"},
		{"utt negative", "t=timing&utv=load&utt=-1", event{}, "utt", "whole number of milliseconds"},
		{"utt a fraction", "t=timing&utv=load&utt=12.5", event{}, "utt", "round a fraction"},
		{"utt a fraction in JSON", `{"t":"timing","utv":"load","utt":12.5}`, event{}, "utt", "whole number"},
		{"utt over a day", "t=timing&utv=load&utt=86400001", event{}, "utt", "between 0 and one day"},
		{"utt not a number", "t=timing&utv=load&utt=fast", event{}, "utt", "whole number"},
		{"utc at its limit", "t=timing&utv=v&utt=1&utc=" + long(150), event{long(150), "v", "", 1, true}, "", ""},
		{"utc too long", "t=timing&utv=v&utt=1&utc=" + long(151), event{}, "utc", "limit is 150"},
		{"utv too long", "t=timing&utt=1&utv=" + long(501), event{}, "utv", "limit is 500"},
		{"utl too long", "t=timing&utv=v&utt=1&utl=" + long(501), event{}, "utl", "limit is 500"},
		{"utl not UTF-8", "t=timing&utv=v&utt=1&utl=%FF", event{}, "utl", "UTF-8"},
		{"ni not a flag on a timing", "t=timing&utv=load&utt=1&ni=yes", event{}, "ni", "not a flag"},
		{"ec on a timing", "t=timing&utv=load&utt=1&ec=JS", event{}, "ec", "a timing hit carries its own (utc, utv, utt, utl)"},
		{"ev on a timing", "t=timing&utv=load&utt=1&ev=1", event{}, "ev", "event's field"},
		{"exd on a timing", "t=timing&utv=load&utt=1&exd=x", event{}, "exd", "only for exception hits"},

		{"exception", "t=exception&exd=TypeError&exf=0", event{"exception", "TypeError", "non-fatal", 0, false}, "", ""},
		{"fatal exception", "t=exception&exd=TypeError&exf=1", event{"exception", "TypeError", "fatal", 0, false}, "", ""},
		{"exception fatal by default, as in Universal Analytics", "t=exception&exd=TypeError", event{"exception", "TypeError", "fatal", 0, false}, "", ""},
		{"exception without a description", "t=exception&exf=0", event{"exception", "(not set)", "non-fatal", 0, false}, "", ""},
		{"exception in JSON", `{"t":"exception","exd":"x is undefined","exf":false}`, event{"exception", "x is undefined", "non-fatal", 0, false}, "", ""},
		{"exception exf true in JSON", `{"t":"exception","exf":true}`, event{"exception", "(not set)", "fatal", 0, false}, "", ""},
		{"exf not a flag", "t=exception&exf=yes", event{}, "exf", "not a flag"},
		{"exd of 150 bytes", "t=exception&exf=0&exd=" + long(150), event{"exception", long(150), "non-fatal", 0, false}, "", ""},
		{"exd cut to an action's limit", "t=exception&exf=0&exd=" + long(501), event{"exception", long(500), "non-fatal", 0, false}, "", ""},
		{"exd cut at a character", "t=exception&exf=0&exd=x" + strings.Repeat("%C3%A9", 300), event{"exception", "x" + strings.Repeat("é", 249), "non-fatal", 0, false}, "", ""},
		{"exd of 2000 bytes in JSON", `{"t":"exception","exf":false,"exd":"` + long(2000) + `"}`, event{"exception", long(500), "non-fatal", 0, false}, "", ""},
		{"exd not UTF-8", "t=exception&exd=%FF", event{}, "exd", "UTF-8"},
		{"ea on an exception", "t=exception&exd=x&ea=crash", event{}, "ea", "an exception hit carries its own (exd, exf)"},
		{"utt on an exception", "t=exception&exd=x&utt=5", event{}, "utt", "only for timing hits"},

		{"utt on an event", "t=event&ea=play&utt=5", event{}, "utt", "only for timing hits (t=timing), not for t=event"},
		{"exd on a pageview", "t=pageview&exd=x", event{}, "exd", "only for exception hits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f parse.Fields
			if strings.HasPrefix(tt.hit, "{") {
				items, err := parse.Batch(nil, []byte(`{"hits":[`+tt.hit+`]}`))
				if err != nil || items[0].Err != nil {
					t.Fatalf("%v %v", err, items[0].Err)
				}
				f = items[0].Fields
			} else {
				var err error
				if f, err = parse.Query(tt.hit); err != nil {
					t.Fatal(err)
				}
			}
			f.ClientID, f.Location = "c", "https://shop.example/"
			c := &client{received: s.now()}
			c.addr = addressingOf(p, c.ip)
			h, e := s.build(new(hit.Hit), p, &f, c, hit.OriginBrowser)
			if tt.wantField != "" {
				if e == nil || e.Reason != parse.ReasonMalformed || e.Field != tt.wantField || !strings.Contains(e.Message, tt.inText) {
					t.Fatalf("got %v, want malformed %s saying %q", e, tt.wantField, tt.inText)
				}
				return
			}
			if e != nil {
				t.Fatalf("rejected: %v", e)
			}
			got := event{h.Category, h.Action, h.Label, h.Value, h.HasValue}
			if h.Type != hit.TypeEvent || got != tt.want || h.Params["non_interaction"] != "1" {
				t.Fatalf("got %s %+v non_interaction=%q, want event %+v non_interaction=1", h.Type, got, h.Params["non_interaction"], tt.want)
			}
			if h.ID != h.DeriveID("") {
				t.Errorf("ID %s is not derived from the event as queued (%s)", h.ID, h.DeriveID(""))
			}
		})
	}
}

// TestTimingHitIDs: without hid, the ID of a timing hit is derived from
// the event it becomes, so two timings of one second that differ only in
// their time or name are two hits; with hid, from hid alone, as before.
func TestTimingHitIDs(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	c := &client{received: s.now()}
	c.addr = addressingOf(p, c.ip)
	id := func(raw string) string {
		t.Helper()
		f, err := parse.Query(raw + "&cid=c&dl=https%3A%2F%2Fshop.example%2F")
		if err != nil {
			t.Fatal(err)
		}
		h, e := s.build(new(hit.Hit), p, &f, c, hit.OriginBrowser)
		if e != nil {
			t.Fatal(e)
		}
		return h.ID
	}
	a := id("t=timing&utv=load&utt=100")
	if a == id("t=timing&utv=load&utt=101") || a == id("t=timing&utv=render&utt=100") {
		t.Error("timings differing in their time or name have one ID")
	}
	if a != id("t=timing&utv=load&utt=100") {
		t.Error("a timing sent twice in a second has two IDs")
	}
	if id("t=timing&utv=load&utt=100&hid=h1") != id("t=timing&utv=render&utt=7&hid=h1") {
		t.Error("the ID of a hit with hid depends on more than hid")
	}
}

// TestFieldsPayloadKeepsEveryField: a dead letter of a hit rejected after
// parsing (fieldsPayload) holds every field it was read with, so that it
// can be re-sent as it was: a field added to parse.Fields and not to
// fieldsPayload fails here.
func TestFieldsPayloadKeepsEveryField(t *testing.T) {
	var f parse.Fields
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		if fv := v.Field(i); fv.Kind() == reflect.String {
			fv.SetString(fmt.Sprint("value-", i))
		}
	}
	f.Params = map[string]string{"plan": "pro"}
	payload := fieldsPayload(&f)
	items, err := parse.Batch(nil, []byte(`{"hits":[`+payload+`]}`))
	if err != nil || items[0].Err != nil {
		t.Fatalf("%v %v", err, items[0].Err)
	}
	got := items[0].Fields
	// Read back as a batch's hit: its size is counted, and timestamp_micros
	// (the Measurement API's, whose dead letters are its own events) is no
	// /collect parameter.
	got.Size, got.TimestampMicros = 0, f.TimestampMicros
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("payload %s\nread back as %+v\nwant        %+v", payload, got, f)
	}
}
