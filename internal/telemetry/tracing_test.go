package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
	"github.com/shop/bff/internal/telemetry"
	"github.com/shop/bff/internal/testenv"
)

const (
	incomingTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpanID  = "00f067aa0ba902b7"
	incomingParent  = "00-" + incomingTraceID + "-" + incomingSpanID + "-01"
)

// tracing returns a provider that records every span synchronously in the
// returned in-memory exporter, and the options that use it.
func tracing(t *testing.T) (*tracetest.InMemoryExporter, trace.TracerProvider, []telemetry.Option) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return exp, tp, []telemetry.Option{telemetry.WithTracerProvider(tp), telemetry.WithPropagator(propagation.TraceContext{})}
}

func spansNamed(exp *tracetest.InMemoryExporter, prefix string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestMiddlewareServerSpan(t *testing.T) {
	exp, _, opts := tracing(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	var seenTraceID string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /graphql", func(w http.ResponseWriter, r *http.Request) {
		seenTraceID = telemetry.TraceID(r.Context())
		info := httpx.Info(r.Context())
		info.SetOperation("OrderScreen")
		info.SetUser("user-1")
		_, _ = io.WriteString(w, `{"data":{}}`)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, 503, order.Unavailable("postgres", nil))
	})
	h := httpx.Chain(mux, httpx.RequestID, telemetry.Middleware(opts...), httpx.AccessLog(logger), telemetry.AnnotateSpan)
	srv := httptest.NewServer(h)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/graphql", strings.NewReader(`{}`))
	req.Header.Set("traceparent", incomingParent)
	req.Header.Set("X-Request-ID", "req-trace-1")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, 200, res.StatusCode)

	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "POST /graphql", s.Name)
	assert.Equal(t, trace.SpanKindServer, s.SpanKind)
	assert.Equal(t, incomingTraceID, s.SpanContext.TraceID().String(), "the incoming trace goes on")
	assert.Equal(t, incomingSpanID, s.Parent.SpanID().String(), "the caller's span is the parent")
	assert.True(t, s.Parent.IsRemote())
	a := attrs(s)
	assert.EqualValues(t, 200, a["http.response.status_code"].AsInt64())
	assert.Equal(t, "/graphql", a["http.route"].AsString())
	assert.Equal(t, "POST", a["http.request.method"].AsString())
	assert.Equal(t, "req-trace-1", a["bff.request_id"].AsString())
	assert.Equal(t, "OrderScreen", a["graphql.operation.name"].AsString())
	assert.Equal(t, "user-1", a["enduser.id"].AsString())

	assert.Equal(t, incomingTraceID, seenTraceID, "TraceID in the handler")
	assert.Contains(t, logs.String(), `"trace_id":"`+incomingTraceID+`"`, "the access log carries the trace id")

	// Without a traceparent: a new root span; a 5xx marks it as an error.
	exp.Reset()
	res, err = http.Get(srv.URL + "/boom")
	require.NoError(t, err)
	_ = res.Body.Close()
	spans = exp.GetSpans()
	require.Len(t, spans, 1)
	assert.False(t, spans[0].Parent.IsValid(), "a root span")
	assert.Equal(t, "GET /boom", spans[0].Name)
	assert.Equal(t, codes.Error, spans[0].Status.Code)
	assert.Equal(t, []string{"UNAVAILABLE"}, attrs(spans[0])["bff.error_codes"].AsStringSlice())
}

func TestMiddlewareFilterAndFlush(t *testing.T) {
	exp, _, opts := tracing(t)
	opts = append(opts, telemetry.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/livez" }))
	h := telemetry.Middleware(opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: x\n\n")
		require.NoError(t, http.NewResponseController(w).Flush(), "streams can flush through the span writer")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	assert.Empty(t, exp.GetSpans(), "filtered out")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	assert.True(t, rec.Flushed)
	require.Len(t, exp.GetSpans(), 1)
}

func TestTransportInjectsTraceparent(t *testing.T) {
	exp, tp, opts := tracing(t)
	var got http.Header
	var gotURL string
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotURL = r.URL.String()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer provider.Close()

	ctx, parent := tp.Tracer("test").Start(context.Background(), "charge job")
	client := &http.Client{Transport: telemetry.Transport(nil, opts...)}
	req, _ := http.NewRequestWithContext(ctx, "POST", provider.URL+"/charges?secret=s3cr3t", strings.NewReader("{}"))
	res, err := client.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	parent.End()

	assert.Empty(t, req.Header.Get("traceparent"), "the caller's request is not changed")
	assert.Equal(t, "/charges?secret=s3cr3t", gotURL)
	spans := spansNamed(exp, "POST")
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, trace.SpanKindClient, s.SpanKind)
	assert.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID())
	want := "00-" + s.SpanContext.TraceID().String() + "-" + s.SpanContext.SpanID().String() + "-01"
	assert.Equal(t, want, got.Get("traceparent"), "the provider sees the client span as parent")
	a := attrs(s)
	assert.EqualValues(t, 202, a["http.response.status_code"].AsInt64())
	assert.NotContains(t, a["url.full"].AsString(), "s3cr3t", "no query string on the span")

	// A failing call records the error.
	exp.Reset()
	provider.Close()
	_, err = client.Get(provider.URL + "/down")
	require.Error(t, err)
	spans = spansNamed(exp, "GET")
	require.Len(t, spans, 1)
	assert.Equal(t, codes.Error, spans[0].Status.Code)
}

// countingTracer is another tracer chained behind PgxTracer, like the
// query counters of the server tests.
type countingTracer struct{ starts, ends atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.starts.Add(1)
	return ctx
}

func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {
	c.ends.Add(1)
}

func TestPgxTracer(t *testing.T) {
	exp, tp, opts := tracing(t)
	next := &countingTracer{}
	tracer := telemetry.NewPgxTracer(next, opts...)
	store, url := testenv.Store(t, false, postgres.Config{Tracer: tracer, MaxConns: 2})
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.ConnConfig.Tracer, pc.MaxConns = tracer, 1
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pool.Ping(context.Background()))
	exp.Reset() // connects while opening

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	_, err = store.UserByID(ctx, uuid.NewString())
	require.Error(t, err, "no such user")
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT 1 + $1::int", 1).Scan(&n))
	_, err = pool.Exec(ctx, "SELECT * FROM no_such_table")
	require.Error(t, err)
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 2")
	require.NoError(t, pool.SendBatch(ctx, b).Close())
	parent.End()

	var queries []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if attrs(s)["db.system.name"].AsString() == "postgresql" && s.Name != "postgresql.connect" {
			queries = append(queries, s)
		}
	}
	require.Len(t, queries, 4, "store query, QueryRow, failing Exec, batch")
	for _, s := range queries {
		assert.Equal(t, trace.SpanKindClient, s.SpanKind)
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID(), "%s is a child of the request", s.Name)
	}
	user := queries[0]
	assert.Equal(t, "SELECT users", user.Name)
	assert.Contains(t, attrs(user)["db.query.text"].AsString(), "FROM users")
	assert.Equal(t, "SELECT", attrs(user)["db.operation.name"].AsString())
	assert.NotEqual(t, codes.Error, user.Status.Code, "no rows is not an error")
	assert.Equal(t, codes.Error, queries[2].Status.Code, "the missing table is")
	assert.Equal(t, "BATCH", queries[3].Name)
	assert.EqualValues(t, 2, attrs(queries[3])["db.operation.batch.size"].AsInt64())
	assert.Len(t, queries[3].Events, 2, "one event per batched query")

	assert.EqualValues(t, 3, next.starts.Load(), "the chained tracer sees every query")
	assert.Equal(t, next.starts.Load(), next.ends.Load())
}

func TestRedisHook(t *testing.T) {
	exp, tp, opts := tracing(t)
	rdb, prefix := testenv.Redis(t)
	telemetry.InstrumentRedis(rdb, opts...)

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, rdb.Set(ctx, prefix+"k", "secret-value", 0).Err())
	require.ErrorIs(t, rdb.Get(ctx, prefix+"missing").Err(), redis.Nil)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, prefix+"n")
		p.Expire(ctx, prefix+"n", 60e9)
		return nil
	})
	require.NoError(t, err)
	parent.End()

	var cmds []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == parent.SpanContext().SpanID() {
			cmds = append(cmds, s)
		}
	}
	require.Len(t, cmds, 3)
	assert.Equal(t, "SET", cmds[0].Name)
	assert.Equal(t, "GET", cmds[1].Name)
	assert.Equal(t, "PIPELINE INCR EXPIRE", cmds[2].Name)
	assert.NotEqual(t, codes.Error, cmds[1].Status.Code, "a miss is not an error")
	for _, s := range cmds {
		assert.Equal(t, trace.SpanKindClient, s.SpanKind)
		a := attrs(s)
		assert.Equal(t, "redis", a["db.system.name"].AsString())
		for _, kv := range s.Attributes {
			assert.NotContains(t, kv.Value.Emit(), prefix, "keys are not recorded")
			assert.NotContains(t, kv.Value.Emit(), "secret-value", "values are not recorded")
		}
	}
}

// TestSetupTracingExportsOTLP runs SetupTracing against a stand-in OTLP/HTTP
// collector and checks that a span reaches it, that the global propagator
// is tracecontext, and that the global provider serves Middleware.
func TestSetupTracingExportsOTLP(t *testing.T) {
	restoreGlobals(t)
	var mu sync.Mutex
	var posts []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		if len(body) == 0 {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(200)
	}))
	defer collector.Close()

	shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{
		ServiceName: "bff-test", Endpoint: collector.URL})
	require.NoError(t, err)
	assert.Contains(t, otel.GetTextMapPropagator().Fields(), "traceparent")

	h := telemetry.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("GET", "/graphql", nil)
	req.Header.Set("traceparent", incomingParent)
	h.ServeHTTP(httptest.NewRecorder(), req)

	require.NoError(t, shutdown(context.Background()), "shutdown flushes")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, posts, "the collector received spans")
	assert.Equal(t, "POST /v1/traces application/x-protobuf", posts[0])
}

// TestSetupTracingWithoutExporter: the default exports nothing but still
// gives every request a trace id, and keeps an incoming one.
func TestSetupTracingWithoutExporter(t *testing.T) {
	restoreGlobals(t)
	shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{})
	require.NoError(t, err)
	defer func() { _ = shutdown(context.Background()) }()

	var ids []string
	var outbound []string
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outbound = append(outbound, r.Header.Get("traceparent"))
	}))
	defer downstream.Close()
	client := &http.Client{Transport: telemetry.Transport(nil)}
	h := telemetry.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids = append(ids, telemetry.TraceID(r.Context()))
		req, _ := http.NewRequestWithContext(r.Context(), "GET", downstream.URL, nil)
		if res, err := client.Do(req); err == nil {
			_ = res.Body.Close()
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("traceparent", incomingParent)
	h.ServeHTTP(httptest.NewRecorder(), req)

	require.Len(t, ids, 2)
	assert.Len(t, ids[0], 32, "a new trace id")
	assert.NotEqual(t, strings.Repeat("0", 32), ids[0])
	assert.Equal(t, incomingTraceID, ids[1])
	require.Len(t, outbound, 2)
	assert.Contains(t, outbound[0], ids[0])
	assert.True(t, strings.HasPrefix(outbound[1], "00-"+incomingTraceID+"-"), "the incoming trace goes on downstream")
	assert.True(t, strings.HasSuffix(outbound[1], "-01"), "and keeps its sampled flag")
	assert.Empty(t, telemetry.TraceID(context.Background()))
}

func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
	})
}

// TestNewTracingSamplers: the OTEL_TRACES_SAMPLER names choose what is
// recorded, and an unknown name or a ratio outside [0, 1] is refused.
func TestNewTracingSamplers(t *testing.T) {
	zero := 0.0
	for _, c := range []struct {
		sampler string
		arg     *float64
		want    bool
	}{
		{"", nil, true},
		{telemetry.SamplerParentBasedAlwaysOn, nil, true},
		{telemetry.SamplerAlwaysOn, nil, true},
		{telemetry.SamplerAlwaysOff, nil, false},
		{telemetry.SamplerParentBasedAlwaysOff, nil, false},
		{telemetry.SamplerTraceIDRatio, &zero, false},
		{telemetry.SamplerParentBasedTraceIDRatio, &zero, false},
		{telemetry.SamplerTraceIDRatio, nil, true},
	} {
		exp := tracetest.NewInMemoryExporter()
		tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Exporter: exp, Sampler: c.sampler, SamplerArg: c.arg})
		require.NoError(t, err, c.sampler)
		_, span := tr.Provider().Tracer("test").Start(context.Background(), "op")
		span.End()
		require.NoError(t, tr.ForceFlush(context.Background()))
		assert.Equal(t, c.want, len(exp.GetSpans()) == 1, "sampler %q", c.sampler)
		require.NoError(t, tr.Shutdown(context.Background()))
	}
	_, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Sampler: "sometimes"})
	require.Error(t, err)
	two := 2.0
	_, err = telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Sampler: telemetry.SamplerTraceIDRatio, SamplerArg: &two})
	require.Error(t, err)
}

// TestTraceParentRoundTrip: a stored traceparent continues the trace.
func TestTraceParentRoundTrip(t *testing.T) {
	_, tp, _ := tracing(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	stored := telemetry.TraceParent(ctx)
	require.NotEmpty(t, stored)
	assert.Empty(t, telemetry.TraceParent(context.Background()))
	later := telemetry.ContextWithTraceParent(context.Background(), stored)
	assert.Equal(t, telemetry.TraceID(ctx), telemetry.TraceID(later))
	assert.Equal(t, context.Background(), telemetry.ContextWithTraceParent(context.Background(), ""))
}

// TestLogHandlerAddsTheRequestsIDs: a line logged with a request's context
// carries its trace id and request id once; a line that sets them keeps
// its own; a line without a context has neither.
func TestLogHandlerAddsTheRequestsIDs(t *testing.T) {
	_, tp, _ := tracing(t)
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	var ctx context.Context
	httpx.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ctx = r.Context() })).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	ctx, span := tp.Tracer("test").Start(ctx, "request")
	defer span.End()

	log.WarnContext(ctx, "with context")
	log.InfoContext(ctx, "own ids", "trace_id", "mine", "request_id", "mine too")
	log.Warn("without context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], `"trace_id":"`+telemetry.TraceID(ctx)+`"`)
	assert.Contains(t, lines[0], `"request_id":"`+httpx.RequestIDFrom(ctx)+`"`)
	assert.NotEmpty(t, httpx.RequestIDFrom(ctx))
	assert.Equal(t, 1, strings.Count(lines[1], "trace_id"), lines[1])
	assert.Contains(t, lines[1], `"trace_id":"mine"`)
	assert.NotContains(t, lines[2], "trace_id")
}

// startCounter is a tracer provider that counts the spans started through
// it.
type startCounter struct {
	embedded.TracerProvider
	tp     trace.TracerProvider
	starts atomic.Int64
}

func (c *startCounter) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &startCountingTracer{Tracer: c.tp.Tracer(name, opts...), n: &c.starts}
}

type startCountingTracer struct {
	trace.Tracer
	n *atomic.Int64
}

func (c *startCountingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	c.n.Add(1)
	return c.Tracer.Start(ctx, name, opts...)
}

// Under a local span that was sampled out no client span is made (its
// sampler would leave it out too); under a remote parent the sampler
// decides, whatever the parent's flag.
func TestClientSpansFollowTheirParent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	counter := &startCounter{tp: sdk}
	rdb, prefix := testenv.Redis(t)
	telemetry.InstrumentRedis(rdb, telemetry.WithTracerProvider(counter))

	// A sampled-out request span (the default without an exporter).
	off := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	ctx, span := off.Tracer("test").Start(context.Background(), "request")
	require.False(t, span.IsRecording())
	require.NoError(t, rdb.Set(ctx, prefix+"k", "v", 0).Err())
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, prefix+"k"); return nil })
	require.NoError(t, err)
	span.End()
	assert.Zero(t, counter.starts.Load(), "no span under a sampled-out one")

	// A remote parent that is not sampled: always_on records the child.
	rctx := telemetry.ContextWithTraceParent(context.Background(), "00-"+incomingTraceID+"-"+incomingSpanID+"-00")
	require.True(t, trace.SpanContextFromContext(rctx).IsRemote())
	require.NoError(t, rdb.Get(rctx, prefix+"k").Err())
	assert.EqualValues(t, 1, counter.starts.Load())
	got := spansNamed(exp, "GET")
	require.Len(t, got, 1)
	assert.Equal(t, incomingTraceID, got[0].SpanContext.TraceID().String())
}
