package collect

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/pkg/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDebugWarnings: the validation endpoints say valid for a hit that
// reports will not show, and warn why (a bot, an excluded address or
// country, a user-agent exclusion), as the property's rules will decide
// it; and they warn about what a request carried that is not read (uip and
// ua on /collect, which a server sending its visitors' hits should send to
// /mp/collect; a Measurement API request's unread fields; session_id).
func TestDebugWarnings(t *testing.T) {
	const browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	server := func(t *testing.T, tid string, edit func(*rules.Rules)) *http.ServeMux {
		r := rules.Defaults()
		edit(&r)
		c, err := rules.Compile(r, 1, []string{"shop.example"})
		if err != nil {
			t.Fatal(err)
		}
		s := New(Config{
			Properties: staticProperties{&Property{ID: "p", TenantID: "t", TrackingID: tid, Currency: "EUR", Shards: 1, Rules: c,
				VerifySecret: func(s string) bool { return s == "secret" }}},
			Queue: countingQueue{new(int)}, DeadLetters: failOnDeadLetter{t}, Devices: device.NewParser(100),
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Log:            slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(),
		})
		mux := http.NewServeMux()
		s.Register(mux)
		return mux
	}
	const tid = "AT-SHPSHPSHP2"
	defaults := server(t, tid, func(*rules.Rules) {})
	noBotFiltering := server(t, tid, func(r *rules.Rules) { r.BotFiltering = false })
	excluding := server(t, tid, func(r *rules.Rules) {
		r.Exclusions.IP = []string{"203.0.113.0/24"}
		r.Exclusions.UserAgents = []string{"internal-monitor"}
	})
	excludingCountry := server(t, tid, func(r *rules.Rules) { r.Exclusions.Countries = []string{"KP"} })
	const pixel = "/debug/collect?v=1&tid=" + tid + "&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F"
	const mp = "/debug/mp/collect?tracking_id=" + tid + "&api_secret=secret"
	type warning struct{ code, field, inText string }
	tests := []struct {
		name         string
		mux          *http.ServeMux
		method, path string
		ua, addr     string
		body         string
		request      []warning   // the request's warnings
		hits         [][]warning // each hit's
	}{
		{"a browser", defaults, "GET", pixel, browserUA, "198.51.100.1", "", nil, [][]warning{nil}},
		{"python-requests", defaults, "GET", pixel, "python-requests/2.31.0", "198.51.100.1", "", nil,
			[][]warning{{{"bot", "", "with bot filtering on (the property's setting), this hit is not in reports"}}}},
		{"Go's client, bot filtering off", noBotFiltering, "GET", pixel, "Go-http-client/1.1", "198.51.100.1", "", nil,
			[][]warning{{{"bot", "", "bot filtering is off, so this hit is in reports"}}}},
		{"an excluded address", excluding, "GET", pixel, browserUA, "203.0.113.7", "", nil,
			[][]warning{{{"ip_excluded", "", "IP exclusion 203.0.113.0/24"}}}},
		{"an excluded user agent", excluding, "GET", pixel, "internal-monitor/1.0 " + browserUA, "198.51.100.1", "", nil,
			[][]warning{{{"user_agent_excluded", "", "user-agent exclusions"}}}},
		{"uip and ua on the pixel", defaults, "GET", pixel + "&uip=192.0.2.1&ua=Mozilla&colour=red", "python-requests/2.31.0", "198.51.100.1", "", nil,
			[][]warning{{{"bot", "", "POST /mp/collect"}, {"ignored_parameter", "uip", "use POST /mp/collect"}, {"ignored_parameter", "ua", "use POST /mp/collect"},
				{"ignored_parameter", "colour", "not a parameter of /collect"}}}},
		// A name read that is given twice: the hit is valid, but one value
		// was dropped without a word (t=pageview&t=event is an event).
		{"a pixel's parameters given twice", defaults, "GET", pixel + "&t=event&ea=play&ep.plan=a&ep.plan=b", browserUA, "198.51.100.1", "", nil,
			[][]warning{{{"repeated_parameter", "t", "t is given 2 times; only its last value is read"}, {"repeated_parameter", "ep.plan", "ep.plan is given 2 times"}}}},
		{"a batch's fields given twice, and a field beside its hits", defaults, "POST", "/debug/collect?tid=" + tid, browserUA, "198.51.100.1",
			`{"tid":"` + tid + `","hits":[{"cid":"c","cid":"d","t":"pageview","dl":"https://shop.example/"}]}`,
			[]warning{{"ignored_parameter", "tid", "its tracking ID in the query string"}},
			[][]warning{{{"repeated_parameter", "cid", "only its last value is read"}}}},
		{"the Measurement API: fields given twice", defaults, "POST", mp, browserUA, "198.51.100.1",
			`{"client_id":"c","client_id":"d","events":[{"name":"purchase","params":{"value":1,"value":2}}]}`,
			[]warning{{"repeated_parameter", "client_id", "only its first value is read"}},
			[][]warning{{{"repeated_parameter", "events[0].params.value", "only its last value is read"}}}},
		{"uip in a batch", defaults, "POST", "/debug/collect?tid=" + tid, browserUA, "198.51.100.1",
			`{"hits":[{"cid":"c","t":"pageview","dl":"https://shop.example/"},{"cid":"c","t":"nope","uip":"192.0.2.1"}]}`, nil,
			[][]warning{nil, {{"ignored_parameter", "uip", "use POST /mp/collect"}}}},
		{"the Measurement API: no bot from the sender, fields not read, session_id", excluding, "POST", mp, "python-requests/2.31.0", "203.0.113.7",
			`{"client_id":"c","user_properties":{"plan":{"value":"pro"}},"events":[{"name":"purchase","items":[],"params":{"session_id":"17","value":1}}]}`,
			[]warning{{"ignored_parameter", "user_properties", "not read by /mp/collect"}},
			[][]warning{{{"ignored_parameter", "events[0].items", "not read by /mp/collect"}, {"ignored_parameter", "events[0].params.session_id", "sessions are derived"}}}},
		// The visitor's context a server forwards: its address and user
		// agent meet the property's exclusions and the crawler list as a
		// browser's do.
		{"the Measurement API: the visitor's ip_override excluded", excluding, "POST", mp, "python-requests/2.31.0", "198.51.100.1",
			`{"client_id":"c","ip_override":"203.0.113.7","events":[{"name":"purchase"}]}`, nil,
			[][]warning{{{"ip_excluded", "", "IP exclusion 203.0.113.0/24"}}}},
		{"the Measurement API: the visitor's user_agent excluded", excluding, "POST", mp, "python-requests/2.31.0", "198.51.100.1",
			`{"client_id":"c","user_agent":"internal-monitor/1.0 ` + browserUA + `","events":[{"name":"purchase"}]}`, nil,
			[][]warning{{{"user_agent_excluded", "", "user-agent exclusions"}}}},
		{"the Measurement API: the visitor's user_agent a crawler", defaults, "POST", mp, browserUA, "198.51.100.1",
			`{"client_id":"c","user_agent":"python-requests/2.31.0","events":[{"name":"purchase"}]}`, nil,
			[][]warning{{{"bot", "", "user_agent matches the crawler list"}}}},
		{"the Measurement API: the visitor's country excluded", excludingCountry, "POST", mp, browserUA, "198.51.100.1",
			`{"client_id":"c","user_location":{"country_id":"kp"},"events":[{"name":"purchase"}]}`, nil,
			[][]warning{{{"country_excluded", "", "(KP)"}}}},
		{"the Measurement API: what of the context is not read", defaults, "POST", mp, browserUA, "198.51.100.1",
			`{"client_id":"c","user_location":{"country_id":"DE","city":"Berlin"},"device":{"model":"Pixel 8"},"events":[{"name":"purchase"}]}`,
			[]warning{{"ignored_parameter", "user_location.city", "country"}, {"ignored_parameter", "device.model", "not read"}},
			[][]warning{nil}},
		{"engagement_time_msec that is no engagement time", defaults, "POST", mp, "python-requests/2.31.0", "198.51.100.1",
			`{"client_id":"c","events":[{"name":"purchase","params":{"engagement_time_msec":-5}},{"name":"purchase","params":{"engagement_time_msec":"soon"}},` +
				`{"name":"purchase","params":{"engagement_time_msec":86400001}},{"name":"purchase","params":{"engagement_time_msec":1234.5}},` +
				`{"name":"user_engagement","params":{"engagement_time_msec":86400000}}]}`,
			nil,
			[][]warning{{{"ignored_parameter", "events[0].params.engagement_time_msec", `"-5" is negative, so it is not read as this event's engagement time`}},
				{{"ignored_parameter", "events[1].params.engagement_time_msec", `"soon" is not a number`}},
				{{"ignored_parameter", "events[2].params.engagement_time_msec", "is over a day"}}, nil, nil}},
	}
	type gotWarning struct{ Code, Field, Message string }
	matches := func(got []gotWarning, want []warning) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range want {
			if got[i].Code != want[i].code || got[i].Field != want[i].field || !strings.Contains(got[i].Message, want[i].inText) {
				return false
			}
		}
		return true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.RemoteAddr = "127.0.0.1:5000"
			req.Header.Set("X-Forwarded-For", tt.addr)
			req.Header.Set("User-Agent", tt.ua)
			w := httptest.NewRecorder()
			tt.mux.ServeHTTP(w, req)
			var res struct {
				Valid    bool
				Warnings []gotWarning
				Hits     []struct {
					Valid    bool
					Warnings []gotWarning
				}
			}
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || w.Code != 200 || len(res.Hits) != len(tt.hits) {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if !matches(res.Warnings, tt.request) {
				t.Errorf("request warnings %+v, want %+v", res.Warnings, tt.request)
			}
			for i, want := range tt.hits {
				if !matches(res.Hits[i].Warnings, want) {
					t.Errorf("hit %d: warnings %+v\nwant %+v", i, res.Hits[i].Warnings, want)
				}
			}
		})
	}
}

// TestMeasurementValidationInGA4sForm: tools written for GA4's validation
// server read validationMessages, empty for a valid request; ours answered
// only in its own form, which such a tool reads as valid whatever it says.
func TestMeasurementValidationInGA4sForm(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	messages := func(body string) []ValidationMessage {
		t.Helper()
		w := postMP(t, mux, p.TrackingID, "/debug/mp/collect", body)
		var raw map[string]json.RawMessage
		var msgs []ValidationMessage
		if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil || raw["validationMessages"] == nil || json.Unmarshal(raw["validationMessages"], &msgs) != nil {
			t.Fatalf("%s: %s, want validationMessages", body, w.Body)
		}
		return msgs
	}
	if m := messages(`{"client_id":"c","events":[{"name":"sign_up"}]}`); len(m) != 0 {
		t.Errorf("a valid request: %+v, want no message", m)
	}
	m := messages(`{"client_id":"c","events":[{"name":"session_start"},{"name":"ok"},{"name":"big","params":{"note":"` + strings.Repeat("x", 9000) + `"}}]}`)
	if len(m) != 2 || m[0].FieldPath != "events[0].name" || m[0].ValidationCode != "NAME_RESERVED" || m[1].FieldPath != "events[2]" ||
		m[1].ValidationCode != "VALUE_OUT_OF_BOUNDS" || m[1].Description == "" {
		t.Errorf("a reserved name and an event too large: %+v", m)
	}
}
