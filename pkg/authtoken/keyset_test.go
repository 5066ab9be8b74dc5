package authtoken

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/eventually"
)

// fakeIssuer serves a mutable JWKS and counts fetches; a fetch can be made
// to fail or to block until released.
type fakeIssuer struct {
	mu      sync.Mutex
	set     JWKS
	fail    error
	fetches atomic.Int64
	gate    chan struct{}
}

func (f *fakeIssuer) source(ctx context.Context) (JWKS, error) {
	f.fetches.Add(1)
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set, f.fail
}

func (f *fakeIssuer) addKey(t *testing.T) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := NewJWK(pub, "")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.set.Keys = append(f.set.Keys, k)
	f.mu.Unlock()
	return k.KeyID
}

func TestKeySetRefreshesOnUnknownKidAtMostOncePerInterval(t *testing.T) {
	ctx := context.Background()
	f := &fakeIssuer{}
	first := f.addKey(t)
	now := time.Unix(1_700_000_000, 0)
	ks := NewKeySet(f.source, time.Minute)
	ks.now = func() time.Time { return now }

	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Lookup(ctx, first); err != nil {
		t.Fatalf("known kid: %v", err)
	}

	// A rotation within the interval is not fetched yet...
	rotated := f.addKey(t)
	now = now.Add(30 * time.Second)
	for range 10 {
		if _, err := ks.Lookup(ctx, rotated); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("lookup within the interval: %v, want ErrUnknownKey", err)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (unknown kids within the interval must not refetch)", n)
	}
	// ...and is once the interval has passed, by the first lookup.
	now = now.Add(31 * time.Second)
	if _, err := ks.Lookup(ctx, rotated); err != nil {
		t.Fatalf("rotated kid after the interval: %v", err)
	}
	if _, err := ks.Lookup(ctx, "made-up"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("made-up kid: %v", err)
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// A failed fetch keeps the cached keys.
	f.mu.Lock()
	f.fail = errors.New("config-svc down")
	f.mu.Unlock()
	if err := ks.Refresh(ctx); err == nil {
		t.Fatal("Refresh succeeded against a failing source")
	}
	if _, err := ks.Lookup(ctx, first); err != nil {
		t.Fatalf("cached key lost after a failed refresh: %v", err)
	}
	// So does a set without usable keys.
	f.mu.Lock()
	f.fail, f.set = nil, JWKS{Keys: []JWK{{KeyType: "oct", KeyID: "x"}}}
	f.mu.Unlock()
	if err := ks.Refresh(ctx); err == nil {
		t.Fatal("Refresh accepted a set without usable keys")
	}
	if ks.Len() != 2 {
		t.Fatalf("cache has %d keys, want the 2 from before", ks.Len())
	}
}

func TestKeySetUnavailableUntilFirstFetch(t *testing.T) {
	f := &fakeIssuer{fail: errors.New("connection refused")}
	ks := NewKeySet(f.source, time.Minute)
	_, err := ks.Lookup(context.Background(), "k")
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("lookup before any successful fetch: %v, want ErrKeysUnavailable", err)
	}
	if _, err := ks.Lookup(context.Background(), "k"); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("second lookup: %v, want ErrKeysUnavailable", err)
	}
}

// TestKeySetRetriesEverySecondUntilLoaded: a gateway that started before
// config-svc was reachable must not refuse every token for a minute once
// config-svc is up.
func TestKeySetRetriesEverySecondUntilLoaded(t *testing.T) {
	f := &fakeIssuer{fail: errors.New("connection refused")}
	kid := f.addKey(t)
	now := time.Unix(1_700_000_000, 0)
	ks := NewKeySet(f.source, time.Minute)
	ks.now = func() time.Time { return now }
	if _, err := ks.Lookup(context.Background(), kid); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("first lookup: %v", err)
	}
	f.mu.Lock()
	f.fail = nil // config-svc is up
	f.mu.Unlock()
	if _, err := ks.Lookup(context.Background(), kid); err == nil {
		t.Fatal("a second lookup within the second fetched again")
	}
	now = now.Add(1100 * time.Millisecond)
	if _, err := ks.Lookup(context.Background(), kid); err != nil {
		t.Fatalf("lookup a second later: %v, want the key", err)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
}

func TestKeySetConcurrentLookupsShareOneFetch(t *testing.T) {
	f := &fakeIssuer{gate: make(chan struct{})}
	kid := f.addKey(t)
	ks := NewKeySet(f.source, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := ks.Lookup(context.Background(), kid)
			errs <- err
		})
	}
	// Release the fetch once it has started; the others wait for it.
	eventually.True(t, 10*time.Second, "a fetch started", func() bool { return f.fetches.Load() > 0 })
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 concurrent lookups, want 1", n)
	}
}
