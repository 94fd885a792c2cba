package httpx

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/order"
)

// BodyLimit caps request bodies at n bytes (MAX_BODY_BYTES;
// config.DefaultMaxBodyBytes when n <= 0).
// A request whose Content-Length exceeds n fails at once with 413
// PAYLOAD_TOO_LARGE; any other body (chunked ones included) is wrapped with
// http.MaxBytesReader, so reading past n fails with an error that
// [IsBodyTooLarge] recognises and [PayloadTooLargeError] maps.
func BodyLimit(n int64) Middleware {
	if n <= 0 {
		n = config.DefaultMaxBodyBytes
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				WriteError(w, r, http.StatusRequestEntityTooLarge, PayloadTooLarge(n))
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, n)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// IsBodyTooLarge reports whether err comes from reading a body past the cap
// set by [BodyLimit].
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// PayloadTooLargeError returns the PAYLOAD_TOO_LARGE error for an error from
// reading a capped body, or nil when err is something else. Respond with
// status 413.
func PayloadTooLargeError(err error) *order.Error {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return nil
	}
	return PayloadTooLarge(mbe.Limit)
}

// PayloadTooLarge is the PAYLOAD_TOO_LARGE error with extension limit (bytes).
func PayloadTooLarge(limit int64) *order.Error {
	return &order.Error{Code: CodePayloadTooLarge,
		Message:    "request body is too large",
		Extensions: map[string]any{"limit": limit}}
}

// ShedOption configures [Shed].
type ShedOption func(*shedConfig)

type shedConfig struct {
	exempt func(*http.Request) bool
}

// WithShedExempt replaces the predicate that picks requests not counted by
// [Shed] (default: [IsStream]).
func WithShedExempt(exempt func(*http.Request) bool) ShedOption {
	return func(c *shedConfig) { c.exempt = exempt }
}

// IsStream reports whether r is for a stream route: GET /events, or POST
// /graphql asking for a stream (Accept text/event-stream: graphql-sse; or
// multipart/mixed). Only these are exempt from shedding and the request
// deadline; a GET /graphql or any other route is never a stream, whatever
// its Accept header, and the stream doors admit subscriptions only.
func IsStream(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/events":
		return true
	case r.Method == http.MethodPost && r.URL.Path == "/graphql":
		accept := r.Header.Get("Accept")
		return strings.Contains(accept, "text/event-stream") || strings.Contains(accept, "multipart/mixed")
	}
	return false
}

// Shed caps the requests in flight at maxInFlight (no cap when <= 0): beyond
// it a request fails at once with 503 UNAVAILABLE (dependency "bff") and
// Retry-After: 1, so overload degrades instead of queueing without end.
// Long-lived stream requests (see [WithShedExempt]) are neither counted nor
// shed.
func Shed(maxInFlight int, opts ...ShedOption) Middleware {
	cfg := shedConfig{exempt: IsStream}
	for _, o := range opts {
		o(&cfg)
	}
	var inFlight atomic.Int64
	limit := int64(maxInFlight)
	return func(next http.Handler) http.Handler {
		if maxInFlight <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cfg.exempt != nil && cfg.exempt(r) {
				next.ServeHTTP(w, r)
				return
			}
			if inFlight.Add(1) > limit {
				inFlight.Add(-1)
				WriteError(w, r, http.StatusServiceUnavailable, Overloaded())
				return
			}
			defer inFlight.Add(-1)
			next.ServeHTTP(w, r)
		})
	}
}

// Overloaded is the UNAVAILABLE error of a shed request.
func Overloaded() *order.Error {
	return &order.Error{Code: order.CodeUnavailable,
		Message:    "server is overloaded, retry later",
		Extensions: map[string]any{"dependency": "bff", ExtRetryAfterSeconds: 1}}
}

// SecurityOptions configures [SecurityHeaders].
type SecurityOptions struct {
	// HSTS sends Strict-Transport-Security on every response, also when TLS
	// is terminated by a proxy (COOKIE_SECURE=true). On a secure request
	// ([IsSecure]: TLS, or X-Forwarded-Proto: https from a trusted proxy)
	// it is sent regardless.
	HSTS bool
	// HSTSMaxAgeSeconds is the max-age of Strict-Transport-Security
	// (default 31536000, one year).
	HSTSMaxAgeSeconds int
}

// SecurityHeaders sets X-Content-Type-Options: nosniff on every response and
// Strict-Transport-Security when the request is secure ([IsSecure]) or
// opts.HSTS.
func SecurityHeaders(opts SecurityOptions) Middleware {
	maxAge := opts.HSTSMaxAgeSeconds
	if maxAge <= 0 {
		maxAge = 31536000
	}
	hsts := NewHeaderValue("max-age=" + strconv.Itoa(maxAge))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			nosniff.Set(h, "X-Content-Type-Options")
			if opts.HSTS || IsSecure(r) {
				hsts.Set(h, "Strict-Transport-Security")
			}
			next.ServeHTTP(w, r)
		})
	}
}

var nosniff = NewHeaderValue("nosniff")

// BodyDeadline gives the reading of a request body d (no limit when
// d <= 0): a client that sends its body slower fails with a read error
// (400, or the handler's own answer) instead of holding an in-flight slot.
// The deadline is lifted once the body is read to its end or closed, so a
// stream that follows its body is not cut.
func BodyDeadline(d time.Duration) Middleware {
	return func(next http.Handler) http.Handler {
		if d <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			b := &deadlineBody{ReadCloser: r.Body, rc: *http.NewResponseController(w)}
			if err := b.rc.SetReadDeadline(time.Now().Add(d)); err != nil {
				next.ServeHTTP(w, r) // a connection without deadlines (a test recorder)
				return
			}
			r.Body = b
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody lifts the read deadline once the body ends (one
// allocation with its response controller).
type deadlineBody struct {
	io.ReadCloser
	rc   http.ResponseController
	once sync.Once
}

func (b *deadlineBody) lift() { _ = b.rc.SetReadDeadline(time.Time{}) }

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.once.Do(b.lift)
	return b.ReadCloser.Close()
}
