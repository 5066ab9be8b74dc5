package tenant

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Headers the gateway sets on requests it forwards. Any client-supplied
// value of these is stripped by the gateway before it sets its own.
const (
	HeaderTenantID  = "X-Tenant-Id"
	HeaderUserID    = "X-User-Id"
	HeaderRole      = "X-User-Role"
	HeaderTimestamp = "X-Identity-Timestamp"
	HeaderSignature = "X-Identity-Signature"
)

// IdentityHeaders lists every header that carries identity, so that the
// gateway can strip all of them from client requests.
var IdentityHeaders = []string{HeaderTenantID, HeaderUserID, HeaderRole, HeaderTimestamp, HeaderSignature}

// MaxSignatureAge bounds how old a signed identity may be when an upstream
// receives it; it limits the replay window of a captured internal request.
const MaxSignatureAge = 2 * time.Minute

// ErrBadSignature is returned by FromRequest when identity headers are
// present but not signed by the gateway's shared secret.
var ErrBadSignature = errors.New("identity headers not signed by the gateway")

// Sign sets the identity headers on h, signed with secret at time now.
// Upstreams trust identity only through this signature (an HMAC-SHA256 over
// tenant, user, role and timestamp with a secret shared by gateway and
// services), so a client that reaches an upstream directly cannot forge one.
func Sign(h http.Header, id Identity, secret []byte, now time.Time) {
	for _, k := range IdentityHeaders {
		h.Del(k)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	h.Set(HeaderTenantID, id.TenantID)
	h.Set(HeaderUserID, id.UserID)
	h.Set(HeaderRole, string(id.Role))
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, signature(id, ts, secret))
}

// FromRequest verifies the gateway's signed identity headers on r. It returns
// ErrNoTenant when there are none and ErrBadSignature when they do not verify
// or are older than MaxSignatureAge.
func FromRequest(r *http.Request, secret []byte, now time.Time) (Identity, error) {
	id := Identity{
		TenantID: r.Header.Get(HeaderTenantID),
		UserID:   r.Header.Get(HeaderUserID),
		Role:     Role(r.Header.Get(HeaderRole)),
	}
	if id.TenantID == "" {
		return Identity{}, ErrNoTenant
	}
	ts := r.Header.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: bad timestamp", ErrBadSignature)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > MaxSignatureAge || age < -MaxSignatureAge {
		return Identity{}, fmt.Errorf("%w: timestamp outside the accepted window", ErrBadSignature)
	}
	want := signature(id, ts, secret)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get(HeaderSignature))) {
		return Identity{}, ErrBadSignature
	}
	if !id.Role.Valid() {
		return Identity{}, fmt.Errorf("%w: unknown role %q", ErrBadSignature, id.Role)
	}
	return id, nil
}

func signature(id Identity, ts string, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	// Fields are length-prefixed so that no two identities share an input.
	for _, f := range []string{id.TenantID, id.UserID, string(id.Role), ts} {
		fmt.Fprintf(m, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(m.Sum(nil))
}
