package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// CookielessSaltTTL is how long a cookieless salt lives after it is made:
// its row's TTL (cql/0009_cookieless_salts.cql says why three days). It is
// never shorter than the time a salt's date stays within SaltDayInRange
// after the salt can first be made, so that an expired salt is never made
// again.
const CookielessSaltTTL = 72 * time.Hour

// CookielessSaltBytes is the size of a salt.
const CookielessSaltBytes = 32

// ErrSaltDayOutOfRange is returned for a date more than one day from
// today (UTC), for which no salt is made (SaltDayInRange).
var ErrSaltDayOutOfRange = errors.New("the date is more than one day from today (UTC)")

// SaltDayInRange reports whether the salt of the date day (its date in its
// own location) may be made or read at now: day is yesterday, today or
// tomorrow in UTC. Every date of every time zone, and the 4 hours a hit may
// be late, fall within that window of the UTC date of its receipt; a date
// that has left it is never asked for again, and its salt, once destroyed,
// never made again.
func SaltDayInRange(day, now time.Time) bool {
	diff := dateOf(day).Sub(dateOf(now.UTC()))
	return diff >= -24*time.Hour && diff <= 24*time.Hour
}

// dateOf returns t's date (in t's location) as midnight UTC.
func dateOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// CookielessSalt returns the salt of cookieless visitor IDs of the date
// day (its date in its own location), making it when the date has none:
// CookielessSaltBytes random bytes, written with INSERT ... IF NOT EXISTS
// and a TTL of CookielessSaltTTL, so that instances asking at once all get
// the one that was written first, and nobody has it three days later. It
// returns ErrSaltDayOutOfRange, reading and writing nothing, when day is
// not within a day of now (SaltDayInRange).
func (st *Store) CookielessSalt(ctx context.Context, day, now time.Time) ([]byte, error) {
	if !SaltDayInRange(day, now) {
		return nil, ErrSaltDayOutOfRange
	}
	day = dateOf(day)
	var salt []byte
	err := st.s.Query(`SELECT salt FROM cookieless_salts WHERE day = ?`, day).WithContext(ctx).Scan(&salt)
	switch {
	case err == nil && len(salt) == CookielessSaltBytes:
		return salt, nil
	case err != nil && !errors.Is(err, gocql.ErrNotFound):
		return nil, fmt.Errorf("read the cookieless salt of %s: %w", day.Format(time.DateOnly), err)
	}
	salt = make([]byte, CookielessSaltBytes)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	return st.claimSalt(ctx, day, salt, now)
}

// claimSalt writes salt as the salt of day unless the day has one, and
// returns the day's salt: salt, or the one written first.
func (st *Store) claimSalt(ctx context.Context, day time.Time, salt []byte, now time.Time) ([]byte, error) {
	existing := map[string]any{}
	applied, err := st.s.Query(`INSERT INTO cookieless_salts (day, salt, created_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?`,
		day, salt, now, int(CookielessSaltTTL/time.Second)).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		return nil, fmt.Errorf("make the cookieless salt of %s: %w", day.Format(time.DateOnly), err)
	}
	if applied {
		return salt, nil
	}
	// Another instance made it first: its salt, as the transaction read
	// it, is everyone's.
	if won, _ := existing["salt"].([]byte); len(won) == CookielessSaltBytes {
		return won, nil
	}
	// Not in the answer (a driver or server that leaves it out): read it
	// back through Paxos (a read at SERIAL, which gocql spells as its
	// serial consistency's code), which sees the transaction that won.
	var won []byte
	err = st.s.Query(`SELECT salt FROM cookieless_salts WHERE day = ?`, day).WithContext(ctx).
		Consistency(gocql.Consistency(gocql.Serial)).Scan(&won)
	if err != nil {
		return nil, fmt.Errorf("read back the cookieless salt of %s: %w", day.Format(time.DateOnly), err)
	}
	if len(won) != CookielessSaltBytes {
		return nil, fmt.Errorf("the cookieless salt of %s is %d bytes, want %d", day.Format(time.DateOnly), len(won), CookielessSaltBytes)
	}
	return won, nil
}
