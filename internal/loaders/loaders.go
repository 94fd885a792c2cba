// Package loaders batches the lookups of one request with dataloadgen, so
// that assembling N orders costs a constant number of SQL queries: one for
// their lines, one for the products of those lines and one for their
// customers, whatever N is.
package loaders

import (
	"context"
	"time"

	"github.com/vikstrous/dataloadgen"

	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Source is what the loaders read from (the Postgres store).
type Source interface {
	UsersByIDs(ctx context.Context, ids []string) (map[string]*order.User, error)
	ProductsByIDs(ctx context.Context, ids []string) (map[string]*order.Product, error)
	LinesByOrderIDs(ctx context.Context, ids []string) (map[string][]order.Line, error)
}

var _ Source = (*postgres.Store)(nil)

// Loaders are the per-request batch loaders. Create one set per request:
// they cache what they load for the life of the request only.
type Loaders struct {
	// User loads users by id.
	User *dataloadgen.Loader[string, *order.User]
	// Product loads products by id.
	Product *dataloadgen.Loader[string, *order.Product]
	// Lines loads the lines of orders by order id (empty for none).
	Lines *dataloadgen.Loader[string, []order.Line]
}

// wait is how long a loader collects keys before it fetches them.
const wait = 500 * time.Microsecond

// New returns a fresh set of loaders over src.
func New(src Source) *Loaders {
	return &Loaders{
		User:    dataloadgen.NewMappedLoader(src.UsersByIDs, dataloadgen.WithWait(wait)),
		Product: dataloadgen.NewMappedLoader(src.ProductsByIDs, dataloadgen.WithWait(wait)),
		Lines: dataloadgen.NewMappedLoader(func(ctx context.Context, ids []string) (map[string][]order.Line, error) {
			m, err := src.LinesByOrderIDs(ctx, ids)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				if _, ok := m[id]; !ok {
					m[id] = nil
				}
			}
			return m, nil
		}, dataloadgen.WithWait(wait)),
	}
}

type ctxKey struct{}

// With returns ctx carrying l.
func With(ctx context.Context, l *Loaders) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// From returns the loaders of ctx, or a fresh set over src when the
// context has none (a call outside an HTTP request).
func From(ctx context.Context, src Source) *Loaders {
	if l, ok := ctx.Value(ctxKey{}).(*Loaders); ok {
		return l
	}
	return New(src)
}
