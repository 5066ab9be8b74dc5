package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/rules"
)

// These tests cover the cache's own bookkeeping (what it keeps, drops and
// refetches, and in which order) against a small HTTP server that answers
// property documents as config-svc does. The client against the real
// config-svc (change feed, outages, Consul) is tested in
// config-svc/internal/httpapi/pipeline_test.go.

// docServer answers GET /internal/v1/properties/{id} and
// .../by-tracking-id/{tid} from its documents, and records every fetch.
type docServer struct {
	*httptest.Server
	mu      sync.Mutex
	docs    map[string]Property // by property ID
	fail    map[string]bool     // property IDs answered 500
	fetched []string            // property IDs or tracking IDs, in order
}

func newDocServer(t *testing.T, n int) *docServer {
	t.Helper()
	s := &docServer{docs: map[string]Property{}, fail: map[string]bool{}}
	for i := range n {
		p := testDoc(i)
		s.docs[p.PropertyID] = p
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func testDoc(i int) Property {
	return Property{
		PropertyID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), TenantID: "00000000-0000-4000-8000-000000000000",
		TrackingID: testTID(i), Name: "Shop", TimeZone: "Europe/Berlin", ProcessingShards: 1,
		Rules: RuleVersion{Version: 1, EffectiveAt: time.Unix(0, 0).UTC(), Rules: rules.Defaults().Normalize()},
	}
}

// testTID returns the i-th of a series of valid tracking IDs.
func testTID(i int) string {
	b := []byte(TrackingIDPrefix + strings.Repeat("2", TrackingIDLength))
	for j := len(b) - 1; i > 0; j-- {
		b[j] = TrackingIDAlphabet[i%len(TrackingIDAlphabet)]
		i /= len(TrackingIDAlphabet)
	}
	return string(b)
}

func (s *docServer) serve(w http.ResponseWriter, r *http.Request) {
	if id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/internal/v1/properties/"), "/rules/versions"); ok {
		s.mu.Lock()
		doc, found := s.docs[id]
		failing := s.fail[id]
		s.fetched = append(s.fetched, "versions:"+id)
		s.mu.Unlock()
		if failing {
			http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
			return
		}
		if !found {
			httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+id)
			return
		}
		_ = json.NewEncoder(w).Encode(RuleVersions{PropertyID: id, Versions: []RuleVersion{doc.Rules}})
		return
	}
	key, byTID := strings.CutPrefix(r.URL.Path, "/internal/v1/properties/by-tracking-id/")
	if !byTID {
		key = strings.TrimPrefix(r.URL.Path, "/internal/v1/properties/")
	}
	s.mu.Lock()
	s.fetched = append(s.fetched, key)
	var doc *Property
	for _, p := range s.docs {
		if byTID && p.TrackingID == key || !byTID && p.PropertyID == key {
			doc = &p
		}
	}
	failing := doc != nil && s.fail[doc.PropertyID]
	s.mu.Unlock()
	if failing {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		return
	}
	if doc == nil {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+key)
		return
	}
	_ = json.NewEncoder(w).Encode(doc)
}

// count returns how often key was fetched.
func (s *docServer) count(key string) int {
	n := 0
	for _, f := range s.fetches() {
		if f == key {
			n++
		}
	}
	return n
}

// fetches returns the fetches so far.
func (s *docServer) fetches() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fetched...)
}

func testClient(t *testing.T, srv *docServer, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: srv.URL, Caller: "test", IdentitySecret: []byte("a test identity secret")}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIdleDocumentsAreDropped(t *testing.T) {
	srv := newDocServer(t, 2)
	c := testClient(t, srv, nil)
	ctx := context.Background()
	used, idle := testDoc(0), testDoc(1)
	for _, p := range []Property{used, idle} {
		if _, err := c.ByTrackingID(ctx, p.TrackingID); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock() // as RuleHistory caches one
	c.versions[idle.PropertyID] = &cachedHistory{used: c.epoch}
	c.mu.Unlock()

	// Sweeps come every IdleTTL/idleEpochs: a document survives idleEpochs
	// of them, so it is dropped between IdleTTL and 1.25 × IdleTTL idle.
	for i := range idleEpochs + 1 {
		c.mu.Lock()
		_, cached := c.byID[idle.PropertyID]
		c.mu.Unlock()
		if !cached {
			t.Fatalf("dropped after %d sweeps, want %d", i, idleEpochs+1)
		}
		if _, err := c.ByID(ctx, used.PropertyID); err != nil {
			t.Fatal(err)
		}
		c.dropIdle()
	}
	c.mu.Lock()
	_, usedCached := c.byID[used.PropertyID]
	_, idleCached := c.byID[idle.PropertyID]
	_, idleByTID := c.byTID[idle.TrackingID]
	_, idleHistory := c.versions[idle.PropertyID]
	c.mu.Unlock()
	if !usedCached || idleCached || idleByTID || idleHistory {
		t.Fatalf("after the sweeps: used cached %v, idle cached %v (by tracking ID %v, history %v); want only the used one", usedCached, idleCached, idleByTID, idleHistory)
	}
	before := len(srv.fetches())
	if doc, err := c.ByTrackingID(ctx, idle.TrackingID); err != nil || doc.PropertyID != idle.PropertyID {
		t.Fatalf("a dropped property looked up again: %v, %v", doc, err)
	}
	if len(srv.fetches()) != before+1 {
		t.Fatal("a dropped property was answered without a fetch")
	}
}

func TestRefetchIsNotALookup(t *testing.T) {
	srv := newDocServer(t, 1)
	c := testClient(t, srv, nil)
	p := testDoc(0)
	if _, err := c.ByID(context.Background(), p.PropertyID); err != nil {
		t.Fatal(err)
	}
	for range idleEpochs + 1 {
		// The resync refetches the document between sweeps; only lookups
		// keep it.
		doc, err := c.fetchDoc(context.Background(), "/internal/v1/properties/"+p.PropertyID)
		if err != nil {
			t.Fatal(err)
		}
		c.store(doc, c.beginFetch())
		c.dropIdle()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, cached := c.byID[p.PropertyID]; cached {
		t.Fatal("a document only the resync fetched is never dropped")
	}
}

func TestUnknownIDsAreBounded(t *testing.T) {
	srv := newDocServer(t, 0)
	c := testClient(t, srv, func(cfg *Config) { cfg.MaxNegative = 2; cfg.NegativeTTL = time.Hour })
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.ByTrackingID(ctx, testTID(i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown tracking ID %d: %v", i, err)
		}
	}
	for i := range 3 {
		if _, err := c.ByTrackingID(ctx, testTID(i)); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	// The first two are remembered; the third, past the bound, is asked for
	// each time.
	if got, want := len(srv.fetches()), 4; got != want {
		t.Fatalf("%d fetches for 3 unknown tracking IDs looked up twice with room for 2, want %d", got, want)
	}

	c.mu.Lock()
	c.negTID[testTID(99)] = time.Now().Add(-time.Second)
	c.mu.Unlock()
	c.dropExpiredUnknown(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.negTID[testTID(99)]; ok || len(c.negTID) != 2 {
		t.Fatalf("after a sweep: %v; want the expired entry gone and the others kept", c.negTID)
	}
}

func TestChangesAreRememberedOnlyWhileAFetchIsInFlight(t *testing.T) {
	srv := newDocServer(t, 1)
	c := testClient(t, srv, nil)
	p := testDoc(0)
	c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeRules, PropertyID: p.PropertyID}}})
	gen := c.beginFetch()
	c.apply(Changes{Seq: 2, Changes: []Change{{Seq: 2, Kind: ChangeRules, PropertyID: p.PropertyID}}})
	doc, err := c.fetchDoc(context.Background(), "/internal/v1/properties/"+p.PropertyID)
	if err != nil {
		t.Fatal(err)
	}
	c.store(doc, gen)
	c.mu.Lock()
	raced := c.pending[p.PropertyID]
	c.mu.Unlock()
	if !raced {
		t.Fatal("a document fetched across a change to it is not refetched")
	}
	c.endFetch(gen)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.changedAt) != 0 {
		t.Fatalf("changedAt holds %d properties with no fetch in flight", len(c.changedAt))
	}
}

// TestResyncIsPacedAndChangesGoFirst: the resync spreads its pass over the
// cache at its rate, and a change from the feed is refetched before the
// rest of the pass.
func TestResyncIsPacedAndChangesGoFirst(t *testing.T) {
	const n = 10
	srv := newDocServer(t, n)
	c := testClient(t, srv, func(cfg *Config) { cfg.ResyncInterval = time.Millisecond; cfg.ResyncRate = 20 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		if _, err := c.ByID(ctx, testDoc(i).PropertyID); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); c.refresher(ctx) }()
	defer func() { cancel(); <-done }()

	waitFetches := func(k int) []string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if f := srv.fetches(); len(f) >= k {
				return f
			}
		}
		t.Fatalf("fewer than %d fetches after 10 s", k)
		return nil
	}
	waitFetches(n + 3) // the lookups, then three of the pass
	changed := testDoc(7).PropertyID
	// The server records no fetch while the change is applied: the
	// fetches it holds then are the ones before the change, however late
	// this goroutine runs. Counted from the fetches waitFetches saw, a
	// pause of the test longer than the pass's gap (50 ms, as on a busy
	// machine under -race) let the pass fetch on, and failed it.
	srv.mu.Lock()
	before := len(srv.fetched)
	c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeRules, PropertyID: changed}}})
	srv.mu.Unlock()
	f := waitFetches(before + 2)
	if f[before] != changed && f[before+1] != changed {
		t.Fatalf("fetches after the change: %v; want the changed property next (one of the pass may be in flight)", f[before:])
	}
	waitFetches(n + n + 1) // the whole pass and the change
	// A pass of n documents at 20 a second takes at least (n-1)/20 s.
	if took, least := time.Since(start), time.Duration(n-1)*time.Second/20; took < least {
		t.Fatalf("a pass over %d documents took %s; at 20 per second it takes at least %s", n, took, least)
	}
}

func TestZonesAreShared(t *testing.T) {
	a, b := testDoc(0), testDoc(1)
	for _, p := range []*Property{&a, &b} {
		if err := p.Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	if a.Location() != b.Location() || a.Location().String() != "Europe/Berlin" {
		t.Fatalf("two properties in Europe/Berlin: %p and %p (%s)", a.Location(), b.Location(), a.Location())
	}
	c := testDoc(2)
	c.TimeZone = "Not/AZone"
	if err := c.Prepare(); err != nil || c.Location() != time.UTC {
		t.Fatalf("an unknown zone: %v, %v; want UTC", c.Location(), err)
	}
}

// An unknown ID already remembered is remembered again when its time is
// up, even with no room for another.
func TestUnknownIDsAreRenewedWhenFull(t *testing.T) {
	srv := newDocServer(t, 0)
	c := testClient(t, srv, func(cfg *Config) { cfg.MaxNegative = 1; cfg.NegativeTTL = 20 * time.Millisecond })
	ctx := context.Background()
	tid := testTID(1)
	for i := range 3 {
		if i == 1 {
			time.Sleep(30 * time.Millisecond) // past NegativeTTL: asked for again
		}
		if _, err := c.ByTrackingID(ctx, tid); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if got := srv.count(tid); got != 2 {
		t.Fatalf("%d fetches of an unknown tracking ID looked up, then twice once its time was up; want 2 (the last answered from the cache)", got)
	}
}

// A changed property config-svc keeps failing to serve is tried again
// with its own backoff, and holds up neither other changes nor the resync.
func TestAFailingRefetchHoldsUpNothing(t *testing.T) {
	const n = 5
	srv := newDocServer(t, n)
	c := testClient(t, srv, func(cfg *Config) { cfg.ResyncInterval = 50 * time.Millisecond; cfg.ResyncRate = 1000 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		if _, err := c.ByID(ctx, testDoc(i).PropertyID); err != nil {
			t.Fatal(err)
		}
	}
	broken, other := testDoc(0).PropertyID, testDoc(1).PropertyID
	srv.mu.Lock()
	srv.fail[broken] = true
	srv.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); c.refresher(ctx) }()
	defer func() { cancel(); <-done }()
	c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeRules, PropertyID: broken}}})
	time.Sleep(300 * time.Millisecond)
	c.apply(Changes{Seq: 2, Changes: []Change{{Seq: 2, Kind: ChangeRules, PropertyID: other}}})
	start := srv.count(other)
	eventually.True(t, 5*time.Second, "a change not waiting behind a property that keeps failing", func() bool {
		return srv.count(other) != start
	})
	time.Sleep(time.Second)
	for i := 2; i < n; i++ {
		if got := srv.count(testDoc(i).PropertyID); got < 3 {
			t.Errorf("property %d refetched %d times in a second of 50 ms resync passes, with another failing", i, got)
		}
	}
	// Backoff from 100 ms doubling: about five tries in 1.3 s, not one
	// per pass.
	if got := srv.count(broken); got < 2 || got > 8 {
		t.Errorf("the failing property was tried %d times in 1.3 s, want a few (its own backoff)", got)
	}
}

// A rules version the feed did not announce, found by the resync, is not
// hidden by the cached history: the history is fetched again.
func TestResyncRefreshesTheRuleHistory(t *testing.T) {
	srv := newDocServer(t, 1)
	c := testClient(t, srv, nil)
	doc := testDoc(0)
	h, err := NewHistory([]RuleVersion{doc.Rules})
	if err != nil {
		t.Fatal(err)
	}
	c.versions[doc.PropertyID] = &cachedHistory{history: h}
	same := doc
	if err := same.Prepare(); err != nil {
		t.Fatal(err)
	}
	c.store(&same, c.beginFetch())
	if c.versions[doc.PropertyID] == nil {
		t.Fatal("a refetch of the same rules version dropped the history")
	}
	next := testDoc(0)
	next.Rules.Version = 2
	if err := next.Prepare(); err != nil {
		t.Fatal(err)
	}
	c.store(&next, c.beginFetch())
	if h := c.versions[doc.PropertyID]; h == nil || !h.stale {
		t.Fatal("a document at rules version 2 left the history ending at version 1 current")
	}
}

// A history whose property changed is fetched again at its next use; while
// config-svc cannot answer, the last known one is served (as documents
// are), retried on a backoff, not at every lookup: a processor must not
// hold up its partition for want of a refetch.
func TestLastKnownHistoryServedWhileConfigSvcFails(t *testing.T) {
	srv := newDocServer(t, 1)
	c := testClient(t, srv, nil)
	ctx := context.Background()
	pid := testDoc(0).PropertyID
	first, err := c.RuleHistory(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	c.apply(Changes{Seq: 1, Changes: []Change{{Seq: 1, Kind: ChangeRules, PropertyID: pid, TrackingID: testTID(0)}}})
	srv.mu.Lock()
	srv.fail[pid] = true
	srv.mu.Unlock()
	for range 3 {
		if h, err := c.RuleHistory(ctx, pid); err != nil || h != first {
			t.Fatalf("while config-svc fails: %v, %v; want the last known history", h, err)
		}
	}
	if n := srv.count("versions:" + pid); n != 2 {
		t.Fatalf("%d fetches of the history, want 2 (the first, one refetch; then the backoff)", n)
	}
	srv.mu.Lock()
	srv.fail[pid] = false
	srv.mu.Unlock()
	c.mu.Lock()
	c.versions[pid].retry.at = time.Time{} // the backoff has passed
	c.mu.Unlock()
	if h, err := c.RuleHistory(ctx, pid); err != nil || h == first {
		t.Fatalf("after config-svc recovered: %v, %v; want a fresh history", h, err)
	}
	if h := c.versions[pid]; h == nil || h.stale {
		t.Fatal("the fresh history is not cached as current")
	}
}

// A document whose refetch fails in the resync's pass (here the one after a
// re-anchoring, when copies are stale) is tried again on its own backoff,
// not only at the next pass.
func TestAFailedPassRefetchIsRetried(t *testing.T) {
	srv := newDocServer(t, 3)
	c := testClient(t, srv, func(cfg *Config) { cfg.ResyncInterval = time.Hour; cfg.ResyncRate = 100 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		if _, err := c.ByID(ctx, testDoc(i).PropertyID); err != nil {
			t.Fatal(err)
		}
	}
	flaky := testDoc(1).PropertyID
	srv.mu.Lock()
	srv.fail[flaky] = true
	srv.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); c.refresher(ctx) }()
	defer func() { cancel(); <-done }()
	c.anchor(1)
	eventually.True(t, 5*time.Second, "the failing refetch", func() bool { return srv.count(flaky) == 2 })
	srv.mu.Lock()
	srv.fail[flaky] = false
	srv.mu.Unlock()
	eventually.True(t, 5*time.Second, "the retry of a failed pass refetch (the pass repeats in an hour)", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.byID[flaky].stale
	})
}

// A rule history fetched while the resync stored a document at a newer
// rules version is not cached: it may miss that version.
func TestAnOlderHistoryIsNotCached(t *testing.T) {
	srv := newDocServer(t, 1)
	c := testClient(t, srv, nil)
	doc := testDoc(0)
	newer := testDoc(0)
	newer.Rules.Version = 2
	if err := newer.Prepare(); err != nil {
		t.Fatal(err)
	}
	c.store(&newer, c.beginFetch())
	h, err := c.RuleHistory(context.Background(), doc.PropertyID)
	if err != nil || h.Newest() != 1 {
		t.Fatalf("history %v, %v; the test server has version 1", h, err)
	}
	if c.versions[doc.PropertyID] != nil {
		t.Fatal("a history ending at version 1 was cached beside a document at version 2")
	}
}

// The wait between retries doubles from minBackoff up to the caller's
// limit: maxBackoff for a rule history, maxRetryBackoff for a refetch.
func TestRetryBacksOffToItsLimit(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		limit time.Duration
		want  []time.Duration
	}{
		{maxBackoff, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}},
		{maxRetryBackoff, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 25600 * ms, 51200 * ms, time.Minute, time.Minute}},
	} {
		now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
		var r retry
		for i, want := range tc.want {
			now = now.Add(time.Second)
			r = r.next(now, tc.limit)
			if r.backoff != want || !r.at.Equal(now.Add(want)) {
				t.Errorf("limit %v, failure %d: retry %+v, want a wait of %v from %v", tc.limit, i+1, r, want, now)
			}
		}
	}
}

// A resync pass whose refetches fail slows down: each next refetch waits
// the pass's gap and a growing backoff, never less than the gap (it was
// due at the failure plus a backoff alone, so a pass with a gap over
// 100 ms ran faster while config-svc was down).
func TestFailingResyncPassWaitsItsGapAndMore(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	p := resyncPass{gap: 2 * time.Second}
	var last time.Duration
	for i := range 8 {
		p.failed(now)
		wait := p.nextAt.Sub(now)
		if wait <= p.gap || wait < last || wait > p.gap+maxBackoff {
			t.Fatalf("failure %d: next refetch in %v (previous %v), want more than the gap %v, growing, at most gap+%v", i+1, wait, last, p.gap, maxBackoff)
		}
		last = wait
	}
	if last != p.gap+maxBackoff {
		t.Errorf("after 8 failures the wait is %v, want gap+%v", last, maxBackoff)
	}
}

// TestHistoryHasItsOwnTimeLimit: a property's rule history is every
// version kept in one answer, tens of megabytes for a large document an
// hourly job rewrites: bounded by RequestTimeout (5 s), its fetch failed at
// every try, and every processor without a cached copy held up its
// partition. It has HistoryTimeout (30 s) of its own, in RuleHistory and
// in Fresh, which reprocessing reads each property through (one
// RequestTimeout over both its fetches failed every job of such a
// property).
func TestHistoryHasItsOwnTimeLimit(t *testing.T) {
	srv := newDocServer(t, 1)
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/rules/versions") {
			time.Sleep(300 * time.Millisecond) // a long answer
		}
		inner.ServeHTTP(w, r)
	})
	c := testClient(t, srv, func(cfg *Config) { cfg.RequestTimeout, cfg.HistoryTimeout = 100*time.Millisecond, 5*time.Second })
	pid := testDoc(0).PropertyID
	h, err := c.RuleHistory(context.Background(), pid)
	if err != nil || h.Newest() != 1 {
		t.Fatalf("a history answered in 300 ms, with RequestTimeout 100 ms and HistoryTimeout 5 s: %v, %v", h, err)
	}
	doc, h, err := c.Fresh(context.Background(), pid)
	if err != nil || doc == nil || h.Newest() != 1 {
		t.Fatalf("Fresh, a history answered in 300 ms, RequestTimeout 100 ms, HistoryTimeout 5 s: %v, %v, %v", doc, h, err)
	}
}

// TestChangedAtIsBoundedUnderOverlappingFetches: a change is remembered
// only while a fetch begun before it is in flight. It was forgotten only
// once no fetch at all was, which on a busy instance (each fetch begun
// before the one before it ends) was never: the map held every property
// changed since the start.
func TestChangedAtIsBoundedUnderOverlappingFetches(t *testing.T) {
	srv := newDocServer(t, 0)
	c := testClient(t, srv, nil)
	prev := c.beginFetch()
	for i := range 10_000 {
		next := c.beginFetch() // begins before the previous one ends
		c.endFetch(prev)
		prev = next
		p := testDoc(i)
		c.apply(Changes{Seq: int64(i + 1), Changes: []Change{{Seq: int64(i + 1), Kind: ChangeRules, PropertyID: p.PropertyID, TrackingID: p.TrackingID}}})
	}
	c.mu.Lock()
	n := len(c.changedAt)
	c.mu.Unlock()
	if n > 100 {
		t.Fatalf("changedAt holds %d keys, with one fetch in flight at a time (each begun after the changes it could race were applied)", n)
	}
}
