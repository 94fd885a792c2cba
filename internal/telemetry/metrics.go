package telemetry

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
)

// Label values that stand for several others.
const (
	// OperationAnonymous labels requests without an operation name.
	OperationAnonymous = "anonymous"
	// LabelOther labels values beyond a label's bound, and error codes
	// outside the contract.
	LabelOther = "other"
)

// Defaults of [MetricsConfig].
const (
	DefaultMaxOperations   = 200
	DefaultMaxOutcomes     = 20
	DefaultOutboxTimeout   = 2 * time.Second
	maxOperationNameLength = 100
)

// MetricsConfig configures [NewMetrics]. The zero value is valid.
type MetricsConfig struct {
	// MaxOperations bounds the distinct values of the "operation" label:
	// operation names come from clients, so past this many the rest are
	// counted as "other". Default 200.
	MaxOperations int
	// DurationBuckets are the buckets (seconds) of
	// bff_graphql_request_duration_seconds. Default 5ms to 10s.
	DurationBuckets []float64
	// LagBuckets are the buckets (seconds) of
	// bff_event_delivery_lag_seconds. Default 1ms to 30s.
	LagBuckets []float64
	// OutboxTimeout bounds one call of the outbox func set with
	// [Metrics.SetOutboxFunc] during a scrape. Default 2s.
	OutboxTimeout time.Duration
}

// Metrics owns the BFF's Prometheus registry and the series the server
// feeds. Every method is safe for concurrent use, and a nil *Metrics is
// valid and records nothing, so packages need not check for it.
type Metrics struct {
	reg *prometheus.Registry
	cfg MetricsConfig

	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	idempotency *prometheus.CounterVec
	eventLag    prometheus.Histogram

	operations *boundedLabel
	outcomes   *boundedLabel
	codes      map[string]bool

	sse    atomic.Pointer[func() int]
	outbox atomic.Pointer[func(context.Context) (OutboxStats, error)]
}

// NewMetrics creates the registry with the Go runtime and process
// collectors and these series:
//
//   - bff_graphql_requests_total{operation}
//   - bff_graphql_errors_total{operation,code}: once per code per request
//   - bff_graphql_request_duration_seconds{operation}: histogram
//   - bff_idempotency_outcomes_total{outcome}
//   - bff_sse_connections: open SSE connections (see [Metrics.SetSSEFunc])
//   - bff_event_delivery_lag_seconds: histogram (see [Metrics.ObserveEventLag])
//   - bff_outbox_backlog, bff_outbox_oldest_age_seconds (see
//     [Metrics.SetOutboxFunc]); absent while no func is set or it fails
func NewMetrics(cfg MetricsConfig) *Metrics {
	if cfg.MaxOperations <= 0 {
		cfg.MaxOperations = DefaultMaxOperations
	}
	if len(cfg.DurationBuckets) == 0 {
		cfg.DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	}
	if len(cfg.LagBuckets) == 0 {
		cfg.LagBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	}
	if cfg.OutboxTimeout <= 0 {
		cfg.OutboxTimeout = DefaultOutboxTimeout
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_graphql_requests_total",
			Help: "GraphQL requests by operation name.",
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_graphql_errors_total",
			Help: "GraphQL requests that returned an error, by operation name and error code (once per code per request).",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bff_graphql_request_duration_seconds",
			Help:    "Duration of GraphQL requests by operation name.",
			Buckets: cfg.DurationBuckets,
		}, []string{"operation"}),
		idempotency: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_idempotency_outcomes_total",
			Help: "Keyed mutations by idempotency outcome (e.g. new, replay, conflict, in_use, reused).",
		}, []string{"outcome"}),
		eventLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bff_event_delivery_lag_seconds",
			Help:    "Time from an order event's commit to its delivery to a subscriber.",
			Buckets: cfg.LagBuckets,
		}),
		operations: newBoundedLabel(cfg.MaxOperations),
		outcomes:   newBoundedLabel(DefaultMaxOutcomes),
		codes:      make(map[string]bool, len(order.AllCodes)),
	}
	for _, c := range order.AllCodes {
		m.codes[string(c)] = true
	}
	sse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bff_sse_connections",
		Help: "Open server-sent event connections.",
	}, func() float64 {
		if f := m.sse.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.errors, m.duration, m.idempotency, m.eventLag, sse,
		&outboxCollector{m: m},
	)
	return m
}

// Registry returns the registry, for packages whose constructors take a
// prometheus.Registerer (cache.NewPrometheusMetrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Register adds another package's collector to the registry (see
// prometheus.Registerer.Register for the errors). With a nil *Metrics it
// does nothing.
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format, for GET /metrics. A collector that fails leaves out its series
// and the rest are still served.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ObserveRequest records one GraphQL request: its operation name ("" for
// an anonymous operation), the distinct error codes it returned and how
// long it took. Operation names past [MetricsConfig.MaxOperations] or not
// shaped like GraphQL names count as "other", codes outside the contract
// as "other".
func (m *Metrics) ObserveRequest(operation string, codes []string, d time.Duration) {
	if m == nil {
		return
	}
	op := m.operationLabel(operation)
	m.requests.WithLabelValues(op).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
	for i, c := range codes {
		if !m.codes[c] {
			c = LabelOther
		}
		dup := false
		for _, prev := range codes[:i] {
			if prev == codes[i] {
				dup = true
				break
			}
		}
		if !dup {
			m.errors.WithLabelValues(op, c).Inc()
		}
	}
}

func (m *Metrics) operationLabel(name string) string {
	if name == "" {
		return OperationAnonymous
	}
	if !validName(name) {
		return LabelOther
	}
	return m.operations.value(name)
}

// Middleware observes each request it wraps with [Metrics.ObserveRequest],
// taking the operation and error codes from the request's
// httpx.RequestInfo: install it inside httpx.AccessLog, around the
// /graphql handler. Stream requests (httpx.IsStream) are not observed:
// their duration is the life of the stream.
func (m *Metrics) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		if m == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if httpx.IsStream(r) {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			next.ServeHTTP(w, r)
			f := httpx.Info(r.Context()).Fields()
			m.ObserveRequest(f.Operation, f.ErrorCodes, time.Since(start))
		})
	}
}

// ObserveIdempotency counts one keyed mutation by its outcome (the value
// recorded with httpx.RequestInfo.SetIdempotency). At most 20 distinct
// outcomes are kept; more count as "other".
func (m *Metrics) ObserveIdempotency(outcome string) {
	if m == nil || outcome == "" {
		return
	}
	m.idempotency.WithLabelValues(m.outcomes.value(outcome)).Inc()
}

// SetSSEFunc sets the func that bff_sse_connections reads at each scrape
// (the broker's count of open streams). Until it is set the gauge is 0.
func (m *Metrics) SetSSEFunc(f func() int) {
	if m != nil && f != nil {
		m.sse.Store(&f)
	}
}

// ObserveEventLag records how long an event took from its commit to its
// delivery to a subscriber.
func (m *Metrics) ObserveEventLag(d time.Duration) {
	if m == nil {
		return
	}
	m.eventLag.Observe(max(d, 0).Seconds())
}

// OutboxStats is what the outbox func reports at a scrape.
type OutboxStats struct {
	// Pending is the number of outbox rows not yet published.
	Pending int64
	// OldestAge is the age of the oldest pending row (0 when none).
	OldestAge time.Duration
}

// SetOutboxFunc sets the func that bff_outbox_backlog and
// bff_outbox_oldest_age_seconds read at each scrape, called with a context
// bounded by [MetricsConfig.OutboxTimeout]. While it fails, both series are
// left out of the scrape.
func (m *Metrics) SetOutboxFunc(f func(ctx context.Context) (OutboxStats, error)) {
	if m != nil && f != nil {
		m.outbox.Store(&f)
	}
}

// outboxCollector queries the outbox func at scrape time.
type outboxCollector struct{ m *Metrics }

var (
	outboxBacklogDesc = prometheus.NewDesc("bff_outbox_backlog",
		"Outbox rows not yet published.", nil, nil)
	outboxAgeDesc = prometheus.NewDesc("bff_outbox_oldest_age_seconds",
		"Age of the oldest outbox row not yet published.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxBacklogDesc
	ch <- outboxAgeDesc
}

// Collect implements prometheus.Collector.
func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.outbox.Load()
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.m.cfg.OutboxTimeout)
	defer cancel()
	s, err := (*f)(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(outboxBacklogDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(outboxBacklogDesc, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(outboxAgeDesc, prometheus.GaugeValue, max(s.OldestAge, 0).Seconds())
}

// boundedLabel admits up to max distinct values and maps the rest to
// "other", so that client-chosen values cannot grow a label without end.
type boundedLabel struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newBoundedLabel(max int) *boundedLabel {
	return &boundedLabel{max: max, seen: make(map[string]struct{})}
}

func (b *boundedLabel) value(v string) string {
	b.mu.RLock()
	_, ok := b.seen[v]
	b.mu.RUnlock()
	if ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return LabelOther
	}
	b.seen[v] = struct{}{}
	return v
}

// validName reports whether s is a GraphQL name ([_A-Za-z][_0-9A-Za-z]*)
// of at most 100 characters.
func validName(s string) bool {
	if s == "" || len(s) > maxOperationNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
