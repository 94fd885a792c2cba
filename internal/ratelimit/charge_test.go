package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/ratelimit"
	"github.com/shop/bff/internal/testenv"
)

// tripCounter is a go-redis hook counting round trips: single commands
// (with their names) and pipelines.
type tripCounter struct {
	singles   atomic.Int64
	pipelines atomic.Int64
	evalshas  chan []any // the arguments of every EVALSHA sent alone
}

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.singles.Add(1)
		if c.evalshas != nil && strings.EqualFold(cmd.Name(), "evalsha") {
			select {
			case c.evalshas <- cmd.Args():
			default:
			}
		}
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

// The limiter runs redis_rate's GCRA script as it is (the same SHA1), on
// the same keys: a budget spent through the limiter is spent for
// redis_rate, and the reverse.
func TestScriptIsRedisRates(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	hook := &tripCounter{evalshas: make(chan []any, 1)}
	rdb.AddHook(hook)
	rr := redis_rate.NewLimiter(rdb)
	limit := redis_rate.Limit{Rate: 1, Burst: 3, Period: time.Hour}
	_, err := rr.Allow(context.Background(), prefix+"probe", limit)
	require.NoError(t, err)
	args := <-hook.evalshas
	assert.Equal(t, ratelimit.GCRAHash, args[1], "the script redis_rate sends")

	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: 3, KeyPrefix: prefix, RedisTimeout: healthyRedisTimeout})
	for range 2 {
		ok, _ := call(t, l, anonymous("192.0.2.30"), false)
		require.True(t, ok)
	}
	// The limiter's key, as redis_rate names it: the third unit of the burst
	// is left, then nothing.
	res, err := rr.Allow(context.Background(), prefix+"q:ip:192.0.2.30", redis_rate.Limit{Rate: 1, Burst: 3, Period: time.Second})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Allowed, "the last unit of the burst")
	assert.Equal(t, 0, res.Remaining)
	ok, rec := call(t, l, anonymous("192.0.2.30"), false)
	assert.False(t, ok, "redis_rate's charge counts for the limiter")
	checkRejected(t, rec, 3)
}

// settle queues a charge of r in a pipeline with another command, sends
// it and settles the charge.
func settle(t *testing.T, l *ratelimit.Limiter, rdb redis.UniversalClient, r *http.Request) (bool, *httptest.ResponseRecorder) {
	t.Helper()
	c := l.Charge(r, false, 1)
	require.NotNil(t, c)
	pipe := rdb.Pipeline()
	c.Queue(r.Context(), pipe)
	ping := pipe.Ping(r.Context())
	_, _ = pipe.Exec(r.Context())
	rec := httptest.NewRecorder()
	ok := c.Settle(rec, r)
	if ping.Err() == nil {
		assert.Equal(t, "PONG", ping.Val(), "the other command has its own reply")
	}
	return ok, rec
}

// A charge rides in another component's pipeline: one round trip for
// both, the same decisions, headers and 429 as Allow, on the same budget.
func TestChargeRidesInAPipeline(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	hook := &tripCounter{}
	rdb.AddHook(hook)
	const burst = 4
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: burst, KeyPrefix: prefix, RedisTimeout: healthyRedisTimeout})
	req := func() *http.Request { return user("rider") }
	_, _ = settle(t, l, rdb, anonymous("192.0.2.40")) // the script known to Redis

	singles, pipelines := hook.singles.Load(), hook.pipelines.Load()
	last := burst
	for i := range burst - 1 {
		ok, rec := settle(t, l, rdb, req())
		require.True(t, ok, "charge %d of the burst", i+1)
		assert.Equal(t, burst, header(t, rec, ratelimit.HeaderLimit))
		rem := header(t, rec, ratelimit.HeaderRemaining)
		assert.Less(t, rem, last, "remaining goes down")
		last = rem
	}
	assert.Equal(t, singles, hook.singles.Load(), "no round trip of the charge's own")
	assert.Equal(t, pipelines+burst-1, hook.pipelines.Load(), "one round trip per charge, the pipeline")

	// The budget is the one Allow charges: one unit left (two with a
	// refill), then the 429.
	ok, _ := call(t, l, req(), false)
	require.True(t, ok)
	allowed := 0
	var refused *httptest.ResponseRecorder
	for range 3 {
		if ok, rec := settle(t, l, rdb, req()); ok {
			allowed++
		} else {
			refused = rec
			break
		}
	}
	assert.LessOrEqual(t, allowed, 1)
	require.NotNil(t, refused, "the spent budget refuses a charge")
	checkRejected(t, refused, burst)

	// A budget that is off makes no charge.
	off := ratelimit.New(rdb, ratelimit.Config{MutationsPerSecond: 1, KeyPrefix: prefix})
	assert.Nil(t, off.Charge(req(), false, 1))
	assert.NotNil(t, off.Charge(req(), true, 1))
}

// A charge that no pipeline took (the cache skipped its read) asks Redis
// itself when it settles.
func TestChargeNotQueuedAsksRedis(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	hook := &tripCounter{}
	rdb.AddHook(hook)
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: 2, KeyPrefix: prefix, RedisTimeout: healthyRedisTimeout})
	var refused *httptest.ResponseRecorder
	for i := 0; i < 4 && refused == nil; i++ {
		rec := httptest.NewRecorder()
		if !l.Charge(user("alone"), false, 1).Settle(rec, user("alone")) {
			refused = rec
		}
	}
	require.NotNil(t, refused)
	checkRejected(t, refused, 2)
	assert.Zero(t, hook.pipelines.Load())
	assert.Positive(t, hook.singles.Load())
	assert.True(t, l.RedisHealthy())
}

// A Redis that has not seen the script yet (a fresh one) answers NOSCRIPT
// to the pipelined step, which did not run: the charge runs it alone, and
// the budget is charged once.
func TestChargeLoadsTheScript(t *testing.T) {
	p := testenv.StartRedis(t)
	rdb := testenv.Connect(t, p.URL())
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: 5, KeyPrefix: "rl:", RedisTimeout: healthyRedisTimeout})
	ok, rec := settle(t, l, rdb, user("fresh"))
	require.True(t, ok)
	assert.Equal(t, 4, header(t, rec, ratelimit.HeaderRemaining), "one unit of the burst of 5 spent")
	assert.True(t, l.RedisHealthy())
	ok, rec = settle(t, l, rdb, user("fresh"))
	require.True(t, ok)
	assert.Equal(t, 3, header(t, rec, ratelimit.HeaderRemaining), "the script known now: one more unit")
}

// With Redis down the pipeline fails and the local limiter decides each
// charge once; in the cool-down nothing is queued.
func TestChargeFallsBackToLocal(t *testing.T) {
	p := testenv.StartRedis(t)
	rdb := testenv.Connect(t, p.URL())
	hook := &tripCounter{}
	rdb.AddHook(hook)
	clock := newClock()
	const burst = 3
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: burst, KeyPrefix: "rl:",
		Cooldown: time.Minute, Now: clock.Now})
	p.Kill()
	results := make([]bool, burst+2)
	for i := range results {
		results[i], _ = settle(t, l, rdb, user("down"))
	}
	assert.Equal(t, []bool{true, true, true, false, false}, results, "the local burst, each charge counted once")
	assert.False(t, l.RedisHealthy())

	// In the cool-down the charge queues nothing (the pipeline carries only
	// the other component's commands) and is decided locally.
	c := l.Charge(user("down2"), false, 1)
	pipe := rdb.Pipeline()
	c.Queue(context.Background(), pipe)
	assert.Zero(t, pipe.Len(), "nothing queued while Redis is in its cool-down")
	rec := httptest.NewRecorder()
	assert.True(t, c.Settle(rec, user("down2")))
	assert.Equal(t, burst-1, header(t, rec, ratelimit.HeaderRemaining))
}
