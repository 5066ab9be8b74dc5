package parse

import (
	"reflect"
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
		{`{"hits":[{"t":"a","t":"b"}]}`, true},       // the last one counts, as with fastjson
		{"{\"hits\":[{\"dt\":\"a\tb\x01\"}]}", true}, // control characters pass, as with fastjson
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
