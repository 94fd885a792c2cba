// Package cache is the Redis screen cache of the BFF.
//
// A screen (homeScreen, ordersScreen, orderScreen) is cached whole, already
// assembled, under a key that contains everything the result depends on:
// the screen, its canonical arguments, the viewer's id and role, the model
// version and the codec, plus the current generation of every dependency
// ([Dep]) of the screen and a global cache epoch.
//
// Reads: [Load] runs one Lua script (one round trip) that reads the epoch
// and the dependency generations, builds the entry key and returns the entry
// with its remaining TTL; on a miss it returns the generations it read, the
// value is loaded (singleflight per key on this instance) and stored under
// those generations, i.e. the ones read BEFORE the load started. A read that
// overlaps a write therefore stores under a key that no later read builds:
// there is no stale refill.
//
// Writes: [Cache.Invalidate] increments the generation of each dependency in
// one round trip. The mutation path calls it after commit, before it responds
// and before it publishes events.
//
// Redis is optional at run time: every Redis call has a short timeout and
// runs behind a circuit breaker; when Redis fails, values come from the
// loader with status "error" and no error for the caller. A missed
// invalidation (or the breaker opening) is remembered, and the next Redis
// call bumps the global epoch first, so entries whose invalidation was
// missed are never served once Redis is back.
//
// Redis Cluster: all keys of the cache carry the hash tag "{cache}", so the
// scripts' keys share one slot (the whole screen cache lives on one shard).
//
// The client must be created with ContextTimeoutEnabled, otherwise go-redis
// ignores the per-call deadlines; [New] rejects a client that says otherwise.
package cache
