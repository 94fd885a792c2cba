package httpx

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// HeaderRequestID is the header that carries the request id in and out.
const HeaderRequestID = "X-Request-ID"

// requestIDHeaderKey is HeaderRequestID as net/http keeps it (canonical): the
// middleware's lookups then cost no conversion.
var requestIDHeaderKey = http.CanonicalHeaderKey(HeaderRequestID)

// RequestID keeps a valid client X-Request-ID (see [ValidRequestID]) or
// generates a new one (a UUIDv7), stores it in the request context and
// echoes it in the response header before the handler runs.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeaderKey)
		if !ValidRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(requestIDHeaderKey, id)
		st, r := claim(r, hasID)
		st.id = id
		next.ServeHTTP(w, r)
	})
}

// ValidRequestID reports whether id is 1..128 characters of [A-Za-z0-9._:-].
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// WithRequestID returns ctx carrying request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	st, out := derive(ctx, func(*requestState) bool { return true })
	st.id = id
	return out
}

// RequestIDFrom returns the request id stored by [RequestID], or "".
func RequestIDFrom(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

func newRequestID() string {
	if u, err := uuid.NewV7(); err == nil {
		return u.String()
	}
	return uuid.NewString()
}
