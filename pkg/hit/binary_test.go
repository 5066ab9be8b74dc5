package hit

import (
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

// full is a hit with every field set.
func full() *Hit {
	h := &Hit{TenantID: "t1", PropertyID: "p1", TrackingID: "AT-1", ClientID: "123.456", UserID: "u-9",
		Type: TypeEvent, Origin: OriginMeasurement, Time: time.Date(2026, 11, 22, 7, 0, 1, 123456789, time.UTC),
		ReceivedAt: time.Date(2026, 11, 22, 7, 0, 2, 5, time.UTC), URL: "https://shop.example/a?x=1", Hostname: "shop.example",
		Path: "/a?x=1", Title: "Über <b>&</b>", Referrer: "https://www.google.com/", Category: "video", Action: "play", Label: "intro",
		Value: -12.75, HasValue: true, Params: map[string]string{"b": "2", "a": "1", "": "empty key"}, EngagementMS: 4200,
		ScreenResolution: "1920x1080", Language: "de-de", UserAgent: "Mozilla/5.0", Browser: "Firefox", OS: "Linux",
		DeviceCategory: "desktop", Country: "DE", IP: "198.51.100.0", Bot: true, BotName: "Googlebot", IPExcludedBy: "office",
		RuleVersion: 7, Cookieless: true}
	h.ID = h.DeriveID("e1")
	return h
}

func TestBinaryRoundTripsEveryField(t *testing.T) {
	for name, h := range map[string]*Hit{"full": full(), "minimal": {ID: "i", PropertyID: "p", ClientID: "c", Type: TypePageview, Time: time.Unix(1, 0).UTC()}} {
		b, err := Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != binaryV1 {
			t.Fatalf("%s: first byte %#x, want the version byte", name, b[0])
		}
		back, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, h) {
			t.Errorf("%s: round trip\n got  %+v\n want %+v", name, back, h)
		}
	}
	// Every field is encoded: changing any one changes the bytes.
	base, _ := Marshal(full())
	v := reflect.ValueOf(full()).Elem()
	for i := 0; i < v.NumField(); i++ {
		h := full()
		f := reflect.ValueOf(h).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Float64:
			f.SetFloat(f.Float() + 1)
		case reflect.Map:
			h.Params["c"] = "3"
		case reflect.Struct:
			f.Set(reflect.ValueOf(f.Interface().(time.Time).Add(time.Nanosecond)))
		default:
			t.Fatalf("field %s: kind %s not covered by the test", v.Type().Field(i).Name, f.Kind())
		}
		if b, _ := Marshal(h); string(b) == string(base) {
			t.Errorf("field %s is not encoded", v.Type().Field(i).Name)
		}
	}
}

// Hits archived as JSON, before the binary encoding, still decode to the
// same hit.
func TestUnmarshalReadsJSON(t *testing.T) {
	h := full()
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := Unmarshal(j)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Marshal(h)
	fromBinary, _ := Unmarshal(b)
	if !reflect.DeepEqual(fromJSON, fromBinary) {
		t.Errorf("JSON and binary decode differently:\n json   %+v\n binary %+v", fromJSON, fromBinary)
	}
}

// Timing and exception hits archived before collection made them events
// still decode with their type, so that reprocessing reads them.
func TestUnmarshalReadsArchivedTimingAndExceptionHits(t *testing.T) {
	for _, typ := range []Type{TypeTiming, TypeException} {
		h := full()
		h.Type, h.Category, h.Action, h.Label, h.Value, h.HasValue = typ, "", "", "", 0, false
		for _, enc := range []func(*Hit) ([]byte, error){Marshal, func(h *Hit) ([]byte, error) { return json.Marshal(h) }} {
			b, err := enc(h)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Unmarshal(b)
			if err != nil || back.Type != typ {
				t.Errorf("%s hit %s: decoded as %v, %v", typ, b[:1], back, err)
			}
		}
	}
}

func TestUnmarshalRejectsBadInput(t *testing.T) {
	good, _ := Marshal(full())
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"empty":          {nil, "empty message"},
		"unknown format": {[]byte{0x02, 1, 2}, "unknown encoding"},
		"truncated":      {good[:len(good)-3], "truncated"},
		"trailing bytes": {append(append([]byte(nil), good...), 0), "after the last field"},
		"bad JSON":       {[]byte(`{"id":`), "decode hit"},
		"no id":          {append([]byte{binaryV1}, 0), "truncated"},
	} {
		_, err := Unmarshal(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

// The decoder never panics and never accepts what it cannot re-encode
// identically.
func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(full())
	f.Add(good)
	j, _ := json.Marshal(full())
	f.Add(j)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Unmarshal(b)
		if err != nil || len(b) == 0 || b[0] != binaryV1 {
			return
		}
		// Compared as bytes: a NaN value is never DeepEqual to itself.
		again, _ := Marshal(h)
		back, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("a re-encoded hit does not decode: %v", err)
		}
		if third, _ := Marshal(back); string(third) != string(again) {
			t.Fatal("a decoded hit does not round trip")
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	h := full()
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = AppendMarshal(buf[:0], h)
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	h := full()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(h)
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	buf, _ := Marshal(full())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Unmarshal(buf)
	}
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	buf, _ := json.Marshal(full())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Unmarshal(buf)
	}
}

// TestUnmarshalMendsUTF8: a decoded hit's texts are UTF-8, as Cassandra's
// text columns take them: an identifier that is not is refused (the hit
// is dead-lettered as undecodable), any other text has such bytes
// replaced by U+FFFD. A hit holding them made every flush of its
// partition fail, for good.
func TestUnmarshalMendsUTF8(t *testing.T) {
	h := full()
	h.Title, h.Category, h.Country, h.DeviceCategory = "T\xff", "c\xfe", "D\xff", "d\xff"
	h.Params = map[string]string{"k\xff": "v", "ok": "v\xff", "fine": "v"}
	b, _ := Marshal(h)
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "T\uFFFD" || got.Category != "c\uFFFD" || got.Country != "D\uFFFD" || got.DeviceCategory != "d\uFFFD" {
		t.Errorf("texts %q %q %q %q, want U+FFFD for the bytes that are not UTF-8", got.Title, got.Category, got.Country, got.DeviceCategory)
	}
	if want := map[string]string{"k\uFFFD": "v", "ok": "v\uFFFD", "fine": "v"}; !maps.Equal(got.Params, want) {
		t.Errorf("params %q, want %q", got.Params, want)
	}
	for _, set := range []func(*Hit){func(h *Hit) { h.ClientID = "c\xff" }, func(h *Hit) { h.PropertyID = "p\xff" }, func(h *Hit) { h.UserID = "u\xff" }} {
		h := full()
		set(h)
		b, _ := Marshal(h)
		if _, err := Unmarshal(b); err == nil || !strings.Contains(err.Error(), "is not UTF-8") {
			t.Errorf("an identifier not UTF-8: %v; want it refused", err)
		}
	}
}
