package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shop/bff/internal/httpx"
)

// Option configures the instrumentation of this package ([Middleware],
// [Transport], [NewPgxTracer], [NewRedisHook]).
type Option func(*options)

type options struct {
	tp     trace.TracerProvider
	prop   propagation.TextMapPropagator
	filter func(*http.Request) bool
}

// WithTracerProvider makes spans with tp instead of the global provider
// installed by [SetupTracing].
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithPropagator reads and writes trace headers with p instead of the
// global propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.prop = p }
}

// WithFilter makes [Middleware] trace only the requests for which keep
// returns true (e.g. to leave out /livez and /metrics).
func WithFilter(keep func(*http.Request) bool) Option {
	return func(o *options) { o.filter = keep }
}

func newOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider() // delegates to one set later
	}
	if o.prop == nil {
		o.prop = otel.GetTextMapPropagator() // delegates to one set later
	}
	return o
}

func (o options) tracer() trace.Tracer { return o.tp.Tracer(instrumentationName) }

// Middleware creates the server span of each request, as a child of the
// incoming traceparent when there is one, and puts it in the request
// context: install it outside httpx.AccessLog, whose log line then carries
// the trace id (see [TraceID]). The span is named after the method, and
// after the route too when the mux is right inside (else [AnnotateSpan]
// does that); it records the status code, and a 5xx marks it as an error.
func Middleware(opts ...Option) httpx.Middleware {
	o := newOptions(opts)
	tracer := o.tracer()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o.filter != nil && !o.filter(r) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := o.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			// The span is made without attributes: a sampled-out one (every
			// request by default, without an exporter) carries the trace id
			// to the logs and outbound calls and nothing else, so what only
			// a recorded span keeps is computed for a recorded one alone
			// (the samplers of TracingConfig decide by trace id and
			// parent, never by attributes).
			ctx, span := tracer.Start(ctx, r.Method, serverKind)
			defer span.End()
			r = r.WithContext(ctx)
			if !span.IsRecording() {
				next.ServeHTTP(w, r)
				return
			}
			span.SetAttributes(requestAttributes(ctx, r)...)
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)

			setRoute(span, r)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}

// serverKind is the span option of a server span, made once.
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// requestAttributes are the attributes of the server span of r.
func requestAttributes(ctx context.Context, r *http.Request) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.URLPath(r.URL.Path),
		semconv.URLScheme(scheme(r)),
		semconv.NetworkProtocolVersion(strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)),
	}
	if host, port := splitHostPort(r.Host); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if host, _ := splitHostPort(r.RemoteAddr); host != "" {
		attrs = append(attrs, semconv.ClientAddress(host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	if id := httpx.RequestIDFrom(ctx); id != "" {
		attrs = append(attrs, attribute.String("bff.request_id", id))
	}
	return attrs
}

// AnnotateSpan copies what later layers recorded in the request's
// httpx.RequestInfo onto the server span once the handler returns: user id
// (enduser.id), GraphQL operation name, cache status, idempotency outcome
// and error codes. Install it inside httpx.AccessLog, as the innermost
// middleware around the http.ServeMux: it then also names the span after
// the matched route ("POST /graphql") and sets http.route.
func AnnotateSpan(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		setRoute(span, r)
		f := httpx.Info(r.Context()).Fields()
		var attrs []attribute.KeyValue
		if f.UserID != "" {
			attrs = append(attrs, attribute.String("enduser.id", f.UserID))
		}
		if f.Operation != "" {
			attrs = append(attrs, semconv.GraphQLOperationName(f.Operation))
		}
		if f.Cache != "" {
			attrs = append(attrs, attribute.String("bff.cache", f.Cache))
		}
		if f.Idempotency != "" {
			attrs = append(attrs, attribute.String("bff.idempotency", f.Idempotency))
		}
		if len(f.ErrorCodes) > 0 {
			attrs = append(attrs, attribute.StringSlice("bff.error_codes", f.ErrorCodes))
		}
		span.SetAttributes(attrs...)
	})
}

// setRoute names span after the ServeMux pattern that r matched, if any.
// The mux sets the pattern on the request it was given, so this works only
// right around the mux: in [Middleware] when it wraps the mux directly,
// else in [AnnotateSpan].
func setRoute(span trace.Span, r *http.Request) {
	if route := route(r.Pattern); route != "" {
		span.SetName(r.Method + " " + route)
		span.SetAttributes(semconv.HTTPRoute(route))
	}
}

// route is the path part of a ServeMux pattern ("POST /graphql" →
// "/graphql"), without a host.
func route(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimSpace(pattern[i+1:])
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func splitHostPort(hostport string) (string, int) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// statusWriter records the status code. It keeps http.Flusher working (for
// SSE) and exposes the wrapped writer to http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher when the wrapped writer does.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer (for http.ResponseController).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Transport returns an http.RoundTripper that makes a client span for each
// request sent through base (http.DefaultTransport when nil) and injects
// the span's traceparent into a copy of the request, for provider calls
// and outbound webhooks. The URL is recorded without its query string.
func Transport(base http.RoundTripper, opts ...Option) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	o := newOptions(opts)
	return &transport{base: base, tracer: o.tracer(), prop: o.prop}
}

type transport struct {
	base   http.RoundTripper
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	u := *req.URL
	u.RawQuery, u.Fragment, u.User = "", "", nil
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(req.Method),
		semconv.URLFull(u.String()),
	}
	if host, port := splitHostPort(req.URL.Host); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	ctx, span := t.tracer.Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrs...))
	defer span.End()

	out := req.Clone(ctx) // a RoundTripper must not change the caller's request
	t.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	res, err := t.base.RoundTrip(out)
	if err != nil {
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) { // its message holds the full URL, query included
			cause = ue.Err
		}
		span.RecordError(cause)
		span.SetStatus(codes.Error, cause.Error())
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
	if res.StatusCode >= 400 {
		span.SetStatus(codes.Error, http.StatusText(res.StatusCode))
	}
	return res, nil
}
