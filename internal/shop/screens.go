package shop

import (
	"context"

	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// The screen queries, by their field names.
const (
	ScreenHome   = "homeScreen"
	ScreenOrders = "ordersScreen"
	ScreenOrder  = "orderScreen"
)

// ScreenDeps is what the screen named screen, read by v, depends on:
// orderScreen on its order (args["id"]), the other screens on the orders
// v may see (a customer's own, or every order for staff). ok is false for
// a field that is not a screen.
func ScreenDeps(screen string, v *order.User, args map[string]any) (deps []cache.Dep, ok bool) {
	switch screen {
	case ScreenOrder:
		id, _ := args["id"].(string)
		return []cache.Dep{cache.OrderDep(id)}, true
	case ScreenHome, ScreenOrders:
		return scopeDeps(postgres.ScopeFor(v)), true
	}
	return nil, false
}

func scopeDeps(sc postgres.Scope) []cache.Dep {
	if sc.CustomerID == "" {
		return []cache.Dep{cache.AllOrdersDep}
	}
	return []cache.Dep{cache.CustomerDep(sc.CustomerID)}
}

// InvalidatedBy lists, once each, what events invalidate: each event's
// order, its customer's screens and the staff views over all orders.
func InvalidatedBy(events []order.Event) []cache.Dep {
	seen := map[cache.Dep]bool{}
	var deps []cache.Dep
	for _, e := range events {
		for _, d := range []cache.Dep{cache.OrderDep(e.OrderID), cache.CustomerDep(e.CustomerID), cache.AllOrdersDep} {
			if !seen[d] {
				seen[d] = true
				deps = append(deps, d)
			}
		}
	}
	return deps
}

// screen loads a screen through the shop's cache, or straight from load
// without one (an empty Result).
func screen[T any](ctx context.Context, c *cache.Cache, name, args string, v *order.User, deps []cache.Dep, load func(context.Context) (T, error)) (T, cache.Result, error) {
	if c == nil {
		val, err := load(ctx)
		return val, cache.Result{}, err
	}
	return cache.Load(ctx, c, cache.Key{Screen: name, Args: args, ViewerID: v.ID, Role: string(v.Role), Deps: deps}, load)
}
