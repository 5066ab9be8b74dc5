package wire

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 7, 0, 0, 999999999, time.FixedZone("X", 3600))
	var b []byte
	b = AppendString(b, "héllo")
	b = AppendInt(b, -42)
	b = AppendUint(b, 1<<40)
	b = AppendTime(b, at)
	b = AppendTime(b, time.Time{})
	b = AppendFloat(b, math.Inf(-1))
	b = AppendBool(b, true)
	b = AppendBytes(b, []byte{0, 0xff})
	b = append(b, "raw"...)
	r := NewReader(b)
	if s := r.String(); s != "héllo" {
		t.Errorf("string %q", s)
	}
	if v := r.Int(); v != -42 {
		t.Errorf("int %d", v)
	}
	if v := r.Uint(); v != 1<<40 {
		t.Errorf("uint %d", v)
	}
	if v := r.Time(); !v.Equal(at) || v.Location() != time.UTC {
		t.Errorf("time %v, want %v in UTC", v, at)
	}
	if v := r.Time(); !v.IsZero() || v != (time.Time{}) {
		t.Errorf("zero time came back as %#v", v)
	}
	if v := r.Float(); !math.IsInf(v, -1) {
		t.Errorf("float %v", v)
	}
	if !r.Bool() {
		t.Error("bool")
	}
	if v := r.Bytes(); string(v) != "\x00\xff" || cap(v) != 2 {
		t.Errorf("bytes %q (cap %d: appending to it must not overwrite the input)", v, cap(v))
	}
	if v := r.Next(3); string(v) != "raw" || cap(v) != 3 {
		t.Errorf("next %q (cap %d)", v, cap(v))
	}
	if r.Remaining() != 0 {
		t.Errorf("%d bytes left", r.Remaining())
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestReaderErrors(t *testing.T) {
	if r := NewReader([]byte("ab")); r.Next(3) != nil || !errors.Is(r.Err(), ErrTruncated) {
		t.Errorf("next past the end: err %v", r.Err())
	}
	r := NewReader(AppendString(nil, "abc")[:2])
	if r.String() != "" || !errors.Is(r.Err(), ErrTruncated) {
		t.Errorf("truncated string: err %v", r.Err())
	}
	r = NewReader(AppendUint(nil, 1000))
	if n := r.Count(1); n != 0 || r.Err() == nil || !strings.Contains(r.Err().Error(), "exceeds") {
		t.Errorf("a count larger than the input: %d, %v", n, r.Err())
	}
	r = NewReader([]byte{2})
	if r.Bool(); r.Err() == nil {
		t.Error("bool byte 2 accepted")
	}
	r = NewReader([]byte{1, 0})
	r.Byte()
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "1 bytes after") {
		t.Errorf("leftover bytes: %v", err)
	}
}
