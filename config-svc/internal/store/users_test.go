package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
)

func newUser(email string) User {
	return User{TenantID: gocql.MustRandomUUID(), ID: gocql.MustRandomUUID(), Email: email, PasswordHash: "x", Role: "admin",
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

// A claim of an address that the same user already holds (an earlier
// attempt was applied, its answer lost) is the user's; another user's is
// ErrEmailTaken, and leaves no row of the refused user.
func TestCreateUserIsRepeatable(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	u := newUser("again@users.example")
	for i := range 2 {
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if owner, err := st.EmailOwner(ctx, u.Email); err != nil || owner != u.ID {
		t.Fatalf("owner %v, %v; want %v", owner, err, u.ID)
	}
	other := newUser(u.Email)
	if err := st.CreateUser(ctx, other); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("another user's claim = %v, want ErrEmailTaken", err)
	}
	if _, err := st.User(ctx, other.TenantID, other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused user's row: %v, want ErrNotFound", err)
	}
}

// Once DeleteUser has revoked the tokens, the rest (the address, then the
// row) completes even when its context ends meanwhile: the client went
// away as the address was being freed.
func TestDeleteUserCompletesAfterItsContextEnds(t *testing.T) {
	srv := cqltest.Server(t)
	st := newStore(t)
	u := newUser("leaving@users.example")
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.SetFault(func(cql string) cqlserver.Fault {
		if strings.HasPrefix(cql, "DELETE FROM users_by_email") {
			cancel()
		}
		return cqlserver.NoFault
	})
	defer srv.SetFault(nil)
	if err := st.DeleteUser(ctx, u, time.Minute); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if deleted, err := st.UserDeleted(context.Background(), u.TenantID, u.ID); err != nil || !deleted {
		t.Fatalf("UserDeleted after the deletion: %v, %v; want true", deleted, err)
	}
	if deleted, err := st.UserDeleted(context.Background(), u.TenantID, gocql.TimeUUID()); err != nil || deleted {
		t.Fatalf("UserDeleted of a user never deleted: %v, %v; want false", deleted, err)
	}
	if _, err := st.UserByEmail(context.Background(), u.Email); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the address after the deletion: %v, want free", err)
	}
	if _, err := st.User(context.Background(), u.TenantID, u.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the user after the deletion: %v, want gone", err)
	}
}
