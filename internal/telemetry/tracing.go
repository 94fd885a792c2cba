package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/config"
)

// instrumentationName names the tracers of this package.
const instrumentationName = "github.com/shop/bff/internal/telemetry"

// Sampler names of OTEL_TRACES_SAMPLER (the OpenTelemetry SDK's standard
// values). The ratio of the traceidratio samplers is OTEL_TRACES_SAMPLER_ARG.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// Samplers lists the accepted values of OTEL_TRACES_SAMPLER.
var Samplers = []string{SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff, SamplerParentBasedTraceIDRatio,
	SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio}

const (
	otlpTracesPath         = "/v1/traces"
	otlpEndpointSchemeHelp = "want an http:// or https:// URL"
)

// TracingConfig configures [NewTracing]. The zero value makes a provider
// that exports nothing (trace ids still reach the logs and outbound
// calls). internal/config reads it from the environment (the SDK's own
// variable names: OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG); the exporter itself also reads the other
// OTEL_EXPORTER_OTLP_* variables (headers, timeout, compression, TLS
// files).
type TracingConfig struct {
	// ServiceName is the service.name resource attribute (OTEL_SERVICE_NAME).
	// Default config.DefaultOTelServiceName.
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
	// Sampler is one of [Samplers] (OTEL_TRACES_SAMPLER). Default
	// parentbased_always_on: every new trace, and an incoming
	// traceparent's decision is kept.
	Sampler string
	// SamplerArg is the ratio in [0, 1] of the traceidratio samplers
	// (OTEL_TRACES_SAMPLER_ARG). Default 1.
	SamplerArg *float64
	// Exporter, when set, is used instead of an OTLP exporter (tests,
	// other backends).
	Exporter sdktrace.SpanExporter
	// Propagator replaces the W3C tracecontext propagator.
	Propagator propagation.TextMapPropagator
}

// sampler returns the SDK sampler of c.
func (c TracingConfig) sampler() (sdktrace.Sampler, error) {
	ratio := 1.0
	if c.SamplerArg != nil {
		ratio = *c.SamplerArg
		if ratio < 0 || ratio > 1 {
			return nil, fmt.Errorf("sampler ratio %v is not in [0, 1]", ratio)
		}
	}
	switch c.Sampler {
	case "", SamplerParentBasedAlwaysOn:
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case SamplerParentBasedTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample(), nil
	case SamplerAlwaysOff:
		return sdktrace.NeverSample(), nil
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(ratio), nil
	}
	return nil, fmt.Errorf("unknown sampler %q (want one of %s)", c.Sampler, strings.Join(Samplers, ", "))
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

// Tracing is one tracer provider with its propagator: the server builds
// one from its configuration and hands [Tracing.Options] to every piece
// of instrumentation (HTTP middleware, GraphQL, pgx, Redis, outbound
// transports, background jobs), so that several servers in one process
// (tests) keep their traces apart and nothing depends on globals.
type Tracing struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// NewTracing builds the provider of cfg. With an endpoint (or Exporter)
// configured, spans are batched to it and new traces are sampled by
// cfg.Sampler; without one, nothing is exported and only requests whose
// traceparent says "sampled" are recorded, so trace ids still join logs
// and calls across services. Call [Tracing.Shutdown] at exit: it flushes
// the spans still buffered.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	name := cfg.ServiceName
	if name == "" {
		name = config.DefaultOTelServiceName
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	sampler, err := cfg.sampler()
	if err != nil {
		return nil, err
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
		opts = append(opts, sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler))
	} else {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	return &Tracing{tp: sdktrace.NewTracerProvider(opts...), prop: prop}, nil
}

// Options are the options that make this package's instrumentation use t.
func (t *Tracing) Options() []Option {
	return []Option{WithTracerProvider(t.tp), WithPropagator(t.prop)}
}

// Provider is the tracer provider, for packages that make spans of their
// own (the charge worker, the event streams).
func (t *Tracing) Provider() trace.TracerProvider { return t.tp }

// Propagator is the text map propagator (W3C tracecontext).
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.prop }

// ForceFlush exports the spans ended so far.
func (t *Tracing) ForceFlush(ctx context.Context) error { return t.tp.ForceFlush(ctx) }

// Shutdown flushes the buffered spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// SetupTracing makes a [Tracing] of cfg and installs it as the global
// tracer provider and propagator, for instrumentation created without
// options. The server does not use the globals; see [NewTracing].
func SetupTracing(ctx context.Context, cfg TracingConfig) (shutdown func(context.Context) error, err error) {
	t, err := NewTracing(ctx, cfg)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(t.tp)
	otel.SetTextMapPropagator(t.prop)
	return t.Shutdown, nil
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

// traceparentHeader is the W3C trace context header.
const traceparentHeader = "traceparent"

// TraceParent returns the W3C traceparent of the span in ctx, or "" when
// ctx has none: work that runs later (a charge job, an event delivered to
// streams) stores it and continues the trace with
// [ContextWithTraceParent].
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c[traceparentHeader]
}

// ContextWithTraceParent returns ctx with the remote span context of a
// traceparent from [TraceParent] as its parent span; an empty or invalid
// value leaves ctx as it is.
func ContextWithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{traceparentHeader: traceparent})
}

// hasParent reports whether ctx carries a span under which a child span
// may be recorded: the client spans of Postgres and Redis (and the
// resolvers' spans) are made only inside a traced unit of work (a
// request, a job), never as lone root traces of background polling, and
// never under a local span that was sampled out (a request without a
// sampled traceparent while no exporter is configured, or one a ratio
// left out): every sampler of [TracingConfig] leaves its children out too
// (parent-based ones follow it, a trace-id ratio decides the same trace
// id the same way, always_on records every local span), so making them
// would be work for nothing on every request. Under a remote parent (a
// traceparent continued by [ContextWithTraceParent]) the sampler decides.
func hasParent(ctx context.Context) bool {
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	return sc.IsValid() && (sc.IsRemote() || span.IsRecording())
}
