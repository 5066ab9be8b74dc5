package collect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/device"
	"github.com/acme/analytics/pkg/hit"
)

const (
	iPhoneUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
	macUA    = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"
	botUA    = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

// postMP posts body to path (/mp/collect or /debug/mp/collect) of the test
// property, from a merchant's server whose own address (in the test
// database: DE) and user agent (a crawler's) must never be the visitor's.
func postMP(t *testing.T, mux *http.ServeMux, trackingID, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path+"?tracking_id="+trackingID+"&api_secret=secret", strings.NewReader(body))
	req.RemoteAddr = "203.0.113.200:5000"
	req.Header.Set("User-Agent", "python-requests/2.31.0")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	return w
}

// debugHit posts body to /debug/mp/collect (postMP) and returns the one
// hit of the answer, failing the test unless the request is valid with
// exactly one hit.
func debugHit(t *testing.T, mux *http.ServeMux, trackingID, body string) *hit.Hit {
	t.Helper()
	w := postMP(t, mux, trackingID, "/debug/mp/collect", body)
	var res DebugResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || !res.Valid || len(res.Hits) != 1 {
		t.Fatalf("%s: %d %s", body, w.Code, w.Body)
	}
	return res.Hits[0].Hit
}

// TestMeasurementVisitorContext: the visitor's context a server forwards
// (GA4's user_location, ip_override, device and user_agent) enriches its
// events as a browser's request enriches its hits: the country from
// user_location.country_id, else from ip_override through the geo
// database; the device's category, browser and OS from device, else from
// user_agent through the same parser, whose crawler list gives the bot
// flag; screen resolution and language from device; the address stored
// truncated. Fields given beat fields derived, one by one. Without any of
// them nothing is derived: the sender's own address and user agent are
// not the visitor's.
func TestMeasurementVisitorContext(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	parsed := func(ua string) device.Info { return device.NewParser(10).Parse(ua) }
	type enrichment struct {
		Country, IP, UserAgent, Category, Browser, OS, ScreenResolution, Language string
		Bot                                                                       bool
		BotName                                                                   string
	}
	derived := func(ua string) enrichment {
		d := parsed(ua)
		return enrichment{UserAgent: ua, Category: d.Category, Browser: d.Browser, OS: d.OS, Bot: d.Bot, BotName: d.BotName}
	}
	with := func(e enrichment, edit func(*enrichment)) enrichment { edit(&e); return e }
	tests := []struct {
		name    string
		context string // the request's fields besides client_id and events
		want    enrichment
	}{
		{"none: nothing from the sender's address or user agent", ``, enrichment{}},
		{"user_location.country_id, upper-cased", `"user_location":{"country_id":"fr","city":"Lyon"}`, enrichment{Country: "FR"}},
		{"ip_override: the country looked up, the address truncated", `"ip_override":"203.0.113.7"`, enrichment{Country: "DE", IP: "203.0.113.0"}},
		{"ip_override of IPv6, /48 kept", `"ip_override":"2001:db8:1:2:3::9"`, enrichment{IP: "2001:db8:1::"}},
		{"ip_override IPv4-mapped is IPv4", `"ip_override":"::ffff:203.0.113.7"`, enrichment{Country: "DE", IP: "203.0.113.0"}},
		{"ip_override with a port, as X-Forwarded-For may carry one", `"ip_override":"203.0.113.7:443"`, enrichment{Country: "DE", IP: "203.0.113.0"}},
		{"country_id beats ip_override's country", `"ip_override":"203.0.113.7","user_location":{"country_id":"FR"}`, enrichment{Country: "FR", IP: "203.0.113.0"}},
		{"user_agent: device, browser and OS by the browsers' parser", `"user_agent":"` + iPhoneUA + `"`, derived(iPhoneUA)},
		{"user_agent of a crawler: the bot flag", `"user_agent":"` + botUA + `"`, derived(botUA)},
		{"device fields beat user_agent's", `"user_agent":"` + iPhoneUA + `","device":{"category":"Tablet","browser":"Chrome","operating_system":"Android"}`,
			with(derived(iPhoneUA), func(e *enrichment) { e.Category, e.Browser, e.OS = "tablet", "Chrome", "Android" })},
		{"one device field beats user_agent's, the others derived", `"user_agent":"` + iPhoneUA + `","device":{"category":"desktop"}`,
			with(derived(iPhoneUA), func(e *enrichment) { e.Category = "desktop" })},
		{"device without user_agent", `"device":{"category":"smart tv","browser":"Samsung Browser","operating_system":"Tizen","model":"QN90"}`,
			enrichment{Category: "smart tv", Browser: "Samsung Browser", OS: "Tizen"}},
		{"device's screen_resolution and language", `"device":{"screen_resolution":"1920x1080","language":"de-de"}`,
			enrichment{ScreenResolution: "1920x1080", Language: "de-de"}},
		{"an iPad's portrait screen with a Mac's user agent, as for a browser", `"user_agent":"` + macUA + `","device":{"screen_resolution":"820x1180"}`,
			with(derived(macUA), func(e *enrichment) { e.Category, e.OS, e.ScreenResolution = "tablet", "iOS", "820x1180" })},
		{"a crawler's user_agent and a category given: the category, still a bot", `"user_agent":"` + botUA + `","device":{"category":"mobile"}`,
			with(derived(botUA), func(e *enrichment) { e.Category = "mobile" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"client_id":"c",` + tt.context
			if tt.context != "" {
				body += ","
			}
			body += `"events":[{"name":"purchase","params":{"value":5}},{"name":"page_view","params":{"page_location":"https://shop.example/"}}]}`
			w := postMP(t, mux, p.TrackingID, "/debug/mp/collect", body)
			var res DebugResult
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || !res.Valid || len(res.Hits) != 2 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			for i, dh := range res.Hits {
				h := dh.Hit
				got := enrichment{Country: h.Country, IP: h.IP, UserAgent: h.UserAgent, Category: h.DeviceCategory, Browser: h.Browser, OS: h.OS,
					ScreenResolution: h.ScreenResolution, Language: h.Language, Bot: h.Bot, BotName: h.BotName}
				if got != tt.want {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, got, tt.want)
				}
				if h.Origin != hit.OriginMeasurement {
					t.Errorf("event %d: origin %s", i, h.Origin)
				}
			}
			if strings.Contains(w.Body.String(), "203.0.113.7\"") || strings.Contains(w.Body.String(), "203.0.113.200") {
				t.Errorf("the answer holds a full address: %s", w.Body)
			}
		})
	}
}

// TestMeasurementVisitorContextRejections: an invalid value of the
// visitor's context is refused (400) naming the field as GA4's reference
// does, with every event of the request, which it is about; the validation
// endpoint says the same; neither the answer nor the dead letter holds the
// full address.
func TestMeasurementVisitorContextRejections(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	tests := []struct {
		name, context, field, inText string
	}{
		{"country_id not a code", `"user_location":{"country_id":"Germany"}`, "user_location.country_id", "ISO 3166-1 alpha-2"},
		{"country_id of no country", `"user_location":{"country_id":"ZZ"}`, "user_location.country_id", "ISO 3166-1 alpha-2"},
		{"ip_override not an address", `"ip_override":"203.0.113.777"`, "ip_override", "IP address"},
		{"ip_override a host name", `"ip_override":"shop.example"`, "ip_override", "IP address"},
		{"ip_override with a zone", `"ip_override":"fe80::1%eth0"`, "ip_override", "IP address"},
		{"user_agent not UTF-8", `"user_agent":"Mozilla/5.0 ` + "\xff" + `"`, "user_agent", "UTF-8"},
		{"device.category unknown", `"device":{"category":"phone"}`, "device.category", "desktop, mobile, tablet"},
		{"device.browser too long", `"device":{"browser":"` + strings.Repeat("x", 101) + `"}`, "device.browser", "limit is 100"},
		{"device.operating_system not UTF-8", `"device":{"operating_system":"` + "\xff" + `"}`, "device.operating_system", "UTF-8"},
		{"device.screen_resolution not one", `"device":{"screen_resolution":"big"}`, "device.screen_resolution", "1920x1080"},
		{"device.language too long", `"device":{"language":"` + strings.Repeat("x", 36) + `"}`, "device.language", "limit is 35"},
		// parse's: the whole request.
		{"user_location not an object", `"user_location":"DE"`, "user_location", "JSON object"},
		{"device not an object", `"device":["mobile"]`, "device", "JSON object"},
		{"ip_override not a string", `"ip_override":{"v4":"203.0.113.77"}`, "ip_override", "string"},
	}
	const ip = `"ip_override":"203.0.113.77",`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"client_id":"c",` + tt.context + `,"events":[{"name":"purchase"},{"name":"sign_up"}]}`
			if !strings.Contains(tt.context, "ip_override") {
				body = strings.Replace(body, `{"client_id":"c",`, `{"client_id":"c",`+ip, 1)
			}
			dead = nil
			w := postMP(t, mux, p.TrackingID, "/mp/collect", body)
			var res batchError
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || w.Code != 400 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if res.Error.Code != "malformed" || res.Error.Field != tt.field || !strings.Contains(res.Error.Message, tt.inText) {
				t.Errorf("answer %s\nwant malformed %s saying %q", w.Body, tt.field, tt.inText)
			}
			for _, r := range res.Rejected {
				if r.Field != tt.field {
					t.Errorf("event %d rejected naming %s, want %s", r.Index, r.Field, tt.field)
				}
			}
			if res.Accepted != 0 || len(dead) == 0 {
				t.Errorf("%d accepted, %d dead letters", res.Accepted, len(dead))
			}
			for _, dl := range dead {
				if !strings.Contains(dl.Detail, ": "+tt.field+": ") {
					t.Errorf("dead letter's detail %q does not name %s", dl.Detail, tt.field)
				}
				if strings.Contains(dl.Payload+dl.Detail, "203.0.113.77") || strings.Contains(dl.Payload+dl.Detail, "203.0.113.777") {
					t.Errorf("the dead letter keeps the full address: %+v", dl)
				}
			}
			if strings.Contains(w.Body.String(), "203.0.113.77") {
				t.Errorf("the answer holds the full address: %s", w.Body)
			}
			// The validation endpoint agrees.
			dead = nil
			w = postMP(t, mux, p.TrackingID, "/debug/mp/collect", body)
			var dr DebugResult
			if err := json.Unmarshal(w.Body.Bytes(), &dr); err != nil || dr.Valid {
				t.Fatalf("validation endpoint: %d %s", w.Code, w.Body)
			}
			fields := []string{}
			if dr.Error != nil {
				fields = append(fields, dr.Error.Field)
			}
			for _, dh := range dr.Hits {
				if dh.Error != nil {
					fields = append(fields, dh.Error.Field)
				}
			}
			if len(fields) == 0 || fields[0] != tt.field || len(dead) != 0 {
				t.Errorf("validation endpoint names %v, want %s: %s", fields, tt.field, w.Body)
			}
		})
	}
}

// TestMeasurementDeadLettersKeepATruncatedAddress: a dead letter of a
// request with ip_override (the request rejected whole, or one of its
// events) keeps the address only as the property stores it.
func TestMeasurementDeadLettersKeepATruncatedAddress(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	body := `{"client_id":"c","ip_override":"203.0.113.77","events":[{"name":"purchase","params":{"value":"lots"}},{"name":"9 lives"}]}`
	w := postMP(t, mux, p.TrackingID, "/mp/collect", body)
	if w.Code != 400 || len(dead) != 2 {
		t.Fatalf("%d %s; %d dead letters", w.Code, w.Body, len(dead))
	}
	req := httptest.NewRequest("POST", "/mp/collect?tracking_id="+p.TrackingID+"&api_secret=wrong", strings.NewReader(body))
	mux.ServeHTTP(httptest.NewRecorder(), req)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters", len(dead))
	}
	for _, dl := range dead {
		if !strings.Contains(dl.Payload, `"ip_override":"203.0.113.0"`) || strings.Contains(dl.Payload, "203.0.113.77") {
			t.Errorf("%s: payload %s", dl.Reason, dl.Payload)
		}
	}
}

// TestBrowserDeadLettersKeepATruncatedUIP: Universal Analytics' uip, the
// visitor's full address that a server sending its visitors' hits to
// /collect sends (and /collect does not read), is kept in a dead letter as
// the property stores an address, wherever the letter keeps the request
// as sent: the pixel's query string, a body that is no batch, a batch hit
// that could not be read (strict, /16, when the request was refused before
// its property was known). It was kept in full.
func TestBrowserDeadLettersKeepATruncatedUIP(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	foreign := "&v=1&t=pageview&cid=c&dl=https%3A%2F%2Felsewhere.example%2F"
	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "/collect?tid="+p.TrackingID+foreign+"&uip=198.51.100.77", nil),
		httptest.NewRequest("GET", "/collect?tid="+p.TrackingID+foreign+"&u%69p=198.51.100.77%3A443", nil),
		httptest.NewRequest("GET", "/collect?tid="+p.TrackingID+foreign+"&uip=not-198.51.100.77", nil),
		httptest.NewRequest("POST", "/collect?tid="+p.TrackingID, strings.NewReader("v=1&t=pageview&cid=c&uip=198.51.100.77")),
		httptest.NewRequest("POST", "/collect?tid="+p.TrackingID, strings.NewReader(`{"hits":[{"v":[1],"t":"pageview","uip":"198.51.100.77"}]}`)),
	} {
		before := len(dead)
		mux.ServeHTTP(httptest.NewRecorder(), req)
		if len(dead) != before+1 {
			t.Fatalf("%s %s: %d dead letters", req.Method, req.URL, len(dead)-before)
		}
		dl := dead[len(dead)-1]
		// 198.51.100.0 as the property stores it, 198.51.0.0 (strict)
		// when it was rejected before the property was known.
		if strings.Contains(dl.Payload, "198.51.100.77") || !strings.Contains(dl.Payload, "198.51.") && !strings.Contains(dl.Payload, "not+stored") {
			t.Errorf("%s %s: %s payload %s", req.Method, req.URL, dl.Reason, dl.Payload)
		}
	}
}
