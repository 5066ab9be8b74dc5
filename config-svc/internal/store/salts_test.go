package store

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestCookielessSaltIsMadeOnceAndShared: instances asking for a date's
// salt at once, on two stores of one keyspace (two config-svc instances),
// all get the one salt that was written first, and every later request
// gets it again; another date has another salt; the row lives
// CookielessSaltTTL.
func TestCookielessSaltIsMadeOnceAndShared(t *testing.T) {
	ctx := context.Background()
	stores := twoInstances(t)
	now := time.Now()
	today := dateOf(now.UTC())

	const perStore = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got [][]byte
	for _, st := range stores {
		for range perStore {
			wg.Add(1)
			go func() {
				defer wg.Done()
				salt, err := st.CookielessSalt(ctx, today, now)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, salt)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	first := got[0]
	if len(first) != CookielessSaltBytes || bytes.Equal(first, make([]byte, CookielessSaltBytes)) {
		t.Fatalf("salt %x: want %d random bytes", first, CookielessSaltBytes)
	}
	for i, salt := range got {
		if !bytes.Equal(salt, first) {
			t.Fatalf("request %d got salt %x, another %x: concurrent instances disagree", i, salt, first)
		}
	}
	for i, st := range stores {
		again, err := st.CookielessSalt(ctx, today, now.Add(time.Minute))
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("store %d later: %x, %v; want the salt made first, %x", i, again, err, first)
		}
	}

	// An instance that found no salt and lost the race to write its own
	// gets the winner's.
	lost, err := stores[1].claimSalt(ctx, today, bytes.Repeat([]byte{7}, CookielessSaltBytes), now)
	if err != nil || !bytes.Equal(lost, first) {
		t.Fatalf("a claim after the salt was made: %x, %v; want the salt made first, %x", lost, err, first)
	}

	tomorrow, err := stores[1].CookielessSalt(ctx, today.AddDate(0, 0, 1), now)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(tomorrow, first) {
		t.Fatal("tomorrow has today's salt")
	}

	var ttl int
	if err := stores[0].s.Query(`SELECT ttl(salt) FROM cookieless_salts WHERE day = ?`, today).Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	if want := int(CookielessSaltTTL / time.Second); ttl > want || ttl < want-60 {
		t.Fatalf("ttl(salt) = %d s, want about %d (three days)", ttl, want)
	}
}

// TestCookielessSaltDateBounds: a salt is made or read only for
// yesterday, today and tomorrow (UTC), whatever the hour; any other date
// is refused without touching the table.
func TestCookielessSaltDateBounds(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	d := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		day     time.Time
		now     time.Time
		allowed bool
	}{
		{"today", d, d.Add(12 * time.Hour), true},
		{"yesterday, at the day's last instant", d.AddDate(0, 0, -1), d.Add(24*time.Hour - time.Nanosecond), true},
		{"tomorrow, at the day's first instant", d.AddDate(0, 0, 1), d, true},
		{"two days ago", d.AddDate(0, 0, -2), d, false},
		{"two days ahead", d.AddDate(0, 0, 2), d.Add(24*time.Hour - time.Nanosecond), false},
		{"a year ago", d.AddDate(-1, 0, 0), d, false},
		// 00:30 in Berlin on the 6th is 23:30 UTC on the 5th: UTC decides.
		{"now in another zone: the UTC date counts", d.AddDate(0, 0, -1), time.Date(2026, 12, 6, 0, 30, 0, 0, berlin), true},
		{"the day in another zone: its own date counts", time.Date(2026, 12, 6, 23, 0, 0, 0, berlin), d, true},
		{"the day in another zone, two ahead", time.Date(2026, 12, 7, 0, 30, 0, 0, berlin), d, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SaltDayInRange(tt.day, tt.now); got != tt.allowed {
				t.Fatalf("SaltDayInRange(%v, %v) = %v, want %v", tt.day, tt.now, got, tt.allowed)
			}
			salt, err := st.CookielessSalt(ctx, tt.day, tt.now)
			switch {
			case tt.allowed && (err != nil || len(salt) != CookielessSaltBytes):
				t.Fatalf("salt %x, %v; want one", salt, err)
			case !tt.allowed && !errors.Is(err, ErrSaltDayOutOfRange):
				t.Fatalf("salt %x, %v; want ErrSaltDayOutOfRange", salt, err)
			}
		})
	}
	var n int
	if err := st.s.Query(`SELECT count(*) FROM cookieless_salts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 { // the 4th, 5th and 6th
		t.Fatalf("%d salts stored, want 3: a refused date left a row", n)
	}
}

// TestCookielessSaltOutlivesItsWindow: a salt made at the earliest (when
// its date becomes tomorrow in UTC) expires only once its date can no
// longer be asked for, so an expired salt is never made again; and it
// outlives the last hit that needs it (a date of UTC-12, 4 hours late).
func TestCookielessSaltOutlivesItsWindow(t *testing.T) {
	d := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	earliest := d.AddDate(0, 0, -1)
	if !SaltDayInRange(d, earliest) || SaltDayInRange(d, earliest.Add(-time.Nanosecond)) {
		t.Fatalf("the salt of %s can first be made at %s", d.Format(time.DateOnly), earliest)
	}
	expires := earliest.Add(CookielessSaltTTL)
	if SaltDayInRange(d, expires) {
		t.Fatalf("a salt made at %s expires at %s, when its date can still be asked for: it would be made again", earliest, expires)
	}
	lastNeed := d.Add(24*time.Hour + 12*time.Hour + 4*time.Hour) // the end of the 5th at UTC-12, plus 4 h of queue time
	if !SaltDayInRange(d, lastNeed) || expires.Before(lastNeed) {
		t.Fatalf("the last hit of %s arrives at %s; the salt expires at %s", d.Format(time.DateOnly), lastNeed, expires)
	}
}
