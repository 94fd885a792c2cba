package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// RedisHook is a go-redis hook that makes a client span for each command,
// pipeline and dial. Spans carry the command name, never its arguments
// (they hold keys and values); redis.Nil is not an error. Like
// [PgxTracer], it makes spans only under a span of the caller.
type RedisHook struct {
	tracer trace.Tracer
	attrs  []attribute.KeyValue
}

var _ redis.Hook = (*RedisHook)(nil)

// NewRedisHook returns the hook; addr, when known, is recorded as
// server.address.
func NewRedisHook(addr string, opts ...Option) *RedisHook {
	o := newOptions(opts)
	attrs := []attribute.KeyValue{semconv.DBSystemNameRedis}
	if host, port := splitHostPort(addr); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	return &RedisHook{tracer: o.tracer(), attrs: attrs}
}

// InstrumentRedis adds a [RedisHook] to rdb (recording the address of a
// single-node client).
func InstrumentRedis(rdb redis.UniversalClient, opts ...Option) {
	addr := ""
	if c, ok := rdb.(*redis.Client); ok {
		addr = c.Options().Addr
	}
	rdb.AddHook(NewRedisHook(addr, opts...))
}

func (h *RedisHook) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(h.attrs...), trace.WithAttributes(attrs...))
}

func finish(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// DialHook implements redis.Hook.
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !hasParent(ctx) {
			return next(ctx, network, addr)
		}
		ctx, span := h.start(ctx, "redis.dial")
		conn, err := next(ctx, network, addr)
		finish(span, err)
		return conn, err
	}
}

// ProcessHook implements redis.Hook.
func (h *RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !hasParent(ctx) {
			return next(ctx, cmd)
		}
		name := strings.ToUpper(cmd.FullName())
		ctx, span := h.start(ctx, name, semconv.DBOperationName(name))
		err := next(ctx, cmd)
		finish(span, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !hasParent(ctx) {
			return next(ctx, cmds)
		}
		names := make([]string, 0, len(cmds))
		for _, c := range cmds {
			if n := strings.ToUpper(c.FullName()); len(names) == 0 || names[len(names)-1] != n {
				names = append(names, n)
			}
		}
		if len(names) > 5 {
			names = append(names[:5], "…")
		}
		ctx, span := h.start(ctx, "PIPELINE "+strings.Join(names, " "),
			semconv.DBOperationName("PIPELINE"), semconv.DBOperationBatchSize(len(cmds)))
		err := next(ctx, cmds)
		finish(span, err)
		return err
	}
}
