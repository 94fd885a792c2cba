package httpx

import (
	"context"
	"net/http"
	"time"
)

// requestState is what the middlewares of this package record about a
// request (its peer, its id, its RequestInfo), kept in one context value:
// under [Begin] the request's context is derived once for all of them
// instead of once per middleware (each derivation copies the request).
// Its fields are set before the inner handler runs, by the goroutine that
// serves the request, and never change afterwards, but for hold (the
// request's place at the [Gate]), which has a lock of its own.
type requestState struct {
	peer *peerInfo
	id   string
	info *RequestInfo

	// Storage for peer and info, so that a request costs one allocation
	// for all three.
	peerData peerInfo
	infoData RequestInfo
	// idHeader is the response header value of id, and idText the
	// characters of a generated id: no allocation of their own.
	idHeader [1]string
	idText   [36]byte

	hold gateHold
}

type stateKey struct{}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// Begin gives the request one place where [TrustedProxies.Middleware],
// [RequestID] and [AccessLog] record what they learn, so that the request
// and its context are derived once for the three of them. Install it
// outermost; without it each of them derives the request's context itself.
func Begin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, &requestState{})))
	})
}

// BeginDeadline is [Begin] that also bounds the request by d (not when d
// <= 0, nor an event stream, see [IsStream]), in the same derivation of
// its context: the deadline reaches Postgres and Redis through it. Its
// timer starts only when something waits on the context (see
// deadlineCtx).
func BeginDeadline(d time.Duration) Middleware {
	return func(next http.Handler) http.Handler {
		begin := Begin(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d <= 0 || IsStream(r) {
				begin.ServeHTTP(w, r)
				return
			}
			ctx := newDeadlineCtx(r.Context(), d, &requestState{})
			defer ctx.end()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// claim returns the state of r to record into when set reports that what
// the caller records is not recorded there yet (the state of [Begin]);
// otherwise (no state, or one a layer outside already filled, as in a
// request made with another request's context) a new state that keeps what
// ctx's records, and the request carrying it.
func claim(r *http.Request, set func(*requestState) bool) (*requestState, *http.Request) {
	st, ctx := derive(r.Context(), set)
	if ctx == nil {
		return st, r
	}
	return st, r.WithContext(ctx)
}

// derive is claim for a context: ctx is nil when st is ctx's own.
func derive(ctx context.Context, set func(*requestState) bool) (st *requestState, out context.Context) {
	old := stateOf(ctx)
	if old != nil && !set(old) {
		return old, nil
	}
	st = &requestState{}
	if old != nil {
		st.peer, st.id, st.info = old.peer, old.id, old.info
	}
	return st, context.WithValue(ctx, stateKey{}, st)
}

func hasPeer(st *requestState) bool { return st.peer != nil }
func hasID(st *requestState) bool   { return st.id != "" }
func hasInfo(st *requestState) bool { return st.info != nil }
