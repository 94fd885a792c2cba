package cache

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// incrRider queues an INCR of its key, as a rate limit's charge rides in
// a read.
type incrRider struct {
	key    string
	queued int
	cmd    *redis.IntCmd
}

func (r *incrRider) Queue(ctx context.Context, pipe redis.Pipeliner) {
	r.queued++
	r.cmd = pipe.Incr(ctx, r.key)
}

// roundTrips counts the commands sent alone and the pipelines.
type roundTrips struct{ singles, pipelines atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.singles.Add(1); return next(ctx, cmd) }
}
func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.pipelines.Add(1); return next(ctx, cmds) }
}

// A rider's commands go in the same round trip as the read of Peek and
// PeekValidator, once each; without a rider the read goes alone.
func TestPeekCarriesARider(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	_, _, err := Load(ctx, e.cache, k, func(context.Context) (string, error) { return "v1", nil })
	require.NoError(t, err)
	p := e.cache.Prepare(k)
	// The script is known to Redis (Load ran it), and a connection of the
	// client's pipeline pool is open: every read is one trip now.
	_, _, _, err = e.cache.Peek(ctx, p, &incrRider{key: e.prefix + "warm"})
	require.NoError(t, err)
	trips := &roundTrips{}
	e.rdb.AddHook(trips)

	r := &incrRider{key: e.prefix + "rider"}
	data, res, hit, err := e.cache.Peek(ctx, p, r)
	require.NoError(t, err)
	require.True(t, hit)
	assert.Equal(t, StatusHit, res.Status)
	assert.NotEmpty(t, data)
	assert.Equal(t, 1, r.queued)
	assert.EqualValues(t, 1, r.cmd.Val(), "the rider's command has its reply")
	assert.EqualValues(t, 1, trips.pipelines.Load())
	assert.Zero(t, trips.singles.Load(), "one round trip for the read and the rider")

	r2 := &incrRider{key: e.prefix + "rider"}
	val, err := e.cache.PeekValidator(ctx, p, r2)
	require.NoError(t, err)
	assert.Equal(t, res.Validator, val)
	assert.EqualValues(t, 2, r2.cmd.Val())
	assert.EqualValues(t, 2, trips.pipelines.Load())
	assert.Zero(t, trips.singles.Load())

	_, _, hit, err = e.cache.Peek(ctx, p, nil)
	require.NoError(t, err)
	assert.True(t, hit)
	assert.EqualValues(t, 1, trips.singles.Load(), "without a rider: the script alone")
	assert.EqualValues(t, 2, trips.pipelines.Load())

	// A bypassed read sends nothing: the rider is not queued.
	r3 := &incrRider{key: e.prefix + "rider"}
	_, _, hit, err = e.cache.Peek(WithBypass(ctx), p, r3)
	require.NoError(t, err)
	assert.False(t, hit)
	assert.Zero(t, r3.queued)
}
