package telemetry

import (
	"context"
	"log/slog"

	"github.com/shop/bff/internal/httpx"
)

// Log keys shared by every package, one spelling per field.
const (
	LogKeyTraceID   = "trace_id"
	LogKeyRequestID = "request_id"
	LogKeyError     = "error"
)

// LogHandler wraps h so that every record logged with a request's context
// (slog's *Context methods) carries the request's trace_id and
// request_id, unless the record sets them itself (the access log line
// does).
func LogHandler(h slog.Handler) slog.Handler { return &logHandler{h} }

type logHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		needTrace, needReq := true, true
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case LogKeyTraceID:
				needTrace = false
			case LogKeyRequestID:
				needReq = false
			}
			return needTrace || needReq
		})
		if needReq {
			if req := httpx.RequestIDFrom(ctx); req != "" {
				r.AddAttrs(slog.String(LogKeyRequestID, req))
			}
		}
		if needTrace {
			if trace := TraceID(ctx); trace != "" {
				r.AddAttrs(slog.String(LogKeyTraceID, trace))
			}
		}
	}
	return l.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{l.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (l *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{l.Handler.WithGroup(name)}
}
