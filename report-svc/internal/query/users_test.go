package query

import (
	"fmt"
	"testing"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/pkg/sketch"
)

// estimated returns a users sketch of n distinct members past the exact
// limit, as a report reads one from the rollups, and its estimate.
func estimated(t *testing.T, n int) (sketch.Union, int64) {
	t.Helper()
	var s sketch.Set
	for i := range n {
		s.Add(fmt.Sprintf("client-%d", i))
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	u, err := sketch.DecodeUnion(b)
	if err != nil {
		t.Fatal(err)
	}
	if u.Exact() {
		t.Fatalf("%d members: sketch still exact", n)
	}
	return u, int64(u.Count())
}

// TestUsersWithinExactBounds: a users count past the exact limit is a
// HyperLogLog estimate, but the rows' exact sums bound the true count, and
// the report never shows an estimate outside them: every new user of the
// range is one of its users (users >= new_users), and every user has a
// session in the rows (users <= sessions). The ground-truth drill found a
// day of 600 users, all new, reported as 593 users and 600 new users (and
// the user_type "new" row, whose users are exactly its sessions, as 593).
func TestUsersWithinExactBounds(t *testing.T) {
	users := metricByName(ScopeSession, "users")

	// A sketch that underestimates: each member one new user with one
	// session, so the true count is known exactly from the sums.
	under, underEst := 0, int64(0)
	for n := sketch.ExactLimit + 1; n < 2000; n++ {
		if _, est := estimated(t, n); est < int64(n) {
			under, underEst = n, est
			break
		}
	}
	// And one that overestimates.
	over, overEst := 0, int64(0)
	for n := sketch.ExactLimit + 1; n < 2000; n++ {
		if _, est := estimated(t, n); est > int64(n) {
			over, overEst = n, est
			break
		}
	}
	if under == 0 || over == 0 {
		t.Fatal("found no member count the sketch under- and overestimates")
	}

	for _, c := range []struct {
		name               string
		members            int
		newUsers, sessions int64
		want               float64
	}{
		{"all new, underestimated", under, int64(under), int64(under), float64(under)},
		{"new users bound it below", under, int64(under) - 1, 3 * int64(under), float64(under) - 1},
		{"one session each, overestimated", over, 0, int64(over), float64(over)},
		{"within the bounds, the estimate", over, 0, 3 * int64(over), float64(overEst)},
		{"underestimate within the bounds", under, 0, 3 * int64(under), float64(underEst)},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, _ := estimated(t, c.members)
			a := agg{m: rollup.Metrics{NewUsers: c.newUsers, Sessions: c.sessions}, users: u}
			if got := users.value(&a); got != c.want {
				t.Errorf("users = %v, want %v (estimate of %d members; new users %d, sessions %d)", got, c.want, c.members, c.newUsers, c.sessions)
			}
		})
	}

	// Exact counts are untouched (they satisfy the bounds by construction).
	var s sketch.Set
	for i := range 10 {
		s.Add(fmt.Sprintf("client-%d", i))
	}
	b, _ := s.MarshalBinary()
	u, _ := sketch.DecodeUnion(b)
	a := agg{m: rollup.Metrics{NewUsers: 4, Sessions: 25}, users: u}
	if got := users.value(&a); got != 10 {
		t.Errorf("exact users = %v, want 10", got)
	}
}
