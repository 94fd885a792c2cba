package cache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"
)

type bypassKey struct{}

// WithBypass marks ctx so that Load skips the cached value, calls the loader
// and stores the fresh value (a request with Cache-Control: no-cache).
func WithBypass(ctx context.Context) context.Context {
	return context.WithValue(ctx, bypassKey{}, true)
}

func bypassed(ctx context.Context) bool {
	b, _ := ctx.Value(bypassKey{}).(bool)
	return b
}

// flight is the outcome of one singleflight load.
type flight[T any] struct {
	val    T
	hit    bool          // found in the cache by the re-check in the flight
	stored bool          // the value was stored
	failed bool          // a Redis call failed
	ttl    time.Duration // TTL left (hit) or set (stored)
	gens   string        // the generations the value is found or stored under
}

// Load returns the cached value of key, or calls load and caches its result.
//
// On a hit, Load runs one Redis round trip and nothing else. On a miss, the
// loads of one key (same generations) on this instance are shared
// (singleflight), and the value is stored under the generations read before
// the load started, so a load that overlaps an Invalidate of one of the key's
// Deps never puts its old value back where later reads look. A value
// returned by a shared load is shared by its callers: do not modify it.
//
// When Redis is unavailable, Load calls load directly (no singleflight, as
// without generations it cannot tell a load that started before a write from
// one that started after it) and reports StatusError; the error it returns
// is load's only. Errors of load are returned and never cached.
func Load[T any](ctx context.Context, c *Cache, key Key, load func(context.Context) (T, error)) (T, Result, error) {
	res, v, err := loadValue(ctx, c, key, load)
	c.metrics.Observe(key.Screen, res.Status)
	return v, res, err
}

func loadValue[T any](ctx context.Context, c *Cache, key Key, load func(context.Context) (T, error)) (Result, T, error) {
	base, genKeys := c.keys(key)
	bypass := bypassed(ctx)
	lk, err := c.read(ctx, base, genKeys, !bypass, nil)
	if err != nil {
		v, err := load(ctx)
		return Result{Status: StatusError}, v, err
	}
	if lk.hit {
		var v T
		if c.usable(lk.data, key.Deps, &v) {
			return Result{Status: StatusHit, TTL: lk.pttl, Validator: c.validator(base, lk.gens, key.Deps)}, v, nil
		}
		// An entry that does not decode, or is older than an event this
		// instance has seen, is treated as a miss and replaced.
	}

	status, group := StatusMiss, "m|"
	if bypass {
		status, group = StatusBypass, "b|"
	}
	if c.beforeFlight != nil {
		c.beforeFlight()
	}
	out, err, _ := c.flights.Do(group+base+":"+lk.gens, func() (any, error) {
		fctx, cancel := detach(ctx)
		defer cancel()
		return fly(fctx, c, base, genKeys, key.Deps, lk.gens, !bypass, load)
	})
	if err != nil {
		var zero T
		return Result{Status: status}, zero, err
	}
	f, ok := out.(flight[T])
	if !ok { // two types under one key: a caller bug; do not share
		v, err := load(ctx)
		return Result{Status: status}, v, err
	}
	switch {
	case f.hit:
		return Result{Status: StatusHit, TTL: f.ttl, Validator: c.validator(base, f.gens, key.Deps)}, f.val, nil
	case f.failed:
		return Result{Status: StatusError}, f.val, nil
	}
	return Result{Status: status, TTL: f.ttl, Stored: f.stored, Validator: c.validator(base, f.gens, key.Deps)}, f.val, nil
}

// fly is the shared part of a miss: re-check (a flight that ended between
// our read and now may have stored the value), load, store.
func fly[T any](ctx context.Context, c *Cache, base string, genKeys []string, deps []Dep, gens string, recheck bool, load func(context.Context) (T, error)) (flight[T], error) {
	var f flight[T]
	pos := c.seen() // before the load: it reflects every event up to pos
	if recheck {
		lk, err := c.read(ctx, base, genKeys, true, nil)
		if err == nil && lk.hit && c.usable(lk.data, deps, &f.val) {
			f.hit, f.ttl, f.gens = true, lk.pttl, lk.gens
			return f, nil
		}
		if err == nil {
			gens = lk.gens // newer, and still read before the load starts
		}
	}
	f.gens = gens
	v, err := load(ctx)
	if err != nil {
		return f, err
	}
	f.val = v
	data, err := c.cfg.Codec.Marshal(v)
	if err != nil {
		return f, nil // not cacheable; serve it anyway
	}
	if c.cfg.StoreDelay != nil {
		c.cfg.StoreDelay(ctx)
	}
	ttl := c.ttl()
	if err := c.store(ctx, base, gens, encodeEntry(pos, data), ttl); err != nil {
		f.failed = true
		return f, nil
	}
	f.stored, f.ttl = true, ttl
	return f, nil
}

// usable decodes an entry into v unless it does not decode or its loader
// had not seen an event of deps that this instance has seen.
func (c *Cache) usable(entry []byte, deps []Dep, v any) bool {
	pos, data, ok := decodeEntry(entry)
	return ok && pos >= c.newest(deps) && c.cfg.Codec.Unmarshal(data, v) == nil
}

// detach keeps ctx's values and deadline but not its cancellation, so that
// one caller giving up does not fail the others waiting on the same load.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return d, func() {}
}

// Validator returns the validator of key's current value (see
// Result.Validator) in one Redis round trip, without reading the value:
// equal to the Validator of a Load result exactly when no dependency of
// key changed since (and the cache epoch did not). It fails with
// ErrUnavailable when Redis cannot be used.
func (c *Cache) Validator(ctx context.Context, key Key) (string, error) {
	base, genKeys := c.keys(key)
	lk, err := c.read(ctx, base, genKeys, false, nil)
	if err != nil {
		return "", err
	}
	return c.validator(base, lk.gens, key.Deps), nil
}

// validator names the value of the entry base under gens, as of the newest
// event of deps this instance has seen (an entry older than that event is
// refused, so a client's copy of it must not be confirmed either).
func (c *Cache) validator(base, gens string, deps []Dep) string {
	sum := sha256.Sum256([]byte(base + ":" + gens + "@" + strconv.FormatInt(c.newest(deps), 10)))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}
