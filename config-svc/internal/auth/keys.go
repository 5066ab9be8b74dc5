// Package auth holds config-svc's credentials machinery: the Ed25519 signing
// keys read from a directory and published as a JWKS, access tokens signed
// with them (pkg/authtoken claims), refresh tokens and API secrets (random,
// stored only as hashes), and password hashing.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
)

// KeyRing is the set of signing keys in a directory: every key is published
// in the JWKS, one signs new tokens. Rotation is done in the directory alone:
// add the new key (it is published at the next reload and, being the newest,
// signs from then on unless a kid is pinned), and remove the old one once the
// access-token lifetime has passed.
type KeyRing struct {
	dir    string
	pinned string // -signing-kid; empty: the newest file signs
	log    *slog.Logger

	mu     sync.RWMutex
	keys   []signingKey // newest first
	active signingKey
}

type signingKey struct {
	kid     string
	file    string
	modTime time.Time
	priv    ed25519.PrivateKey
}

// ErrNoKeys is returned when the directory holds no signing key.
var ErrNoKeys = errors.New("no signing keys")

// LoadKeyRing reads the keys in dir. pinnedKID selects the signing key
// (empty: the newest file). With generate, an empty or missing directory
// first gets a new key: for development only.
func LoadKeyRing(dir, pinnedKID string, generate bool, log *slog.Logger) (*KeyRing, error) {
	if generate {
		if _, err := GenerateKeyFileIfEmpty(dir); err != nil {
			return nil, err
		}
	}
	k := &KeyRing{dir: dir, pinned: pinnedKID, log: log}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload rereads the directory. On error the keys loaded before stay in use.
func (k *KeyRing) Reload() error {
	keys, err := readKeys(k.dir)
	if err != nil {
		return err
	}
	active := keys[0]
	if k.pinned != "" {
		found := false
		for _, key := range keys {
			if key.kid == k.pinned {
				active, found = key, true
			}
		}
		if !found {
			return fmt.Errorf("-signing-kid %s is none of the keys in %s", k.pinned, k.dir)
		}
	}
	k.mu.Lock()
	changed := k.active.kid != active.kid || len(k.keys) != len(keys)
	k.keys, k.active = keys, active
	k.mu.Unlock()
	if changed {
		kids := make([]string, len(keys))
		for i, key := range keys {
			kids[i] = key.kid
		}
		k.log.Info("signing keys loaded", slog.String("dir", k.dir), slog.String("signing_kid", active.kid), slog.Any("published_kids", kids))
	}
	return nil
}

// Run reloads the directory every interval until ctx is done, so that a
// rotation needs no restart.
func (k *KeyRing) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.Reload(); err != nil {
				k.log.Warn("reload signing keys failed; keeping the keys loaded before", slog.Any("error", err))
			}
		}
	}
}

// Signer returns the key that signs new tokens and its kid.
func (k *KeyRing) Signer() (kid string, key ed25519.PrivateKey) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active.kid, k.active.priv
}

// JWKS returns the public keys of every key in the directory.
func (k *KeyRing) JWKS() authtoken.JWKS {
	k.mu.RLock()
	defer k.mu.RUnlock()
	set := authtoken.JWKS{Keys: make([]authtoken.JWK, 0, len(k.keys))}
	for _, key := range k.keys {
		jwk, err := authtoken.NewJWK(key.priv.Public(), key.kid)
		if err == nil {
			set.Keys = append(set.Keys, jwk)
		}
	}
	return set
}

func readKeys(dir string) ([]signingKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w (set -signing-keys-dir to a directory of PEM PKCS#8 Ed25519 keys)", err)
	}
	var keys []signingKey
	seen := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		// The file's own time, not a link's: in a Kubernetes Secret volume
		// every key is a link, all made when the pod started.
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		priv, err := ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		kid, err := authtoken.KeyID(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		if other, dup := seen[kid]; dup {
			return nil, fmt.Errorf("signing keys %s and %s are the same key", other, path)
		}
		seen[kid] = path
		keys = append(keys, signingKey{kid: kid, file: path, modTime: info.ModTime(), priv: priv})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w in %s: create one with `openssl genpkey -algorithm ed25519 -out %s/key-%s.pem` (development: -dev-generate-key)",
			ErrNoKeys, dir, dir, time.Now().UTC().Format("20060102"))
	}
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].modTime.Equal(keys[j].modTime) {
			return keys[i].modTime.After(keys[j].modTime)
		}
		return keys[i].file > keys[j].file
	})
	return keys, nil
}

// ParsePrivateKey decodes a PEM PKCS#8 Ed25519 private key.
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`not a PEM "PRIVATE KEY" (PKCS#8) block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key; signing keys must be Ed25519", k)
	}
	return priv, nil
}

// EncodePrivateKey encodes an Ed25519 key as PEM PKCS#8.
func EncodePrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// GenerateKeyFileIfEmpty creates dir if needed and, when it holds no .pem
// file, writes a new Ed25519 key into it (mode 0600) and returns its path.
// For development: production keys are made and distributed by operators.
func GenerateKeyFileIfEmpty(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create signing keys dir: %w", err)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return "", err
	}
	if len(matches) > 0 {
		return "", nil
	}
	return WriteNewKey(dir)
}

// WriteNewKey writes a new Ed25519 key into dir and returns its path. The
// file appears atomically (written aside, then renamed).
func WriteNewKey(dir string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	b, err := EncodePrivateKey(priv)
	if err != nil {
		return "", err
	}
	kid, err := authtoken.KeyID(priv.Public())
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("key-%s-%s.pem", time.Now().UTC().Format("20060102T150405"), kid[:8]))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	return path, nil
}
