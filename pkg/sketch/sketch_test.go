package sketch

import (
	"bytes"
	"fmt"
	"math"
	"testing"
)

func TestExactWhileSmall(t *testing.T) {
	var a, b Set
	for i := 0; i < 300; i++ {
		a.Add(fmt.Sprint("user", i))
	}
	for i := 200; i < 400; i++ {
		b.Add(fmt.Sprint("user", i))
	}
	b.Add("user200") // again
	if a.Count() != 300 || b.Count() != 200 {
		t.Fatalf("counts %d, %d; want 300, 200", a.Count(), b.Count())
	}
	if err := a.Merge(&b); err != nil {
		t.Fatal(err)
	}
	if a.Count() != 400 || !a.Exact() {
		t.Fatalf("merged count %d (exact %v), want exactly 400", a.Count(), a.Exact())
	}
}

func TestLargeWithinError(t *testing.T) {
	for _, n := range []int{1000, 50_000, 300_000} {
		var parts [4]Set
		for i := 0; i < n; i++ {
			parts[i%4].Add(fmt.Sprint("client-", i))
		}
		var total Set
		for i := range parts {
			b, err := parts[i].MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var back Set
			if err := back.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if err := total.Merge(&back); err != nil {
				t.Fatal(err)
			}
		}
		rel := math.Abs(float64(total.Count())-float64(n)) / float64(n)
		if rel > 4*StandardError { // four standard errors: fails by chance far less than once in 10^4 runs
			t.Errorf("n=%d: estimate %d is off by %.2f%%", n, total.Count(), rel*100)
		}
	}
}

func TestCanonicalEncoding(t *testing.T) {
	for _, n := range []int{10, 5000} {
		var fwd, rev Set
		for i := 0; i < n; i++ {
			fwd.Add(fmt.Sprint(i))
			rev.Add(fmt.Sprint(n - 1 - i))
		}
		a, _ := fwd.MarshalBinary()
		b, _ := rev.MarshalBinary()
		if !bytes.Equal(a, b) {
			t.Errorf("n=%d: insertion order changed the encoding", n)
		}
	}
	var s Set
	if err := s.UnmarshalBinary([]byte{9}); err == nil {
		t.Error("an unknown tag was accepted")
	}
	if err := s.UnmarshalBinary(nil); err != nil || s.Count() != 0 {
		t.Error("empty input must be the empty set")
	}
}

func TestRemoveByReference(t *testing.T) {
	var s Set
	a, b := Hash("a"), Hash("b")
	s.AddHash(a)
	s.AddHash(a) // two sessions of user a
	s.AddHash(b)
	s.RemoveHash(a)
	if s.Count() != 2 {
		t.Fatalf("count %d after removing one of a's two references, want 2", s.Count())
	}
	s.RemoveHash(a)
	s.RemoveHash(Hash("never added"))
	if s.Count() != 1 {
		t.Fatalf("count %d after removing a's last reference, want 1", s.Count())
	}
	enc, _ := s.MarshalBinary()
	var back Set
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	back.RemoveHash(b)
	if back.Count() != 0 {
		t.Fatalf("references must survive encoding: count %d, want 0", back.Count())
	}
}
