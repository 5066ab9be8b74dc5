package collect

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
)

// TestMeasurementErrorsNameTheSendersFields: a rejected Measurement API
// event is told what is wrong in the terms of the request it sent: the
// field as it wrote it (client_id, events[1].params.value), never a
// /collect parameter (dl, ev, ep.coupon) it never used, the same in the
// answer and in the dead letter's detail.
func TestMeasurementErrorsNameTheSendersFields(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 4, countingQueue{new(int)}, &dead)
	now := time.Now()
	long := func(n int) string { return strings.Repeat("x", n) }
	url := "https://shop.example/"
	old := now.Add(-5 * time.Hour).UnixMicro()
	tests := []struct {
		name   string
		body   string // {"client_id":"c", "events": [...]} unless it starts with {
		code   string
		field  string
		inText string // in the message
	}{
		// build's rejections, named by measurementError.
		{"no client_id", `{"events":[{"name":"sign_up"}]}`, "malformed", "client_id", "client_id"},
		{"client_id too long", `{"client_id":"` + long(257) + `","events":[{"name":"sign_up"}]}`, "malformed", "client_id", "limit is 256"},
		{"user_id too long", `{"client_id":"c","user_id":"` + long(257) + `","events":[{"name":"sign_up"}]}`, "malformed", "user_id", "limit is 256"},
		{"page_location not a URL", `[{"name":"page_view","params":{"page_location":"/cart"}}]`, "malformed", "events[0].params.page_location", "absolute http(s) URL"},
		{"page_location too long", `[{"name":"page_view","params":{"page_location":"` + url + long(4096) + `"}}]`, "malformed", "events[0].params.page_location", "limit is 4096"},
		{"page_location's host not a host", `[{"name":"page_view","params":{"page_location":"https://shop$example/"}}]`, "malformed", "events[0].params.page_location", "not a valid host name"},
		{"page_location on another site", `[{"name":"purchase","params":{"page_location":"https://evil.example/"}}]`, "foreign_host", "events[0].params.page_location", "hostnames"},
		{"page_view without page_location", `[{"name":"page_view","params":{"page_title":"Cart"}}]`, "malformed", "events[0].params.page_location", "a page_view needs params.page_location"},
		{"page_title too long", `[{"name":"purchase","params":{"page_title":"` + long(1501) + `"}}]`, "malformed", "events[0].params.page_title", "limit is 1500"},
		{"page_referrer too long", `[{"name":"purchase","params":{"page_referrer":"` + url + long(4096) + `"}}]`, "malformed", "events[0].params.page_referrer", "limit is 4096"},
		{"event_category too long", `[{"name":"purchase","params":{"event_category":"` + long(151) + `"}}]`, "malformed", "events[0].params.event_category", "limit is 150"},
		{"event_label too long", `[{"name":"purchase","params":{"event_label":"` + long(501) + `"}}]`, "malformed", "events[0].params.event_label", "limit is 500"},
		{"event_id too long", `[{"name":"purchase","event_id":"` + long(129) + `"}]`, "malformed", "events[0].event_id", "limit is 128"},
		{"params.event_id too long", `[{"name":"purchase","params":{"event_id":"` + long(129) + `"}}]`, "malformed", "events[0].params.event_id", "limit is 128"},
		{"value not a number", `[{"name":"purchase","params":{"value":"lots"}}]`, "malformed", "events[0].params.value", "decimal number"},
		{"non_interaction not a flag", `[{"name":"purchase","params":{"non_interaction":"yes"}}]`, "malformed", "events[0].params.non_interaction", "not a flag"},
		{"engagement_time_msec not a number", `[{"name":"user_engagement","params":{"engagement_time_msec":"soon"}}]`, "malformed", "events[0].params.engagement_time_msec", "params.engagement_time_msec must be a number of milliseconds"},
		{"user_engagement without engagement_time_msec", `[{"name":"user_engagement"}]`, "malformed", "events[0].params.engagement_time_msec", "a user_engagement event needs params.engagement_time_msec"},
		{"timing_complete without name", `[{"name":"timing_complete","params":{"value":5}}]`, "malformed", "events[0].params.name", "a timing_complete event needs params.name"},
		{"timing_complete without value", `[{"name":"timing_complete","params":{"name":"load"}}]`, "malformed", "events[0].params.value", "a timing_complete event needs params.value"},
		{"timing_complete's value negative", `[{"name":"timing_complete","params":{"name":"load","value":-5}}]`, "malformed", "events[0].params.value", "whole number of milliseconds"},
		{"timing_complete's event_label too long", `[{"name":"timing_complete","params":{"name":"load","value":5,"event_label":"` + long(501) + `"}}]`, "malformed", "events[0].params.event_label", "limit is 500"},
		{"exception's fatal not a flag", `[{"name":"exception","params":{"fatal":"maybe"}}]`, "malformed", "events[0].params.fatal", "not a flag"},
		{"exception's description over a parameter's limit", `[{"name":"exception","params":{"description":"` + long(1001) + `"}}]`, "malformed", "events[0].params.description", "value to 1000"},
		{"custom parameter too long", `[{"name":"purchase","params":{"coupon":"` + long(1001) + `"}}]`, "malformed", "events[0].params.coupon", "value to 1000"},
		{"currency not the property's", `[{"name":"purchase","params":{"value":1000,"currency":"JPY"}}]`, "malformed", "events[0].params.currency", "the property reports in EUR; send values in EUR"},
		{"request's timestamp_micros", `{"client_id":"c","timestamp_micros":"soon","events":[{"name":"purchase"}]}`, "malformed", "timestamp_micros", "whole microseconds"},
		{"request's timestamp_micros too old", fmt.Sprintf(`{"client_id":"c","timestamp_micros":%d,"events":[{"name":"purchase"}]}`, old), "too_old", "timestamp_micros", "old"},
		{"event's timestamp_micros", `[{"name":"purchase","timestamp_micros":"soon"}]`, "malformed", "events[0].timestamp_micros", "whole microseconds"},
		{"timestamp_micros in milliseconds", fmt.Sprintf(`[{"name":"purchase","timestamp_micros":%d}]`, time.Now().UnixMilli()), "too_old", "events[0].timestamp_micros", "milliseconds reads as January 1970"},
		{"timestamp_micros in nanoseconds", fmt.Sprintf(`[{"name":"purchase","timestamp_micros":%d}]`, time.Now().UnixNano()), "malformed", "events[0].timestamp_micros", "nanoseconds"},
		{"event's timestamp_micros too old", fmt.Sprintf(`[{"name":"purchase","timestamp_micros":%d}]`, old), "too_old", "events[0].timestamp_micros", "old"},
		{"the second event", `[{"name":"purchase","params":{"value":1}},{"name":"refund","params":{"value":"x"}}]`, "malformed", "events[1].params.value", "decimal number"},
		// parse's rejections of an event, named with its index.
		{"event name", `[{"name":"sign_up"},{"name":"9 lives"}]`, "malformed", "events[1].name", "a letter"},
		{"no event name", `[{"params":{}}]`, "malformed", "events[0].name", "needs a name"},
		{"event not an object", `[{"name":"sign_up"},{"name":"sign_up"},5]`, "malformed", "events[2]", "JSON object"},
		{"params not an object", `[{"name":"sign_up","params":[1]}]`, "malformed", "events[0].params", "params must be a JSON object"},
		{"too many params", `[{"name":"sign_up","params":{` + manyParams(26) + `}}]`, "malformed", "events[0].params", "more than 25"},
		{"event_id not a scalar", `[{"name":"sign_up","event_id":{"a":1}}]`, "malformed", "events[0].event_id", "string, number"},
		{"event too large", `[{"name":"sign_up","params":{"note":"` + long(9000) + `"}}]`, "too_large", "events[0]", "8192"},
		{"event too large by its items", `[{"name":"purchase","params":{"items":"` + long(9000) + `"}}]`, "too_large", "events[0].params.items", "item_id, price and quantity"},
		{"reserved event name", `[{"name":"sign_up"},{"name":"session_start"}]`, "reserved_name", "events[1].name", "reserved"},
		{"reserved prefix", `[{"name":"ga_purchase"}]`, "reserved_name", "events[0].name", "ga_"},
		// campaign_details' campaign, checked as /collect's cs, cm, cn, ck, cc.
		{"campaign_details' source too long", `[{"name":"campaign_details","params":{"source":"` + long(101) + `"}}]`, "malformed", "events[0].params.source", "limit is 100"},
		{"campaign_details' medium too long", `[{"name":"campaign_details","params":{"medium":"` + long(51) + `"}}]`, "malformed", "events[0].params.medium", "limit is 50"},
		{"campaign_details' campaign too long", `[{"name":"campaign_details","params":{"campaign":"` + long(101) + `"}}]`, "malformed", "events[0].params.campaign", "limit is 100"},
		{"campaign_details' term too long", `[{"name":"campaign_details","params":{"term":"` + long(501) + `"}}]`, "malformed", "events[0].params.term", "limit is 500"},
		{"campaign_details' content too long", `[{"name":"campaign_details","params":{"content":"` + long(501) + `"}}]`, "malformed", "events[0].params.content", "limit is 500"},
	}
	collectNames := regexp.MustCompile(`\((dl|dh|dp|dt|dr|ec|ea|el|ev|ni|et|hid|cid|uid|utc|utv|utt|utl|exd|exf|cs|cm|cn|ck|cc)\b|\bep\.`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead = nil
			body := tt.body
			if strings.HasPrefix(body, "[") {
				body = `{"client_id":"c","events":` + body + `}`
			}
			req := httptest.NewRequest("POST", "/mp/collect?tracking_id="+p.TrackingID+"&api_secret=secret", strings.NewReader(body))
			w := httptest.NewRecorder()
			s.measurement(w, req)
			var res batchError
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var got *rejection
			for i := range res.Rejected {
				if res.Rejected[i].Field == tt.field {
					got = &res.Rejected[i]
				}
			}
			if got == nil || got.Code != tt.code || !strings.Contains(got.Message, tt.inText) {
				t.Fatalf("%d %s\nwant a rejection %s of %s saying %q", w.Code, w.Body, tt.code, tt.field, tt.inText)
			}
			if collectNames.MatchString(got.Message) {
				t.Errorf("the message names a /collect parameter: %q", got.Message)
			}
			found := false
			for _, dl := range dead {
				found = found || strings.Contains(dl.Detail, ": "+tt.field+": ")
			}
			if !found {
				t.Errorf("no dead letter names %s: %+v", tt.field, dead)
			}
		})
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"p%d":1`, i)
	}
	return b.String()
}

// TestMeasurementFieldCoversBuild: every field build can name has its
// Measurement API name, so no rejection of an event names a /collect
// parameter, whatever build adds later (a new field there fails here until
// it is mapped).
func TestMeasurementFieldCoversBuild(t *testing.T) {
	onlyCollect := map[string]bool{"v": true, "tid": true, "t": true, "qt": true,
		"gclid": true} // no event sets them
	for _, l := range fieldLimits {
		if onlyCollect[l.name] {
			continue
		}
		got := measurementField(l.name, 3, &parse.Fields{})
		if got == parse.EventField(3, l.name) {
			t.Errorf("build's field %s has no Measurement API name", l.name)
		}
	}
}

// TestMeasurementMapping: GA4's standard params are the hit's fields on
// every event, non_interaction is a flag as ni is, and currency must be
// the property's.
func TestMeasurementMapping(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	const page = `"page_location":"https://shop.example/cart","page_title":"Cart","page_referrer":"https://www.google.com/"`
	tests := []struct {
		name    string
		event   string
		want    hit.Hit // the fields compared
		wantErr string  // the field, when rejected
	}{
		{"page_view", `{"name":"page_view","params":{` + page + `,"engagement_time_msec":12}}`,
			hit.Hit{Type: hit.TypePageview, URL: "https://shop.example/cart", Path: "/cart", Title: "Cart", Referrer: "https://www.google.com/", EngagementMS: 12}, ""},
		{"a server's purchase carries its page and referrer", `{"name":"purchase","params":{` + page + `,"value":"12.5","currency":"EUR"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "purchase", Action: "purchase", URL: "https://shop.example/cart", Path: "/cart", Title: "Cart", Referrer: "https://www.google.com/", Value: 12.5, HasValue: true}, ""},
		{"user_engagement", `{"name":"user_engagement","params":{` + page + `,"engagement_time_msec":"5000"}}`,
			hit.Hit{Type: hit.TypeEngagement, URL: "https://shop.example/cart", Path: "/cart", Title: "Cart", Referrer: "https://www.google.com/", EngagementMS: 5000}, ""},
		{"engagement time on an event", `{"name":"scroll","params":{"engagement_time_msec":100}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "scroll", Action: "scroll", EngagementMS: 100}, ""},
		{"engagement time a fraction, rounded", `{"name":"purchase","params":{"value":5,"engagement_time_msec":"1234.5"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "purchase", Action: "purchase", Value: 5, HasValue: true, EngagementMS: 1235}, ""},
		{"user_engagement's a fraction, rounded", `{"name":"user_engagement","params":{"engagement_time_msec":99.5}}`,
			hit.Hit{Type: hit.TypeEngagement, EngagementMS: 100}, ""},
		{"engagement time over a day on an event, a parameter", `{"name":"purchase","params":{"value":5,"engagement_time_msec":86400001}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "purchase", Action: "purchase", Value: 5, HasValue: true}, ""},
		{"engagement time not a number on an event, a parameter", `{"name":"scroll","params":{"engagement_time_msec":"long"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "scroll", Action: "scroll"}, ""},
		{"user_engagement's over a day", `{"name":"user_engagement","params":{"engagement_time_msec":86400001}}`, hit.Hit{}, "events[0].params.engagement_time_msec"},
		{"currency in lower case", `{"name":"purchase","params":{"value":3,"currency":"eur"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "purchase", Action: "purchase", Value: 3, HasValue: true}, ""},
		{"no currency", `{"name":"purchase","params":{"value":3}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "purchase", Action: "purchase", Value: 3, HasValue: true}, ""},
		{"another currency", `{"name":"purchase","params":{"value":1000,"currency":"JPY"}}`, hit.Hit{}, "events[0].params.currency"},
		{"another currency without a value (items' prices)", `{"name":"add_to_cart","params":{"currency":"USD","items":[{"price":3}]}}`, hit.Hit{}, "events[0].params.currency"},
		{"non_interaction true", `{"name":"video_progress","params":{"non_interaction":true}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "video_progress", Action: "video_progress", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"non_interaction 0", `{"name":"video_progress","params":{"non_interaction":0}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "video_progress", Action: "video_progress", Params: map[string]string{"non_interaction": "0"}}, ""},
		{"non_interaction yes", `{"name":"video_progress","params":{"non_interaction":"yes"}}`, hit.Hit{}, "events[0].params.non_interaction"},
		// GA4's timing_complete and exception: the events /collect's
		// timing and exception hits become.
		{"timing_complete", `{"name":"timing_complete","params":{"name":"load","value":3549,"event_category":"JS Dependencies","event_label":"jQuery"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "JS Dependencies", Action: "load", Label: "jQuery", Value: 3549, HasValue: true, Params: map[string]string{"non_interaction": "1"}}, ""},
		{"timing_complete without a category", `{"name":"timing_complete","params":{"name":"load","value":"120","non_interaction":false}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "timing", Action: "load", Value: 120, HasValue: true, Params: map[string]string{"non_interaction": "1"}}, ""},
		{"timing_complete without a name", `{"name":"timing_complete","params":{"value":120}}`, hit.Hit{}, "events[0].params.name"},
		{"timing_complete without a value", `{"name":"timing_complete","params":{"name":"load"}}`, hit.Hit{}, "events[0].params.value"},
		{"timing_complete's value a fraction", `{"name":"timing_complete","params":{"name":"load","value":12.5}}`, hit.Hit{}, "events[0].params.value"},
		{"timing_complete's event_category too long", `{"name":"timing_complete","params":{"name":"load","value":1,"event_category":"` + strings.Repeat("x", 151) + `"}}`, hit.Hit{}, "events[0].params.event_category"},
		{"timing_complete's name too long", `{"name":"timing_complete","params":{"name":"` + strings.Repeat("x", 501) + `","value":1}}`, hit.Hit{}, "events[0].params.name"},
		{"exception", `{"name":"exception","params":{"description":"x is undefined","fatal":true}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "exception", Action: "x is undefined", Label: "fatal", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"exception non-fatal by default, as in GA4", `{"name":"exception","params":{"description":"x is undefined"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "exception", Action: "x is undefined", Label: "non-fatal", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"exception without a description", `{"name":"exception","params":{"fatal":"0"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "exception", Action: "(not set)", Label: "non-fatal", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"exception's fatal not a flag", `{"name":"exception","params":{"fatal":"yes"}}`, hit.Hit{}, "events[0].params.fatal"},
		{"exception's description cut to an action's limit", `{"name":"exception","params":{"description":"` + strings.Repeat("x", 1000) + `"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "exception", Action: strings.Repeat("x", 500), Label: "non-fatal", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"exception's description cut at a character", `{"name":"exception","params":{"description":"x` + strings.Repeat("é", 300) + `"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "exception", Action: "x" + strings.Repeat("é", 249), Label: "non-fatal", Params: map[string]string{"non_interaction": "1"}}, ""},
		{"exception's description over a parameter's limit", `{"name":"exception","params":{"description":"` + strings.Repeat("x", 1001) + `"}}`, hit.Hit{}, "events[0].params.description"},
		// campaign_details: the campaign of a non-interaction event, as
		// /collect's cs, cm, cn, ck and cc, which processing attributes a
		// session it starts to (and by which it splits one of another
		// campaign), as it does utm tags.
		{"campaign_details", `{"name":"campaign_details","params":{"campaign_id":"c-1","campaign":"summer","source":"newsletter","medium":"email","term":"boots","content":"logo"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "campaign_details", Action: "campaign_details", Params: map[string]string{"non_interaction": "1",
				hit.ParamCampaignSource: "newsletter", hit.ParamCampaignMedium: "email", hit.ParamCampaignName: "summer",
				hit.ParamCampaignTerm: "boots", hit.ParamCampaignContent: "logo"}}, ""},
		{"campaign_details is non-interaction whatever it says", `{"name":"campaign_details","params":{"source":"newsletter","non_interaction":0}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "campaign_details", Action: "campaign_details", Params: map[string]string{"non_interaction": "1",
				hit.ParamCampaignSource: "newsletter"}}, ""},
		{"campaign_details' source too long", `{"name":"campaign_details","params":{"source":"` + strings.Repeat("x", 101) + `"}}`, hit.Hit{}, "events[0].params.source"},
		{"another event's source is a parameter", `{"name":"share","params":{"source":"` + strings.Repeat("x", 101) + `"}}`,
			hit.Hit{Type: hit.TypeEvent, Category: "share", Action: "share"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := parse.Measurement(nil, []byte(`{"client_id":"c","events":[`+tt.event+`]}`))
			if err != nil || items[0].Err != nil {
				t.Fatalf("%v %v", err, items[0].Err)
			}
			c := &client{received: s.now()}
			c.addr = addressingOf(p, c.ip)
			h, e := s.build(new(hit.Hit), p, &items[0].Fields, c, hit.OriginMeasurement)
			if tt.wantErr != "" {
				if e == nil || measurementError(e, 0, &items[0].Fields).Field != tt.wantErr {
					t.Fatalf("got %v, want a rejection of %s", e, tt.wantErr)
				}
				return
			}
			if e != nil {
				t.Fatalf("rejected: %v", e)
			}
			got := hit.Hit{Type: h.Type, Category: h.Category, Action: h.Action, Label: h.Label, URL: h.URL, Path: h.Path, Title: h.Title,
				Referrer: h.Referrer, Value: h.Value, HasValue: h.HasValue, EngagementMS: h.EngagementMS}
			for _, k := range []string{"non_interaction", hit.ParamCampaignSource, hit.ParamCampaignMedium, hit.ParamCampaignName,
				hit.ParamCampaignTerm, hit.ParamCampaignContent} {
				if v, ok := h.Params[k]; ok {
					if got.Params == nil {
						got.Params = map[string]string{}
					}
					got.Params[k] = v
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
