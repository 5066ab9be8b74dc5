package hit

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	a, b := full(), full()
	b.ID, b.Path = "second", "/b"
	ea, eb := AppendMarshal(nil, a), AppendMarshal(nil, b)
	j, _ := json.Marshal(a)

	for name, c := range map[string]struct {
		encoded [][]byte
		want    []*Hit
	}{
		"one hit is its own encoding": {[][]byte{ea}, []*Hit{a}},
		"several":                     {[][]byte{ea, eb, ea}, []*Hit{a, b, a}},
		"a JSON hit inside":           {[][]byte{j, eb}, []*Hit{a, b}},
	} {
		v := AppendRecord(nil, c.encoded)
		if len(c.encoded) == 1 && string(v) != string(c.encoded[0]) {
			t.Errorf("%s: a one-hit record is not the hit's own encoding", name)
		}
		parts, err := SplitRecord(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []*Hit
		for _, p := range parts {
			h, err := Unmarshal(p)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, h)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %d hits %+v", name, len(got), got)
		}
	}

	// A value that is not a multi-hit record comes back whole, for
	// Unmarshal to judge.
	if parts, err := SplitRecord([]byte("not a hit")); err != nil || len(parts) != 1 || string(parts[0]) != "not a hit" {
		t.Errorf("a foreign value: %q, %v", parts, err)
	}
}

func TestSplitRecordErrors(t *testing.T) {
	good := AppendRecord(nil, [][]byte{AppendMarshal(nil, full()), AppendMarshal(nil, full())})
	for name, v := range map[string][]byte{
		"truncated":       good[:len(good)-1],
		"length too long": {recordV1, 0x10, 1, 2},
		"bad varint":      {recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		if parts, err := SplitRecord(v); err == nil {
			t.Errorf("%s: no error, %d parts", name, len(parts))
		}
	}
	if _, err := SplitRecord([]byte{recordV1}); !errors.Is(err, ErrEmptyRecord) {
		t.Errorf("empty record: %v", err)
	}
}

func TestRecordFits(t *testing.T) {
	if !RecordFits(MaxRecordBytes*2, 1) {
		t.Error("a single hit must always fit")
	}
	if RecordFits(MaxRecordBytes-10, 4) || !RecordFits(MaxRecordBytes-13, 4) {
		t.Error("the bound is 1 + n + 3 per hit")
	}
	// The bound holds for what AppendRecord writes.
	e := AppendMarshal(nil, full())
	var parts [][]byte
	for RecordFits(len(e)*(len(parts)+1), len(parts)+1) {
		parts = append(parts, e)
	}
	if n := len(AppendRecord(nil, parts)); n > MaxRecordBytes {
		t.Errorf("a record that fits is %d bytes", n)
	}
}

func FuzzSplitRecord(f *testing.F) {
	f.Add(AppendRecord(nil, [][]byte{AppendMarshal(nil, full()), []byte("x")}))
	f.Add([]byte{recordV1, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		parts, err := SplitRecord(v)
		if err != nil {
			return
		}
		// What splits re-joins to the same hits (when none of them is
		// itself a multi-hit record, which no hit's encoding is).
		for _, p := range parts {
			if len(p) > 0 && p[0] == recordV1 {
				return
			}
		}
		again, err := SplitRecord(AppendRecord(nil, parts))
		if err != nil || fmt.Sprintf("%q", again) != fmt.Sprintf("%q", parts) {
			t.Fatalf("re-joined %q: %q, %v", parts, again, err)
		}
	})
}

func TestAppendRecordAllocatesOnce(t *testing.T) {
	var parts [][]byte
	for _, n := range []int{0, 1, 127, 128, 300, 16383, 16384, 70000} {
		parts = append(parts, make([]byte, n))
	}
	// One allocation: the size computed beforehand is enough.
	if raceEnabled {
		t.Skip("the race detector allocates too")
	}
	if allocs := testing.AllocsPerRun(10, func() { AppendRecord(nil, parts) }); allocs != 1 {
		t.Errorf("%v allocations, want 1", allocs)
	}
}
