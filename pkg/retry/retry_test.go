package retry_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
)

func TestBackoffWait(t *testing.T) {
	b := retry.Default
	tests := []struct {
		n    int
		want time.Duration // before jitter
	}{
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{3, 2 * time.Second},
		{5, 8 * time.Second},
		{6, 15 * time.Second},
		{7, 15 * time.Second},
		{1000, 15 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			got := b.Wait(tt.n)
			if got > tt.want || got < tt.want-tt.want/5 {
				t.Fatalf("Wait(%d) = %s, want within the fifth below %s", tt.n, got, tt.want)
			}
		}
	}
}

var fast = retry.Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}

func TestUntilSucceedsAfterFailures(t *testing.T) {
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	calls := 0
	err := retry.Until(context.Background(), fast, log, "connect to the thing", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("connection refused")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Until = %v after %d calls, want nil after 3", err, calls)
	}
	out := logs.String()
	if got := strings.Count(out, `level=WARN msg="connect to the thing failed; retrying" error="connection refused"`); got != 2 {
		t.Errorf("%d warnings of the failed attempts, want 2:\n%s", got, out)
	}
	if !strings.Contains(out, `level=INFO msg="connect to the thing succeeded after failed attempts" failed_attempts=2`) {
		t.Errorf("no info line on success after failures:\n%s", out)
	}
}

func TestUntilSucceedsAtOnceQuietly(t *testing.T) {
	var logs logtest.Buffer
	err := retry.Until(context.Background(), fast, slog.New(slog.NewTextHandler(&logs, nil)), "x", func(context.Context) error { return nil })
	if err != nil || logs.String() != "" {
		t.Fatalf("Until = %v, logged %q; want nil and nothing logged", err, logs.String())
	}
}

func TestUntilStopsOnPermanentError(t *testing.T) {
	refused := errors.New("password incorrect")
	calls := 0
	err := retry.Until(context.Background(), fast, slog.New(slog.DiscardHandler), "log in", func(context.Context) error {
		calls++
		return retry.Permanent(refused)
	})
	if !errors.Is(err, refused) || !retry.IsPermanent(err) || calls != 1 {
		t.Fatalf("Until = %v after %d calls, want the permanent error after 1", err, calls)
	}
	if retry.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
}

// TestUntilReturnsWhenCtxEnds cancels during a long wait: Until returns at
// once with ctx's error and the last attempt's.
func TestUntilReturnsWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- retry.Until(ctx, retry.Backoff{Min: time.Hour, Max: time.Hour}, slog.New(slog.DiscardHandler), "x", func(context.Context) error {
			close(failed)
			return errors.New("connection refused")
		})
	}()
	<-failed
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Until = %v, want context.Canceled with the last attempt's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Until still waiting after ctx was cancelled")
	}
}

// Abandonable returns when ctx ends, not when the call does, and hands
// what the abandoned call returns later to release.
func TestAbandonableReleasesWhatAnAbandonedCallOpens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	unblock := make(chan struct{})
	released := make(chan int, 1)
	returned := make(chan error, 1)
	go func() {
		_, err := retry.Abandonable(ctx, func() (int, error) {
			<-unblock // a connect that takes no context and hangs
			return 42, nil
		}, func(v int) { released <- v })
		returned <- err
	}()
	cancel()
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Abandonable = %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Abandonable did not return when ctx ended")
	}
	close(unblock)
	select {
	case v := <-released:
		if v != 42 {
			t.Fatalf("released %d, want 42", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("what the abandoned call returned was not released")
	}

	v, err := retry.Abandonable(context.Background(), func() (int, error) { return 7, nil }, func(int) { t.Error("released a value returned") })
	if v != 7 || err != nil {
		t.Fatalf("Abandonable of a call that returns = %d, %v; want 7, nil", v, err)
	}
}
