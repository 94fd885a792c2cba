package auth

import (
	"context"
	"time"

	"github.com/shop/bff/internal/order"
)

// session is the signed-in user of a request and the expiry of the token
// that signed it in, in one context value.
type session struct {
	user *order.User
	exp  time.Time
}

type sessionKey struct{}

// sessionCtx is a context carrying a session: one allocation, where a
// context.WithValue of a *session takes two. Every other key is its
// parent's.
type sessionCtx struct {
	context.Context
	s session
}

func (c *sessionCtx) Value(key any) any {
	if _, ok := key.(sessionKey); ok {
		return &c.s
	}
	return c.Context.Value(key)
}

func sessionOf(ctx context.Context) session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	if s == nil {
		return session{}
	}
	return *s
}

// WithSession returns ctx carrying the signed-in user u and the expiry of
// the session token that signed u in (zero: none).
func WithSession(ctx context.Context, u *order.User, exp time.Time) context.Context {
	return &sessionCtx{Context: ctx, s: session{user: u, exp: exp}}
}

// WithUser returns ctx carrying the signed-in user u (and the session
// expiry ctx carries).
func WithUser(ctx context.Context, u *order.User) context.Context {
	return WithSession(ctx, u, sessionOf(ctx).exp)
}

// UserFrom returns the signed-in user of ctx; false for an anonymous request.
func UserFrom(ctx context.Context) (*order.User, bool) {
	u := sessionOf(ctx).user
	return u, u != nil
}

// WithSessionExpiry returns ctx carrying the expiry of the session token
// that signed its user in (and the user ctx carries).
func WithSessionExpiry(ctx context.Context, exp time.Time) context.Context {
	return WithSession(ctx, sessionOf(ctx).user, exp)
}

// SessionExpiry returns when the session of ctx's user ends (the exp of
// its token); false for an anonymous request. Long-lived streams end then.
func SessionExpiry(ctx context.Context) (time.Time, bool) {
	t := sessionOf(ctx).exp
	return t, !t.IsZero()
}
