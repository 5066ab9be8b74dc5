package collection

import (
	"context"
	"errors"
	"sync"

	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/pkg/configclient"
)

// propertySource is the part of configclient.Client collection uses.
type propertySource interface {
	ByTrackingID(ctx context.Context, tid string) (*configclient.Property, error)
}

// configProperties adapts configclient documents to collect.Property. The
// client returns the same shared document until the property changes, so
// the conversion is kept per tracking ID and redone only for a new
// document.
type configProperties struct {
	src propertySource

	mu   sync.RWMutex
	conv map[string]converted
}

type converted struct {
	doc *configclient.Property
	p   *collect.Property
}

// Properties returns the lookups of collect over a configclient client.
func Properties(src propertySource) collect.Properties {
	return &configProperties{src: src, conv: map[string]converted{}}
}

func (c *configProperties) ByTrackingID(ctx context.Context, tid string) (*collect.Property, error) {
	doc, err := c.src.ByTrackingID(ctx, tid)
	if errors.Is(err, configclient.ErrNotFound) {
		return nil, collect.ErrUnknownTrackingID
	}
	if err != nil {
		return nil, err
	}
	c.mu.RLock()
	cv, ok := c.conv[tid]
	c.mu.RUnlock()
	if ok && cv.doc == doc {
		return cv.p, nil
	}
	p := &collect.Property{
		ID:           doc.PropertyID,
		TenantID:     doc.TenantID,
		TrackingID:   doc.TrackingID,
		Cookieless:   doc.Cookieless,
		Location:     doc.Location(),
		Shards:       doc.ProcessingShards,
		Rules:        doc.Compiled(),
		VerifySecret: doc.VerifySecret,
	}
	if p.Rules == nil {
		// A document not prepared by the client; compile it ourselves.
		if r, err := doc.Rules.Compile(); err == nil {
			p.Rules = r
		}
	}
	c.mu.Lock()
	if len(c.conv) > 100000 {
		c.conv = map[string]converted{}
	}
	c.conv[tid] = converted{doc: doc, p: p}
	c.mu.Unlock()
	return p, nil
}
