package collect

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

// FuzzParseBatchAndBuild runs whatever the JSON parser accepts through the
// whole validation: an accepted hit must be one that processing can decode
// and that carries no full IP.
func FuzzParseBatchAndBuild(f *testing.F) {
	for _, s := range []string{
		`{"hits":[{"v":1,"cid":"c","t":"pageview","dl":"https://shop.example/a?b=c","hid":"h"}]}`,
		`{"hits":[{"cid":"c","t":"event","ea":"x","ev":"1e300","ni":"1","dh":"SHOP.example:443","dp":"/x"}]}`,
		`{"hits":[{"t":"engagement","et":5,"qt":100,"dl":"http://[::1]/"}]}`,
		`{"hits":[{"cid":"c","t":"timing","dl":"https://shop.example/%zz"}]}`,
		`{"hits":[{"cid":"c","t":"timing","utc":"JS","utv":"load","utt":3549,"utl":"jQuery","dp":"/"},{"cid":"c","t":"exception","exd":"x","exf":"yes","dp":"/"}]}`,
	} {
		f.Add([]byte(s))
	}
	r, err := rules.Compile(rules.Defaults(), 1, []string{"shop.example"})
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{cfg: Config{Salts: newMemSalts()}, now: time.Now}
	p := &Property{ID: "p", TenantID: "t", TrackingID: "AT-SHPSHPSHP2", Cookieless: true, Shards: 3, Rules: r}
	c := &client{ip: netip.MustParseAddr("203.0.113.77"), userAgent: "ua", device: device.Info{Category: "desktop"}, received: time.Now()}
	c.addr = addressingOf(p, c.ip)
	if err := s.salts(context.Background(), c, p.Location); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := parse.Batch(nil, body)
		if err != nil {
			return
		}
		for _, it := range items {
			if it.Err != nil {
				continue
			}
			h, e := s.build(new(hit.Hit), p, &it.Fields, c, hit.OriginBrowser)
			if e != nil {
				if e.Reason == "" || e.Message == "" {
					t.Fatalf("rejection without reason or message: %+v", e)
				}
				continue
			}
			b, err := hit.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			back, err := hit.Unmarshal(b)
			if err != nil {
				t.Fatalf("processing cannot decode an accepted hit: %v\n%s", err, b)
			}
			if back.ID != h.ID || h.IP != "203.0.113.0" || back.Time.After(c.received) {
				t.Fatalf("accepted hit %s", b)
			}
		}
	})
}

// FuzzParseMeasurementAndBuild runs whatever the Measurement API parser
// reads through the whole validation, the visitor's context included: a
// rejected event's field is named as the sender wrote it (a request field,
// or one of events[i]), never as a /collect parameter; an accepted event
// keeps no more of ip_override than the property stores.
func FuzzParseMeasurementAndBuild(f *testing.F) {
	for _, s := range []string{
		`{"client_id":"c","events":[{"name":"page_view","params":{"page_location":"https://shop.example/","page_title":"T"}}]}`,
		`{"client_id":"c","events":[{"name":"purchase","event_id":"e","params":{"value":"x","currency":"JPY","non_interaction":"yes"}}]}`,
		`{"user_id":"u","timestamp_micros":"1","events":[{"name":"user_engagement","params":{"engagement_time_msec":-1}},{"name":"a","timestamp_micros":2}]}`,
		`{"client_id":"c","events":[{"name":"x","params":{"page_location":"/rel","page_referrer":"` + "\xff" + `","event_id":1}}]}`,
		`{"client_id":"c","events":[{"name":"timing_complete","params":{"name":"load","value":12.5}},{"name":"exception","params":{"description":"x","fatal":"maybe"}}]}`,
		`{"client_id":"c","ip_override":"203.0.113.7","user_agent":"Mozilla/5.0 (iPhone)","user_location":{"country_id":"de","city":"Berlin"},` +
			`"device":{"category":"Mobile","screen_resolution":"390x844","language":"de","browser":"Safari","operating_system":"iOS","model":"x"},"events":[{"name":"a"}]}`,
		`{"client_id":"c","ip_override":"[2001:db8::1]:80","user_location":{"country_id":"Germany"},"device":{"category":"phone","screen_resolution":"x"},"events":[{"name":"a"}]}`,
	} {
		f.Add([]byte(s))
	}
	r, err := rules.Compile(rules.Defaults(), 1, []string{"shop.example"})
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{now: time.Now, cfg: Config{Devices: device.NewParser(100)}}
	p := &Property{ID: "p", TenantID: "t", TrackingID: "AT-SHPSHPSHP2", Currency: "EUR", Shards: 3, Rules: r}
	requestFields := map[string]bool{"client_id": true, "user_id": true, "timestamp_micros": true,
		"ip_override": true, "user_agent": true, "user_location.country_id": true, "device.category": true, "device.browser": true,
		"device.operating_system": true, "device.screen_resolution": true, "device.language": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := parse.Measurement(nil, body)
		if err != nil {
			return
		}
		c := s.clientOf(nil, hit.OriginMeasurement, items, p, time.Now())
		for i, it := range items {
			e := it.Err
			if e == nil {
				var h *hit.Hit
				h, e = s.build(new(hit.Hit), p, &it.Fields, &c, hit.OriginMeasurement)
				if e == nil {
					if h.IP != storedIP(p, c.ip) {
						t.Fatalf("event %d: stored IP %q of ip_override %q", i, h.IP, c.ip)
					}
					continue
				}
				e = measurementError(e, i, &it.Fields)
			}
			event := parse.EventField(i, "")
			if e.Reason == "" || e.Message == "" || !requestFields[e.Field] && e.Field != event && !strings.HasPrefix(e.Field, event+".") {
				t.Fatalf("event %d: rejection %+v", i, e)
			}
			if name, ok := strings.CutPrefix(e.Field, event+"."); ok && name != "name" && name != "event_id" && name != "timestamp_micros" &&
				name != "params" && !strings.HasPrefix(name, "params.") {
				t.Fatalf("event %d: rejection names %s, not a field of an event", i, e.Field)
			}
		}
	})
}
