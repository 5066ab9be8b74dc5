package engine

import (
	"testing"

	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/rules"
)

// A hit's campaign is in its document location even when a page path set
// apart from it (dp, a Measurement Protocol client's page_path) names the
// page, as GA reads it.
func TestCampaignOfAHitWithItsOwnPath(t *testing.T) {
	r, err := rules.Compile(rules.Defaults(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, path string
		source, page    string
	}{
		{"location only", "https://shop.example/landing?utm_source=news&utm_medium=email", "", "news", "/landing"},
		{"path set apart", "https://shop.example/?utm_source=news&utm_medium=email", "/landing", "news", "/landing"},
		{"tags in the path only", "https://shop.example/", "/landing?utm_source=partner", "partner", "/landing"},
		{"location wins", "https://shop.example/?utm_source=news", "/landing?utm_source=partner", "news", "/landing"},
		{"none", "https://shop.example/a", "/b", "", "/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hit.Hit{Type: hit.TypePageview, URL: tt.url, Path: tt.path}
			if tt.path == "" {
				h.Path = tt.url[len("https://shop.example"):]
			}
			sh, reason := toSessionHit(h, r)
			if reason != "" {
				t.Fatalf("excluded: %s", reason)
			}
			if sh.Campaign.Source != tt.source || sh.Path != tt.page {
				t.Errorf("campaign source %q, page %q; want %q, %q", sh.Campaign.Source, sh.Path, tt.source, tt.page)
			}
		})
	}
}
