package parse

import (
	"reflect"
	"strings"
	"testing"
)

// The fuzz targets check that no input makes a parser panic or break the
// limits it promises. Run briefly with, e.g.:
//
//	go test -run='^$' -fuzz='^FuzzParseQuery$' -fuzztime=20s ./internal/parse

func checkItem(t *testing.T, it Item) {
	if it.Err != nil {
		if it.Err.Reason == "" || it.Err.Message == "" {
			t.Fatalf("error without reason or message: %+v", it.Err)
		}
		return
	}
	if it.Fields.Size > MaxHitBytes {
		t.Fatalf("accepted a hit of %d bytes", it.Fields.Size)
	}
	if len(it.Fields.Params) > MaxParams {
		t.Fatalf("accepted %d params", len(it.Fields.Params))
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"v=1&tid=AT-SHPSHPSHP2&cid=abc&t=pageview&dl=https%3A%2F%2Fshop.example%2F&dt=Home&hid=x",
		"t=event&ec=a&ea=b&el=c&ev=1.5&ni=1&ep.plan=pro",
		"%zz=1", "a=%", "&&&=&", "ep.=1", "qt=-1&et=abc",
		"t=timing&utc=JS&utv=load&utt=3549&utl=jQuery", "t=exception&exd=TypeError&exf=0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		fields, err := Query(raw)
		if err != nil {
			checkItem(t, Item{Err: err.(*Error)})
			return
		}
		checkItem(t, Item{Fields: fields})
		// The names and values decoded, as a JSON hit's.
		want := 0
		for _, kv := range strings.Split(raw, "&") {
			if kv != "" {
				k, v, _ := strings.Cut(kv, "=")
				want += len(unescape(k)) + len(unescape(v))
			}
		}
		if fields.Size != want {
			t.Fatalf("size %d, want %d", fields.Size, want)
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		`{"hits":[{"v":1,"cid":"c","t":"pageview","dl":"https://shop.example/","hid":"h"}]}`,
		`{"hits":[{"t":"event","ea":"x","ev":1e3,"ni":true,"ep":{"a":1,"b":"x","c":null}}, 5, null]}`,
		`{"hits":[]}`, `{"hits":{}}`, `[]`, `{"hits":[{"ep":[1]}]}`, `{"hits":[{"dt":"\ud800"}]}`,
		` { "hits" : [ {"t":"event","ea":"x","ev":-1.5e+3,"ni":false,"x":null,"ep":{"a":0,"b":"é","a":true}} , {} ] } `,
		`{"hits":[{"t":"timing","utc":"JS","utv":"load","utt":3549,"utl":null},{"t":"exception","exd":"x","exf":false}]}`,
		`{"hits":[{"ev":1.2.3}]}`, `{"hits":[{"ev":01}]}`, `{"hits":[{"ni":tru}]}`, `{"hits":[{"t":"a","t":"b","ep":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := Batch(nil, body)
		if err != nil {
			checkItem(t, Item{Err: err.(*Error)})
			return
		}
		if len(items) == 0 || len(items) > MaxBatchHits {
			t.Fatalf("%d items", len(items))
		}
		for _, it := range items {
			checkItem(t, it)
		}
		// Where the fast path reads a body, it reads it exactly as the
		// fastjson path does.
		if fast, ok := fastBatch(nil, body); ok {
			slow, err := slowBatch(nil, body)
			if err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast path:\n%+v\nfastjson path (error %v):\n%+v", fast, err, slow)
			}
		}
		// Parsed into the memory of an earlier batch (as collect reuses
		// it), nothing of that batch is left in the items.
		used, _ := Batch(make([]Item, 0, MaxBatchHits), []byte(usedBatch))
		again, _ := Batch(used, body)
		if !reflect.DeepEqual(again, items) {
			t.Fatalf("parsed into used memory:\n%+v\nfresh:\n%+v", again, items)
		}
	})
}

// usedBatch fills every field of its items, as memory to parse into again.
const usedBatch = `{"hits":[{"v":1,"tid":"AT-X","cid":"c","uid":"u","t":"event","dl":"https://a/","dh":"a","dp":"/p","dt":"t","dr":"r",` +
	`"ec":"c","ea":"a","el":"l","ev":1,"ni":1,"et":5,"sr":"1x1","ul":"en","hid":"h","qt":1,"cs":"s","cm":"m","cn":"n","ck":"k","cc":"c",` +
	`"gclid":"g","utc":"c","utv":"v","utt":1,"utl":"l","exd":"d","exf":1,"ep":{"k":"v"}},5,{"ep":[1]}]}`

func FuzzParseMeasurement(f *testing.F) {
	for _, s := range []string{
		`{"client_id":"c","user_id":"u","timestamp_micros":1700000000000000,"events":[{"name":"page_view","params":{"page_location":"https://shop.example/"}}]}`,
		`{"client_id":1,"events":[{"name":"purchase","event_id":"e","params":{"value":9.5,"items":[{"id":"x"}]}},{"name":"user_engagement","params":{"engagement_time_msec":100}}]}`,
		`{"events":[{"name":""}]}`, `{"events":[1]}`, `{"client_id":{},"events":[]}`,
		`{"timestamp_micros":"1.7e15","user_properties":{"a":{"value":1}},"events":[{"name":"a"},{"name":"9"}],"events":5}`,
		`{"client_id":"c","events":[{"name":"timing_complete","params":{"name":"load","value":3549,"event_category":"JS"}},{"name":"exception","params":{"description":"x","fatal":true}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := Measurement(nil, body)
		if err != nil {
			checkItem(t, Item{Err: err.(*Error)})
			return
		}
		if len(items) == 0 || len(items) > MaxBatchHits {
			t.Fatalf("%d items", len(items))
		}
		replay := Replayable(body)
		for i, it := range items {
			checkItem(t, it)
			if it.Err == nil && it.Fields.Type == "" {
				t.Fatalf("event without a hit type: %+v", it.Fields)
			}
			// An event's dead letter, replayed as is, is read as the event
			// was (unless cut to a dead letter's size).
			payload := replay(i)
			if it.Raw != "" && it.Raw != payload {
				t.Fatalf("event %d: parsed with payload %s, replayed as %s", i, it.Raw, payload)
			}
			if len(payload) == MaxRawBytes {
				continue
			}
			again, err := Measurement(nil, []byte(payload))
			wantErr := it.Err // the replayed event is events[0]
			if wantErr != nil {
				e := *wantErr
				e.Field = strings.Replace(e.Field, EventField(i, ""), EventField(0, ""), 1)
				wantErr = &e
			}
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0].Fields, it.Fields) || !reflect.DeepEqual(again[0].Err, wantErr) {
				t.Fatalf("event %d: %+v\nreplayed as %s: %+v (error %v)", i, it, payload, again, err)
			}
		}
	})
}
