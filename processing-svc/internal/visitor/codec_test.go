package visitor

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/processing-svc/internal/attribution"
	"github.com/acme/analytics/processing-svc/internal/session"
)

// fullState is a visitor with every durable field set.
func fullState() *Visitor {
	at := time.Date(2026, 6, 1, 10, 0, 0, 123, time.UTC)
	return &Visitor{ClientID: "c1", FrozenSessions: 3, FrozenUntil: at.Add(-time.Hour), FirstSeen: at.Add(-48 * time.Hour),
		FirstTouch: Touch{Source: "google", Medium: "cpc", Campaign: "spring", Channel: "Paid Search"},
		LastSeen:   at, Watermark: at.Add(time.Second), PrunedAt: at.Truncate(time.Minute),
		Hits: []*session.Hit{
			{ID: "h1", Type: hit.TypePageview, Time: at, Path: "/a", Title: "A", Referrer: "https://news.example/",
				Campaign: attribution.Campaign{Source: "s", Medium: "m", Name: "n", Term: "t", Content: "c", GCLID: "g", MSCLKID: "k"},
				Country:  "DE", Device: "mobile", Browser: "Safari", OS: "iOS", RuleVersion: 4},
			{ID: "h2", Type: hit.TypeEvent, Time: at.Add(time.Minute), Category: "video", Action: "play", Label: "intro", Value: 2.5,
				Interaction: true, Goals: []session.Goal{{ID: "g1", Value: 10}, {ID: "g2"}}},
		},
		Seen: map[string]time.Time{"h1": at, "h2": at.Add(time.Minute), "h0": at.Add(-time.Hour)},
	}
}

func TestStateRoundTripsEveryField(t *testing.T) {
	v := fullState()
	b, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, v) {
		t.Errorf("round trip:\n got  %+v\n want %+v", back, v)
	}
	// Every field of a hit is encoded: changing any one changes the bytes.
	h := reflect.ValueOf(v.Hits[0]).Elem()
	for i := 0; i < h.NumField(); i++ {
		if !h.Type().Field(i).IsExported() {
			continue // a cache of what the exported fields give
		}
		changed := fullState()
		f := reflect.ValueOf(changed.Hits[0]).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Float64:
			f.SetFloat(f.Float() + 1)
		case reflect.Slice:
			changed.Hits[0].Goals = append(changed.Hits[0].Goals, session.Goal{ID: "new"})
		case reflect.Struct:
			if tm, ok := f.Interface().(time.Time); ok {
				f.Set(reflect.ValueOf(tm.Add(1)))
			} else {
				changed.Hits[0].Campaign.Content += "x"
			}
		default:
			t.Fatalf("field %s: kind %s not covered by the test", h.Type().Field(i).Name, f.Kind())
		}
		if c, _ := changed.Marshal(); string(c) == string(b) {
			t.Errorf("hit field %s is not encoded", h.Type().Field(i).Name)
		}
	}
}

// States stored as JSON, before the binary encoding, still load.
func TestUnmarshalReadsJSONState(t *testing.T) {
	v := fullState()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(j)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, v) {
		t.Errorf("JSON state:\n got  %+v\n want %+v", back, v)
	}
}

func FuzzUnmarshalState(f *testing.F) {
	b, _ := fullState().Marshal()
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unmarshal(b)
		if err != nil || b[0] != stateV1 {
			return
		}
		// Compared as bytes: a NaN value is never DeepEqual to itself.
		again, _ := v.Marshal()
		back, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("a re-encoded state does not decode: %v", err)
		}
		if third, _ := back.Marshal(); string(third) != string(again) {
			t.Fatal("a decoded state does not round trip")
		}
	})
}
