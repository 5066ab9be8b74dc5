package store

import (
	"context"
	"errors"
	"testing"

	"github.com/gocql/gocql"
)

// The keys of one address, as auth.EmailKeys gives them: its canonical
// form, then the old form an account made before may be stored under.
const (
	canonicalKey = "anna@xn--bcher-kva.example"
	oldKey       = "anna@bücher.example"
)

// UserByEmail tries an address's keys in order, passing over a key whose
// user is gone; UsersByEmail reads them all.
func TestUserByEmailTriesEachKey(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	old := newUser(oldKey) // as the code before canonical forms stored it
	if err := st.CreateUser(ctx, old); err != nil {
		t.Fatal(err)
	}
	if u, err := st.UserByEmail(ctx, canonicalKey, oldKey); err != nil || u.ID != old.ID {
		t.Fatalf("UserByEmail(canonical, old) = %+v, %v; want the account under the old key", u, err)
	}
	if _, err := st.UserByEmail(ctx, canonicalKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UserByEmail(canonical) = %v; want ErrNotFound", err)
	}
	// A claim whose user is gone (an older version's deletion left it).
	if err := st.s.Query(`INSERT INTO users_by_email (email, tenant_id, user_id) VALUES (?, ?, ?)`, canonicalKey, gocql.MustRandomUUID(), gocql.MustRandomUUID()).Exec(); err != nil {
		t.Fatal(err)
	}
	if u, err := st.UserByEmail(ctx, canonicalKey, oldKey); err != nil || u.ID != old.ID {
		t.Fatalf("UserByEmail past an orphaned key = %+v, %v; want the account under the old key", u, err)
	}
	if _, err := st.UserByEmail(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UserByEmail without keys = %v; want ErrNotFound", err)
	}

	// Two accounts made before for two spellings: UsersByEmail has both,
	// in the order of the keys, each once.
	canonical := newUser("eva@xn--bcher-kva.example")
	unicode := newUser("eva@bücher.example")
	for _, u := range []User{canonical, unicode} {
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	users, err := st.UsersByEmail(ctx, canonical.Email, "eva@bu\u0308cher.example", unicode.Email, unicode.Email)
	if err != nil || len(users) != 2 || users[0].ID != canonical.ID || users[1].ID != unicode.ID {
		t.Fatalf("UsersByEmail = %+v, %v; want the canonical key's user, then the old key's", users, err)
	}
	if users, err := st.UsersByEmail(ctx, "nobody@bücher.example"); err != nil || len(users) != 0 {
		t.Fatalf("UsersByEmail of a free address = %+v, %v; want none", users, err)
	}
}

// An address held under an old key is taken: CreateUser refuses it,
// leaving no row and no claim of the canonical key; CreateVerifiedUser
// takes it from a holder who never verified it (the holder's email
// becomes the claimed one, the old key is released, the new user has the
// canonical key), and not from one who did.
func TestAddressHeldUnderAnOldKey(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	holder := newUser(oldKey)
	if err := st.CreateUser(ctx, holder); err != nil {
		t.Fatal(err)
	}
	u := newUser(canonicalKey)
	if err := st.CreateUser(ctx, u, oldKey); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("CreateUser with the old key held = %v, want ErrEmailTaken", err)
	}
	if _, err := st.User(ctx, u.TenantID, u.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused user's row: %v, want none", err)
	}
	if _, err := st.EmailOwner(ctx, canonicalKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the canonical key after a refusal: %v, want free", err)
	}

	owner := newVerifiedUser(canonicalKey)
	from, err := st.CreateVerifiedUser(ctx, owner, oldKey)
	if err != nil || from.ID != holder.ID {
		t.Fatalf("CreateVerifiedUser = %+v, %v; want taken from %v", from, err, holder.ID)
	}
	wantOwner(t, st, canonicalKey, owner)
	if _, err := st.EmailOwner(ctx, oldKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old key after the taking: %v, want released", err)
	}
	left, err := st.User(ctx, holder.TenantID, holder.ID)
	if err != nil || left.Email != ClaimedEmail(oldKey) {
		t.Fatalf("the holder after: %+v, %v; want its row with the claimed email", left, err)
	}

	verified := newVerifiedUser("eva@xn--bcher-kva.example")
	verified.Email = "eva@bücher.example"
	if err := st.CreateUser(ctx, verified); err != nil {
		t.Fatal(err)
	}
	again := newVerifiedUser("eva@xn--bcher-kva.example")
	if _, err := st.CreateVerifiedUser(ctx, again, "eva@bücher.example"); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("taking from a verified holder under an old key = %v, want ErrEmailTaken", err)
	}
	wantOwner(t, st, "eva@bücher.example", verified)
	if _, err := st.EmailOwner(ctx, "eva@xn--bcher-kva.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the canonical key after a refusal: %v, want free", err)
	}
}
