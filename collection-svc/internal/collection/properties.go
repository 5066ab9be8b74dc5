package collection

import (
	"context"
	"errors"

	"github.com/acme/analytics/collection-svc/internal/collect"
	"github.com/acme/analytics/pkg/configclient"
)

// propertySource is the part of configclient.Client collection uses.
type propertySource interface {
	ByTrackingID(ctx context.Context, tid string) (*configclient.Property, error)
}

// configProperties adapts configclient documents to collect.Property. The
// client returns the same shared document until the property changes, so
// the conversion is made once per document and kept on it (Derived), for
// as long as the client keeps the document.
type configProperties struct {
	src propertySource
}

// Properties returns the lookups of collect over a configclient client.
func Properties(src propertySource) collect.Properties {
	return configProperties{src: src}
}

func (c configProperties) ByTrackingID(ctx context.Context, tid string) (*collect.Property, error) {
	doc, err := c.src.ByTrackingID(ctx, tid)
	if errors.Is(err, configclient.ErrNotFound) {
		return nil, collect.ErrUnknownTrackingID
	}
	if err != nil {
		return nil, err
	}
	return doc.Derived(convert).(*collect.Property), nil
}

func convert(doc *configclient.Property) any {
	p := &collect.Property{
		ID:           doc.PropertyID,
		TenantID:     doc.TenantID,
		TrackingID:   doc.TrackingID,
		Cookieless:   doc.Cookieless,
		Location:     doc.Location(),
		Currency:     doc.Currency,
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
	return p
}
