package auth

import (
	"context"
	"time"

	"github.com/shop/bff/internal/order"
)

type userKey struct{}

// WithUser returns ctx carrying the signed-in user u.
func WithUser(ctx context.Context, u *order.User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the signed-in user of ctx; false for an anonymous request.
func UserFrom(ctx context.Context) (*order.User, bool) {
	u, ok := ctx.Value(userKey{}).(*order.User)
	return u, ok && u != nil
}

type expiryKey struct{}

// WithSessionExpiry returns ctx carrying the expiry of the session token
// that signed its user in.
func WithSessionExpiry(ctx context.Context, exp time.Time) context.Context {
	return context.WithValue(ctx, expiryKey{}, exp)
}

// SessionExpiry returns when the session of ctx's user ends (the exp of
// its token); false for an anonymous request. Long-lived streams end then.
func SessionExpiry(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(expiryKey{}).(time.Time)
	return t, ok && !t.IsZero()
}
