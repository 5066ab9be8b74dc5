package configclient

import (
	"slices"
	"testing"
	"time"
)

// TestOldCookielessSaltsAreDropped: the cache keeps the dates of use,
// yesterday to tomorrow in UTC; a salt whose date is before yesterday is
// dropped, here by the sweep, and never held past a few dates. (Fetching
// salts into the cache is tested in salts_test.go, over config-svc.)
func TestOldCookielessSaltsAreDropped(t *testing.T) {
	c, err := New(Config{BaseURL: "http://config.invalid", Caller: "test", IdentitySecret: []byte("a test identity secret")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 23, 30, 0, 0, time.UTC)
	for _, day := range []string{"2026-03-09", "2026-03-10", "2026-03-11"} {
		c.keepSalt(day, make([]byte, SaltBytes), now)
	}
	cached := func() []string {
		var days []string
		for d := range *c.salts.Load() {
			days = append(days, d)
		}
		slices.Sort(days)
		return days
	}
	if got, want := cached(), []string{"2026-03-09", "2026-03-10", "2026-03-11"}; !slices.Equal(got, want) {
		t.Fatalf("cached %v, want %v: yesterday, today and tomorrow", got, want)
	}
	c.dropOldSalts(now)
	if got := cached(); len(got) != 3 {
		t.Fatalf("after a sweep now: %v, want all three kept", got)
	}
	c.dropOldSalts(now.Add(time.Hour)) // past midnight UTC
	if got, want := cached(), []string{"2026-03-10", "2026-03-11"}; !slices.Equal(got, want) {
		t.Fatalf("the next day: %v, want %v (the salt of 2026-03-09 dropped)", got, want)
	}

	// More dates than are ever of use at once (a clock far off): only the
	// newest are kept.
	for i := range 10 {
		c.keepSalt(now.AddDate(0, 0, i).Format(time.DateOnly), make([]byte, SaltBytes), now)
	}
	if got := cached(); len(got) != maxSaltDates || got[len(got)-1] != "2026-03-19" {
		t.Fatalf("cached %v, want the newest %d dates", got, maxSaltDates)
	}
}
