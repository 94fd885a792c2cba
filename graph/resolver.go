// Package graph holds the GraphQL schema's generated executor and its
// resolvers. Resolvers are thin: they read the viewer, call the shop and
// report what the screen cache did; they hold no SQL and no Redis calls.
package graph

//go:generate go tool gqlgen generate

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/shop"
	"github.com/shop/bff/internal/webhooks"
)

// Events streams committed order events to a subscriber.
type Events interface {
	// Subscribe returns the events visible to viewer (of one order when
	// orderID is set) after the stream position after ("" for live only),
	// in commit order, until ctx ends.
	Subscribe(ctx context.Context, viewer *order.User, orderID string, after string) (<-chan order.Event, error)
}

// Resolver is the root of the resolvers and their dependencies.
type Resolver struct {
	// Shop serves screens and runs mutations.
	Shop *shop.Shop
	// Events serves subscriptions.
	Events Events
	// Webhooks manages the outbound webhook endpoints (staff).
	Webhooks *webhooks.Admin
}

// viewer returns the signed-in user of ctx, or nil.
func viewer(ctx context.Context) *order.User {
	u, _ := auth.UserFrom(ctx)
	return u
}

// report records the cache result of the current screen field.
func report(ctx context.Context, res cache.Result) {
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		cache.Record(ctx, fc.Field.Alias, res)
	}
}

// defaultCurrency is PlaceOrderInput.currency's default in the schema.
const defaultCurrency = "USD"

// absent treats an empty cursor as no cursor: code generators with
// zero-value structs (genqlient) send after: "" for "from the start".
func absent(after *string) *string {
	if after != nil && *after == "" {
		return nil
	}
	return after
}

func payload(o *model.Order, err error) (*model.OrderPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.OrderPayload{Order: o}, nil
}
