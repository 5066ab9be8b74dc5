package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
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

// A rules change the change feed has not announced yet (processing just
// started and is not following it, or it lags) is invisible to cached
// lookups; a reprocessing job must apply it all the same (the rules in
// effect when it was created), so its lookups are Fresh: they ask
// config-svc every time, and fail while it cannot answer rather than
// serve the last known copy.
func TestFreshPropertiesSeeARulesChangeNotYetAnnounced(t *testing.T) {
	const id = "6b1c4d52-3a3a-4e4e-9a9a-000000000011"
	t1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	version := func(n, timeout int, at time.Time) configclient.RuleVersion {
		r := rules.Defaults().Normalize()
		r.SessionTimeoutMinutes = timeout // tells the versions apart
		return configclient.RuleVersion{Version: n, EffectiveAt: at, Rules: r}
	}
	var mu sync.Mutex
	versions, down := []configclient.RuleVersion{version(1, 30, t1)}, false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		vs, failing := slices.Clone(versions), down
		mu.Unlock()
		switch {
		case failing:
			http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		case strings.HasSuffix(r.URL.Path, "/rules/versions"):
			_ = json.NewEncoder(w).Encode(configclient.RuleVersions{PropertyID: id, Versions: vs})
		default:
			_ = json.NewEncoder(w).Encode(configclient.Property{PropertyID: id, TenantID: id, TrackingID: "AT-2222222222", Name: "Shop",
				TimeZone: "UTC", ProcessingShards: 1, Rules: vs[len(vs)-1]})
		}
	}))
	defer srv.Close()
	client, err := configclient.New(configclient.Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cached, fresh := &ConfigProperties{Client: client}, &ConfigProperties{Client: client, Fresh: true}
	timeoutNow := func(props *ConfigProperties) time.Duration {
		t.Helper()
		p, err := props.Property(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return p.RulesAt(time.Now()).SessionTimeout()
	}
	if got := timeoutNow(cached); got != 30*time.Minute {
		t.Fatalf("before the change: timeout %v, want version 1's 30m", got)
	}
	mu.Lock()
	versions = append(versions, version(2, 45, time.Now().Add(-time.Second)))
	mu.Unlock()
	if got := timeoutNow(cached); got != 30*time.Minute {
		t.Fatalf("a cached lookup before the feed announced the change: timeout %v, want the cached 30m (this test is about the cache)", got)
	}
	if got := timeoutNow(fresh); got != 45*time.Minute {
		t.Errorf("a fresh lookup after the change: timeout %v, want version 2's 45m", got)
	}
	mu.Lock()
	down = true
	mu.Unlock()
	if p, err := fresh.Property(ctx, id); err == nil {
		t.Errorf("a fresh lookup while config-svc fails answered %v; want an error, not the last known copy", p)
	}
}
