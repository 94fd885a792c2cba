package cache

import "github.com/redis/go-redis/v9"

// readScript reads the epoch and the dependency generations and, when asked,
// the entry stored under them.
//
// The epoch and the generations are tokens that never repeat: a missing one
// (never set, expired, evicted, or lost with Redis's data) is created here
// from a fresh random token, so an entry stored under values read before
// the loss can never become current again.
//
// KEYS: epoch, generation keys..., entry key without generations (the entry
// key read is KEYS[n]..":"..gens; it shares the hash tag, hence the slot).
// ARGV[1]: "t" to read the entry, "p" to read only its first 8 bytes (the
// position its value reflects).
// ARGV[2]: "t" to replace the epoch first (an invalidation may have been
// lost).
// ARGV[3]: a fresh random token, for the epoch or a generation that is
// missing or replaced.
// ARGV[4]: TTL of a generation in milliseconds.
// Reply: {gens} on a miss, {gens, value (or its position), pttl} on a hit.
var readScript = redis.NewScript(`
if ARGV[2] == 't' then redis.call('SET', KEYS[1], ARGV[3]) end
local n = #KEYS
local gens = redis.call('MGET', unpack(KEYS, 1, n - 1))
for i = 1, n - 1 do
  if not gens[i] then
    gens[i] = ARGV[3]
    if i == 1 then
      redis.call('SET', KEYS[i], ARGV[3])
    else
      redis.call('SET', KEYS[i], ARGV[3], 'PX', ARGV[4])
    end
  end
end
local g = table.concat(gens, '.')
local k = KEYS[n] .. ':' .. g
if ARGV[1] == 't' then
  local v = redis.call('GET', k)
  if v then return {g, v, redis.call('PTTL', k)} end
else
  local v = redis.call('GETRANGE', k, 0, 7)
  if v ~= '' then return {g, v, redis.call('PTTL', k)} end
end
return {g}
`)

// invalidateScript gives dependencies (and, when asked, the epoch) a new
// token.
//
// KEYS: epoch, generation keys...
// ARGV[1]: TTL of a generation in milliseconds.
// ARGV[2]: "t" to replace the epoch too.
// ARGV[3]: a fresh random token.
var invalidateScript = redis.NewScript(`
if ARGV[2] == 't' then redis.call('SET', KEYS[1], ARGV[3]) end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[3], 'PX', ARGV[1])
end
return 1
`)
