package cache

import "context"

// Prepared is a Key with its Redis keys computed once, for a caller that
// reads the same key many times (the response cache's fast path).
type Prepared struct {
	screen  string
	base    string
	genKeys []string
	deps    []Dep
}

// Prepare computes the Redis keys of k.
func (c *Cache) Prepare(k Key) Prepared {
	base, genKeys := c.keys(k)
	return Prepared{screen: k.Screen, base: base, genKeys: genKeys, deps: k.Deps}
}

// Peek reads the entry of p under the current generations in one Redis
// round trip (the read of Load, without its miss path). hit is false when
// there is no current entry, or when Redis is unavailable (err): the
// caller loads the value as usual, through Load, which counts that
// request's status. A hit is counted here.
func (c *Cache) Peek(ctx context.Context, p Prepared) (v []byte, res Result, hit bool, err error) {
	if bypassed(ctx) {
		return nil, Result{}, false, nil
	}
	lk, err := c.read(ctx, p.base, p.genKeys, true)
	if err != nil || !lk.hit {
		return nil, Result{}, false, err
	}
	if !c.usable(lk.data, p.deps, &v) {
		return nil, Result{}, false, nil // replaced by the next Load
	}
	res = Result{Status: StatusHit, TTL: lk.pttl, Validator: c.validator(p.base, lk.gens, p.deps)}
	c.metrics.Observe(p.screen, StatusHit)
	return v, res, true, nil
}

// PeekValidator returns the validator of p's current value (see
// Cache.Validator) in one Redis round trip, without reading the entry.
func (c *Cache) PeekValidator(ctx context.Context, p Prepared) (string, error) {
	lk, err := c.read(ctx, p.base, p.genKeys, false)
	if err != nil {
		return "", err
	}
	return c.validator(p.base, lk.gens, p.deps), nil
}
