package configclient

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

// History is a property's rule versions, compiled: what processing needs
// to give each hit the rules of its time. It is immutable; the Client
// caches it with the property (RuleHistory) and drops it with the
// property, so the compiled rules live as long as the cache keeps them.
type History struct {
	versions []RuleVersion     // by version number, oldest first
	compiled []*rules.Compiled // compiled[i] is versions[i] compiled
	// lastFrom[i] is the earliest EffectiveAt of versions[i:]: a version
	// takes effect in the order of its number, but should two instances'
	// clocks disagree, the latest-numbered version in effect at t is still
	// found by one binary search over it (it never decreases).
	lastFrom []time.Time
}

// NewHistory compiles versions (in any order).
func NewHistory(versions []RuleVersion) (*History, error) {
	h := &History{versions: slices.Clone(versions)}
	slices.SortFunc(h.versions, func(a, b RuleVersion) int { return a.Version - b.Version })
	h.compiled = make([]*rules.Compiled, len(h.versions))
	h.lastFrom = make([]time.Time, len(h.versions))
	for i, v := range h.versions {
		c, err := v.Compile()
		if err != nil {
			return nil, fmt.Errorf("rule version %d does not compile here (is this service older than config-svc?): %w", v.Version, err)
		}
		h.compiled[i] = c
	}
	for i := len(h.versions) - 1; i >= 0; i-- {
		h.lastFrom[i] = h.versions[i].EffectiveAt
		if i+1 < len(h.versions) && h.lastFrom[i+1].Before(h.lastFrom[i]) {
			h.lastFrom[i] = h.lastFrom[i+1]
		}
	}
	return h, nil
}

// Versions returns the versions, oldest first (shared: do not modify).
func (h *History) Versions() []RuleVersion { return h.versions }

// At returns the rules in effect at t: those of the latest-numbered
// version that took effect at or before t; for a t before every version,
// the first; nil when there is no version.
func (h *History) At(t time.Time) *rules.Compiled {
	if len(h.versions) == 0 {
		return nil
	}
	i := sort.Search(len(h.lastFrom), func(i int) bool { return h.lastFrom[i].After(t) })
	return h.compiled[max(i-1, 0)]
}

// Version returns the rules of version n, or nil when there is none.
func (h *History) Version(n int) *rules.Compiled {
	i, ok := slices.BinarySearchFunc(h.versions, n, func(v RuleVersion, n int) int { return v.Version - n })
	if !ok {
		return nil
	}
	return h.compiled[i]
}
