package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// User is a person who signs in to a tenant.
type User struct {
	TenantID     gocql.UUID
	ID           gocql.UUID
	Email        string // normalised
	PasswordHash string
	Role         string
	CreatedAt    time.Time
	// EmailVerifiedAt is when Email was verified (a link mailed to it
	// confirmed by the user); zero: not verified.
	EmailVerifiedAt time.Time
}

// EmailVerified reports whether the user's address is verified.
func (u User) EmailVerified() bool { return !u.EmailVerifiedAt.IsZero() }

// nullTime is t for a query, or null when t is zero (gocql would write the
// zero time as an empty value, which is not null).
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// CreateUser inserts u and claims its e-mail address product-wide. The user
// row is written first and the address claimed last, so that a failure in
// between leaves an unreachable row rather than an address that nobody can
// use. It returns ErrEmailTaken when the address belongs to another user.
//
// A claim found taken by u itself is u's: an earlier attempt of the same
// INSERT ... IF NOT EXISTS was applied, but its answer was lost (the
// driver retries a statement that timed out, and the retry finds the row
// the first attempt wrote). A claim whose user no longer exists (left by
// a deletion of an older version, which removed the row before the claim)
// is released and claimed again: every version since frees an address
// before it removes the user behind it.
// An error other than ErrEmailTaken leaves it unknown whether the address
// was claimed (EmailOwner tells).
//
// oldKeys are the other keys the address may be held under, by accounts
// made before addresses had one canonical form (auth.EmailKeys after the
// first, u.Email): one held by another user is ErrEmailTaken too. They
// are read, not claimed: only u.Email is. Once every instance keys new
// accounts by the canonical form, none writes an old key, so nothing can
// take one between the read and the claim.
func (st *Store) CreateUser(ctx context.Context, u User, oldKeys ...string) error {
	_, err := st.createUser(ctx, u, false, oldKeys)
	return err
}

// CreateVerifiedUser is CreateUser for a user whose address has been shown
// to be its own (u.EmailVerifiedAt set: the link of an invitation or of a
// claim came to it): an address held by a user who never verified it is
// taken from that user, who is returned (a zero User when the address was
// free). The holder keeps its row, its ID, role and tenant, and its
// refresh tokens, but its email becomes ClaimedEmail(address), which no
// address equals: nobody logs in as it with the address any more. A
// holder whose address is verified keeps it (ErrEmailTaken), also one who
// verifies while this runs: the holder's row is changed only IF email = ?
// AND email_verified_at = null, and SetEmailVerified only IF email = ?, so
// of the two whichever comes first wins and the other finds the row
// changed. The claim of the address then moves to u with UPDATE ... IF
// user_id = <holder>, so of two takings at once one moves it and the
// other is ErrEmailTaken. A taking interrupted between the two steps
// leaves the holder with the claimed email and still the address's
// owner; the next taking (another claim of the address) completes it.
//
// An address held under one of oldKeys (CreateUser) by a user who never
// verified it is taken from that user alike, first: its email becomes
// ClaimedEmail(key), IF email = key AND email_verified_at = null, and the
// old key is released (DELETE ... IF user_id = <holder>); then u claims
// u.Email as above, so that the address has its canonical key from then
// on. The holder is returned (the one of u.Email, if both). A holder
// under an old key who verified it keeps it (ErrEmailTaken).
func (st *Store) CreateVerifiedUser(ctx context.Context, u User, oldKeys ...string) (User, error) {
	if !u.EmailVerified() {
		return User{}, fmt.Errorf("create verified user: the address of user %s is not verified", u.ID)
	}
	return st.createUser(ctx, u, true, oldKeys)
}

// ClaimedEmailPrefix starts the email of a user whose address was taken
// by its owner (CreateVerifiedUser): it holds a space and parentheses,
// which no address has (auth.CheckEmail), so it never equals one.
const ClaimedEmailPrefix = "(claimed) "

// ClaimedEmail is the email a holder of email is left with once its owner
// has taken it.
func ClaimedEmail(email string) string { return ClaimedEmailPrefix + email }

// EmailClaimed reports whether the user's address was taken by its owner.
func (u User) EmailClaimed() bool { return strings.HasPrefix(u.Email, ClaimedEmailPrefix) }

// createUser is CreateUser, and with take CreateVerifiedUser.
func (st *Store) createUser(ctx context.Context, u User, take bool, oldKeys []string) (User, error) {
	from, err := st.settleOldKeys(ctx, u, take, oldKeys)
	if err != nil {
		return User{}, err
	}
	err = st.s.Query(`INSERT INTO users (tenant_id, user_id, email, password_hash, role, created_at, email_verified_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.TenantID, u.ID, u.Email, u.PasswordHash, u.Role, u.CreatedAt, nullTime(u.EmailVerifiedAt)).WithContext(ctx).Exec()
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", err)
	}
	// A released claim (an orphan's, a holder deleted while it was being
	// taken) is claimed again, once for each reason at most.
	for attempt := 0; attempt < 3; attempt++ {
		prev := map[string]any{}
		applied, err := st.s.Query(`INSERT INTO users_by_email (email, tenant_id, user_id) VALUES (?, ?, ?) IF NOT EXISTS`,
			u.Email, u.TenantID, u.ID).WithContext(ctx).MapScanCAS(prev)
		if err != nil {
			return User{}, fmt.Errorf("claim email: %w", err)
		}
		owner, _ := prev["user_id"].(gocql.UUID)
		if applied || owner == u.ID {
			return from, nil
		}
		ownerTenant, _ := prev["tenant_id"].(gocql.UUID)
		holder, err := st.User(ctx, ownerTenant, owner)
		if errors.Is(err, ErrNotFound) && attempt == 0 {
			// An orphaned claim.
			if err := st.releaseEmail(ctx, u.Email, owner); err != nil {
				return User{}, err
			}
			continue
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return User{}, fmt.Errorf("check the owner of a taken email: %w", err)
		}
		if err == nil && take && !holder.EmailVerified() && (holder.Email == u.Email || holder.Email == ClaimedEmail(u.Email)) {
			took, free, err := st.takeEmail(ctx, holder, u)
			switch {
			case err != nil:
				return User{}, err
			case took:
				return holder, nil
			case free:
				continue
			}
		}
		break
	}
	if err := st.s.Query(`DELETE FROM users WHERE tenant_id = ? AND user_id = ?`, u.TenantID, u.ID).WithContext(ctx).Exec(); err != nil {
		return User{}, fmt.Errorf("undo user after a taken email: %w", err)
	}
	return User{}, ErrEmailTaken
}

// settleOldKeys checks the keys other than u.Email that u's address may be
// held under by accounts made before addresses had one canonical form
// (CreateUser): ErrEmailTaken when another user holds one, unless take and
// none of them verified it; then each of those is taken from (its email
// becomes ClaimedEmail(key), its key released), and the last returned.
// Every key is read before any is taken, so that a verified holder stops
// the taking before it begins.
func (st *Store) settleOldKeys(ctx context.Context, u User, take bool, oldKeys []string) (User, error) {
	type held struct {
		key    string
		holder User
	}
	var holders []held
	for _, k := range oldKeys {
		if k == u.Email {
			continue
		}
		holder, err := st.UserByEmail(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue // free, or held by a user who is gone: nobody's
		}
		if err != nil {
			return User{}, fmt.Errorf("check an old form of the email: %w", err)
		}
		if !take || holder.EmailVerified() || (holder.Email != k && holder.Email != ClaimedEmail(k)) {
			return User{}, ErrEmailTaken
		}
		holders = append(holders, held{k, holder})
	}
	var from User
	for _, h := range holders {
		prev := map[string]any{}
		applied, err := st.s.Query(`UPDATE users SET email = ? WHERE tenant_id = ? AND user_id = ? IF email = ? AND email_verified_at = null`,
			ClaimedEmail(h.key), h.holder.TenantID, h.holder.ID, h.key).WithContext(ctx).MapScanCAS(prev)
		if err != nil {
			return User{}, fmt.Errorf("take an old form of the email from its holder: %w", err)
		}
		now, _ := prev["email"].(string)
		if !applied && now != "" && now != ClaimedEmail(h.key) {
			return User{}, ErrEmailTaken // verified first
		}
		// Taken (now, or by an earlier taking that stopped here), or the
		// holder is gone: either way the key is nobody's.
		if err := st.releaseEmail(ctx, h.key, h.holder.ID); err != nil {
			return User{}, err
		}
		if now == "" && !applied {
			continue
		}
		from = h.holder
	}
	return from, nil
}

// takeEmail moves the claim of u's address from holder, who has not
// verified it, to u (whose row is written): took when it did; free when
// the address turned out free meanwhile (the holder deleted: claim it
// anew); neither when another user holds it now, or the holder verified
// it first. An error leaves the outcome unknown (EmailOwner tells).
func (st *Store) takeEmail(ctx context.Context, holder, u User) (took, free bool, err error) {
	claimed := ClaimedEmail(u.Email)
	prev := map[string]any{}
	applied, err := st.s.Query(`UPDATE users SET email = ? WHERE tenant_id = ? AND user_id = ? IF email = ? AND email_verified_at = null`,
		claimed, holder.TenantID, holder.ID, u.Email).WithContext(ctx).MapScanCAS(prev)
	if err != nil {
		return false, false, fmt.Errorf("take email from its holder: %w", err)
	}
	if now, _ := prev["email"].(string); !applied && now != claimed {
		if now == "" {
			// The holder is gone: a deletion releases the address first,
			// but settle it as an orphan's.
			if err := st.releaseEmail(ctx, u.Email, holder.ID); err != nil {
				return false, false, err
			}
			return false, true, nil
		}
		return false, false, nil // verified first
	}
	prev = map[string]any{}
	applied, err = st.s.Query(`UPDATE users_by_email SET tenant_id = ?, user_id = ? WHERE email = ? IF user_id = ?`,
		u.TenantID, u.ID, u.Email, holder.ID).WithContext(ctx).MapScanCAS(prev)
	if err != nil {
		return false, false, fmt.Errorf("move the claim of an email: %w", err)
	}
	owner, _ := prev["user_id"].(gocql.UUID)
	switch {
	case applied || owner == u.ID:
		return true, false, nil
	case owner == gocql.UUID{}:
		return false, true, nil // released meanwhile (the holder deleted)
	}
	return false, false, nil
}

// EmailOwner returns the ID of the user that holds an address, or
// ErrNotFound. It reads at serial consistency, so a claim whose outcome
// was unknown (CreateUser's error) is settled first: what it returns
// stays so.
func (st *Store) EmailOwner(ctx context.Context, email string) (gocql.UUID, error) {
	var uid gocql.UUID
	err := st.s.Query(`SELECT user_id FROM users_by_email WHERE email = ?`, email).Consistency(gocql.Consistency(gocql.LocalSerial)).WithContext(ctx).Scan(&uid)
	if err != nil {
		return gocql.UUID{}, fmt.Errorf("read the owner of an email: %w", notFound(err))
	}
	return uid, nil
}

// UserByEmail finds the user an address leads to. keys are those the
// address may be stored under, the canonical form first
// (auth.EmailKeys): they are tried in order, and the first that leads to
// a user that exists gives it (a key whose user is gone, a claim an older
// version's deletion left, is passed over). ErrNotFound when none does.
func (st *Store) UserByEmail(ctx context.Context, keys ...string) (User, error) {
	err := fmt.Errorf("look up email: no key given: %w", ErrNotFound)
	for _, k := range keys {
		var u User
		if u, err = st.userByKey(ctx, k); !errors.Is(err, ErrNotFound) {
			return u, err
		}
	}
	return User{}, err
}

// UsersByEmail is UserByEmail for every key: the users the keys lead to,
// in the order of the keys, each once; none (and no error) when none
// does. Two are accounts made before addresses had one canonical form,
// for two spellings of one address.
func (st *Store) UsersByEmail(ctx context.Context, keys ...string) ([]User, error) {
	var users []User
	for _, k := range keys {
		u, err := st.userByKey(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(users, func(v User) bool { return v.ID == u.ID }) {
			users = append(users, u)
		}
	}
	return users, nil
}

// userByKey reads the user one key of users_by_email leads to.
func (st *Store) userByKey(ctx context.Context, key string) (User, error) {
	var tid, uid gocql.UUID
	err := st.s.Query(`SELECT tenant_id, user_id FROM users_by_email WHERE email = ?`, key).WithContext(ctx).Scan(&tid, &uid)
	if err != nil {
		return User{}, fmt.Errorf("look up email: %w", notFound(err))
	}
	return st.User(ctx, tid, uid)
}

// User reads one user of a tenant.
func (st *Store) User(ctx context.Context, tenantID, userID gocql.UUID) (User, error) {
	u := User{TenantID: tenantID, ID: userID}
	err := st.s.Query(`SELECT email, password_hash, role, created_at, email_verified_at FROM users WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).
		WithContext(ctx).Scan(&u.Email, &u.PasswordHash, &u.Role, &u.CreatedAt, &u.EmailVerifiedAt)
	if err != nil {
		return User{}, fmt.Errorf("read user: %w", notFound(err))
	}
	return u, nil
}

// Users lists every user of a tenant (the admin checks; the API pages
// with UsersPage).
func (st *Store) Users(ctx context.Context, tenantID gocql.UUID) ([]User, error) {
	iter := st.s.Query(`SELECT user_id, email, password_hash, role, created_at, email_verified_at FROM users WHERE tenant_id = ?`, tenantID).WithContext(ctx).Iter()
	var out []User
	u := User{TenantID: tenantID}
	for iter.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.Role, &u.CreatedAt, &u.EmailVerifiedAt) {
		out = append(out, u)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// UsersPage returns up to limit of a tenant's users in the order of their
// IDs, those after the ID after (the zero UUID: from the first), without
// their password hashes. next is the ID to pass as after for the next
// page, zero when none follows.
func (st *Store) UsersPage(ctx context.Context, tenantID, after gocql.UUID, limit int) (users []User, next gocql.UUID, err error) {
	iter := st.pageQuery(ctx, `SELECT user_id, email, role, created_at, email_verified_at FROM users WHERE tenant_id = ?`, `user_id`, tenantID, after, limit).Iter()
	u := User{TenantID: tenantID}
	for iter.Scan(&u.ID, &u.Email, &u.Role, &u.CreatedAt, &u.EmailVerifiedAt) {
		users = append(users, u)
	}
	if err := iter.Close(); err != nil {
		return nil, gocql.UUID{}, fmt.Errorf("list users: %w", err)
	}
	users, next = trimPage(users, limit, func(u User) gocql.UUID { return u.ID })
	return users, next, nil
}

// SetUserRole changes a user's role, ErrNotFound when the user does not
// exist (any more). The write is conditional on the row: a plain UPDATE
// makes the row it names, so a role change racing the user's deletion
// left a user with a role and nothing else, listed, and which no
// deletion could remove.
func (st *Store) SetUserRole(ctx context.Context, tenantID, userID gocql.UUID, role string) error {
	applied, err := st.s.Query(`UPDATE users SET role = ? WHERE tenant_id = ? AND user_id = ? IF EXISTS`, role, tenantID, userID).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("set user role: %w", err)
	}
	if !applied {
		return fmt.Errorf("set user role: user %s: %w", userID, ErrNotFound)
	}
	return nil
}

// DeleteUser removes a user: it revokes the user's refresh tokens, frees
// its e-mail address, then deletes its row. The address is freed before
// the row goes: a failure in between leaves a user who can no longer log
// in (no address leads to it) but still exists, so a retried deletion
// finds it and completes; the other order would leave the address claimed
// by a user who does not exist, which no request could free (sign-up 409,
// login 401, deletion 404). Once the tokens are revoked, the rest runs to
// its end even when ctx is cancelled (a client that went away), within
// its own bound. Deleting a user that is half deleted, or gone, succeeds.
// With remember above zero, it first marks the user deleted for that long
// (UserDeleted): the lifetime of the access tokens the user may still hold.
func (st *Store) DeleteUser(ctx context.Context, u User, remember time.Duration) error {
	if remember > 0 {
		if err := st.s.Query(`INSERT INTO deleted_users (tenant_id, user_id, deleted_at) VALUES (?, ?, ?) USING TTL ?`,
			u.TenantID, u.ID, st.now(), int(remember.Round(time.Second)/time.Second)).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("mark the user deleted: %w", err)
		}
	}
	if err := st.RevokeUserTokens(ctx, u.TenantID, u.ID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	if err := st.releaseEmail(ctx, u.Email, u.ID); err != nil {
		return err
	}
	if err := st.s.Query(`DELETE FROM users WHERE tenant_id = ? AND user_id = ?`, u.TenantID, u.ID).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// UserDeleted reports whether the user was deleted within the time
// DeleteUser was told to remember it.
func (st *Store) UserDeleted(ctx context.Context, tenantID, userID gocql.UUID) (bool, error) {
	var at time.Time
	err := st.s.Query(`SELECT deleted_at FROM deleted_users WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).WithContext(ctx).Scan(&at)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read deleted users: %w", err)
	}
	return true, nil
}

// releaseEmail frees an address if userID holds it, never a newer
// owner's claim. It is a lightweight transaction, so it also settles a
// claim of userID whose outcome was unknown: after it, userID does not
// hold the address.
func (st *Store) releaseEmail(ctx context.Context, email string, userID gocql.UUID) error {
	if email == "" {
		// A row a role change made after the user's deletion, before
		// SetUserRole was conditional: no address leads to it.
		return nil
	}
	if _, err := st.s.Query(`DELETE FROM users_by_email WHERE email = ? IF user_id = ?`, email, userID).WithContext(ctx).MapScanCAS(map[string]any{}); err != nil {
		return fmt.Errorf("release email: %w", err)
	}
	return nil
}

// UserToken is what is stored of a token a user holds (a refresh token, a
// password reset link): the hash of the token, made while the user's
// password hash had the SHA-256 PasswordSHA256, the password the token
// is bound to.
type UserToken struct {
	Hash           string
	TenantID       gocql.UUID
	UserID         gocql.UUID
	PasswordSHA256 string
	IssuedAt       time.Time
	ExpiresAt      time.Time
}

// RefreshToken is a stored refresh token. PasswordSHA256 is "" for one
// stored before migration 10, which recorded none.
type RefreshToken UserToken

func ttlSeconds(until, now time.Time) int {
	s := int(until.Sub(now).Seconds())
	if s < 1 {
		s = 1
	}
	return s
}

// SaveRefreshToken stores a token hash until it expires.
func (st *Store) SaveRefreshToken(ctx context.Context, t RefreshToken) error {
	ttl := ttlSeconds(t.ExpiresAt, st.now())
	b := st.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(`INSERT INTO refresh_tokens (token_hash, tenant_id, user_id, password_sha256, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`,
		t.Hash, t.TenantID, t.UserID, t.PasswordSHA256, t.IssuedAt, t.ExpiresAt, ttl)
	b.Query(`INSERT INTO refresh_tokens_by_user (tenant_id, user_id, token_hash, expires_at) VALUES (?, ?, ?, ?) USING TTL ?`,
		t.TenantID, t.UserID, t.Hash, t.ExpiresAt, ttl)
	if err := st.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("save refresh token: %w", err)
	}
	return nil
}

// ConsumeRefreshToken takes a refresh token for one use: it returns the
// token and marks it used, or ErrNotFound when it does not exist or has
// expired, or a *RefreshTokenReusedError, an ErrRefreshTokenReused (with
// the token, for its user), when it was used before, by a concurrent call
// too. A used token's row stays,
// with its TTL, so that a copy presented later is known as one
// (cql/0015). Whether the token's password is still the user's is the
// caller's check; the token is used up either way.
func (st *Store) ConsumeRefreshToken(ctx context.Context, hash string) (RefreshToken, error) {
	t := RefreshToken{Hash: hash}
	var usedAt time.Time
	err := st.s.Query(`SELECT tenant_id, user_id, password_sha256, issued_at, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?`, hash).
		WithContext(ctx).Scan(&t.TenantID, &t.UserID, &t.PasswordSHA256, &t.IssuedAt, &t.ExpiresAt, &usedAt)
	if err != nil {
		return RefreshToken{}, fmt.Errorf("read refresh token: %w", notFound(err))
	}
	now := st.now()
	if !now.Before(t.ExpiresAt) {
		return RefreshToken{}, fmt.Errorf("refresh token expired: %w", ErrNotFound)
	}
	if !usedAt.IsZero() {
		return t, &RefreshTokenReusedError{UsedAt: usedAt}
	}
	// user_id != null: a row revoked since the read is not written again.
	prev := map[string]any{}
	applied, err := st.s.Query(`UPDATE refresh_tokens USING TTL ? SET used_at = ? WHERE token_hash = ? IF used_at = null AND user_id != null`,
		ttlSeconds(t.ExpiresAt, now), now, hash).WithContext(ctx).MapScanCAS(prev)
	if err != nil {
		return RefreshToken{}, fmt.Errorf("consume refresh token: %w", err)
	}
	if !applied {
		if used, _ := prev["used_at"].(time.Time); !used.IsZero() {
			return t, &RefreshTokenReusedError{UsedAt: used}
		}
		return RefreshToken{}, fmt.Errorf("refresh token revoked: %w", ErrNotFound)
	}
	if err := st.s.Query(`DELETE FROM refresh_tokens_by_user WHERE tenant_id = ? AND user_id = ? AND token_hash = ?`, t.TenantID, t.UserID, hash).WithContext(ctx).Exec(); err != nil {
		return RefreshToken{}, fmt.Errorf("consume refresh token: %w", err)
	}
	return t, nil
}

// ForgetRefreshToken deletes a used refresh token's row, so that the token
// is unknown from then on (ConsumeRefreshToken: ErrNotFound) rather than
// a reuse.
func (st *Store) ForgetRefreshToken(ctx context.Context, hash string) error {
	if err := st.s.Query(`DELETE FROM refresh_tokens WHERE token_hash = ?`, hash).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("forget refresh token: %w", err)
	}
	return nil
}

// RevokeRefreshToken deletes one of a user's refresh tokens; it returns
// ErrNotFound when the user has no such token.
func (st *Store) RevokeRefreshToken(ctx context.Context, tenantID, userID gocql.UUID, hash string) error {
	var exp time.Time
	err := st.s.Query(`SELECT expires_at FROM refresh_tokens_by_user WHERE tenant_id = ? AND user_id = ? AND token_hash = ?`, tenantID, userID, hash).
		WithContext(ctx).Scan(&exp)
	if err != nil {
		return fmt.Errorf("find refresh token: %w", notFound(err))
	}
	return st.deleteTokens(ctx, tenantID, userID, []string{hash})
}

// RevokeUserTokens deletes every refresh token of a user.
func (st *Store) RevokeUserTokens(ctx context.Context, tenantID, userID gocql.UUID) error {
	iter := st.s.Query(`SELECT token_hash FROM refresh_tokens_by_user WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).WithContext(ctx).Iter()
	var hashes []string
	var h string
	for iter.Scan(&h) {
		hashes = append(hashes, h)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("list refresh tokens: %w", err)
	}
	return st.deleteTokens(ctx, tenantID, userID, hashes)
}

func (st *Store) deleteTokens(ctx context.Context, tenantID, userID gocql.UUID, hashes []string) error {
	var errs []error
	for _, h := range hashes {
		if err := st.s.Query(`DELETE FROM refresh_tokens WHERE token_hash = ?`, h).WithContext(ctx).Exec(); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := st.s.Query(`DELETE FROM refresh_tokens_by_user WHERE tenant_id = ? AND user_id = ? AND token_hash = ?`, tenantID, userID, h).WithContext(ctx).Exec(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("revoke refresh tokens: %w", err)
	}
	return nil
}
