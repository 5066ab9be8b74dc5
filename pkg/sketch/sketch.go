// Package sketch counts distinct users in a form that merges across days,
// shards and dimension values: exact while small, a HyperLogLog beyond.
//
// A Set holds the exact 64-bit hashes of up to ExactLimit members, so the
// counts of small properties and rare dimension values are exact. Past that
// it turns into a HyperLogLog with precision 14 (16384 registers), whose
// standard error is 1.04/sqrt(16384) ≈ 0.81%; merging keeps that error. The
// encoding is canonical (sorted hashes, or the register array), so the same
// members give the same bytes whatever the order they were added in.
package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/axiomhq/hyperloglog"
)

// ExactLimit is the largest member count kept exactly.
const ExactLimit = 512

// StandardError is the relative standard error of a count past ExactLimit.
const StandardError = 0.0081

const (
	tagExact byte = 1
	tagHLL   byte = 2
)

// Set is a mergeable distinct-count sketch. The zero value is empty.
type Set struct {
	exact []uint64 // sorted, unique; nil when hll is set
	hll   *hyperloglog.Sketch
}

// Hash returns the 64-bit hash a member is counted by (FNV-1a with
// MurmurHash3's finalizer; stable across processes and versions).
func Hash(member string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Add adds a member.
func (s *Set) Add(member string) { s.AddHash(Hash(member)) }

// AddHash adds a member by its Hash.
func (s *Set) AddHash(x uint64) {
	if s.hll != nil {
		s.hll.InsertHash(x)
		return
	}
	i, found := slices.BinarySearch(s.exact, x)
	if found {
		return
	}
	s.exact = slices.Insert(s.exact, i, x)
	if len(s.exact) > ExactLimit {
		s.toHLL()
	}
}

func (s *Set) toHLL() {
	s.hll = hyperloglog.NewNoSparse()
	for _, x := range s.exact {
		s.hll.InsertHash(x)
	}
	s.exact = nil
}

// Merge adds every member of o to s.
func (s *Set) Merge(o *Set) error {
	if o == nil {
		return nil
	}
	if o.hll != nil {
		if s.hll == nil {
			s.toHLL()
		}
		return s.hll.Merge(o.hll)
	}
	for _, x := range o.exact {
		s.AddHash(x)
	}
	return nil
}

// Count returns the number of distinct members: exact up to ExactLimit,
// estimated beyond.
func (s *Set) Count() uint64 {
	if s.hll != nil {
		return s.hll.Estimate()
	}
	return uint64(len(s.exact))
}

// Exact reports whether Count is exact.
func (s *Set) Exact() bool { return s.hll == nil }

// MarshalBinary encodes s canonically.
func (s *Set) MarshalBinary() ([]byte, error) {
	if s.hll != nil {
		b, err := s.hll.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode hyperloglog: %w", err)
		}
		return append([]byte{tagHLL}, b...), nil
	}
	out := make([]byte, 1, 1+8*len(s.exact))
	out[0] = tagExact
	for _, x := range s.exact {
		out = binary.BigEndian.AppendUint64(out, x)
	}
	return out, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. Empty input is the
// empty set.
func (s *Set) UnmarshalBinary(b []byte) error {
	*s = Set{}
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case tagExact:
		if (len(b)-1)%8 != 0 {
			return errors.New("decode sketch: exact set length is not a multiple of 8")
		}
		s.exact = make([]uint64, 0, (len(b)-1)/8)
		for i := 1; i < len(b); i += 8 {
			s.exact = append(s.exact, binary.BigEndian.Uint64(b[i:]))
		}
		if !slices.IsSorted(s.exact) {
			return errors.New("decode sketch: exact set is not sorted")
		}
		return nil
	case tagHLL:
		s.hll = hyperloglog.NewNoSparse()
		if err := s.hll.UnmarshalBinary(b[1:]); err != nil {
			return fmt.Errorf("decode hyperloglog: %w", err)
		}
		return nil
	}
	return fmt.Errorf("decode sketch: unknown tag %d", b[0])
}
