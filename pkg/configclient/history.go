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
}

// NewHistory compiles versions (in any order). config-svc gives each
// version a later EffectiveAt than the one before (rules.go), so the
// versions are in the order of their times too.
func NewHistory(versions []RuleVersion) (*History, error) {
	h := &History{versions: slices.Clone(versions)}
	slices.SortFunc(h.versions, func(a, b RuleVersion) int { return a.Version - b.Version })
	h.compiled = make([]*rules.Compiled, len(h.versions))
	for i, v := range h.versions {
		c, err := v.Compile()
		if err != nil {
			return nil, fmt.Errorf("rule version %d does not compile here (is this service older than config-svc?): %w", v.Version, err)
		}
		h.compiled[i] = c
	}
	return h, nil
}

// Versions returns the versions, oldest first (shared: do not modify).
func (h *History) Versions() []RuleVersion { return h.versions }

// At returns the rules in effect at t: those of the latest version that
// took effect at or before t; for a t before every version, the first; nil
// when there is no version.
func (h *History) At(t time.Time) *rules.Compiled {
	if len(h.versions) == 0 {
		return nil
	}
	i := sort.Search(len(h.versions), func(i int) bool { return h.versions[i].EffectiveAt.After(t) })
	return h.compiled[max(i-1, 0)]
}

// newest returns the latest version's number (0 when there is none).
func (h *History) newest() int {
	if len(h.versions) == 0 {
		return 0
	}
	return h.versions[len(h.versions)-1].Version
}

// Version returns the rules of version n, or nil when there is none.
func (h *History) Version(n int) *rules.Compiled {
	i, ok := slices.BinarySearchFunc(h.versions, n, func(v RuleVersion, n int) int { return v.Version - n })
	if !ok {
		return nil
	}
	return h.compiled[i]
}
