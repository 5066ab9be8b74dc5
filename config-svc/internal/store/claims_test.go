package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
)

// newVerifiedUser is a user whose address was shown to be its own.
func newVerifiedUser(email string) User {
	u := newUser(email)
	u.EmailVerifiedAt = u.CreatedAt
	return u
}

// wantOwner fails the test unless the address leads to want (by its
// claim, and by the login's lookup).
func wantOwner(t *testing.T, st *Store, email string, want User) {
	t.Helper()
	ctx := context.Background()
	if owner, err := st.EmailOwner(ctx, email); err != nil || owner != want.ID {
		t.Fatalf("the owner of %s: %v, %v; want %v", email, owner, err, want.ID)
	}
	if u, err := st.UserByEmail(ctx, email); err != nil || u.ID != want.ID || u.Email != email {
		t.Fatalf("the user of %s: %+v, %v; want %v with the address", email, u, err, want.ID)
	}
}

// A verified user takes an address from a holder who never verified it:
// the holder keeps its row, with the claimed email, and can no longer
// verify the address; from a verified holder it takes nothing, leaving
// no row of its own.
func TestCreateVerifiedUserTakesUnverifiedAddress(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	holder := newUser("held@claims.example")
	if err := st.CreateUser(ctx, holder); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, newVerifiedUser(holder.Email)); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("CreateUser of a verified user = %v, want ErrEmailTaken (only CreateVerifiedUser takes)", err)
	}
	owner := newVerifiedUser(holder.Email)
	from, err := st.CreateVerifiedUser(ctx, owner)
	if err != nil || from.ID != holder.ID {
		t.Fatalf("CreateVerifiedUser = %+v, %v; want taken from %v", from, err, holder.ID)
	}
	wantOwner(t, st, holder.Email, owner)
	left, err := st.User(ctx, holder.TenantID, holder.ID)
	if err != nil || left.Email != ClaimedEmail(holder.Email) || !left.EmailClaimed() || left.Role != holder.Role {
		t.Fatalf("the holder after: %+v, %v; want its row with the claimed email", left, err)
	}
	if err := st.SetEmailVerified(ctx, holder.TenantID, holder.ID, holder.Email, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the holder verifying the address after = %v, want ErrNotFound", err)
	}

	again := newVerifiedUser(holder.Email)
	if _, err := st.CreateVerifiedUser(ctx, again); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("taking a verified user's address = %v, want ErrEmailTaken", err)
	}
	if _, err := st.User(ctx, again.TenantID, again.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused user's row: %v, want none", err)
	}
	wantOwner(t, st, holder.Email, owner)

	if _, err := st.CreateVerifiedUser(ctx, newUser("not-verified@claims.example")); err == nil {
		t.Fatal("CreateVerifiedUser of an unverified user succeeded")
	}
}

// The holder's verification and a taking, in either order at the moment
// they meet: the verification landing just before the taking changes the
// holder's row keeps the address the holder's; landing between that
// change and the move of the claim, it is refused and the taking
// completes.
func TestCreateVerifiedUserAgainstVerification(t *testing.T) {
	srv := cqltest.Server(t)
	st := newStore(t)
	ctx := context.Background()
	defer srv.SetFault(nil)
	for _, tt := range []struct {
		name, before string // the statement the verification runs before
		wantTaken    bool
	}{
		{"verified first", "UPDATE users SET email = ", false},
		{"taken first", "UPDATE users_by_email", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			holder := newUser(strings.ReplaceAll(tt.name, " ", "-") + "@claims.example")
			if err := st.CreateUser(ctx, holder); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			var verifyErr error
			srv.SetFault(func(cql string) cqlserver.Fault {
				if strings.HasPrefix(cql, tt.before) {
					once.Do(func() { verifyErr = st.SetEmailVerified(ctx, holder.TenantID, holder.ID, holder.Email, time.Now()) })
				}
				return cqlserver.NoFault
			})
			owner := newVerifiedUser(holder.Email)
			from, err := st.CreateVerifiedUser(ctx, owner)
			srv.SetFault(nil)
			if tt.wantTaken {
				if err != nil || from.ID != holder.ID || !errors.Is(verifyErr, ErrNotFound) {
					t.Fatalf("taking %v (from %v), verifying %v; want taken, the verification refused", err, from.ID, verifyErr)
				}
				wantOwner(t, st, holder.Email, owner)
				return
			}
			if !errors.Is(err, ErrEmailTaken) || verifyErr != nil {
				t.Fatalf("taking %v, verifying %v; want the verification first, the taking refused", err, verifyErr)
			}
			wantOwner(t, st, holder.Email, holder)
			if u, _ := st.User(ctx, holder.TenantID, holder.ID); !u.EmailVerified() {
				t.Fatalf("the holder %+v, want verified", u)
			}
		})
	}
}

// A taking that fails between changing the holder's row and moving the
// claim leaves the holder the address's owner with the claimed email (it
// cannot verify it, nor counts as an admin who can log in); the next
// taking completes it. Of several takings at once exactly one succeeds.
func TestCreateVerifiedUserInterruptedAndConcurrent(t *testing.T) {
	srv := cqltest.Server(t)
	st := newStore(t)
	ctx := context.Background()
	holder := newUser("interrupted@claims.example")
	if err := st.CreateUser(ctx, holder); err != nil {
		t.Fatal(err)
	}
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(cql, "UPDATE users_by_email") {
			return cqlserver.FailBefore
		}
		return cqlserver.NoFault
	})
	if _, err := st.CreateVerifiedUser(ctx, newVerifiedUser(holder.Email)); err == nil || errors.Is(err, ErrEmailTaken) {
		t.Fatalf("CreateVerifiedUser with the claim's move failing = %v, want the failure", err)
	}
	srv.SetFault(nil)
	if owner, err := st.EmailOwner(ctx, holder.Email); err != nil || owner != holder.ID {
		t.Fatalf("the owner after the interruption: %v, %v; want the holder still", owner, err)
	}
	if err := st.SetEmailVerified(ctx, holder.TenantID, holder.ID, holder.Email, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the holder verifying after the interruption = %v, want ErrNotFound", err)
	}

	var won atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := newVerifiedUser(holder.Email)
			_, err := st.CreateVerifiedUser(ctx, u)
			switch {
			case err == nil:
				won.Add(1)
				winner.Store(u)
			case !errors.Is(err, ErrEmailTaken):
				t.Errorf("a concurrent taking: %v", err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 4 concurrent takings succeeded, want 1", won.Load())
	}
	wantOwner(t, st, holder.Email, winner.Load().(User))
	if _, err := st.User(ctx, holder.TenantID, holder.ID); err != nil {
		t.Fatalf("the holder's row: %v, want kept", err)
	}
}
