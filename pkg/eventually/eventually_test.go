package eventually

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fatalTB records the message of Fatalf and stops its goroutine, as
// testing.T does, without failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls wait with a fatalTB on its own goroutine, as a test would on
// its own, and returns what Fatalf was told ("" if it was not called).
func run(wait func(testing.TB)) string {
	tb := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait(tb)
	}()
	<-done
	return tb.msg
}

func TestTrueReturnsWhenCondHolds(t *testing.T) {
	var n atomic.Int32
	msg := run(func(tb testing.TB) {
		True(tb, 5*time.Second, "the third call", func() bool { return n.Add(1) == 3 })
	})
	if msg != "" {
		t.Fatalf("True failed: %s", msg)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3", got)
	}
}

func TestTrueFailsWithWhat(t *testing.T) {
	msg := run(func(tb testing.TB) {
		True(tb, 30*time.Millisecond, "the moon", func() bool { return false })
	})
	if want := "the moon: not within 30ms"; msg != want {
		t.Fatalf("got %q, want %q", msg, want)
	}
}

func TestNoErrorReportsLastError(t *testing.T) {
	var n atomic.Int32
	msg := run(func(tb testing.TB) {
		NoError(tb, 30*time.Millisecond, "the queue drains", func() error {
			return fmt.Errorf("%d queued", n.Add(1))
		})
	})
	if want := fmt.Sprintf("the queue drains: not within 30ms: %d queued", n.Load()); msg != want {
		t.Fatalf("got %q, want %q", msg, want)
	}
	if n.Load() < 2 {
		t.Fatalf("f called %d times, want it polled", n.Load())
	}
}

func TestNoErrorReturnsOnNil(t *testing.T) {
	var n atomic.Int32
	msg := run(func(tb testing.TB) {
		NoError(tb, 5*time.Second, "nil", func() error {
			if n.Add(1) < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if msg != "" || n.Load() != 3 {
		t.Fatalf("NoError: %q after %d calls, want nothing after 3", msg, n.Load())
	}
}
