package hit

import (
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
