package cache

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/testenv"
)

// The tests of this file run two caches (two instances of the BFF) on one
// private redis-server that they kill, restart, flush, pause or cut off.

// client returns a client of the Redis at addr, closed when the test ends.
func client(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newCache returns a cache on rdb under prefix.
func newCache(t *testing.T, rdb *redis.Client, prefix string, cfg Config) *Cache {
	t.Helper()
	cfg.Prefix = prefix
	c, err := New(rdb, cfg, nil)
	require.NoError(t, err)
	return c
}

// origin is the database of these tests: one order screen's value.
type origin struct{ v atomic.Value }

func newOrigin(v string) *origin {
	o := &origin{}
	o.v.Store(v)
	return o
}

func (o *origin) load(context.Context) (string, error) { return o.v.Load().(string), nil }

// loadIs loads k through c and checks the value and the status.
func loadIs(t *testing.T, c *Cache, k Key, o *origin, want string, status Status) Result {
	t.Helper()
	v, res, err := Load(context.Background(), c, k, o.load)
	require.NoError(t, err)
	require.Equal(t, want, v, "value served")
	require.Equal(t, status, res.Status, "cache status")
	return res
}

// A writer whose breaker is still open (Redis came back a moment ago)
// invalidates anyway, so a reader whose breaker is closed never serves the
// screen the write changed.
func TestInvalidateBypassesOpenBreaker(t *testing.T) {
	rp := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, rp.Addr())
	var opened atomic.Bool
	writer := newCache(t, client(t, proxy.Addr()), "b:", Config{Breaker: gobreaker.Settings{
		Timeout:     time.Hour, // stays open for the whole test
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				opened.Store(true)
			}
		},
	}})
	repaired := make(chan struct{}, 1)
	writer.onRepaired = func() { repaired <- struct{}{} }
	reader := newCache(t, client(t, rp.Addr()), "b:", Config{})
	k := orderKey("c1")
	db := newOrigin("v1")

	loadIs(t, reader, k, db, "v1", StatusMiss)
	loadIs(t, reader, k, db, "v1", StatusHit)

	proxy.Cut() // the writer loses Redis, its breaker opens
	loadIs(t, writer, k, db, "v1", StatusError)
	require.True(t, opened.Load(), "the writer's breaker opened")
	proxy.Restore() // Redis is back, the writer's breaker is still open
	require.Equal(t, gobreaker.StateOpen, writer.breaker.State())
	loadIs(t, writer, k, db, "v1", StatusError) // reads still skip Redis

	db.v.Store("v2")
	require.NoError(t, writer.Invalidate(context.Background(), OrderDep("o1")), "the invalidation went through the open breaker")
	<-repaired // the breaker's opening also replaced the epoch (a miss for every entry): wait for it to settle
	loadIs(t, reader, k, db, "v2", StatusMiss)
	loadIs(t, reader, k, db, "v2", StatusHit)
}

// Redis loses its data (restarted empty, or flushed) between a load's read
// of the generations and its store: the value stored late lands in a
// namespace no later read builds, even after the writer's invalidation
// sets the dependency again (a counter restarting at 0 would have come
// back to the value the late store used).
func TestDataLossBetweenReadAndStore(t *testing.T) {
	for _, loss := range []string{"restart", "flush"} {
		t.Run(loss, func(t *testing.T) {
			rp := testenv.StartRedis(t)
			reached, release := make(chan struct{}), make(chan struct{})
			var first atomic.Bool
			// Generous timeouts: the subject is the data loss, and a store
			// that times out on a busy machine would not be a late store.
			reader := newCache(t, client(t, rp.Addr()), "l:", Config{Timeout: 10 * time.Second, StoreDelay: func(context.Context) {
				if first.CompareAndSwap(false, true) {
					close(reached)
					<-release
				}
			}})
			wrdb := client(t, rp.Addr())
			writer := newCache(t, wrdb, "l:", Config{Timeout: 10 * time.Second})
			ctx := context.Background()
			k := orderKey("c1")
			db := newOrigin("v1")
			require.NoError(t, writer.Invalidate(ctx, OrderDep("o1"))) // the order changed once already

			done := make(chan Result)
			go func() {
				v, res, err := Load(ctx, reader, k, db.load)
				assert.NoError(t, err)
				assert.Equal(t, "v1", v)
				done <- res
			}()
			<-reached // the slow read has loaded v1 under the generations it read
			switch loss {
			case "restart":
				rp.Kill()
				rp.Start()
			case "flush":
				require.NoError(t, wrdb.FlushAll(ctx).Err())
			}
			db.v.Store("v2")
			require.NoError(t, writer.Invalidate(ctx, OrderDep("o1")))
			close(release)
			require.True(t, (<-done).Stored, "the slow read stored v1 after the loss")

			loadIs(t, writer, k, db, "v2", StatusMiss)
			loadIs(t, reader, k, db, "v2", StatusHit)
		})
	}
}

// Redis paused (SIGSTOP) for longer than the per-call timeout while a
// writer invalidates: the invalidation is retried until Redis answers, and
// the reader never serves the old screen, neither during the pause (it
// loads from the origin) nor after it.
func TestInvalidateOutlastsPausedRedis(t *testing.T) {
	rp := testenv.StartRedis(t)
	failed := make(chan struct{})
	var once atomic.Bool
	writer := newCache(t, client(t, rp.Addr()), "p:", Config{Timeout: 50 * time.Millisecond, InvalidateTimeout: time.Minute})
	writer.onAttempt = func(err error) {
		if err != nil && once.CompareAndSwap(false, true) {
			close(failed)
		}
	}
	reader := newCache(t, client(t, rp.Addr()), "p:", Config{Timeout: 50 * time.Millisecond})
	k := orderKey("c1")
	db := newOrigin("v1")
	loadIs(t, reader, k, db, "v1", StatusMiss)
	loadIs(t, reader, k, db, "v1", StatusHit)

	rp.Pause()
	db.v.Store("v2")
	done := make(chan error, 1)
	go func() { done <- writer.Invalidate(context.Background(), OrderDep("o1")) }()
	<-failed // an attempt timed out: the pause is longer than the per-call timeout
	loadIs(t, reader, k, db, "v2", StatusError)
	rp.Resume()
	require.NoError(t, <-done, "the invalidation was retried until Redis answered")
	loadIs(t, reader, k, db, "v2", StatusMiss)
	loadIs(t, reader, k, db, "v2", StatusHit)
}

// A writer cut off from Redis for longer than InvalidateTimeout cannot
// confirm its invalidation. It never serves the old screen itself, and as
// soon as it reaches Redis again it replaces the epoch, which drops every
// entry for every instance. Until then a reader that still reaches Redis
// and has not seen the write's event (see TestObservedEventRefusesOlderEntry)
// serves the entry it has, for at most the entry's TTL.
func TestUnconfirmedInvalidationReplacesEpoch(t *testing.T) {
	rp := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, rp.Addr())
	repaired := make(chan struct{})
	var failedOnce, repairedOnce atomic.Bool
	writer := newCache(t, client(t, proxy.Addr()), "u:", Config{InvalidateTimeout: 100 * time.Millisecond})
	writer.onAttempt = func(err error) {
		if err != nil {
			failedOnce.Store(true)
		} else if failedOnce.Load() && repairedOnce.CompareAndSwap(false, true) {
			close(repaired)
		}
	}
	const ttl = 10 * time.Minute
	// The reader reaches Redis throughout: a generous timeout, so that a
	// busy machine cannot make its store of v1 time out.
	reader := newCache(t, client(t, rp.Addr()), "u:", Config{TTL: ttl, Timeout: 10 * time.Second})
	k := orderKey("c1")
	db := newOrigin("v1")
	loadIs(t, reader, k, db, "v1", StatusMiss)

	proxy.Cut()
	db.v.Store("v2")
	err := writer.Invalidate(context.Background(), OrderDep("o1"))
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrUnavailable))
	loadIs(t, writer, k, db, "v2", StatusError) // the writer loads from the origin

	// The partition: the reader still serves v1, at most until the entry
	// expires.
	res := loadIs(t, reader, k, db, "v1", StatusHit)
	require.LessOrEqual(t, res.TTL, time.Duration(float64(ttl)*1.1))

	proxy.Restore()
	<-repaired // the writer's background repair replaced the epoch
	loadIs(t, reader, k, db, "v2", StatusMiss)
	loadIs(t, writer, k, db, "v2", StatusHit)
}

// A reader that has seen an event (its broker handed it out) refuses every
// entry of the event's dependencies loaded before its loader had seen that
// position, even though the writer's invalidation never reached Redis: the
// partition's bound is the time the event takes to reach the reader's
// broker, not the entry's TTL.
func TestObservedEventRefusesOlderEntry(t *testing.T) {
	rp := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, rp.Addr())
	writer := newCache(t, client(t, proxy.Addr()), "o:", Config{InvalidateTimeout: 50 * time.Millisecond})
	reader := newCache(t, client(t, rp.Addr()), "o:", Config{TTL: time.Hour, Timeout: 10 * time.Second}) // reaches Redis throughout
	other := newCache(t, client(t, rp.Addr()), "o:", Config{TTL: time.Hour, Timeout: 10 * time.Second})
	k1, k2 := orderKey("c1"), orderKey("c1")
	k2.Args, k2.Deps = "id=o2", []Dep{OrderDep("o2")}
	db1, db2 := newOrigin("v1"), newOrigin("w1")
	reader.Observe(3, OrderDep("o1"), CustomerDep("c1"))
	loadIs(t, reader, k1, db1, "v1", StatusMiss) // stored as loaded after position 3
	loadIs(t, reader, k2, db2, "w1", StatusMiss)

	proxy.Cut()
	db1.v.Store("v2") // the write of event 7 on the partitioned writer
	require.Error(t, writer.Invalidate(context.Background(), OrderDep("o1")))
	loadIs(t, reader, k1, db1, "v1", StatusHit) // the event has not reached the reader yet

	reader.Observe(7, OrderDep("o1"), CustomerDep("c1"))
	loadIs(t, reader, k1, db1, "v2", StatusMiss) // refused, reloaded, stored as of position 7
	loadIs(t, reader, k1, db1, "v2", StatusHit)
	loadIs(t, reader, k2, db2, "w1", StatusHit) // another order's entry is still good
	loadIs(t, other, k1, db1, "v2", StatusHit)  // the replaced entry serves every instance
}

// Observe keeps a bounded number of dependencies; beyond it every entry
// loaded before the newest observed position is refused (stricter, never
// looser).
func TestWatermarksStayBounded(t *testing.T) {
	e := newEnv(t, Config{})
	db := newOrigin("v1")
	k := orderKey("c1")
	loadIs(t, e.cache, k, db, "v1", StatusMiss)
	for i := range maxWatermarks + 1 {
		e.cache.Observe(int64(i+1), OrderDep(strconv.Itoa(i)))
	}
	require.LessOrEqual(t, len(e.cache.marks.cur.deps), maxWatermarks)
	loadIs(t, e.cache, k, db, "v1", StatusMiss) // loaded before the floor: refused
	loadIs(t, e.cache, k, db, "v1", StatusHit)
}

// An entry whose loader read the event (Reflects) is not refused when
// this instance's broker hands the event out later: what the entry
// reflects is read with its value, not taken from how far the broker had
// got (which refused fresh entries while the broker caught up). An entry
// built on an inner entry (of other dependencies: see
// TestNestedLoadLeavesRedisToTheEnclosingOne) reflects what the inner one
// does.
func TestEntryReflectingAnEventSurvivesItsObservation(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.cache
	c.Observe(3, OrderDep("o1"))
	model, response := layerKeys("c1")
	response.Deps = []Dep{OrderDep("o1"), CustomerDep("c1")}
	db := newOrigin("v2")
	// The write of event 7 committed; the broker has not handed it out.
	v, res, err := Load(ctx, c, model, func(ctx context.Context) (string, error) {
		Reflects(ctx, 7) // the loader read the order's newest event: 7
		return db.load(ctx)
	})
	require.NoError(t, err)
	require.Equal(t, "v2", v)
	require.Equal(t, StatusMiss, res.Status)
	outer := func(ctx context.Context) (string, error) {
		v, _, err := Load(ctx, c, model, db.load) // a hit on the entry above
		return v, err
	}
	_, res, err = Load(ctx, c, response, outer)
	require.NoError(t, err)
	require.Equal(t, StatusMiss, res.Status)
	plain := orderKey("c2") // a loader that tells nothing: stored as of 3
	loadIs(t, c, plain, db, "v2", StatusMiss)

	c.Observe(7, OrderDep("o1"))
	loadIs(t, c, model, db, "v2", StatusHit)
	_, res, err = Load(ctx, c, response, outer)
	require.NoError(t, err)
	require.Equal(t, StatusHit, res.Status, "the response entry reflects 7 through the model entry")
	loadIs(t, c, plain, db, "v2", StatusMiss) // refused: nothing said it reflects 7
	loadIs(t, c, plain, db, "v2", StatusHit)  // reloaded after 7 was seen
}

// An entry built from an inner entry (the rendered response from the
// screen model) expires no later than the inner one: a screen cached in
// two layers is served at most TTL·(1+Jitter) after its data was read from
// the origin, not twice that.
func TestOuterEntryNeverOutlivesInner(t *testing.T) {
	rp := testenv.StartRedis(t)
	rdb := client(t, rp.Addr())
	inner := newCache(t, rdb, "t:", Config{TTL: 2 * time.Second, Jitter: -1})
	outer := newCache(t, rdb, "t:", Config{TTL: time.Hour})
	ctx := context.Background()
	model, response := layerKeys("c1")
	db := newOrigin("v1")
	loadIs(t, inner, model, db, "v1", StatusMiss)

	_, res, err := Load(ctx, outer, response, func(ctx context.Context) (string, error) {
		v, _, err := Load(ctx, inner, model, db.load)
		return v, err
	})
	require.NoError(t, err)
	require.True(t, res.Stored)
	require.LessOrEqual(t, res.TTL, 2*time.Second, "the response entry outlives the model entry it was built from")
	keys, err := rdb.Keys(ctx, "t:*:e:orderScreen:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for _, k := range keys {
		pttl, err := rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.LessOrEqual(t, pttl, 2*time.Second, "entry %s", k)
	}
}

// Observations are forgotten once every entry loaded before them has
// expired (TTL·(1+Jitter) after its load started), not before.
func TestObservationsAreKeptForAnEntryLifetime(t *testing.T) {
	e := newEnv(t, Config{TTL: time.Minute})
	c := e.cache
	now := time.Unix(1_000_000, 0)
	c.marks.now = func() time.Time { return now }
	d := []Dep{OrderDep("o1")}
	c.Observe(7, d...)
	require.Equal(t, int64(7), c.newest(d))
	now = now.Add(c.maxAge() - time.Millisecond)
	require.Equal(t, int64(7), c.newest(d), "forgotten while an entry loaded before it may live")
	now = now.Add(time.Millisecond)
	c.Observe(8, OrderDep("o2"))
	require.Equal(t, int64(7), c.newest(d), "kept for one period after the rotation")
	now = now.Add(c.maxAge())
	require.Equal(t, int64(0), c.newest(d), "kept beyond two periods")
	require.Equal(t, int64(8), c.seen(), "the head is never forgotten")
}

// The validator names the entry a read serves: it stays the same when this
// instance observes an event the entry reflects, and changes when it
// observes one the entry does not reflect (the entry is refused, so a
// client's copy of it must not be confirmed).
func TestValidatorFollowsObservedEvents(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.cache
	k := orderKey("c1")
	c.Observe(3, OrderDep("o1"))
	load := func(ctx context.Context) (string, error) { Reflects(ctx, 5); return "v5", nil }
	_, res, err := Load(ctx, c, k, load)
	require.NoError(t, err)
	v1, err := c.Validator(ctx, k)
	require.NoError(t, err)
	require.Equal(t, res.Validator, v1)

	c.Observe(5, OrderDep("o1"))
	v, err := c.Validator(ctx, k)
	require.NoError(t, err)
	require.Equal(t, v1, v, "an event the entry reflects changed its validator")

	c.Observe(7, OrderDep("o1"))
	v, err = c.Validator(ctx, k)
	require.NoError(t, err)
	require.NotEqual(t, v1, v, "a refused entry's validator is still confirmed")
	_, res, err = Load(ctx, c, k, func(context.Context) (string, error) { return "v7", nil })
	require.NoError(t, err)
	require.Equal(t, StatusMiss, res.Status)
	require.Equal(t, v, res.Validator, "the validator read before the reload names the reloaded entry")
}

// Every Redis call of the cache ends by its per-call timeout, or by the
// caller's deadline when that is sooner, whatever it waits for: the reply
// of a paused Redis, or a pooled connection the paused call holds.
func TestCallEndsByTheSoonerDeadline(t *testing.T) {
	rp := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr(), ContextTimeoutEnabled: true, DialTimeout: time.Second,
		PoolSize: 1, PoolTimeout: time.Minute, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	settings := gobreaker.Settings{Name: "test", ReadyToTrip: func(gobreaker.Counts) bool { return false }}
	short := newCache(t, rdb, "d:", Config{Timeout: 100 * time.Millisecond, Breaker: settings})
	long := newCache(t, rdb, "d:", Config{Timeout: time.Minute, Breaker: settings})
	k := orderKey("c1")
	db := newOrigin("v1")
	loadIs(t, short, k, db, "v1", StatusMiss)

	rp.Pause()
	defer rp.Resume()
	timed := func(ctx context.Context, c *Cache) time.Duration {
		start := time.Now()
		v, res, err := Load(ctx, c, k, db.load)
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		require.Equal(t, StatusError, res.Status)
		return time.Since(start)
	}
	// the per-call timeout, for a caller without a deadline
	assert.Less(t, timed(context.Background(), short), 2*time.Second)
	// while one call holds the only connection, another waits for it no
	// longer than its own timeout
	held := make(chan time.Duration, 1)
	go func() { held <- timed(context.Background(), short) }()
	assert.Less(t, timed(context.Background(), short), 2*time.Second, "the wait for a pooled connection")
	assert.Less(t, <-held, 2*time.Second)
	// the caller's deadline, sooner than the per-call timeout
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.Less(t, timed(ctx, long), 2*time.Second, "the caller's sooner deadline")
}

// A Load inside the loader of a Load of the same cache and dependencies
// (the screen model under the rendered response) leaves Redis to the
// enclosing one: the miss costs one read and one store, what the inner
// loader tells reaches the entry stored, and an invalidation drops it.
func TestNestedLoadLeavesRedisToTheEnclosingOne(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.cache
	c.Observe(3, OrderDep("o1"))
	model, response := layerKeys("c1")
	inner := Result{Status: "unset"}
	outer := func(ctx context.Context) (string, error) {
		v, res, err := Load(ctx, c, model, func(ctx context.Context) (string, error) {
			Reflects(ctx, 7) // the model's loader read the order's newest event
			return "v7", nil
		})
		inner = res
		return "<" + v + ">", err
	}
	trips := &roundTrips{}
	e.rdb.AddHook(trips)
	v, res, err := Load(ctx, c, response, outer)
	require.NoError(t, err)
	assert.Equal(t, "<v7>", v)
	assert.Equal(t, StatusMiss, res.Status)
	assert.True(t, res.Stored)
	assert.Equal(t, Result{}, inner, "the nested Load reports nothing of its own")
	assert.EqualValues(t, 2, trips.singles.Load()+trips.pipelines.Load(), "one read and one store for both layers")
	keys, err := e.rdb.Keys(ctx, e.prefix+"*:e:orderScreen:*").Result() // this test's keys only: other suites share the Redis
	require.NoError(t, err)
	assert.Len(t, keys, 1, "only the enclosing entry is stored")

	c.Observe(7, OrderDep("o1"))
	_, res, err = Load(ctx, c, response, outer)
	require.NoError(t, err)
	assert.Equal(t, StatusHit, res.Status, "the entry reflects 7, told by the nested loader")

	require.NoError(t, c.Invalidate(ctx, OrderDep("o1")))
	_, res, err = Load(ctx, c, response, outer)
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, res.Status)

	// Other dependencies, or a Load outside any loader: the model layer
	// is used as before.
	_, res, err = Load(ctx, c, model, func(context.Context) (string, error) { return "m", nil })
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, res.Status)
	wider := response
	wider.Args, wider.Deps = "wider", []Dep{OrderDep("o1"), CustomerDep("c1")}
	_, _, err = Load(ctx, c, wider, outer)
	require.NoError(t, err)
	assert.Equal(t, StatusHit, inner.Status, "a Load of other dependencies reads its own entry")
}
