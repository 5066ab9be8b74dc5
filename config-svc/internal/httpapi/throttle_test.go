package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFailedLoginsSlowAnAccountDown(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newAddressThrottle(func() time.Time { return now }, loginThrottle)
	const a = "owner@shop.example"
	for i := range freeLoginFailures {
		if w := f.begin(a); w != 0 {
			t.Fatalf("attempt %d: wait %v, want none (%d are free)", i+1, w, freeLoginFailures)
		}
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if w := f.begin(a); w != want {
			t.Fatalf("wait %v, want %v (doubling)", w, want)
		}
		if w := f.begin(a); w != want {
			t.Fatalf("a refused attempt moved the wait to %v", w)
		}
		now = now.Add(want)
		if w := f.begin(a); w != 0 {
			t.Fatalf("after the wait: %v", w)
		}
	}
	if w := f.begin("other@shop.example"); w != 0 {
		t.Fatalf("another address waits %v", w)
	}
	for range 30 {
		now = now.Add(f.begin(a))
		f.begin(a)
	}
	if w := f.begin(a); w != maxLoginDelay {
		t.Fatalf("after many failures: wait %v, want at most %v", w, maxLoginDelay)
	}
	now = now.Add(maxLoginDelay)
	f.begin(a)
	f.cleared(a)
	if w := f.begin(a); w != 0 {
		t.Fatalf("a success did not clear the failures: wait %v", w)
	}
	now = now.Add(resetLoginFailures + time.Second)
	for range freeLoginFailures {
		if w := f.begin(a); w != 0 {
			t.Fatalf("failures an hour old still counted: wait %v", w)
		}
	}
}

func TestFailedLoginsBounded(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newAddressThrottle(func() time.Time { return now }, loginThrottle)
	for i := range maxTrackedAddresses + 10 {
		f.begin(fmt.Sprintf("u%d@x.example", i))
	}
	if n := len(f.m); n > maxTrackedAddresses {
		t.Fatalf("%d addresses tracked, want at most %d", n, maxTrackedAddresses)
	}
}

// Over the API: past the free failures a login for the address is refused
// before its password is checked (429 with Retry-After), the right
// password too, until the delay has passed; then it works. Guesses sent at
// once do not all get checked. An address no account can have is refused
// before any of it (and is not kept).
func TestLoginThrottledPerAddress(t *testing.T) {
	var mu sync.Mutex
	offset := time.Duration(0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	e := newEnv(t, func(o *Options) { o.Now = clock })
	a := e.signup("Acme")
	wrong := map[string]string{"email": a.email, "password": "wrong password!"}
	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- e.do(anonymous, "POST", "/v1/login", wrong).code }()
	}
	wg.Wait()
	close(codes)
	checked := 0
	for c := range codes {
		if c == http.StatusUnauthorized {
			checked++
		}
	}
	if checked != freeLoginFailures {
		t.Fatalf("20 guesses at once: %d had their password checked, want %d", checked, freeLoginFailures)
	}
	right := map[string]string{"email": a.email, "password": a.password}
	if r := e.do(anonymous, "POST", "/v1/login", right); r.code != http.StatusTooManyRequests || r.apiError().Code != "too_many_attempts" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("a login after %d failures: %d %s (Retry-After %q), want 429 too_many_attempts", freeLoginFailures, r.code, r.body, r.header.Get("Retry-After"))
	}
	mu.Lock()
	offset = 2 * time.Second
	mu.Unlock()
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", right)
	if r := e.do(anonymous, "POST", "/v1/login", wrong); r.code != http.StatusUnauthorized {
		t.Fatalf("after a success the failures start again: %d %s", r.code, r.body)
	}
	long := map[string]string{"email": strings.Repeat("x", 300) + "@shop.example", "password": "wrong password!"}
	if r := e.do(anonymous, "POST", "/v1/login", long); r.code != http.StatusBadRequest {
		t.Fatalf("a 300-byte address: %d %s, want 400", r.code, r.body)
	}
}

// Reset mails for an address: the first at once, then after a minute,
// doubling to an hour; a day without a request clears the address.
func TestResetThrottle(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newAddressThrottle(func() time.Time { return now }, resetThrottle)
	const a = "owner@shop.example"
	var waits []time.Duration
	for range 9 {
		if w := f.begin(a); w != 0 {
			t.Fatalf("after its wait a request waits %v", w)
		}
		w := f.begin(a) // refused: the wait, nothing counted
		waits = append(waits, w)
		if got := f.begin(a); got != w {
			t.Fatalf("a second refused request waits %v, want %v", got, w)
		}
		now = now.Add(w)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour, time.Hour}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	now = now.Add(24*time.Hour + time.Second)
	if f.begin(a); f.begin(a) != time.Minute {
		t.Fatalf("after a quiet day the wait is %v, want a minute again", f.begin(a))
	}
}
