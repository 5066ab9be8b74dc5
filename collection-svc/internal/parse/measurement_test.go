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
		items, err := Measurement(nil, []byte(`{"client_id":"c","events":[{"name":"sign_up"},{"name":"`+name+`"}]}`))
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
		if !strings.Contains(items[1].Raw, `"`+name+`"`) {
			t.Errorf("%s: the dead letter's payload is %q, not the event as sent", name, items[1].Raw)
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
