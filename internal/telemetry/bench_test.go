package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shop/bff/internal/telemetry"
)

// BenchmarkMiddleware measures the server span per request: not sampled
// (the default without an exporter) and recorded into a discarding
// processor, against the bare handler.
func BenchmarkMiddleware(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	run := func(b *testing.B, handler http.Handler) {
		req := httptest.NewRequest("POST", "/graphql", nil)
		req.Header.Set("traceparent", incomingParent)
		w := httptest.NewRecorder()
		for b.Loop() {
			handler.ServeHTTP(w, req)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, h) })
	for name, sampler := range map[string]sdktrace.Sampler{
		"unsampled": sdktrace.NeverSample(), "recorded": sdktrace.AlwaysSample()} {
		b.Run(name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler),
				sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			run(b, telemetry.Middleware(telemetry.WithTracerProvider(tp), telemetry.WithPropagator(propagation.TraceContext{}))(h))
		})
	}
}

// BenchmarkObserveRequest measures the RED observation of one request.
func BenchmarkObserveRequest(b *testing.B) {
	m := telemetry.NewMetrics(telemetry.MetricsConfig{})
	codes := []string{"NOT_FOUND"}
	for b.Loop() {
		m.ObserveRequest("OrderScreen", codes, 3*time.Millisecond)
	}
}
