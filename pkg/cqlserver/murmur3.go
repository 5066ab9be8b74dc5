package cqlserver

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// This is Cassandra's Murmur3Partitioner: the first 64 bits of MurmurHash3
// x64_128 with seed 0, as implemented in org.apache.cassandra.utils.
// MurmurHash.hash3_x64_128. Cassandra's implementation differs from the
// reference one in the tail: the trailing bytes are sign-extended (Java
// bytes are signed) before being shifted into place. Tokens must match
// Cassandra bit for bit, or token() ranges and drivers' token-aware routing
// would disagree with a real cluster.

const (
	murmurC1 = 0x87c37b91114253d5
	murmurC2 = 0x4cf5ad432745937f
)

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// murmur3Token returns the Murmur3Partitioner token of a serialized
// partition key.
func murmur3Token(data []byte) int64 {
	length := len(data)
	var h1, h2 uint64
	nblocks := length / 16
	for i := 0; i < nblocks; i++ {
		k1 := binary.LittleEndian.Uint64(data[i*16:])
		k2 := binary.LittleEndian.Uint64(data[i*16+8:])

		k1 *= murmurC1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= murmurC2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729

		k2 *= murmurC2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= murmurC1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}

	tail := data[nblocks*16:]
	// signed reproduces Java's sign extension of a byte.
	signed := func(i int) uint64 { return uint64(int64(int8(tail[i]))) }
	var k1, k2 uint64
	switch length & 15 {
	case 15:
		k2 ^= signed(14) << 48
		fallthrough
	case 14:
		k2 ^= signed(13) << 40
		fallthrough
	case 13:
		k2 ^= signed(12) << 32
		fallthrough
	case 12:
		k2 ^= signed(11) << 24
		fallthrough
	case 11:
		k2 ^= signed(10) << 16
		fallthrough
	case 10:
		k2 ^= signed(9) << 8
		fallthrough
	case 9:
		k2 ^= signed(8)
		k2 *= murmurC2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= murmurC1
		h2 ^= k2
		fallthrough
	case 8:
		k1 ^= signed(7) << 56
		fallthrough
	case 7:
		k1 ^= signed(6) << 48
		fallthrough
	case 6:
		k1 ^= signed(5) << 40
		fallthrough
	case 5:
		k1 ^= signed(4) << 32
		fallthrough
	case 4:
		k1 ^= signed(3) << 24
		fallthrough
	case 3:
		k1 ^= signed(2) << 16
		fallthrough
	case 2:
		k1 ^= signed(1) << 8
		fallthrough
	case 1:
		k1 ^= signed(0)
		k1 *= murmurC1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= murmurC2
		h1 ^= k1
	}

	h1 ^= uint64(length)
	h2 ^= uint64(length)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2

	token := int64(h1)
	// Long.MIN_VALUE is reserved as the minimum token, never a key's token.
	if token == math.MinInt64 {
		return math.MaxInt64
	}
	return token
}

// partitionKeyBytes serializes partition key components the way Cassandra
// does: a single component as is, several as a CompositeType (2-byte
// length, bytes, end-of-component byte 0 for each).
func partitionKeyBytes(parts [][]byte) []byte {
	if len(parts) == 1 {
		return parts[0]
	}
	n := 0
	for _, p := range parts {
		n += 3 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
		out = append(out, 0)
	}
	return out
}

// splitPartitionKey is the inverse of partitionKeyBytes.
func splitPartitionKey(key []byte, n int) [][]byte {
	if n == 1 {
		return [][]byte{key}
	}
	parts := make([][]byte, 0, n)
	for len(key) >= 2 && len(parts) < n {
		l := int(binary.BigEndian.Uint16(key))
		if 2+l+1 > len(key) {
			break
		}
		parts = append(parts, key[2:2+l:2+l])
		key = key[2+l+1:]
	}
	return parts
}
