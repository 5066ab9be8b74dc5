package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
)

// A rule history behind the property's document (config-svc failed the
// history's refetch after a rules change, and the client serves the last
// known one) does not hide the document's version: hits stamped with it,
// and hits received since it took effect, get it.
func TestRulesOfADocumentNewerThanItsHistory(t *testing.T) {
	const id = "6b1c4d52-3a3a-4e4e-9a9a-000000000010"
	t1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(24 * time.Hour)
	version := func(n, timeout int, at time.Time) configclient.RuleVersion {
		r := rules.Defaults().Normalize()
		r.SessionTimeoutMinutes = timeout // tells the versions apart
		return configclient.RuleVersion{Version: n, EffectiveAt: at, Rules: r}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/rules/versions") {
			_ = json.NewEncoder(w).Encode(configclient.RuleVersions{PropertyID: id, Versions: []configclient.RuleVersion{version(1, 30, t1)}})
			return
		}
		_ = json.NewEncoder(w).Encode(configclient.Property{PropertyID: id, TenantID: id, TrackingID: "AT-2222222222", Name: "Shop",
			TimeZone: "UTC", ProcessingShards: 1, Rules: version(2, 45, t2)})
	}))
	defer srv.Close()
	client, err := configclient.New(configclient.Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := (&ConfigProperties{Client: client}).Property(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	timeout := func(r *rules.Compiled) time.Duration {
		if r == nil {
			return 0
		}
		return r.SessionTimeout()
	}
	if got := timeout(p.RulesVersion(2)); got != 45*time.Minute {
		t.Errorf("RulesVersion(2): timeout %v, want version 2's 45m", got)
	}
	if got := timeout(p.RulesAt(t2.Add(time.Hour))); got != 45*time.Minute {
		t.Errorf("RulesAt(after version 2 took effect): timeout %v, want version 2's 45m", got)
	}
	if got := timeout(p.RulesAt(t1.Add(time.Hour))); got != 30*time.Minute {
		t.Errorf("RulesAt(before): timeout %v, want version 1's 30m", got)
	}
	if got := timeout(p.RulesVersion(1)); got != 30*time.Minute {
		t.Errorf("RulesVersion(1): timeout %v, want 30m", got)
	}
}
