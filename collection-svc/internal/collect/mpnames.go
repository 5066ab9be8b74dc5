package collect

import (
	"strings"

	"github.com/acme/analytics/collection-svc/internal/parse"
)

// measurementParams are the /collect parameters build names that a
// Measurement API event sets from its params (parse.Measurement): the
// param's name. dh and dp are the host and path of page_location.
var measurementParams = map[string]string{
	"dl": "page_location",
	"dh": "page_location",
	"dp": "page_location",
	"dt": "page_title",
	"dr": "page_referrer",
	"ec": "event_category",
	"el": "event_label",
	"ev": "value",
	"ni": "non_interaction",
	"et": "engagement_time_msec",
	// timing_complete's and exception's.
	"utc": "event_category",
	"utv": "name",
	"utt": "value",
	"utl": "event_label",
	"exd": "description",
	"exf": "fatal",
	// campaign_details'.
	"cs": "source",
	"cm": "medium",
	"cn": "campaign",
	"ck": "term",
	"cc": "content",
}

// measurementError is build's rejection e of the Measurement API's event
// i (read into f) with its field named as the sender wrote it: client_id,
// events[2].params.page_location, events[0].name. build speaks of /collect's
// parameters (dl, ev, ep.coupon), which a server using the Measurement API
// never sent. Only rejected events pay for it.
func measurementError(e *parse.Error, i int, f *parse.Fields) *parse.Error {
	named := *e
	named.Field = measurementField(e.Field, i, f)
	return &named
}

func measurementField(field string, i int, f *parse.Fields) string {
	switch field {
	case "cid", "client_id":
		return "client_id"
	case "uid":
		return "user_id"
	case "timestamp_micros":
		if f.OwnTimestamp {
			return parse.EventField(i, "timestamp_micros")
		}
		return "timestamp_micros"
	case "hid":
		if f.EventIDInParams {
			return parse.EventField(i, "params.event_id")
		}
		return parse.EventField(i, "event_id")
	case "ea":
		return parse.EventField(i, "name")
	case "sr":
		return "device.screen_resolution"
	case "ul":
		return "device.language"
	case "ip_override", "user_agent", "user_location.country_id", "device.category", "device.browser", "device.operating_system":
		return field // the request's visitor context, named so (visitorClient)
	case "":
		return parse.EventField(i, "")
	}
	if name, ok := measurementParams[field]; ok {
		return parse.EventField(i, "params."+name)
	}
	if name, ok := strings.CutPrefix(field, "ep."); ok {
		return parse.EventField(i, "params."+name)
	}
	// A field no event sets (v, t, qt, sr...): not reached.
	return parse.EventField(i, field)
}
