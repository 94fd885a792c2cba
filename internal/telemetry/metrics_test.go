package telemetry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/ratelimit"
	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/testenv"
)

// scrape returns the /metrics text of m.
func scrape(t *testing.T, m *telemetry.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	return rec.Body.String()
}

func TestMetricsSeries(t *testing.T) {
	m := telemetry.NewMetrics(telemetry.MetricsConfig{MaxOperations: 3})
	store, _ := testenv.Store(t, false, postgres.Config{MaxConns: 3})
	require.NoError(t, m.RegisterPool("main", store))
	require.NoError(t, store.Ping(context.Background()))

	m.ObserveRequest("PlaceOrder", []string{"CONFLICT", "CONFLICT", "NOT_A_CODE"}, 120*time.Millisecond)
	m.ObserveRequest("PlaceOrder", nil, 30*time.Millisecond)
	m.ObserveRequest("", nil, time.Millisecond)
	m.ObserveRequest("OrderScreen", nil, time.Millisecond)
	m.ObserveRequest("Third", nil, time.Millisecond)
	m.ObserveRequest("Fourth", nil, time.Millisecond)     // past MaxOperations
	m.ObserveRequest("bad name{}", nil, time.Millisecond) // not a GraphQL name
	m.ObserveIdempotency("replay")
	m.ObserveIdempotency("conflict")
	m.SetSSEFunc(func() int { return 3 })
	m.Delivered("order", 40*time.Millisecond)
	m.FirstDelivery(30 * time.Millisecond)
	m.ObserveInvalidation(telemetry.InvalidationInline, 2*time.Millisecond)
	m.Replayed("resume")
	m.Reset("expired")
	m.ObserveSentinel(telemetry.SentinelFresh)
	m.SetCacheBreakerFunc(func() int { return 2 })
	m.SetOutboxFunc(func(ctx context.Context) (telemetry.OutboxStats, error) {
		return telemetry.OutboxStats{Pending: 7, OldestAge: 3 * time.Second, ChargeJobsPending: 2, ChargeJobsOldestAge: 5 * time.Second}, nil
	})

	// Other packages register their collectors.
	custom := prometheus.NewCounter(prometheus.CounterOpts{Name: "bff_test_custom_total", Help: "A test counter."})
	require.NoError(t, m.Register(custom))
	require.Error(t, m.Register(custom), "registering twice is an error")
	custom.Inc()
	for _, c := range ratelimit.New(nil, ratelimit.DefaultConfig()).Collectors() {
		require.NoError(t, m.Register(c))
	}

	// The middleware reads operation and codes from the RequestInfo.
	mw := httpx.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.Info(r.Context()).SetOperation("CancelOrder")
		httpx.WriteError(w, r, 429, order.Errorf(order.CodeRateLimited, "slow down"))
	}), httpx.AccessLog(slog.New(slog.DiscardHandler)), m.Middleware())
	mw.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/graphql", nil))

	body := scrape(t, m)
	for _, want := range []string{
		`bff_graphql_requests_total{operation="PlaceOrder"} 2`,
		`bff_graphql_requests_total{operation="anonymous"} 1`,
		`bff_graphql_requests_total{operation="other"} 3`,
		`bff_graphql_errors_total{code="CONFLICT",operation="PlaceOrder"} 1`,
		`bff_graphql_errors_total{code="other",operation="PlaceOrder"} 1`,
		`bff_graphql_request_duration_seconds_bucket{operation="PlaceOrder",le="0.25"} 2`,
		`bff_graphql_request_duration_seconds_count{operation="PlaceOrder"} 2`,
		`bff_graphql_errors_total{code="RATE_LIMITED",operation="other"} 1`,
		`bff_idempotency_outcomes_total{outcome="replay"} 1`,
		`bff_idempotency_outcomes_total{outcome="conflict"} 1`,
		`bff_sse_connections 3`,
		`bff_event_delivery_lag_seconds_count{stream="order"} 1`,
		`bff_event_delivery_lag_seconds_count{stream="orders"} 0`,
		`bff_event_commit_to_first_delivery_seconds_count 1`,
		`bff_commit_to_invalidation_seconds_count{path="inline"} 1`,
		`bff_commit_to_invalidation_seconds_count{path="relay"} 0`,
		`bff_stream_replays_total{reason="resume"} 1`,
		`bff_stream_replays_total{reason="overflow"} 0`,
		`bff_stream_resets_total{reason="expired"} 1`,
		`bff_stale_sentinel_probes_total{result="fresh"} 1`,
		`bff_stale_sentinel_probes_total{result="stale"} 0`,
		`bff_idempotency_outcomes_total{outcome="in_use"} 0`,
		`bff_cache_requests_total{screen="orderScreen",status="bypass"} 0`,
		`bff_cache_breaker_state 2`,
		`bff_outbox_backlog 7`,
		`bff_outbox_oldest_age_seconds 3`,
		`bff_charge_jobs_pending 2`,
		`bff_charge_jobs_oldest_age_seconds 5`,
		`bff_pgxpool_max_conns{pool="main"} 3`,
		`bff_pgxpool_total_conns{pool="main"}`,
		`bff_pgxpool_acquires_total{pool="main"}`,
		`bff_pgxpool_acquire_duration_seconds_total{pool="main"}`,
		`bff_pgxpool_idle_conns{pool="main"}`,
		`bff_pgxpool_acquired_conns{pool="main"} 0`,
		`bff_test_custom_total 1`,
		`bff_ratelimit_redis_healthy 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, "Fourth", "operations past the bound are not labels")
	assert.NotContains(t, body, "bad name")
}

func TestMetricsOutboxFailureKeepsTheRest(t *testing.T) {
	m := telemetry.NewMetrics(telemetry.MetricsConfig{})
	m.SetOutboxFunc(func(ctx context.Context) (telemetry.OutboxStats, error) {
		return telemetry.OutboxStats{}, errors.New("postgres down")
	})
	m.ObserveRequest("Screen", nil, time.Millisecond)
	body := scrape(t, m)
	assert.NotContains(t, body, "bff_outbox_backlog ")
	assert.Contains(t, body, `bff_graphql_requests_total{operation="Screen"} 1`)
	assert.Contains(t, body, "bff_sse_connections 0", "0 until a func is set")
}

func TestNilMetrics(t *testing.T) {
	var m *telemetry.Metrics
	m.ObserveRequest("X", []string{"INTERNAL"}, time.Second)
	m.ObserveIdempotency("new")
	m.Delivered("order", time.Second)
	m.ObserveSentinel(telemetry.SentinelStale)
	m.SetSSEFunc(func() int { return 1 })
	assert.NoError(t, m.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"})))
	h := m.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, "ok", rec.Body.String())
}
