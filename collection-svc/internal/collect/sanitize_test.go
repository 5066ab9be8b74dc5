package collect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
)

// decodingQueue keeps the hits of every record it is sent, decoded as
// processing decodes them.
type decodingQueue struct{ hits []*hit.Hit }

func (q *decodingQueue) Send(_ context.Context, msgs []*sarama.ProducerMessage, _ int) error {
	for _, m := range msgs {
		parts, err := hit.SplitRecord(must(m.Value.Encode()))
		if err != nil {
			return err
		}
		for _, p := range parts {
			h, err := hit.Unmarshal(p)
			if err != nil {
				return err
			}
			q.hits = append(q.hits, h)
		}
	}
	return nil
}

// serve sends one request to s from 203.0.113.7.
func serve(s *Server, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = "203.0.113.7:5000"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	mux := http.NewServeMux()
	s.Register(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	return w
}

// TestMeasurementParamsLoseTheirCredentials: credentials in a Measurement
// API event's page_location and page_referrer are dropped from the hit
// (docs/collection.md), from its parameters too, which kept them as sent:
// the queue, the archive and the debug endpoint's answer held them.
func TestMeasurementParamsLoseTheirCredentials(t *testing.T) {
	q := &decodingQueue{}
	s, p := testServer(t, 1, q)
	mux := http.NewServeMux()
	s.Register(mux)
	body := `{"client_id":"c","events":[{"name":"page_view","params":{` +
		`"page_location":"https://admin:hunter2@shop.example/a","page_referrer":"https://me:pw@ref.example/"}}]}`
	if w := postMP(t, mux, p.TrackingID, "/mp/collect", body); w.Code != http.StatusNoContent {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if len(q.hits) != 1 {
		t.Fatalf("%d hits queued, want 1", len(q.hits))
	}
	h := q.hits[0]
	if h.URL != "https://shop.example/a" || h.Referrer != "https://ref.example/" {
		t.Errorf("URL %q, referrer %q", h.URL, h.Referrer)
	}
	if b := string(must(hit.Marshal(h))); strings.Contains(b, "hunter2") || strings.Contains(b, "me:pw") {
		t.Errorf("the queued hit holds the credentials: params %v", h.Params)
	}
}

// TestUserAgentStaysUTF8: a hit's user agent, and the browser named from
// it, are valid UTF-8 whatever was sent. A Measurement API user_agent
// (valid UTF-8) cut to 1024 bytes in the middle of a character was not;
// nor was a browser's header with bytes that are not UTF-8, which the
// device parser copied into the browser's name (a text column Cassandra
// refuses such bytes in).
func TestUserAgentStaysUTF8(t *testing.T) {
	q := &decodingQueue{}
	s, p := testServer(t, 1, q)
	mux := http.NewServeMux()
	s.Register(mux)
	ua := strings.Repeat("a", 1023) + "é" // 1025 bytes
	if w := postMP(t, mux, p.TrackingID, "/mp/collect", `{"client_id":"c","user_agent":"`+ua+`","events":[{"name":"sign_up"}]}`); w.Code != http.StatusNoContent {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	for _, header := range []string{"\xff\xfeBrowser/1.0", "Mozilla/5.0 (X11; \xffLinux) Foo\xff/2"} {
		w := serve(s, "GET", "/collect?tid="+p.TrackingID+"&t=pageview&cid=c1&dl=https%3A%2F%2Fshop.example%2F", "", "User-Agent", header)
		if w.Code != http.StatusOK || w.Header().Get("X-Collect-Error") != "" {
			t.Fatalf("User-Agent %q: %d %s", header, w.Code, w.Header().Get("X-Collect-Error"))
		}
	}
	if len(q.hits) != 3 {
		t.Fatalf("%d hits queued, want 3", len(q.hits))
	}
	for _, h := range q.hits {
		if !utf8.ValidString(h.UserAgent) || !utf8.ValidString(h.Browser) || !utf8.ValidString(h.OS) || len(h.UserAgent) > maxUserAgent {
			t.Errorf("user agent %q (%d bytes), browser %q, OS %q: want valid UTF-8, at most %d bytes", h.UserAgent, len(h.UserAgent), h.Browser, h.OS, maxUserAgent)
		}
	}
}

// TestNullClearsARepeatedField: null is an absent value, and of a field
// given more than once the last is read (docs/collection.md), in a batch
// as in a query: cid=c1&cid= on the pixel has no client ID, and neither
// has {"cid":"c1","cid":null}, which kept "c1" (in both of the batch's
// readers).
func TestNullClearsARepeatedField(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 1, &decodingQueue{}, &dead)
	w := serve(s, "GET", "/collect?tid="+p.TrackingID+"&t=event&ea=play&cid=c1&cid=&dl=https%3A%2F%2Fshop.example%2F&hid=x", "")
	if w.Header().Get("X-Collect-Error") != "malformed" {
		t.Fatalf("pixel: X-Collect-Error %q, want malformed (no cid)", w.Header().Get("X-Collect-Error"))
	}
	for _, body := range []string{
		`{"hits":[{"t":"event","ea":"play","cid":"c1","cid":null,"dl":"https://shop.example/","hid":"x"}]}`,      // the fast reader
		`{"hits":[{"t":"event","ea":"play","cid":"c1","cid":null,"dl":"https://shop.example/","hid":"\u0078"}]}`, // fastjson's
	} {
		if w := serve(s, "POST", "/collect?tid="+p.TrackingID, body); w.Code != http.StatusBadRequest {
			t.Errorf("batch %s: %d, want 400 as for the pixel (the last cid, null, is absent)", body, w.Code)
		}
	}
	// A lone null is absent too, and the value after a null is read.
	if w := serve(s, "POST", "/collect?tid="+p.TrackingID, `{"hits":[{"t":"event","ea":"play","cid":null,"cid":"c2","dl":"https://shop.example/","el":null}]}`); w.Code != http.StatusNoContent {
		t.Errorf("a null then a value: %d %s", w.Code, w.Body)
	}
}
