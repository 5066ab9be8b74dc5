package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
)

// ConfigProperties answers property lookups from config-svc through its
// cached client: the property's document (time zone, shards) and its rule
// history, so each hit gets the rules in effect when it was received. The
// compiled rules are the client's, cached and dropped with the property.
type ConfigProperties struct {
	Client *configclient.Client
	// Fresh makes every lookup ask config-svc (configclient's Fresh),
	// for reprocessing: a job applies the rules in effect when it was
	// created, including a change the change feed has not announced yet,
	// and fails while config-svc cannot answer rather than apply the last
	// known rules. Live processing's lookups are cached (it keeps
	// processing with the rules it has).
	Fresh bool
}

// Property implements Properties.
func (c *ConfigProperties) Property(ctx context.Context, id string) (*Property, error) {
	doc, history, err := c.lookup(ctx, id)
	if errors.Is(err, configclient.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownProperty, id)
	}
	if err != nil {
		return nil, err
	}
	current, version, since := doc.Compiled(), doc.Rules.Version, doc.Rules.EffectiveAt
	// The history can be behind the document: config-svc did not answer
	// its refetch after a rules change, and the last known one is served.
	// The document's own version is then taken from the document.
	behind := history.Newest() < version
	return &Property{
		ID:       doc.PropertyID,
		TenantID: doc.TenantID,
		Location: doc.Location(),
		Shards:   max(doc.ProcessingShards, 1),
		RulesAt: func(t time.Time) *rules.Compiled {
			if behind && !t.Before(since) {
				return current
			}
			if r := history.At(t); r != nil {
				return r
			}
			return current
		},
		RulesVersion: func(n int) *rules.Compiled {
			if n == version {
				return current
			}
			return history.Version(n)
		},
		CurrentVersion: version,
	}, nil
}

// lookup returns the property's document and rule history, fetched or
// cached as c.Fresh says.
func (c *ConfigProperties) lookup(ctx context.Context, id string) (*configclient.Property, *configclient.History, error) {
	if c.Fresh {
		return c.Client.Fresh(ctx, id)
	}
	doc, err := c.Client.ByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	history, err := c.Client.RuleHistory(ctx, id)
	return doc, history, err
}
