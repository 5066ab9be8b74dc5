package httpapi

import (
	"sync"
	"time"
)

// addressThrottle slows down what can be asked about one e-mail address,
// by a policy: every attempt counts when it begins (so that concurrent
// attempts cannot all slip in before the first is recorded); from the
// policy's free-th on, each further attempt must wait a delay that doubles
// with every attempt (base up to max); reset without an attempt clears the
// address, and so does cleared. Addresses nobody has are throttled alike,
// so the answer tells nothing about which exist.
//
// For logins (loginThrottle) the attempts are failures until a success
// clears them: it slows the guessing of one account's password. The
// gateway's limit per client network bounds one source; this bounds one
// account against many (an IPv6 range, a botnet), and it refuses before
// the password hash is compared, so the guesses cost no bcrypt either. The
// price, as with every per-account throttle: someone who keeps guessing an
// address keeps its owner's new logins waiting up to maxLoginDelay between
// attempts, for as long as they keep at it (signed-in sessions are not
// affected: refreshing is not throttled).
//
// For password resets (resetThrottle) every request counts: it keeps the
// endpoint from being used to fill someone's mailbox.
//
// It is per instance and in memory: with n config-svc instances behind
// the gateway's round robin an address gets about n times the attempts.
// At most maxTrackedAddresses addresses are tracked; past that the entries
// whose delay has passed make room, then arbitrary ones. Addresses are
// at most 254 bytes (the endpoints refuse longer ones first).
type addressThrottle struct {
	policy throttlePolicy
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]*attempts
}

// throttlePolicy is when an addressThrottle makes an attempt wait.
type throttlePolicy struct {
	free      int           // attempts that wait for nothing
	base, max time.Duration // the first wait, doubling up to max
	reset     time.Duration // quiet for this long clears an address
}

type attempts struct {
	count int       // attempts since the last clear or reset
	last  time.Time // of the last attempt
	until time.Time // no attempt before this
}

const (
	freeLoginFailures   = 5
	maxLoginDelay       = 15 * time.Minute
	resetLoginFailures  = time.Hour
	maxTrackedAddresses = 100_000
)

// loginThrottle: five failed logins in a row are free, then 1 s doubling
// to 15 minutes; an hour without an attempt clears them.
var loginThrottle = throttlePolicy{free: freeLoginFailures, base: time.Second, max: maxLoginDelay, reset: resetLoginFailures}

// resetThrottle: a reset mail for an address at most once a minute, then
// after 2, 4, 8, 16 and 32 minutes (six in the first hour), then hourly;
// a day without a request clears it.
var resetThrottle = throttlePolicy{free: 1, base: time.Minute, max: time.Hour, reset: 24 * time.Hour}

func newAddressThrottle(now func() time.Time, p throttlePolicy) *addressThrottle {
	return &addressThrottle{policy: p, now: now, m: map[string]*attempts{}}
}

// begin starts an attempt for email: it returns how long the attempt must
// still wait (then it is refused, and nothing is counted), or 0, and then
// counts it (for logins: as a failure until cleared says otherwise).
func (f *addressThrottle) begin(email string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	e := f.m[email]
	if e != nil && now.Before(e.until) {
		return e.until.Sub(now)
	}
	if e == nil || now.Sub(e.last) > f.policy.reset {
		if e == nil && len(f.m) >= maxTrackedAddresses {
			f.makeRoom(now)
		}
		e = &attempts{}
		f.m[email] = e
	}
	e.count++
	e.last = now
	if n := e.count - f.policy.free; n >= 0 {
		e.until = now.Add(min(f.policy.base<<min(n, 20), f.policy.max))
	}
	return 0
}

// cleared forgets email's attempts (a successful login, a password set).
func (f *addressThrottle) cleared(email string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, email)
}

// makeRoom drops the entries that no longer delay anything, and at least
// one entry; f.mu is held.
func (f *addressThrottle) makeRoom(now time.Time) {
	for k, e := range f.m {
		if !now.Before(e.until) {
			delete(f.m, k)
		}
	}
	for k := range f.m {
		if len(f.m) < maxTrackedAddresses {
			break
		}
		delete(f.m, k)
	}
}
