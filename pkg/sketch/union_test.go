package sketch

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestUserSetMatchesSketch merges the same sketches with pkg/sketch and
// with Union and requires the same count, exact and estimated, so that
// the engine's fast path can never drift from the shared contract.
func TestUserSetMatchesSketch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		parts, perPart, universe int
	}{
		{1, 0, 10}, {1, 5, 10}, {3, 200, 1000}, {2, 300, 100000}, {4, 400, 1000}, {1, 600, 1e6}, {10, 5000, 30000}, {30, 20000, 1e6}, {5, 100, 1e9},
	} {
		t.Run(fmt.Sprintf("%dx%d", tt.parts, tt.perPart), func(t *testing.T) {
			var want Set
			var got Union
			for range tt.parts {
				var part Set
				for range tt.perPart {
					part.Add(fmt.Sprint(rng.IntN(tt.universe)))
				}
				if tt.perPart > 3 && part.Exact() {
					// A member whose last reference went away is not counted.
					part.RemoveHash(Hash("gone"))
					part.Add("gone")
					part.Add("gone")
					part.RemoveHash(Hash("gone"))
				}
				b, err := part.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				u, err := DecodeUnion(b)
				if err != nil {
					t.Fatal(err)
				}
				if err := want.Merge(&part); err != nil {
					t.Fatal(err)
				}
				got.Merge(&u)
			}
			if got.Count() != want.Count() || got.Exact() != want.Exact() {
				t.Errorf("count %d (exact %v), pkg/sketch says %d (exact %v)", got.Count(), got.Exact(), want.Count(), want.Exact())
			}
		})
	}
}

func TestDecodeUsersOlderExactEncoding(t *testing.T) {
	// pkg/sketch's first encoding (tag 1: hashes without counts) may
	// still be stored.
	b := []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}
	u, err := DecodeUnion(b)
	if err != nil || u.Count() != 2 {
		t.Fatalf("DecodeUnion = %d, %v; want 2 members", u.Count(), err)
	}
	var s Set
	if err := s.UnmarshalBinary(b); err != nil || s.Count() != 2 {
		t.Fatalf("pkg/sketch reads %d, %v", s.Count(), err)
	}
}

func TestDecodeUsersRejectsOtherEncodings(t *testing.T) {
	for _, b := range [][]byte{{9}, {1, 0, 0}, {2, 2, 14, 0, 1}, {3, 0, 0, 0, 0, 0, 0, 0, 1}, {3, 0, 0, 0, 0, 0, 0, 0, 1, 0}} {
		if _, err := DecodeUnion(b); err == nil {
			t.Errorf("DecodeUnion(%v) accepted", b)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	var a, c Set
	for i := range 100000 {
		a.Add(fmt.Sprint(i))
		c.Add(fmt.Sprint(-i))
	}
	ab, _ := a.MarshalBinary()
	cb, _ := c.MarshalBinary()
	b.Run("pkg/sketch", func(b *testing.B) {
		for range b.N {
			var x Set
			_ = x.Merge(&a)
			_ = x.Merge(&c)
			_ = x.Count()
		}
	})
	ua, _ := DecodeUnion(ab)
	uc, _ := DecodeUnion(cb)
	b.Run("Union", func(b *testing.B) {
		for range b.N {
			var x Union
			x.Merge(&ua)
			x.Merge(&uc)
			_ = x.Count()
		}
	})
}

func BenchmarkCount(b *testing.B) {
	var s Union
	for i := range 100000 {
		if s.regs == nil {
			s.toHLL()
		}
		s.insert(Hash(fmt.Sprint(i)))
	}
	for range b.N {
		_ = s.Count()
	}
}

func BenchmarkMergeDense(b *testing.B) {
	var x, y Union
	x.toHLL()
	y.toHLL()
	for i := range 100000 {
		y.insert(Hash(fmt.Sprint(i)))
	}
	for range b.N {
		x.Merge(&y)
	}
}
