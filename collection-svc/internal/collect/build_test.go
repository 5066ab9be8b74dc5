package collect

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
)

// TestParamLimits checks the limits of custom parameters: 1000 bytes, but
// a Measurement API parameter that is a field of the hit has the field's
// limit, and ecommerce items only the event's.
func TestParamLimits(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	long := func(n int) string { return strings.Repeat("x", n) }
	url := func(n int) string { return "https://shop.example/" + long(n-len("https://shop.example/")) }
	tests := []struct {
		name      string
		origin    hit.Origin
		params    map[string]string
		wantField string // "" when accepted
	}{
		{"mp page_location over 1000 bytes", hit.OriginMeasurement, map[string]string{"page_location": url(1123)}, ""},
		{"mp page_location at dl's limit", hit.OriginMeasurement, map[string]string{"page_location": url(4096)}, ""},
		{"mp page_location over dl's limit", hit.OriginMeasurement, map[string]string{"page_location": url(4097)}, "dl"},
		{"mp page_referrer", hit.OriginMeasurement, map[string]string{"page_referrer": url(4096)}, ""},
		{"mp page_title", hit.OriginMeasurement, map[string]string{"page_title": long(1500)}, ""},
		{"mp page_title over dt's limit", hit.OriginMeasurement, map[string]string{"page_title": long(1501)}, "ep.page_title"},
		{"mp items", hit.OriginMeasurement, map[string]string{"items": "[" + strings.Repeat(`{"item_id":"SKU-0001","price":9.99},`, 150) + "{}]"}, ""},
		{"mp other parameter", hit.OriginMeasurement, map[string]string{"coupon": long(1001)}, "ep.coupon"},
		{"browser parameter", hit.OriginBrowser, map[string]string{"page_title": long(1001)}, "ep.page_title"},
		{"browser parameter at the limit", hit.OriginBrowser, map[string]string{"plan": long(1000)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &client{received: s.now()}
			c.addr = addressingOf(p, c.ip)
			f := parse.Fields{ClientID: "c", Type: "event", Action: "purchase", Host: "shop.example", Params: tt.params}
			if tt.origin == hit.OriginMeasurement {
				f.Location = tt.params["page_location"] // as parse.Measurement maps it
			}
			_, e := s.build(new(hit.Hit), p, &f, c, tt.origin)
			switch {
			case tt.wantField == "" && e != nil:
				t.Fatalf("rejected: %v", e)
			case tt.wantField != "" && (e == nil || e.Field != tt.wantField):
				t.Fatalf("got %v, want a rejection of %s", e, tt.wantField)
			}
		})
	}
}

// TestNonInteraction checks ni as a query string and JSON send it.
func TestNonInteraction(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	tests := []struct {
		ni      string // the JSON value
		want    string // Params["non_interaction"]
		wantErr bool
	}{
		{`1`, "1", false},
		{`"1"`, "1", false},
		{`true`, "1", false},
		{`0`, "", false},
		{`"0"`, "", false},
		{`false`, "", false},
		{`null`, "", false},
		{`"yes"`, "", true},
		{`2`, "", true},
		{`"True"`, "", true},
		{`1.0`, "", true},
	}
	for _, tt := range tests {
		body := `{"hits":[{"cid":"c","t":"event","ea":"play","dl":"https://shop.example/","ni":` + tt.ni + `}]}`
		items, err := parse.Batch(nil, []byte(body))
		if err != nil || items[0].Err != nil {
			t.Fatalf("%s: %v %v", tt.ni, err, items[0].Err)
		}
		c := &client{received: s.now()}
		c.addr = addressingOf(p, c.ip)
		h, e := s.build(new(hit.Hit), p, &items[0].Fields, c, hit.OriginBrowser)
		switch {
		case tt.wantErr && (e == nil || e.Field != "ni" || !strings.Contains(e.Message, "not a flag")):
			t.Errorf("ni %s: got %v, want it rejected", tt.ni, e)
		case !tt.wantErr && e != nil:
			t.Errorf("ni %s: rejected: %v", tt.ni, e)
		case !tt.wantErr && h.Params["non_interaction"] != tt.want:
			t.Errorf("ni %s: non_interaction %q, want %q", tt.ni, h.Params["non_interaction"], tt.want)
		}
	}
}

// TestNumbers checks the numbers of ev, qt and timestamp_micros.
func TestNumbers(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	received := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	us := received.Add(-time.Hour).UnixMicro() // 1796382000000000
	micros := func(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }
	tests := []struct {
		name       string
		f          parse.Fields
		wantReason string // "" when accepted
		wantValue  float64
		wantTime   time.Time
	}{
		{"ev integer", parse.Fields{Value: "3"}, "", 3, received},
		{"ev negative fraction", parse.Fields{Value: "-12.5"}, "", -12.5, received},
		{"ev exponent", parse.Fields{Value: "1.5E+3"}, "", 1500, received},
		{"ev leading zeros", parse.Fields{Value: "007"}, "", 7, received},
		{"ev hex float", parse.Fields{Value: "0x1p4"}, "malformed", 0, received},
		{"ev plus sign", parse.Fields{Value: "+5"}, "malformed", 0, received},
		{"ev infinity", parse.Fields{Value: "Inf"}, "malformed", 0, received},
		{"ev NaN", parse.Fields{Value: "NaN"}, "malformed", 0, received},
		{"ev no integer part", parse.Fields{Value: ".5"}, "malformed", 0, received},
		{"ev no fraction digits", parse.Fields{Value: "5."}, "malformed", 0, received},
		{"ev no exponent digits", parse.Fields{Value: "5e"}, "malformed", 0, received},
		{"ev underscore", parse.Fields{Value: "1_000"}, "malformed", 0, received},
		{"ev too large", parse.Fields{Value: "2e15"}, "malformed", 0, received},
		{"qt", parse.Fields{QueueTime: "60000"}, "", 0, received.Add(-time.Minute)},
		{"qt over 4 hours", parse.Fields{QueueTime: "14400001"}, "too_old", 0, received},
		{"qt over int64", parse.Fields{QueueTime: "99999999999999999999"}, "too_old", 0, received},
		{"qt negative", parse.Fields{QueueTime: "-1"}, "malformed", 0, received},
		{"qt negative over int64", parse.Fields{QueueTime: "-99999999999999999999"}, "malformed", 0, received},
		{"qt fraction", parse.Fields{QueueTime: "1.5"}, "malformed", 0, received},
		{"timestamp_micros", parse.Fields{TimestampMicros: strconv.FormatInt(us, 10)}, "", 0, received.Add(-time.Hour)},
		{"timestamp_micros in float form", parse.Fields{TimestampMicros: "1.796382e15"}, "", 0, received.Add(-time.Hour)},
		{"timestamp_micros with a zero fraction", parse.Fields{TimestampMicros: "1796382000000000.000"}, "", 0, received.Add(-time.Hour)},
		{"timestamp_micros in float form, not whole", parse.Fields{TimestampMicros: "1.79638200000000001e15"}, "malformed", 0, received},
		{"timestamp_micros with a fraction", parse.Fields{TimestampMicros: "1796382000000000.5"}, "malformed", 0, received},
		{"timestamp_micros over int64", parse.Fields{TimestampMicros: "1e19"}, "malformed", 0, received},
		{"timestamp_micros huge exponent", parse.Fields{TimestampMicros: "1e999999999999"}, "malformed", 0, received},
		{"timestamp_micros hex", parse.Fields{TimestampMicros: "0x1p50"}, "malformed", 0, received},
		{"timestamp_micros too old in float form", parse.Fields{TimestampMicros: "1.7e15"}, "too_old", 0, received},
		// The edges: exactly 4 hours old is accepted, by qt as by
		// timestamp_micros, a microsecond more is too old; up to a minute
		// ahead is dated at the receipt, a microsecond more is refused.
		{"qt 0", parse.Fields{QueueTime: "0"}, "", 0, received},
		{"qt exactly 4 hours", parse.Fields{QueueTime: "14400000"}, "", 0, received.Add(-4 * time.Hour)},
		{"timestamp_micros exactly 4 hours old", parse.Fields{TimestampMicros: micros(received.Add(-4 * time.Hour))}, "", 0, received.Add(-4 * time.Hour)},
		{"timestamp_micros 4 hours and a microsecond old", parse.Fields{TimestampMicros: micros(received.Add(-4*time.Hour - time.Microsecond))}, "too_old", 0, received},
		{"timestamp_micros a minute ahead", parse.Fields{TimestampMicros: micros(received.Add(time.Minute))}, "", 0, received},
		{"timestamp_micros a minute and a microsecond ahead", parse.Fields{TimestampMicros: micros(received.Add(time.Minute + time.Microsecond))}, "malformed", 0, received},
		{"timestamp_micros and qt: the timestamp dates it", parse.Fields{TimestampMicros: strconv.FormatInt(us, 10), QueueTime: "60000"}, "", 0, received.Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &client{received: received}
			c.addr = addressingOf(p, c.ip)
			f := tt.f
			f.ClientID, f.Type, f.Action, f.Location = "c", "event", "play", "https://shop.example/"
			origin := hit.OriginBrowser
			if f.TimestampMicros != "" {
				origin = hit.OriginMeasurement
			}
			h, e := s.build(new(hit.Hit), p, &f, c, origin)
			switch {
			case tt.wantReason != "":
				if e == nil || e.Reason != tt.wantReason {
					t.Fatalf("got %v, want %s", e, tt.wantReason)
				}
			case e != nil:
				t.Fatalf("rejected: %v", e)
			case h.Value != tt.wantValue || !h.Time.Equal(tt.wantTime):
				t.Fatalf("value %v, time %v; want %v, %v", h.Value, h.Time, tt.wantValue, tt.wantTime)
			}
		})
	}
}

// TestEngagementTime: /collect's et is whole milliseconds from 0 to one
// day; the Measurement API's engagement_time_msec is rounded when it is a
// fraction (performance.now() gives one), and on another event than
// user_engagement one that is no engagement time stays a parameter, as
// before it was read on every event, rather than refuse the event.
func TestEngagementTime(t *testing.T) {
	s, p := testServer(t, 4, countingQueue{new(int)})
	const day = "86400000"
	tests := []struct {
		name    string
		mp      bool
		typ     string // the hit type as parsed: engagement for user_engagement
		et      string
		wantErr bool
		wantMS  int64
	}{
		{"et", false, "engagement", "1234", false, 1234},
		{"et of one day", false, "engagement", day, false, 86400000},
		{"et on an event", false, "event", "5", false, 5},
		{"et a fraction", false, "engagement", "1234.5", true, 0},
		{"et a fraction on an event", false, "event", "1234.5", true, 0},
		{"et over a day", false, "engagement", "86400001", true, 0},
		{"et negative", false, "event", "-1", true, 0},
		{"et not a number", false, "event", "soon", true, 0},
		{"engagement_time_msec", true, "engagement", "1234", false, 1234},
		{"engagement_time_msec a fraction, rounded", true, "engagement", "1234.5", false, 1235},
		{"engagement_time_msec a fraction on a purchase", true, "event", "1234.4", false, 1234},
		{"engagement_time_msec with an exponent", true, "engagement", "1.5e3", false, 1500},
		{"engagement_time_msec of one day", true, "engagement", "86400000.4", false, 86400000},
		{"engagement_time_msec over a day", true, "engagement", "86400000.5", true, 0},
		{"engagement_time_msec negative", true, "engagement", "-0.5", true, 0},
		{"engagement_time_msec not a number", true, "engagement", "soon", true, 0},
		{"engagement_time_msec hex", true, "engagement", "0x10", true, 0},
		{"engagement_time_msec over a day on a purchase, a parameter", true, "event", "86400001", false, 0},
		{"engagement_time_msec negative on a purchase, a parameter", true, "event", "-1", false, 0},
		{"engagement_time_msec not a number on a purchase, a parameter", true, "event", "soon", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &client{received: s.now()}
			c.addr = addressingOf(p, c.ip)
			f := parse.Fields{ClientID: "c", Type: tt.typ, Location: "https://shop.example/", EngagementTime: tt.et}
			origin := hit.OriginBrowser
			if tt.mp {
				origin = hit.OriginMeasurement
				f.Params = map[string]string{"engagement_time_msec": tt.et}
			}
			if tt.typ == "event" {
				f.Action = "purchase"
			}
			h, e := s.build(new(hit.Hit), p, &f, c, origin)
			switch {
			case tt.wantErr:
				if e == nil || e.Reason != parse.ReasonMalformed || e.Field != "et" {
					t.Fatalf("got %v, want malformed et", e)
				}
			case e != nil:
				t.Fatalf("rejected: %v", e)
			case h.EngagementMS != tt.wantMS:
				t.Fatalf("engagement %d ms, want %d", h.EngagementMS, tt.wantMS)
			case tt.mp && h.Params["engagement_time_msec"] != tt.et:
				t.Fatalf("params.engagement_time_msec %q, want it kept as sent (%q)", h.Params["engagement_time_msec"], tt.et)
			}
		})
	}
}
