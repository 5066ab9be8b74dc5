package parse

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestQueryRefusesARepeatedTID: the gateway rate-limits by the first tid,
// so Query may not keep the last one, which may be another property's.
func TestQueryRefusesARepeatedTID(t *testing.T) {
	tests := []struct {
		raw     string
		wantTID string
		wantErr bool
	}{
		{"v=1&tid=AT-SHPSHPSHP2&t=pageview", "AT-SHPSHPSHP2", false},
		{"tid=AT-NNNNNNNNNN&tid=AT-SHPSHPSHP2", "", true},
		{"tid&tid=AT-SHPSHPSHP2", "", true},
		{"tid=AT-SHPSHPSHP2&t%69d=AT-SHPSHPSHP2", "", true},
		{"dl=a&dl=b&tid=AT-SHPSHPSHP2", "AT-SHPSHPSHP2", false}, // another parameter twice: the last, as before
	}
	for _, tt := range tests {
		f, err := Query(tt.raw)
		var pe *Error
		if tt.wantErr {
			if !errors.As(err, &pe) || pe.Reason != ReasonMalformed || pe.Field != "tid" {
				t.Errorf("Query(%q) = %v, want malformed tid", tt.raw, err)
			}
			continue
		}
		if err != nil || f.TrackingID != tt.wantTID {
			t.Errorf("Query(%q) = %q, %v, want %q", tt.raw, f.TrackingID, err, tt.wantTID)
		}
	}
}

// TestTimingAndExceptionFields: the timing and exception parameters are
// read from a query string, from both batch parsers and from the
// Measurement API's timing_complete and exception events, into the same
// fields.
func TestTimingAndExceptionFields(t *testing.T) {
	// event reads a Measurement API event, its params (kept as they are
	// for every event) and version left out.
	event := func(e string) func() (Fields, error) {
		return func() (Fields, error) {
			items, err := Measurement(nil, []byte(`{"events":[`+e+`]}`))
			if err != nil {
				return Fields{}, err
			}
			f := items[0].Fields
			f.Version, f.Params = "", nil
			return f, nil
		}
	}
	timing := Fields{Type: "timing", TimingCategory: "JS", TimingVariable: "load", TimingTime: "3549", TimingLabel: "jQuery"}
	exception := Fields{Type: "exception", ExceptionDescription: "x is undefined", ExceptionFatal: "false"}
	tests := []struct {
		name string
		got  func() (Fields, error)
		want Fields
	}{
		{"query", func() (Fields, error) { return Query("t=timing&utc=JS&utv=load&utt=3549&utl=jQuery") }, timing},
		{"query exception", func() (Fields, error) { return Query("t=exception&exd=x%20is%20undefined&exf=false") }, exception},
		{"batch, fast path", func() (Fields, error) {
			items, ok := fastBatch(nil, []byte(`{"hits":[{"t":"timing","utc":"JS","utv":"load","utt":3549,"utl":"jQuery"}]}`))
			if !ok {
				return Fields{}, errors.New("the fast path gave up")
			}
			return items[0].Fields, nil
		}, timing},
		{"batch, fastjson", func() (Fields, error) {
			items, err := slowBatch(nil, []byte(`{"hits":[{"t":"exception","exd":"x is undefined","exf":false}]}`))
			if err != nil {
				return Fields{}, err
			}
			return items[0].Fields, nil
		}, exception},
		{"measurement timing_complete", event(`{"name":"timing_complete","params":{"name":"load","value":3549,"event_category":"JS","event_label":"jQuery"}}`), timing},
		{"measurement exception", event(`{"name":"exception","params":{"description":"x is undefined","fatal":false}}`), exception},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		got.Size = 0
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

// TestQueryTakesAStrayPercentAsItself: a '%' not followed by two hex
// digits is a '%', as browsers send it and as processing reads it in a
// utm tag (a pixel written by hand in an e-mail or a page, whose value is
// not percent-encoded: dt=Sale 50% off, cn=50%off). url.QueryUnescape
// refused it, and the whole hit was refused as malformed with it.
func TestQueryTakesAStrayPercentAsItself(t *testing.T) {
	tests := []struct {
		raw  string
		want Fields
	}{
		{"t=pageview&dt=Sale%2050%%20off&dl=https://shop.example/sale-50%-off",
			Fields{Type: "pageview", Title: "Sale 50% off", Location: "https://shop.example/sale-50%-off"}},
		{"t=event&ea=x&cn=50%off&el=100%", Fields{Type: "event", Action: "x", CampaignName: "50%off", Label: "100%"}},
		{"t=event&ea=%zz&ec=%E2%82%AC", Fields{Type: "event", Action: "%zz", Category: "€"}},
		{"t=event&ea=x&odd%=1", Fields{Type: "event", Action: "x"}}, // a name no parameter has, ignored
		{"t=event&ea=a+b%2Bc", Fields{Type: "event", Action: "a b+c"}},
	}
	for _, tt := range tests {
		got, err := Query(tt.raw)
		if err != nil {
			t.Errorf("Query(%q): %v", tt.raw, err)
			continue
		}
		got.Size = 0
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Query(%q):\ngot  %+v\nwant %+v", tt.raw, got, tt.want)
		}
	}
}

// TestQuerySizeIsDecoded: a hit's size is its names and values decoded,
// sent as a query string as in JSON: a title in Japanese, %-escaped to
// three times its bytes, is no larger on GET than on POST (before
// 2026-12-07 GET measured the escaped query, and refused it).
func TestQuerySizeIsDecoded(t *testing.T) {
	title := strings.Repeat("日", 500)                                 // 1,500 bytes
	dl := "https://shop.example/" + strings.Repeat("%E6%97%A5", 2000) // 6,000 bytes decoded
	raw := "v=1&tid=AT-SHPSHPSHP2&cid=c&t=pageview&dt=" + url.QueryEscape(title) + "&dl=" + dl
	f, err := Query(raw)
	if err != nil {
		t.Fatalf("a %d-byte query of %d bytes decoded: %v", len(raw), f.Size, err)
	}
	if len(raw) <= MaxHitBytes || f.Size > MaxHitBytes {
		t.Fatalf("the test's hit: %d bytes escaped, %d decoded; want over and under the limit", len(raw), f.Size)
	}
	body := `{"hits":[{"v":1,"cid":"c","t":"pageview","dt":"` + title + `","dl":"https://shop.example/` + strings.Repeat("日", 2000) + `"}]}`
	items, err := Batch(nil, []byte(body))
	if err != nil || items[0].Err != nil {
		t.Fatalf("the same hit posted: %v %v", err, items[0].Err)
	}
	if _, err := Query(raw + "&ep.more=" + strings.Repeat("x", MaxHitBytes-f.Size)); err == nil || err.(*Error).Reason != ReasonTooLarge {
		t.Fatalf("a query over the limit decoded: %v, want too_large", err)
	}
	if _, err := Query(strings.Repeat("a", 3*MaxHitBytes+1)); err == nil || err.(*Error).Reason != ReasonTooLarge {
		t.Fatalf("a query over three limits: %v, want too_large unread", err)
	}
}
