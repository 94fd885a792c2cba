package cache

import "github.com/redis/go-redis/v9"

// readScript reads the epoch and the dependency generations and, when asked,
// the entry stored under them.
//
// KEYS: epoch, generation keys..., entry key without generations (the entry
// key read is KEYS[n]..":"..gens; it shares the hash tag, hence the slot).
// ARGV[1]: "t" to read the entry, "f" to read the generations only.
// ARGV[2]: "t" to bump the epoch first (an invalidation may have been lost).
// Reply: {gens} on a miss, {gens, value, pttl} on a hit.
var readScript = redis.NewScript(`
if ARGV[2] == 't' then redis.call('INCR', KEYS[1]) end
local n = #KEYS
local gens = redis.call('MGET', unpack(KEYS, 1, n - 1))
for i = 1, n - 1 do gens[i] = gens[i] or '0' end
local g = table.concat(gens, '.')
if ARGV[1] == 't' then
  local k = KEYS[n] .. ':' .. g
  local v = redis.call('GET', k)
  if v then return {g, v, redis.call('PTTL', k)} end
end
return {g}
`)

// invalidateScript bumps dependency generations.
//
// KEYS: epoch, generation keys...
// ARGV[1]: TTL of a generation counter in milliseconds.
// ARGV[2]: "t" to bump the epoch too.
var invalidateScript = redis.NewScript(`
if ARGV[2] == 't' then redis.call('INCR', KEYS[1]) end
for i = 2, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 1
`)
