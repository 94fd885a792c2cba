package ratelimit

import (
	"fmt"
	"strconv"
	"time"
)

// Environment variables read by [ConfigFromEnv].
const (
	EnvQueriesPerSecond   = "RATE_LIMIT_QUERIES_PER_SECOND"
	EnvQueriesBurst       = "RATE_LIMIT_QUERIES_BURST"
	EnvMutationsPerSecond = "RATE_LIMIT_MUTATIONS_PER_SECOND"
	EnvMutationsBurst     = "RATE_LIMIT_MUTATIONS_BURST"
	EnvRedisTimeout       = "RATE_LIMIT_REDIS_TIMEOUT"
)

// ConfigFromEnv returns [DefaultConfig] with the values set in the
// environment, read through lookup (os.LookupEnv): the four
// RATE_LIMIT_{QUERIES,MUTATIONS}_{PER_SECOND,BURST} integers (>= 0; 0 turns
// a limit off) and RATE_LIMIT_REDIS_TIMEOUT (a Go duration such as 50ms).
// An invalid value is an error naming the variable.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	cfg := DefaultConfig()
	ints := []struct {
		name string
		dst  *int
	}{
		{EnvQueriesPerSecond, &cfg.QueriesPerSecond},
		{EnvQueriesBurst, &cfg.QueriesBurst},
		{EnvMutationsPerSecond, &cfg.MutationsPerSecond},
		{EnvMutationsBurst, &cfg.MutationsBurst},
	}
	for _, v := range ints {
		s, ok := lookup(v.name)
		if !ok || s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("%s: want a whole number >= 0, got %q", v.name, s)
		}
		*v.dst = n
	}
	if s, ok := lookup(EnvRedisTimeout); ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("%s: want a positive duration such as 50ms, got %q", EnvRedisTimeout, s)
		}
		cfg.RedisTimeout = d
	}
	return cfg, nil
}
