package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
)

func TestInjectExtract(t *testing.T) {
	if _, err := Extract(context.Background()); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("Extract(empty) error = %v, want ErrNoTenant", err)
	}
	want := Identity{TenantID: "t1", UserID: "u1", Role: RoleAdmin}
	got, err := Extract(Inject(context.Background(), want))
	if err != nil || got != want {
		t.Fatalf("Extract = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ID(Inject(context.Background(), Identity{UserID: "u"})); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("ID(no tenant ID) error = %v, want ErrNoTenant", err)
	}
}

func TestSignedHeaders(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	id := Identity{TenantID: "t1", UserID: "u1", Role: RoleViewer}

	tests := []struct {
		name    string
		mutate  func(h http.Header)
		at      time.Time
		secret  []byte
		wantErr error
	}{
		{name: "valid", at: now, secret: secret},
		{name: "wrong secret", at: now, secret: []byte("other"), wantErr: ErrBadSignature},
		{name: "too old", at: now.Add(MaxSignatureAge + time.Second), secret: secret, wantErr: ErrBadSignature},
		{name: "forged tenant", at: now, secret: secret, wantErr: ErrBadSignature,
			mutate: func(h http.Header) { h[HeaderTenantID] = []string{"t2"} }},
		{name: "forged role", at: now, secret: secret, wantErr: ErrBadSignature,
			mutate: func(h http.Header) { h[HeaderRole] = []string{"admin"} }},
		{name: "no headers", at: now, secret: secret, wantErr: ErrNoTenant,
			mutate: func(h http.Header) { delete(h, HeaderTenantID) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			Sign(r.Header, id, secret, now)
			if tt.mutate != nil {
				tt.mutate(r.Header)
			}
			got, err := FromRequest(r, tt.secret, tt.at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FromRequest error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != id {
				t.Fatalf("FromRequest = %+v, want %+v", got, id)
			}
		})
	}
}

func TestRequire(t *testing.T) {
	secret := []byte("k")
	var got Identity
	h := Require(secret)(RequireRole(RoleAdmin)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = Extract(r.Context())
	})))
	tests := []struct {
		name string
		sign *Identity
		key  []byte
		want int
	}{
		{"admin", &Identity{TenantID: "t", UserID: "u", Role: RoleAdmin}, secret, 200},
		{"viewer", &Identity{TenantID: "t", UserID: "u", Role: RoleViewer}, secret, 403},
		{"unsigned", nil, secret, 401},
		{"forged", &Identity{TenantID: "t", UserID: "u", Role: RoleAdmin}, []byte("wrong"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = Identity{}
			r := httptest.NewRequest("GET", "/", nil)
			if tt.sign != nil {
				Sign(r.Header, *tt.sign, tt.key, time.Now())
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status = %d, want %d", w.Code, tt.want)
			}
			if tt.want == 200 && got != *tt.sign {
				t.Fatalf("handler saw %+v, want %+v", got, *tt.sign)
			}
		})
	}
}

// TestRequireOnAnInternalPath: an internal endpoint refused a call
// without identity telling the caller to go through the gateway with a
// bearer token, which never routes it (processing's reprocessing API,
// config-svc's pipeline API); it says how such a call is signed.
func TestRequireOnAnInternalPath(t *testing.T) {
	secret := []byte("k")
	h := Require(secret)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, tt := range []struct {
		name, path string
		key        []byte
		want       string
	}{
		{"unsigned internal", "/internal/v1/reprocess", nil, "deploy/scripts/internal-call.sh"},
		{"forged internal", "/internal/v1/reprocess", []byte("wrong"), "the identity headers do not verify"},
		{"unsigned public", "/v1/properties", nil, "through the gateway with a bearer token"},
	} {
		r := httptest.NewRequest("POST", tt.path, nil)
		if tt.key != nil {
			Sign(r.Header, Identity{TenantID: "system", UserID: "operator", Role: RoleService}, tt.key, time.Now())
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%s: %d %s, want 401 saying %q", tt.name, w.Code, w.Body, tt.want)
		}
		if strings.HasPrefix(tt.path, "/internal/") && strings.Contains(w.Body.String(), "bearer token") {
			t.Errorf("%s: %s sends the caller to the gateway", tt.name, w.Body)
		}
	}
}

// TestRequireRoleSaysWhatIsNeeded: a 403 names the caller's role and the
// role, or the roles, that would do.
func TestRequireRoleSaysWhatIsNeeded(t *testing.T) {
	secret := []byte("k")
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, tt := range []struct {
		roles []Role
		who   Role
		want  string
	}{
		{[]Role{RoleAdmin}, RoleViewer, "your role (viewer) may not do this: it needs the admin role"},
		{[]Role{RoleAdmin, RoleViewer}, RoleService, "your role (service) may not do this: it needs one of the roles admin, viewer"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		Sign(r.Header, Identity{TenantID: "t", UserID: "u", Role: tt.who}, secret, time.Now())
		w := httptest.NewRecorder()
		Require(secret)(RequireRole(tt.roles...)(ok)).ServeHTTP(w, r)
		var body httpserver.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusForbidden || body.Error.Code != "forbidden" || body.Error.Message != tt.want {
			t.Errorf("%v for %s: %d %+v; want 403 %q", tt.roles, tt.who, w.Code, body.Error, tt.want)
		}
	}
}
