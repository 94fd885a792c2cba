package auth

import (
	"context"

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
