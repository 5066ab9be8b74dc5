// Package wire is the small binary codec under the pipeline's compact
// encodings (hits on the hits topic, visitor state): append functions to
// encode and a Reader to decode, with one fixed representation per type.
//
// A string or byte slice is its length (uvarint) and its bytes; an integer
// a zigzag varint; a time its Unix seconds (varint) and nanoseconds
// (uvarint), decoded in UTC; a float64 its IEEE 754 bits, 8 bytes little
// endian; a bool one byte, 0 or 1.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// AppendString appends s.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends v: the same representation as a string's.
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendInt appends v.
func AppendInt(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendUint appends v.
func AppendUint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendTime appends t (its instant; the zone is not kept).
func AppendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// AppendFloat appends v.
func AppendFloat(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// AppendBool appends v.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// ErrTruncated is the error of a Reader that ran out of bytes.
var ErrTruncated = errors.New("truncated")

// Reader decodes values in the order they were appended. The first error
// sticks: later reads return zero values, and Err reports it.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error, or, when every read succeeded but bytes are
// left, an error saying how many.
func (r *Reader) Err() error {
	if r.err == nil && len(r.b) > 0 {
		return fmt.Errorf("%d bytes after the last field", len(r.b))
	}
	return r.err
}

// Fail records err as the reader's error, if it has none yet: a caller's
// check of a decoded value.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Remaining is how many bytes are left.
func (r *Reader) Remaining() int { return len(r.b) }

// Uint reads an unsigned integer.
func (r *Reader) Uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Int reads a signed integer.
func (r *Reader) Int() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Count reads a number of elements that follow, each at least min bytes
// long: a count the remaining bytes cannot hold is an error, so a corrupt
// count never makes the caller allocate.
func (r *Reader) Count(min int) int {
	n := r.Uint()
	if r.err == nil && n > uint64(len(r.b)/max(min, 1)) {
		r.err = fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b))
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

// String reads a string.
func (r *Reader) String() string { return string(r.Bytes()) }

// Bytes reads a byte slice (or a string). It is a slice of the reader's
// input, not a copy.
func (r *Reader) Bytes() []byte {
	n := r.Uint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = ErrTruncated
	}
	if r.err != nil {
		return nil
	}
	return r.Next(int(n))
}

// Next reads the next n bytes, written raw (without a length). It is a
// slice of the reader's input, not a copy.
func (r *Reader) Next(n int) []byte {
	if r.err == nil && n > len(r.b) {
		r.err = ErrTruncated
	}
	if r.err != nil {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Time reads a time, in UTC.
func (r *Reader) Time() time.Time {
	sec, nsec := r.Int(), r.Uint()
	if r.err == nil && nsec >= 1e9 {
		r.err = fmt.Errorf("nanoseconds %d out of range", nsec)
	}
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// Float reads a float64.
func (r *Reader) Float() float64 {
	if r.err == nil && len(r.b) < 8 {
		r.err = ErrTruncated
	}
	if r.err != nil {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return math.Float64frombits(v)
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.err == nil && len(r.b) < 1 {
		r.err = ErrTruncated
	}
	if r.err != nil {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// Bool reads a bool.
func (r *Reader) Bool() bool {
	switch v := r.Byte(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.Fail(fmt.Errorf("bool byte %d", v))
		return false
	}
}
