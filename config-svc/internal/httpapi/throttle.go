package httpapi

import (
	"sync"
	"time"
)

// failedLogins slows the guessing of one account's password. After
// freeLoginFailures failed logins for an address, each further attempt
// must wait a delay that doubles with every failure (1 s up to
// maxLoginDelay); a success clears it, and so do resetLoginFailures without
// a failure. The gateway's limit per client network bounds one source;
// this bounds one account against many (an IPv6 range, a botnet), and it
// refuses before the password hash is compared, so the guesses cost no
// bcrypt either. It slows and never locks: the account's owner waits at
// most maxLoginDelay. Addresses nobody has are throttled alike, so the
// answer tells nothing about which exist.
//
// It is per instance and in memory: with n config-svc instances behind
// the gateway's round robin an address gets about n times the attempts.
// At most maxTrackedLogins addresses are tracked; past that the entries
// whose delay has passed make room, then arbitrary ones.
type failedLogins struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*loginFailures
}

type loginFailures struct {
	count int       // failures since the last success or reset
	last  time.Time // of the last failure
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

// wait returns how long an attempt for email must still wait (0: none).
func (f *failedLogins) wait(email string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[email]
	if e == nil {
		return 0
	}
	return max(e.until.Sub(f.now()), 0)
}

// failed records a failed login for email.
func (f *failedLogins) failed(email string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	e := f.m[email]
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
