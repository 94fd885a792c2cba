// Package telemetry holds the BFF's metrics and traces.
//
// Metrics: [Metrics] owns a Prometheus registry with the Go runtime and
// process collectors, the RED series per GraphQL operation
// (bff_graphql_requests_total, bff_graphql_errors_total,
// bff_graphql_request_duration_seconds), the idempotency, SSE, event lag
// and outbox series the server feeds, a pgx pool collector, and
// [Metrics.Register] for the collectors of other packages (cache,
// payments, ratelimit). [Metrics.Handler] serves /metrics.
//
// Traces: [SetupTracing] installs an OpenTelemetry tracer provider and the
// W3C tracecontext propagator; the exporter is off unless an OTLP/HTTP
// endpoint is configured. [Middleware] creates the HTTP server span from
// an incoming traceparent, [GraphQLTracer] (a gqlgen extension) one span
// per GraphQL operation, [Transport] propagates the trace on outbound
// calls, [PgxTracer] and [RedisHook] create spans for Postgres queries and
// Redis commands, and [TraceID] gives the trace id of a context for logs.
//
// Order of the HTTP middleware: httpx.RequestID, then [Middleware] (so the
// access log sees the span), then httpx.AccessLog, then [AnnotateSpan] and
// [Metrics.Middleware] (they read the request's httpx.RequestInfo).
package telemetry
