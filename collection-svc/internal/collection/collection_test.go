package collection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
)

// TestValidHitsArriveEnriched sends every kind of valid hit through real
// HTTP and checks what lands in the hits topic: fields, enrichment, key,
// timestamp and ID.
func TestValidHitsArriveEnriched(t *testing.T) {
	e := newEnv(t, envOptions{})
	hits := e.read(hit.TopicHits)
	now := time.Now()

	type want struct {
		marker string // the hit's hid, which finds it in the topic
		check  func(t *testing.T, h *hit.Hit)
	}
	tests := []struct {
		name, method, path, contentType, body, ip, ua string
		wantStatus                                    int
		wants                                         []want
	}{
		{
			name: "pixel pageview", method: "GET",
			path: "/collect?" + url.Values{"v": {"1"}, "tid": {tidShop}, "cid": {"c-pixel"}, "t": {"pageview"},
				"dl": {"https://www.shop.example/shoes?utm_source=news&x=1"}, "dt": {"Shoes"}, "dr": {"https://search.example/"},
				"sr": {"1920x1080"}, "ul": {"de-DE"}, "hid": {"h-pixel"}}.Encode(),
			ip: "203.0.113.7", wantStatus: 200,
			wants: []want{{"h-pixel", func(t *testing.T, h *hit.Hit) {
				eq(t, "type", string(h.Type), "pageview")
				eq(t, "host", h.Hostname, "www.shop.example")
				eq(t, "path", h.Path, "/shoes?utm_source=news&x=1")
				eq(t, "title", h.Title, "Shoes")
				eq(t, "referrer", h.Referrer, "https://search.example/")
				eq(t, "country", h.Country, "DE")
				eq(t, "ip", h.IP, "203.0.113.0")
				eq(t, "browser", h.Browser, "Chrome")
				eq(t, "os", h.OS, "Windows")
				eq(t, "device", h.DeviceCategory, "desktop")
				eq(t, "origin", string(h.Origin), "browser")
				eq(t, "screen", h.ScreenResolution, "1920x1080")
				eq(t, "language", h.Language, "de-DE")
				eq(t, "tenant", h.TenantID, "t-1")
				eq(t, "rule version", fmt.Sprint(h.RuleVersion), "7")
			}}},
		},
		{
			name: "batch of every browser type", method: "POST", path: "/collect?tid=" + tidShop, contentType: "text/plain;charset=UTF-8",
			body: `{"hits":[
				{"v":1,"cid":"c-batch","t":"pageview","dl":"https://shop.example/","hid":"h-b1"},
				{"v":1,"cid":"c-batch","t":"event","ec":"video","ea":"play","el":"intro","ev":3.5,"ni":1,"dl":"https://shop.example/","hid":"h-b2","ep":{"plan":"pro"}},
				{"v":1,"cid":"c-batch","t":"engagement","et":15000,"dl":"https://shop.example/","hid":"h-b3"},
				{"v":1,"cid":"c-batch","t":"timing","utc":"JS Dependencies","utv":"load","utt":320,"utl":"jQuery","dl":"https://shop.example/","hid":"h-b4","ep":{"plan":"pro"}},
				{"v":1,"cid":"c-batch","t":"exception","exd":"TypeError: x is undefined","exf":false,"dl":"https://shop.example/","hid":"h-b5","qt":60000}
			]}`,
			ip: "2001:db8:1:2:3::9", wantStatus: 204,
			wants: []want{
				{"h-b1", func(t *testing.T, h *hit.Hit) {
					eq(t, "country", h.Country, "JP")
					eq(t, "ip", h.IP, "2001:db8:1::")
					eq(t, "path", h.Path, "/")
				}},
				{"h-b2", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", h.Category+"/"+h.Action+"/"+h.Label, "video/play/intro")
					eq(t, "value", fmt.Sprint(h.Value, h.HasValue), "3.5 true")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
					eq(t, "param", h.Params["plan"], "pro")
				}},
				{"h-b3", func(t *testing.T, h *hit.Hit) { eq(t, "engagement", fmt.Sprint(h.EngagementMS), "15000") }},
				// Timing and exception hits arrive as the non-interaction
				// events they stand for.
				{"h-b4", func(t *testing.T, h *hit.Hit) {
					eq(t, "type", string(h.Type), "event")
					eq(t, "event", h.Category+"/"+h.Action+"/"+h.Label, "JS Dependencies/load/jQuery")
					eq(t, "value", fmt.Sprint(h.Value, h.HasValue), "320 true")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
					eq(t, "param", h.Params["plan"], "pro")
				}},
				{"h-b5", func(t *testing.T, h *hit.Hit) {
					eq(t, "type", string(h.Type), "event")
					eq(t, "event", h.Category+"/"+h.Action+"/"+h.Label, "exception/TypeError: x is undefined/non-fatal")
					eq(t, "value", fmt.Sprint(h.Value, h.HasValue), "0 false")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
					eq(t, "queue time", h.ReceivedAt.Sub(h.Time).String(), "1m0s")
				}},
			},
		},
		{
			name: "measurement api", method: "POST", path: "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, contentType: "application/json",
			body: fmt.Sprintf(`{"client_id":"c-mp","user_id":"u-42","timestamp_micros":%d,"events":[
				{"name":"page_view","params":{"page_location":"https://shop.example/checkout","page_title":"Checkout","event_id":"h-mp1"}},
				{"name":"purchase","event_id":"h-mp2","params":{"value":99.5,"currency":"EUR","items":[{"id":"sku"}]}},
				{"name":"signup","event_id":"h-mp3","params":{"event_category":"account","event_label":"newsletter"}},
				{"name":"timing_complete","event_id":"h-mp4","params":{"name":"api_call","value":87,"event_category":"backend"}},
				{"name":"exception","event_id":"h-mp5","params":{"description":"payment gateway timeout","fatal":true}},
				{"name":"campaign_details","event_id":"h-mp6","params":{"campaign_id":"c-1","campaign":"summer","source":"newsletter","medium":"email","term":"boots","content":"logo"}},
				{"name":"user_engagement","event_id":"h-mp7","params":{"engagement_time_msec":1200}}
			]}`, now.Add(-time.Hour).UnixMicro()),
			ip: "198.51.100.20", ua: "python-requests/2.31.0", wantStatus: 204,
			wants: []want{
				{"h-mp1", func(t *testing.T, h *hit.Hit) {
					eq(t, "type", string(h.Type), "pageview")
					eq(t, "origin", string(h.Origin), "mp")
					eq(t, "path", h.Path, "/checkout")
					eq(t, "title", h.Title, "Checkout")
					eq(t, "user", h.UserID, "u-42")
					// The merchant's server is not the visitor: no country,
					// device, address or bot flag from it.
					eq(t, "country", h.Country, "")
					eq(t, "device", h.DeviceCategory+"|"+h.Browser+"|"+h.UserAgent+"|"+h.IP, "|||")
					eq(t, "bot", fmt.Sprint(h.Bot), "false")
					eq(t, "time", h.Time.Round(time.Minute).String(), now.Add(-time.Hour).Round(time.Minute).String())
				}},
				{"h-mp2", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", h.Category+"/"+h.Action, "purchase/purchase")
					eq(t, "value", fmt.Sprint(h.Value), "99.5")
					eq(t, "currency", h.Params["currency"], "EUR")
					eq(t, "items", h.Params["items"], `[{"id":"sku"}]`)
				}},
				{"h-mp3", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", h.Category+"/"+h.Action+"/"+h.Label, "account/signup/newsletter")
				}},
				{"h-mp4", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", fmt.Sprint(h.Type, " ", h.Category, "/", h.Action, "/", h.Label, " ", h.Value), "event backend/api_call/ 87")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
				}},
				{"h-mp5", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", fmt.Sprint(h.Type, " ", h.Category, "/", h.Action, "/", h.Label, " ", h.HasValue), "event exception/payment gateway timeout/fatal false")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
				}},
				// campaign_details: a non-interaction event carrying the
				// campaign as /collect's cs, cm, cn, ck and cc do.
				{"h-mp6", func(t *testing.T, h *hit.Hit) {
					eq(t, "event", fmt.Sprint(h.Type, " ", h.Category, "/", h.Action), "event campaign_details/campaign_details")
					eq(t, "non-interaction", h.Params["non_interaction"], "1")
					eq(t, "campaign", strings.Join([]string{h.Params[hit.ParamCampaignSource], h.Params[hit.ParamCampaignMedium],
						h.Params[hit.ParamCampaignName], h.Params[hit.ParamCampaignTerm], h.Params[hit.ParamCampaignContent]}, "/"),
						"newsletter/email/summer/boots/logo")
					eq(t, "campaign_id", h.Params["campaign_id"], "c-1")
				}},
				// GA4 reserves user_engagement; ours is the engagement ping.
				{"h-mp7", func(t *testing.T, h *hit.Hit) {
					eq(t, "engagement", fmt.Sprint(h.Type, " ", h.EngagementMS), "engagement 1200")
				}},
			},
		},
		{
			// A server forwarding its visitor's events with the visitor's
			// context: enriched as the visitor's browser hit would be, from
			// the body, never from the server's own address or user agent.
			name: "measurement api with the visitor's context", method: "POST", path: "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret,
			contentType: "application/json",
			body: `{"client_id":"c-mpv","ip_override":"2001:db8:1:2:3::9","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
				"device":{"screen_resolution":"390x844","language":"ja-jp"},
				"events":[{"name":"purchase","event_id":"h-mpv1","params":{"value":5}},{"name":"refund","event_id":"h-mpv2","params":{"value":5}}]}`,
			ip: "198.51.100.20", ua: "python-requests/2.31.0", wantStatus: 204,
			wants: []want{{"h-mpv1", func(t *testing.T, h *hit.Hit) {
				eq(t, "country", h.Country, "JP")
				eq(t, "ip", h.IP, "2001:db8:1::")
				eq(t, "device", h.DeviceCategory+"|"+h.Browser+"|"+h.OS, "mobile|Safari|iOS")
				eq(t, "screen and language", h.ScreenResolution+"|"+h.Language, "390x844|ja-jp")
				eq(t, "bot", fmt.Sprint(h.Bot), "false")
			}}, {"h-mpv2", func(t *testing.T, h *hit.Hit) { eq(t, "country", h.Country, "JP") }}},
		},
		{
			name: "ip exclusion in flight of a server's ip_override", method: "POST", path: "/mp/collect?tracking_id=" + tidExcluded + "&api_secret=" + apiSecret,
			contentType: "application/json",
			body:        `{"client_id":"c-mpx","ip_override":"203.0.113.99","events":[{"name":"purchase","event_id":"h-mpx"}]}`,
			ip:          "198.51.100.20", wantStatus: 204,
			wants: []want{{"h-mpx", func(t *testing.T, h *hit.Hit) {
				eq(t, "excluded by", h.IPExcludedBy, "203.0.113.0/24")
				eq(t, "ip (strict)", h.IP, "203.0.0.0")
				eq(t, "country", h.Country, "DE")
			}}},
		},
		{
			name: "cookieless visitor", method: "POST", path: "/collect?tid=" + tidCookieless,
			body: `{"hits":[{"t":"pageview","dl":"https://any.example/a","hid":"h-ck1"},{"t":"pageview","dl":"https://any.example/b","hid":"h-ck2"}]}`,
			ip:   "203.0.113.50", wantStatus: 204,
			wants: []want{
				{"h-ck1", func(t *testing.T, h *hit.Hit) {
					eq(t, "cookieless", fmt.Sprint(h.Cookieless), "true")
					if !strings.HasPrefix(h.ClientID, "ckl-") || len(h.ClientID) != 36 {
						t.Errorf("client ID = %q, want a derived ckl- ID", h.ClientID)
					}
				}},
				{"h-ck2", func(t *testing.T, h *hit.Hit) { eq(t, "cookieless", fmt.Sprint(h.Cookieless), "true") }},
			},
		},
		{
			name: "ip exclusion in flight", method: "GET",
			path: "/collect?v=1&tid=" + tidExcluded + "&cid=c-ex&t=pageview&dp=%2Fhome&hid=h-excl",
			ip:   "203.0.113.99", wantStatus: 200,
			wants: []want{{"h-excl", func(t *testing.T, h *hit.Hit) {
				eq(t, "excluded by", h.IPExcludedBy, "203.0.113.0/24")
				eq(t, "rule version", fmt.Sprint(h.RuleVersion), "7")
				eq(t, "ip (strict)", h.IP, "203.0.0.0")
				eq(t, "host", h.Hostname, "")
			}}},
		},
		{
			name: "crawler", method: "GET", path: "/collect?v=1&tid=" + tidShop + "&cid=c-bot&t=pageview&dl=https%3A%2F%2Fshop.example%2F&hid=h-bot",
			ip: "203.0.113.1", ua: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", wantStatus: 200,
			wants: []want{{"h-bot", func(t *testing.T, h *hit.Hit) {
				eq(t, "bot", fmt.Sprint(h.Bot, " ", h.BotName), "true Googlebot")
				eq(t, "device", h.DeviceCategory, "other")
			}}},
		},
		{
			name: "untrusted peer's forwarded-for is ignored", method: "GET",
			path: "/collect?v=1&tid=" + tidShop + "&cid=c-xff&t=pageview&dl=https%3A%2F%2Fshop.example%2F&hid=h-xff",
			// The test client is the trusted proxy; a client-written
			// address left of the proxy's entry is not believed.
			ip: "198.51.100.1, 203.0.113.2", wantStatus: 200,
			wants: []want{{"h-xff", func(t *testing.T, h *hit.Hit) { eq(t, "country", h.Country, "DE") }}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := time.Now()
			resp, body := e.do(tt.method, tt.path, tt.contentType, tt.body, tt.ip, tt.ua)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.method == "GET" && (resp.Header.Get("Content-Type") != "image/gif" || len(body) != 43) {
				t.Fatalf("pixel answered %q, %d bytes", resp.Header.Get("Content-Type"), len(body))
			}
			for _, w := range tt.wants {
				msgs := hits.waitFor(t, 1, hasHID(w.marker))
				if len(msgs) != 1 {
					t.Fatalf("%s: %d messages, want exactly 1", w.marker, len(msgs))
				}
				m := msgs[0]
				h := hitsOf(t, msgs)[0]
				if got, want := string(m.Key), string(h.Key(testProperties(t)[h.TrackingID].Shards)); got != want {
					t.Errorf("%s: key %q, want %q", w.marker, got, want)
				}
				if m.Timestamp.Before(sent.Add(-time.Second)) || m.Timestamp.After(time.Now().Add(time.Second)) {
					t.Errorf("%s: message timestamp %v not when it was accepted (%v)", w.marker, m.Timestamp, sent)
				}
				if !m.Timestamp.Equal(h.ReceivedAt.Truncate(time.Millisecond)) {
					t.Errorf("%s: message timestamp %v, receive time %v", w.marker, m.Timestamp, h.ReceivedAt)
				}
				if want := h.DeriveID(w.marker); h.ID != want {
					t.Errorf("%s: ID %s, want DeriveID(hid) %s", w.marker, h.ID, want)
				}
				if strings.Contains(string(m.Value), tt.ip) && tt.ip != "" {
					t.Errorf("%s: the full IP left the service: %s", w.marker, m.Value)
				}
				for _, full := range []string{"2001:db8:1:2:3::9", "203.0.113.99"} {
					if strings.Contains(string(m.Value), full) {
						t.Errorf("%s: the full ip_override left the service: %s", w.marker, m.Value)
					}
				}
				w.check(t, h)
			}
		})
	}
}

// TestABatchIsOneRecordPerKey checks how a request's hits are grouped into
// records of the hits topic: one record per key, holding that key's hits
// in the order they were sent, and more records of a key only when one
// would pass hit.MaxRecordBytes.
func TestABatchIsOneRecordPerKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	hits := e.read(hit.TopicHits)
	shards := testProperties(t)[tidShop].Shards
	// Three visitors in different shards, their hits interleaved.
	var cids []string
	seen := map[int]bool{}
	for i := 0; len(cids) < 4; i++ { // the fourth for the big batch below
		cid := fmt.Sprintf("c-group-%d", i)
		if s := hit.ShardOf(cid, shards); !seen[s] {
			seen[s] = true
			cids = append(cids, cid)
		}
	}
	var items []string
	for i := range 9 {
		items = append(items, fmt.Sprintf(`{"cid":%q,"t":"pageview","dl":"https://shop.example/%d","hid":"h-group-%d"}`, cids[i%3], i, i))
	}
	// And one visitor's batch too big for one record: 200 hits with
	// 1400-byte titles.
	long := strings.Repeat("x", 1400)
	for i := range 200 {
		items = append(items, fmt.Sprintf(`{"cid":%q,"t":"pageview","dl":"https://shop.example/big","dt":"%s","hid":"h-big-%d"}`, cids[3], long, i))
	}
	body := `{"hits":[` + strings.Join(items, ",") + `]}`
	if resp, b := e.do("POST", "/collect?tid="+tidShop, "text/plain", body, "203.0.113.7", ""); resp.StatusCode != 204 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	hits.waitFor(t, 209, func(m *sarama.ConsumerMessage) bool { return bytes.Contains(m.Value, []byte("shop.example/")) })

	hits.mu.Lock()
	defer hits.mu.Unlock()
	byKey := map[string][]string{} // key -> each record's paths
	for _, rec := range hits.records {
		var paths []string
		for _, m := range splitRecord(t, rec) {
			h := hitsOf(t, []*sarama.ConsumerMessage{m})[0]
			if string(h.Key(shards)) != string(rec.Key) {
				t.Errorf("hit of %s in a record of key %s", h.ClientID, rec.Key)
			}
			paths = append(paths, h.Path)
			if len(rec.Value) > hit.MaxRecordBytes {
				t.Errorf("a record of %d bytes", len(rec.Value))
			}
		}
		byKey[string(rec.Key)] = append(byKey[string(rec.Key)], strings.Join(paths, " "))
	}
	for i, cid := range cids[:3] {
		key := string((&hit.Hit{PropertyID: "p-shop", ClientID: cid}).Key(shards))
		want := fmt.Sprintf("/%d /%d /%d", i, i+3, i+6)
		if got := byKey[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: records %q, want one with %q", cid, got, want)
		}
	}
	big := byKey[string((&hit.Hit{PropertyID: "p-shop", ClientID: cids[3]}).Key(shards))]
	if len(big) < 2 || strings.Count(strings.Join(big, " "), "/big") != 200 {
		t.Errorf("the big batch came in %d records holding %d hits; want it split in several holding all 200",
			len(big), strings.Count(strings.Join(big, " "), "/big"))
	}
}

// hasHID matches the hit sent with the client event ID hid (which the hit
// does not carry: its ID is derived from it).
func hasHID(hid string) func(*sarama.ConsumerMessage) bool {
	return func(m *sarama.ConsumerMessage) bool {
		h, err := hit.Unmarshal(m.Value)
		return err == nil && h.ID == h.DeriveID(hid)
	}
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestInvalidHitsAreAnsweredAndDeadLettered checks the status and the
// dead letter of every kind of rejection.
func TestInvalidHitsAreAnsweredAndDeadLettered(t *testing.T) {
	e := newEnv(t, envOptions{})
	dead := e.read(hit.TopicDeadLetter)
	hits := e.read(hit.TopicHits)

	bigBatch := func(n int, marker string) string {
		var b strings.Builder
		b.WriteString(`{"hits":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"cid":"%s","t":"pageview","dp":"/"}`, marker)
		}
		b.WriteString("]}")
		return b.String()
	}
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantReason, wantField    string
		marker                   string // in the dead letter's payload
		wantAccepted             string // hid of a valid hit of the same batch that must still be stored
	}{
		{"unknown tracking id", "POST", "/collect?tid=" + tidUnknown, `{"hits":[{"cid":"m-unknown","t":"pageview","dp":"/"}]}`, 400, "unknown_tracking_id", "tid", "m-unknown", ""},
		{"not a tracking id", "POST", "/collect?tid=UA-1234", `{"hits":[{"cid":"m-notid","t":"pageview","dp":"/"}]}`, 400, "unknown_tracking_id", "tid", "m-notid", ""},
		{"missing tracking id", "POST", "/collect", `{"hits":[{"cid":"m-notid2","t":"pageview","dp":"/"}]}`, 400, "malformed", "tid", "m-notid2", ""},
		// The field is the one the host came from: dl, unless dh overrides it.
		{"foreign host", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-foreign","t":"pageview","dl":"https://evil.example/"}]}`, 400, "foreign_host", "dl", "m-foreign", ""},
		{"lookalike host", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-look","t":"pageview","dl":"https://notshop.example/"}]}`, 400, "foreign_host", "dl", "m-look", ""},
		{"foreign host override", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-foreigndh","t":"pageview","dl":"https://shop.example/","dh":"evil.example"}]}`, 400, "foreign_host", "dh", "m-foreigndh", ""},
		{"host that is none", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-badhost","t":"pageview","dl":"https://shop$example/"}]}`, 400, "malformed", "dl", "m-badhost", ""},
		{"not json", "POST", "/collect?tid=" + tidShop, `m-notjson {`, 400, "malformed", "", "m-notjson", ""},
		{"no hits array", "POST", "/collect?tid=" + tidShop, `{"hit":"m-nohits"}`, 400, "malformed", "hits", "m-nohits", ""},
		{"missing client id", "POST", "/collect?tid=" + tidShop, `{"hits":[{"t":"pageview","dp":"/m-nocid"}]}`, 400, "malformed", "cid", "m-nocid", ""},
		{"unknown type", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-type","t":"click","dp":"/"}]}`, 400, "malformed", "t", "m-type", ""},
		{"event without action", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-noaction","t":"event","ec":"x"}]}`, 400, "malformed", "ea", "m-noaction", ""},
		{"bad value", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-value","t":"event","ea":"x","ev":"lots"}]}`, 400, "malformed", "ev", "m-value", ""},
		{"timing without its time", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-timing","t":"timing","utv":"load"}]}`, 400, "malformed", "utt", "m-timing", ""},
		{"pixel exception with a bad flag", "GET", "/collect?v=1&tid=" + tidShop + "&cid=m-exf&t=exception&exd=x&exf=yes", "", 200, "malformed", "exf", "m-exf", ""},
		{"nested value", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-nested","t":"event","ea":{"x":1}}]}`, 400, "malformed", "ea", "m-nested", ""},
		{"other tracking id in batch", "POST", "/collect?tid=" + tidShop, `{"hits":[{"tid":"` + tidCookieless + `","cid":"m-mixed","t":"pageview","dp":"/"}]}`, 400, "malformed", "tid", "m-mixed", ""},
		{"too old", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-old","t":"pageview","dp":"/","qt":14400001}]}`, 400, "too_old", "qt", "m-old", ""},
		{"one bad hit in a batch", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-partial","t":"pageview","dl":"https://shop.example/","hid":"ok-partial"},{"cid":"m-partial","t":"nope"}]}`, 400, "malformed", "t", "m-partial", "ok-partial"},
		{"hit too large", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-bighit","t":"pageview","dp":"/","dt":"` + strings.Repeat("x", 9000) + `"}]}`, 413, "too_large", "", "m-bighit", ""},
		{"batch over 500 hits", "POST", "/collect?tid=" + tidShop, bigBatch(501, "m-manyhits"), 413, "too_large", "hits", "m-manyhits", ""},
		{"body over 512 KiB", "POST", "/collect?tid=" + tidShop, `{"hits":[{"cid":"m-bigbody","t":"pageview","dp":"/","dt":"` + strings.Repeat("x", 600<<10) + `"}]}`, 413, "too_large", "", "m-bigbody", ""}, // the dead letter keeps the body's beginning
		{"pixel hit too large", "GET", "/collect?v=1&tid=" + tidShop + "&cid=m-bigpixel&t=pageview&dp=%2F&dt=" + strings.Repeat("y", 9000), "", 200, "too_large", "", "m-bigpixel", ""},
		{"pixel malformed", "GET", "/collect?v=1&tid=" + tidShop + "&t=pageview&dp=%2Fm-pixelnocid", "", 200, "malformed", "cid", "m-pixelnocid", ""},
		{"pixel unknown tracking id", "GET", "/collect?v=1&tid=" + tidUnknown + "&cid=m-pixelunknown&t=pageview&dp=%2F", "", 200, "unknown_tracking_id", "tid", "m-pixelunknown", ""},
		{"mp bad secret", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=wrong", `{"client_id":"m-secret","events":[{"name":"x"}]}`, 403, "bad_secret", "api_secret", "m-secret", ""},
		{"mp no secret", "POST", "/mp/collect?tracking_id=" + tidShop, `{"client_id":"m-nosecret","events":[{"name":"x"}]}`, 403, "bad_secret", "api_secret", "m-nosecret", ""},
		{"mp bad event name", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"m-evname","events":[{"name":"9 lives"}]}`, 400, "malformed", "events[0].name", "m-evname", ""},
		{"mp value in another currency", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"m-yen","events":[{"name":"purchase","params":{"value":1000,"currency":"JPY"}}]}`, 400, "malformed", "events[0].params.currency", "m-yen", ""},
		{"mp bad value", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"m-mpvalue","events":[{"name":"purchase","params":{"value":"lots"}}]}`, 400, "malformed", "events[0].params.value", "m-mpvalue", ""},
		// GA4's reserved event names are refused, the request's other events stored.
		{"mp reserved event name", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"m-reserved","events":[{"name":"purchase","event_id":"ok-reserved","params":{"value":1}},{"name":"session_start"}]}`, 400, "reserved_name", "events[1].name", "m-reserved", "ok-reserved"},
		{"mp reserved prefix", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"m-fbprefix","events":[{"name":"firebase_sync"}]}`, 400, "reserved_name", "events[0].name", "m-fbprefix", ""},
		{"mp too old", "POST", "/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, fmt.Sprintf(`{"client_id":"m-mpold","timestamp_micros":%d,"events":[{"name":"x"}]}`, time.Now().Add(-5*time.Hour).UnixMicro()), 400, "too_old", "timestamp_micros", "m-mpold", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, "application/json", tt.body, "203.0.113.7", "")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %.300s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.method == "GET" {
				if got := resp.Header.Get("X-Collect-Error"); got != tt.wantReason {
					t.Errorf("X-Collect-Error = %q, want %q", got, tt.wantReason)
				}
				if resp.Header.Get("Content-Type") != "image/gif" {
					t.Errorf("the pixel answered %q, not an image", resp.Header.Get("Content-Type"))
				}
			} else {
				var eb struct {
					Error struct{ Code, Field, Message string }
				}
				if err := json.Unmarshal(body, &eb); err != nil {
					t.Fatalf("body is not JSON: %s", body)
				}
				if eb.Error.Code != tt.wantReason || eb.Error.Field != tt.wantField || eb.Error.Message == "" {
					t.Errorf("error = %+v, want code %q field %q and a message", eb.Error, tt.wantReason, tt.wantField)
				}
			}
			msgs := dead.waitFor(t, 1, func(m *sarama.ConsumerMessage) bool {
				return bytes.Contains(m.Value, []byte(tt.marker)) && strings.Contains(string(m.Value), `"reason":"`+tt.wantReason+`"`)
			})
			dl := deadLetterOf(t, msgs[0])
			if dl.Reason != tt.wantReason || dl.Stage != "collection" || dl.Detail == "" || dl.ReceivedAt.IsZero() {
				t.Errorf("dead letter = %+v, want reason %q from collection", dl, tt.wantReason)
			}
			if strings.Contains(string(msgs[0].Value), "203.0.113.7") || strings.Contains(string(msgs[0].Value), "api_secret=") || strings.Contains(dl.Payload, "wrong") {
				t.Errorf("the dead letter carries the IP or the secret: %s", msgs[0].Value)
			}
			if tt.wantAccepted != "" {
				hits.waitFor(t, 1, hasHID(tt.wantAccepted))
			}
		})
	}
	// Counted as every rejection is, under its reason.
	if n := counterSum(t, e, "collection_hits_rejected_total", "reason", "reserved_name", "origin", "mp"); n != 2 {
		t.Errorf("collection_hits_rejected_total{reserved_name,mp} = %v, want 2", n)
	}
}

// TestDebugEndpointStoresNothing checks that the validation endpoint
// explains without storing.
func TestDebugEndpointStoresNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name, method, path, body string
		wantValid                bool
		wantCodes                []string // per hit; "" for valid
		wantError                string   // for the request
	}{
		{"valid pixel", "GET", "/debug/collect?v=1&tid=" + tidShop + "&cid=dbg&t=pageview&dl=https%3A%2F%2Fshop.example%2F", "", true, []string{""}, ""},
		{"batch with a foreign hit", "POST", "/debug/collect?tid=" + tidShop, `{"hits":[{"cid":"dbg","t":"pageview","dp":"/"},{"cid":"dbg","t":"pageview","dl":"https://else.example/"}]}`, false, []string{"foreign_host", "foreign_host"}, ""},
		{"batch with a hit from the site and one from nowhere", "POST", "/debug/collect?tid=" + tidShop, `{"hits":[{"cid":"dbg","t":"pageview","dh":"shop.example","dp":"/"},{"cid":"dbg","t":"pageview","dp":"/spam"}]}`, false, []string{"", "foreign_host"}, ""},
		{"unknown tracking id", "POST", "/debug/collect?tid=" + tidUnknown, `{"hits":[{"cid":"dbg","t":"pageview","dp":"/"}]}`, false, nil, "unknown_tracking_id"},
		{"measurement", "POST", "/debug/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"dbg","events":[{"name":"page_view","params":{"page_location":"https://shop.example/"}}]}`, true, []string{""}, ""},
		{"measurement with a reserved name", "POST", "/debug/mp/collect?tracking_id=" + tidShop + "&api_secret=" + apiSecret, `{"client_id":"dbg","events":[{"name":"page_view","params":{"page_location":"https://shop.example/"}},{"name":"first_visit"}]}`, false, []string{"", "reserved_name"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, "application/json", tt.body, "203.0.113.7", "")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var res struct {
				Valid bool
				Error *struct{ Code string }
				Hits  []struct {
					Valid bool
					Hit   *hit.Hit
					Error *struct{ Code string }
				}
			}
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			if res.Valid != tt.wantValid {
				t.Errorf("valid = %v, want %v: %s", res.Valid, tt.wantValid, body)
			}
			if tt.wantError != "" && (res.Error == nil || res.Error.Code != tt.wantError) {
				t.Errorf("error = %+v, want %s", res.Error, tt.wantError)
			}
			if len(res.Hits) != len(tt.wantCodes) {
				t.Fatalf("%d hits in the answer, want %d: %s", len(res.Hits), len(tt.wantCodes), body)
			}
			for i, code := range tt.wantCodes {
				h := res.Hits[i]
				switch {
				case code == "" && (!h.Valid || h.Hit == nil || (h.Hit.Origin == hit.OriginBrowser && (h.Hit.Country != "DE" || h.Hit.IP != "203.0.113.0"))):
					t.Errorf("hit %d: %s", i, body)
				case code != "" && (h.Valid || h.Error == nil || h.Error.Code != code):
					t.Errorf("hit %d: want %s: %s", i, code, body)
				}
			}
		})
	}
	// Nothing was queued: the topics are empty.
	if got := topicSize(t, e, hit.TopicHits) + topicSize(t, e, hit.TopicDeadLetter); got != 0 {
		t.Fatalf("debug requests stored %d messages", got)
	}
}

func topicSize(t *testing.T, e *env, topic string) int64 {
	t.Helper()
	client, err := sarama.NewClient(strings.Split(e.brokers, ","), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range parts {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		n += off
	}
	return n
}
