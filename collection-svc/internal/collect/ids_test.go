package collect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMeasurementIDsKeepTheSendersMicroseconds: without an event_id, an
// event's ID is derived from its content and its time. A sender that gives
// timestamp_micros dates its events to the microsecond, and a retry sends
// the same timestamp again: two events alike in all else whose timestamps
// differ (two add_to_cart of one item 300 ms apart, each in a request of
// its own) are two events, as GA4 counts them, and the same request sent
// again is one. Their IDs were derived from the second alone, so the
// second add_to_cart was taken for a retry of the first and counted once.
func TestMeasurementIDsKeepTheSendersMicroseconds(t *testing.T) {
	id, _ := eventIDs(t)
	// A second of its own, 10 minutes ago, and 300 ms into it.
	second := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	at := second.Add(300 * time.Millisecond).UnixMicro()
	const cart = `{"name":"add_to_cart","params":{"item_id":"SKU-1","value":9.5,"currency":"EUR"}}`
	first := id(at, cart)
	if again := id(at, cart); again != first {
		t.Errorf("the same request sent again has another ID: %s, then %s", first, again)
	}
	if later := id(at+300_000, cart); later == first {
		t.Errorf("two add_to_cart events 300 ms apart (timestamp_micros %d and %d) have one ID, %s: the second is counted as a retry of the first", at, at+300_000, first)
	}
	if next := id(at+1, cart); next == first {
		t.Errorf("timestamps a microsecond apart give one ID")
	}
	// Whole seconds, as a sender that has no finer clock sends them, keep
	// the IDs they had: nothing tells two events of that second apart.
	whole := id(second.UnixMicro(), cart)
	if id(second.UnixMicro(), cart) != whole {
		t.Errorf("an event of a whole second sent again has another ID")
	}
}

// eventIDs returns, for a test server's property, the ID the validation
// endpoint gives a Measurement API event sent with timestamp_micros us,
// and a function that posts a body to it.
func eventIDs(t *testing.T) (id func(us int64, event string) string, post func(body string) *httptest.ResponseRecorder) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	post = func(body string) *httptest.ResponseRecorder {
		return postMP(t, mux, p.TrackingID, "/debug/mp/collect", body)
	}
	id = func(us int64, event string) string {
		t.Helper()
		return debugHit(t, mux, p.TrackingID, `{"client_id":"c","timestamp_micros":`+strconv.FormatInt(us, 10)+`,"events":[`+event+`]}`).ID
	}
	return id, post
}

// TestCacheBusterTellsIdenticalHitsApart: Universal Analytics' z, the
// random number a Measurement Protocol sender adds to every hit so that no
// cache answers it, is new for every hit and the same in a request sent
// again. Without hid, a hit's ID is derived from its content and its
// second: two identical pageviews of one visitor in one second (a page
// reloaded at once), each with its own z, are two pageviews, and the same
// request sent again is one. z was an unknown parameter and ignored, so
// the second pageview was taken for a retry of the first.
func TestCacheBusterTellsIdenticalHitsApart(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	// Every request received in one second, as the case is: on the real
	// clock two requests could fall on both sides of a second's end, and
	// a pixel sent again would have another ID by its time alone.
	received := time.Now()
	s.now = func() time.Time { return received }
	mux := http.NewServeMux()
	s.Register(mux)
	ids := func(req *http.Request) []string {
		t.Helper()
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var res DebugResult
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || !res.Valid || len(res.Hits) == 0 {
			t.Fatalf("%s: %d %s", req.URL, w.Code, w.Body)
		}
		var ids []string
		for _, h := range res.Hits {
			ids = append(ids, h.Hit.ID)
			if len(res.Hits) == 1 && len(h.Warnings) > 0 {
				t.Errorf("%s: warnings %+v, want none (z is read)", req.URL, h.Warnings)
			}
		}
		return ids
	}
	const page = "&v=1&t=pageview&cid=c&dl=https%3A%2F%2Fshop.example%2F"
	pixel := func(extra string) string {
		return ids(httptest.NewRequest("GET", "/debug/collect?tid="+p.TrackingID+page+extra, nil))[0]
	}
	first := pixel("&z=8231")
	if again := pixel("&z=8231"); again != first {
		t.Errorf("the same pixel sent again has another ID: %s, then %s", first, again)
	}
	if other := pixel("&z=9120"); other == first {
		t.Errorf("two pageviews of one second with their own z have one ID, %s: the second is taken for a retry", first)
	}
	if pixel("&z=8231&hid=h") != pixel("&z=9120&hid=h") {
		t.Errorf("with hid, the ID depends on z too")
	}
	batch := ids(httptest.NewRequest("POST", "/debug/collect?tid="+p.TrackingID, strings.NewReader(
		`{"hits":[{"t":"pageview","cid":"c","dl":"https://shop.example/","z":"1"},{"t":"pageview","cid":"c","dl":"https://shop.example/","z":2}]}`)))
	if batch[0] == batch[1] {
		t.Errorf("a batch's two hits with their own z have one ID")
	}
}

// TestMeasurementZeroTimestampIsNone: a timestamp_micros of 0 is none, as
// GA4 reads its Measurement Protocol (a protocol-buffer field, whose zero
// is its default): a client written in a typed language sends it for every
// event it does not date (a Go struct's int64 without omitempty). It was
// refused as "not a Unix time", and every event of such a client with it.
// An event's own 0 leaves the request's timestamp in force.
func TestMeasurementZeroTimestampIsNone(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	dated := func(body string) time.Time {
		t.Helper()
		return debugHit(t, mux, p.TrackingID, body).Time
	}
	before := time.Now()
	for _, body := range []string{
		`{"client_id":"c","timestamp_micros":0,"events":[{"name":"sign_up"}]}`,
		`{"client_id":"c","timestamp_micros":"0","events":[{"name":"sign_up"}]}`,
		`{"client_id":"c","events":[{"name":"sign_up","timestamp_micros":0}]}`,
	} {
		if got := dated(body); got.Before(before) || got.After(time.Now()) {
			t.Errorf("%s: dated %s, want its receipt", body, got)
		}
	}
	at := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	body := `{"client_id":"c","timestamp_micros":` + strconv.FormatInt(at.UnixMicro(), 10) + `,"events":[{"name":"sign_up","timestamp_micros":0}]}`
	if got := dated(body); !got.Equal(at) {
		t.Errorf("an event's timestamp_micros 0 under the request's %d: dated %s, want %s", at.UnixMicro(), got, at)
	}
}

// TestMeasurementVisitorContextIsNotInTheID: the visitor's context
// (user_location, ip_override, device, user_agent) says who sent an event,
// not what it is: an event without event_id has the ID of its content,
// time and client, the same with the context or without it, so that a
// retry keeps its ID even when the sender's proxy chain gives it another
// address, and an event keeps the ID it had before senders added them.
func TestMeasurementVisitorContextIsNotInTheID(t *testing.T) {
	s, p := testServer(t, 1, countingQueue{new(int)})
	mux := http.NewServeMux()
	s.Register(mux)
	at := strconv.FormatInt(time.Now().Add(-time.Minute).Truncate(time.Second).Add(250*time.Millisecond).UnixMicro(), 10)
	id := func(context string) string {
		t.Helper()
		return debugHit(t, mux, p.TrackingID, `{"client_id":"c","timestamp_micros":`+at+context+
			`,"events":[{"name":"add_to_cart","params":{"item_id":"SKU-1","value":9.5}}]}`).ID
	}
	const context = `,"ip_override":"203.0.113.7","user_agent":"` + iPhoneUA + `","user_location":{"country_id":"DE"},"device":{"category":"mobile","screen_resolution":"390x844","language":"de"}`
	with := id(context)
	if again := id(context); again != with {
		t.Errorf("the same request sent again has another ID: %s, then %s", with, again)
	}
	if without := id(""); without != with {
		t.Errorf("the event has the ID %s with the visitor's context and %s without it", with, without)
	}
	if moved := id(`,"ip_override":"198.51.100.1","user_agent":"` + iPhoneUA + `"`); moved != with {
		t.Errorf("a retry from another address has another ID: %s, then %s", with, moved)
	}
}

// TestPurchaseCountedOncePerTransaction: GA4 counts a purchase once per
// transaction_id. Without an event_id, its ID was derived from its content
// and second: the same purchase forwarded by a webhook and a thank-you
// page, or retried after a 503 in another second, counted its revenue
// twice. A Measurement API purchase without event_id has the ID of its
// visitor's transaction; another transaction, another event, or an
// event_id, is its own.
func TestPurchaseCountedOncePerTransaction(t *testing.T) {
	id, post := eventIDs(t)
	at := time.Now().Add(-10 * time.Minute).UnixMicro()
	purchase := func(tx string) string {
		return `{"name":"purchase","params":{"transaction_id":"` + tx + `","value":30.03,"currency":"EUR"}}`
	}
	first := id(at, purchase("T1"))
	if again := id(at+2_000_000, purchase("T1")); again != first {
		t.Errorf("the purchase of transaction T1 sent again 2 s later has another ID: %s, then %s", first, again)
	}
	if other := id(at, purchase("T2")); other == first {
		t.Errorf("two transactions have one ID")
	}
	if cart := id(at, `{"name":"add_to_cart","params":{"transaction_id":"T1","value":30.03,"currency":"EUR"}}`); cart == first {
		t.Errorf("another event of the transaction has the purchase's ID")
	}
	if own := id(at, `{"name":"purchase","params":{"transaction_id":"T1","event_id":"e-1","value":30.03,"currency":"EUR"}}`); own == first {
		t.Errorf("a purchase with an event_id has the transaction's ID, not its own")
	}
	// Twice in one request: one purchase too.
	w := post(`{"client_id":"c","timestamp_micros":` + strconv.FormatInt(at, 10) + `,"events":[` + purchase("T1") + `,` + purchase("T1") + `]}`)
	var res DebugResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || len(res.Hits) != 2 || res.Hits[0].Hit.ID != first || res.Hits[1].Hit.ID != first {
		t.Errorf("a transaction's purchase twice in one request: %s; want both with the transaction's ID %s", w.Body, first)
	}
}
