package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/acme/analytics/collection-svc/internal/benchdata"
)

// TestFastBatch checks which bodies the fast path reads (so that it is not
// silently giving up on the batches it exists for) and that Batch answers
// the same for every body either way. FuzzParseBatch checks the second on
// any input.
func TestFastBatch(t *testing.T) {
	for _, c := range []struct {
		body string
		fast bool
	}{
		{string(benchdata.Batches(1, 20)[0]), true},
		{`{"hits":[{"v":1,"t":"pageview","cid":"c","dl":"https://shop.example/"}]}`, true},
		{" {\n\t\"hits\" : [ {\"t\":\"event\",\"ea\":\"x\",\"ev\":-1.5e+3,\"ni\":false,\"x\":null} , {} ] } \r\n", true},
		{`{"hits":[{"t":"event","ea":"x","ep":{"a":0,"b":"é","a":true,"c":null}},{"ep":null},{"ep":{}}]}`, true},
		{`{"hits":[{"t":"a","t":"b"}]}`, true}, // the last one counts, as with fastjson
		// Given up: the fastjson path reads them.
		{`{"hits":[{"dt":"a \"quoted\" title"}]}`, false}, // an escape
		{`{"h\u0069ts":[{"t":"pageview"}]}`, false},       // an escaped key
		{`{"hits":[{"t":"pageview"}],"v":1}`, false},      // another top-level key
		{`{"hits":[{"ep":{"items":[1]}}]}`, false},        // a nested value
		{`{"hits":[{"ep":"x"}]}`, false},                  // rejected
		{`{"hits":[{"t":{}}]}`, false},                    // rejected
		{`{"hits":[5]}`, false},                           // rejected
		{`{"hits":[]}`, false},                            // rejected
		{`{"hits":[{"ev":01}]}`, false},                   // not JSON
		{`{"hits":[{"ev":1.}]}`, false},                   // not JSON
		{`{"hits":[{"t":"pageview"}]} x`, false},          // not JSON
		{`{"hits":[{"t":"pageview"}]`, false},             // not JSON
		{"{\"hits\":[{\"dt\":\"a\tb\"}]}", false},         // not JSON: a control character in a string
	} {
		_, fast := fastBatch(nil, []byte(c.body))
		if fast != c.fast {
			t.Errorf("fast path %v, want %v: %s", fast, c.fast, c.body)
		}
		got, gotErr := Batch(nil, []byte(c.body))
		want, wantErr := slowBatch(nil, []byte(c.body))
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
			t.Errorf("%s:\nBatch %+v, %v\nfastjson %+v, %v", c.body, got, gotErr, want, wantErr)
		}
	}
}

// A hit rejected while the batch is read keeps its JSON as sent for its
// dead letter: valid JSON (fastjson writes a string it has read back with
// Go's escapes, \x01, which JSON has not), replayable as is.
func TestRejectedHitsRawIsItsJSONAsSent(t *testing.T) {
	rejected := `{"t":"pageview","dt":"a\u0001b \"q\" \u00e9","ep":"not an object"}`
	body := `{"hits":[{"t":"pageview","cid":"c","dp":"/"},` + rejected + `,[1]]}`
	items, err := Batch(nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if items[0].Err != nil || items[0].Raw != "" {
		t.Fatalf("the good hit: %v, raw %q", items[0].Err, items[0].Raw)
	}
	if items[1].Err == nil || items[1].Raw != rejected {
		t.Errorf("the rejected hit's raw = %s, want %s (%v)", items[1].Raw, rejected, items[1].Err)
	}
	if items[2].Err == nil || items[2].Raw != "[1]" {
		t.Errorf("the hit that is no object: raw %q (%v)", items[2].Raw, items[2].Err)
	}
	for _, it := range items[1:] {
		if !json.Valid([]byte(it.Raw)) {
			t.Errorf("raw %q is not JSON", it.Raw)
		}
	}
}

// A body that is not JSON is refused saying where and why, in a few
// words: fastjson's error nested a "cannot parse array: cannot parse array
// value: " per level, 14 KB of them for a body nested past 300 levels,
// and called a body cut short "unexpected end of object".
func TestNotJSONSaysWhereAndWhy(t *testing.T) {
	hit := `{"t":"pageview","cid":"1","dl":"https://a.example/"}`
	for _, tt := range []struct {
		name, body, want string
	}{
		{"empty", " \n", `the body is empty; send a JSON object {"hits": [...]}`},
		{"cut short", `{"hits":[` + hit, "it ends (after 61 bytes) in the middle of a value; was it cut short"},
		{"after the object", `{"hits":[` + hit + "]}\n x", "invalid character 'x' after top-level value (line 2, byte 2)"},
		{"a stray comma", `{"hits":[` + hit + `,]}`, "invalid character ']' looking for beginning of value (line 1, byte 63)"},
		{"nested too deep", strings.Repeat("[", 100000), "nest more than 300 levels deep"},
		{"gzip-compressed", "\x1f\x8b\x08\x00\x00\x00\x00\x00", "the body is gzip-compressed"},
		{"a byte order mark", "\xef\xbb\xbf{\"hits\":[" + hit + "]}", "starts with a byte order mark"},
		{"nested objects too deep", `{"hits":[{"ep":` + strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000) + "}]}", "nest more than 300 levels deep"},
	} {
		_, err := Batch(nil, []byte(tt.body))
		var pe *Error
		if !errors.As(err, &pe) || pe.Reason != ReasonMalformed || !strings.Contains(pe.Message, tt.want) {
			t.Errorf("%s: %v, want malformed saying %q", tt.name, err, tt.want)
			continue
		}
		if len(pe.Message) > 300 || strings.Contains(pe.Message, "cannot parse") {
			t.Errorf("%s: a message of %d bytes: %.300s", tt.name, len(pe.Message), pe.Message)
		}
	}
	// The Measurement API's body is read the same way.
	_, err := Measurement(nil, []byte(strings.Repeat("[", 1000)))
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "300 levels") {
		t.Errorf("a Measurement API body nested too deep: %.300v", err)
	}
}

// TestHasControl checks the eight-bytes-at-a-time test against the plain
// one, at every position and for every byte value.
func TestHasControl(t *testing.T) {
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				b := bytes.Repeat([]byte{'a'}, n)
				b[pos] = byte(c)
				if got, want := hasControl(b), c < 0x20; got != want {
					t.Fatalf("hasControl(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
