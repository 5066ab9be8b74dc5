package authtoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinRefreshInterval is how often, at most, a KeySet refetches its
// JWKS because a token named a kid it does not know.
const DefaultMinRefreshInterval = time.Minute

// fetchTimeout bounds one JWKS fetch.
const fetchTimeout = 10 * time.Second

var (
	// ErrUnknownKey is returned (wrapped) for a token whose kid is not in
	// the issuer's key set, even after a refresh.
	ErrUnknownKey = errors.New("unknown key ID")
	// ErrKeysUnavailable is returned (wrapped) when the key set has never
	// been fetched successfully, so no token can be verified yet: the
	// caller should answer "try again later" rather than "bad token".
	ErrKeysUnavailable = errors.New("issuer keys not available yet")

	errRefreshTooSoon = errors.New("key set refreshed too recently")
)

// Source returns an issuer's current JWKS.
type Source func(ctx context.Context) (JWKS, error)

// URLSource returns a Source that fetches the JWKS at url with client.
func URLSource(client *http.Client, url string) Source {
	return func(ctx context.Context) (JWKS, error) { return FetchJWKS(ctx, client, url) }
}

// KeySet caches the verification keys of one issuer by kid. It is safe for
// concurrent use; lookups of known keys take no lock.
type KeySet struct {
	source     Source
	minRefresh time.Duration
	now        func() time.Time

	keys atomic.Pointer[map[string]Key]

	mu          sync.Mutex
	lastAttempt time.Time
	inflight    chan struct{} // closed when the running fetch ends
	lastErr     error
}

// NewKeySet returns an empty key set filled from src. An unknown kid
// triggers at most one fetch per minRefresh (DefaultMinRefreshInterval when
// zero or negative).
func NewKeySet(src Source, minRefresh time.Duration) *KeySet {
	if minRefresh <= 0 {
		minRefresh = DefaultMinRefreshInterval
	}
	return &KeySet{source: src, minRefresh: minRefresh, now: time.Now}
}

// Refresh fetches the JWKS now and replaces the cached keys with its usable
// ones (keys dropped from the set stop verifying tokens). On error, or when
// the set holds no usable key, the cached keys stay. A refresh already
// running is waited for instead of starting another.
func (ks *KeySet) Refresh(ctx context.Context) error { return ks.refresh(ctx, true) }

// Loaded reports whether a fetch has ever succeeded.
func (ks *KeySet) Loaded() bool { return ks.keys.Load() != nil }

// Len returns the number of cached keys.
func (ks *KeySet) Len() int {
	if m := ks.keys.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Lookup returns the key named kid. A kid not in the cache triggers a
// refresh unless one was attempted within the minimum refresh interval; if
// the kid is still unknown the error wraps ErrUnknownKey, or
// ErrKeysUnavailable when no fetch has ever succeeded or the last one
// failed: the kid may be a key the issuer published since (a rotation
// while its JWKS cannot be fetched), so the token cannot be judged.
func (ks *KeySet) Lookup(ctx context.Context, kid string) (Key, error) {
	if k, ok := ks.cached(kid); ok {
		return k, nil
	}
	err := ks.refresh(ctx, false)
	if k, ok := ks.cached(kid); ok {
		return k, nil
	}
	if err == nil || errors.Is(err, errRefreshTooSoon) {
		err = ks.lastError()
	}
	if err == nil && !ks.Loaded() {
		err = errors.New("no fetch has completed yet")
	}
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	return Key{}, ErrUnknownKey
}

func (ks *KeySet) cached(kid string) (Key, bool) {
	m := ks.keys.Load()
	if m == nil {
		return Key{}, false
	}
	k, ok := (*m)[kid]
	return k, ok
}

// lastError returns the outcome of the last completed fetch (nil when it
// succeeded or none has completed).
func (ks *KeySet) lastError() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.lastErr
}

func (ks *KeySet) refresh(ctx context.Context, force bool) error {
	ks.mu.Lock()
	if ch := ks.inflight; ch != nil {
		ks.mu.Unlock()
		select {
		case <-ch:
			return ks.lastError()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := ks.now()
	// Until a first fetch succeeds (a gateway starting before config-svc
	// is reachable), a request may retry it every second: there is no
	// cache to protect the issuer for, and every token is refused.
	interval := ks.minRefresh
	if ks.keys.Load() == nil {
		interval = min(interval, time.Second)
	}
	if !force && !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < interval {
		ks.mu.Unlock()
		return errRefreshTooSoon
	}
	ks.lastAttempt = now
	ch := make(chan struct{})
	ks.inflight = ch
	ks.mu.Unlock()

	// The fetch serves every caller waiting for it, so it does not end with
	// the context of the request that happened to start it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	set, err := ks.source(fctx)
	cancel()
	if err == nil {
		var keys map[string]Key
		keys, err = usableKeys(set)
		if err == nil {
			ks.keys.Store(&keys)
		}
	}

	ks.mu.Lock()
	ks.lastErr = err
	ks.inflight = nil
	close(ch)
	ks.mu.Unlock()
	return err
}

// usableKeys decodes the keys of s that can verify tokens, skipping others
// (an identity provider may publish encryption keys or other curves beside
// its signing keys). A set without a single usable key is an error, so that
// a broken issuer cannot wipe the cache.
func usableKeys(s JWKS) (map[string]Key, error) {
	keys := make(map[string]Key, len(s.Keys))
	var skipped []error
	for _, jwk := range s.Keys {
		if jwk.KeyID == "" {
			skipped = append(skipped, errors.New("key without kid"))
			continue
		}
		if _, dup := keys[jwk.KeyID]; dup {
			continue
		}
		k, err := jwk.Key()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("kid %q: %w", jwk.KeyID, err))
			continue
		}
		keys[k.ID] = k
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks has no usable signing key (%d keys: %w)", len(s.Keys), errors.Join(skipped...))
	}
	return keys, nil
}
