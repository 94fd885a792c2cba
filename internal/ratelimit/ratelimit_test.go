package ratelimit_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/auth"
	"github.com/shop/bff/internal/config"
	"github.com/shop/bff/internal/httpx"
	"github.com/shop/bff/internal/order"
	"github.com/shop/bff/internal/ratelimit"
	"github.com/shop/bff/internal/testenv"
)

// fakeClock is a settable clock for the local limiter and the cool-down.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// call runs one request through l and returns whether it was allowed and
// the response.
func call(t *testing.T, l *ratelimit.Limiter, r *http.Request, mutation bool) (bool, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	ok := l.Allow(rec, r, mutation)
	if ok {
		assert.Equal(t, 200, rec.Code, "an allowed request writes nothing")
		assert.Empty(t, rec.Body.String())
	} else {
		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	}
	return ok, rec
}

func anonymous(ip string) *http.Request {
	r := httptest.NewRequest("POST", "/graphql", nil)
	r.RemoteAddr = ip + ":40000"
	return r
}

func user(id string) *http.Request {
	r := anonymous("192.0.2.200")
	return r.WithContext(auth.WithUser(r.Context(), &order.User{ID: id, Role: order.RoleCustomer}))
}

func header(t *testing.T, rec *httptest.ResponseRecorder, name string) int {
	t.Helper()
	v := rec.Header().Get(name)
	require.NotEmpty(t, v, "header %s", name)
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "header %s=%q", name, v)
	return n
}

// checkRejected asserts the 429 contract: headers and the error body.
func checkRejected(t *testing.T, rec *httptest.ResponseRecorder, burst int) {
	t.Helper()
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, burst, header(t, rec, ratelimit.HeaderLimit))
	assert.Equal(t, 0, header(t, rec, ratelimit.HeaderRemaining))
	assert.GreaterOrEqual(t, header(t, rec, ratelimit.HeaderReset), 1)
	retry := header(t, rec, ratelimit.HeaderRetryAfter)
	assert.GreaterOrEqual(t, retry, 1)
	var body httpx.ErrorBody
	require.NoError(t, json.NewDecoder(rec.Body).Decode(&body))
	require.Len(t, body.Errors, 1)
	ext := body.Errors[0].Extensions
	assert.Equal(t, "RATE_LIMITED", ext["code"])
	assert.Equal(t, true, ext["retryable"])
	assert.EqualValues(t, retry, ext["retryAfterSeconds"], "mirrors Retry-After")
	assert.EqualValues(t, burst, ext["limit"])
	assert.EqualValues(t, 0, ext["remaining"])
	assert.Contains(t, ext, "requestId")
}

// exhaust sends requests until the first refusal (at most burst+extra) and
// returns how many were allowed and the refused response.
func exhaust(t *testing.T, l *ratelimit.Limiter, r func() *http.Request, mutation bool, max int) (int, *httptest.ResponseRecorder) {
	t.Helper()
	for i := range max {
		ok, rec := call(t, l, r(), mutation)
		if !ok {
			return i, rec
		}
	}
	t.Fatalf("no request of %d was refused", max)
	return 0, nil
}

// healthyRedisTimeout is the Redis budget of the tests of the shared
// limits: a call that times out on a busy machine would hand the decision
// to the local limiter, which is the subject of the fault tests only.
const healthyRedisTimeout = 10 * time.Second

func TestBurstThenRecover(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	const burst = 5
	cfg := ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: burst, MutationsPerSecond: 1, MutationsBurst: 2, KeyPrefix: prefix,
		RedisTimeout: healthyRedisTimeout}
	l := ratelimit.New(rdb, cfg)
	req := func() *http.Request { return anonymous("192.0.2.1") }

	// The burst passes, with RateLimit headers counting down.
	last := burst
	for i := range burst {
		ok, rec := call(t, l, req(), false)
		require.True(t, ok, "request %d of the burst", i+1)
		assert.Equal(t, burst, header(t, rec, ratelimit.HeaderLimit))
		rem := header(t, rec, ratelimit.HeaderRemaining)
		assert.Less(t, rem, last, "remaining goes down")
		last = rem
		assert.Empty(t, rec.Header().Get(ratelimit.HeaderRetryAfter))
	}
	// One token a second comes back, so a few more requests see a refusal.
	allowed, rec := exhaust(t, l, req, false, 5)
	assert.LessOrEqual(t, allowed, 1)
	checkRejected(t, rec, burst)

	// Other budgets are untouched: mutations of this client, queries of
	// another client, and of a signed-in user (even from the same address).
	ok, _ := call(t, l, req(), true)
	assert.True(t, ok, "mutations have their own budget")
	ok, _ = call(t, l, anonymous("192.0.2.2"), false)
	assert.True(t, ok, "another address has its own budget")
	ok, _ = call(t, l, user("u-1"), false)
	assert.True(t, ok, "a user has their own budget")

	// The client is served again once its budget refilled (Redis's clock:
	// the test waits for the event, a request that passes, not for a time).
	retry := time.Duration(header(t, rec, ratelimit.HeaderRetryAfter)) * time.Second
	require.Positive(t, retry)
	deadline := time.Now().Add(retry + 10*time.Second)
	for ok = false; !ok && time.Now().Before(deadline); {
		if ok, _ = call(t, l, req(), false); !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	assert.True(t, ok, "allowed again after Retry-After (%s)", retry)

	// Decisions were Redis's.
	reg := prometheus.NewPedanticRegistry()
	for _, c := range l.Collectors() {
		require.NoError(t, reg.Register(c))
	}
	assert.True(t, l.RedisHealthy())
	families, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, lp := range m.GetLabel() {
				name += "," + lp.GetValue()
			}
			values[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	assert.Equal(t, 1.0, values["bff_ratelimit_redis_healthy"])
	assert.GreaterOrEqual(t, values["bff_ratelimit_requests_total,query,allowed,redis"], float64(burst+3))
	assert.GreaterOrEqual(t, values["bff_ratelimit_requests_total,query,limited,redis"], 1.0)
	assert.Zero(t, values["bff_ratelimit_requests_total,query,allowed,local"])
}

func TestMutationBudgetAndUsers(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	cfg := ratelimit.DefaultConfig()
	cfg.MutationsPerSecond, cfg.MutationsBurst = 1, 3
	cfg.KeyPrefix = prefix
	l := ratelimit.New(rdb, cfg)
	alice := func() *http.Request { return user("alice") }

	allowed, rec := exhaust(t, l, alice, true, 8)
	assert.GreaterOrEqual(t, allowed, 3)
	assert.LessOrEqual(t, allowed, 4)
	checkRejected(t, rec, 3)

	ok, _ := call(t, l, user("bob"), true)
	assert.True(t, ok, "bob is not limited by alice")
	ok, rec = call(t, l, alice(), false)
	assert.True(t, ok, "alice's queries have their own budget")
	assert.Equal(t, config.DefaultRateQueriesBurst, header(t, rec, ratelimit.HeaderLimit))
}

func TestLimitOff(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	l := ratelimit.New(rdb, ratelimit.Config{MutationsPerSecond: 1, MutationsBurst: 1, KeyPrefix: prefix, RedisTimeout: healthyRedisTimeout})
	for range 50 {
		ok, rec := call(t, l, anonymous("192.0.2.3"), false)
		require.True(t, ok, "QueriesPerSecond 0 turns the query limit off")
		assert.Empty(t, rec.Header().Get(ratelimit.HeaderLimit))
	}
	ok, _ := call(t, l, anonymous("192.0.2.3"), true)
	assert.True(t, ok)
	ok, _ = call(t, l, anonymous("192.0.2.3"), true)
	assert.False(t, ok, "the mutation limit still applies")
}

func TestInstancesShareBudget(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	other := testenv.Connect(t, testenv.RedisURL()) // a second client, as another instance has
	cfg := ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: 6, KeyPrefix: prefix, RedisTimeout: healthyRedisTimeout}
	a, b := ratelimit.New(rdb, cfg), ratelimit.New(other, cfg)
	req := func() *http.Request { return user("shared") }

	allowed := 0
	var refused *httptest.ResponseRecorder
	for i := 0; i < 12 && refused == nil; i++ {
		l := a
		if i%2 == 1 {
			l = b
		}
		ok, rec := call(t, l, req(), false)
		if ok {
			allowed++
		} else {
			refused = rec
		}
	}
	require.NotNil(t, refused, "the two instances together hit the limit")
	assert.GreaterOrEqual(t, allowed, 6)
	assert.LessOrEqual(t, allowed, 7, "one budget, not one per instance")
	checkRejected(t, refused, 6)
	ok, _ := call(t, a, req(), false)
	assert.False(t, ok, "the other instance sees the spent budget too")
}

func TestRedisDownFallsBackToLocal(t *testing.T) {
	p := testenv.StartRedis(t)
	rdb := testenv.Connect(t, p.URL())
	clock := newClock()
	const burst = 4
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: burst,
		MutationsPerSecond: 1, MutationsBurst: 2, KeyPrefix: "rl:", Cooldown: time.Second, Now: clock.Now})
	req := func() *http.Request { return anonymous("192.0.2.9") }

	ok, _ := call(t, l, req(), false)
	require.True(t, ok)
	assert.True(t, l.RedisHealthy())

	p.Kill()
	// The local limiter takes over: the burst passes, the excess is refused.
	allowed := 0
	var refused *httptest.ResponseRecorder
	for range 3 * burst {
		ok, rec := call(t, l, req(), false)
		if ok {
			allowed++
		} else if refused == nil {
			refused = rec
		}
	}
	assert.False(t, l.RedisHealthy(), "limits are local now")
	assert.Equal(t, burst, allowed, "local limit: the burst and no more (the clock stands still)")
	require.NotNil(t, refused, "never unlimited")
	checkRejected(t, refused, burst)
	ok, _ = call(t, l, req(), true)
	assert.True(t, ok, "never reject-all: the mutation budget is separate")
	ok, _ = call(t, l, anonymous("192.0.2.10"), false)
	assert.True(t, ok, "never reject-all: another client is served")

	// Time refills the local budget.
	clock.Advance(time.Second)
	ok, _ = call(t, l, req(), false)
	assert.True(t, ok, "a token came back after a second")

	// Redis comes back: after the cool-down a probe finds it and the
	// limits are shared again.
	p.Start()
	require.Eventually(t, func() bool {
		clock.Advance(2 * time.Second) // past the cool-down: the next request probes
		call(t, l, anonymous("192.0.2.11"), false)
		return l.RedisHealthy()
	}, 10*time.Second, 50*time.Millisecond, "Redis is used again")
}

// TestSlowRedis points the limiter at a server that accepts connections and
// never answers: every call would hang, and the per-call timeout and the
// cool-down keep the limits local and working.
func TestSlowRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })

	clock := newClock()
	l := ratelimit.New(rdb, ratelimit.Config{QueriesPerSecond: 1, QueriesBurst: 3,
		RedisTimeout: 20 * time.Millisecond, Now: clock.Now})
	results := make([]bool, 6)
	for i := range results {
		results[i], _ = call(t, l, anonymous("192.0.2.20"), false)
	}
	assert.Equal(t, []bool{true, true, true, false, false, false}, results)
}

func TestRemoteIP(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"not-an-address", "not-an-address"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		assert.Equal(t, tt.want, ratelimit.RemoteIP(r), tt.remote)
	}
}
