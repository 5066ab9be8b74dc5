// Package sketch counts distinct users in a form that merges across days,
// shards and dimension values: exact while small, a HyperLogLog beyond.
//
// A Set holds the exact 64-bit hashes of up to ExactLimit members, each with
// a reference count, so the counts of small properties and rare dimension
// values are exact and a member can be taken out again (Remove) when the
// last thing that counted it goes away. Past ExactLimit it turns into a
// HyperLogLog with precision 14 (16384 registers), whose standard error is
// 1.04/sqrt(16384) ≈ 0.81%; merging keeps that error, and removals are then
// ignored. The encoding is canonical (sorted hashes with their counts, or
// the register array), so the same members give the same bytes whatever the
// order they were added in.
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
	tagExact byte = 1 // sorted hashes (an older encoding: each counted once)
	tagHLL   byte = 2
	tagRefs  byte = 3 // sorted hashes, each with its reference count
)

// Set is a mergeable distinct-count sketch. The zero value is empty.
type Set struct {
	exact []member // sorted by hash, counts > 0; nil when hll is set
	hll   *hyperloglog.Sketch
}

type member struct {
	hash uint64
	refs uint32
}

func (s *Set) find(x uint64) (int, bool) {
	return slices.BinarySearchFunc(s.exact, x, func(m member, x uint64) int {
		switch {
		case m.hash < x:
			return -1
		case m.hash > x:
			return 1
		}
		return 0
	})
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

// Add adds a member (one more reference to it).
func (s *Set) Add(member string) { s.AddHash(Hash(member)) }

// AddHash adds a member by its Hash.
func (s *Set) AddHash(x uint64) {
	if s.hll != nil {
		s.hll.InsertHash(x)
		return
	}
	i, found := s.find(x)
	if found {
		s.exact[i].refs++
		return
	}
	s.exact = slices.Insert(s.exact, i, member{hash: x, refs: 1})
	if len(s.exact) > ExactLimit {
		s.toHLL()
	}
}

// RemoveHash drops one reference to a member; the member leaves the set
// with its last reference. A HyperLogLog cannot forget: past ExactLimit
// removals are ignored (and the count may keep a member too many).
func (s *Set) RemoveHash(x uint64) {
	if s.hll != nil {
		return
	}
	if i, found := s.find(x); found {
		if s.exact[i].refs--; s.exact[i].refs == 0 {
			s.exact = slices.Delete(s.exact, i, i+1)
		}
	}
}

func (s *Set) toHLL() {
	s.hll = hyperloglog.NewNoSparse()
	for _, m := range s.exact {
		s.hll.InsertHash(m.hash)
	}
	s.exact = nil
}

// Merge adds every member of o to s, with their references.
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
	for _, m := range o.exact {
		if s.hll != nil {
			s.hll.InsertHash(m.hash)
			continue
		}
		i, found := s.find(m.hash)
		if found {
			s.exact[i].refs += m.refs
			continue
		}
		s.exact = slices.Insert(s.exact, i, m)
		if len(s.exact) > ExactLimit {
			s.toHLL()
		}
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
	out := make([]byte, 1, 1+9*len(s.exact))
	out[0] = tagRefs
	for _, m := range s.exact {
		out = binary.BigEndian.AppendUint64(out, m.hash)
		out = binary.AppendUvarint(out, uint64(m.refs))
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
		for i := 1; i < len(b); i += 8 {
			s.exact = append(s.exact, member{hash: binary.BigEndian.Uint64(b[i:]), refs: 1})
		}
		return s.checkSorted()
	case tagRefs:
		for b = b[1:]; len(b) > 0; {
			if len(b) < 9 {
				return errors.New("decode sketch: truncated member")
			}
			x := binary.BigEndian.Uint64(b)
			n, w := binary.Uvarint(b[8:])
			if w <= 0 || n == 0 || n > 1<<32-1 {
				return errors.New("decode sketch: bad reference count")
			}
			s.exact = append(s.exact, member{hash: x, refs: uint32(n)})
			b = b[8+w:]
		}
		return s.checkSorted()
	case tagHLL:
		s.hll = hyperloglog.NewNoSparse()
		if err := s.hll.UnmarshalBinary(b[1:]); err != nil {
			return fmt.Errorf("decode hyperloglog: %w", err)
		}
		return nil
	}
	return fmt.Errorf("decode sketch: unknown tag %d", b[0])
}

func (s *Set) checkSorted() error {
	for i := 1; i < len(s.exact); i++ {
		if s.exact[i-1].hash >= s.exact[i].hash {
			return errors.New("decode sketch: members are not sorted and unique")
		}
	}
	return nil
}
