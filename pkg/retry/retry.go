// Package retry waits out a dependency that is not there yet: it calls an
// operation until it succeeds, with a capped exponential backoff between
// attempts, and stops at once on an error marked as one that waiting cannot
// heal. Services use it at start, so that one started during an outage of
// Cassandra, Kafka or the Consul agent waits for it instead of exiting.
package retry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Backoff is how long to wait between attempts: Min after the first
// failure, doubling after each further one up to Max. Each wait is
// shortened by up to a fifth at random, so that instances started together
// (a rollout, every pod after a node failure) do not retry in step.
type Backoff struct {
	Min, Max time.Duration
}

// Default is the backoff of a service waiting for a dependency at start:
// 500 ms doubling to 15 s. A dependency that comes back is used within
// 15 s, and an outage of minutes costs a few attempts a minute per
// instance.
var Default = Backoff{Min: 500 * time.Millisecond, Max: 15 * time.Second}

// Wait returns the wait after the nth consecutive failure (n ≥ 1).
func (b Backoff) Wait(n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 0 {
		return 0
	}
	return d - rand.N(d/5+1)
}

// permanent marks an error that waiting cannot heal.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that waiting cannot heal (a refused
// password, a token without the right), so that Until returns it at once.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Until calls try until it returns nil, returns an error marked Permanent,
// or ctx is done. After each other failure it logs at warn what failed
// ("<what> failed; retrying", with the error, the attempt and the wait)
// and waits b.Wait(n); when try succeeds after failures it logs at info how
// long it took. try gets ctx and should return soon after ctx is done.
//
// It returns nil on success; the error try returned for a permanent
// failure; and when ctx ends first an error wrapping ctx.Err() that also
// says what the last attempt returned.
func Until(ctx context.Context, b Backoff, log *slog.Logger, what string, try func(ctx context.Context) error) error {
	start := time.Now()
	for n := 1; ; n++ {
		err := try(ctx)
		if err == nil {
			if n > 1 {
				log.Info(what+" succeeded after failed attempts", slog.Int("failed_attempts", n-1),
					slog.Duration("waited", time.Since(start).Round(time.Millisecond)))
			}
			return nil
		}
		if IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		wait := b.Wait(n)
		log.Warn(what+" failed; retrying", slog.Any("error", err), slog.Int("attempt", n),
			slog.Duration("retry_in", wait.Round(time.Millisecond)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Abandonable makes one attempt with open, a call that takes no context
// (a driver's connect: gocql's CreateSession, sarama's NewSyncProducer),
// and returns what it returns, or at once an error wrapping ctx.Err()
// when ctx ends first. The abandoned call runs on in its own goroutine,
// and what it returns then is given to release (closing it), so that
// nothing it opened is left open; release may be nil, and is not called
// for a failed call. It is what a try of Until uses when the operation
// cannot be cancelled: a shutdown during an attempt that takes longer
// than the shutdown may last (brokers that drop packets: about 30 s)
// returns promptly instead.
func Abandonable[T any](ctx context.Context, open func() (T, error), release func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := open()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil && release != nil {
				release(r.v)
			}
		}()
		var zero T
		return zero, fmt.Errorf("abandoned an attempt that takes no context: %w", ctx.Err())
	}
}
