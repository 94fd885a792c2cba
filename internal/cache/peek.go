package cache

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Prepared is a Key with its Redis keys computed once, for a caller that
// reads the same key many times (the response cache's fast path).
type Prepared struct {
	screen string
	base   string
	keys   []string // of the read script (Cache.keys)
	deps   []Dep
	// evalArgs is the start of the read script's EVALSHA command (name,
	// script hash, keys), boxed once.
	evalArgs []any
}

// Prepare computes the Redis keys of k.
func (c *Cache) Prepare(k Key) Prepared {
	base, keys := c.keys(k)
	pre := make([]any, 0, 3+len(keys))
	pre = append(pre, "evalsha", readScript.Hash(), len(keys))
	for _, k := range keys {
		pre = append(pre, k)
	}
	return Prepared{screen: k.Screen, base: base, keys: keys, deps: k.Deps, evalArgs: pre}
}

// Rider is Redis work of another component that rides in the round trip
// of a cache read (the rate limit's charge on the fast path): Queue adds
// its commands to the read's pipeline, which is sent right after, under
// the cache's per-call timeout, and the rider reads their replies once the
// read returned. Queue is called at most once, and only when the pipeline
// is sent: a rider that was not queued (the circuit breaker open, a
// bypass) does its work by itself.
type Rider interface {
	Queue(ctx context.Context, pipe redis.Pipeliner)
}

// Peek reads the entry of p under the current generations in one Redis
// round trip (the read of Load, without its miss path), with rider's
// commands (nil: none) in the same round trip. hit is false when there is
// no current entry, or when Redis is unavailable (err): the caller loads
// the value as usual, through Load, which counts that request's status. A
// hit is counted here. v may share the memory of the Redis reply: it is
// read only.
func (c *Cache) Peek(ctx context.Context, p Prepared, rider Rider) (v []byte, res Result, hit bool, err error) {
	if bypassed(ctx) {
		return nil, Result{}, false, nil
	}
	lk, err := c.read(ctx, p.keys, p.evalArgs, true, rider)
	if err != nil || !lk.hit {
		return nil, Result{}, false, err
	}
	pos, v, ok := c.usableBytes(lk.data, p.deps)
	if !ok {
		return nil, Result{}, false, nil // replaced by the next Load
	}
	res = Result{Status: StatusHit, TTL: lk.pttl, Validator: c.validator(p.base, lk.gens, pos)}
	c.metrics.Observe(p.screen, StatusHit)
	return v, res, true, nil
}

// PeekValidator returns the validator of p's current value (see
// Cache.Validator) in one Redis round trip, reading only the entry's
// position, with rider's commands (nil: none) in the same round trip.
func (c *Cache) PeekValidator(ctx context.Context, p Prepared, rider Rider) (string, error) {
	return c.currentValidator(ctx, p.base, p.keys, p.evalArgs, p.deps, rider)
}
