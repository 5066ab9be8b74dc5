package httpapi

import (
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"
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
	// tried are the accounts whose password the failures since were
	// checked against (failed): for logins, an address's accounts.
	tried []gocql.UUID
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

// failed records the accounts whose password a failed attempt for email
// was checked against (none for an address without one).
func (f *addressThrottle) failed(email string, ids ...gocql.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[email]
	if e == nil {
		return
	}
	for _, id := range ids {
		if !slices.Contains(e.tried, id) {
			e.tried = append(e.tried, id)
		}
	}
}

// succeeded is cleared for an attempt that signed in as id, or a
// password of id set (attempt false: begin counted nothing), when every
// failure since was checked against id alone, or against no account.
// Otherwise the address has other accounts (two made before for two
// spellings, or one made before under a rare spelling and one since) and
// the failures may be guesses at their passwords: they stay, and only
// this attempt is taken back. So a success at one's own account does not
// let its holder guess at the other's without waiting.
func (f *addressThrottle) succeeded(email string, id gocql.UUID, attempt bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[email]
	if e == nil {
		return
	}
	if !slices.ContainsFunc(e.tried, func(t gocql.UUID) bool { return t != id }) {
		delete(f.m, email)
		return
	}
	if attempt && e.count > 0 {
		// As if this attempt had not been made: the wait is the last
		// failure's, counted from now.
		e.count--
		e.until = time.Time{}
		if n := e.count - f.policy.free; n >= 0 {
			e.until = e.last.Add(min(f.policy.base<<min(n, 20), f.policy.max))
		}
	}
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
