package parse

import (
	"reflect"
	"strings"
	"testing"
)

// TestMeasurementRefusesReservedNames: the event names GA4's Measurement
// Protocol reserves (its reference's list, and the firebase_, google_ and
// ga_ prefixes) are refused as reserved_name, naming events[i].name; the
// reserved names our own API gives a meaning (user_engagement, page_view)
// and names that only look alike are read as before.
func TestMeasurementRefusesReservedNames(t *testing.T) {
	reserved := []string{
		"ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward", "adunit_exposure",
		"app_background", "app_clear_data", "app_exception", "app_install", "app_remove", "app_store_refund",
		"app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
		"app_update", "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open",
		"error", "firebase_campaign", "firebase_in_app_message_action", "firebase_in_app_message_dismiss",
		"firebase_in_app_message_impression", "first_open", "first_visit", "in_app_purchase",
		"notification_dismiss", "notification_foreground", "notification_open", "notification_receive",
		"notification_send", "os_update", "screen_view", "session_start",
		// The reserved prefixes.
		"firebase_anything", "google_signup", "ga_session",
	}
	for _, name := range reserved {
		body := []byte(`{"client_id":"c","events":[{"name":"sign_up"},{"name":"` + name + `"}]}`)
		items, err := Measurement(nil, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if items[0].Err != nil {
			t.Errorf("%s: the other event was refused too: %v", name, items[0].Err)
		}
		e := items[1].Err
		if e == nil || e.Reason != ReasonReservedName || e.Field != "events[1].name" || !strings.Contains(e.Message, name) {
			t.Errorf("%s: got %v, want %s of events[1].name naming it", name, e, ReasonReservedName)
		}
		if raw := Replayable(body)(1); !strings.Contains(raw, `"`+name+`"`) {
			t.Errorf("%s: the dead letter's payload is %q, not the event as sent", name, raw)
		}
	}
	for _, name := range []string{
		"user_engagement", "page_view", "timing_complete", "exception", "campaign_details", // read by us
		"Session_Start", "session_started", "errors", "gaming", "googler", "firebase", "sign_up", // not reserved
	} {
		items, err := Measurement(nil, []byte(`{"client_id":"c","events":[{"name":"`+name+`"}]}`))
		if err != nil || items[0].Err != nil {
			t.Errorf("%s: refused: %v %v", name, err, items[0].Err)
		}
	}
}

// TestMeasurementCampaignDetails: campaign_details is a non-interaction
// event whose params source, medium, campaign, term and content are the
// campaign set apart from the location (/collect's cs, cm, cn, ck, cc),
// whatever its own non_interaction says.
func TestMeasurementCampaignDetails(t *testing.T) {
	items, err := Measurement(nil, []byte(`{"client_id":"c","events":[{"name":"campaign_details","params":{
		"campaign_id":"c-1","campaign":"summer","source":"newsletter","medium":"email","term":"boots","content":"logo","non_interaction":false}}]}`))
	if err != nil || items[0].Err != nil {
		t.Fatalf("%v %v", err, items[0].Err)
	}
	f := items[0].Fields
	got := Fields{Type: f.Type, Category: f.Category, Action: f.Action, NonInteraction: f.NonInteraction,
		CampaignSource: f.CampaignSource, CampaignMedium: f.CampaignMedium, CampaignName: f.CampaignName,
		CampaignTerm: f.CampaignTerm, CampaignContent: f.CampaignContent}
	want := Fields{Type: "event", Category: "campaign_details", Action: "campaign_details", NonInteraction: "1",
		CampaignSource: "newsletter", CampaignMedium: "email", CampaignName: "summer", CampaignTerm: "boots", CampaignContent: "logo"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if f.Params["campaign_id"] != "c-1" {
		t.Errorf("campaign_id not kept as a param: %v", f.Params)
	}
}

// TestMeasurementVisitor: the visitor's context a request may give (GA4's
// user_location, ip_override, device and user_agent) is read for every
// event of the request, as sent: device.screen_resolution and
// device.language are the hit's sr and ul, the rest Fields.Visitor; a
// request without any has none. A value of the wrong JSON type refuses the
// request, naming the field as GA4's reference does.
func TestMeasurementVisitor(t *testing.T) {
	items, err := Measurement(nil, []byte(`{"client_id":"c",
		"user_location":{"city":"Mountain View","region_id":"US-CA","country_id":"us","subcontinent_id":"021","continent_id":"019"},
		"ip_override":"203.0.113.7","user_agent":"Mozilla/5.0 (iPhone)",
		"device":{"category":"mobile","language":"en-us","screen_resolution":"390x844","operating_system":"iOS","operating_system_version":"17.1",
			"model":"iPhone 15","brand":"Apple","browser":"Safari","browser_version":"17.1"},
		"events":[{"name":"sign_up"},{"name":"9 lives"},{"name":"purchase"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Visitor{CountryID: "us", IPOverride: "203.0.113.7", UserAgent: "Mozilla/5.0 (iPhone)", Category: "mobile", OS: "iOS", Browser: "Safari"}
	for i, it := range items {
		if it.Fields.Visitor == nil || *it.Fields.Visitor != want {
			t.Errorf("event %d: visitor %+v, want %+v", i, it.Fields.Visitor, want)
		}
		if it.Fields.ScreenResolution != "390x844" || it.Fields.Language != "en-us" {
			t.Errorf("event %d: sr %q, ul %q", i, it.Fields.ScreenResolution, it.Fields.Language)
		}
	}
	items, err = Measurement(nil, []byte(`{"client_id":"c","user_location":null,"device":{},"events":[{"name":"sign_up"}]}`))
	if err != nil || items[0].Fields.Visitor != nil {
		t.Errorf("a request without context: %v, visitor %+v", err, items[0].Fields.Visitor)
	}
	for body, field := range map[string]string{
		`{"client_id":"c","user_location":"US","events":[{"name":"a"}]}`:                         "user_location",
		`{"client_id":"c","user_location":{"country_id":{"code":"US"}},"events":[{"name":"a"}]}`: "user_location.country_id",
		`{"client_id":"c","ip_override":["203.0.113.7"],"events":[{"name":"a"}]}`:                "ip_override",
		`{"client_id":"c","user_agent":{},"events":[{"name":"a"}]}`:                              "user_agent",
		`{"client_id":"c","device":"mobile","events":[{"name":"a"}]}`:                            "device",
		`{"client_id":"c","device":{"category":["mobile"]},"events":[{"name":"a"}]}`:             "device.category",
		`{"client_id":"c","device":{"screen_resolution":{"w":1}},"events":[{"name":"a"}]}`:       "device.screen_resolution",
	} {
		_, err := Measurement(nil, []byte(body))
		if e, ok := err.(*Error); !ok || e.Reason != ReasonMalformed || e.Field != field {
			t.Errorf("%s: %v, want malformed %s", body, err, field)
		}
	}
}

// TestStoredIPOverride: a dead letter keeps a Measurement API request's
// ip_override only as the property may store it, whether the payload is
// JSON or not; the rest as sent.
func TestStoredIPOverride(t *testing.T) {
	truncate := func(ip string) (string, bool) {
		switch ip {
		case "203.0.113.77":
			return "203.0.113.0", true
		case "192.0.2.1":
			return "", true // the property stores no address
		}
		return "", false
	}
	tests := []struct{ payload, want string }{
		{`{"client_id":"c","ip_override":"203.0.113.77","events":[{"name":"a"}]}`, `{"client_id":"c","ip_override":"203.0.113.0","events":[{"name":"a"}]}`},
		{`{"ip_override":"192.0.2.1","client_id":"c","events":[]}`, `{"client_id":"c","events":[]}`},
		{`{"client_id":"c","ip_override":"203.0.113.77:443","events":[]}`, `{"client_id":"c","ip_override":"(not stored)","events":[]}`},
		{`{"client_id":"c","ip_override":2130706433,"events":[]}`, `{"client_id":"c","ip_override":"(not stored)","events":[]}`},
		{`{"client_id":"c","ip_\u006fverride":"203.0.113.77","events":[]}`, `{"client_id":"c","ip_override":"203.0.113.0","events":[]}`},
		{`{"client_id":"c", "ip_override" : "203.0.113.77", "events":[`, `{"client_id":"c", "ip_override":"203.0.113.0", "events":[`},
		{`{"client_id":"c","events":[{"name":"a","params":{"x":"\u0001"}}]}`, `{"client_id":"c","events":[{"name":"a","params":{"x":"\u0001"}}]}`},
		{`not json`, `not json`},
	}
	for _, tt := range tests {
		if got := StoredIPOverride(tt.payload, truncate); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.payload, got, tt.want)
		}
	}
}

// TestOversizedCartIsNamed: a purchase whose items take it past the 8 KiB
// an event may have (about 18 of GA4's sample items) is refused naming its
// items and what to send instead, not only its size.
func TestOversizedCartIsNamed(t *testing.T) {
	item := `{"item_id":"SKU_12345","item_name":"Stan and Friends Tee","affiliation":"Google Merchandise Store","coupon":"SUMMER_FUN","discount":2.22,"index":0,"item_brand":"Google","item_category":"Apparel","item_category2":"Adult","item_category3":"Shirts","item_category4":"Crew","item_category5":"Short sleeve","item_list_id":"related_products","item_list_name":"Related Products","item_variant":"green","location_id":"ChIJIQBpAG2ahYAR_6128GcTUEo","price":10.01,"quantity":3}`
	body := `{"client_id":"c","events":[{"name":"purchase","params":{"transaction_id":"T1","value":30.03,"currency":"EUR","items":[` +
		strings.TrimSuffix(strings.Repeat(item+",", 20), ",") + `]}}]}`
	items, err := Measurement(nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	e := items[0].Err
	if e == nil || e.Reason != ReasonTooLarge || e.Field != "events[0].params.items" || !strings.Contains(e.Message, "item_id, price and quantity") {
		t.Fatalf("a purchase of 20 items: %v, want too_large of events[0].params.items saying what to send", e)
	}
}
