package auth

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/shop/bff/internal/order"
)

// UserLookup finds a user by id. Implementations return an *order.Error
// with code NOT_FOUND for an unknown id and UNAVAILABLE when the store
// cannot answer.
type UserLookup interface {
	UserByID(ctx context.Context, id string) (*order.User, error)
}

// Defaults of [UserCache].
const (
	DefaultUserCacheTTL  = 60 * time.Second
	DefaultUserCacheSize = 10000
)

// UserCache is a [UserLookup] that remembers answers (users and NOT_FOUND)
// in process for a TTL, bounded in size (least recently used entries go
// first), and collapses concurrent lookups of one id into one. Other errors
// are not cached. Safe for concurrent use.
type UserCache struct {
	next  UserLookup
	ttl   time.Duration
	cache *lru.Cache[string, cachedUser]
	group singleflight.Group
	// Now is the clock (time.Now); tests may replace it before first use.
	Now func() time.Time
}

type cachedUser struct {
	user    *order.User
	err     error
	expires time.Time
}

// NewUserCache wraps next in a cache of at most size entries (default
// 10000) kept for ttl (default 60s).
func NewUserCache(next UserLookup, ttl time.Duration, size int) *UserCache {
	if ttl <= 0 {
		ttl = DefaultUserCacheTTL
	}
	if size <= 0 {
		size = DefaultUserCacheSize
	}
	cache, _ := lru.New[string, cachedUser](size) // size > 0: cannot fail
	return &UserCache{next: next, ttl: ttl, cache: cache, Now: time.Now}
}

// UserByID returns the cached answer for id or asks the wrapped lookup.
func (c *UserCache) UserByID(ctx context.Context, id string) (*order.User, error) {
	if e, ok := c.cache.Get(id); ok && c.Now().Before(e.expires) {
		return e.user, e.err
	}
	v, err, _ := c.group.Do(id, func() (any, error) {
		// Callers waiting on this lookup must not fail because the first
		// one went away: keep its deadline, drop its cancellation.
		lctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			lctx, cancel = context.WithDeadline(lctx, dl)
			defer cancel()
		}
		u, err := c.next.UserByID(lctx, id)
		if err == nil || order.ErrorCode(err) == order.CodeNotFound {
			c.cache.Add(id, cachedUser{user: u, err: err, expires: c.Now().Add(c.ttl)})
		}
		return u, err
	})
	u, _ := v.(*order.User)
	return u, err
}

// Forget drops id from the cache (after a role change, for example).
func (c *UserCache) Forget(id string) { c.cache.Remove(id) }
