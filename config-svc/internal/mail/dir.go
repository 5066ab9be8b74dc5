package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Dir writes each message as an .eml file (RFC 5322, CRLF lines) into a
// pickup directory: named by the time and a random part, so that a
// listing sorts by time, and readable by its owner only (a message holds
// a reset link). A file appears complete: it is written under a hidden
// temporary name and renamed.
type Dir struct {
	Path string
	Now  func() time.Time // nil: time.Now
}

// Send writes m into d.Path.
func (d Dir) Send(_ context.Context, m Message) error {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	t := now()
	msg, err := m.Bytes(t)
	if err != nil {
		return permanentError{err}
	}
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return fmt.Errorf("name the message file: %w", err)
	}
	name := filepath.Join(d.Path, t.UTC().Format("20060102T150405.000000Z")+"-"+hex.EncodeToString(r[:])+".eml")
	f, err := os.CreateTemp(d.Path, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write to the pickup directory: %w", err)
	}
	_, err = f.Write(msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write to the pickup directory: %w", err)
	}
	return nil
}
