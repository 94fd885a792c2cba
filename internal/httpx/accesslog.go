package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// RequestInfo collects what later layers learn about a request (user,
// GraphQL operation, cache status, idempotency outcome, error codes and
// causes) for the access log line. All methods are safe for concurrent use
// and are no-ops on a nil *RequestInfo, so callers need not check [Info].
type RequestInfo struct {
	mu          sync.Mutex
	userID      string
	operation   string
	cache       string
	idempotency string
	codes       []string
	causes      []string
}

// RequestInfoFields is a snapshot of a [RequestInfo].
type RequestInfoFields struct {
	UserID      string
	Operation   string
	Cache       string
	Idempotency string
	ErrorCodes  []string
	Causes      []string
}

// WithInfo returns ctx carrying info.
func WithInfo(ctx context.Context, info *RequestInfo) context.Context {
	st, out := derive(ctx, func(*requestState) bool { return true })
	st.info = info
	return out
}

// Info returns the request's RequestInfo stored by [AccessLog], or nil.
func Info(ctx context.Context) *RequestInfo {
	if st := stateOf(ctx); st != nil {
		return st.info
	}
	return nil
}

// SetUser records the authenticated user's id.
func (i *RequestInfo) SetUser(id string) {
	i.set(func() { i.userID = id })
}

// SetOperation records the GraphQL operation name.
func (i *RequestInfo) SetOperation(name string) {
	i.set(func() { i.operation = name })
}

// SetCache records the cache status (e.g. "hit", "miss", "bypass").
func (i *RequestInfo) SetCache(status string) {
	i.set(func() { i.cache = status })
}

// SetIdempotency records the idempotency outcome (e.g. "new", "replay",
// "conflict").
func (i *RequestInfo) SetIdempotency(outcome string) {
	i.set(func() { i.idempotency = outcome })
}

// AddErrorCode records an error code returned to the client (once per code).
func (i *RequestInfo) AddErrorCode(code string) {
	i.set(func() {
		if !slices.Contains(i.codes, code) {
			i.codes = append(i.codes, code)
		}
	})
}

// AddCause records the cause of an error (for INTERNAL and dependency
// failures); it is logged, never shown to the client.
func (i *RequestInfo) AddCause(err error) {
	if err == nil {
		return
	}
	i.set(func() { i.causes = append(i.causes, err.Error()) })
}

// Fields returns a snapshot of what was recorded.
func (i *RequestInfo) Fields() RequestInfoFields {
	if i == nil {
		return RequestInfoFields{}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return RequestInfoFields{UserID: i.userID, Operation: i.operation, Cache: i.cache,
		Idempotency: i.idempotency, ErrorCodes: slices.Clone(i.codes), Causes: slices.Clone(i.causes)}
}

func (i *RequestInfo) set(f func()) {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	f()
}

// LogCause records err as a cause in the request's log line (see
// [RequestInfo.AddCause]). Use it where an INTERNAL error is turned into a
// field error, so the cause reaches the log.
func LogCause(ctx context.Context, err error) {
	Info(ctx).AddCause(err)
}

// AccessLog writes one log line per request on logger (slog.Default() when
// nil) after the response: request_id, trace_id (when the context carries a
// valid span), method, path (without the query string), status, latency_ms,
// bytes, and what later layers recorded in the [RequestInfo] it stores in
// the context: user_id, operation, cache, idempotency, error_codes, error.
// It never logs headers, cookies, query strings or bodies, so credentials
// stay out of the log. Responses with status >= 500 are logged at level
// Error, the rest at Info.
//
// Install it inside [RequestID] (so the id is known) and outside [Recover]
// (so a panic's 500 is logged).
func AccessLog(logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			st, r := claim(r, hasInfo)
			info := &st.infoData
			st.info = info
			ctx := r.Context()
			sw := wrap(w)
			next.ServeHTTP(sw, r)

			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelError
			}
			if !logger.Enabled(ctx, level) {
				return // LOG_LEVEL above the line's: nothing to build
			}
			f := info.Fields()
			attrs := make([]slog.Attr, 0, 14)
			attrs = append(attrs, slog.String("request_id", RequestIDFrom(ctx)))
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
				attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
			}
			attrs = append(attrs,
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", sw.status),
				slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000),
				slog.Int64("bytes", sw.bytes))
			attrs = appendNonEmpty(attrs, "user_id", f.UserID)
			attrs = appendNonEmpty(attrs, "operation", f.Operation)
			attrs = appendNonEmpty(attrs, "cache", f.Cache)
			attrs = appendNonEmpty(attrs, "idempotency", f.Idempotency)
			if len(f.ErrorCodes) > 0 {
				attrs = append(attrs, slog.Any("error_codes", f.ErrorCodes))
			}
			if len(f.Causes) > 0 {
				attrs = append(attrs, slog.Any("error", f.Causes))
			}
			logger.LogAttrs(ctx, level, "request", attrs...)
		})
	}
}

func appendNonEmpty(attrs []slog.Attr, key, value string) []slog.Attr {
	if value == "" {
		return attrs
	}
	return append(attrs, slog.String(key, value))
}
