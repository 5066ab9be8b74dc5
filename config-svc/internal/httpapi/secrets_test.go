package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/gocql/gocql"
)

// TestRevokingTwiceChangesNothing: a second revocation of a secret answers
// as the first did (204) and leaves the secret and the change feed as the
// first left them; revoking a secret that does not exist answers 404 and
// writes nothing.
func TestRevokingTwiceChangesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Revoke")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	secrets := "/v1/properties/" + p.ID + "/api-secrets"
	var sec NewSecretJSON
	e.must(http.StatusCreated, a.as(), "POST", secrets, map[string]string{"name": "old"}).decode(t, &sec)
	list := func() []SecretJSON {
		t.Helper()
		var l struct {
			APISecrets []SecretJSON `json:"api_secrets"`
		}
		e.must(http.StatusOK, a.as(), "GET", secrets, nil).decode(t, &l)
		return l.APISecrets
	}

	head := e.feedHead()
	e.must(http.StatusNoContent, a.as(), "DELETE", secrets+"/"+sec.ID, nil)
	if got := e.feedHead(); got != head+1 {
		t.Fatalf("the revocation appended %d changes to the feed; want 1", got-head)
	}
	first := list()
	if len(first) != 1 || first[0].Status != "revoked" || first[0].RevokedAt == nil {
		t.Fatalf("after revoking: %+v", first)
	}
	// A later revocation would write a later time (stored in milliseconds).
	eventually.True(t, time.Second, "the clock to pass the revocation", func() bool { return time.Since(*first[0].RevokedAt) > 10*time.Millisecond })

	head = e.feedHead()
	e.must(http.StatusNoContent, a.as(), "DELETE", secrets+"/"+sec.ID, nil)
	again := list()
	if len(again) != 1 || again[0].Status != "revoked" || again[0].RevokedAt == nil || !again[0].RevokedAt.Equal(*first[0].RevokedAt) {
		t.Fatalf("after revoking again: %+v; want it as the first revocation left it, %+v", again, first)
	}
	if got := e.feedHead(); got != head {
		t.Fatalf("revoking a revoked secret appended %d changes to the feed", got-head)
	}

	e.must(http.StatusNotFound, a.as(), "DELETE", secrets+"/"+gocql.MustRandomUUID().String(), nil)
	if got := list(); len(got) != 1 {
		t.Fatalf("revoking an unknown secret wrote one: %+v", got)
	}
	if got := e.feedHead(); got != head {
		t.Fatalf("revoking an unknown secret appended %d changes to the feed", got-head)
	}
}

// TestRevokedSecretsDoNotPileUp: every read of a property's document (each
// pipeline fetch) and every creation read all its secrets, revoked ones
// too, and a script making and revoking secrets in a loop grew them
// without bound. A revoked secret is listed for 30 days, then deleted when
// the next one is made; at most 100 are made in that time.
func TestRevokedSecretsDoNotPileUp(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := newEnv(t, func(o *Options) { o.Now = clock })
	a := e.signup("Rotate")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	secrets := "/v1/properties/" + p.ID + "/api-secrets"
	count := func() int {
		t.Helper()
		var l struct {
			APISecrets []SecretJSON `json:"api_secrets"`
		}
		e.must(http.StatusOK, a.as(), "GET", secrets, nil).decode(t, &l)
		return len(l.APISecrets)
	}
	for i := range maxRecentSecrets {
		var sec NewSecretJSON
		e.must(http.StatusCreated, a.as(), "POST", secrets, map[string]string{"name": fmt.Sprint("s", i)}).decode(t, &sec)
		e.must(http.StatusNoContent, a.as(), "DELETE", secrets+"/"+sec.ID, nil)
	}
	r := e.do(a.as(), "POST", secrets, map[string]string{"name": "one more"})
	if r.code != http.StatusConflict || !strings.Contains(string(r.body), "100 API secrets in the last 30 days") {
		t.Fatalf("secret %d within 30 days: %d %s; want 409 saying why", maxRecentSecrets+1, r.code, r.body)
	}
	if n := count(); n != maxRecentSecrets {
		t.Fatalf("%d secrets listed, want the %d revoked", n, maxRecentSecrets)
	}
	mu.Lock()
	now = now.Add(revokedSecretsKept + time.Hour)
	mu.Unlock()
	e.must(http.StatusCreated, a.as(), "POST", secrets, map[string]string{"name": "a month later"})
	if n := count(); n != 1 {
		t.Fatalf("%d secrets listed a month later, want the new one alone (the revoked deleted)", n)
	}
}

// TestActiveSecretLimitUnderConcurrency: creations at the same moment
// keep the property within its 20 active secrets. Each checked the limit
// by listing the secrets before writing its own, so all of them passed
// it: 16 at once from 18 left 30 active.
func TestActiveSecretLimitUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Secrets Race")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	path := "/v1/properties/" + p.ID + "/api-secrets"
	const before = maxActiveSecrets - 2
	for i := range before {
		e.must(http.StatusCreated, a.as(), "POST", path, map[string]string{"name": fmt.Sprintf("s%d", i)})
	}
	const n = 16
	created, codes := atOnce(t, n, func(i int) int {
		return e.do(a.as(), "POST", path, map[string]string{"name": fmt.Sprintf("race%d", i)}).code
	})
	var l struct {
		APISecrets []SecretJSON `json:"api_secrets"`
	}
	e.must(http.StatusOK, a.as(), "GET", path, nil).decode(t, &l)
	active := 0
	for _, s := range l.APISecrets {
		if s.Status == "active" {
			active++
		}
	}
	t.Logf("%d of %d created; %d active", created, n, active)
	if active > maxActiveSecrets || active != before+created {
		t.Errorf("%d active secrets after %d concurrent creations answered %v; want at most %d, and %d before plus those answered 201",
			active, n, codes, maxActiveSecrets, before)
	}
	// The property can still make secrets up to its limit.
	for range maxActiveSecrets - active {
		e.must(http.StatusCreated, a.as(), "POST", path, map[string]string{"name": "after"})
	}
	e.must(http.StatusConflict, a.as(), "POST", path, map[string]string{"name": "one too many"})
}
