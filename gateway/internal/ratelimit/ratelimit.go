// Package ratelimit is a set of token buckets keyed by a string (a tracking
// ID, a tenant ID, a client IP), with bounded memory.
//
// Each key gets a bucket of burst tokens refilled at rate tokens per second;
// a request takes one token or is refused with the time until the next one.
// A bucket that has refilled completely is the same as a new one, so idle
// keys are dropped by Sweep (run periodically by Run) without changing any
// outcome. The number of buckets is capped: when the cap is reached and no
// bucket can be dropped, new keys share one overflow bucket per shard, so a
// flood of distinct keys cannot exhaust memory and is itself limited.
package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

const shards = 64

// Limiter is a keyed set of token buckets. It is safe for concurrent use.
// The zero value is not usable; call New.
type Limiter struct {
	rate     float64 // tokens per second; <= 0 disables limiting
	burst    float64
	perShard int
	seed     maphash.Seed
	now      func() time.Time
	shards   [shards]shard
}

type shard struct {
	mu       sync.Mutex
	buckets  map[string]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter of rate tokens per second with bursts of burst,
// tracking at most maxKeys keys. A rate of zero or less allows everything.
func New(rate float64, burst, maxKeys int) *Limiter {
	l := &Limiter{
		rate:     rate,
		burst:    math.Max(1, float64(burst)),
		perShard: max(1, maxKeys/shards),
		seed:     maphash.MakeSeed(),
		now:      time.Now,
	}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
		l.shards[i].overflow = bucket{tokens: l.burst}
	}
	return l
}

// Enabled reports whether the limiter limits anything.
func (l *Limiter) Enabled() bool { return l.rate > 0 }

// Allow takes a token from key's bucket. When none is left it returns false
// and how long until one is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.buckets[key]
	if !found {
		if len(s.buckets) >= l.perShard {
			l.sweep(s, now)
		}
		if len(s.buckets) >= l.perShard {
			b = &s.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
			s.buckets[key] = b
		}
	}
	return l.take(b, now)
}

// Spent reports whether key's bucket has no token left, and how long until
// it has one, without taking a token or tracking key. With Allow taken only
// on some outcome (a refused token, say), it bounds how often that outcome
// can come before the work that decides it is done at all.
func (l *Limiter) Spent(key string) (spent bool, retryAfter time.Duration) {
	if l.rate <= 0 {
		return false, 0
	}
	s := l.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	switch {
	case b != nil:
	case len(s.buckets) < l.perShard:
		return false, 0 // a new bucket would be full
	default:
		b = &s.overflow
	}
	if tokens := l.tokens(b, l.now()); tokens < 1 {
		return true, l.wait(tokens)
	}
	return false, 0
}

func (l *Limiter) shardOf(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)%shards]
}

func (l *Limiter) take(b *bucket, now time.Time) (bool, time.Duration) {
	b.tokens, b.last = l.tokens(b, now), now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, l.wait(b.tokens)
}

// tokens is what b holds at now, refilled since it was last taken from.
func (l *Limiter) tokens(b *bucket, now time.Time) float64 {
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		return math.Min(l.burst, b.tokens+elapsed*l.rate)
	}
	return b.tokens
}

// wait is how long a bucket holding tokens (under one) takes to hold one.
func (l *Limiter) wait(tokens float64) time.Duration {
	return time.Duration((1 - tokens) / l.rate * float64(time.Second))
}

// full reports whether b has refilled completely by now, so that dropping
// it changes nothing.
func (l *Limiter) full(b *bucket, now time.Time) bool {
	return l.tokens(b, now) >= l.burst
}

func (l *Limiter) sweep(s *shard, now time.Time) {
	for k, b := range s.buckets {
		if l.full(b, now) {
			delete(s.buckets, k)
		}
	}
}

// Sweep drops the buckets that have refilled completely.
func (l *Limiter) Sweep() {
	now := l.now()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		l.sweep(s, now)
		s.mu.Unlock()
	}
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// Run sweeps every interval until ctx is done.
func (l *Limiter) Run(ctx context.Context, interval time.Duration) error {
	if l.rate <= 0 {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.Sweep()
		}
	}
}
