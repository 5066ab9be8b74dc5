package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/acme/analytics/config-svc/internal/auth"
	"github.com/acme/analytics/config-svc/internal/store"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/gocql/gocql"
)

// maxActiveSecrets bounds the valid secrets of one property: collection
// hashes a submitted secret once and compares it with each.
const maxActiveSecrets = 20

// Revoked secrets are listed for revokedSecretsKept after their revocation,
// then deleted when the property's next secret is made; and a property
// makes at most maxRecentSecrets in that time, revoked ones included. So
// its secrets stay a few rows, which every read of its document (each
// pipeline fetch) and every creation reads: a script making and revoking
// secrets in a loop grew them without bound.
const (
	revokedSecretsKept = 30 * 24 * time.Hour
	maxRecentSecrets   = 100
)

// SecretJSON is an API secret as listed: masked, never the secret itself.
type SecretJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Masked    string     `json:"masked"`
	Status    string     `json:"status"` // active | revoked
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewSecretJSON is the answer of creating a secret: the only time the
// secret itself is shown.
type NewSecretJSON struct {
	SecretJSON
	Secret string `json:"secret"`
}

func secretJSON(s store.Secret) SecretJSON {
	out := SecretJSON{ID: s.ID.String(), Name: s.Name, Masked: auth.APISecretPrefix + "…" + s.Hint, Status: "active", CreatedAt: s.CreatedAt.UTC()}
	if !s.RevokedAt.IsZero() {
		t := s.RevokedAt.UTC()
		out.Status, out.RevokedAt = "revoked", &t
	}
	return out
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	secrets, err := s.o.Store.Secrets(r.Context(), p.ID)
	if err != nil {
		s.internalError(w, r, "list API secrets", err)
		return
	}
	out := make([]SecretJSON, 0, len(secrets))
	for _, sec := range secrets {
		out = append(out, secretJSON(sec))
	}
	httpserver.WriteJSON(w, http.StatusOK, map[string]any{"api_secrets": out})
}

type createSecretRequest struct {
	Name string `json:"name"`
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	var req createSecretRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if !checkName(w, "name", req.Name, maxPropertyName) {
		return
	}
	ctx := r.Context()
	existing, err := s.o.Store.Secrets(ctx, p.ID)
	if err != nil {
		s.internalError(w, r, "list API secrets", err)
		return
	}
	active, recent, old := s.countSecrets(existing)
	for _, e := range old {
		if err := s.o.Store.DeleteSecret(ctx, p.ID, e.ID); err != nil {
			s.internalError(w, r, "delete an old revoked API secret", err)
			return
		}
	}
	if refusal := secretLimit(active, recent); refusal != "" {
		httpserver.WriteError(w, http.StatusConflict, "conflict", refusal)
		return
	}
	secret, err := auth.RandomToken(auth.APISecretPrefix)
	if err != nil {
		s.internalError(w, r, "make an API secret", err)
		return
	}
	sec := store.Secret{
		PropertyID: p.ID, ID: gocql.MustRandomUUID(), Name: strings.TrimSpace(req.Name),
		Hash: auth.HashToken(secret), Hint: secret[len(secret)-4:], CreatedAt: s.now(),
	}
	if err := s.o.Store.CreateSecret(ctx, sec); err != nil {
		s.internalError(w, r, "store the API secret", err)
		return
	}
	// Creations at the same moment all passed the check above: whichever
	// finds the property over a limit afterwards takes its own secret
	// back (none of them is known to anyone yet), so the limits hold.
	after, err := s.o.Store.Secrets(ctx, p.ID)
	if err == nil {
		active, recent, _ := s.countSecrets(after)
		if refusal := secretLimit(active-1, recent-1); refusal != "" {
			if err = s.o.Store.DeleteSecret(ctx, p.ID, sec.ID); err == nil {
				httpserver.WriteError(w, http.StatusConflict, "conflict", refusal+" (another secret was made at the same moment)")
				return
			}
		}
	}
	if err != nil {
		s.internalError(w, r, "check the API secret limits", err)
		return
	}
	s.appendChange(r, configclient.ChangeSecrets, p)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/v1/properties/"+p.ID.String()+"/api-secrets/"+sec.ID.String())
	httpserver.WriteJSON(w, http.StatusCreated, NewSecretJSON{SecretJSON: secretJSON(sec), Secret: secret})
}

func (s *Server) revokeSecret(w http.ResponseWriter, r *http.Request) {
	_, p, ok := s.callerProperty(w, r)
	if !ok {
		return
	}
	raw := r.PathValue("secret_id")
	sid, err := gocql.ParseUUID(raw)
	if err != nil {
		notFound(w, "API secret", raw)
		return
	}
	revoked, err := s.o.Store.RevokeSecret(r.Context(), p.ID, sid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			notFound(w, "API secret", raw)
			return
		}
		// Applied or not, the pipeline refetches the property: a
		// revocation whose answer was lost (a timeout after the replicas
		// applied it) is found done by its retry, which tells nothing,
		// and the pipeline would accept the secret until its resync.
		s.appendChange(r, configclient.ChangeSecrets, p)
		s.internalError(w, r, "revoke the API secret", err)
		return
	}
	// Revoking a revoked secret answers as the first time did (a retry
	// after a lost answer succeeds) and changes nothing: the pipeline was
	// told when the first attempt failed.
	if revoked {
		s.appendChange(r, configclient.ChangeSecrets, p)
	}
	w.WriteHeader(http.StatusNoContent)
}

// countSecrets counts a property's active secrets and those made in the
// last 30 days (revoked ones included, which are listed that long), and
// returns the revoked ones past that time, to delete.
func (s *Server) countSecrets(secrets []store.Secret) (active, recent int, old []store.Secret) {
	for _, e := range secrets {
		switch {
		case e.RevokedAt.IsZero():
			active++
		case e.RevokedAt.Before(s.now().Add(-revokedSecretsKept)):
			old = append(old, e)
			continue
		}
		recent++
	}
	return active, recent, old
}

// secretLimit says why a property with active and recent secrets may not
// make another, "" when it may.
func secretLimit(active, recent int) string {
	if active >= maxActiveSecrets {
		return fmt.Sprintf("this property already has the maximum of %d active API secrets; revoke one you no longer use first", maxActiveSecrets)
	}
	if recent >= maxRecentSecrets {
		return fmt.Sprintf("this property has made %d API secrets in the last 30 days, revoked ones included, the most it may; rotate them less often", maxRecentSecrets)
	}
	return ""
}
