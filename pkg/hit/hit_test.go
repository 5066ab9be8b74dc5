package hit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDeriveIDIsStable(t *testing.T) {
	base := Hit{PropertyID: "p", ClientID: "c", Type: TypePageview, Time: time.Unix(1000, 5e8), URL: "https://x/a"}
	resent := base
	resent.Time = base.Time.Add(300 * time.Millisecond) // same second
	other := base
	other.URL = "https://x/b"

	if base.DeriveID("") != resent.DeriveID("") {
		t.Error("a re-send within the same second got a different content ID")
	}
	if base.DeriveID("") == other.DeriveID("") {
		t.Error("different pages got the same content ID")
	}
	later := base
	later.Time = base.Time.Add(time.Hour)
	if base.DeriveID("ev1") != later.DeriveID("ev1") {
		t.Error("the same client event ID got different IDs")
	}
	if base.DeriveID("ev1") == base.DeriveID("ev2") {
		t.Error("different client event IDs got the same ID")
	}
	otherClient := base
	otherClient.ClientID = "c2"
	if base.DeriveID("ev1") == otherClient.DeriveID("ev1") {
		t.Error("event IDs must be scoped by client")
	}
}

func TestRoundTrip(t *testing.T) {
	h := &Hit{PropertyID: "p", ClientID: "c", Type: TypeEvent, Time: time.Unix(1000, 0).UTC(), Action: "buy", Value: 3.5, HasValue: true}
	h.ID = h.DeriveID("")
	b, err := Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != h.ID || got.Action != "buy" || got.Value != 3.5 || !got.Time.Equal(h.Time) {
		t.Fatalf("round trip = %+v, want %+v", got, h)
	}
	for _, bad := range []string{`{`, `{"id":"x","pid":"p","cid":"c","t":"nope","ts":"2026-01-01T00:00:00Z"}`, `{"pid":"p"}`} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Errorf("Unmarshal(%s) accepted a bad hit", bad)
		}
	}
}

// deriveIDAsFirstWritten is DeriveID as it was first written (a streaming
// hash), kept to show the faster one gives every ID it gave: IDs are in
// the archive and deduplicate re-sent hits across versions.
func deriveIDAsFirstWritten(h *Hit, clientEventID string) string {
	s := sha256.New()
	w := func(parts ...string) {
		for _, p := range parts {
			s.Write([]byte(strconv.Itoa(len(p))))
			s.Write([]byte{':'})
			s.Write([]byte(p))
		}
	}
	if clientEventID != "" {
		w("e", h.PropertyID, h.ClientID, clientEventID)
	} else {
		w("c", h.PropertyID, h.ClientID, string(h.Type), strconv.FormatInt(h.Time.Unix(), 10),
			h.URL, h.Path, h.Title, h.Referrer, h.Category, h.Action, h.Label,
			strconv.FormatFloat(h.Value, 'g', -1, 64), strconv.FormatInt(h.EngagementMS, 10))
	}
	return hex.EncodeToString(s.Sum(nil)[:16])
}

// A hit without the fields the first version left out (user ID,
// parameters, the host of a hit without a location, ev=0) keeps its ID;
// with an event ID, every hit does.
func TestDeriveIDGivesTheIDsItAlwaysGave(t *testing.T) {
	long := strings.Repeat("ü", 400) // past the stack buffer
	browser := full()
	browser.UserID, browser.Params = "", nil
	for _, h := range []*Hit{browser, {PropertyID: "p", ClientID: "c"}, {PropertyID: "p", ClientID: long, URL: long, Value: 1e-300, HasValue: true, EngagementMS: -5,
		Time: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		for _, ev := range []string{"", "e1", long} {
			if got, want := h.DeriveID(ev), deriveIDAsFirstWritten(h, ev); got != want {
				t.Errorf("DeriveID(%.20q) = %s, was %s", ev, got, want)
			}
		}
	}
	if got, want := full().DeriveID("e1"), deriveIDAsFirstWritten(full(), "e1"); got != want {
		t.Errorf("DeriveID with an event ID = %s, was %s", got, want)
	}
	h := browser
	if raceEnabled {
		return // the race detector allocates too
	}
	if n := testing.AllocsPerRun(100, func() { h.DeriveID(""); h.DeriveID("e1") }); n != 2 {
		t.Errorf("%v allocations for two IDs, want one each (the ID)", n)
	}
}

// Hits without an event ID that differ in any field their sender gave are
// different hits: a server's two add_to_cart events of one second that
// name two items must both count. The order of the parameters is no
// difference.
func TestDeriveIDTellsApartWhatTheSenderTellsApart(t *testing.T) {
	base := func() *Hit {
		return &Hit{PropertyID: "p", ClientID: "c", Type: TypeEvent, Time: time.Unix(1000, 0), Action: "add_to_cart",
			Params: map[string]string{"item_id": "SKU-A", "currency": "EUR"}}
	}
	id := base().DeriveID("")
	for name, change := range map[string]func(h *Hit){
		"parameter":       func(h *Hit) { h.Params["item_id"] = "SKU-B" },
		"extra parameter": func(h *Hit) { h.Params["non_interaction"] = "1" },
		"user ID":         func(h *Hit) { h.UserID = "u1" },
		"value 0":         func(h *Hit) { h.HasValue = true },
		"host":            func(h *Hit) { h.Hostname, h.Path = "a.example", "/" },
	} {
		h := base()
		change(h)
		if h.DeriveID("") == id {
			t.Errorf("a hit with another %s got the same ID", name)
		}
	}
	for range 20 { // maps iterate in varying orders
		h := base()
		h.Params = map[string]string{"currency": "EUR", "item_id": "SKU-A"}
		if h.DeriveID("") != id {
			t.Fatal("the same parameters gave another ID")
		}
	}
}

// TestPayloadBytesInvertsPayloadText: a dead letter's payload gives back
// the bytes rejected, text (a JSON hit, a query string) and binary alike.
func TestPayloadBytesInvertsPayloadText(t *testing.T) {
	h := &Hit{ID: "a1", PropertyID: "p", ClientID: "c", Type: TypePageview, Time: time.Unix(1700000000, 0).UTC()}
	bin, _ := Marshal(h)
	for _, in := range [][]byte{bin, []byte(`{"id":"a1"}`), []byte("v=1&tid=AT-1"), {}} {
		got, err := PayloadBytes(PayloadText(in))
		if err != nil || string(got) != string(in) {
			t.Errorf("PayloadBytes(PayloadText(%q)) = %q, %v", in, got, err)
		}
	}
	if _, err := PayloadBytes("base64:!!"); err == nil {
		t.Error("PayloadBytes of broken base64: no error")
	}
}

// TestDeadLetterJSON: a processing letter always carries its source
// partition and offset, 0 included; a collection letter never does. What
// did not change is written as before (the struct of earlier versions,
// which left out a 0), and letters written before decode as they were.
func TestDeadLetterJSON(t *testing.T) {
	type before struct { // DeadLetter up to session 19
		Reason     string    `json:"reason"`
		Detail     string    `json:"detail"`
		Stage      string    `json:"stage"`
		TrackingID string    `json:"tid,omitempty"`
		ReceivedAt time.Time `json:"rts"`
		Payload    string    `json:"payload"`
		Partition  int32     `json:"partition,omitempty"`
		Offset     int64     `json:"offset,omitempty"`
	}
	rts := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name          string
		dl            DeadLetter
		wantPosition  bool
		sameAsBefore  bool
		wantPartition string // as written, when wantPosition
	}{
		{"processing, partition 0 offset 0", DeadLetter{Reason: "undecodable", Stage: StageProcessing, ReceivedAt: rts}, true, false, `"partition":0,"offset":0`},
		{"processing, partition 0", DeadLetter{Reason: "unknown_property", Stage: StageProcessing, TrackingID: "AT-1", ReceivedAt: rts, Offset: 9}, true, false, `"partition":0,"offset":9`},
		{"processing, elsewhere", DeadLetter{Reason: "unknown_property", Stage: StageProcessing, ReceivedAt: rts, Partition: 3, Offset: 17}, true, true, `"partition":3,"offset":17`},
		{"collection", DeadLetter{Reason: "malformed", Stage: StageCollection, TrackingID: "AT-2", ReceivedAt: rts, Payload: "v=1"}, false, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.dl)
			if err != nil {
				t.Fatal(err)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(got, &keys); err != nil {
				t.Fatal(err)
			}
			_, hasP := keys["partition"]
			_, hasO := keys["offset"]
			if hasP != tt.wantPosition || hasO != tt.wantPosition {
				t.Errorf("%s: partition and offset present %v, %v; want %v", got, hasP, hasO, tt.wantPosition)
			}
			if tt.wantPosition && !strings.Contains(string(got), tt.wantPartition) {
				t.Errorf("%s lacks %s", got, tt.wantPartition)
			}
			old, _ := json.Marshal(before(tt.dl))
			if tt.sameAsBefore && string(got) != string(old) {
				t.Errorf("written %s, before %s", got, old)
			}
			// Both forms decode to the letter: a 0 left out is a 0.
			for _, b := range [][]byte{got, old} {
				var back DeadLetter
				if err := json.Unmarshal(b, &back); err != nil || back != tt.dl {
					t.Errorf("%s decodes as %+v (%v), want %+v", b, back, err, tt.dl)
				}
			}
			// Through a pointer, as pkg/deadletter publishes.
			if p, _ := json.Marshal(&tt.dl); string(p) != string(got) {
				t.Errorf("through a pointer %s, want %s", p, got)
			}
		})
	}
}
