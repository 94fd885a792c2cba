package cache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shop/bff/internal/testenv"
)

// env is one test's cache on the shared Redis.
type env struct {
	rdb    *redis.Client
	cache  *Cache
	prefix string
}

// newEnv returns a Cache with a unique prefix on the shared Redis; its keys
// are deleted when the test ends.
func newEnv(tb testing.TB, cfg Config) env {
	tb.Helper()
	rdb, prefix := testenv.Redis(tb)
	cfg.Prefix = prefix
	if cfg.Timeout == 0 {
		// Tests of the cache's logic must not see a Redis call time out
		// because the machine is busy: that is the fault tests' subject.
		cfg.Timeout = 10 * time.Second
	}
	c, err := New(rdb, cfg, nil)
	require.NoError(tb, err)
	return env{rdb: rdb, cache: c, prefix: cfg.Prefix}
}

// counter is a loader that counts its calls and returns value().
type counter[T any] struct {
	calls atomic.Int64
	value func(n int64) T
}

func (l *counter[T]) load(ctx context.Context) (T, error) {
	n := l.calls.Add(1)
	return l.value(n), nil
}
