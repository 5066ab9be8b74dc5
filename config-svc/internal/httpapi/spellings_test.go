package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/gocql/gocql"
	"golang.org/x/crypto/bcrypt"
)

// bucherAddress returns spellings of one new address at bücher.example
// (in Unicode, composed; as the A-label; decomposed and in upper case;
// with a fullwidth letter) and its canonical form.
func bucherAddress() (spellings []string, canonical string) {
	local := fmt.Sprintf("anna%d-%d", addressSeq.Add(1), time.Now().UnixNano())
	return []string{
		"Anna" + local[4:] + "@Bücher.example",
		local + "@xn--bcher-kva.example",
		strings.ToUpper(local) + "@BU\u0308CHER.EXAMPLE",
		local + "@ｂücher.example",
	}, local + "@xn--bcher-kva.example"
}

// oldAccount makes a tenant and its admin with the address as typed,
// stored as the code before canonical forms stored it: keyed by the
// address trimmed and lower-cased.
func (e *env) oldAccount(typed, password string, verified bool) store.User {
	e.t.Helper()
	ctx := context.Background()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	tn := store.Tenant{ID: gocql.MustRandomUUID(), Name: "Made before", CreatedAt: now}
	if err := e.store.CreateTenant(ctx, tn); err != nil {
		e.t.Fatal(err)
	}
	u := store.User{TenantID: tn.ID, ID: gocql.MustRandomUUID(), Email: strings.ToLower(strings.TrimSpace(typed)), PasswordHash: string(hash),
		Role: "admin", CreatedAt: now}
	if verified {
		u.EmailVerifiedAt = now
	}
	if err := e.store.CreateUser(ctx, u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// wantTaken fails the test unless every way of giving an address to a
// new account refuses each spelling as taken: sign-up, a user an admin
// adds, an invitation.
func (e *env) wantTaken(admin account, spellings []string) {
	e.t.Helper()
	for _, s := range spellings {
		e.signupTaken(s, "another horse battery", "Copy")
		for _, r := range []response{
			e.do(admin.as(), "POST", "/v1/users", map[string]string{"email": s, "password": "another long password", "role": "viewer"}),
			e.do(admin.as(), "POST", "/v1/invitations", map[string]string{"email": s, "role": "viewer"}),
		} {
			if r.code != http.StatusConflict || r.apiError().Field != "email" {
				e.t.Fatalf("%q given to a new user: %d %s, want 409 conflict on email", s, r.code, r.body)
			}
		}
	}
}

// wantLogsInAs fails the test unless each spelling logs in as userID.
func (e *env) wantLogsInAs(spellings []string, password, userID string) {
	e.t.Helper()
	for _, s := range spellings {
		if id, ok := e.logsIn(s, password); !ok || id != userID {
			e.t.Fatalf("login as %q: %v %s, want user %s", s, ok, id, userID)
		}
	}
}

// resetMailed asks for a password reset of email, waits for its mail in
// dir, checks that it is addressed to want, and returns its link's token.
// (The body is quoted-printable: it names the address as the account has
// it.)
func (e *env) resetMailed(dir, email, want string) string {
	t := e.t
	t.Helper()
	before := len(mailsAbout(t, dir, resetSubject))
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": email})
	var got [][]byte
	eventually.True(t, 10*time.Second, "the reset mail", func() bool {
		got = mailsAbout(t, dir, resetSubject)
		return len(got) > before
	})
	m, err := netmail.ReadMessage(bytes.NewReader(got[len(got)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if to, err := netmail.ParseAddress(m.Header.Get("To")); err != nil || to.Address != want {
		t.Errorf("the reset mailed to %v (%v), want %q", to, err, want)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	link := resetLink.FindSubmatch(body)
	if err != nil || link == nil {
		t.Fatalf("no reset link in the message (%v):\n%s", err, body)
	}
	return string(link[1])
}

// An address has one account however it is spelt: the IDN's domain in
// Unicode or as its A-label, composed or decomposed, in any case or width;
// a local part composed or decomposed. The account is keyed and shown by
// the canonical form; each other spelling is refused for a new account
// as taken, and logs in to it.
func TestOneAccountPerAddressHoweverSpelt(t *testing.T) {
	e, _ := mailEnv(t, newTestClock())
	spellings, canonical := bucherAddress()
	const password = "correct horse battery"
	a := e.signupWith(spellings[0], password, "Bücher")
	if _, u := e.me(a); u.Email != canonical {
		t.Fatalf("the user's address %q, want the canonical %q", u.Email, canonical)
	}
	e.wantTaken(a, spellings)
	e.wantLogsInAs(spellings, password, a.tokens.UserID)

	local := fmt.Sprintf("%d-%d@shop.example", addressSeq.Add(1), time.Now().UnixNano())
	eva := []string{"e\u0301va" + local, "\u00c9VA" + local, "E\u0301va" + local}
	b := e.signupWith(eva[0], password, "Eva")
	if _, u := e.me(b); u.Email != "\u00e9va"+local {
		t.Fatalf("the user's address %+q, want it composed (NFC)", u.Email)
	}
	e.wantTaken(b, eva)
	e.wantLogsInAs(eva, password, b.tokens.UserID)
}

// An account made before addresses had one canonical form is keyed by its
// address trimmed and lower-cased, which for an IDN is not the canonical
// form. It is found all the same: logged in to and reset with any
// spelling, taken for every new account, also when two were made for two
// spellings; and its address is claimed from it, and taken at an
// invitation's acceptance, when it never verified it, the address then
// keyed by its canonical form.
func TestAccountsMadeBeforeAreFound(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	admin := e.signup("Admins")

	t.Run("login, reset, taken", func(t *testing.T) {
		spellings, canonical := bucherAddress()
		old := e.oldAccount(spellings[0], "the old password", true)
		if old.Email == canonical {
			t.Fatalf("the old key %q is the canonical form", old.Email)
		}
		e.wantLogsInAs(spellings, "the old password", old.ID.String())
		e.wantTaken(admin, spellings)

		e.confirmReset(http.StatusNoContent, e.resetMailed(dir, spellings[1], canonical), "the new password")
		e.wantLogsInAs(spellings, "the new password", old.ID.String())
	})

	// Two accounts made before for two spellings: each signs in with its
	// own password, by any spelling.
	t.Run("two made before", func(t *testing.T) {
		spellings, _ := bucherAddress()
		first := e.oldAccount(spellings[0], "the first password", false)
		second := e.oldAccount(spellings[1], "the second password", false) // its old form is the canonical one
		e.wantLogsInAs(spellings, "the first password", first.ID.String())
		e.wantLogsInAs(spellings, "the second password", second.ID.String())
		e.wantTaken(admin, spellings)
	})

	t.Run("claimed", func(t *testing.T) {
		spellings, canonical := bucherAddress()
		holder := e.oldAccount(spellings[0], "the squatter's password", false)
		e.signupTaken(spellings[1], "the owner's password", "Owner")
		var tokens TokenResponse
		e.must(http.StatusCreated, anonymous, "POST", "/v1/signup/claim",
			map[string]string{"token": e.claimLink(dir, canonical, 1), "password": "the owner's password"}).decode(t, &tokens)
		owner := account{tokens: tokens}
		if _, u := e.me(owner); u.Email != canonical || !u.EmailVerified {
			t.Fatalf("the claimant %+v, want verified with the canonical form", u)
		}
		e.wantLogsInAs(spellings, "the owner's password", tokens.UserID)
		left, err := e.store.User(context.Background(), holder.TenantID, holder.ID)
		if err != nil || left.Email != store.ClaimedEmail(holder.Email) {
			t.Fatalf("the holder after: %+v, %v; want its address claimed", left, err)
		}
	})

	t.Run("taken at an invitation's acceptance", func(t *testing.T) {
		spellings, canonical := bucherAddress()
		inv, token := e.invite(dir, admin, spellings[1], "viewer")
		if inv.Email != canonical {
			t.Fatalf("the invitation's address %q, want the canonical %q", inv.Email, canonical)
		}
		// Made meanwhile by an instance of the earlier version.
		holder := e.oldAccount(spellings[0], "the squatter's password", false)
		var tokens TokenResponse
		r := e.accept(token, "the invitee's password")
		if r.code != http.StatusCreated {
			t.Fatalf("the acceptance: %d %s, want 201", r.code, r.body)
		}
		r.decode(t, &tokens)
		e.wantLogsInAs(spellings, "the invitee's password", tokens.UserID)
		if left, err := e.store.User(context.Background(), holder.TenantID, holder.ID); err != nil || !left.EmailClaimed() {
			t.Fatalf("the holder after: %+v, %v; want its address claimed", left, err)
		}
	})
}

// A spelling whose old form (trimmed and lower-cased) is another
// address's has not that old form as a key. İ is i + U+0307 to UTS #46
// and i to strings.ToLower: victim@İnfo.example is
// victim@xn--info-qwc.example, at a domain anyone can hold, and its old
// form is victim@info.example. With that old form as a key, a sign-up
// with the look-alike was refused as taken by victim@info.example's
// account and mailed, at xn--info-qwc.example, a link that took the
// address from that account (which, as every new one, had not verified
// it yet): its owner shut out. A login with the look-alike tried that
// account's password under another throttle than its address's. ẞ alike:
// ss to UTS #46, ß to ToLower.
func TestALookAlikeSpellingIsAnotherAddress(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	victim := uniqueAddress("victim", "info.example")
	v := e.signupWith(victim, "the victim's password", "Victim")
	lookAlike := strings.Replace(victim, "@info.", "@\u0130nfo.", 1)
	canonical := strings.Replace(victim, "@info.", "@xn--info-qwc.", 1)

	// Guesses at the victim's password, as many as are free; then the
	// look-alike does not get past the throttle to the account.
	for range freeLoginFailures {
		if r := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": victim, "password": "a wrong guess!"}); r.code != http.StatusUnauthorized {
			t.Fatalf("a wrong guess: %d %s, want 401", r.code, r.body)
		}
	}
	if r := e.do(anonymous, "POST", "/v1/login", map[string]string{"email": lookAlike, "password": v.password}); r.code != http.StatusUnauthorized {
		t.Fatalf("a login as %+q with the password of %s, whose logins wait: %d %s, want 401 (no account)", lookAlike, victim, r.code, r.body)
	}

	// A sign-up with the look-alike is an account of its own, and takes
	// nothing from the victim.
	a := e.signupWith(lookAlike, "the look-alike's password", "Look-alike")
	if _, u := e.me(a); u.Email != canonical {
		t.Fatalf("the look-alike's address %+q, want %+q", u.Email, canonical)
	}
	if _, u := e.me(v); u.Email != victim {
		t.Fatalf("the victim's address after: %+q, want %+q", u.Email, victim)
	}
	if got := claimTokens(t, dir, canonical); len(got) != 0 {
		t.Fatalf("%d claim links mailed to %s", len(got), canonical)
	}

	// ẞ: an account made before with it is keyed by ß (straße.example,
	// xn--strae-oqa.example), and the spelling now is strasse.example.
	local, _, _ := strings.Cut(uniqueAddress("anna", "x"), "@")
	holder := e.oldAccount(local+"@STRA\u1e9eE.example", "the holder's password", false)
	b := e.signupWith(local+"@STRA\u1e9eE.example", "the new password", "Strasse")
	if _, u := e.me(b); u.Email != local+"@strasse.example" {
		t.Fatalf("the new account's address %+q, want %+q", u.Email, local+"@strasse.example")
	}
	if left, err := e.store.User(context.Background(), holder.TenantID, holder.ID); err != nil || left.Email != local+"@stra\u00dfe.example" {
		t.Fatalf("the account made before: %+v, %v; want it to keep %+q", left, err, local+"@stra\u00dfe.example")
	}
	e.wantLogsInAs([]string{local + "@stra\u00dfe.example", local + "@xn--strae-oqa.example"}, "the holder's password", holder.ID.String())
}

// An account made before under a rare spelling of an address (a
// fullwidth letter) is keyed by that spelling's old form, which no other
// spelling has: a sign-up with the common spelling makes a second
// account, keyed by the canonical form (docs/config.md). That second
// account, anyone's, must neither shut the first out of password resets
// (the canonical key's account, tried first, had the link or, unverified,
// nobody) nor clear the failed logins that guess at the first's password
// (a login with the rare spelling tries both accounts' passwords under
// one throttle, and a success of the second cleared it).
func TestASecondAccountForAnAddressMadeBefore(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	spellings, canonical := bucherAddress()
	rare := spellings[3]
	first := e.oldAccount(rare, "the first's password", true)
	second := e.signupWith(spellings[0], "the second's password", "Second") // unverified

	t.Run("reset", func(t *testing.T) {
		e.confirmReset(http.StatusNoContent, e.resetMailed(dir, rare, canonical), "the first's new password")
		e.wantLogsInAs([]string{rare}, "the first's new password", first.ID.String())
	})

	t.Run("login failures", func(t *testing.T) {
		guess := map[string]string{"email": rare, "password": "a wrong guess!"}
		wantGuess := func(want int) {
			t.Helper()
			if r := e.do(anonymous, "POST", "/v1/login", guess); r.code != want {
				t.Fatalf("a guess: %d %s, want %d", r.code, r.body, want)
			}
		}
		for range freeLoginFailures - 1 {
			wantGuess(http.StatusUnauthorized)
		}
		// The second's own login, as often as it likes, does not clear
		// the guesses at the first's password, nor count as one.
		for range 3 {
			if id, ok := e.logsIn(spellings[0], "the second's password"); !ok || id != second.tokens.UserID {
				t.Fatalf("the second's login: %v %s", ok, id)
			}
		}
		wantGuess(http.StatusUnauthorized) // the last free one
		wantGuess(http.StatusTooManyRequests)
	})
}
