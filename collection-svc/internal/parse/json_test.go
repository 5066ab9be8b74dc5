package parse

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

// TestTruncateKeepsOnlyItsPart: a dead letter waits in the buffer (up to
// 10,000 of them) with its payload; cut from a rejected body of 512 KiB or
// a query of 1 MiB by slicing, it kept the whole of it alive.
func TestTruncateKeepsOnlyItsPart(t *testing.T) {
	s := strings.Repeat("x", 1<<20)
	got := Truncate(s)
	if len(got) != MaxRawBytes || unsafe.StringData(got) == unsafe.StringData(s) {
		t.Fatalf("Truncate of 1 MiB: %d bytes, sharing the input's memory: %v", len(got), unsafe.StringData(got) == unsafe.StringData(s))
	}
	if short := s[:10]; unsafe.StringData(Truncate(short)) != unsafe.StringData(short) {
		t.Fatal("a payload within the limit was copied")
	}
}

// TestRefusesWhatIsNotJSON: fastjson's parser read what is not JSON and
// kept it as written (a title stored as Men\'s, a parameter "01"), and
// the validation endpoint called it valid; a lone UTF-16 surrogate (a
// string cut inside an emoji by JSON.stringify's sender) was kept as the
// six characters \ud83d. Both readers, batch and Measurement API, refuse
// the first, saying where, and read the second as U+FFFD, as
// encoding/json does.
func TestRefusesWhatIsNotJSON(t *testing.T) {
	for _, v := range []string{`"Men\'s shoes"`, `"c\x41"`, "\"a\tb\"", `01`, `NaN`, `+1`, `.5`, `1.`} {
		for name, read := range map[string]func() error{
			"batch": func() error {
				_, err := Batch(nil, []byte(`{"hits":[{"t":"pageview","cid":"c","dt":`+v+`}]}`))
				return err
			},
			"measurement": func() error {
				_, err := Measurement(nil, []byte(`{"client_id":"c","events":[{"name":"a","params":{"page_title":`+v+`}}]}`))
				return err
			},
		} {
			var pe *Error
			if err := read(); !errors.As(err, &pe) || pe.Reason != ReasonMalformed || !strings.Contains(pe.Message, "not JSON") {
				t.Errorf("%s with %s: %v, want the body refused as not JSON", name, v, err)
			}
		}
	}
	items, err := Batch(nil, []byte(`{"hits":[{"t":"pageview","cid":"c","dt":"Sale \ud83d \\ud83d \ud83d\ude00 \udc00!"}]}`))
	if err != nil || len(items) != 1 || items[0].Fields.Title != "Sale \ufffd \\ud83d 😀 \ufffd!" {
		t.Fatalf("lone surrogates: %+v, %v; want each read as U+FFFD, an escaped backslash's text and a pair left alone", items, err)
	}
}
