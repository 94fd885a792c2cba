// Package ratelimit enforces the per-user request budgets of the BFF: one
// budget for queries and one for mutations, keyed by the signed-in user's id
// (or by the client address for anonymous requests), shared by every
// instance through Redis with the GCRA algorithm of
// github.com/go-redis/redis_rate (its script and keys, run by the limiter
// itself so that a [Charge] can ride in the pipeline of another
// component's round trip: the fast path of a repeated screen read charges
// the budget in the screen cache's round trip).
//
// Redis is asked with a short per-call timeout. When it fails or is slow,
// the [Limiter] switches to a local in-process limiter per key (a bounded
// LRU of golang.org/x/time/rate limiters with the same rate and burst) and
// keeps using it for a cool-down period before it probes Redis again, so a
// dead Redis costs neither a wait per request nor the limits themselves:
// the BFF never falls back to "no limit" and never to "reject everything".
// While Redis is down the budget is per instance, so N instances allow up
// to N times the configured rate.
//
// Over the budget, [Limiter.Allow] answers 429 with Retry-After,
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers and a
// RATE_LIMITED error written by httpx.WriteError.
package ratelimit
