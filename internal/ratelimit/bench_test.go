package ratelimit_test

import (
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/shop/bff/internal/ratelimit"
	"github.com/shop/bff/internal/testenv"
)

// BenchmarkAllow measures one check through the shared Redis and through
// the local limiter (no Redis). Budgets are large so every check passes.
func BenchmarkAllow(b *testing.B) {
	cfg := ratelimit.Config{QueriesPerSecond: 1 << 30, QueriesBurst: 1 << 30}
	b.Run("redis", func(b *testing.B) {
		rdb, prefix := testenv.Redis(b)
		c := cfg
		c.KeyPrefix = prefix
		l := ratelimit.New(rdb, c)
		benchAllow(b, l)
	})
	b.Run("local", func(b *testing.B) {
		benchAllow(b, ratelimit.New(nil, cfg))
	})
}

func benchAllow(b *testing.B, l *ratelimit.Limiter) {
	i := 0
	for b.Loop() {
		r := anonymous("192.0.2." + strconv.Itoa(i%200))
		i++
		if !l.Allow(httptest.NewRecorder(), r, false) {
			b.Fatal("refused")
		}
	}
}
