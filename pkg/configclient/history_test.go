package configclient

import (
	"testing"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

func TestHistory(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	version := func(n int, from time.Time) RuleVersion {
		r := rules.Defaults().Normalize()
		r.SessionTimeoutMinutes = n // tells the compiled versions apart
		return RuleVersion{Version: n, EffectiveAt: from, Rules: r}
	}
	h, err := NewHistory([]RuleVersion{version(3, t0.Add(2*time.Hour)), version(1, t0), version(2, t0.Add(time.Hour)), version(4, t0.Add(130*time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   time.Time
		want int
	}{
		{t0.Add(-time.Second), 1}, // before every version: the first
		{t0, 1},
		{t0.Add(59 * time.Minute), 1},
		{t0.Add(time.Hour), 2},
		{t0.Add(119 * time.Minute), 2},
		{t0.Add(2 * time.Hour), 3},
		{t0.Add(129 * time.Minute), 3},
		{t0.Add(130 * time.Minute), 4},
		{t0.Add(48 * time.Hour), 4},
	}
	for _, tt := range tests {
		if got := h.At(tt.at).SessionTimeout(); got != time.Duration(tt.want)*time.Minute {
			t.Errorf("At(%s) is version %v, want %d", tt.at.Format(time.Kitchen), got.Minutes(), tt.want)
		}
	}
	for n := 1; n <= 4; n++ {
		if got := h.Version(n); got == nil || got.Version() != n {
			t.Errorf("Version(%d) = %v", n, got)
		}
	}
	if h.Version(5) != nil || h.Version(0) != nil {
		t.Error("a version that does not exist was found")
	}
	if v := h.Versions(); len(v) != 4 || v[0].Version != 1 || v[3].Version != 4 {
		t.Errorf("Versions() = %v, want 1 to 4 in order", v)
	}
	empty, err := NewHistory(nil)
	if err != nil || empty.At(t0) != nil || empty.Version(1) != nil {
		t.Fatalf("an empty history: %v, %v, %v", err, empty.At(t0), empty.Version(1))
	}
}

// Only the newest version is compiled up front; the others when a hit
// first needs them. One this service cannot compile is unknown (nil),
// unless it is the newest: then the history is an error.
func TestHistoryCompilesOnFirstUse(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	good := func(n int) RuleVersion {
		return RuleVersion{Version: n, EffectiveAt: t0.Add(time.Duration(n) * time.Hour), Rules: rules.Defaults().Normalize()}
	}
	bad := func(n int) RuleVersion {
		v := good(n)
		v.Rules.Exclusions.UserAgents = []string{"("}
		return v
	}
	h, err := NewHistory([]RuleVersion{good(1), bad(2), good(3)})
	if err != nil {
		t.Fatal(err)
	}
	if h.compiled[0].c != nil || h.compiled[2].c == nil {
		t.Fatalf("compiled up front: v1 %v, v3 %v; want only the newest", h.compiled[0].c != nil, h.compiled[2].c != nil)
	}
	if r := h.At(t0.Add(time.Hour)); r == nil || r.Version() != 1 || h.compiled[0].c != r {
		t.Fatalf("At(v1's time) = %v, want version 1, kept", r)
	}
	if r := h.At(t0.Add(2 * time.Hour)); r != nil {
		t.Fatalf("a version that does not compile here gave %v, want nil (unknown)", r.Version())
	}
	if _, err := NewHistory([]RuleVersion{good(1), bad(2)}); err == nil {
		t.Fatal("a history whose newest version does not compile was accepted")
	}
}
