package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
)

// ConfigProperties answers property lookups from config-svc through its
// cached client: the property's document (time zone, shards) and its rule
// history, so each hit gets the rules in effect when it was received.
type ConfigProperties struct {
	Client *configclient.Client

	mu       sync.Mutex
	compiled map[versionKey]*rules.Compiled
}

type versionKey struct {
	property string
	version  int
}

// Property implements Properties.
func (c *ConfigProperties) Property(ctx context.Context, id string) (*Property, error) {
	doc, err := c.Client.ByID(ctx, id)
	if errors.Is(err, configclient.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownProperty, id)
	}
	if err != nil {
		return nil, err
	}
	versions, err := c.Client.RuleVersions(ctx, id)
	if err != nil {
		return nil, err
	}
	history := make([]*rules.Compiled, len(versions))
	for i, v := range versions {
		if history[i], err = c.compile(id, v); err != nil {
			return nil, err
		}
	}
	current := doc.Compiled()
	return &Property{
		ID:       doc.PropertyID,
		TenantID: doc.TenantID,
		Location: doc.Location(),
		Shards:   max(doc.ProcessingShards, 1),
		RulesAt: func(t time.Time) *rules.Compiled {
			// The latest version that took effect at or before t; a hit
			// from before the first version gets the first.
			var best *rules.Compiled
			for i, v := range versions {
				if !v.EffectiveAt.After(t) {
					best = history[i]
				}
			}
			switch {
			case best != nil:
				return best
			case len(history) > 0:
				return history[0]
			}
			return current
		},
		RulesVersion: func(n int) *rules.Compiled {
			for i, v := range versions {
				if v.Version == n {
					return history[i]
				}
			}
			return nil
		},
	}, nil
}

func (c *ConfigProperties) compile(id string, v configclient.RuleVersion) (*rules.Compiled, error) {
	k := versionKey{id, v.Version}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.compiled[k]; ok {
		return r, nil
	}
	r, err := v.Compile()
	if err != nil {
		return nil, fmt.Errorf("rules version %d of %s: %w", v.Version, id, err)
	}
	if c.compiled == nil {
		c.compiled = map[versionKey]*rules.Compiled{}
	}
	c.compiled[k] = r
	return r, nil
}
