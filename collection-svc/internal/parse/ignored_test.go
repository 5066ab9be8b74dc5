package parse

import (
	"fmt"
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
		if got := fmt.Sprint(tt.got); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
