package cache

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/testenv"
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
	assert.EqualValues(t, 1, trips.singles.Load(), "without a rider: one command alone")
	assert.EqualValues(t, 2, trips.pipelines.Load())

	// A bypassed read sends nothing: the rider is not queued.
	r3 := &incrRider{key: e.prefix + "rider"}
	_, _, hit, err = e.cache.Peek(WithBypass(ctx), p, r3)
	require.NoError(t, err)
	assert.False(t, hit)
	assert.Zero(t, r3.queued)
}

// Peek returns a []byte value as Load stored it: with MessagePack, a
// slice of the Redis reply (no copy); with another codec, decoded. A Redis
// that forgot the read script (restarted, scripts flushed) answers the
// prepared read and its rider alike.
func TestPeekBytes(t *testing.T) {
	p := testenv.StartRedis(t)
	for _, codec := range []Codec{MsgpackCodec{}, JSONCodec{}} {
		t.Run(codec.Name(), func(t *testing.T) {
			rdb := testenv.Connect(t, p.URL())
			c, err := New(rdb, Config{Prefix: "pb:" + codec.Name() + ":", Codec: codec, Timeout: 10 * time.Second}, nil)
			require.NoError(t, err)
			ctx := context.Background()
			k := orderKey("u1")
			want := []byte(`{"screen":"` + strings.Repeat("x", 300) + `"}`)
			_, _, err = Load(ctx, c, k, func(context.Context) ([]byte, error) { return want, nil })
			require.NoError(t, err)
			pk := c.Prepare(k)
			for i, rider := range []Rider{nil, &incrRider{key: "pb:rider"}} {
				require.NoError(t, rdb.ScriptFlush(ctx).Err())
				got, res, hit, err := c.Peek(ctx, pk, rider)
				require.NoError(t, err, "read %d", i)
				require.True(t, hit, "read %d", i)
				assert.Equal(t, StatusHit, res.Status)
				assert.Equal(t, want, got)
			}
		})
	}
}

// decodeBytes returns the bytes of a MessagePack bin (every length form)
// or nil as a slice of its input, and refuses anything else, so that the
// caller decodes it with the codec.
func TestMsgpackDecodeBytes(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 65535, 65536} {
		want := bytes.Repeat([]byte{'x'}, n)
		enc, err := MsgpackCodec{}.Marshal(want)
		require.NoError(t, err)
		got, ok := MsgpackCodec{}.decodeBytes(enc)
		require.True(t, ok, "length %d", n)
		assert.Equal(t, want, got, "length %d", n)
		if n > 0 {
			assert.Same(t, &enc[len(enc)-n], &got[0], "a slice of the entry, not a copy")
		}
		_, ok = MsgpackCodec{}.decodeBytes(append(enc, 0))
		assert.False(t, ok, "trailing bytes")
		_, ok = MsgpackCodec{}.decodeBytes(enc[:len(enc)-1])
		assert.False(t, n > 0 && ok, "truncated")
	}
	enc, err := MsgpackCodec{}.Marshal([]byte(nil))
	require.NoError(t, err)
	got, ok := MsgpackCodec{}.decodeBytes(enc)
	assert.True(t, ok)
	assert.Nil(t, got)
	str, err := MsgpackCodec{}.Marshal("text")
	require.NoError(t, err)
	_, ok = MsgpackCodec{}.decodeBytes(str)
	assert.False(t, ok, "a string is the codec's to decode")
	_, ok = MsgpackCodec{}.decodeBytes(nil)
	assert.False(t, ok)
}

// scriptRuns counts the read script's runs (EVALSHA and EVAL, alone or
// pipelined).
type scriptRuns struct{ n atomic.Int64 }

func (c *scriptRuns) count(cmd redis.Cmder) {
	if name := cmd.Name(); name == "evalsha" || name == "eval" {
		c.n.Add(1)
	}
}
func (c *scriptRuns) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scriptRuns) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.count(cmd); return next(ctx, cmd) }
}
func (c *scriptRuns) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// Once a Prepared read found its generations, Peek reads them and the
// entry with an MGET, no script; an invalidation, a lost generation or an
// epoch to replace sends it back to the script, and it never serves the
// entry of older generations.
func TestPeekReadsKnownGenerationsWithoutTheScript(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	load := func(v string) {
		t.Helper()
		_, _, err := Load(ctx, e.cache, k, func(context.Context) ([]byte, error) { return []byte(v), nil })
		require.NoError(t, err)
	}
	peek := func() (string, bool) {
		t.Helper()
		data, res, hit, err := e.cache.Peek(ctx, e.cache.Prepare(k), nil)
		require.NoError(t, err)
		if hit {
			assert.Positive(t, res.TTL)
		}
		return string(data), hit
	}
	load("v1")
	p := e.cache.Prepare(k)
	runs := &scriptRuns{}
	e.rdb.AddHook(runs)
	read := func() (string, bool) {
		t.Helper()
		data, res, hit, err := e.cache.Peek(ctx, p, nil)
		require.NoError(t, err)
		if hit {
			assert.Positive(t, res.TTL)
			assert.Positive(t, res.TTLSeconds())
		}
		return string(data), hit
	}
	v, hit := read()
	require.True(t, hit)
	assert.Equal(t, "v1", v)
	assert.EqualValues(t, 1, runs.n.Load(), "the first read learns the generations")
	for range 3 {
		v, hit = read()
		require.True(t, hit)
		assert.Equal(t, "v1", v)
	}
	assert.EqualValues(t, 1, runs.n.Load(), "later reads: no script")
	first, _, _, err := e.cache.Peek(ctx, p, nil)
	require.NoError(t, err)
	_, res, _, _ := e.cache.Peek(ctx, p, nil)
	val, err := e.cache.Validator(ctx, k)
	require.NoError(t, err)
	assert.Equal(t, val, res.Validator, "the validator of the script's read")
	assert.Equal(t, "v1", string(first))

	// An invalidation: a miss, then the new value.
	require.NoError(t, e.cache.Invalidate(ctx, k.Deps...))
	_, hit = read()
	assert.False(t, hit, "never the entry of the old generations")
	load("v2")
	v, hit = read()
	require.True(t, hit)
	assert.Equal(t, "v2", v)

	// A lost generation: the script recreates it, and the old entry is
	// never current again.
	require.NoError(t, e.rdb.Del(ctx, p.keys[1]).Err()) // the first dependency's generation
	_, hit = read()
	assert.False(t, hit)
	_, hit = peek()
	assert.False(t, hit)
	load("v3")
	v, hit = read()
	require.True(t, hit)
	assert.Equal(t, "v3", v)
}

// A Load that follows a Peek's miss in the same request (AfterMiss) does
// not read the key again: one round trip for the store only, the value
// stored under the generations the Peek read, and served by the next
// Peek. A second Load in the same context reads as usual, and a Load of
// another key never takes the Peek's miss.
func TestLoadAfterMissSkipsTheRead(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	p := e.cache.Prepare(k)
	_, res, hit, err := e.cache.Peek(ctx, p, nil)
	require.NoError(t, err)
	require.False(t, hit)
	mctx := AfterMiss(ctx, res)

	trips := &roundTrips{}
	e.rdb.AddHook(trips)
	_, lr, err := Load(mctx, e.cache, k, func(context.Context) ([]byte, error) { return []byte("v1"), nil })
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, lr.Status)
	assert.True(t, lr.Stored)
	assert.EqualValues(t, 1, trips.singles.Load()+trips.pipelines.Load(), "the store only: no second read")

	data, _, hit, err := e.cache.Peek(ctx, p, nil)
	require.NoError(t, err)
	require.True(t, hit, "stored where the next read looks")
	assert.Equal(t, "v1", string(data))

	trips.singles.Store(0)
	_, lr, err = Load(mctx, e.cache, k, func(context.Context) ([]byte, error) { return []byte("v2"), nil })
	require.NoError(t, err)
	assert.Equal(t, StatusHit, lr.Status, "the miss is taken once: this Load read the entry")

	require.NoError(t, e.cache.Invalidate(ctx, k.Deps...))
	_, res, hit, err = e.cache.Peek(ctx, p, nil)
	require.NoError(t, err)
	require.False(t, hit)
	trips.singles.Store(0)
	trips.pipelines.Store(0)
	_, lr, err = Load(AfterMiss(ctx, res), e.cache, orderKey("u2"), func(context.Context) ([]byte, error) { return []byte("w"), nil })
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, lr.Status)
	assert.EqualValues(t, 2, trips.singles.Load()+trips.pipelines.Load(), "another key: read, then store")
}
