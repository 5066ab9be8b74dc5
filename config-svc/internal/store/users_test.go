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
	if err := st.DeleteUser(ctx, u); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := st.UserByEmail(context.Background(), u.Email); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the address after the deletion: %v, want free", err)
	}
	if _, err := st.User(context.Background(), u.TenantID, u.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the user after the deletion: %v, want gone", err)
	}
}
