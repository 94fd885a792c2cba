package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts decisions; counters for every label combination are made
// up front so that a request costs no label lookup.
type metrics struct {
	requests *prometheus.CounterVec
	counters map[[3]string]prometheus.Counter
	redis    prometheus.GaugeFunc
	healthy  func() bool
}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_ratelimit_requests_total",
			Help: "Rate limit decisions by kind (query, mutation), result (allowed, limited) and source (redis, local).",
		}, []string{"kind", "result", "source"}),
		counters: make(map[[3]string]prometheus.Counter, 8),
	}
	for _, kind := range []string{"query", "mutation"} {
		for _, result := range []string{"allowed", "limited"} {
			for _, source := range []string{SourceRedis, SourceLocal} {
				m.counters[[3]string{kind, result, source}] = m.requests.WithLabelValues(kind, result, source)
			}
		}
	}
	m.redis = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bff_ratelimit_redis_healthy",
		Help: "1 while the rate limiter shares its budgets through Redis, 0 while it limits locally.",
	}, func() float64 {
		if m.healthy != nil && m.healthy() {
			return 1
		}
		return 0
	})
	return m
}

func (m *metrics) observe(kind string, d decision) {
	result := "allowed"
	if !d.allowed {
		result = "limited"
	}
	if c, ok := m.counters[[3]string{kind, result, d.source}]; ok {
		c.Inc()
	}
}

// Collectors returns the limiter's Prometheus collectors, for
// telemetry.Metrics.Register: bff_ratelimit_requests_total{kind,result,source}
// and bff_ratelimit_redis_healthy (1 shared through Redis, 0 local).
func (l *Limiter) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.metrics.requests, l.metrics.redis}
}
