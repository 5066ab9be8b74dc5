// Package upstream holds the instances of each upstream service, a circuit
// breaker per instance, and the http.RoundTripper that balances requests
// across the instances whose breakers let them through, retrying an
// idempotent request once on another instance.
//
// The instance lists come from Consul watches (blocking queries, so nothing
// asks Consul per request) or from static configuration; Pool.Update swaps a
// list in, keeping the breakers of instances that stay.
package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/discovery"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable is returned (wrapped) by Pool.Pick when no instance may be
// tried: none is healthy, or every breaker is open.
var ErrUnavailable = errors.New("no upstream instance available")

// BreakerConfig configures the circuit breaker of every instance.
type BreakerConfig struct {
	// Failures is how many consecutive failures open a breaker.
	Failures uint32
	// OpenTimeout is how long a breaker stays open before it lets one probe
	// request through (half-open).
	OpenTimeout time.Duration
}

// Pool is the set of instances of one upstream service. It is safe for
// concurrent use; Pick takes no lock.
type Pool struct {
	name    string
	breaker BreakerConfig
	log     *slog.Logger
	metrics *Metrics

	mu     sync.Mutex // serialises Update
	list   atomic.Pointer[[]*instance]
	next   atomic.Uint64
	synced atomic.Bool
}

type instance struct {
	discovery.Instance
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// NewPool returns an empty pool for the service name.
func NewPool(name string, bc BreakerConfig, log *slog.Logger, m *Metrics) *Pool {
	p := &Pool{name: name, breaker: bc, log: log, metrics: m}
	p.list.Store(&[]*instance{})
	return p
}

// Name returns the service name.
func (p *Pool) Name() string { return p.name }

// Synced reports whether the pool has received its first instance list.
func (p *Pool) Synced() bool { return p.synced.Load() }

// Update replaces the instance list. Instances that stay (same ID and
// address) keep their breakers. Instances marked Failing (listed while
// none passes its checks) are routed to like the others, and counted
// apart.
func (p *Pool) Update(insts []discovery.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[string]*instance{}
	for _, in := range *p.list.Load() {
		old[in.ID] = in
	}
	list := make([]*instance, 0, len(insts))
	for _, d := range insts {
		if in, ok := old[d.ID]; ok && in.Addr == d.Addr {
			list = append(list, &instance{Instance: d, cb: in.cb}) // its breaker; Failing as listed now
			continue
		}
		list = append(list, &instance{Instance: d, cb: p.newBreaker(d)})
	}
	slices.SortFunc(list, func(a, b *instance) int { return strings.Compare(a.ID, b.ID) })
	p.list.Store(&list)
	p.synced.Store(true)
	// Healthy and failing apart: an instance routed to only because none
	// passes (discovery.Watch's panic routing) is no healthy one, and the
	// healthy count falling to 0 is what pages.
	healthy := discovery.Passing(insts)
	failing := len(insts) - healthy
	p.metrics.instances.WithLabelValues(p.name).Set(float64(healthy))
	p.metrics.failing.WithLabelValues(p.name).Set(float64(failing))
	p.log.Info("upstream instances updated", slog.String("upstream", p.name), slog.Int("instances", len(list)),
		slog.Int("failing", failing), slog.Any("addrs", addrs(list)))
}

func addrs(list []*instance) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.Addr
	}
	return out
}

func (p *Pool) newBreaker(d discovery.Instance) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	failures := p.breaker.Failures
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        p.name + "/" + d.ID,
		MaxRequests: 1,
		Timeout:     p.breaker.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			p.metrics.breakerChanges.WithLabelValues(p.name, to.String()).Inc()
			p.log.Warn("circuit breaker changed state", slog.String("upstream", p.name), slog.String("instance", d.ID),
				slog.String("addr", d.Addr), slog.String("from", from.String()), slog.String("to", to.String()))
		},
	})
}

// Instances returns the current instances.
func (p *Pool) Instances() []discovery.Instance {
	list := *p.list.Load()
	out := make([]discovery.Instance, len(list))
	for i, in := range list {
		out[i] = in.Instance
	}
	return out
}

// errExcluded marks an outcome that says nothing about the instance (the
// client went away, its body was too large); the breaker ignores it.
var errExcluded = errors.New("outcome excluded from breaker counts")

// Outcome is how a request to an instance ended, reported to its breaker.
type Outcome int

const (
	// Success counts for the instance.
	Success Outcome = iota
	// Failure counts against it: no connection, a timeout, a 502/503/504.
	Failure
	// Excluded counts neither way.
	Excluded
)

// Pick chooses the next instance in round-robin order whose breaker lets a
// request through, skipping the instance with ID exclude. The caller must
// call done exactly once with the outcome. The error wraps ErrUnavailable.
func (p *Pool) Pick(exclude string) (inst discovery.Instance, done func(Outcome), err error) {
	list := *p.list.Load()
	n := len(list)
	if n == 0 {
		return discovery.Instance{}, nil, fmt.Errorf("%w: %s has no healthy instance", ErrUnavailable, p.name)
	}
	start := p.next.Add(1)
	for i := range n {
		in := list[(start+uint64(i))%uint64(n)]
		if in.ID == exclude {
			continue
		}
		report, err := in.cb.Allow()
		if err != nil {
			continue
		}
		return in.Instance, func(o Outcome) {
			switch o {
			case Success:
				report(nil)
			case Failure:
				report(errFailure)
			default:
				report(errExcluded)
			}
		}, nil
	}
	if exclude != "" && n == 1 {
		return discovery.Instance{}, nil, fmt.Errorf("%w: %s has no other instance", ErrUnavailable, p.name)
	}
	return discovery.Instance{}, nil, fmt.Errorf("%w: every circuit breaker of %s is open", ErrUnavailable, p.name)
}

var errFailure = errors.New("instance failed")
