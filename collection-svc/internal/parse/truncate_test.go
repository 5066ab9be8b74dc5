package parse

import (
	"strings"
	"testing"
	"unsafe"
)

// TestTruncateKeepsOnlyItsPart: a dead letter waits in the buffer (up to
// 10,000 of them) with its payload; cut from a rejected body of 512 KiB or
// a query of 1 MiB by slicing, it kept the whole of it alive.
func TestTruncateKeepsOnlyItsPart(t *testing.T) {
	s := strings.Repeat("x", 1<<20)
	got := Truncate(s)
	if len(got) != MaxRawBytes || unsafe.StringData(got) == unsafe.StringData(s) {
		t.Fatalf("Truncate of 1 MiB: %d bytes, sharing the input's memory: %v", len(got), unsafe.StringData(got) == unsafe.StringData(s))
	}
	if short := s[:10]; unsafe.StringData(Truncate(short)) != unsafe.StringData(short) {
		t.Fatal("a payload within the limit was copied")
	}
}
