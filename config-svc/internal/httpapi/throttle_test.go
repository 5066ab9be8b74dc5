package httpapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestFailedLoginsSlowAnAccountDown(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newFailedLogins(func() time.Time { return now })
	const a = "owner@shop.example"
	for i := range freeLoginFailures {
		if w := f.wait(a); w != 0 {
			t.Fatalf("after %d failures: wait %v, want none (%d are free)", i, w, freeLoginFailures)
		}
		f.failed(a)
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if w := f.wait(a); w != want {
			t.Fatalf("wait %v, want %v (doubling)", w, want)
		}
		now = now.Add(want)
		f.failed(a)
	}
	if w := f.wait("other@shop.example"); w != 0 {
		t.Fatalf("another address waits %v", w)
	}
	for range 30 {
		now = now.Add(f.wait(a))
		f.failed(a)
	}
	if w := f.wait(a); w != maxLoginDelay {
		t.Fatalf("after many failures: wait %v, want at most %v", w, maxLoginDelay)
	}
	now = now.Add(maxLoginDelay)
	f.succeeded(a)
	f.failed(a)
	if w := f.wait(a); w != 0 {
		t.Fatalf("a success did not clear the failures: wait %v", w)
	}
	now = now.Add(resetLoginFailures + time.Second)
	for range freeLoginFailures - 1 {
		f.failed(a)
	}
	if w := f.wait(a); w != 0 {
		t.Fatalf("failures an hour old still counted: wait %v", w)
	}
}

func TestFailedLoginsBounded(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newFailedLogins(func() time.Time { return now })
	for i := range maxTrackedLogins + 10 {
		f.failed(fmt.Sprintf("u%d@x.example", i))
	}
	if n := len(f.m); n > maxTrackedLogins {
		t.Fatalf("%d addresses tracked, want at most %d", n, maxTrackedLogins)
	}
}

// Over the API: past the free failures a login for the address is refused
// before its password is checked (429 with Retry-After), the right
// password too, until the delay has passed; then it works.
func TestLoginThrottledPerAddress(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Acme")
	wrong := map[string]string{"email": a.email, "password": "wrong password!"}
	for range freeLoginFailures {
		if r := e.do(anonymous, "POST", "/v1/login", wrong); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d %s", r.code, r.body)
		}
	}
	right := map[string]string{"email": a.email, "password": a.password}
	if r := e.do(anonymous, "POST", "/v1/login", right); r.code != http.StatusTooManyRequests || r.apiError().Code != "too_many_attempts" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("a login after %d failures: %d %s (Retry-After %q), want 429 too_many_attempts", freeLoginFailures, r.code, r.body, r.header.Get("Retry-After"))
	}
	time.Sleep(1100 * time.Millisecond)
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", right)
	if r := e.do(anonymous, "POST", "/v1/login", wrong); r.code != http.StatusUnauthorized {
		t.Fatalf("after a success the failures start again: %d %s", r.code, r.body)
	}
}
