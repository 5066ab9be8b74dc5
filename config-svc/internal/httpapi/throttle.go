package httpapi

import (
	"sync"
	"time"
)

// failedLogins slows the guessing of one account's password. Every login
// attempt for an address counts as a failure when it begins (so concurrent
// guesses cannot all slip in before the first failure is recorded), and a
// success clears the address. From the freeLoginFailures-th failure on,
// each further attempt must wait a delay that doubles with every failure
// (1 s up to maxLoginDelay); resetLoginFailures without an attempt clears
// it. The gateway's limit per client network bounds one source; this
// bounds one account against many (an IPv6 range, a botnet), and it refuses
// before the password hash is compared, so the guesses cost no bcrypt
// either. Addresses nobody has are throttled alike, so the answer tells
// nothing about which exist.
//
// The price, as with every per-account throttle: someone who keeps
// guessing an address keeps its owner's new logins waiting up to
// maxLoginDelay between attempts, for as long as they keep at it (signed-in
// sessions are not affected: refreshing is not throttled).
//
// It is per instance and in memory: with n config-svc instances behind
// the gateway's round robin an address gets about n times the attempts.
// At most maxTrackedLogins addresses are tracked; past that the entries
// whose delay has passed make room, then arbitrary ones. Addresses are
// at most 254 bytes (login refuses longer ones first).
type failedLogins struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*loginFailures
}

type loginFailures struct {
	count int       // attempts since the last success or reset
	last  time.Time // of the last attempt
	until time.Time // no attempt before this
}

const (
	freeLoginFailures  = 5
	maxLoginDelay      = 15 * time.Minute
	resetLoginFailures = time.Hour
	maxTrackedLogins   = 100_000
)

func newFailedLogins(now func() time.Time) *failedLogins {
	return &failedLogins{now: now, m: map[string]*loginFailures{}}
}

// begin starts an attempt for email: it returns how long the attempt must
// still wait (then it is refused, and nothing is counted), or 0, and then
// counts it as a failure until succeeded says otherwise.
func (f *failedLogins) begin(email string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	e := f.m[email]
	if e != nil && now.Before(e.until) {
		return e.until.Sub(now)
	}
	if e == nil || now.Sub(e.last) > resetLoginFailures {
		if e == nil && len(f.m) >= maxTrackedLogins {
			f.makeRoom(now)
		}
		e = &loginFailures{}
		f.m[email] = e
	}
	e.count++
	e.last = now
	if n := e.count - freeLoginFailures; n >= 0 {
		e.until = now.Add(min(time.Second<<min(n, 20), maxLoginDelay))
	}
	return 0
}

// succeeded clears email's failures.
func (f *failedLogins) succeeded(email string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, email)
}

// makeRoom drops the entries that no longer delay anything, and at least
// one entry; f.mu is held.
func (f *failedLogins) makeRoom(now time.Time) {
	for k, e := range f.m {
		if !now.Before(e.until) {
			delete(f.m, k)
		}
	}
	for k := range f.m {
		if len(f.m) < maxTrackedLogins {
			break
		}
		delete(f.m, k)
	}
}
