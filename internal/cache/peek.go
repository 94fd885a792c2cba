package cache

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"

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
	// last is what the latest read of the script found (nil: none yet).
	last *atomic.Pointer[seenGens]
}

// seenGens is the generations a read of a Prepared found, and the MGET that
// reads them again together with the entry stored under them.
type seenGens struct {
	gens string
	mget []any // "mget", the generation keys, the entry key; read only
}

// Prepare computes the Redis keys of k.
func (c *Cache) Prepare(k Key) Prepared {
	base, keys := c.keys(k)
	pre := make([]any, 0, 3+len(keys))
	pre = append(pre, "evalsha", readScript.Hash(), len(keys))
	for _, k := range keys {
		pre = append(pre, k)
	}
	return Prepared{screen: k.Screen, base: base, keys: keys, deps: k.Deps, evalArgs: pre,
		last: new(atomic.Pointer[seenGens])}
}

// remember notes the generations gens a script read of p found.
func (p Prepared) remember(gens string) {
	if cur := p.last.Load(); cur != nil && cur.gens == gens {
		return
	}
	n := len(p.keys) - 1 // the generation keys; the last key is the entry's base
	entry := p.keys[n] + ":" + gens
	mget := make([]any, 0, n+2)
	mget = append(mget, "mget")
	for _, k := range p.keys[:n] {
		mget = append(mget, k)
	}
	p.last.Store(&seenGens{gens: gens, mget: append(mget, entry)})
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
// round trip (the read of Load, without its miss path; an MGET once p's
// generations are known, see readSeen, and a second trip, the script's,
// when one of them changed since), with rider's commands (nil: none) in
// the first round trip. hit is false when there is
// no current entry, or when Redis is unavailable (err): the caller loads
// the value as usual, through Load, which counts that request's status. A
// hit is counted here. v may share the memory of the Redis reply: it is
// read only.
func (c *Cache) Peek(ctx context.Context, p Prepared, rider Rider) (v []byte, res Result, hit bool, err error) {
	if bypassed(ctx) {
		return nil, Result{}, false, nil
	}
	lk, known, err := c.readSeen(ctx, p, rider)
	if err != nil {
		return nil, Result{}, false, err
	}
	if !known {
		if lk.queued {
			rider = nil // its commands went with the first trip
		}
		if lk, err = c.read(ctx, p.keys, p.evalArgs, true, rider); err != nil {
			return nil, Result{}, false, err
		}
		p.remember(lk.gens)
	}
	if !lk.hit {
		return nil, Result{missed: &missed{base: p.base, gens: lk.gens}}, false, nil
	}
	pos, v, ok := c.usableBytes(lk.data, p.deps)
	if !ok { // replaced by the next Load
		return nil, Result{missed: &missed{base: p.base, gens: lk.gens}}, false, nil
	}
	res = Result{Status: StatusHit, TTL: lk.pttl, Validator: c.validator(p.base, lk.gens, pos)}
	c.metrics.Observe(p.screen, StatusHit)
	return v, res, true, nil
}

// missed is what a Peek that missed read: the generations its key's entry
// is missing under. The Load of the same key that follows in the request
// (see AfterMiss) starts from it instead of reading again.
type missed struct {
	base string
	gens string
	used atomic.Bool // one Load takes it
}

type missedKey struct{}

// AfterMiss returns ctx carrying what the Peek that returned res (a miss)
// read, so that the request's Load of the same key, right after it, skips
// reading the key again: one Redis round trip less per miss. A Load that
// starts from it stores under those generations, read before its load
// started, as any Load does.
func AfterMiss(ctx context.Context, res Result) context.Context {
	if res.missed == nil {
		return ctx
	}
	return context.WithValue(ctx, missedKey{}, res.missed)
}

// takeMissed returns the generations of base that a Peek of this request
// just read, once.
func takeMissed(ctx context.Context, base string) (string, bool) {
	m, _ := ctx.Value(missedKey{}).(*missed)
	if m == nil || m.base != base || !m.used.CompareAndSwap(false, true) {
		return "", false
	}
	return m.gens, true
}

// PeekValidator returns the validator of p's current value (see
// Cache.Validator) in one Redis round trip, reading only the entry's
// position, with rider's commands (nil: none) in the same round trip.
func (c *Cache) PeekValidator(ctx context.Context, p Prepared, rider Rider) (string, error) {
	return c.currentValidator(ctx, p.base, p.keys, p.evalArgs, p.deps, rider)
}

// readSeen reads the generations p's last script read found and the entry
// stored under them with one MGET (a read command: far cheaper for Redis
// than the script), pipelined with rider's commands (nil: none). known is
// false when the script must read instead: no read yet, the epoch to
// replace first (epochBump), or a generation that changed or is missing
// (the script creates it); lk.queued then tells whether rider went with
// this trip. An MGET is atomic: with every generation as last seen, the
// entry it read is the one the script would read now. The entry's TTL is
// its recorded expiry (see entryFormat).
func (c *Cache) readSeen(ctx context.Context, p Prepared, rider Rider) (lk lookup, known bool, err error) {
	seen := p.last.Load()
	if seen == nil {
		return lk, false, nil
	}
	if bump, _ := c.epochBump(); bump {
		return lk, false, nil
	}
	err = c.call(ctx, func(ctx context.Context) error {
		var mget *redis.Cmd
		if rider == nil {
			mget = c.rdb.Do(ctx, seen.mget...)
		} else {
			pipe := c.rdb.Pipeline()
			rider.Queue(ctx, pipe)
			lk.queued = true
			mget = pipe.Do(ctx, seen.mget...)
			_, _ = pipe.Exec(ctx) // each command keeps its own error
		}
		vals, err := mget.Slice()
		if err != nil {
			return err
		}
		n := len(vals) - 1
		rest := seen.gens
		for i, v := range vals[:n] {
			g, ok := v.(string)
			if !ok {
				return nil // missing: the script creates it
			}
			if i > 0 {
				if rest == "" || rest[0] != '.' {
					return nil
				}
				rest = rest[1:]
			}
			if len(rest) < len(g) || rest[:len(g)] != g {
				return nil // changed
			}
			rest = rest[len(g):]
		}
		if rest != "" {
			return nil
		}
		known, lk.gens = true, seen.gens
		data, ok := vals[n].(string)
		if !ok {
			return nil // no entry under the current generations
		}
		// The reply's bytes, not a copy, as in read.
		lk.hit, lk.data = true, unsafe.Slice(unsafe.StringData(data), len(data))
		if _, expires, _, ok := decodeEntry(lk.data); ok {
			lk.pttl = max(0, time.Until(expires))
		}
		return nil
	})
	if err != nil {
		return lookup{queued: lk.queued}, false, err
	}
	return lk, known, nil
}
