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
	eventLag    *prometheus.HistogramVec
	// lagOrder and lagOrders are eventLag's two series, looked up once:
	// Delivered runs for every delivery to every stream.
	lagOrder, lagOrders prometheus.Observer

	commitToInvalidation *prometheus.HistogramVec
	firstDelivery        prometheus.Histogram
	replays              *prometheus.CounterVec
	resets               *prometheus.CounterVec
	sentinel             *prometheus.CounterVec
	cacheRequests        *prometheus.CounterVec

	operations *boundedLabel
	// series holds each operation label's request counter and duration
	// histogram (*opSeries), looked up once instead of on every request
	// (the labels are bounded by operations).
	series   sync.Map
	outcomes *boundedLabel
	codes    map[string]bool

	sse          atomic.Pointer[func() int]
	outbox       atomic.Pointer[func(context.Context) (OutboxStats, error)]
	cacheBreaker atomic.Pointer[func() int]
}

// NewMetrics creates the registry with the Go runtime and process
// collectors and these series:
//
//   - bff_graphql_requests_total{operation}
//   - bff_graphql_errors_total{operation,code}: once per code per request
//   - bff_graphql_request_duration_seconds{operation}: histogram
//   - bff_idempotency_outcomes_total{outcome}: new, replay, in_use, reused,
//     not_stored
//   - bff_sse_connections: open SSE connections (see [Metrics.SetSSEFunc])
//   - bff_event_delivery_lag_seconds{stream}: histogram, commit to each live
//     delivery, by stream kind (order, orders) (see [Metrics.Delivered])
//   - bff_event_commit_to_first_delivery_seconds: histogram, commit to the
//     first hand-over of an event to a stream of this instance
//   - bff_commit_to_invalidation_seconds{path}: histogram, commit to the
//     invalidation of the screens it changed (path inline: the writing
//     request; relay: an event the relay or a catch-up took over)
//   - bff_stream_replays_total{reason}: resume, overflow
//   - bff_stream_resets_total{reason}: unknown, expired, ...
//   - bff_cache_requests_total{screen,status}: made here with every screen
//     and status at 0 (internal/cache feeds it)
//   - bff_cache_breaker_state: 0 closed, 1 half-open, 2 open (see
//     [Metrics.SetCacheBreakerFunc])
//   - bff_stale_sentinel_probes_total{result}: fresh, stale, error (see
//     the server's stale-read sentinel); stale must stay 0
//   - bff_outbox_backlog, bff_outbox_oldest_age_seconds,
//     bff_charge_jobs_pending, bff_charge_jobs_oldest_age_seconds (see
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
			Help: "Keyed mutations by idempotency outcome (new, replay, in_use, reused, not_stored).",
		}, []string{"outcome"}),
		eventLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bff_event_delivery_lag_seconds",
			Help:    "Time from an order event's commit to its live delivery to a stream, by stream kind (order, orders).",
			Buckets: cfg.LagBuckets,
		}, []string{"stream"}),
		firstDelivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bff_event_commit_to_first_delivery_seconds",
			Help:    "Time from an order event's commit to its first hand-over to a stream of this instance.",
			Buckets: cfg.LagBuckets,
		}),
		commitToInvalidation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bff_commit_to_invalidation_seconds",
			Help:    "Time from a write's commit to the invalidation of the screens it changed (path: inline, relay).",
			Buckets: cfg.LagBuckets,
		}, []string{"path"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_stream_replays_total",
			Help: "Event stream replays from Postgres by reason (resume: a client resumed; overflow: a stream fell behind during its replay).",
		}, []string{"reason"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_stream_resets_total",
			Help: "Resume points refused with event: reset (or BAD_USER_INPUT for a subscription), by reason.",
		}, []string{"reason"}),
		sentinel: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_stale_sentinel_probes_total",
			Help: "Stale-read sentinel probes by result: fresh, stale (a screen read after a write showed older data; must stay 0), error.",
		}, []string{"result"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_cache_requests_total",
			Help: "Screen cache lookups by screen and status (hit, miss, bypass, error).",
		}, []string{"screen", "status"}),
		operations: newBoundedLabel(cfg.MaxOperations),
		outcomes:   newBoundedLabel(DefaultMaxOutcomes),
		codes:      make(map[string]bool, len(httpx.AllCodes)),
	}
	for _, c := range httpx.AllCodes {
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
	cacheBreaker := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bff_cache_breaker_state",
		Help: "State of the screen cache's circuit breaker around Redis: 0 closed, 1 half-open, 2 open.",
	}, func() float64 {
		if f := m.cacheBreaker.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.errors, m.duration, m.idempotency, m.eventLag, sse,
		m.firstDelivery, m.commitToInvalidation, m.replays, m.resets, m.sentinel, m.cacheRequests, cacheBreaker,
		&outboxCollector{m: m},
	)
	// Every known label value starts at 0, so the series (and the alerts
	// on them) exist before the first occurrence.
	for _, o := range IdempotencyOutcomes {
		m.idempotency.WithLabelValues(o)
		m.outcomes.value(o)
	}
	m.lagOrder, m.lagOrders = m.eventLag.WithLabelValues("order"), m.eventLag.WithLabelValues("orders")
	for _, p := range []string{InvalidationInline, InvalidationRelay} {
		m.commitToInvalidation.WithLabelValues(p)
	}
	for _, r := range []string{"resume", "overflow"} {
		m.replays.WithLabelValues(r)
	}
	for _, r := range []string{"unknown", "expired"} {
		m.resets.WithLabelValues(r)
	}
	for _, r := range []string{SentinelFresh, SentinelStale, SentinelError} {
		m.sentinel.WithLabelValues(r)
	}
	for _, sc := range Screens {
		for _, st := range []string{"hit", "miss", "bypass", "error"} {
			m.cacheRequests.WithLabelValues(sc, st)
		}
	}
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
	series := m.seriesOf(op)
	series.requests.Inc()
	series.duration.Observe(d.Seconds())
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

// opSeries are the series of one operation label.
type opSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// seriesOf returns the series of operation label op.
func (m *Metrics) seriesOf(op string) *opSeries {
	if s, ok := m.series.Load(op); ok {
		return s.(*opSeries)
	}
	s, _ := m.series.LoadOrStore(op, &opSeries{requests: m.requests.WithLabelValues(op), duration: m.duration.WithLabelValues(op)})
	return s.(*opSeries)
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

// Idempotency outcomes of bff_idempotency_outcomes_total.
const (
	IdempotencyNew       = "new"        // the mutation ran and its response was stored
	IdempotencyReplay    = "replay"     // the stored response was returned
	IdempotencyInUse     = "in_use"     // the key's first request is still running (409)
	IdempotencyReused    = "reused"     // the key came with a different request (422)
	IdempotencyNotStored = "not_stored" // the mutation failed transiently, nothing stored
)

// IdempotencyOutcomes lists the outcomes, each present from the start.
var IdempotencyOutcomes = []string{IdempotencyNew, IdempotencyReplay, IdempotencyInUse, IdempotencyReused, IdempotencyNotStored}

// Screens are the cached screens, whose cache series exist from the start.
var Screens = []string{"homeScreen", "ordersScreen", "orderScreen"}

// Paths of bff_commit_to_invalidation_seconds.
const (
	InvalidationInline = "inline"
	InvalidationRelay  = "relay"
)

// Results of bff_stale_sentinel_probes_total.
const (
	SentinelFresh = "fresh"
	SentinelStale = "stale"
	SentinelError = "error"
)

// Delivered records the lag from an event's commit to one live delivery
// to a stream of kind stream ("order" or "orders"). With FirstDelivery,
// Replayed and Reset it implements stream.Metrics.
func (m *Metrics) Delivered(stream string, lag time.Duration) {
	if m == nil {
		return
	}
	var o prometheus.Observer
	switch stream {
	case "order":
		o = m.lagOrder
	case "orders":
		o = m.lagOrders
	default:
		o = m.eventLag.WithLabelValues(stream)
	}
	o.Observe(max(lag, 0).Seconds())
}

// FirstDelivery records the lag from an event's commit to its first
// hand-over to a stream of this instance.
func (m *Metrics) FirstDelivery(lag time.Duration) {
	if m == nil {
		return
	}
	m.firstDelivery.Observe(max(lag, 0).Seconds())
}

// Replayed counts a replay from Postgres by reason.
func (m *Metrics) Replayed(reason string) {
	if m == nil {
		return
	}
	m.replays.WithLabelValues(reason).Inc()
}

// Reset counts a refused resume point by reason.
func (m *Metrics) Reset(reason string) {
	if m == nil {
		return
	}
	m.resets.WithLabelValues(reason).Inc()
}

// ObserveInvalidation records the time from a commit to the invalidation
// of its screens, on path (InvalidationInline, InvalidationRelay).
func (m *Metrics) ObserveInvalidation(path string, d time.Duration) {
	if m == nil {
		return
	}
	m.commitToInvalidation.WithLabelValues(path).Observe(max(d, 0).Seconds())
}

// ObserveSentinel counts one probe of the stale-read sentinel
// (SentinelFresh, SentinelStale, SentinelError).
func (m *Metrics) ObserveSentinel(result string) {
	if m == nil {
		return
	}
	m.sentinel.WithLabelValues(result).Inc()
}

// SetCacheBreakerFunc sets the func that bff_cache_breaker_state reads at
// each scrape (0 closed, 1 half-open, 2 open).
func (m *Metrics) SetCacheBreakerFunc(f func() int) {
	if m != nil && f != nil {
		m.cacheBreaker.Store(&f)
	}
}

// OutboxStats is what the outbox func reports at a scrape: the two
// outboxes, events not yet published and charge jobs not yet done.
type OutboxStats struct {
	// Pending is the number of outbox rows not yet published.
	Pending int64
	// OldestAge is the age of the oldest pending row (0 when none).
	OldestAge time.Duration
	// ChargeJobsPending is the number of charge jobs not yet done or
	// failed.
	ChargeJobsPending int64
	// ChargeJobsOldestAge is the age of the oldest of them (0 when none).
	ChargeJobsOldestAge time.Duration
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
	chargeJobsDesc = prometheus.NewDesc("bff_charge_jobs_pending",
		"Charge jobs queued for the payment provider and not yet done or failed.", nil, nil)
	chargeJobsAgeDesc = prometheus.NewDesc("bff_charge_jobs_oldest_age_seconds",
		"Age of the oldest charge job not yet done or failed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxBacklogDesc
	ch <- outboxAgeDesc
	ch <- chargeJobsDesc
	ch <- chargeJobsAgeDesc
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
	ch <- prometheus.MustNewConstMetric(chargeJobsDesc, prometheus.GaugeValue, float64(s.ChargeJobsPending))
	ch <- prometheus.MustNewConstMetric(chargeJobsAgeDesc, prometheus.GaugeValue, max(s.ChargeJobsOldestAge, 0).Seconds())
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
