package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/gocql/gocql"
)

func itoa(n int) string { return strconv.Itoa(n) }

// TenantJSON is a tenant in the API.
type TenantJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// UserJSON is a user in the API (never with its password hash).
// EmailVerified says whether the user has confirmed that Email is theirs
// (a link mailed to it), and EmailVerifiedAt when.
type UserJSON struct {
	ID              string     `json:"id"`
	Email           string     `json:"email"`
	EmailVerified   bool       `json:"email_verified"`
	EmailVerifiedAt *time.Time `json:"email_verified_at,omitempty"`
	Role            string     `json:"role"`
	CreatedAt       time.Time  `json:"created_at"`
}

func tenantJSON(t store.Tenant) TenantJSON {
	return TenantJSON{ID: t.ID.String(), Name: t.Name, CreatedAt: t.CreatedAt.UTC()}
}

func userJSON(u store.User) UserJSON {
	j := UserJSON{ID: u.ID.String(), Email: u.Email, Role: u.Role, CreatedAt: u.CreatedAt.UTC()}
	if u.EmailVerified() {
		at := u.EmailVerifiedAt.UTC()
		j.EmailVerified, j.EmailVerifiedAt = true, &at
	}
	return j
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	t, err := s.o.Store.Tenant(r.Context(), tid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			httpserver.WriteError(w, http.StatusNotFound, "not_found", "your tenant no longer exists")
			return
		}
		s.internalError(w, r, "read the tenant", err)
		return
	}
	u, external, ok := s.callerUserOrExternal(w, r, tid, uid)
	if !ok {
		return
	}
	if external {
		// An external identity provider's user: config-svc keeps no
		// user of it, so there is none to show.
		httpserver.WriteJSON(w, http.StatusOK, map[string]any{"tenant": tenantJSON(t)})
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, map[string]any{"tenant": tenantJSON(t), "user": userJSON(u)})
}

// callerUser reads the caller's own user, having answered 404 (deleted
// since its token was issued, or an external identity provider's user,
// of whom config-svc keeps none) or 500 when it reports false.
func (s *Server) callerUser(w http.ResponseWriter, r *http.Request, tid, uid gocql.UUID) (store.User, bool) {
	u, external, ok := s.callerUserOrExternal(w, r, tid, uid)
	if ok && external {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "you sign in through your organisation's identity provider, and this service keeps no user of you: manage your account there")
		return store.User{}, false
	}
	return u, ok
}

// callerUserOrExternal reads the caller's own user, or reports that the
// caller is an external identity provider's (lookupCaller). It has
// answered 404 (deleted since its token was issued) or 500 when it
// reports false.
func (s *Server) callerUserOrExternal(w http.ResponseWriter, r *http.Request, tid, uid gocql.UUID) (u store.User, external, ok bool) {
	u, state, err := s.lookupCaller(r.Context(), tid, uid)
	switch {
	case err != nil:
		s.internalError(w, r, "read the caller's user", err)
		return store.User{}, false, false
	case state == callerDeleted:
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "your user no longer exists")
		return store.User{}, false, false
	}
	return u, state == callerExternal, true
}

type tenantPatch struct {
	Name *string `json:"name"`
}

func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	var req tenantPatch
	if !decodeJSON(w, r, &req) {
		return
	}
	t, err := s.o.Store.Tenant(r.Context(), tid)
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "your tenant no longer exists")
		return
	}
	if err != nil {
		s.internalError(w, r, "read the tenant", err)
		return
	}
	if req.Name != nil {
		if !checkName(w, "name", *req.Name, maxTenantName) {
			return
		}
		t.Name = strings.TrimSpace(*req.Name)
		if err := s.o.Store.RenameTenant(r.Context(), tid, t.Name); err != nil {
			s.internalError(w, r, "rename the tenant", err)
			return
		}
	}
	httpserver.WriteJSON(w, http.StatusOK, tenantJSON(t))
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	after, limit, ok := pageParams(w, r, "user")
	if !ok {
		return
	}
	users, next, err := s.o.Store.UsersPage(r.Context(), tid, after, limit)
	if err != nil {
		s.internalError(w, r, "list users", err)
		return
	}
	out := UserList{Users: make([]UserJSON, 0, len(users)), NextAfter: nextAfter(next)}
	for _, u := range users {
		out.Users = append(out.Users, userJSON(u))
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

// UserList is a page of a tenant's users, in the order of their IDs;
// NextAfter (absent on the last page) is the after of the next.
type UserList struct {
	Users     []UserJSON `json:"users"`
	NextAfter string     `json:"next_after,omitempty"`
}

type createUserRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func checkRole(w http.ResponseWriter, role string) bool {
	if role == "" {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "role", "role: is required; use admin or viewer")
		return false
	}
	if role != string(tenant.RoleAdmin) && role != string(tenant.RoleViewer) {
		httpserver.WriteFieldError(w, http.StatusBadRequest, "invalid_field", "role", "role: "+quote(role)+" is not a role; use admin or viewer")
		return false
	}
	return true
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	var req createUserRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	keys := checkCredentials(w, req.Email, req.Password)
	if keys == nil || !checkRole(w, req.Role) {
		return
	}
	hash, err := s.o.Hasher.Hash(req.Password)
	if err != nil {
		s.internalError(w, r, "hash the password", err)
		return
	}
	u := store.User{TenantID: tid, ID: gocql.MustRandomUUID(), Email: keys[0], PasswordHash: hash, Role: req.Role, CreatedAt: s.now()}
	if err := s.o.Store.CreateUser(r.Context(), u, keys[1:]...); err != nil {
		if errors.Is(err, store.ErrEmailTaken) {
			httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "email", "a user with this e-mail address already exists")
			return
		}
		s.internalError(w, r, "create the user", err)
		return
	}
	s.mailNewUserVerification(r, u)
	w.Header().Set("Location", "/v1/users/"+u.ID.String())
	httpserver.WriteJSON(w, http.StatusCreated, userJSON(u))
}

// loadUser reads the user named in the path, of the caller's tenant.
func (s *Server) loadUser(w http.ResponseWriter, r *http.Request, tid gocql.UUID) (store.User, bool) {
	raw := r.PathValue("user_id")
	uid, err := gocql.ParseUUID(raw)
	if err != nil {
		notFound(w, "user", raw)
		return store.User{}, false
	}
	u, err := s.o.Store.User(r.Context(), tid, uid)
	if errors.Is(err, store.ErrNotFound) {
		notFound(w, "user", raw)
		return store.User{}, false
	}
	if err != nil {
		s.internalError(w, r, "read the user", err)
		return store.User{}, false
	}
	return u, true
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	if u, ok := s.loadUser(w, r, tid); ok {
		httpserver.WriteJSON(w, http.StatusOK, userJSON(u))
	}
}

type userPatch struct {
	Role *string `json:"role"`
}

// hasOtherAdmin reports whether the tenant has an admin other than except
// that can log in: one whose e-mail address still leads to it. A row with role
// admin whose address does not (a deletion that failed after freeing the
// address, a creation that failed before claiming it) is no admin anyone
// can act as, so counting it would let the last real admin demote or
// delete itself. The addresses are read at serial consistency
// (store.EmailOwner), so a claim whose outcome was unknown is settled
// before it counts. It stops at the first such admin.
func (s *Server) hasOtherAdmin(r *http.Request, tid, except gocql.UUID) (bool, error) {
	users, err := s.o.Store.Users(r.Context(), tid)
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u.Role != string(tenant.RoleAdmin) || u.ID == except || u.Email == "" {
			continue // an admin without an address cannot log in
		}
		owner, err := s.o.Store.EmailOwner(r.Context(), u.Email)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		if err == nil && owner == u.ID {
			return true, nil
		}
	}
	return false, nil
}

// setRoleKeepingAnAdmin sets u's role to role, keeping the tenant an
// admin who can log in when u is an admin: another is looked for first,
// and again once u's role is changed, which is undone when none is left
// (two admins demoting, or deleting, each other at once both saw the
// other as an admin; whichever finds none afterwards backs off). It
// reports false having answered: lastAdmin's 409, 404 for a user deleted
// meanwhile, or 500.
func (s *Server) setRoleKeepingAnAdmin(w http.ResponseWriter, r *http.Request, tid gocql.UUID, u store.User, role string, lastAdmin func()) bool {
	admin := u.Role == string(tenant.RoleAdmin)
	if admin {
		other, err := s.hasOtherAdmin(r, tid, u.ID)
		if err != nil {
			s.internalError(w, r, "count admins", err)
			return false
		}
		if !other {
			lastAdmin()
			return false
		}
	}
	if err := s.o.Store.SetUserRole(r.Context(), tid, u.ID, role); err != nil {
		if errors.Is(err, store.ErrNotFound) { // deleted since it was read
			notFound(w, "user", u.ID.String())
			return false
		}
		s.internalError(w, r, "change the role", err)
		return false
	}
	if !admin {
		return true
	}
	other, err := s.hasOtherAdmin(r, tid, u.ID)
	if err == nil && !other {
		err = s.o.Store.SetUserRole(r.Context(), tid, u.ID, u.Role)
		if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
			notFound(w, "user", u.ID.String())
			return false
		}
		if err == nil {
			lastAdmin()
			return false
		}
	}
	if err != nil {
		s.internalError(w, r, "check the tenant still has an admin", err)
		return false
	}
	return true
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) {
	_, tid, _, ok := caller(w, r)
	if !ok {
		return
	}
	u, ok := s.loadUser(w, r, tid)
	if !ok {
		return
	}
	var req userPatch
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Role != nil && *req.Role != u.Role {
		if !checkRole(w, *req.Role) {
			return
		}
		lastAdmin := func() {
			httpserver.WriteFieldError(w, http.StatusConflict, "conflict", "role", "this is the tenant's last admin; make another user admin first")
		}
		if !s.setRoleKeepingAnAdmin(w, r, tid, u, *req.Role, lastAdmin) {
			return
		}
		u.Role = *req.Role
	}
	httpserver.WriteJSON(w, http.StatusOK, userJSON(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	_, tid, uid, ok := caller(w, r)
	if !ok {
		return
	}
	u, ok := s.loadUser(w, r, tid)
	if !ok {
		return
	}
	if u.ID == uid {
		httpserver.WriteError(w, http.StatusConflict, "conflict", "you cannot delete yourself; ask another admin")
		return
	}
	// An admin is demoted first, keeping the tenant an admin: two admins
	// deleting each other at once each saw the other as an admin, both
	// were deleted, and the tenant was left with none.
	lastAdmin := func() { httpserver.WriteError(w, http.StatusConflict, "conflict", "this is the tenant's last admin") }
	if u.Role == string(tenant.RoleAdmin) && !s.setRoleKeepingAnAdmin(w, r, tid, u, string(tenant.RoleViewer), lastAdmin) {
		return
	}
	if err := s.o.Store.DeleteUser(r.Context(), u, s.deletedUserMemory()); err != nil {
		s.internalError(w, r, "delete the user", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
