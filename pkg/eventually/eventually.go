// Package eventually waits, in a test, for something that happens in the
// background: polling with a deadline, never a fixed sleep.
package eventually

import (
	"testing"
	"time"
)

// interval is how long a poll waits between calls of the condition: short,
// so a test goes on soon after the condition holds, and fixed.
const interval = 10 * time.Millisecond

// True calls cond every few milliseconds until it returns true, and then
// returns. If cond has not held within the given time, True fails the test
// with t.Fatalf, saying what it waited for. cond is called at least once,
// and once more after the time is up, on the calling goroutine. Like
// t.Fatalf, True must be called from the test's own goroutine.
func True(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(interval)
	}
}

// NoError calls f every few milliseconds until it returns nil, and then
// returns. If f has not returned nil within the given time, NoError fails the
// test with t.Fatalf, saying what it waited for and the last error f
// returned (which can describe the state seen, not only a failure). f is
// called at least once, and once more after the time is up, on the calling
// goroutine. Like t.Fatalf, NoError must be called from the test's own
// goroutine.
func NoError(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(interval)
	}
}
