package tenant

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/acme/analytics/pkg/httpserver"
)

// Require is middleware for upstream services: it accepts a request only
// with identity headers signed by the gateway (see Sign), and puts the
// identity in the request's context for Extract. Anything else is answered
// 401 without reaching next.
func Require(secret []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := FromRequest(r, secret, time.Now())
			if err != nil {
				msg := "this endpoint needs a signed-in user; call it through the gateway with a bearer token"
				if errors.Is(err, ErrBadSignature) {
					msg = "identity headers were not set by the gateway; call this endpoint through the gateway"
				}
				if strings.HasPrefix(r.URL.Path, "/internal/") {
					// The gateway never routes these: sending a caller
					// there with a token leads nowhere.
					msg = "this internal endpoint needs identity headers signed with the services' identity secret, less than two minutes old (deploy/scripts/internal-call.sh signs them); the gateway does not route it"
					if errors.Is(err, ErrBadSignature) {
						msg = "the identity headers do not verify (" + err.Error() + "): sign them with the services' identity secret, less than two minutes before the call (deploy/scripts/internal-call.sh); the gateway does not route this internal endpoint"
					}
				}
				httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", msg)
				return
			}
			next.ServeHTTP(w, r.WithContext(Inject(r.Context(), id)))
		})
	}
}

// RequireRole is middleware that answers 403 unless the identity in the
// context (set by Require) has one of roles; the answer names the role
// the caller has and those that would do.
func RequireRole(roles ...Role) func(http.Handler) http.Handler {
	needed := make([]string, len(roles))
	for i, r := range roles {
		needed[i] = string(r)
	}
	need := "one of the roles " + strings.Join(needed, ", ")
	if len(roles) == 1 {
		need = "the " + needed[0] + " role"
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := Extract(r.Context())
			if err != nil {
				httpserver.WriteError(w, http.StatusUnauthorized, "unauthenticated", "no verified identity on this request")
				return
			}
			for _, role := range roles {
				if id.Role == role {
					next.ServeHTTP(w, r)
					return
				}
			}
			httpserver.WriteError(w, http.StatusForbidden, "forbidden", "your role ("+string(id.Role)+") may not do this: it needs "+need)
		})
	}
}
