package cache

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics receives one observation per Load.
type Metrics interface {
	// Observe records that a Load of screen ended with status s.
	Observe(screen string, s Status)
}

type nopMetrics struct{}

func (nopMetrics) Observe(string, Status) {}

// PrometheusMetrics counts Loads in bff_cache_requests_total{screen,status}.
type PrometheusMetrics struct {
	requests *prometheus.CounterVec
	// counters holds the counter of each screen and status
	// (seriesKey → prometheus.Counter), looked up once: screens are the
	// shop's few screen queries, statuses four.
	counters sync.Map
}

type seriesKey struct {
	screen string
	status Status
}

// NewPrometheusMetrics registers the counter with reg (reusing it when it is
// already registered) and returns the Metrics that feed it. It panics when
// another collector holds the name, like prometheus.MustRegister.
func NewPrometheusMetrics(reg prometheus.Registerer) *PrometheusMetrics {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bff_cache_requests_total",
		Help: "Screen cache lookups by screen and status (hit, miss, bypass, error).",
	}, []string{"screen", "status"})
	if err := reg.Register(cv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			panic(err)
		}
		cv = existing
	}
	return &PrometheusMetrics{requests: cv}
}

// Observe increments the counter of screen and s.
func (p *PrometheusMetrics) Observe(screen string, s Status) {
	k := seriesKey{screen, s}
	c, ok := p.counters.Load(k)
	if !ok {
		c, _ = p.counters.LoadOrStore(k, p.requests.WithLabelValues(screen, string(s)))
	}
	c.(prometheus.Counter).Inc()
}
