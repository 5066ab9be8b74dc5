package collect

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/collection-svc/internal/parse"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/pixel"
)

// TestPixel checks the pixel's answers: a GET is a hit, a HEAD (which
// the GET pattern matches too) only the pixel's headers, and a page's
// fetch may read X-Collect-Error.
func TestPixel(t *testing.T) {
	var queued int
	s, p := testServer(t, 4, countingQueue{&queued})
	mux := http.NewServeMux()
	s.Register(mux)
	const hitQuery = "?v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F&hid=h"
	tests := []struct {
		method, query string
		wantQueued    int
		wantBody      int
	}{
		{"HEAD", hitQuery + "&tid=" + p.TrackingID, 0, 0},
		{"GET", hitQuery + "&tid=" + p.TrackingID, 1, len(pixel.GIF)},
		{"HEAD", hitQuery + "&tid=AT-NNNNNNNNNN", 0, 0}, // not even a dead letter
	}
	for _, tt := range tests {
		queued = 0
		req := httptest.NewRequest(tt.method, "/collect"+tt.query, nil)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		res := w.Result()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/gif" || w.Body.Len() != tt.wantBody {
			t.Errorf("%s %s: %d %q, %d bytes", tt.method, tt.query, res.StatusCode, res.Header.Get("Content-Type"), w.Body.Len())
		}
		if queued != tt.wantQueued {
			t.Errorf("%s %s: %d records queued, want %d", tt.method, tt.query, queued, tt.wantQueued)
		}
		if got := res.Header.Get("Access-Control-Expose-Headers"); got != "X-Collect-Error" {
			t.Errorf("%s: Access-Control-Expose-Headers %q, want X-Collect-Error", tt.method, got)
		}
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", tt.method, got)
		}
	}
}

type deadLetters []hit.DeadLetter

func (d *deadLetters) Add(dl hit.DeadLetter) { *d = append(*d, dl) }

// TestMeasurementDeadLettersAreReplayable checks that a dead letter of the
// Measurement API is a request it takes, replayable as is: the request
// when it is rejected whole, else one with the request's fields and just
// the rejected event, whenever it is rejected.
func TestMeasurementDeadLettersAreReplayable(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 4, countingQueue{new(int)}, &dead)
	now := time.Now()
	old := now.Add(-5 * time.Hour).UnixMicro()
	events := []string{
		`{"name":"purchase","event_id":"e1","params":{"value":12.5,"items":[{"item_id":"SKU-1"}]}}`,
		`{"name":"page_view","params":{"page_location":"https://shop.example/a","page_title":"A"}}`,
	}
	body := fmt.Sprintf(`{"client_id":"c1","user_id":"u1","timestamp_micros":%d,"non_personalized_ads":true,"events":[%s]}`, old, strings.Join(events, ","))
	recent := fmt.Sprintf(`{"client_id":"c1","timestamp_micros":"%d","events":[{"name":"x","timestamp_micros":"soon"},{"name":"9 lives"}]}`, now.UnixMicro())
	tests := []struct {
		name, secret, body string
		want               []string // the dead letters' payloads
		wantReasons        []string
	}{
		{"bad secret", "wrong", body, []string{body}, []string{"bad_secret"}},
		{"too old: each event with the request's fields", "secret", body, []string{
			fmt.Sprintf(`{"client_id":"c1","user_id":"u1","timestamp_micros":%d,"non_personalized_ads":true,"events":[%s]}`, old, events[0]),
			fmt.Sprintf(`{"client_id":"c1","user_id":"u1","timestamp_micros":%d,"non_personalized_ads":true,"events":[%s]}`, old, events[1]),
		}, []string{"too_old", "too_old"}},
		{"malformed after and while parsing", "secret", recent, []string{
			fmt.Sprintf(`{"client_id":"c1","timestamp_micros":"%d","events":[{"name":"x","timestamp_micros":"soon"}]}`, now.UnixMicro()),
			fmt.Sprintf(`{"client_id":"c1","timestamp_micros":"%d","events":[{"name":"9 lives"}]}`, now.UnixMicro()),
		}, []string{"malformed", "malformed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead = nil
			req := httptest.NewRequest("POST", "/mp/collect?tracking_id="+p.TrackingID+"&api_secret="+tt.secret, strings.NewReader(tt.body))
			req.RemoteAddr = "203.0.113.7:5000"
			s.measurement(httptest.NewRecorder(), req)
			if len(dead) != len(tt.want) {
				t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(tt.want), dead)
			}
			for i, dl := range dead {
				if dl.Payload != tt.want[i] || dl.Reason != tt.wantReasons[i] {
					t.Errorf("dead letter %d: %s %s\nwant %s %s", i, dl.Reason, dl.Payload, tt.wantReasons[i], tt.want[i])
				}
				// Replayed as is, it is read as the event was.
				replayed, err := parse.Measurement(nil, []byte(dl.Payload))
				if err != nil {
					t.Errorf("dead letter %d is no Measurement API request: %v", i, err)
				}
				if tt.secret == "secret" && (err != nil || len(replayed) != 1) {
					t.Errorf("dead letter %d holds %d events", i, len(replayed))
				}
			}
		})
	}
}

// TestBatchKeepsItsOrder: hits of one request at one time (a batch without
// queue times or timestamps) are dated in the order they were sent, so
// that processing orders them so (it breaks a tie of times by ID, a hash);
// a hit whose time no other hit of the request has keeps it exactly.
func TestBatchKeepsItsOrder(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	post := func(path, body string) []*hit.Hit {
		t.Helper()
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var res DebugResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || !res.Valid || len(res.Hits) == 0 {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		var hits []*hit.Hit
		for _, dh := range res.Hits {
			hits = append(hits, dh.Hit)
		}
		return hits
	}
	var hits []string
	for _, path := range []string{"/z", "/a", "/m", "/b"} { // IDs in another order than the paths
		hits = append(hits, `{"cid":"c","t":"pageview","dl":"https://shop.example`+path+`"}`)
	}
	hits = append(hits, `{"cid":"c","t":"pageview","dl":"https://shop.example/earlier","qt":60000}`)
	batch := post("/debug/collect?tid="+p.TrackingID, `{"hits":[`+strings.Join(hits, ",")+`]}`)
	if d := batch[0].Time.Sub(batch[4].Time); d != time.Minute {
		t.Errorf("a hit sent with qt=60000 is dated %s before the batch's receipt, want exactly 1m0s", d)
	}
	// Another visitor's hit at the same time is no twin: it keeps its time.
	two := post("/debug/collect?tid="+p.TrackingID, `{"hits":[{"cid":"alice","t":"pageview","dl":"https://shop.example/a","qt":1000},{"cid":"bob","t":"pageview","dl":"https://shop.example/b","qt":1000}]}`)
	if !two[0].Time.Equal(two[1].Time) {
		t.Errorf("two visitors' hits of one time dated %s and %s, want the same", two[0].Time, two[1].Time)
	}
	mp := post("/debug/mp/collect?tracking_id="+p.TrackingID+"&api_secret=secret",
		`{"client_id":"c","events":[{"name":"a"},{"name":"b"},{"name":"c"}]}`)
	for name, sent := range map[string][]*hit.Hit{"batch": batch[:4], "measurement": mp} {
		for i := 1; i < len(sent); i++ {
			if !sent[i-1].Time.Before(sent[i].Time) {
				t.Errorf("%s: hit %d is dated %s, not after hit %d's %s", name, i, sent[i].Time, i-1, sent[i-1].Time)
			}
		}
		if d := sent[len(sent)-1].Time.Sub(sent[0].Time); d > time.Microsecond {
			t.Errorf("%s: hits of one time spread over %s", name, d)
		}
	}
}

// TestCampaignApartFromTheLocation: Universal Analytics' campaign
// parameters (cs, cm, cn, ck, cc, gclid) are kept in the hit's parameters
// under GA4's names, for processing; an over-long one is refused by name.
func TestCampaignApartFromTheLocation(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	get := func(query string) DebugResult {
		t.Helper()
		req := httptest.NewRequest("GET", "/debug/collect?tid="+p.TrackingID+"&v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F"+query, nil)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var res DebugResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res.Hits) != 1 {
			t.Fatalf("%s: %d %s", query, w.Code, w.Body)
		}
		return res
	}
	res := get("&cs=newsletter&cm=email&cn=spring&ck=shoes&cc=banner&gclid=abc")
	want := map[string]string{hit.ParamCampaignSource: "newsletter", hit.ParamCampaignMedium: "email", hit.ParamCampaignName: "spring",
		hit.ParamCampaignTerm: "shoes", hit.ParamCampaignContent: "banner", hit.ParamGCLID: "abc"}
	if h := res.Hits[0].Hit; !res.Valid || fmt.Sprint(h.Params) != fmt.Sprint(want) {
		t.Fatalf("campaign parameters: %+v, want params %v", res.Hits[0], want)
	}
	if res := get("&cm=" + strings.Repeat("e", 51)); res.Valid || res.Hits[0].Error == nil || res.Hits[0].Error.Field != "cm" {
		t.Fatalf("a 51-byte cm: %+v, want refused naming cm", res.Hits[0])
	}
}

// TestDebugShowsNoStoredIDs: the validation endpoint, which asks for no
// token, shows the hit without the tenant and property it would be stored
// under, so a tracking ID does not tell anyone which sites one customer
// has; what is queued keeps them.
func TestDebugShowsNoStoredIDs(t *testing.T) {
	q := &holdingQueue{}
	s, p := testServer(t, 1, q)
	mux := http.NewServeMux()
	s.Register(mux)
	for _, path := range []string{"/debug/collect", "/collect"} {
		req := httptest.NewRequest("GET", path+"?tid="+p.TrackingID+"&v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F", nil)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if path == "/debug/collect" {
			body := w.Body.String()
			if !strings.Contains(body, `"valid":true`) || strings.Contains(body, `"tn"`) || strings.Contains(body, `"pid"`) {
				t.Fatalf("/debug/collect answered %s: want the valid hit without its tenant and property", body)
			}
		}
	}
	if len(q.msgs) != 1 {
		t.Fatalf("%d records queued, want the /collect hit's", len(q.msgs))
	}
	values, err := hit.SplitRecord(must(q.msgs[0].Value.Encode()))
	if err != nil || len(values) != 1 {
		t.Fatalf("the record: %d hits, %v", len(values), err)
	}
	if got := must(hit.Unmarshal(values[0])); got.PropertyID != p.ID || got.TenantID != p.TenantID {
		t.Fatalf("queued %+v, want the /collect hit with its tenant and property", got)
	}
}

// TestHostWithUnderscore: a page on a host with '_' in a label, which
// browsers load, is a hit like any other (a subdomain of the property's
// shop.example here); a host with a character no browser takes is not.
func TestHostWithUnderscore(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	for host, valid := range map[string]bool{"my_shop.shop.example": true, "my$shop.shop.example": false} {
		req := httptest.NewRequest("GET", "/debug/collect?tid="+p.TrackingID+"&v=1&t=pageview&cid=c&dl=https%3A%2F%2F"+host+"%2F", nil)
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var res DebugResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Valid != valid {
			t.Errorf("a page on %s: %s, want valid %v", host, w.Body, valid)
		}
	}
}
