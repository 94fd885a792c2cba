package shop

import (
	"context"

	"github.com/shop/bff/graph/model"
	"github.com/shop/bff/internal/cache"
	"github.com/shop/bff/internal/order"
)

// RedisScreens serves the screens through the Redis screen cache.
type RedisScreens struct{ c *cache.Cache }

// NewRedisScreens returns the screen cache over c.
func NewRedisScreens(c *cache.Cache) *RedisScreens { return &RedisScreens{c: c} }

var _ ScreenCache = (*RedisScreens)(nil)

func cacheKey(k ScreenKey) cache.Key {
	deps := make([]cache.Dep, len(k.Deps))
	for i, d := range k.Deps {
		deps[i] = dep(d)
	}
	return cache.Key{Screen: k.Screen, Args: k.Args, ViewerID: k.Viewer.ID, Role: string(k.Viewer.Role), Deps: deps}
}

func dep(d Dep) cache.Dep {
	switch d.Kind {
	case "order":
		return cache.OrderDep(d.ID)
	case "customer":
		return cache.CustomerDep(d.ID)
	default:
		return cache.AllOrdersDep
	}
}

func load[T any](ctx context.Context, c *cache.Cache, k ScreenKey, fn func(context.Context) (T, error)) (T, CacheResult, error) {
	if Bypass(ctx) {
		ctx = cache.WithBypass(ctx)
	}
	v, res, err := cache.Load(ctx, c, cacheKey(k), fn)
	return v, CacheResult{Status: string(res.Status), TTL: res.TTL, Header: res.CacheStatusHeader()}, err
}

// HomeScreen implements ScreenCache.
func (r *RedisScreens) HomeScreen(ctx context.Context, k ScreenKey, fn func(context.Context) (*model.HomeScreen, error)) (*model.HomeScreen, CacheResult, error) {
	return load(ctx, r.c, k, fn)
}

// OrdersScreen implements ScreenCache.
func (r *RedisScreens) OrdersScreen(ctx context.Context, k ScreenKey, fn func(context.Context) (*model.OrdersScreen, error)) (*model.OrdersScreen, CacheResult, error) {
	return load(ctx, r.c, k, fn)
}

// OrderScreen implements ScreenCache.
func (r *RedisScreens) OrderScreen(ctx context.Context, k ScreenKey, fn func(context.Context) (*model.OrderScreen, error)) (*model.OrderScreen, CacheResult, error) {
	return load(ctx, r.c, k, fn)
}

// Invalidate drops every cached screen that shows an order of events. A
// Redis failure is returned for the log only: the cache remembers it and
// drops every entry once Redis is back.
func (r *RedisScreens) Invalidate(ctx context.Context, events []order.Event) error {
	seen := map[cache.Dep]bool{}
	var deps []cache.Dep
	for _, e := range events {
		for _, d := range DepsOf(e) {
			if cd := dep(d); !seen[cd] {
				seen[cd] = true
				deps = append(deps, cd)
			}
		}
	}
	if len(deps) == 0 {
		return nil
	}
	return r.c.Invalidate(ctx, deps...)
}
