//go:build !unix

package cqlserver

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only checks that the data directory is writable on platforms
// without flock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file in data dir %s: %w", dir, err)
	}
	return f, nil
}

func unlockDir(f *os.File) {
	if f != nil {
		f.Close()
	}
}
