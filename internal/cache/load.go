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
	stored bool          // the value was stored
	failed bool          // a Redis call failed
	ttl    time.Duration // TTL set (stored)
	gens   string        // the generations the value is stored under

	pos     int64     // the position the value reflects (see Reflects)
	expires time.Time // when the value expires in the cache (zero: never stored)

	// recent tells that the flight is one that ended just before, taken
	// from Cache.recent: its value is the entry it stored.
	recent bool
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
	if res.Status != "" {
		c.metrics.Observe(key.Screen, res.Status)
	}
	return v, res, err
}

func loadValue[T any](ctx context.Context, c *Cache, key Key, load func(context.Context) (T, error)) (Result, T, error) {
	base, keys := c.keys(key)
	if nested(ctx, c, keys[:len(keys)-1]) {
		// Loaded for an enclosing flight of this cache with the same
		// dependencies, which stores the value built from this one: what
		// the loader tells (Reflects) goes to that flight's entry.
		v, err := load(ctx)
		return Result{}, v, err
	}
	bypass := bypassed(ctx)
	var lk lookup
	var err error
	if gens, ok := takeMissed(ctx, base); ok && !bypass {
		lk.gens = gens // the request's Peek just missed under them
	} else {
		lk, err = c.read(ctx, keys, nil, !bypass, nil)
	}
	if err != nil {
		seen := c.seen()
		lctx, n := withNote(ctx)
		v, err := load(lctx)
		pos, expires := n.result(seen)
		tell(ctx, pos, expires)
		return Result{Status: StatusError}, v, err
	}
	if lk.hit {
		var v T
		if pos, ok := c.usable(lk.data, key.Deps, &v); ok {
			tell(ctx, pos, time.Now().Add(lk.pttl))
			return Result{Status: StatusHit, TTL: lk.pttl, Validator: c.validator(base, lk.gens, pos)}, v, nil
		}
		// An entry that does not decode, or is older than an event this
		// instance has seen, is treated as a miss and replaced.
	}

	status, group := StatusMiss, "m|"
	if bypass {
		status, group = StatusBypass, "b|"
	}
	entry := base + ":" + lk.gens
	if c.beforeFlight != nil {
		c.beforeFlight()
	}
	out, err, _ := c.flights.Do(group+entry, func() (any, error) {
		if !bypass {
			if out, ok := c.recent.get(entry); ok {
				if f, ok := out.(flight[T]); ok && f.pos >= c.newest(key.Deps) {
					f.recent = true
					return f, nil
				}
			}
		}
		fctx, cancel := detach(ctx)
		defer cancel()
		f, err := fly(fctx, c, base, keys[:len(keys)-1], lk.gens, load)
		if err == nil && f.stored {
			c.recent.put(entry, f, f.expires)
		}
		return f, err
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
	tell(ctx, f.pos, f.expires)
	if f.failed {
		return Result{Status: StatusError}, f.val, nil
	}
	if f.recent { // the entry a flight that just ended stored
		return Result{Status: StatusHit, TTL: time.Until(f.expires), Validator: c.validator(base, f.gens, f.pos)}, f.val, nil
	}
	return Result{Status: status, TTL: f.ttl, Stored: f.stored, Validator: c.validator(base, f.gens, f.pos)}, f.val, nil
}

// fly is the shared part of a miss: load, store. It does not read the
// entry again first: the callers that miss while it runs share it, and a
// caller whose read missed just before an earlier flight stored takes
// that flight's value from Cache.recent (see loadValue). The store is
// keyed by the generations read before the load.
//
// The entry records the position its value reflects: the newest position
// observed before the load started (every event up to it had committed),
// or what the loader told (Reflects, or the entries of an inner Load it
// was built from) when newer. Its TTL counts from the start of the load
// and never outlasts an inner entry it was built from, so every entry
// expires within TTL·(1+Jitter) of the moment its data was read from the
// origin: a screen cached in two layers (the rendered response over the
// screen model) is not served twice as long.
func fly[T any](ctx context.Context, c *Cache, base string, genKeys []string, gens string, load func(context.Context) (T, error)) (flight[T], error) {
	var f flight[T]
	started := time.Now()
	seen := c.seen() // before the load: it reflects every event up to it
	f.gens = gens
	lctx, n := withNote(ctx)
	n.storing, n.genKeys = c, genKeys
	v, err := load(lctx)
	if err != nil {
		return f, err
	}
	f.val = v
	var inner time.Time
	f.pos, inner = n.result(seen)
	f.expires = inner
	data, err := c.cfg.Codec.Marshal(v)
	if err != nil {
		return f, nil // not cacheable; serve it anyway
	}
	if c.cfg.StoreDelay != nil {
		c.cfg.StoreDelay(ctx)
	}
	expires := started.Add(c.ttl())
	if !inner.IsZero() && inner.Before(expires) {
		expires = inner
	}
	ttl := time.Until(expires)
	if ttl < time.Millisecond {
		return f, nil // expired already: serve it, do not store it
	}
	if err := c.store(ctx, base, gens, encodeEntry(f.pos, expires, data), ttl); err != nil {
		f.failed = true
		return f, nil
	}
	f.stored, f.ttl, f.expires = true, ttl, expires
	return f, nil
}

// usable decodes an entry into v and returns the position it reflects,
// unless it does not decode or its value does not reflect an event of deps
// that this instance has seen.
func (c *Cache) usable(entry []byte, deps []Dep, v any) (int64, bool) {
	pos, _, data, ok := decodeEntry(entry)
	return pos, ok && pos >= c.newest(deps) && c.cfg.Codec.Unmarshal(data, v) == nil
}

// usableBytes is usable for a []byte value: a codec that can decode it
// without a copy ([bytesDecoder]) returns a slice of entry.
func (c *Cache) usableBytes(entry []byte, deps []Dep) (pos int64, v []byte, ok bool) {
	d, raw := c.cfg.Codec.(bytesDecoder)
	if !raw {
		var out []byte
		pos, ok = c.usable(entry, deps, &out)
		return pos, out, ok
	}
	pos, _, data, ok := decodeEntry(entry)
	if !ok || pos < c.newest(deps) {
		return 0, nil, false
	}
	if v, ok = d.decodeBytes(data); ok {
		return pos, v, true
	}
	var out []byte
	ok = c.cfg.Codec.Unmarshal(data, &out) == nil
	return pos, out, ok
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
// key changed since (and the cache epoch did not), and the entry then
// served is still the one this instance would serve. It fails with
// ErrUnavailable when Redis cannot be used.
func (c *Cache) Validator(ctx context.Context, key Key) (string, error) {
	base, keys := c.keys(key)
	return c.currentValidator(ctx, base, keys, nil, key.Deps, nil)
}

// currentValidator reads the generations and the current entry's position
// (with rider's commands, nil: none, in the same round trip) and returns
// the validator of what a read would serve now.
func (c *Cache) currentValidator(ctx context.Context, base string, keys []string, pre []any, deps []Dep, rider Rider) (string, error) {
	lk, err := c.read(ctx, keys, pre, false, rider)
	if err != nil {
		return "", err
	}
	newest := c.newest(deps)
	if pos, ok := entryPos(lk.data); lk.hit && ok && pos >= newest {
		return c.validator(base, lk.gens, pos), nil
	}
	// No entry, or one this instance refuses: the next read loads a value
	// that reflects at least newest.
	return c.validator(base, lk.gens, newest), nil
}

// validator names the value of the entry base under gens whose value
// reflects the events up to pos: an entry refused because this instance
// saw a newer event is replaced by one that reflects it, so a client's
// copy of the refused one is not confirmed.
func (c *Cache) validator(base, gens string, pos int64) string {
	var buf [256]byte // the usual key fits: hashed without a copy on the heap
	b := append(buf[:0], base...)
	b = append(b, ':')
	b = append(b, gens...)
	b = append(b, '@')
	b = strconv.AppendInt(b, pos, 10)
	sum := sha256.Sum256(b)
	var out [24]byte // base64 of 18 bytes
	base64.RawURLEncoding.Encode(out[:], sum[:18])
	return string(out[:])
}
