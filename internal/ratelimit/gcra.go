package ratelimit

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisKeyPrefix starts every Redis key of a budget, before
// Config.KeyPrefix: the prefix redis_rate puts there, so the keys (and the
// budgets spent) are the same as when redis_rate ran the script.
const redisKeyPrefix = "rate:"

// gcra is the GCRA step of github.com/go-redis/redis_rate v10 (its
// allowN script, copied byte for byte so that its SHA1 is the same; see
// TestScriptIsRedisRates): KEYS[1] the budget's key, ARGV burst, rate,
// period in seconds and cost; the reply is {allowed, remaining,
// retry_after, reset_after}, the two durations as strings of seconds.
// The limiter runs it itself, alone or in the pipeline of another
// component's round trip ([Charge]), where redis_rate's Limiter cannot go.
//
// Copyright (c) 2017 Pavel Pravosud,
// https://github.com/rwz/redis-gcra/blob/master/vendor/perform_gcra_ratelimit.lua;
// redis_rate: Copyright (c) 2013 The github.com/go-redis/redis_rate
// Authors, BSD-2-Clause.
var gcra = redis.NewScript(`
-- this script has side-effects, so it requires replicate commands mode
redis.replicate_commands()

local rate_limit_key = KEYS[1]
local burst = ARGV[1]
local rate = ARGV[2]
local period = ARGV[3]
local cost = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst

-- redis returns time as an array containing two integers: seconds of the epoch
-- time (10 digits) and microseconds (6 digits). for convenience we need to
-- convert them to a floating point number. the resulting number is 16 digits,
-- bordering on the limits of a 64-bit double-precision floating point number.
-- adjust the epoch to be relative to Jan 1, 2017 00:00:00 GMT to avoid floating
-- point problems. this approach is good until "now" is 2,483,228,799 (Wed, 09
-- Sep 2048 01:46:39 GMT), when the adjusted value is 16 digits.
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", rate_limit_key)

if not tat then
  tat = now
else
  tat = tonumber(tat)
end

tat = math.max(tat, now)

local new_tat = tat + increment
local allow_at = new_tat - burst_offset

local diff = now - allow_at
local remaining = diff / emission_interval

if remaining < 0 then
  local reset_after = tat - now
  local retry_after = diff * -1
  return {
    0, -- allowed
    0, -- remaining
    tostring(retry_after),
    tostring(reset_after),
  }
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
local retry_after = -1
return {cost, remaining, tostring(retry_after), tostring(reset_after)}
`)

// gcraLimit is a budget's rate: rate units per period, burst at once
// (redis_rate's Limit).
type gcraLimit struct {
	rate   int
	burst  int
	period time.Duration
	// fixed are the step's first arguments (burst, rate, period in
	// seconds), boxed once.
	fixed [3]any
}

func newGCRALimit(rate, burst int, period time.Duration) gcraLimit {
	return gcraLimit{rate: rate, burst: burst, period: period, fixed: [3]any{burst, rate, period.Seconds()}}
}

// args are the arguments of one step charging n units.
func (l gcraLimit) args(n int) []any {
	return []any{l.fixed[0], l.fixed[1], l.fixed[2], n}
}

// gcraResult is the answer of one step.
type gcraResult struct {
	allowed    int
	remaining  int
	retryAfter time.Duration // -1 when allowed
	resetAfter time.Duration
}

// parseGCRA reads the reply of a step (as redis_rate's AllowN does).
func parseGCRA(cmd *redis.Cmd) (gcraResult, error) {
	v, err := cmd.Slice()
	if err != nil {
		return gcraResult{}, err
	}
	if len(v) != 4 {
		return gcraResult{}, fmt.Errorf("ratelimit: unexpected script reply of %d values", len(v))
	}
	allowed, ok1 := v[0].(int64)
	remaining, ok2 := v[1].(int64)
	retry, ok3 := v[2].(string)
	reset, ok4 := v[3].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return gcraResult{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
	}
	retryAfter, err := strconv.ParseFloat(retry, 64)
	if err != nil {
		return gcraResult{}, err
	}
	resetAfter, err := strconv.ParseFloat(reset, 64)
	if err != nil {
		return gcraResult{}, err
	}
	return gcraResult{allowed: int(allowed), remaining: int(remaining),
		retryAfter: gcraDuration(retryAfter), resetAfter: gcraDuration(resetAfter)}, nil
}

// gcraDuration converts seconds, keeping -1 ("none") as -1.
func gcraDuration(s float64) time.Duration {
	if s == -1 {
		return -1
	}
	return time.Duration(s * float64(time.Second))
}
