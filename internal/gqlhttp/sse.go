package gqlhttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/shop/bff/internal/auth"
)

// StreamAdmitter admits the streams of a caller: a cap on the streams one
// user has open and on how many they open per minute. Every stream door
// (GET /events, graphql-sse, multipart) asks the same one.
type StreamAdmitter interface {
	// OpenStream admits one stream for the caller of r. Beyond a cap it
	// writes 429 RATE_LIMITED with Retry-After and returns false;
	// otherwise the caller must call release when the stream ends.
	OpenStream(w http.ResponseWriter, r *http.Request) (release func(), ok bool)
}

// sessionExpiredFrame ends a stream whose session expired.
const sessionExpiredFrame = "event: reset\ndata: {\"reason\":\"session_expired\"}\n\n"

// serveSSE is the graphql-sse door (distinct connections mode: POST with
// Accept: text/event-stream). It runs subscriptions only, admitted like
// every other operation; each result is an `event: next` message (with
// the event's `id:`), the end an `event: complete`, with a `: ping`
// heartbeat while idle. A stream whose session token expires ends with
// `event: reset` (data {"reason":"session_expired"}).
func (h *Handler) serveSSE(w http.ResponseWriter, r *http.Request) {
	h.serveStream(w, r, sseFraming{})
}

// serveMultipart is the multipart subscription door (POST with Accept:
// multipart/mixed;subscriptionSpec="1.0", as Apollo's clients send it):
// the same admission, broker, caps and ids as graphql-sse.
func (h *Handler) serveMultipart(w http.ResponseWriter, r *http.Request) {
	h.serveStream(w, r, multipartFraming{})
}

// OpenStream admits one stream of the caller with the configured
// StreamAdmitter (always, without one).
func (h *Handler) OpenStream(w http.ResponseWriter, r *http.Request) (func(), bool) {
	if h.cfg.Streams == nil {
		return func() {}, true
	}
	return h.cfg.Streams.OpenStream(w, r)
}

// errSessionExpired is the cause of a stream context ended by its token's
// expiry.
var errSessionExpired = errors.New("session expired")

// SessionContext returns ctx ending when the session token of its user
// expires (auth.SessionExpiry); the streams of every door run in it.
func SessionContext(ctx context.Context) (context.Context, context.CancelFunc) {
	exp, ok := auth.SessionExpiry(ctx)
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, exp, errSessionExpired)
}

// SessionExpired reports whether ctx (from SessionContext) ended because
// the session expired.
func SessionExpired(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errSessionExpired)
}
