package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

func newTest(rate float64, burst, maxKeys int) (*Limiter, *time.Time) {
	l := New(rate, burst, maxKeys)
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	return l, &now
}

func TestBucket(t *testing.T) {
	l, now := newTest(10, 3, 1000)
	steps := []struct {
		name      string
		advance   time.Duration
		key       string
		want      bool
		wantRetry time.Duration
	}{
		{"burst 1", 0, "a", true, 0},
		{"burst 2", 0, "a", true, 0},
		{"burst 3", 0, "a", true, 0},
		{"empty", 0, "a", false, 100 * time.Millisecond},
		{"other key has its own bucket", 0, "b", true, 0},
		{"half a token later", 50 * time.Millisecond, "a", false, 50 * time.Millisecond},
		{"one token later", 50 * time.Millisecond, "a", true, 0},
		{"refill caps at burst", time.Hour, "a", true, 0},
		{"burst again 2", 0, "a", true, 0},
		{"burst again 3", 0, "a", true, 0},
		{"empty again", 0, "a", false, 100 * time.Millisecond},
	}
	for _, s := range steps {
		*now = now.Add(s.advance)
		got, retry := l.Allow(s.key)
		if got != s.want || (!got && (retry < s.wantRetry-time.Millisecond || retry > s.wantRetry+time.Millisecond)) {
			t.Fatalf("%s: Allow = %v, retry %v; want %v, retry %v", s.name, got, retry, s.want, s.wantRetry)
		}
	}
}

func TestSpentTakesNothing(t *testing.T) {
	l, now := newTest(10, 2, 1000)
	spent := l.Spent
	if s, _ := spent("a"); s || l.Len() != 0 {
		t.Fatalf("an unknown key: spent %v, %d keys tracked", s, l.Len())
	}
	for range 5 {
		if s, _ := spent("a"); s {
			t.Fatal("asking took a token")
		}
	}
	l.Allow("a")
	if s, _ := spent("a"); s {
		t.Fatal("spent with one token left")
	}
	l.Allow("a")
	if s, retry := spent("a"); !s || retry < 99*time.Millisecond || retry > 101*time.Millisecond {
		t.Fatalf("both tokens taken: spent %v, retry %v; want true, 100ms", s, retry)
	}
	*now = now.Add(100 * time.Millisecond)
	if s, _ := spent("a"); s {
		t.Fatal("spent after a token's refill")
	}
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("the refilled token was not there")
	}
}

func TestDisabled(t *testing.T) {
	l, _ := newTest(0, 1, 10)
	for range 100 {
		if ok, _ := l.Allow("k"); !ok {
			t.Fatal("a disabled limiter refused")
		}
	}
	if spent, _ := l.Spent("k"); spent {
		t.Fatal("a disabled limiter is spent")
	}
	if l.Len() != 0 {
		t.Fatal("a disabled limiter tracked keys")
	}
}

func TestSweepDropsOnlyFullBuckets(t *testing.T) {
	l, now := newTest(1, 2, 1000)
	l.Allow("idle")
	*now = now.Add(500 * time.Millisecond)
	l.Allow("busy")
	l.Allow("busy")
	*now = now.Add(600 * time.Millisecond) // idle refilled, busy has 1.1 of 2
	l.Sweep()
	if got := l.Len(); got != 1 {
		t.Fatalf("%d keys after sweep, want 1 (busy)", got)
	}
	// Dropping a full bucket changed nothing: idle has its burst again.
	for i := range 2 {
		if ok, _ := l.Allow("idle"); !ok {
			t.Fatalf("idle request %d refused after its bucket was swept", i)
		}
	}
}

func TestBoundedKeys(t *testing.T) {
	const maxKeys = shards * 2
	l, _ := newTest(1, 1, maxKeys)
	refused := 0
	for i := range 100 * maxKeys {
		if ok, _ := l.Allow("k" + strconv.Itoa(i)); !ok {
			refused++
		}
	}
	if got := l.Len(); got > maxKeys {
		t.Fatalf("%d keys tracked, cap %d", got, maxKeys)
	}
	// Beyond the cap new keys share their shard's overflow bucket, so a
	// flood of distinct keys is itself limited.
	if refused < 90*maxKeys {
		t.Fatalf("only %d of %d requests with fresh keys refused beyond the cap", refused, 100*maxKeys)
	}
}
