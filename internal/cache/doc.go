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
// instance can. The writer itself never serves the old entry. Another
// instance serves it until the first of: its event broker's Postgres
// catch-up invalidates the event on the writer's behalf (it finds it
// committed and unpublished: the writer publishes only after its
// invalidation gave up); its broker hands the event out ([Cache.Observe]:
// from then on it refuses the entry); the entry expires, at most
// TTL·(1+Jitter) (66 s with the defaults) after its data was read from the
// origin, whichever cache layer it is served from.
//
// Measured on the served binary (go run ./cmd/drill -partition -ttl 5s
// -rounds 2, see the README, "Guarantees through faults"): with the writer's
// connections to Redis refused or blackholed, 0 of 2271 reads on the other
// instance after the writer's answer were stale (its catch-up invalidated
// the event 0.55–0.85 s after the mutation was sent; the writer answered
// after 3.0 s); with the other instance also cut off from Postgres until
// 1 s after the answer, the longest staleness was 1.93 s (the event
// observed 0.7–1.0 s after it reached Postgres again), and until the bound
// had passed, 1.48 s (the entries expired), against a bound of 5.5 s. The
// code before the broker's observation and the two-layer TTL cap served
// the old screen for up to 6.87 s in those last two cases.
//
// # How
//
// Reads: [Load] runs one Lua script (one round trip) that reads the epoch
// and the dependency generations, builds the entry key and returns the entry
// with its remaining TTL; on a miss it returns the generations it read, the
// value is loaded (singleflight per key on this instance) and stored under
// those generations, i.e. the ones read BEFORE the load started. A read that
// overlaps a write therefore stores under a key that no later read builds:
// there is no stale refill. A key read again and again ([Cache.Prepare],
// [Cache.Peek]: the fast path) remembers the generations its last script
// read found and reads them with the entry stored under them in one MGET,
// a read command far cheaper for Redis than the script; only when one of
// them changed or is missing does the script read again (a second round
// trip, once per change). Entries record their expiry, so that read needs
// no PTTL.
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
// Entries carry the stream position their value reflects: what the loader
// told with [Reflects] (the newest event of the screen's scope, read in
// the screen's own snapshot), or the entries of an inner Load it was built
// from, or else the newest position this instance had observed when the
// load started. An instance refuses, as a miss, an entry of a dependency
// whose value does not reflect an event of it that the instance has
// observed ([Cache.Observe], fed by the server with every event its broker
// hands out, before the event reaches a stream). Since every instance's
// broker receives every committed event (Redis pub/sub, or the Postgres
// catch-up), this bounds the partition above by the event's delivery time
// on that instance instead of the TTL. A position read with the value,
// rather than taken from how far the broker had got, keeps an entry loaded
// after the event from being refused while the event is still on its way.
//
// An entry's TTL counts from the start of its load and never outlasts an
// inner entry it was built from (the rendered response over the screen
// model), so every entry expires within TTL·(1+Jitter) of the moment its
// data was read, and an observation is kept that long (at most twice).
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
