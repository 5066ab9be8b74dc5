package collect

import (
	"strings"
	"testing"

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
