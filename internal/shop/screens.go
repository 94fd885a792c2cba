package shop

import (
	"context"
	"time"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/postgres"
)

// Dep is something a cached screen depends on: an order, a customer's
// orders, or (Kind "all") every order.
type Dep struct {
	Kind string
	ID   string
}

// DepsOf lists what an event invalidates: its order, its customer's
// screens and the staff views over all orders.
func DepsOf(e order.Event) []Dep {
	return []Dep{{Kind: "order", ID: e.OrderID}, {Kind: "customer", ID: e.CustomerID}, {Kind: "all"}}
}

func scopeDeps(sc postgres.Scope) []Dep {
	if sc.CustomerID == "" {
		return []Dep{{Kind: "all"}}
	}
	return []Dep{{Kind: "customer", ID: sc.CustomerID}}
}

// ScreenKey identifies a cached screen.
type ScreenKey struct {
	Screen string
	Args   string
	Viewer *order.User
	Deps   []Dep
}

// CacheResult says what the cache did for one screen.
type CacheResult struct {
	// Status is "hit", "miss", "bypass" or "error" ("" when uncached).
	Status string
	// TTL is the time the entry has left (hit) or was given (miss).
	TTL time.Duration
	// Header is the Cache-Status (RFC 9211) member for this screen.
	Header string
}

// ScreenCache loads the three screens through a cache.
type ScreenCache interface {
	HomeScreen(ctx context.Context, k ScreenKey, load func(context.Context) (*model.HomeScreen, error)) (*model.HomeScreen, CacheResult, error)
	OrdersScreen(ctx context.Context, k ScreenKey, load func(context.Context) (*model.OrdersScreen, error)) (*model.OrdersScreen, CacheResult, error)
	OrderScreen(ctx context.Context, k ScreenKey, load func(context.Context) (*model.OrderScreen, error)) (*model.OrderScreen, CacheResult, error)
}

// noCache loads every screen from Postgres.
type noCache struct{}

func (noCache) HomeScreen(ctx context.Context, _ ScreenKey, load func(context.Context) (*model.HomeScreen, error)) (*model.HomeScreen, CacheResult, error) {
	v, err := load(ctx)
	return v, CacheResult{}, err
}

func (noCache) OrdersScreen(ctx context.Context, _ ScreenKey, load func(context.Context) (*model.OrdersScreen, error)) (*model.OrdersScreen, CacheResult, error) {
	v, err := load(ctx)
	return v, CacheResult{}, err
}

func (noCache) OrderScreen(ctx context.Context, _ ScreenKey, load func(context.Context) (*model.OrderScreen, error)) (*model.OrderScreen, CacheResult, error) {
	v, err := load(ctx)
	return v, CacheResult{}, err
}
