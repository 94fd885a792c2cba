package httpx

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"time"
	"unsafe"

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
		st, r := claim(r, hasID)
		if !ValidRequestID(id) {
			id = st.newRequestID()
		}
		st.id = id
		st.idHeader[0] = id
		w.Header()[requestIDHeaderKey] = st.idHeader[:1:1]
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

// newRequestID returns a new UUIDv7 (RFC 9562: the Unix time in
// milliseconds, then 74 random bits from the runtime's ChaCha8 generator),
// written into st.idText: the id costs no allocation of its own.
func (st *requestState) newRequestID() string {
	var u uuid.UUID
	ms := uint64(time.Now().UnixMilli())
	hi, lo := rand.Uint64(), rand.Uint64()
	binary.BigEndian.PutUint64(u[0:8], ms<<16|0x7000|hi&0x0fff)
	binary.BigEndian.PutUint64(u[8:16], 0x8000000000000000|lo&0x3fffffffffffffff)
	b := st.idText[:]
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		j += 2
	}
	// st is never written again once its id is set: the string may share
	// its bytes.
	return unsafe.String(&st.idText[0], len(st.idText))
}
