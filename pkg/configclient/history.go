package configclient

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/rules"
)

// History is a property's rule versions, compiled as they are needed: what
// processing needs to give each hit the rules of its time. It is safe for
// concurrent use; the Client caches it with the property (RuleHistory) and
// drops it with the property.
//
// The newest version is compiled at once (a history whose newest rules
// this service cannot compile is an error, as before any hit meets it);
// every other version when a hit first needs it. Live hits need the newest
// one or two, so a property with many versions costs their source only
// (about 1 KB each for usual rules), not their compiled form (up to 180 KB
// each for the largest rules config-svc accepts).
type History struct {
	versions []RuleVersion // by version number, oldest first
	compiled []lazyRules   // compiled[i] is versions[i], compiled on first use
}

// lazyRules is one version's compiled rules, made on first use.
type lazyRules struct {
	once sync.Once
	c    *rules.Compiled
}

// NewHistory takes versions (in any order) and compiles the newest.
// config-svc gives each version a later EffectiveAt than the one before
// (rules.go), so the versions are in the order of their times too.
func NewHistory(versions []RuleVersion) (*History, error) {
	h := &History{versions: slices.Clone(versions)}
	slices.SortFunc(h.versions, func(a, b RuleVersion) int { return a.Version - b.Version })
	h.compiled = make([]lazyRules, len(h.versions))
	if n := len(h.versions); n > 0 {
		newest := h.versions[n-1]
		c, err := newest.Compile()
		if err != nil {
			return nil, fmt.Errorf("rule version %d does not compile here (is this service older than config-svc?): %w", newest.Version, err)
		}
		h.compiled[n-1].once.Do(func() { h.compiled[n-1].c = c })
	}
	return h, nil
}

// rules returns version i compiled. An older version this service cannot
// compile (config-svc accepted it, so only a service older than config-svc
// can meet one) counts as unknown: nil, and its hits get the current rules
// (the caller's fallback), as a version not fetched yet would.
func (h *History) rules(i int) *rules.Compiled {
	l := &h.compiled[i]
	l.once.Do(func() {
		l.c, _ = h.versions[i].Compile()
	})
	return l.c
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
	return h.rules(max(i-1, 0))
}

// Newest returns the latest version's number (0 when there is none).
func (h *History) Newest() int {
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
	return h.rules(i)
}
