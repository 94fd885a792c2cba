package ratelimit

import (
	"context"
	"net/http"

	"github.com/redis/go-redis/v9"
)

// Charge is one request's charge to a budget whose GCRA step rides in the
// Redis round trip of another component (the screen cache's read, on the
// fast path of a repeated query), so that the charge costs no round trip
// of its own. Make it with [Limiter.Charge]; the other component calls
// [Charge.Queue] when it sends its pipeline to the limiter's Redis; then
// [Charge.Settle] decides and answers exactly as [Limiter.AllowN] does:
// from the step's reply, from the local limiter when Redis failed or is in
// its cool-down, or with a call of its own when the step was never queued.
// Either way the budget is charged once.
type Charge struct {
	l   *Limiter
	b   budget
	n   int
	key string
	// queued is set by Queue; cmd is the step it queued, nil when the
	// local limiter decides (no Redis, or Redis in its cool-down).
	queued bool
	cmd    *redis.Cmd
}

// Charge prepares the charge of n units (at least 1) of r's mutation budget
// (mutation true) or query budget; nil when that budget is off.
func (l *Limiter) Charge(r *http.Request, mutation bool, n int) *Charge {
	b, n := l.budget(mutation, n)
	if !b.on {
		return nil
	}
	return &Charge{l: l, b: b, n: n, key: l.key(r, b)}
}

// Queue adds the GCRA step to pipe, a pipeline to the limiter's Redis
// about to be sent (nothing when the limiter decides locally now). Call
// it at most once, and only for a pipeline that is sent.
func (c *Charge) Queue(ctx context.Context, pipe redis.Pipeliner) {
	c.queued = true
	if c.l.rdb == nil || !c.l.useRedis() {
		return
	}
	c.cmd = gcra.EvalSha(ctx, pipe, []string{c.key}, c.b.limit.args(c.n)...)
}

// Settle decides the charge once the pipeline it was queued in returned
// (or, never queued, asks Redis itself) and answers like
// [Limiter.AllowN]: the RateLimit headers and true within the budget, the
// 429 and false over it. Call it once.
func (c *Charge) Settle(w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	var d decision
	switch {
	case !c.queued:
		d = c.l.decide(ctx, c.key, c.b, c.n)
	case c.cmd == nil:
		d = c.l.decideLocal(c.key, c.b, c.n)
	default:
		res, err := parseGCRA(c.cmd)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis did not know the script (restarted, or its scripts
			// flushed): the step did not run. It runs alone, loading it.
			res, err = c.l.callRedis(ctx, c.key, c.b.limit, c.n)
		}
		d = c.l.decided(ctx, c.key, c.b, c.n, res, err)
	}
	return c.l.respond(w, r, c.b, d)
}
