package tenant

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
