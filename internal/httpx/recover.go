package httpx

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/shop/bff/internal/order"
)

// Recover turns a panic in next into a 500 INTERNAL error response carrying
// the request id, and logs the panic with its stack on logger (slog.Default()
// when nil). The server goes on serving. http.ErrAbortHandler is re-raised,
// as net/http expects. When the handler had already started its response,
// nothing more is written.
func Recover(logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw, ok := w.(*responseWriter) // AccessLog's, when it is right outside
			if !ok {
				sw = wrap(w)
			}
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(p)
				}
				cause := fmt.Errorf("panic: %v", p)
				logger.ErrorContext(r.Context(), "panic recovered",
					slog.String("request_id", RequestIDFrom(r.Context())),
					slog.String("panic", fmt.Sprint(p)),
					slog.String("stack", string(debug.Stack())))
				if sw.wroteHeader {
					Info(r.Context()).AddErrorCode(string(order.CodeInternal))
					Info(r.Context()).AddCause(cause)
					return
				}
				WriteError(sw, r, http.StatusInternalServerError,
					&order.Error{Code: order.CodeInternal, Message: "internal error", Cause: cause})
			}()
			next.ServeHTTP(sw, r)
		})
	}
}
