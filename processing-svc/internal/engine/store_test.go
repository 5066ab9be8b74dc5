package engine

import (
	"slices"
	"strings"
	"testing"
)

func TestWriterBatches(t *testing.T) {
	// st is a statement of partition p whose blob makes it n KiB as
	// stmtBytes counts it.
	st := func(p string, n int) stmt {
		return stmt{partition: p, args: []any{make([]byte, n<<10-256)}}
	}
	kib := func(n ...int) []stmt {
		var out []stmt
		for _, x := range n {
			out = append(out, st("a", x))
		}
		return out
	}
	tests := []struct {
		name            string
		count, bytesKiB int
		stmts           []stmt
		want            string // each batch's partitions, a batch a word
	}{
		{"by count", 2, 0, append(kib(1, 1, 1), st("b", 1)), "aa a b"},
		{"partitions apart, in order", 50, 0, []stmt{st("b", 1), st("a", 1), st("b", 1)}, "bb a"},
		{"by bytes", 50, 3, kib(1, 1, 1, 1, 2, 2), "aaa aa a"},
		{"a statement past the bound goes alone", 50, 3, kib(1, 5, 1), "a a a"},
		{"count first", 2, 100, kib(1, 1, 1), "aa a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &writer{batchSize: tt.count, batchBytes: tt.bytesKiB << 10}
			var got []string
			for _, b := range w.batches(tt.stmts) {
				var ps strings.Builder
				for _, s := range b {
					ps.WriteString(s.partition)
				}
				got = append(got, ps.String())
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("batches %q, want %q", g, tt.want)
			}
			if n := len(slices.Concat(w.batches(tt.stmts)...)); n != len(tt.stmts) {
				t.Errorf("%d statements in the batches, want %d", n, len(tt.stmts))
			}
		})
	}
}
