package collect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestAmbiguousTrackingIDIsRefused: a query in which the gateway's rate
// limit (the first value of the parameter, its name as sent) and another
// reading (the last value, an unescaped name, a pair with a ';' or a bad
// escape dropped) could find different tracking IDs is refused as
// malformed, dead-lettered and counted, and nothing is queued: the hit
// would otherwise be accepted for a property while counted against
// another's bucket.
func TestAmbiguousTrackingIDIsRefused(t *testing.T) {
	var queued int
	var dead deadLetters
	s, p := testServerWith(t, 1, countingQueue{&queued}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	victim := p.TrackingID
	const pixelHit = "v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F"
	const batch = `{"hits":[{"cid":"c","t":"pageview","dl":"https://shop.example/"}]}`
	const mp = `{"client_id":"c","events":[{"name":"page_view","params":{"page_location":"https://shop.example/"}}]}`
	type endpoint struct {
		method, path, param, rest, body, origin string
	}
	endpoints := []endpoint{
		{"GET", "/collect", "tid", "&" + pixelHit, "", "browser"},
		{"POST", "/collect", "tid", "", batch, "browser"},
		{"POST", "/mp/collect", "tracking_id", "&api_secret=secret", mp, "mp"},
	}
	forms := []struct{ name, query string }{
		{"repeated", "{p}=AT-NNNNNNNNNN&{p}={v}"},
		{"name alone first", "{p}&{p}={v}"},
		{"escaped name", "{e}={v}"},
		{"escaped name after", "{p}=AT-NNNNNNNNNN&{e}={v}"},
		{"semicolon", "{p}=x;&{p}={v}"},
		{"bad escape", "{p}=%zz&{p}={v}"},
	}
	for _, ep := range endpoints {
		// The parameter's name with its first letter percent-encoded.
		escaped := "%" + strings.ToUpper(string("0123456789abcdef"[ep.param[0]>>4])+string("0123456789abcdef"[ep.param[0]&15])) + ep.param[1:]
		// A well-formed request is accepted (the test's requests are hits).
		check := func(name, query string, wantOK bool) {
			t.Helper()
			queued, dead = 0, nil
			rejected := counted(t, s, ep.origin)
			req := httptest.NewRequest(ep.method, ep.path+"?"+query+ep.rest, strings.NewReader(ep.body))
			req.RemoteAddr = "203.0.113.7:5000"
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if wantOK {
				if queued != 1 || len(dead) != 0 {
					t.Fatalf("%s %s?%s: %d %s, %d queued, dead letters %+v; want it accepted", ep.method, ep.path, query, w.Code, w.Body, queued, dead)
				}
				return
			}
			if ep.method == "GET" {
				if w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" || w.Header().Get("X-Collect-Error") != "malformed" {
					t.Errorf("%s %s: %d %q X-Collect-Error %q, want the GIF with malformed", ep.path, name, w.Code, w.Header().Get("Content-Type"), w.Header().Get("X-Collect-Error"))
				}
			} else {
				var body struct {
					Error struct{ Code, Field, Message string }
				}
				_ = json.Unmarshal(w.Body.Bytes(), &body)
				if w.Code != 400 || body.Error.Code != "malformed" || body.Error.Field != ep.param || body.Error.Message == "" {
					t.Errorf("%s %s: %d %s, want 400 malformed naming %s", ep.path, name, w.Code, w.Body, ep.param)
				}
			}
			if queued != 0 {
				t.Errorf("%s %s: %d records queued, want none", ep.path, name, queued)
			}
			wantPayload := ep.body
			if ep.method == "GET" {
				wantPayload = query + ep.rest
			}
			if len(dead) != 1 || dead[0].Reason != "malformed" || dead[0].Payload != wantPayload || !strings.Contains(dead[0].Detail, ep.param) {
				t.Errorf("%s %s: dead letters %+v, want one malformed with the payload as sent", ep.path, name, dead)
			}
			if got := counted(t, s, ep.origin) - rejected; got != 1 {
				t.Errorf("%s %s: collection_hits_rejected_total{malformed,%s} grew by %v, want 1", ep.path, name, ep.origin, got)
			}
		}
		check("well-formed", ep.param+"="+victim, true)
		for _, f := range forms {
			query := strings.NewReplacer("{p}", ep.param, "{e}", escaped, "{v}", victim).Replace(f.query)
			check(f.name, query, false)
		}
	}

	// The debug endpoints answer the same refusal, storing nothing.
	for _, target := range []string{"/debug/collect?tid=AT-NNNNNNNNNN&tid=" + victim + "&" + pixelHit, "/debug/mp/collect?t%72acking_id=" + victim + "&api_secret=secret"} {
		method, body := "GET", ""
		if strings.Contains(target, "/mp/") {
			method, body = "POST", mp
		}
		dead = nil
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var res DebugResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Valid || res.Error == nil || res.Error.Code != "malformed" || len(dead) != 0 {
			t.Errorf("%s %s: %d %s, want the malformed refusal and no dead letter", method, target, w.Code, w.Body)
		}
	}
}

// counted returns collection_hits_rejected_total{reason="malformed"} of
// an origin.
func counted(t *testing.T, s *Server, origin string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.rejected.WithLabelValues("malformed", origin).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestMissingTrackingIDSaysWhereItGoes: a request without the tracking ID
// in its query is refused with where it goes: a POST's in the query
// string, not in its hits, whose tid is not read for it (the gateway
// rate-limits by the query's, so a body's would be counted in no
// property's bucket).
func TestMissingTrackingIDSaysWhereItGoes(t *testing.T) {
	var dead deadLetters
	s, p := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	tests := []struct {
		name, method, target, body string
		field, inText              string
	}{
		{"pixel", "GET", "/collect?v=1&t=pageview&cid=c", "", "tid", "send tid=AT-"},
		{"batch", "POST", "/collect", `{"hits":[{"cid":"c","t":"pageview","dp":"/"}]}`, "tid", "it goes in the query string: POST /collect?tid=AT-"},
		{"batch whose hits name it", "POST", "/collect", `{"hits":[{"tid":"` + p.TrackingID + `","cid":"c","t":"pageview","dp":"/"}]}`, "tid",
			"missing from the query string: send the batch to POST /collect?tid=" + p.TrackingID + " (the hits' own tid is not read"},
		{"batch whose hits name something else", "POST", "/collect", `{"hits":[{"tid":"<script>","cid":"c","t":"pageview","dp":"/"}]}`, "tid",
			"POST /collect?tid=AT-XXXXXXXXXX (the hits' own tid"},
		{"debug batch", "POST", "/debug/collect", `{"hits":[{"tid":"` + p.TrackingID + `","cid":"c","t":"pageview","dp":"/"}]}`, "tid", "send the batch to POST /collect?tid=" + p.TrackingID},
		{"measurement", "POST", "/mp/collect?api_secret=secret", `{"client_id":"c","events":[{"name":"sign_up"}]}`, "tracking_id", "query string: POST /mp/collect?tracking_id=AT-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead = nil
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body)))
			if tt.method == "GET" {
				if w.Code != 200 || w.Header().Get("X-Collect-Error") != "malformed" || len(dead) != 1 || !strings.Contains(dead[0].Detail, tt.inText) {
					t.Fatalf("%d %v, dead letters %+v", w.Code, w.Header(), dead)
				}
				return
			}
			var res struct {
				Error struct{ Code, Field, Message string }
			}
			_ = json.Unmarshal(w.Body.Bytes(), &res)
			if strings.HasPrefix(tt.target, "/debug/") {
				if w.Code != 200 || !strings.Contains(w.Body.String(), tt.inText) || len(dead) != 0 {
					t.Fatalf("%d %s, dead letters %+v", w.Code, w.Body, dead)
				}
				return
			}
			if w.Code != 400 || res.Error.Code != "malformed" || res.Error.Field != tt.field || !strings.Contains(res.Error.Message, tt.inText) {
				t.Fatalf("%d %s\nwant 400 malformed %s saying %q", w.Code, w.Body, tt.field, tt.inText)
			}
			if len(dead) != 1 || !strings.Contains(dead[0].Payload, `"c"`) {
				t.Fatalf("dead letters %+v, want the hits", dead)
			}
		})
	}
}

// TestMeasurementIDIsNamed: GA4's Measurement Protocol names the property
// measurement_id; a request that sends it under that name is told ours.
func TestMeasurementIDIsNamed(t *testing.T) {
	var dead deadLetters
	s, _ := testServerWith(t, 1, countingQueue{new(int)}, &dead)
	mux := http.NewServeMux()
	s.Register(mux)
	req := httptest.NewRequest(http.MethodPost, "/mp/collect?measurement_id=G-XXXXXXX&api_secret=secret", strings.NewReader(`{"client_id":"c","events":[{"name":"sign_up"}]}`))
	req.RemoteAddr = "203.0.113.7:5000"
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "measurement_id is tracking_id here") {
		t.Fatalf("a request with measurement_id: %d %s", w.Code, w.Body)
	}
}
