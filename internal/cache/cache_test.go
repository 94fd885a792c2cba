package cache

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/testenv"
)

func orderKey(viewer string) Key {
	return Key{Screen: "orderScreen", Args: "id=o1", ViewerID: viewer, Role: "CUSTOMER",
		Deps: []Dep{OrderDep("o1")}}
}

// layerKeys are the keys of viewer's orderScreen in the two layers: the
// screen model and the rendered response over it (same dependencies).
func layerKeys(viewer string) (model, response Key) {
	model, response = orderKey(viewer), orderKey(viewer)
	response.Args = "response"
	return model, response
}

func TestLoadMissThenHit(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	l := &counter[string]{value: func(n int64) string { return "v" + string(rune('0'+n)) }}
	k := orderKey("u1")

	v, res, err := Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	assert.Equal(t, StatusMiss, res.Status)
	assert.True(t, res.Stored)

	v, res, err = Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)
	assert.Equal(t, "v1", v, "second load is served from the cache")
	assert.Equal(t, StatusHit, res.Status)
	assert.Greater(t, res.TTL, 50*time.Second)
	assert.LessOrEqual(t, res.TTL, 66*time.Second)
	assert.EqualValues(t, 1, l.calls.Load(), "a hit never calls the loader")
}

// A realistic screen value round-trips through the cache.
func TestLoadRoundTripsScreen(t *testing.T) {
	for _, codec := range []Codec{JSONCodec{}, MsgpackCodec{}} {
		t.Run(codec.Name(), func(t *testing.T) {
			e := newEnv(t, Config{Codec: codec})
			want := sampleScreen(7)
			k := Key{Screen: "ordersScreen", Args: "status=&first=20&after=", ViewerID: "c1", Role: "CUSTOMER", Deps: []Dep{CustomerDep("c1")}}
			_, _, err := Load(context.Background(), e.cache, k, func(context.Context) (screen, error) { return want, nil })
			require.NoError(t, err)
			got, res, err := Load(context.Background(), e.cache, k, func(context.Context) (screen, error) {
				return screen{}, errors.New("must not load")
			})
			require.NoError(t, err)
			require.Equal(t, StatusHit, res.Status)
			assert.Equal(t, want.utc(), got.utc())
		})
	}
}

// Every part of the key scopes the entry: a change of any part is a miss.
func TestKeyScoping(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	base := Key{Screen: "ordersScreen", Args: "status=PAID&first=20&after=", ViewerID: "u1", Role: "CUSTOMER", Deps: []Dep{CustomerDep("u1")}}
	_, _, err := Load(ctx, e.cache, base, func(context.Context) (string, error) { return "base", nil })
	require.NoError(t, err)

	other := func(f func(k *Key)) Key {
		k := base
		k.Deps = append([]Dep(nil), base.Deps...)
		f(&k)
		return k
	}
	cases := map[string]Key{
		"screen": other(func(k *Key) { k.Screen = "homeScreen" }),
		"args":   other(func(k *Key) { k.Args = "status=SHIPPED&first=20&after=" }),
		"viewer": other(func(k *Key) { k.ViewerID = "u2" }),
		"role":   other(func(k *Key) { k.Role = "STAFF" }),
		"deps":   other(func(k *Key) { k.Deps = []Dep{AllOrdersDep} }),
	}
	for name, k := range cases {
		t.Run(name, func(t *testing.T) {
			v, res, err := Load(ctx, e.cache, k, func(context.Context) (string, error) { return name, nil })
			require.NoError(t, err)
			assert.Equal(t, StatusMiss, res.Status)
			assert.Equal(t, name, v)
		})
	}

	t.Run("model version", func(t *testing.T) {
		c2, err := New(e.rdb, Config{Prefix: e.prefix, ModelVersion: "2"}, nil)
		require.NoError(t, err)
		v, res, err := Load(ctx, c2, base, func(context.Context) (string, error) { return "v2", nil })
		require.NoError(t, err)
		assert.Equal(t, StatusMiss, res.Status)
		assert.Equal(t, "v2", v)
	})
	t.Run("same key hits, deps in any order", func(t *testing.T) {
		k := base
		k.Deps = []Dep{CustomerDep("u1"), CustomerDep("u1")}
		v, res, err := Load(ctx, e.cache, k, func(context.Context) (string, error) { return "reloaded", nil })
		require.NoError(t, err)
		assert.Equal(t, StatusHit, res.Status)
		assert.Equal(t, "base", v)
	})
}

func TestInvalidate(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	order1 := Key{Screen: "orderScreen", Args: "id=o1", ViewerID: "c1", Role: "CUSTOMER", Deps: []Dep{OrderDep("o1")}}
	order2 := Key{Screen: "orderScreen", Args: "id=o2", ViewerID: "c1", Role: "CUSTOMER", Deps: []Dep{OrderDep("o2")}}
	home := Key{Screen: "homeScreen", ViewerID: "c1", Role: "CUSTOMER", Deps: []Dep{CustomerDep("c1")}}
	staff := Key{Screen: "ordersScreen", Args: "status=&first=20&after=", ViewerID: "s1", Role: "STAFF", Deps: []Dep{AllOrdersDep}}
	keys := []Key{order1, order2, home, staff}
	gen := 0
	loadAll := func() map[string]Status {
		gen++
		out := map[string]Status{}
		for _, k := range keys {
			_, res, err := Load(ctx, e.cache, k, func(context.Context) (int, error) { return gen, nil })
			require.NoError(t, err)
			out[k.Screen+k.Args+k.Role] = res.Status
		}
		return out
	}
	loadAll()
	for _, s := range loadAll() {
		require.Equal(t, StatusHit, s)
	}

	// A mutation of order o1 of customer c1.
	require.NoError(t, e.cache.Invalidate(ctx, OrderDep("o1"), CustomerDep("c1"), AllOrdersDep))
	got := loadAll()
	assert.Equal(t, map[string]Status{
		"orderScreenid=o1CUSTOMER":                 StatusMiss,
		"orderScreenid=o2CUSTOMER":                 StatusHit,
		"homeScreenCUSTOMER":                       StatusMiss,
		"ordersScreenstatus=&first=20&after=STAFF": StatusMiss,
	}, got)

	// Generation counters expire, long after the entries built on them.
	pttl, err := e.rdb.PTTL(ctx, e.cache.genKey+string(OrderDep("o1"))).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, 23*time.Hour)

	require.NoError(t, e.cache.Invalidate(ctx), "no deps is a no-op")
}

// 50 concurrent misses on one key cause exactly one load.
func TestSingleflight(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 50
	var arrived atomic.Int64
	allArrived := make(chan struct{})
	e.cache.beforeFlight = func() {
		if arrived.Add(1) == n {
			close(allArrived)
		}
	}
	var calls atomic.Int64
	load := func(context.Context) (string, error) {
		calls.Add(1)
		<-allArrived // every caller has missed and is about to join the flight
		return "shared", nil
	}
	k := orderKey("u1")
	var wg sync.WaitGroup
	results := make(chan string, n)
	for range n {
		wg.Go(func() {
			v, res, err := Load(context.Background(), e.cache, k, load)
			assert.NoError(t, err)
			assert.Contains(t, []Status{StatusMiss, StatusHit}, res.Status)
			results <- v
		})
	}
	wg.Wait()
	close(results)
	assert.EqualValues(t, n, arrived.Load(), "all callers missed")
	assert.EqualValues(t, 1, calls.Load(), "one origin load for %d concurrent misses", n)
	for v := range results {
		assert.Equal(t, "shared", v)
	}
}

// A caller that missed while a flight ran but asks for it only after it
// ended is served the flight's value (the entry stored under the
// generations it read), not a second load; a caller that asked for a
// fresh value, or read other generations, loads.
func TestLateCallerTakesTheEndedFlight(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	l := &counter[string]{value: func(n int64) string { return "v" + string(rune('0'+n)) }}
	var arrived atomic.Int64
	lateMissed, flightEnded := make(chan struct{}), make(chan struct{})
	e.cache.beforeFlight = func() {
		if arrived.Add(1) == 1 { // the late caller: it missed, then waits
			close(lateMissed)
			<-flightEnded
		}
	}
	late := make(chan Result, 1)
	go func() {
		v, res, err := Load(ctx, e.cache, k, l.load)
		assert.NoError(t, err)
		assert.Equal(t, "v1", v)
		late <- res
	}()
	<-lateMissed
	v, res, err := Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.Equal(t, StatusMiss, res.Status)
	close(flightEnded)
	lr := <-late
	assert.Equal(t, StatusHit, lr.Status)
	assert.Equal(t, res.Validator, lr.Validator, "the entry the flight stored")
	assert.EqualValues(t, 1, l.calls.Load(), "one origin load")

	e.cache.beforeFlight = nil
	v, res, err = Load(WithBypass(ctx), e.cache, k, l.load)
	require.NoError(t, err)
	assert.Equal(t, StatusBypass, res.Status)
	assert.Equal(t, "v2", v, "no-cache loads")
	require.NoError(t, e.cache.Invalidate(ctx, k.Deps...))
	v, res, err = Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, res.Status)
	assert.Equal(t, "v3", v, "new generations load")
}

// A load that started before an Invalidate and stores after it must not be
// served afterwards.
func TestNoStaleRefill(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	e := newEnv(t, Config{StoreDelay: func(context.Context) {
		if first.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}})
	ctx := context.Background()
	k := orderKey("u1")
	var dbValue atomic.Value
	dbValue.Store("old")
	var calls atomic.Int64
	load := func(context.Context) (string, error) {
		calls.Add(1)
		return dbValue.Load().(string), nil
	}

	done := make(chan Result)
	go func() {
		v, res, err := Load(ctx, e.cache, k, load)
		assert.NoError(t, err)
		assert.Equal(t, "old", v)
		done <- res
	}()
	<-reached // the slow read has loaded "old" and not stored it yet
	dbValue.Store("new")
	require.NoError(t, e.cache.Invalidate(ctx, OrderDep("o1")))
	close(release)
	res := <-done
	require.True(t, res.Stored, "the slow read stored its value (under the old generation)")

	v, res, err := Load(ctx, e.cache, k, load)
	require.NoError(t, err)
	assert.Equal(t, "new", v)
	assert.Equal(t, StatusMiss, res.Status)
	assert.EqualValues(t, 2, calls.Load())

	v, res, err = Load(ctx, e.cache, k, load)
	require.NoError(t, err)
	assert.Equal(t, "new", v)
	assert.Equal(t, StatusHit, res.Status)
}

func TestJitterBounds(t *testing.T) {
	ttl := 60 * time.Second
	assert.Equal(t, 54*time.Second, jitter(ttl, 0.10, 0))
	assert.Equal(t, 60*time.Second, jitter(ttl, 0.10, 0.5))
	assert.Equal(t, 66*time.Second, jitter(ttl, 0.10, 1))
	assert.Equal(t, ttl, jitter(ttl, 0, 0.9))

	e := newEnv(t, Config{})
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 2000 {
		d := e.cache.ttl()
		require.GreaterOrEqual(t, d, 54*time.Second)
		require.LessOrEqual(t, d, 66*time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.Less(t, lo, 56*time.Second, "jitter spreads down")
	assert.Greater(t, hi, 64*time.Second, "jitter spreads up")

	// The stored entries carry jittered TTLs, within bounds.
	ctx := context.Background()
	for i := range 20 {
		k := orderKey("u" + string(rune('a'+i)))
		_, res, err := Load(ctx, e.cache, k, func(context.Context) (int, error) { return i, nil })
		require.NoError(t, err)
		require.GreaterOrEqual(t, res.TTL, 54*time.Second)
		require.LessOrEqual(t, res.TTL, 66*time.Second)
		_, hit, err := Load(ctx, e.cache, k, func(context.Context) (int, error) { return i, nil })
		require.NoError(t, err)
		require.Equal(t, StatusHit, hit.Status)
		assert.LessOrEqual(t, hit.TTL, res.TTL)
		assert.Greater(t, hit.TTL, res.TTL-5*time.Second)
	}
}

func TestConfiguredTTL(t *testing.T) {
	e := newEnv(t, Config{TTL: 10 * time.Second, Jitter: -1})
	_, res, err := Load(context.Background(), e.cache, orderKey("u1"), func(context.Context) (int, error) { return 1, nil })
	require.NoError(t, err)
	// counted from the start of the load: the store comes a moment later
	assert.LessOrEqual(t, res.TTL, 10*time.Second)
	assert.Greater(t, res.TTL, 9*time.Second)
}

func TestBypass(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	l := &counter[int64]{value: func(n int64) int64 { return n }}
	_, _, err := Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)

	v, res, err := Load(WithBypass(ctx), e.cache, k, l.load)
	require.NoError(t, err)
	assert.EqualValues(t, 2, v, "bypass skips the cached value")
	assert.Equal(t, StatusBypass, res.Status)
	assert.True(t, res.Stored)

	v, res, err = Load(ctx, e.cache, k, l.load)
	require.NoError(t, err)
	assert.EqualValues(t, 2, v, "bypass refreshed the cached value")
	assert.Equal(t, StatusHit, res.Status)
}

func TestLoadErrorIsNotCached(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	boom := errors.New("boom")
	_, res, err := Load(ctx, e.cache, orderKey("u1"), func(context.Context) (int, error) { return 0, boom })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, StatusMiss, res.Status)
	assert.False(t, res.Stored)
	v, res, err := Load(ctx, e.cache, orderKey("u1"), func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	assert.Equal(t, StatusMiss, res.Status)
}

// An entry that no longer decodes (e.g. written by another shape) is a miss.
func TestUndecodableEntryIsMiss(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	k := orderKey("u1")
	_, _, err := Load(ctx, e.cache, k, func(context.Context) (string, error) { return "text", nil })
	require.NoError(t, err)
	v, res, err := Load(ctx, e.cache, k, func(context.Context) (screen, error) { return screen{Total: 3}, nil })
	require.NoError(t, err)
	assert.Equal(t, StatusMiss, res.Status)
	assert.Equal(t, 3, v.Total)
}

type recordingMetrics struct {
	mu  sync.Mutex
	got map[string]int
}

func (m *recordingMetrics) Observe(screen string, s Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got[screen+"/"+string(s)]++
}

func TestMetrics(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	reg := prometheus.NewRegistry()
	prom := NewPrometheusMetrics(reg)
	require.Same(t, prom.requests, NewPrometheusMetrics(reg).requests, "registering twice reuses the counter")
	rec := &recordingMetrics{got: map[string]int{}}
	c, err := New(rdb, Config{Prefix: prefix}, multiMetrics{prom, rec})
	require.NoError(t, err)

	ctx := context.Background()
	k := orderKey("u1")
	one := func(context.Context) (int, error) { return 1, nil }
	for _, cx := range []context.Context{ctx, ctx, ctx, WithBypass(ctx)} {
		_, _, err := Load(cx, c, k, one)
		require.NoError(t, err)
	}
	// Redis unavailable: a cache on a closed client.
	dead := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, ContextTimeoutEnabled: true})
	require.NoError(t, dead.Close())
	cd, err := New(dead, Config{Prefix: prefix}, multiMetrics{prom, rec})
	require.NoError(t, err)
	v, res, err := Load(ctx, cd, k, one)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	assert.Equal(t, StatusError, res.Status)

	assert.Equal(t, map[string]int{"orderScreen/miss": 1, "orderScreen/hit": 2, "orderScreen/bypass": 1, "orderScreen/error": 1}, rec.got)
	for status, n := range map[string]float64{"hit": 2, "miss": 1, "bypass": 1, "error": 1} {
		assert.Equal(t, n, counterValue(t, reg, "orderScreen", status), status)
	}
}

type multiMetrics []Metrics

func (mm multiMetrics) Observe(screen string, s Status) {
	for _, m := range mm {
		m.Observe(screen, s)
	}
}

func TestCacheStatusHeader(t *testing.T) {
	cases := []struct {
		r    Result
		want string
	}{
		{Result{Status: StatusHit, TTL: 42900 * time.Millisecond}, "bff; hit; ttl=42"},
		{Result{Status: StatusMiss, TTL: time.Minute, Stored: true}, "bff; fwd=miss; stored"},
		{Result{Status: StatusMiss}, "bff; fwd=miss"},
		{Result{Status: StatusBypass, TTL: time.Minute, Stored: true}, "bff; fwd=request; stored"},
		{Result{Status: StatusError}, "bff; fwd=miss; detail=error"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.r.CacheStatusHeader())
	}
}

// A report renders its screens as the Cache-Status members in the order
// served and as the cache extension, the same JSON as encoding/json writes
// for the map of each response key to its status and ttl.
func TestReportRender(t *testing.T) {
	ctx, r := WithReport(context.Background())
	hdr, ext := r.Render()
	assert.Empty(t, hdr)
	assert.Nil(t, ext)

	Record(ctx, "orders", Result{Status: StatusMiss, TTL: time.Minute, Stored: true})
	Record(ctx, "home", Result{Status: StatusHit, TTL: 42900 * time.Millisecond})
	Record(ctx, "a<b", Result{Status: StatusBypass, TTL: time.Minute, Stored: true})
	Record(ctx, "none", Result{}) // served without the cache: not reported
	Record(ctx, "home", Result{Status: StatusHit, TTL: 41 * time.Second})
	hdr, ext = r.Render()
	assert.Equal(t, "bff; fwd=miss; stored, bff; hit; ttl=41, bff; fwd=request; stored", hdr)
	want, err := json.Marshal(map[string]any{
		"orders": map[string]any{"status": "miss", "ttl": 60},
		"home":   map[string]any{"status": "hit", "ttl": 41},
		"a<b":    map[string]any{"status": "bypass", "ttl": 60},
	})
	require.NoError(t, err)
	assert.Equal(t, string(want), string(ext))
	assert.Equal(t, "miss,hit,bypass", r.Summary())
}

func TestBypassRequested(t *testing.T) {
	cases := map[string]struct {
		h    http.Header
		want bool
	}{
		"none":          {http.Header{}, false},
		"no-cache":      {http.Header{"Cache-Control": {"no-cache"}}, true},
		"list":          {http.Header{"Cache-Control": {"max-age=0, No-Cache"}}, true},
		"no-store only": {http.Header{"Cache-Control": {"no-store"}}, false},
		"pragma":        {http.Header{"Pragma": {"no-cache"}}, true},
		"cc wins":       {http.Header{"Cache-Control": {"max-age=10"}, "Pragma": {"no-cache"}}, false},
	}
	for name, tc := range cases {
		assert.Equal(t, tc.want, BypassRequested(tc.h), name)
	}
}

func TestNewValidates(t *testing.T) {
	rdb := testenv.Connect(t, testenv.RedisURL())
	_, err := New(redis.NewClient(&redis.Options{Addr: rdb.Options().Addr}), Config{}, nil)
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
	_, err = New(rdb, Config{TTL: time.Hour, GenTTL: 2 * time.Hour}, nil)
	assert.ErrorContains(t, err, "GenTTL")
	_, err = New(rdb, Config{Jitter: 1.5}, nil)
	assert.ErrorContains(t, err, "Jitter")
	_, err = New(nil, Config{}, nil)
	assert.Error(t, err)
}

// counterValue reads bff_cache_requests_total{screen,status} from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, screen, status string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "bff_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["screen"] == screen && labels["status"] == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// The default breaker opens for a Redis that fails every call, not for
// one whose calls fail now and then under load.
func TestDefaultBreakerTrips(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	trip := cfg.Breaker.ReadyToTrip
	require.True(t, trip(gobreaker.Counts{Requests: 20, TotalFailures: 20, ConsecutiveFailures: 20}), "down")
	require.True(t, trip(gobreaker.Counts{Requests: 40, TotalFailures: 20, ConsecutiveFailures: 3}), "half failing")
	require.False(t, trip(gobreaker.Counts{Requests: 100, TotalFailures: 10, ConsecutiveFailures: 5}), "a few slow calls")
	require.False(t, trip(gobreaker.Counts{Requests: 6, TotalFailures: 6, ConsecutiveFailures: 6}), "too few calls to judge")
	require.Equal(t, 10*time.Second, cfg.Breaker.Interval)
}
