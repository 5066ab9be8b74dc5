// Package enginetest has what tests of the processing engine's users share:
// a fixed property source standing in for config-svc (its own client is
// tested against the real config-svc in pkg/configclient).
package enginetest

import (
	"context"
	"fmt"
	"time"

	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/processing-svc/internal/engine"
)

// Properties serves a fixed set of properties.
type Properties []*engine.Property

// Property implements engine.Properties.
func (ps Properties) Property(_ context.Context, id string) (*engine.Property, error) {
	for _, p := range ps {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", engine.ErrUnknownProperty, id)
}

// Property returns a UTC property with one shard and the given rules as
// version 1, whatever the time.
func Property(id string, r rules.Rules, hostnames ...string) (*engine.Property, error) {
	c, err := rules.Compile(r, 1, hostnames)
	if err != nil {
		return nil, err
	}
	return &engine.Property{ID: id, TenantID: "t", Location: time.UTC, Shards: 1, RulesAt: func(time.Time) *rules.Compiled { return c }}, nil
}
