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
			reader := newCache(t, client(t, rp.Addr()), "l:", Config{StoreDelay: func(context.Context) {
				if first.CompareAndSwap(false, true) {
					close(reached)
					<-release
				}
			}})
			wrdb := client(t, rp.Addr())
			writer := newCache(t, wrdb, "l:", Config{})
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
	reader := newCache(t, client(t, rp.Addr()), "u:", Config{TTL: ttl})
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
	reader := newCache(t, client(t, rp.Addr()), "o:", Config{TTL: time.Hour})
	other := newCache(t, client(t, rp.Addr()), "o:", Config{TTL: time.Hour})
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
	require.LessOrEqual(t, len(e.cache.marks.deps), maxWatermarks)
	loadIs(t, e.cache, k, db, "v1", StatusMiss) // loaded before the floor: refused
	loadIs(t, e.cache, k, db, "v1", StatusHit)
}
