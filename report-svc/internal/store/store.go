// Package store reads the report tables (rollup_daily, rollup_hourly,
// filtered_hits, realtime) from Cassandra. Every read runs through one
// circuit breaker with a per-read timeout, so that a failing store makes
// requests fail within milliseconds instead of piling up behind timeouts,
// and the breaker closes again by itself once a probe read succeeds.
package store

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Config holds the read settings.
type Config struct {
	// Timeout bounds how long a read (one partition) waits for the
	// store's answer, and then between one row and the next.
	Timeout time.Duration
	// BreakerFailures is how many consecutive failed reads open the breaker.
	BreakerFailures uint
	// BreakerOpen is how long the breaker stays open before it lets one
	// probe read through; it is also the Retry-After of a 503.
	BreakerOpen time.Duration
	// Concurrency bounds the reads in flight in this process.
	Concurrency int
}

// RegisterFlags registers the read flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Timeout, "store-timeout", time.Second, "how long a Cassandra read (one partition) may wait for the store's answer, and then between one row and the next; a read past it fails and counts against the circuit breaker")
	fs.UintVar(&c.BreakerFailures, "breaker-failures", 5, "consecutive failed Cassandra reads that open the circuit breaker")
	fs.DurationVar(&c.BreakerOpen, "breaker-open-timeout", 5*time.Second, "how long an open breaker refuses reads before one probe read; also the Retry-After of a 503")
	fs.IntVar(&c.Concurrency, "store-concurrency", 128, "Cassandra reads in flight at once in this process")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return errors.New("-store-timeout must be positive")
	case c.BreakerFailures < 1:
		return errors.New("-breaker-failures must be at least 1")
	case c.BreakerOpen <= 0:
		return errors.New("-breaker-open-timeout must be positive")
	case c.Concurrency < 1:
		return errors.New("-store-concurrency must be at least 1")
	}
	return nil
}

// ErrUnavailable is wrapped by every error of a read that did not reach a
// healthy store: the breaker is open, the read timed out or failed.
var ErrUnavailable = errors.New("report store unavailable")

// UnavailableError says why the store could not be read and when to try
// again.
type UnavailableError struct {
	Reason     string        // for people: "circuit breaker open", "read timed out"...
	RetryAfter time.Duration // when the breaker will let a probe through
	Err        error
}

func (e *UnavailableError) Error() string {
	if e.Err != nil {
		return "report store unavailable (" + e.Reason + "): " + e.Err.Error()
	}
	return "report store unavailable (" + e.Reason + ")"
}

// Unwrap makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Store reads the report tables. It is safe for concurrent use.
type Store struct {
	session *gocql.Session
	cfg     Config
	cb      *gobreaker.CircuitBreaker[struct{}]
	sem     chan struct{}
	m       *storeMetrics
}

type storeMetrics struct {
	reads    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	state    prometheus.Gauge
	changes  *prometheus.CounterVec
}

// New returns a Store reading through session. Metrics are registered on
// reg (nil: not registered).
func New(session *gocql.Session, cfg Config, reg prometheus.Registerer) *Store {
	m := &storeMetrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "report_store_reads_total", Help: "Cassandra reads by table and outcome (ok, error, timeout, rejected by the open breaker).",
		}, []string{"table", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "report_store_read_seconds", Help: "Duration of Cassandra reads that reached the store, by table.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"table"}),
		state: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "report_store_breaker_state", Help: "State of the Cassandra circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "report_store_breaker_changes_total", Help: "Circuit breaker state changes by new state.",
		}, []string{"to"}),
	}
	if reg != nil {
		reg.MustRegister(m.reads, m.duration, m.state, m.changes)
	}
	s := &Store{session: session, cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), m: m}
	s.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "cassandra",
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		IsExcluded:  func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			m.state.Set(float64(to))
			m.changes.WithLabelValues(to.String()).Inc()
		},
	})
	return s
}

// BreakerState returns the breaker's state: "closed", "half-open" or "open".
func (s *Store) BreakerState() string { return s.cb.State().String() }

// Refuse returns the error an open breaker fails a read of table with
// (counted as rejected), and nil while it is not open. A caller about to
// wait for a read (for a turn among its reads, or for a read of the same
// partition in flight, which another caller started before the breaker
// opened and which may hang until -store-timeout) asks first, so that an
// open breaker fails it at once, as it does a read that waits for nothing.
func (s *Store) Refuse(table string) error {
	if s.cb.State() != gobreaker.StateOpen {
		return nil
	}
	s.m.reads.WithLabelValues(table, "rejected").Inc()
	return s.rejected(gobreaker.ErrOpenState)
}

// rejected is the error of a read the breaker rejected with err.
func (s *Store) rejected(err error) error {
	return &UnavailableError{Reason: "circuit breaker open after repeated failures", RetryAfter: s.retryAfter(), Err: err}
}

// errCallerGone marks a read abandoned because its caller went away; it
// says nothing about the store, so the breaker ignores it.
var errCallerGone = errors.New("caller went away")

// read runs fn, which performs one read with ctx, through the breaker and
// the concurrency limit, with the read timeout: the store may take at most
// that long to answer, and then between one row and the next (fn calls
// progress at each row). A large partition read page by page, a row
// coming every moment, is no timeout however long it takes in all (its
// caller's context bounds that): counted against the breaker, one
// merchant's large report read by a healthy store opened the breaker for
// every merchant's reports. A store that stops answering still fails the
// read within the timeout.
func (s *Store) read(ctx context.Context, table string, fn func(ctx context.Context, progress func()) error) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	start := time.Now()
	_, err := s.cb.Execute(func() (struct{}, error) {
		rctx, progress, cancel := idleDeadline(ctx, s.cfg.Timeout)
		defer cancel()
		err := fn(rctx, progress)
		if err != nil && ctx.Err() != nil {
			return struct{}{}, fmt.Errorf("%w: %w", errCallerGone, ctx.Err())
		}
		if err != nil && rctx.Err() != nil {
			return struct{}{}, &UnavailableError{Reason: "read timed out: no answer for " + s.cfg.Timeout.String(), RetryAfter: s.cfg.BreakerOpen, Err: err}
		}
		return struct{}{}, err
	})
	switch {
	case err == nil:
		s.m.reads.WithLabelValues(table, "ok").Inc()
		s.m.duration.WithLabelValues(table).Observe(time.Since(start).Seconds())
		return nil
	case errors.Is(err, errCallerGone):
		return ctx.Err()
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		s.m.reads.WithLabelValues(table, "rejected").Inc()
		return s.rejected(err)
	case errors.Is(err, ErrUnavailable):
		s.m.reads.WithLabelValues(table, "timeout").Inc()
		return err
	default:
		s.m.reads.WithLabelValues(table, "error").Inc()
		return &UnavailableError{Reason: "read failed", RetryAfter: s.cfg.BreakerOpen, Err: err}
	}
}

// idleDeadline returns a context of parent that ends, with
// context.DeadlineExceeded, once d has passed without a call of progress
// (counted from now), and a cancel function to call when done.
func idleDeadline(parent context.Context, d time.Duration) (ctx context.Context, progress func(), cancel func()) {
	ctx, stop := context.WithCancelCause(parent)
	t := time.AfterFunc(d, func() { stop(context.DeadlineExceeded) })
	return ctx, func() { t.Reset(d) }, func() { t.Stop(); stop(context.Canceled) }
}

// retryAfter is how long until the open breaker lets a probe through; the
// breaker does not expose its expiry, so the full open period is the bound.
func (s *Store) retryAfter() time.Duration { return s.cfg.BreakerOpen }

// query prepares a read: no driver retries (the breaker, not retries,
// deals with an unhealthy store), idempotent.
func (s *Store) query(ctx context.Context, cql string, args ...any) *gocql.Query {
	return s.session.Query(cql, args...).WithContext(ctx).RetryPolicy(nil).Idempotent(true)
}

// DailyRow is one rollup_daily row as stored: one dimension value of one
// processing shard. Users is the encoded sketch (nil when not asked for).
type DailyRow struct {
	Dimension string
	Shard     int
	Users     []byte
	rollup.Metrics
}

const selectDailyNoUsers = "SELECT dimension, shard, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, unique_pageviews, entrances, exits, time_on_page_ms, time_on_page_views, events, unique_events, event_value, conversions, conversion_value FROM rollup_daily WHERE property_id = ? AND day = ? AND report = ?"

// Daily reads one report's rows of one day (one partition), every shard.
// withUsers says whether to read the users sketches.
func (s *Store) Daily(ctx context.Context, property gocql.UUID, day time.Time, report string, withUsers bool) ([]DailyRow, error) {
	var out []DailyRow
	err := s.read(ctx, "rollup_daily", func(ctx context.Context, progress func()) error {
		out = out[:0]
		cql := selectDailyNoUsers
		if withUsers {
			cql = rollup.SelectDaily
		}
		iter := s.query(ctx, cql, property, day, report).Iter()
		for {
			var r DailyRow
			var shard int16
			dest := []any{&r.Dimension, &shard}
			if withUsers {
				dest = append(dest, &r.Users)
			}
			if !iter.Scan(append(dest, r.Metrics.Pointers()...)...) {
				break
			}
			r.Shard = int(shard)
			out = append(out, r)
			progress()
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("read rollup_daily %s %s: %w", day.Format(time.DateOnly), report, err)
		}
		return nil
	})
	return out, err
}

// HourlyRow is one rollup_hourly row: the totals of sessions that started
// in one property-local hour, of one shard.
type HourlyRow struct {
	Hour  int
	Shard int
	Users []byte
	rollup.Metrics
}

// Hourly reads the hourly totals of one day (one partition).
func (s *Store) Hourly(ctx context.Context, property gocql.UUID, day time.Time, withUsers bool) ([]HourlyRow, error) {
	var out []HourlyRow
	err := s.read(ctx, "rollup_hourly", func(ctx context.Context, progress func()) error {
		out = out[:0]
		iter := s.query(ctx, "SELECT hour, shard, users_hll, new_users, sessions, engaged_sessions, bounces, session_duration_ms, pageviews, events, conversions, conversion_value FROM rollup_hourly WHERE property_id = ? AND day = ?",
			property, day).Iter()
		for {
			var r HourlyRow
			var hour, shard int16
			var users []byte
			m := &r.Metrics
			if !iter.Scan(&hour, &shard, &users, &m.NewUsers, &m.Sessions, &m.EngagedSessions, &m.Bounces, &m.DurationMS, &m.Pageviews, &m.Events, &m.Conversions, &m.ConversionValue) {
				break
			}
			r.Hour, r.Shard = int(hour), int(shard)
			if withUsers {
				r.Users = users
			}
			out = append(out, r)
			progress()
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("read rollup_hourly %s: %w", day.Format(time.DateOnly), err)
		}
		return nil
	})
	return out, err
}

// FilteredRow is one filtered_hits row: hits excluded for one reason on one
// day by one shard.
type FilteredRow struct {
	Reason string
	Shard  int
	Hits   int64
}

// Filtered reads the filtered hits of one day (one partition).
func (s *Store) Filtered(ctx context.Context, property gocql.UUID, day time.Time) ([]FilteredRow, error) {
	var out []FilteredRow
	err := s.read(ctx, "filtered_hits", func(ctx context.Context, progress func()) error {
		out = out[:0]
		iter := s.query(ctx, "SELECT reason, shard, hits FROM filtered_hits WHERE property_id = ? AND day = ?", property, day).Iter()
		for {
			var r FilteredRow
			var shard int16
			if !iter.Scan(&r.Reason, &shard, &r.Hits) {
				break
			}
			r.Shard = int(shard)
			out = append(out, r)
			progress()
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("read filtered_hits %s: %w", day.Format(time.DateOnly), err)
		}
		return nil
	})
	return out, err
}

// RealtimeRow is one realtime row: pageviews of one UTC minute by one shard.
type RealtimeRow struct {
	Minute    time.Time
	Shard     int
	Pageviews int64
	Users     []byte
	Pages     map[string]int64
	Sources   map[string]int64
}

// Realtime reads the realtime rows of minutes at or after since, newest
// first (then by shard).
func (s *Store) Realtime(ctx context.Context, property gocql.UUID, since time.Time) ([]RealtimeRow, error) {
	var out []RealtimeRow
	err := s.read(ctx, "realtime", func(ctx context.Context, progress func()) error {
		out = out[:0]
		iter := s.query(ctx, "SELECT minute, shard, pageviews, users_hll, pages, sources FROM realtime_minutes WHERE property_id = ? AND minute >= ?", property, since).Iter()
		for {
			var r RealtimeRow
			var shard int16
			if !iter.Scan(&r.Minute, &shard, &r.Pageviews, &r.Users, &r.Pages, &r.Sources) {
				break
			}
			r.Shard = int(shard)
			out = append(out, r)
			progress()
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("read realtime_minutes: %w", err)
		}
		return nil
	})
	return out, err
}

// NewestMinute returns the newest minute at or after since of the
// property's realtime rows, and false when there is none. since bounds what
// Cassandra reads when the property has no recent row: the partition holds
// every minute's row, expired ones as tombstones until compaction purges
// them (cql/0016_realtime_compaction.cql), and a read without a bound would
// walk through all of them to find none.
func (s *Store) NewestMinute(ctx context.Context, property gocql.UUID, since time.Time) (time.Time, bool, error) {
	var minute time.Time
	err := s.read(ctx, "realtime", func(ctx context.Context, _ func()) error {
		err := s.query(ctx, "SELECT minute FROM realtime_minutes WHERE property_id = ? AND minute >= ? LIMIT 1", property, since).Scan(&minute)
		if errors.Is(err, gocql.ErrNotFound) {
			minute = time.Time{}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the newest realtime minute: %w", err)
		}
		return nil
	})
	return minute, !minute.IsZero(), err
}
