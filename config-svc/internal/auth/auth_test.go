package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/authtoken"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// twoKeys writes two keys into dir, the first an hour older.
func twoKeys(t *testing.T, dir string) (oldPath, newPath string) {
	t.Helper()
	oldPath, err := WriteNewKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	newPath, err = WriteNewKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(oldPath, past, past); err != nil {
		t.Fatal(err)
	}
	return oldPath, newPath
}

func TestKeyRingSelectsAndPublishes(t *testing.T) {
	dir := t.TempDir()
	oldPath, newPath := twoKeys(t, dir)
	k, err := LoadKeyRing(dir, "", false, discard)
	if err != nil {
		t.Fatal(err)
	}
	kid, key := k.Signer()
	want, _ := authtoken.KeyID(mustKey(t, newPath).Public())
	if kid != want || !key.Equal(mustKey(t, newPath)) {
		t.Fatalf("signer %s, want the newest file's key %s", kid, want)
	}
	if got := len(k.JWKS().Keys); got != 2 {
		t.Fatalf("JWKS publishes %d keys, want every key in the directory", got)
	}
	oldKID, _ := authtoken.KeyID(mustKey(t, oldPath).Public())
	pinned, err := LoadKeyRing(dir, oldKID, false, discard)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := pinned.Signer(); kid != oldKID {
		t.Fatalf("pinned signer %s, want %s", kid, oldKID)
	}
	// Retiring the old key: removed from the directory, gone after a reload.
	if err := os.Remove(oldPath); err != nil {
		t.Fatal(err)
	}
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := len(k.JWKS().Keys); got != 1 {
		t.Fatalf("after retiring a key the JWKS has %d keys", got)
	}
}

// TestKeyRingNewestBehindSymlinks: in a Kubernetes Secret volume every key
// file is a symbolic link (into the volume's current data directory), all
// made at once when the pod starts; the newest key is the newest file they
// point to, not the newest link.
func TestKeyRingNewestBehindSymlinks(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	oldPath, newPath := twoKeys(t, data)
	// The link to the new key first, so the old key's link is the newer.
	for _, target := range []string{newPath, oldPath} {
		if err := os.Symlink(target, filepath.Join(dir, filepath.Base(target))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	k, err := LoadKeyRing(dir, "", false, discard)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := authtoken.KeyID(mustKey(t, newPath).Public())
	if kid, _ := k.Signer(); kid != want {
		t.Fatalf("signer %s, want the newest file's key %s (its link is the older)", kid, want)
	}
}

func mustKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyRingErrors(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tests := []struct {
		name  string
		files map[string][]byte
		kid   string
		want  string
	}{
		{"empty", nil, "", "no signing keys in"},
		{"not PEM", map[string][]byte{"a.pem": []byte("hello")}, "", `not a PEM "PRIVATE KEY"`},
		{"RSA", map[string][]byte{"a.pem": rsaPEM}, "", "signing keys must be Ed25519"},
		{"unknown pinned kid", nil, "nope", "-signing-kid nope is none of the keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.kid != "" {
				if _, err := WriteNewKey(dir); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadKeyRing(dir, tt.kid, false, discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := LoadKeyRing(filepath.Join(t.TempDir(), "missing"), "", false, discard); err == nil {
		t.Fatal("a missing directory loaded")
	}
	_, err := LoadKeyRing(t.TempDir(), "", false, discard)
	if !errors.Is(err, ErrNoKeys) {
		t.Fatalf("empty directory: %v", err)
	}
}

func TestDevGenerateOnlyWhenEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	for range 2 {
		if _, err := LoadKeyRing(dir, "", true, discard); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	if len(files) != 1 {
		t.Fatalf("%d keys generated, want 1", len(files))
	}
	info, _ := os.Stat(files[0])
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
}

func TestCheckPasswordAndEmail(t *testing.T) {
	pw := []struct{ pw, want string }{
		{"correct horse", ""},
		{"", "is required: choose one of at least 10 characters"},
		{"short", "at least 10"},
		{strings.Repeat("é", 40), "at most 72 bytes"},
		{"          ", "blank"},
	}
	for _, tt := range pw {
		if got := CheckPassword(tt.pw, "a@b.example"); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("CheckPassword(%q) = %q, want %q", tt.pw, got, tt.want)
		}
	}
	emails := []struct{ email, want string }{
		{"a@b.example", ""},
		{"", "is required: an e-mail address"},
		{"ab.example", "not an e-mail"},
		{"a@b@c.example", "not an e-mail"},
		{"a@localhost", "full domain"},
		{"a b@c.example", "cannot have"},
	}
	for _, tt := range emails {
		if got := CheckEmail(tt.email); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("CheckEmail(%q) = %q, want %q", tt.email, got, tt.want)
		}
	}
	// A new address must not hold what no address holds; CheckEmail, which
	// logins use, still lets them through to the lookup.
	for _, tt := range append(emails, []struct{ email, want string }{
		{"a\x00@b.example", "has the character U+0000"},
		{"a@b.example\x7f", "has the character U+007F"},
		{"a\u2028@b.example", "has the character U+2028"},
		{"a\u2066@b.example", "has the character U+2066"},
		{"müller@b.example", ""},
	}...) {
		if got := CheckNewEmail(tt.email); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("CheckNewEmail(%q) = %q, want %q", tt.email, got, tt.want)
		}
	}
	if got := CheckEmail("a\x00@b.example"); got != "" {
		t.Errorf("CheckEmail of a stored address with a NUL = %q, want it let through to the lookup", got)
	}
}

func TestHasher(t *testing.T) {
	h, err := NewHasher(4)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := h.Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check(hash, "correct horse battery") || h.Check(hash, "wrong") || h.Check("", "anything") {
		t.Fatal("Check gives wrong answers")
	}
}
