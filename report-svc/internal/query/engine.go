package query

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/acme/analytics/pkg/sketch"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/rollup"
	"github.com/acme/analytics/report-svc/internal/store"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
)

// Config holds the engine's caching and freshness settings.
type Config struct {
	// CacheTTL is how long a result over data that can still change is
	// reused for identical queries.
	CacheTTL time.Duration
	// FinalCacheTTL is how long a result over final data (ended before the
	// late-hit horizon) is reused.
	FinalCacheTTL time.Duration
	// StaleMaxAge is how old a cached result may be and still be served,
	// marked stale, while the store is unavailable or too slow for
	// ComputeTimeout.
	StaleMaxAge time.Duration
	// CacheBytes bounds the result cache.
	CacheBytes int64
	// DayCacheTTL is how long the merged rows of a final day are kept; it
	// bounds how long a reprocessed day can show its old numbers.
	DayCacheTTL time.Duration
	// DayCacheBytes bounds the day cache.
	DayCacheBytes int64
	// ProcessingDelay is how far behind real time processed data is when
	// processing keeps up: its flush interval plus the write.
	ProcessingDelay time.Duration
	// LateHorizon is how long after a day ends hits can still change it:
	// collection accepts hits up to 4 h old, plus 10 min of clock skew.
	LateHorizon time.Duration
	// ComputeTimeout bounds one report computation.
	ComputeTimeout time.Duration
	// DayConcurrency bounds the partitions one computation reads at once.
	DayConcurrency int
	// NoCoalesce turns off the sharing of one computation (and one read
	// per partition) among identical concurrent queries; for measuring the
	// cost of independent requests.
	NoCoalesce bool
}

// RegisterFlags registers the engine's flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 5*time.Second, "how long an identical query is answered from the result cache while its data can still change")
	fs.DurationVar(&c.FinalCacheTTL, "cache-final-ttl", 5*time.Minute, "how long an identical query over final data (past the late-hit horizon) is answered from the result cache")
	fs.DurationVar(&c.StaleMaxAge, "cache-stale-max-age", time.Hour, "how old a cached result may be and still be served, marked stale, while Cassandra is unavailable or too slow for -compute-timeout")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", 64<<20, "size bound of the result cache, in bytes")
	fs.DurationVar(&c.DayCacheTTL, "day-cache-ttl", 10*time.Minute, "how long the merged rows of a final day are kept in memory (bounds how long a reprocessed day shows old numbers)")
	fs.Int64Var(&c.DayCacheBytes, "day-cache-bytes", 512<<20, "size bound of the day cache, in bytes")
	fs.DurationVar(&c.ProcessingDelay, "processing-delay", 3*time.Second, "how far behind real time processed data is when processing keeps up (its -flush-interval, 2s, plus the write)")
	fs.DurationVar(&c.LateHorizon, "late-horizon", 4*time.Hour+15*time.Minute, "how long after a day ends late hits can still change it (collection accepts hits up to 4h old, plus clock skew)")
	fs.DurationVar(&c.ComputeTimeout, "compute-timeout", 10*time.Second, "time limit of one report computation")
	fs.IntVar(&c.DayConcurrency, "day-concurrency", 32, "partitions one report reads at once")
	fs.BoolVar(&c.NoCoalesce, "no-coalesce", false, "compute identical concurrent queries (and read their partitions) separately instead of sharing one computation")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	switch {
	case c.CacheTTL < 0 || c.FinalCacheTTL < 0 || c.StaleMaxAge < 0 || c.DayCacheTTL < 0:
		return errors.New("cache durations must not be negative")
	case c.CacheBytes < 0 || c.DayCacheBytes < 0:
		return errors.New("cache sizes must not be negative")
	case c.ProcessingDelay < 0 || c.LateHorizon < 0:
		return errors.New("-processing-delay and -late-horizon must not be negative")
	case c.ComputeTimeout <= 0:
		return errors.New("-compute-timeout must be positive")
	case c.DayConcurrency < 1:
		return errors.New("-day-concurrency must be at least 1")
	}
	return nil
}

// Property is what the engine needs to know about a property.
type Property struct {
	ID       gocql.UUID
	Location *time.Location
}

// Engine answers report queries from the rollups. It is safe for
// concurrent use.
type Engine struct {
	store *store.Store
	cfg   Config
	now   func() time.Time

	results  *lru[*cached]
	days     *lru[*dayData]
	activity *lru[activity]
	resultSF singleflight.Group
	daySF    singleflight.Group
	m        *engineMetrics
	// held, when set (tests), is told how many units a computation holds
	// read and not yet folded, each time one is read.
	held func(n int)
	// computed, when set (tests), is told each computation's end, which
	// may come after the request that started it has its answer.
	computed func(err error)
}

type engineMetrics struct {
	results *prometheus.CounterVec
	days    *prometheus.CounterVec
}

// New returns an engine reading from st. now is the clock (time.Now in
// production). Metrics are registered on reg (nil: not registered).
func New(st *store.Store, cfg Config, now func() time.Time, reg prometheus.Registerer) *Engine {
	m := &engineMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "report_results_total", Help: "Report results by origin: computed, cache (fresh hit), stale (served while the store is unavailable or too slow), unavailable (503).",
		}, []string{"origin"}),
		days: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "report_day_cache_total", Help: "Day partitions needed by reports, by whether the day cache had them.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.results, m.days)
	}
	return &Engine{
		store: st, cfg: cfg, now: now,
		results:  newLRU[*cached](cfg.CacheBytes),
		days:     newLRU[*dayData](cfg.DayCacheBytes),
		activity: newLRU[activity](1 << 20),
		m:        m,
	}
}

// Freshness says how complete the data of a result is.
type Freshness struct {
	// CompleteUpTo: every hit processed up to this instant is included (the
	// end of the range, or now minus the processing delay).
	CompleteUpTo time.Time
	// Final: the range ended before the late-hit horizon; its numbers no
	// longer change (short of reprocessing).
	Final bool
	// NewestActivity is the start of the newest minute in which a hit (a
	// pageview, an event, a ping) of the property was processed (from the
	// realtime rows, which live two hours and hold the users of every
	// hit): evidence that processing is keeping up. Zero when unknown.
	NewestActivity time.Time
	// ComputedAt is when the result was computed.
	ComputedAt time.Time
}

// Row is one row of a result.
type Row struct {
	Bucket   int      // index into Result.Buckets; -1 without granularity
	Dims     []string // in the order of Result.Dimensions
	Values   []float64
	Previous []float64 // the previous period's values (compare), nil when the row has none
}

// Result is a computed report, before pagination. Cached results are
// shared: never modify one. It holds no query: the cache counts what a
// result holds, and a query's compiled filter can be megabytes (an Answer
// carries the request's own).
type Result struct {
	Range          DateRange
	PreviousRange  *DateRange
	Buckets        []Bucket
	PreviousBucket []Bucket
	Rows           []Row
	Totals         []float64
	PreviousTotals []float64
	// UsersEstimated: some users count came from a HyperLogLog (a count
	// past sketch.ExactLimit); it is within sketch.StandardError.
	UsersEstimated bool
	Freshness      Freshness

	// renders memoizes encodings of the result (see Render), so that a
	// cached result is not encoded again for every request.
	renders sync.Map
	nRender atomic.Int32
	// grow, set before the result goes into the result cache, adds the
	// bytes of a memoized encoding to its entry there, so that they count
	// in the cache's bound; nil for a result not cached.
	grow func(n int64)
}

// maxRenders bounds the encodings memoized per result.
const maxRenders = 8

// Render returns the encoding of the result that key names, made by
// encode once and then memoized (for at most a few keys, only encodings
// under 1 MiB, and only while the result is cached; they count in the
// result cache's bound).
func (r *Result) Render(key string, encode func() []byte) []byte {
	if b, ok := r.renders.Load(key); ok {
		return b.([]byte)
	}
	b := encode()
	if r.grow != nil && len(b) <= 1<<20 && r.nRender.Add(1) <= maxRenders {
		if _, loaded := r.renders.LoadOrStore(key, b); !loaded {
			r.grow(int64(len(b)))
		}
	}
	return b
}

// do runs fn once for concurrent callers with the same key, unless
// coalescing is off.
func (e *Engine) do(ctx context.Context, g *singleflight.Group, key string, fn func() (any, error)) (any, error) {
	if e.cfg.NoCoalesce {
		return fn()
	}
	for tries := 0; ; tries++ {
		ch := g.DoChan(key, fn)
		select {
		case r := <-ch:
			if r.Shared && tries < 2 && errors.Is(r.Err, context.DeadlineExceeded) && !errors.Is(r.Err, store.ErrUnavailable) && ctx.Err() == nil {
				// Joined a read that another caller started and that ran
				// out of its time, while this caller has some left: read
				// again rather than fail for the other's lateness. Not a
				// read the store did not answer in time (ErrUnavailable):
				// that says the store is slow, for every caller alike, and
				// each reading again waited its time limit again and
				// counted against the breaker again.
				g.Forget(key)
				continue
			}
			return r.Val, r.Err
		case <-ctx.Done():
			// The computation goes on for the others waiting on it (and
			// the cache); this caller has run out of time.
			return nil, ctx.Err()
		}
	}
}

// sharedRead returns the context of a day's or a week's read, which
// concurrent reports share (through do): neither the report that starts it
// going away nor its deadline may end it for the others, so it has its own
// ComputeTimeout. Each report still stops waiting at its own deadline (do)
// and starts no more reads after it.
func (e *Engine) sharedRead(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ComputeTimeout)
}

// waitLimit bounds how long a request waits for its answer: ComputeTimeout
// from its arrival, whether it starts the computation or joins one that
// another started (and, when that one runs out of its starter's time, starts
// it again with its own). The request's context has no deadline, so without
// it a caller that joined a computation which timed out would start another
// and wait again, past the gateway's time limit for a report.
func (e *Engine) waitLimit(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.ComputeTimeout)
}

// shared returns the context of a report's computation, which identical
// concurrent queries share (through do): the caller that starts it going
// away must not cancel it for the others, but it keeps that caller's
// deadline, and at most ComputeTimeout from now.
func (e *Engine) shared(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(e.cfg.ComputeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// Answer is a result as served to one request.
type Answer struct {
	*Result
	// Query is the request's own query: the result may have been computed
	// for another request with the same key (the cache, a shared
	// computation), whose page (limit, offset) and range preset may
	// differ.
	Query    *Query
	Cached   bool   // from the result cache
	Stale    bool   // from the cache after a failed computation
	Fallback string // why a stale result was served
}

type cached struct {
	res        *Result
	rt         *Realtime
	freshUntil time.Time
}

// Report answers q for property p: from the result cache while fresh,
// else computed (identical concurrent queries share one computation);
// when the store is unavailable or the computation runs out of
// ComputeTimeout, from the cache marked stale if a result younger than
// StaleMaxAge is there, else the error.
func (e *Engine) Report(ctx context.Context, p Property, q *Query) (*Answer, error) {
	// The zone is part of the key: the same range means other days, and
	// presets other dates, once a merchant changes it.
	key := p.ID.String() + "|" + p.Location.String() + "|" + q.Key()
	now := e.now()
	c, ok := e.results.get(key, now)
	if ok && now.Before(c.freshUntil) {
		e.m.results.WithLabelValues("cache").Inc()
		return &Answer{Result: c.res, Query: q, Cached: true}, nil
	}
	wctx, cancel := e.waitLimit(ctx)
	defer cancel()
	v, err := e.do(wctx, &e.resultSF, key, func() (any, error) {
		cctx, cancel := e.shared(wctx)
		defer cancel()
		res, err := e.compute(cctx, p, q)
		if e.computed != nil {
			e.computed(err)
		}
		if err != nil {
			return nil, err
		}
		ttl := e.cfg.CacheTTL
		if res.Freshness.Final {
			ttl = e.cfg.FinalCacheTTL
		}
		computed := res.Freshness.ComputedAt
		keep := max(ttl, e.cfg.StaleMaxAge)
		c := &cached{res: res, freshUntil: computed.Add(ttl)}
		res.grow = func(n int64) { e.results.grow(key, func(v *cached) bool { return v == c }, n) }
		e.results.put(key, c, res.size(), computed.Add(keep))
		return res, nil
	})
	if err == nil {
		e.m.results.WithLabelValues("computed").Inc()
		return &Answer{Result: v.(*Result), Query: q}, nil
	}
	if ok {
		if reason := e.staleReason(err, c.res.Freshness.ComputedAt); reason != "" {
			e.m.results.WithLabelValues("stale").Inc()
			return &Answer{Result: c.res, Query: q, Cached: true, Stale: true, Fallback: reason}, nil
		}
	}
	e.countFailure(ctx, err)
	return nil, err
}

// TimedOut reports whether err, returned by Report or Realtime to a caller
// whose context is ctx, is the report running out of time
// (ComputeTimeout, over a store slow but not failing) while the caller is
// still there: the API answers it 503 report_timeout. After the caller
// went away (ctx ended: its client cancelled, or its own deadline), the
// same error is no answer of ours: no one is answered.
func TimedOut(ctx context.Context, err error) bool {
	return ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
}

// countFailure counts err, the error of a report or realtime view asked
// for with ctx, as origin unavailable when the API answers it 503: the
// store unavailable (store_unavailable), or TimedOut (report_timeout).
// ReportsUnavailable (deploy/k8s/monitoring/alerts.yaml) pages on it, and
// a store too slow for any report to be computed must page as one that
// fails does.
func (e *Engine) countFailure(ctx context.Context, err error) {
	if errors.Is(err, store.ErrUnavailable) || TimedOut(ctx, err) {
		e.m.results.WithLabelValues("unavailable").Inc()
	}
}

// staleReason says why a computation that failed with err is answered
// with a cached result computed at computed, marked stale; "" when err
// allows no such fallback. The store unavailable allows one, and so does
// the computation running out of ComputeTimeout: a store slow but not
// failing leaves a merchant no better off than one that fails, and a
// stale report beats an error. (Its reads count for the breaker as
// before: those done within -store-timeout as successes, those given up
// on not at all.) A client that went away gets nothing.
func (e *Engine) staleReason(err error, computed time.Time) string {
	var reason string
	var ue *store.UnavailableError
	switch {
	case errors.As(err, &ue):
		reason = "the report store is unavailable (" + ue.Reason + ")"
	case errors.Is(err, store.ErrUnavailable):
		reason = "the report store is unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		reason = "the report took longer than " + e.cfg.ComputeTimeout.String() + " to compute"
	default:
		return ""
	}
	return reason + "; this result was computed at " + computed.UTC().Format(time.RFC3339)
}

// agg is the sums of a set of rows, and the union of their users.
type agg struct {
	m     rollup.Metrics
	hits  int64
	users sketch.Union
}

func (a *agg) add(o *agg, withUsers bool) {
	addMetrics(&a.m, &o.m)
	a.hits += o.hits
	if withUsers {
		a.users.Merge(&o.users)
	}
}

// addMetrics is rollup.Metrics.Add(o, 1) without copying o: it runs for
// every cell of every day of a report.
func addMetrics(m, o *rollup.Metrics) {
	m.NewUsers += o.NewUsers
	m.Sessions += o.Sessions
	m.EngagedSessions += o.EngagedSessions
	m.Bounces += o.Bounces
	m.DurationMS += o.DurationMS
	m.Pageviews += o.Pageviews
	m.UniquePageviews += o.UniquePageviews
	m.Entrances += o.Entrances
	m.Exits += o.Exits
	m.TimeOnPageMS += o.TimeOnPageMS
	m.TimeOnPageViews += o.TimeOnPageViews
	m.Events += o.Events
	m.UniqueEvents += o.UniqueEvents
	if o.EventValue != 0 {
		m.EventValue = rollup.AddValue(m.EventValue, o.EventValue)
	}
	m.Conversions += o.Conversions
	if o.ConversionValue != 0 {
		m.ConversionValue = rollup.AddValue(m.ConversionValue, o.ConversionValue)
	}
}

func (a *agg) zero() bool { return a.m.IsZero() && a.hits == 0 }

// dayData is one day's rows of one source, merged across shards: one cell
// per stored dimension value (the hour, for rollup_hourly), kept in slices
// so that folding a range walks memory in order.
type dayData struct {
	dims  []string
	cells []agg
	users bool // the cells' users were read
	size  int64
	// until is when the day cache drops it (a final day's; zero for a
	// day not cached): a week merged from cached days is dropped with the
	// first of them, so a reprocessed day shows its old numbers for at
	// most -day-cache-ttl, in a week as alone.
	until time.Time
}

// dayBuilder merges a day's rows into a dayData.
type dayBuilder struct {
	d     *dayData
	index map[string]int
}

func newDayBuilder(withUsers bool) *dayBuilder {
	return &dayBuilder{d: &dayData{users: withUsers}, index: map[string]int{}}
}

// cell returns the cell of dim, added (and counted in the size) if new.
func (b *dayBuilder) cell(dim string) *agg {
	d := b.d
	i, ok := b.index[dim]
	if !ok {
		i = len(d.cells)
		b.index[dim] = i
		d.dims = append(d.dims, dim)
		d.cells = append(d.cells, agg{})
		d.size += 200 + int64(len(dim))
	}
	return &d.cells[i]
}

func (b *dayBuilder) add(dim string, m *rollup.Metrics, hits int64, users []byte) error {
	d, c := b.d, b.cell(dim)
	if m != nil {
		addMetrics(&c.m, m)
	}
	c.hits += hits
	if !d.users || len(users) == 0 {
		return nil
	}
	s, err := sketch.DecodeUnion(users)
	if err != nil {
		return fmt.Errorf("users of %q: %w", dim, err)
	}
	before := c.users.Size()
	if c.users.Empty() {
		c.users = s
	} else {
		c.users.Merge(&s)
	}
	d.size += c.users.Size() - before
	return nil
}

// merge adds a cell of another dayData (which stays unchanged).
func (b *dayBuilder) merge(dim string, o *agg) {
	d, c := b.d, b.cell(dim)
	before := c.users.Size()
	c.add(o, d.users)
	d.size += c.users.Size() - before
}

// cell returns the cell of dim, or nil.
func (d *dayData) cell(dim string) *agg {
	for i, v := range d.dims {
		if v == dim {
			return &d.cells[i]
		}
	}
	return nil
}

// hourlyReport names rollup_hourly in the day cache.
const hourlyReport = "rollup_hourly"

// dayFinal reports whether day can no longer change through live
// processing.
func (e *Engine) dayFinal(day time.Time, loc *time.Location, now time.Time) bool {
	return !now.Before(rollup.DayStart(addDays(day, 1), loc).Add(e.cfg.LateHorizon))
}

// reads bounds the partitions one computation reads at once
// (DayConcurrency): its days, the days of its weeks and both periods of a
// comparison take turns in it. A read that another computation started
// and this one joins takes a turn too.
type reads chan struct{}

func (r reads) acquire(ctx context.Context) error {
	select {
	case r <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r reads) release() { <-r }

// loadDay returns one day of src (or of rollup_hourly), from the day cache
// for final days, else read in a turn of lim.
func (e *Engine) loadDay(ctx context.Context, lim reads, p Property, src *source, hourly bool, day time.Time, withUsers bool, now time.Time) (*dayData, error) {
	report := src.report
	if hourly {
		report = hourlyReport
	}
	key := p.ID.String() + "|" + report + "|" + formatDate(day)
	final := e.dayFinal(day, p.Location, now)
	if final {
		if d, ok := e.days.get(key, now); ok && (d.users || !withUsers) {
			e.m.days.WithLabelValues("hit").Inc()
			return d, nil
		}
	}
	e.m.days.WithLabelValues("miss").Inc()
	if err := e.store.Refuse(table(report)); err != nil {
		return nil, err // before waiting for a turn or for a read in flight
	}
	sfKey := key
	if withUsers {
		sfKey += "|users"
	}
	if err := lim.acquire(ctx); err != nil {
		return nil, err
	}
	defer lim.release()
	v, err := e.do(ctx, &e.daySF, sfKey, func() (any, error) {
		ctx, cancel := e.sharedRead(ctx)
		defer cancel()
		d, err := e.readDay(ctx, p.ID, report, day, withUsers)
		if err == nil && final {
			d.until = now.Add(e.cfg.DayCacheTTL)
			e.days.put(key, d, d.size, d.until)
		}
		return d, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*dayData), nil
}

// table names the table the rows of report are read from, for the
// store's metrics.
func table(report string) string {
	switch report {
	case hourlyReport:
		return "rollup_hourly"
	case filteredReport:
		return "filtered_hits"
	}
	return "rollup_daily"
}

func (e *Engine) readDay(ctx context.Context, property gocql.UUID, report string, day time.Time, withUsers bool) (*dayData, error) {
	b := newDayBuilder(withUsers)
	switch report {
	case hourlyReport:
		rows, err := e.store.Hourly(ctx, property, day, withUsers)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			if err := b.add(strconv.Itoa(rows[i].Hour), &rows[i].Metrics, 0, rows[i].Users); err != nil {
				return nil, err
			}
		}
	case filteredReport:
		rows, err := e.store.Filtered(ctx, property, day)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if err := b.add(r.Reason, nil, r.Hits, nil); err != nil {
				return nil, err
			}
		}
	default:
		rows, err := e.store.Daily(ctx, property, day, report, withUsers)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			if err := b.add(rows[i].Dimension, &rows[i].Metrics, 0, rows[i].Users); err != nil {
				return nil, err
			}
		}
	}
	return b.d, nil
}

type groupKey struct {
	bucket int
	key    string
}

type group struct {
	dims []string
	agg  agg
}

// decoded is what a stored dimension value means for a query.
type decoded struct {
	ok   bool // matches the filter
	dims []string
	key  string
}

func (q *Query) needsUsers() bool {
	for _, m := range q.Metrics {
		if m.users {
			return true
		}
	}
	return false
}

// decode evaluates a stored dimension value against the query.
func (q *Query) decode(dim string) decoded {
	vals := q.src.decode(dim)
	value := func(name string) (string, bool) {
		d := dimensions[name]
		if d.derive == nil {
			return vals[slices.Index(q.src.columns, name)], true
		}
		in := make([]string, len(d.needs))
		for i, n := range d.needs {
			in[i] = vals[slices.Index(q.src.columns, n)]
		}
		return d.derive(in, q)
	}
	if q.Filter != nil {
		for _, ors := range q.Filter.And {
			hit := false
			for i := range ors {
				// A dimension the row has no value of (page_path of a page
				// outside the drill-down path) matches no condition, and
				// another condition of the OR may still match.
				v, ok := value(ors[i].Dimension)
				if ok && ors[i].match(v) {
					hit = true
					break
				}
			}
			if !hit {
				return decoded{}
			}
		}
	}
	out := decoded{ok: true, dims: make([]string, len(q.Dimensions))}
	for i, d := range q.Dimensions {
		v, ok := value(d.Name)
		if !ok {
			return decoded{}
		}
		out.dims[i] = v
	}
	// The key tells rows apart by every value whatever bytes it holds
	// (NUL included: collection accepts any UTF-8), as joining the values
	// with a separator they may hold would not.
	out.key = rollup.JoinDimension(out.dims...)
	return out
}

// aggregate reads range r and folds it into groups (bucket, dimension
// values) and totals. Each unit is folded as soon as it and those before it
// are read, in the range's order (the same sums, to the last bit, however
// the reads finish), and dropped then; a unit is read only once fewer than
// DayConcurrency are read and not yet folded. So a report holds the rows
// of at most that many units besides its own, not of the whole range (a
// month of a large property's pages, millions of rows with their users
// sketches, took gigabytes).
func (e *Engine) aggregate(ctx context.Context, lim reads, p Property, q *Query, r DateRange, bs []Bucket, now time.Time) (map[groupKey]*group, *agg, error) {
	units := e.units(q, r, p.Location, now)
	withUsers := q.needsUsers()
	// Unfiltered session reports take their totals from the total rows,
	// so that additive totals are the sums over dimension values and
	// users are merged over the whole property.
	totalRows := q.src.scope == ScopeSession && len(q.src.columns) > 0 && q.Filter == nil
	totalSrc := sources[0]

	data := make([]*dayData, len(units))
	totals := make([]*dayData, len(units))
	loaded := make([]chan struct{}, len(units)) // closed once a unit's reads are all done
	pending := make([]atomic.Int32, len(units))
	held := make(chan struct{}, e.cfg.DayConcurrency) // a token per unit read or being read, and not folded
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.DayConcurrency)
	read := func(i int, dst **dayData, src *source, hourly bool) {
		g.Go(func() error {
			var err error
			*dst, err = e.loadUnit(gctx, lim, p, src, hourly, units[i], withUsers, now)
			if err == nil && pending[i].Add(-1) == 0 {
				if e.held != nil {
					e.held(len(held))
				}
				close(loaded[i])
			}
			return err
		})
	}
	var stopped error
	launched := make(chan struct{})
	for i := range units {
		loaded[i] = make(chan struct{})
	}
	go func() {
		defer close(launched)
		for i := range units {
			select {
			case held <- struct{}{}:
			case <-gctx.Done():
			}
			if stopped = gctx.Err(); stopped != nil {
				return // a part failed or time is up: start no more reads
			}
			pending[i].Store(1)
			if totalRows {
				pending[i].Store(2)
			}
			read(i, &data[i], q.src, q.hourly)
			if totalRows {
				read(i, &totals[i], totalSrc, false)
			}
		}
	}()
	wait := func() error {
		<-launched
		if err := g.Wait(); err != nil {
			return err
		}
		// The launch stopped because ctx ended, and the reads it did
		// start may all have succeeded (from the cache): the parts not
		// read are missing.
		return stopped
	}

	var dayBucket map[time.Time]int
	hourBucket := map[string]int{}
	if q.Granularity == Hour {
		for i, b := range bs {
			hourBucket[formatDate(b.from)+"|"+strconv.Itoa(b.hour)] = i
		}
	} else if q.Granularity != None {
		dayBucket = bucketIndex(r, bs)
	}

	groups := map[groupKey]*group{}
	total := &agg{}
	// Each stored dimension value is decoded once; values that show as the
	// same row share a slot, which holds that row's group per period.
	type slot struct {
		key      string
		dims     []string
		byBucket []*group // index: bucket + 1 (0 without granularity)
	}
	memo := map[string]*slot{}
	slots := map[string]*slot{}
	// fold adds unit i's rows. It stops when ctx ends: testing each
	// stored value against the filter's regular expressions takes up to
	// milliseconds, and a day may hold tens of thousands of values.
	fold := func(i int) error {
		d := units[i].from
		b := -1
		if dayBucket != nil {
			var ok bool
			if b, ok = dayBucket[d]; !ok {
				return nil
			}
		}
		day := data[i]
		for j, dim := range day.dims {
			cell := &day.cells[j]
			if q.hourly {
				var ok bool
				if b, ok = hourBucket[formatDate(d)+"|"+dim]; !ok {
					b = -2 // an hour not in the series (the future)
				}
			}
			sl, seen := memo[dim]
			if !seen {
				if err := ctx.Err(); err != nil {
					return err
				}
				if dec := q.decode(dim); dec.ok {
					if sl = slots[dec.key]; sl == nil {
						sl = &slot{key: dec.key, dims: dec.dims, byBucket: make([]*group, len(bs)+1)}
						slots[dec.key] = sl
					}
				}
				memo[dim] = sl
			}
			if sl == nil {
				continue
			}
			if !totalRows {
				total.add(cell, withUsers)
			}
			if b == -2 {
				continue
			}
			grp := sl.byBucket[b+1]
			if grp == nil {
				grp = &group{dims: sl.dims}
				sl.byBucket[b+1] = grp
				groups[groupKey{b, sl.key}] = grp
			}
			grp.agg.add(cell, withUsers)
		}
		if totalRows {
			if c := totals[i].cell(""); c != nil {
				total.add(c, withUsers)
			}
		}
		return nil
	}
	for i := range units {
		select {
		case <-loaded[i]:
		case <-gctx.Done(): // a read failed, or ctx ended
			return nil, nil, cmp.Or(wait(), ctx.Err())
		}
		if err := fold(i); err != nil {
			return nil, nil, cmp.Or(wait(), err)
		}
		data[i], totals[i] = nil, nil
		<-held
	}
	if err := wait(); err != nil {
		return nil, nil, err
	}
	// A series without dimensions has every period, zeros included.
	if q.Granularity != None && len(q.Dimensions) == 0 {
		for i := range bs {
			gk := groupKey{i, ""}
			if groups[gk] == nil {
				groups[gk] = &group{dims: []string{}}
			}
		}
	}
	return groups, total, nil
}

// unit is a stretch of a range read as one: a day, or a final ISO week
// whose rows the day cache keeps merged (a 30-day report then merges about
// ten stretches instead of 30 days).
type unit struct {
	from time.Time
	days int
}

// units splits r, up to today, into days and whole final ISO weeks. Weeks
// are used only with the day cache on, and only where the week falls in
// one period of the series.
func (e *Engine) units(q *Query, r DateRange, loc *time.Location, now time.Time) []unit {
	end := dateOf(now, loc)
	if r.To.Before(end) {
		end = r.To
	}
	weeks := e.cfg.DayCacheBytes > 0 && !q.hourly && q.Granularity != Day
	var out []unit
	for d := r.From; !d.After(end); {
		last := addDays(d, 6)
		if weeks && d.Weekday() == time.Monday && !last.After(end) && e.dayFinal(last, loc, now) &&
			(q.Granularity != Month || last.Month() == d.Month()) {
			out = append(out, unit{d, 7})
			d = addDays(d, 7)
			continue
		}
		out = append(out, unit{d, 1})
		d = addDays(d, 1)
	}
	return out
}

// loadUnit returns the rows of a unit: a day's (loadDay), or a final
// week's merged from its days and kept in the day cache.
func (e *Engine) loadUnit(ctx context.Context, lim reads, p Property, src *source, hourly bool, u unit, withUsers bool, now time.Time) (*dayData, error) {
	if u.days == 1 {
		return e.loadDay(ctx, lim, p, src, hourly, u.from, withUsers, now)
	}
	key := p.ID.String() + "|" + src.report + "|week|" + formatDate(u.from)
	if d, ok := e.days.get(key, now); ok && (d.users || !withUsers) {
		e.m.days.WithLabelValues("hit").Inc()
		return d, nil
	}
	if err := e.store.Refuse(table(src.report)); err != nil {
		return nil, err // before waiting for a week merged in flight
	}
	sfKey := key
	if withUsers {
		sfKey += "|users"
	}
	v, err := e.do(ctx, &e.daySF, sfKey, func() (any, error) {
		ctx, cancel := e.sharedRead(ctx)
		defer cancel()
		parts := make([]*dayData, u.days)
		g, gctx := errgroup.WithContext(ctx)
		for i := range parts {
			g.Go(func() error {
				var err error
				parts[i], err = e.loadDay(gctx, lim, p, src, false, addDays(u.from, i), withUsers, now)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		b := newDayBuilder(withUsers)
		b.d.until = now.Add(e.cfg.DayCacheTTL)
		for _, part := range parts {
			for j, dim := range part.dims {
				b.merge(dim, &part.cells[j])
			}
			if !part.until.IsZero() && part.until.Before(b.d.until) {
				b.d.until = part.until
			}
		}
		e.days.put(key, b.d, b.d.size, b.d.until)
		return b.d, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*dayData), nil
}

// compute runs q against the store.
func (e *Engine) compute(ctx context.Context, p Property, q *Query) (*Result, error) {
	now := e.now()
	res := &Result{Range: q.Range}
	if q.Granularity != None {
		res.Buckets = buckets(q.Range, q.Granularity, p.Location, now)
	}
	var prevGroups map[groupKey]*group
	var prevTotal *agg
	lim := make(reads, e.cfg.DayConcurrency)
	g, gctx := errgroup.WithContext(ctx)
	var groups map[groupKey]*group
	var total *agg
	g.Go(func() error {
		var err error
		groups, total, err = e.aggregate(gctx, lim, p, q, q.Range, res.Buckets, now)
		return err
	})
	if q.Compare {
		prev := q.Range.previous()
		res.PreviousRange = &prev
		if q.Granularity != None {
			res.PreviousBucket = buckets(prev, q.Granularity, p.Location, now)
		}
		g.Go(func() error {
			var err error
			prevGroups, prevTotal, err = e.aggregate(gctx, lim, p, q, prev, res.PreviousBucket, now)
			return err
		})
	}
	var newest time.Time
	g.Go(func() error {
		newest = e.newestActivity(gctx, p, now)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	for gk, grp := range groups {
		fill := q.Granularity != None && len(q.Dimensions) == 0
		if grp.agg.zero() && !fill {
			continue // rows whose metrics are all zero exist but are not shown
		}
		if q.NonZero != nil && q.NonZero.value(&grp.agg) == 0 {
			continue
		}
		row := Row{Bucket: gk.bucket, Dims: grp.dims, Values: e.values(q, &grp.agg, res)}
		if prevGroups != nil {
			if pg := prevGroups[gk]; pg != nil && (!pg.agg.zero() || fill) {
				row.Previous = e.values(q, &pg.agg, res)
			}
		}
		res.Rows = append(res.Rows, row)
	}
	res.Totals = e.values(q, total, res)
	if prevTotal != nil {
		res.PreviousTotals = e.values(q, prevTotal, res)
	}
	sortRows(res.Rows, q.Sort)
	res.Freshness = e.freshness(q.Range, p.Location, now, newest)
	return res, nil
}

func (e *Engine) values(q *Query, a *agg, res *Result) []float64 {
	out := make([]float64, len(q.Metrics))
	for i, m := range q.Metrics {
		out[i] = m.value(a)
		if m.users && !a.users.Exact() {
			res.UsersEstimated = true
		}
	}
	return out
}

func sortRows(rows []Row, keys []SortKey) {
	slices.SortFunc(rows, func(a, b Row) int {
		for _, k := range keys {
			var c int
			switch {
			case k.met >= 0:
				c = cmpFloat(a.Values[k.met], b.Values[k.met])
			case k.dim >= 0:
				c = strings.Compare(a.Dims[k.dim], b.Dims[k.dim])
			default: // period
				c = a.Bucket - b.Bucket
			}
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		if c := a.Bucket - b.Bucket; c != 0 {
			return c
		}
		return slices.Compare(a.Dims, b.Dims)
	})
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// freshness derives how complete data over r is at now.
func (e *Engine) freshness(r DateRange, loc *time.Location, now, newest time.Time) Freshness {
	end := rollup.DayStart(addDays(r.To, 1), loc)
	f := Freshness{CompleteUpTo: end, Final: !now.Before(end.Add(e.cfg.LateHorizon)), NewestActivity: newest, ComputedAt: now}
	if lag := now.Add(-e.cfg.ProcessingDelay); lag.Before(end) {
		f.CompleteUpTo = lag
	}
	return f
}

type activity struct {
	minute time.Time
}

// activityHorizon bounds how far back newestActivity looks: a realtime row
// lives two hours after its last write (cql/0005_realtime_frozen.cql), and
// a hit may be processed up to four hours after its time (collection's
// queue-time limit), so no live row's minute is older than six hours.
const activityHorizon = 6 * time.Hour

// newestActivity returns the newest realtime minute of p (cached for a
// second), or zero when unknown; a failure to read it does not fail the
// report.
func (e *Engine) newestActivity(ctx context.Context, p Property, now time.Time) time.Time {
	key := p.ID.String()
	if a, ok := e.activity.get(key, now); ok {
		return a.minute
	}
	minute, found, err := e.store.NewestMinute(ctx, p.ID, now.Add(-activityHorizon))
	if err != nil {
		return time.Time{}
	}
	if !found {
		minute = time.Time{}
	}
	e.activity.put(key, activity{minute: minute}, 64, now.Add(time.Second))
	return minute
}

// size estimates the memory a result holds, for the cache bound.
func (r *Result) size() int64 {
	n := int64(512) + 8*int64(len(r.Totals)+len(r.PreviousTotals))
	// A bucket: its label (with its header), two times and an hour. An
	// hour series over a quarter with its comparison has thousands.
	for _, bs := range [][]Bucket{r.Buckets, r.PreviousBucket} {
		for _, b := range bs {
			n += 16 + int64(len(b.Label)) + 2*24 + 8
		}
	}
	for _, row := range r.Rows {
		n += 64 + 8*int64(len(row.Values)+len(row.Previous))
		for _, d := range row.Dims {
			n += 16 + int64(len(d))
		}
	}
	return n
}
