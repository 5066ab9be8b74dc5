package upstream

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/discovery"
	"github.com/prometheus/client_golang/prometheus"
)

func newTestPool(t *testing.T, failures uint32) *Pool {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewPool("svc", BreakerConfig{Failures: failures, OpenTimeout: time.Minute}, log, NewMetrics(prometheus.NewRegistry()))
}

func pick(t *testing.T, p *Pool, exclude string, o Outcome) string {
	t.Helper()
	in, done, err := p.Pick(exclude)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	done(o)
	return in.ID
}

func TestPoolRoundRobinAndBreakers(t *testing.T) {
	p := newTestPool(t, 2)
	if p.Synced() {
		t.Fatal("a new pool claims to be synced")
	}
	if _, _, err := p.Pick(""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Pick on an empty pool: %v, want ErrUnavailable", err)
	}
	p.Update([]discovery.Instance{{ID: "b", Addr: "b:1"}, {ID: "a", Addr: "a:1"}})
	if !p.Synced() {
		t.Fatal("not synced after Update")
	}
	seen := map[string]int{}
	for range 10 {
		seen[pick(t, p, "", Success)]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("round robin gave %v, want 5 each", seen)
	}
	if got := pick(t, p, "a", Success); got != "b" {
		t.Fatalf("Pick excluding a gave %s", got)
	}

	// Two consecutive failures open a's breaker; excluded outcomes (the
	// client's fault) do not count.
	pick(t, p, "b", Excluded)
	pick(t, p, "b", Failure)
	if got := pick(t, p, "b", Failure); got != "a" {
		t.Fatalf("picked %s excluding b", got)
	}
	if _, _, err := p.Pick("b"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Pick with a's breaker open and b excluded: %v, want ErrUnavailable", err)
	}
	for range 4 {
		if got := pick(t, p, "", Success); got != "b" {
			t.Fatalf("picked %s with a's breaker open", got)
		}
	}
	// An update that keeps a keeps its open breaker; a new instance starts
	// closed.
	p.Update([]discovery.Instance{{ID: "a", Addr: "a:1"}, {ID: "c", Addr: "c:1"}})
	for range 4 {
		if got := pick(t, p, "", Success); got != "c" {
			t.Fatalf("picked %s; want c (a's breaker is still open)", got)
		}
	}
	if _, _, err := p.Pick("c"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Pick with the only closed instance excluded: %v, want ErrUnavailable", err)
	}
	// The same ID at a new address is a new instance, with a new breaker.
	p.Update([]discovery.Instance{{ID: "a", Addr: "a:2"}})
	if got := pick(t, p, "", Success); got != "a" {
		t.Fatalf("picked %s", got)
	}
}

// TestPoolCountsFailingInstancesApart: instances routed to although their
// checks fail (discovery.Watch's panic routing, when none passes) are not
// counted in gateway_upstream_instances, the healthy ones, whose falling
// to 0 pages (deploy/k8s/monitoring), but in
// gateway_upstream_failing_instances.
func TestPoolCountsFailingInstancesApart(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPool("svc", BreakerConfig{Failures: 5, OpenTimeout: time.Minute}, slog.New(slog.DiscardHandler), NewMetrics(reg))
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	for _, c := range []struct {
		insts            []discovery.Instance
		healthy, failing float64
	}{
		{[]discovery.Instance{{ID: "a", Addr: "a:1"}, {ID: "b", Addr: "b:1"}}, 2, 0},
		{[]discovery.Instance{{ID: "a", Addr: "a:1", Failing: true}, {ID: "b", Addr: "b:1", Failing: true}}, 0, 2},
		{[]discovery.Instance{{ID: "b", Addr: "b:1"}}, 1, 0},
	} {
		p.Update(c.insts)
		if got := gauge("gateway_upstream_instances"); got != c.healthy {
			t.Errorf("%v: gateway_upstream_instances %v, want %v", c.insts, got, c.healthy)
		}
		if got := gauge("gateway_upstream_failing_instances"); got != c.failing {
			t.Errorf("%v: gateway_upstream_failing_instances %v, want %v", c.insts, got, c.failing)
		}
		if got := len(p.Instances()); got != len(c.insts) {
			t.Errorf("%v: %d instances routed to, want %d", c.insts, got, len(c.insts))
		}
	}
}
