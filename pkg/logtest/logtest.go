// Package logtest helps tests read what a service logged.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a log sink a test reads while the goroutines of the code under
// test write to it (a bytes.Buffer alone is not safe for that).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
