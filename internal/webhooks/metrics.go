package webhooks

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shop/bff/internal/postgres"
)

// Metrics are the Prometheus collectors of outbound webhooks. A nil
// *Metrics records nothing. Endpoint ids label them: endpoints are few and
// registered by staff.
//
//   - bff_webhook_attempts_total{endpoint,outcome}: delivered, retry,
//     failed (final refusal), dead (retry window over: dead-lettered),
//     deferred (breaker open, nothing sent)
//   - bff_webhook_attempt_duration_seconds{endpoint}: one attempt
//   - bff_webhook_delivery_latency_seconds{endpoint}: from the event to its
//     successful delivery (end to end, retries included)
//   - bff_webhook_queue_depth{endpoint}, bff_webhook_oldest_pending_age_seconds{endpoint},
//     bff_webhook_dead_letters{endpoint}: read from Postgres at scrape time
type Metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	latency  *prometheus.HistogramVec
	queue    *queueCollector
}

// NewMetrics creates the collectors; the queue gauges read store.
func NewMetrics(store *postgres.Store) *Metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600}
	return &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_webhook_attempts_total",
			Help: "Outbound webhook attempts by endpoint and outcome (delivered, retry, failed, dead, deferred).",
		}, []string{"endpoint", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bff_webhook_attempt_duration_seconds", Help: "Duration of one outbound webhook attempt.",
			Buckets: buckets[:11],
		}, []string{"endpoint"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bff_webhook_delivery_latency_seconds", Help: "Time from an order event to its successful delivery to an endpoint.",
			Buckets: buckets,
		}, []string{"endpoint"}),
		queue: &queueCollector{store: store,
			depth: prometheus.NewDesc("bff_webhook_queue_depth", "Outbound webhook deliveries pending per endpoint.", []string{"endpoint"}, nil),
			age: prometheus.NewDesc("bff_webhook_oldest_pending_age_seconds",
				"Age of the oldest pending outbound webhook delivery per endpoint (0: none).", []string{"endpoint"}, nil),
			dead: prometheus.NewDesc("bff_webhook_dead_letters", "Dead-lettered outbound webhook deliveries per endpoint.", []string{"endpoint"}, nil),
		},
	}
}

// Register registers every collector with r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.attempts, m.duration, m.latency, m.queue} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) attempt(endpoint, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(endpoint, outcome).Inc()
	if outcome != "deferred" {
		m.duration.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}

func (m *Metrics) delivered(endpoint string, latency time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(endpoint).Observe(max(latency, 0).Seconds())
	}
}

// queueCollector reads the backlog of every endpoint at scrape time.
type queueCollector struct {
	store            *postgres.Store
	depth, age, dead *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
	ch <- c.dead
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	if c.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	qs, err := c.store.WebhookQueues(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(q.Pending), q.EndpointID)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, q.OldestPending.Seconds(), q.EndpointID)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(q.Dead), q.EndpointID)
	}
}
