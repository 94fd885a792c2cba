package cache

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// APQ is the hash store of automatic persisted queries (Apollo APQ) in
// Redis. It implements gqlgen's graphql.Cache[string]: gqlgen checks that
// a query's sha256 equals its hash before it stores it, so a hash that
// does not match its query is rejected and never stored.
//
// Redis being down only means clients resend the query text
// (PERSISTED_QUERY_NOT_FOUND), never an error.
type APQ struct {
	rdb     redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration
}

// NewAPQ returns the store; entries live ttl after their last use and each
// Redis call is cut off after timeout.
func NewAPQ(rdb redis.UniversalClient, prefix string, ttl, timeout time.Duration) *APQ {
	return &APQ{rdb: rdb, prefix: prefix + "apq:", ttl: ttl, timeout: timeout}
}

// Get returns the query of hash, if known.
func (a *APQ) Get(ctx context.Context, hash string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	q, err := a.rdb.GetEx(ctx, a.prefix+hash, a.ttl).Result()
	if err != nil {
		return "", false
	}
	return q, true
}

// Add stores the query of hash.
func (a *APQ) Add(ctx context.Context, hash string, query string) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	_ = a.rdb.Set(ctx, a.prefix+hash, query, a.ttl).Err()
}
