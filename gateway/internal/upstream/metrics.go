package upstream

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the upstream metrics shared by every pool.
type Metrics struct {
	instances      *prometheus.GaugeVec
	failing        *prometheus.GaugeVec
	breakerChanges *prometheus.CounterVec
	requests       *prometheus.CounterVec
	retries        *prometheus.CounterVec
}

// NewMetrics registers the upstream metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_upstream_instances",
			Help: "Healthy instances known per upstream service (passing their Consul checks, or listed statically).",
		}, []string{"upstream"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_upstream_failing_instances",
			Help: "Instances routed to although their Consul checks fail, per upstream service: every registered one while none passes (panic routing), else 0.",
		}, []string{"upstream"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_breaker_state_changes_total",
			Help: "Circuit breaker state changes, by upstream and new state.",
		}, []string{"upstream", "state"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_requests_total",
			Help: "Attempts sent to upstream instances, by upstream and outcome (success, failure, excluded).",
		}, []string{"upstream", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_retries_total",
			Help: "Idempotent requests retried on another instance, by upstream.",
		}, []string{"upstream"}),
	}
	reg.MustRegister(m.instances, m.failing, m.breakerChanges, m.requests, m.retries)
	return m
}
