// Package discovery registers service instances in Consul and watches the
// healthy instances of a service with blocking queries.
//
// Each instance registers itself with an HTTP check on its /readyz, so Consul
// marks it critical when it stops being ready, and deregisters on shutdown.
// Watchers keep the last known set of instances when Consul is unreachable.
package discovery

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/acme/analytics/pkg/retry"
	"github.com/hashicorp/consul/api"
)

// Config holds the Consul settings of a service.
type Config struct {
	Addr          string        // Consul agent HTTP address; empty disables Consul
	AdvertiseHost string        // host other services reach this instance at
	CheckInterval time.Duration // how often Consul probes /readyz

	lookupOnly bool // RegisterLookupFlags: never registers, so only Addr counts
}

// RegisterFlags registers the discovery flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "consul-addr", "127.0.0.1:8500", "Consul agent HTTP address (empty: do not register; the gateway then needs static upstreams)")
	fs.StringVar(&c.AdvertiseHost, "advertise-host", "127.0.0.1", "host or IP that other services use to reach this instance")
	fs.DurationVar(&c.CheckInterval, "consul-check-interval", 2*time.Second, "how often Consul checks this instance's /readyz")
}

// RegisterLookupFlags registers -consul-addr alone, described by usage,
// for a command that finds services in Consul but never registers itself
// (deadletters): the registration flags would do nothing there.
func (c *Config) RegisterLookupFlags(fs *flag.FlagSet, usage string) {
	c.lookupOnly = true
	fs.StringVar(&c.Addr, "consul-addr", "127.0.0.1:8500", usage)
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if c.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("-consul-addr %q is not host:port: %w", c.Addr, err)
	}
	if c.lookupOnly {
		return nil
	}
	if c.AdvertiseHost == "" {
		return errors.New("-advertise-host is empty")
	}
	if c.CheckInterval < 100*time.Millisecond {
		return errors.New("-consul-check-interval must be at least 100ms")
	}
	return nil
}

// Enabled reports whether a Consul agent is configured.
func (c *Config) Enabled() bool { return c.Addr != "" }

// Client returns a Consul API client for the configured agent.
func (c *Config) Client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.Addr, err)
	}
	return client, nil
}

// Instance is one reachable instance of a service.
type Instance struct {
	ID   string
	Addr string // host:port
	// Failing marks an instance listed although its checks do not pass:
	// Watch's panic routing, when no instance of the service passes.
	Failing bool
}

// Passing counts the instances of insts not marked Failing: those that
// pass their checks.
func Passing(insts []Instance) int {
	n := 0
	for _, in := range insts {
		if !in.Failing {
			n++
		}
	}
	return n
}

// Registration is a service instance registered in Consul.
type Registration struct {
	client *api.Client
	id     string
	reg    *api.AgentServiceRegistration
	log    *slog.Logger
}

// ReadinessCheck is the name of the instance's readiness check that waits
// for Consul to pass it (pkg/service: an instance is ready for Kubernetes
// only once the gateways can find it). Consul's own check of the instance
// leaves it out, or the instance would wait for itself.
const ReadinessCheck = "consul"

// Register registers the instance (name, reachable at host:port) with an
// HTTP check on http://host:port/readyz?exclude=consul (every readiness
// check but ReadinessCheck). Critical instances are removed by Consul after
// a minute, so a crashed instance does not linger.
//
// It waits for the agent: while the agent cannot be reached, or answers
// with a server error (5xx) or 429, it tries again with retry.Default's
// backoff (500 ms doubling to 15 s), logging each failure at warn, until
// it succeeds or ctx is done. Any other refusal (403: the ACL token may not
// register the name; 400: an invalid registration) returns at once, marked
// retry.Permanent: waiting cannot change it.
func Register(ctx context.Context, client *api.Client, name, host string, port int, interval time.Duration, log *slog.Logger) (*Registration, error) {
	id := fmt.Sprintf("%s-%s-%d", name, host, port)
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    name,
		Address: host,
		Port:    port,
		Check: &api.AgentServiceCheck{
			CheckID:                        id + "-ready",
			Name:                           name + " readiness",
			HTTP:                           "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/readyz?exclude=" + ReadinessCheck,
			Interval:                       interval.String(),
			Timeout:                        (interval / 2).String(),
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	err := retry.Until(ctx, retry.Default, log.With(slog.String("service_id", id)), "register in consul", func(ctx context.Context) error {
		// An agent that accepts the connection and does not answer is
		// tried again too.
		ctx, cancel := context.WithTimeout(ctx, registerTimeout)
		defer cancel()
		err := client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
		if se, ok := errors.AsType[api.StatusError](err); ok && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register %s in consul: %w", id, err)
	}
	log.Info("registered in consul", slog.String("service_id", id))
	return &Registration{client: client, id: id, reg: reg, log: log}, nil
}

// registerTimeout bounds one attempt at registering.
const registerTimeout = 10 * time.Second

// Maintain re-registers the instance whenever the agent no longer knows it
// (an agent restarted without persistent state, as a dev agent is), checking
// every interval until ctx is done. While the agent is unreachable it waits.
func (r *Registration) Maintain(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		q := (&api.QueryOptions{}).WithContext(ctx)
		svc, _, err := r.client.Agent().Service(r.id, q)
		if err == nil && svc != nil {
			continue
		}
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code == 404) {
			continue // the agent is unreachable: nothing to re-register with
		}
		if err := r.client.Agent().ServiceRegisterOpts(r.reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
			r.log.Warn("re-registering in consul failed", slog.String("service_id", r.id), slog.Any("error", err))
			continue
		}
		r.log.Info("re-registered in consul (the agent had lost the registration)", slog.String("service_id", r.id))
	}
}

// WaitPassing returns once the instance is listed among its service's
// passing instances (Healthy: what every gateway's watch and config client
// routes by), nil, or when ctx is done, with its error. Consul runs a new
// check first at a random moment within its interval, so that takes up to
// a check interval after Register. While the agent cannot be reached it
// asks again every second.
func (r *Registration) WaitPassing(ctx context.Context) error {
	var index uint64
	for {
		insts, next, err := Healthy(ctx, r.client, r.reg.Name, index, time.Minute)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			index = 0
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if slices.ContainsFunc(insts, func(in Instance) bool { return in.ID == r.id }) {
			return nil
		}
		if next < index { // a restarted agent counts from the start again
			next = 0
		}
		index = next
	}
}

// ID returns the Consul service ID of the instance.
func (r *Registration) ID() string { return r.id }

// Deregister removes the instance from Consul.
func (r *Registration) Deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.id, q); err != nil {
		return fmt.Errorf("deregister %s from consul: %w", r.id, err)
	}
	r.log.Info("deregistered from consul", slog.String("service_id", r.id))
	return nil
}

// Healthy returns the instances of service whose checks all pass, waiting
// up to wait for a change after index (0: answer at once). It returns the
// new index for the next call.
func Healthy(ctx context.Context, client *api.Client, service string, index uint64, wait time.Duration) ([]Instance, uint64, error) {
	found, next, err := instances(ctx, client, service, true, index, wait)
	insts := make([]Instance, len(found))
	for i, e := range found {
		insts[i] = e.Instance
	}
	return insts, next, err
}

// registered returns, at once, the instances of service registered and
// not in maintenance that have passed their checks before, whatever they
// say now, each marked Failing. One that has never passed is left out: a
// new check is critical, without output, until its first run (Consul runs
// an HTTP check first at a random moment within its interval after the
// registration), and a check that runs and fails without ever passing
// shows no output either, the agent sending only changes of status to the
// catalog at once (the output alone every check_update_interval, 5
// minutes by default). Such an instance is starting: about to pass, or
// unready.
func registered(ctx context.Context, client *api.Client, service string) ([]Instance, error) {
	all, _, err := instances(ctx, client, service, false, 0, 0)
	var out []Instance
	for _, e := range all {
		if e.passedOnce {
			e.Failing = true
			out = append(out, e.Instance)
		}
	}
	return out, err
}

// entry is an instance as a query found it.
type entry struct {
	Instance
	// passedOnce: every check that does not pass has an output. One
	// critical without output has never passed (registered).
	passedOnce bool
}

func instances(ctx context.Context, client *api.Client, service string, passing bool, index uint64, wait time.Duration) ([]entry, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	entries, meta, err := client.Health().Service(service, "", passing, q)
	if err != nil {
		return nil, index, fmt.Errorf("query %s instances: %w", service, err)
	}
	out := make([]entry, 0, len(entries))
	for _, e := range entries {
		if e.Checks.AggregatedStatus() == api.HealthMaint {
			continue // taken out by an operator
		}
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		out = append(out, entry{
			Instance: Instance{ID: e.Service.ID, Addr: net.JoinHostPort(host, strconv.Itoa(e.Service.Port))},
			passedOnce: !slices.ContainsFunc(e.Checks, func(c *api.HealthCheck) bool {
				return c.Status == api.HealthCritical && c.Output == ""
			}),
		})
	}
	return out, meta.LastIndex, nil
}

// panicRefresh is how often Watch looks at the instances again while none
// passes its checks (a blocking query on the passing ones, which returns
// as soon as one passes, up to this long).
const panicRefresh = 5 * time.Second

// Watch calls update with the healthy instances of service every time the
// set changes, using blocking queries (one long poll at a time, never one per
// request). When Consul is unreachable it keeps the last set, logs, and
// retries with backoff; the first answer after a failure is the current
// set, whatever index the agent is at (a restarted agent's starts over).
// It returns when ctx is done.
//
// When no instance passes its checks but some are registered that passed
// before, it routes to all of those not in maintenance ("panic routing",
// as Envoy's load balancers do below their panic threshold), each marked
// Failing, logging it at warn, and looks again every panicRefresh until
// one passes. An instance that has never passed is left out (as Envoy
// leaves new hosts out until their first health check): at a fresh start
// every instance is critical until its first check, up to a check
// interval after it registers, and about to pass; routed to meanwhile, an
// unready one would answer, and every fresh start would log the warning.
// Until one passes, none is routed to, as when none is registered.
// (On an agent set to discard_check_output no check shows an output, so
// none is taken to have passed and panic routing never starts.)
//
// Checks that all fail at once are more
// often the checker's trouble than the instances' (a machine stalled past
// the checks' timeout, an agent overloaded: a soak test saw a second of
// it), and a gateway answering 503 meanwhile loses the beacons sent,
// which browsers never retry. An instance really down refuses the
// requests, which the breakers and retries handle as when Consul is
// unreachable, and Consul removes it after a minute critical
// (DeregisterCriticalServiceAfter); one shutting down leaves Consul
// before it stops serving (pkg/service).
func Watch(ctx context.Context, client *api.Client, service string, log *slog.Logger, update func([]Instance)) error {
	var index uint64
	first, panicking := true, false
	backoff := 100 * time.Millisecond
	for {
		wait := 30 * time.Second
		if panicking {
			wait = panicRefresh
		}
		insts, next, err := Healthy(ctx, client, service, index, wait)
		if err == nil && len(insts) == 0 {
			var all []Instance
			if all, err = registered(ctx, client, service); err == nil && len(all) > 0 {
				if !panicking {
					log.Warn("no instance passes its checks; routing to every registered one that passed before", slog.String("service", service), slog.Int("instances", len(all)))
				}
				if !panicking || next != index { // not every panicRefresh
					update(all)
				}
				first, panicking, index = false, true, next
				continue
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("consul watch failed; keeping last known instances", slog.String("service", service), slog.Any("error", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			// The agent that answers next may have restarted without its
			// state, its index started over below ours: a query on our
			// index would block on it until its wait runs out (30s),
			// blind to every change meanwhile. Ask for the current set
			// at once instead.
			index = 0
			continue
		}
		backoff = 100 * time.Millisecond
		// Consul may reset its index (agent restart); start over when it goes
		// backwards, as its documentation asks.
		if next < index {
			next = 0
		}
		left := panicking // the set is news whatever the index says
		if panicking && len(insts) > 0 {
			log.Info("instances pass their checks again", slog.String("service", service), slog.Int("instances", len(insts)))
		}
		panicking = false
		if first || left || next != index {
			update(insts)
		}
		first, index = false, next
	}
}
