package hit

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/acme/analytics/pkg/wire"
)

// A record of the hits topic holds one hit or several hits with the same
// key. Collection puts the accepted hits of one request that share a key
// (usually all of them: one visitor's batch) in one record, so that the
// per-record work of the producer, the broker and the consumer is done
// once per request rather than once per hit.
//
// The value of a record is either one hit's encoding, exactly as Marshal
// returns it (or the JSON of messages written before the binary
// encoding), or a multi-hit record: the version byte recordV1, then each
// hit's encoding in pkg/wire's byte-slice representation, in the order the
// client sent them, until the end of the value.
const recordV1 = 0xB2

// MaxRecordBytes bounds the value of a multi-hit record, well inside
// Kafka's default message size limit (1 MB); a producer starts another
// record of the key when the next hit would take a record past it.
const MaxRecordBytes = 256 << 10

// AppendRecord appends to b the value of a record holding the hits encoded
// (each as Marshal returns it), which must share a key: the encoding
// itself for one hit, a multi-hit record for several.
func AppendRecord(b []byte, encoded [][]byte) []byte {
	if len(encoded) == 1 {
		return append(b, encoded[0]...)
	}
	n := 1
	for _, e := range encoded {
		n += max(1, (bits.Len(uint(len(e)))+6)/7) + len(e) // its uvarint length, itself
	}
	b = slices.Grow(b, n) // once: records are written for every request
	b = append(b, recordV1)
	for _, e := range encoded {
		b = wire.AppendBytes(b, e)
	}
	return b
}

// RecordFits reports whether a record of the given number of hits, whose
// encodings take n bytes in all, stays within MaxRecordBytes.
func RecordFits(n, hits int) bool {
	return hits <= 1 || RecordBound(n, hits) <= MaxRecordBytes
}

// RecordBound is the most bytes AppendRecord writes for a record of the
// given number of hits whose encodings take n bytes in all: the version
// byte, and a length prefix per hit (a hit's encoding is under 2 MiB, so
// its length takes at most three bytes).
func RecordBound(n, hits int) int { return 1 + n + 3*hits }

// ErrEmptyRecord is SplitRecord's error for a multi-hit record with no hits.
var ErrEmptyRecord = errors.New("a multi-hit record with no hits")

// SplitRecord returns the encoding of each hit that a record's value holds,
// in order, for Unmarshal: slices of value, not copies. A value that is
// not a multi-hit record is one hit's encoding and comes back whole
// (Unmarshal then says whether it is one). The error is for a multi-hit
// record whose framing is broken; the hits in it are then not known.
func SplitRecord(value []byte) ([][]byte, error) {
	if len(value) == 0 || value[0] != recordV1 {
		return [][]byte{value}, nil
	}
	r := wire.NewReader(value[1:])
	var out [][]byte
	for r.Remaining() > 0 {
		b := r.Bytes()
		if b == nil { // the reader failed: it reads nothing more
			break
		}
		out = append(out, b)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("split record: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrEmptyRecord
	}
	return out, nil
}
