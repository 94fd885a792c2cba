package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names the tracers of this package.
const instrumentationName = "github.com/shop/bff/internal/telemetry"

// DefaultServiceName is the service.name of the traces when none is set.
const DefaultServiceName = "bff"

// Environment variables read by [TracingConfigFromEnv] (the OpenTelemetry
// SDK's own names). The exporter itself also reads the other
// OTEL_EXPORTER_OTLP_* variables: headers, timeout, compression and TLS
// files.
const (
	EnvServiceName         = "OTEL_SERVICE_NAME"
	EnvOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvTracesSamplerArg    = "OTEL_TRACES_SAMPLER_ARG"
	EnvSDKDisabled         = "OTEL_SDK_DISABLED"
	otlpTracesPath         = "/v1/traces"
	defaultSampleRatio     = 1.0
	otlpEndpointSchemeHelp = "want an http:// or https:// URL"
)

// TracingConfig configures [SetupTracing]. The zero value installs the
// propagator and a tracer provider that exports nothing (trace ids still
// reach the logs and outbound calls).
type TracingConfig struct {
	// ServiceName is the service.name resource attribute. Default "bff".
	ServiceName string
	// ServiceVersion is the service.version resource attribute, if set.
	ServiceVersion string
	// Endpoint is the base URL of an OTLP/HTTP collector
	// (OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://localhost:4318); traces go
	// to its path + /v1/traces. Empty (with TracesEndpoint empty): the
	// exporter is off.
	Endpoint string
	// TracesEndpoint is the full URL traces are posted to
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it wins over Endpoint.
	TracesEndpoint string
	// SampleRatio is the share of new traces that are recorded and
	// exported, in [0, 1]; an incoming traceparent's decision is kept.
	// Default (0) 1: every trace. Use a negative value for none.
	SampleRatio float64
	// Exporter, when set, is used instead of an OTLP exporter (tests,
	// other backends).
	Exporter sdktrace.SpanExporter
	// Propagator replaces the W3C tracecontext propagator.
	Propagator propagation.TextMapPropagator
}

// TracingConfigFromEnv reads OTEL_SERVICE_NAME,
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
// OTEL_TRACES_SAMPLER_ARG (a ratio in [0, 1]) through lookup
// (os.LookupEnv). OTEL_SDK_DISABLED=true leaves the exporter off. An
// invalid value is an error naming the variable.
func TracingConfigFromEnv(lookup func(string) (string, bool)) (TracingConfig, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	cfg := TracingConfig{ServiceName: get(EnvServiceName)}
	if strings.EqualFold(get(EnvSDKDisabled), "true") {
		return cfg, nil
	}
	for _, e := range []struct {
		name string
		dst  *string
	}{{EnvOTLPEndpoint, &cfg.Endpoint}, {EnvOTLPTracesEndpoint, &cfg.TracesEndpoint}} {
		v := get(e.name)
		if v == "" {
			continue
		}
		if _, err := parseEndpoint(v); err != nil {
			return TracingConfig{}, fmt.Errorf("%s: %w", e.name, err)
		}
		*e.dst = v
	}
	if v := get(EnvTracesSamplerArg); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return TracingConfig{}, fmt.Errorf("%s: want a ratio between 0 and 1, got %q", EnvTracesSamplerArg, v)
		}
		cfg.SampleRatio = r
		if r == 0 {
			cfg.SampleRatio = -1
		}
	}
	return cfg, nil
}

func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New(otlpEndpointSchemeHelp)
	}
	return u, nil
}

// tracesURL is the URL the exporter posts to, or "" when it is off.
func (c TracingConfig) tracesURL() (string, error) {
	if c.TracesEndpoint != "" {
		u, err := parseEndpoint(c.TracesEndpoint)
		if err != nil {
			return "", fmt.Errorf("traces endpoint: %w", err)
		}
		return u.String(), nil
	}
	if c.Endpoint == "" {
		return "", nil
	}
	u, err := parseEndpoint(c.Endpoint)
	if err != nil {
		return "", fmt.Errorf("endpoint: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + otlpTracesPath
	return u.String(), nil
}

// SetupTracing installs the global tracer provider and propagator (W3C
// tracecontext) that [Middleware], [Transport], [PgxTracer] and
// [RedisHook] use by default. With an endpoint (or Exporter) configured,
// spans are batched to it and new traces are sampled at SampleRatio;
// without one, nothing is exported and only requests whose traceparent
// says "sampled" are recorded, so trace ids still join logs and calls
// across services. Call shutdown at exit: it flushes the spans still
// buffered.
func SetupTracing(ctx context.Context, cfg TracingConfig) (shutdown func(context.Context) error, err error) {
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}

	exp := cfg.Exporter
	if exp == nil {
		endpoint, err := cfg.tracesURL()
		if err != nil {
			return nil, err
		}
		if endpoint != "" {
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
			if err != nil {
				return nil, fmt.Errorf("OTLP exporter: %w", err)
			}
		}
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		ratio := cfg.SampleRatio
		switch {
		case ratio == 0:
			ratio = defaultSampleRatio
		case ratio < 0:
			ratio = 0
		}
		opts = append(opts, sdktrace.WithBatcher(exp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	} else {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	return tp.Shutdown, nil
}

// TraceID returns the trace id of the span in ctx as 32 hex digits, or ""
// when ctx has none. (httpx.RequestInfo has no trace id field:
// httpx.AccessLog reads the span of its context, which [Middleware] sets.)
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.TraceID().IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
