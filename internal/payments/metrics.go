package payments

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the Prometheus collectors of the package. A nil *Metrics is
// valid and records nothing. Create with [NewMetrics], register with
// [Metrics.Register], and pass to [HTTPConfig], [WorkerConfig] and
// [WebhookConfig].
type Metrics struct {
	providerCalls *prometheus.CounterVec
	chargeJobs    *prometheus.CounterVec
	webhooks      *prometheus.CounterVec
	breakerState  prometheus.GaugeFunc
	breaker       atomic.Pointer[func() gobreaker.State]
}

// Outcomes of a provider call (label "outcome" of
// bff_payments_provider_calls_total).
const (
	OutcomeAccepted    = "accepted"
	OutcomeRetryable   = "retryable_error"
	OutcomePermanent   = "permanent_error"
	OutcomeBreakerOpen = "breaker_open"
)

// NewMetrics creates the collectors:
//
//   - bff_payments_provider_calls_total{outcome}: accepted, retryable_error,
//     permanent_error, breaker_open
//   - bff_payments_breaker_state: 0 closed, 1 half-open, 2 open
//   - bff_payments_charge_jobs_total{result}: done, retry, deferred (the
//     breaker was open, nothing sent), failed
//   - bff_payments_webhooks_total{result}: applied, ignored,
//     unauthenticated, too_large, bad_request, not_found, unavailable, error
func NewMetrics() *Metrics {
	m := &Metrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_payments_provider_calls_total",
			Help: "Charge calls to the payment provider by outcome.",
		}, []string{"outcome"}),
		chargeJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_payments_charge_jobs_total",
			Help: "Charge job runs by result (done, retry, deferred, failed).",
		}, []string{"result"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bff_payments_webhooks_total",
			Help: "Inbound payment webhooks by result.",
		}, []string{"result"}),
	}
	// The documented values start at 0, so dashboards and alerts see the
	// series before the first call, job or webhook.
	for _, o := range []string{OutcomeAccepted, OutcomeRetryable, OutcomePermanent, OutcomeBreakerOpen} {
		m.providerCalls.WithLabelValues(o)
	}
	for _, r := range []string{"done", "retry", "deferred", "failed"} {
		m.chargeJobs.WithLabelValues(r)
	}
	for _, r := range []string{"applied", "ignored", "unauthenticated", "too_large", "bad_request", "not_found", "unavailable", "error"} {
		m.webhooks.WithLabelValues(r)
	}
	m.breakerState = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bff_payments_breaker_state",
		Help: "State of the payment provider circuit breaker: 0 closed, 1 half-open, 2 open.",
	}, func() float64 {
		if f := m.breaker.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	return m
}

// Register registers every collector with r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.providerCalls, m.chargeJobs, m.webhooks, m.breakerState} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) providerCall(outcome string) {
	if m != nil {
		m.providerCalls.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) chargeJob(result string) {
	if m != nil {
		m.chargeJobs.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) webhook(result string) {
	if m != nil {
		m.webhooks.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) observeBreaker(f func() gobreaker.State) {
	if m != nil {
		m.breaker.Store(&f)
	}
}
