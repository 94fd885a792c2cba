// Package cache is the Redis screen cache of the BFF.
//
// A screen (homeScreen, ordersScreen, orderScreen) is cached whole, already
// assembled, under a key that contains everything the result depends on:
// the screen, its canonical arguments, the viewer's id and role, the model
// version and the codec, plus the current generation of every dependency
// ([Dep]) of the screen and a global cache epoch.
//
// # The invariant
//
// After a mutation's response, no instance serves a screen older than that
// mutation, including while Redis is slow, down, restarted empty, flushed,
// or paused (SIGSTOP) for longer than the per-call timeout. The one case
// where no cache can promise it is a partition: the writing instance cannot
// reach Redis (for longer than Config.InvalidateTimeout) while another
// instance can. Then the other instance serves an entry it already has for
// at most the entry's remaining TTL (at most TTL·(1+Jitter), 66 s with the
// defaults), or until the writer reaches Redis again, whichever comes
// first; the writer itself never serves it.
//
// # How
//
// Reads: [Load] runs one Lua script (one round trip) that reads the epoch
// and the dependency generations, builds the entry key and returns the entry
// with its remaining TTL; on a miss it returns the generations it read, the
// value is loaded (singleflight per key on this instance) and stored under
// those generations, i.e. the ones read BEFORE the load started. A read that
// overlaps a write therefore stores under a key that no later read builds:
// there is no stale refill.
//
// Generations never repeat. The epoch and every generation are random
// 64-bit tokens, not counters: an invalidation sets a new token, and a
// missing one (never set, expired, evicted, or lost when Redis restarted
// empty or was flushed) is created from a fresh token by the read script.
// A counter restarting at 0 after a data loss could climb back to the value
// a slow load read before the loss and stored after it; a token cannot.
//
// Writes: [Cache.Invalidate] sets new generations for the dependencies in
// one round trip. The mutation path calls it after commit, before it
// responds and before it publishes events. An invalidation is never skipped:
// it does not go through the circuit breaker (the breaker protects reads;
// a writer whose breaker is still open after Redis came back must not let
// the other instances, whose breakers are closed, serve the old entry), and
// an attempt that fails or times out is retried until Redis confirms it,
// within the caller's deadline and Config.InvalidateTimeout (default 3 s,
// longer than a restart or a short pause; the response waits: Redis
// trouble makes a mutation slower, never a screen stale).
//
// An invalidation that is still not confirmed is not lost silently: the
// cache remembers the miss, and a background goroutine replaces the global
// epoch (bypassing the breaker) as soon as Redis answers, which drops every
// entry for every instance. Until that replacement succeeded, every read of
// this instance that reaches Redis replaces the epoch first, in the same
// script, so the writing instance never serves an old entry. The breaker
// opening counts as a miss too (another instance's invalidation may have
// failed while Redis was down).
//
// Entries carry the newest event position their loader had seen (as
// told by [Cache.Observe]); an instance refuses, as a miss, an entry of a
// dependency loaded before an event of it that the instance has observed.
// Fed with every event an instance's broker hands out, this would bound the
// partition above by the event's delivery time instead of the TTL; the
// server does not feed it yet (see the README).
//
// Redis is optional at run time: every Redis call of a read has a short
// timeout and runs behind a circuit breaker; when Redis fails, values come
// from the loader with status "error" and no error for the caller.
//
// Redis Cluster: all keys of the cache carry the hash tag "{cache}", so the
// scripts' keys share one slot (the whole screen cache lives on one shard).
//
// The client must be created with ContextTimeoutEnabled, otherwise go-redis
// ignores the per-call deadlines; [New] rejects a client that says otherwise.
package cache
