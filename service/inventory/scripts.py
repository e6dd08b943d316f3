"""The inventory's Lua scripts: each change of a SKU is one atomic script.

Every script that changes a count also bumps the SKU's version and publishes the new
snapshot (SPUBLISH on the book's shard channel) in the same atomic step, so "count
changed" and "notification sent" can never disagree. Time comes from the Redis clock
(TIME), so instances with skewed clocks agree on when a hold expires. Each script
touches one SKU's keys and channel only (one hash tag); the per-address count of holds
lives under the address's own tag (address_holds.py).
"""

# KEYS: 1 stock, 2 holds, 3 version, 4 epoch, 5 changed-at, 6 holders (redis_keys.sku_keys).
# ARGV[1] the book's changes channel (same hash tag), ARGV[2] sku. A change's time is the
# Redis clock's, in ms since the epoch, kept beside the version so every snapshot can say
# when its change happened.
PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function current_count(stock)
  return tonumber(stock) - redis.call('ZCARD', KEYS[2])
end
-- bumps the version, stamps the time and publishes the snapshot; returns the new version
local function changed(count)
  local ver = redis.call('INCR', KEYS[3])
  local at = now_ms()
  redis.call('SET', KEYS[5], at)
  local epoch = redis.call('GET', KEYS[4])
  redis.call('SPUBLISH', ARGV[1], string.format(
    '{"sku":"%s","inventoryCount":%d,"version":%d,"epoch":"%s","changedAt":%d}',
    ARGV[2], count, ver, epoch, at))
  return ver
end
-- drops the holds that expired by `now`, and their holders; returns how many
local function drop_expired(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for i = 1, #gone, 1000 do  -- unpack() has a limit on how many values it returns
    redis.call('HDEL', KEYS[6], unpack(gone, i, math.min(i + 999, #gone)))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
  return #gone
end
-- the earliest hold's expiry (ms), or false when nobody holds a copy
local function next_expiry()
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return false
end
-- {status, count, version, epoch, in cart, changed at, now, the session's hold expiry}
local function reply(status, count, in_cart, expires_at)
  return {status, count, tonumber(redis.call('GET', KEYS[3]) or '0'),
          redis.call('GET', KEYS[4]), in_cart, tonumber(redis.call('GET', KEYS[5]) or '0'),
          now_ms(), expires_at or 0}
end
"""

# ARGV[3] session id, ARGV[4] hold ttl ms, ARGV[5] the longest a hold may last in all
# (ms since its first add), ARGV[6] the client's address. The holder of a hold is
# "<first add ms> <address>", so that a re-add extends it only up to ARGV[5] after the
# first add, and a remove or re-add from anywhere knows whose address it counts against.
# {...reply, the holder's address}
ADD = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local now = now_ms()
local expired = drop_expired(now)
local count = current_count(stock)
local ttl, longest = tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('ZSCORE', KEYS[2], ARGV[3])
if held then
  -- a repeated add only extends the hold, never past the longest a hold may last
  local holder = redis.call('HGET', KEYS[6], ARGV[3]) or ''
  local first = tonumber(string.match(holder, '^(%d+) ')) or now
  local expires_at = math.max(tonumber(held), math.min(now + ttl, first + longest))
  redis.call('ZADD', KEYS[2], 'XX', expires_at, ARGV[3])
  if expired > 0 then changed(count) end
  local answer = reply('ok', count, 1, expires_at)
  answer[9] = string.match(holder, '^%d+ (.*)$') or ''
  return answer
end
if count <= 0 then
  if expired > 0 then changed(count) end
  return reply('sold_out', count, 0)
end
local expires_at = now + math.min(ttl, longest)
redis.call('ZADD', KEYS[2], expires_at, ARGV[3])
redis.call('HSET', KEYS[6], ARGV[3], now .. ' ' .. ARGV[6])
changed(count - 1)
local answer = reply('ok', count - 1, 1, expires_at)
answer[9] = ARGV[6]
return answer
"""

# ARGV[3] session id. {...reply, the released hold's holder address, or ''}
REMOVE = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local expired = drop_expired(now_ms())
local holder = redis.call('HGET', KEYS[6], ARGV[3]) or ''
local removed = redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[6], ARGV[3])
local count = current_count(stock)
if removed + expired > 0 then changed(count) end
local answer = reply('ok', count, 0)
answer[9] = removed > 0 and (string.match(holder, '^%d+ (.*)$') or '') or ''
return answer
"""

# ARGV[3] new total stock
SET_STOCK = PRELUDE + r"""
if not redis.call('GET', KEYS[1]) then return {'unknown'} end
drop_expired(now_ms())
local held = redis.call('ZCARD', KEYS[2])
local stock = tonumber(ARGV[3])
if stock < held then return {'below_holds', held} end
redis.call('SET', KEYS[1], stock)
changed(stock - held)
return reply('ok', stock - held, 0)
"""

# ARGV[3] new total stock, or -1 to keep it. Releases every hold of the book:
# {...reply, holds released}.
RESET = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
if tonumber(ARGV[3]) >= 0 then stock = ARGV[3] end
local released = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[6])
redis.call('SET', KEYS[1], stock)
changed(tonumber(stock))
local answer = reply('ok', tonumber(stock), 0)
answer[9] = released
return answer
"""

# Idempotent: every instance runs it; only the first to see an expired hold publishes.
# {holds expired, the next expiry or false, the Redis clock's ms}
SWEEP = PRELUDE + r"""
local now = now_ms()
local stock = redis.call('GET', KEYS[1])
if not stock then return {0, false, now} end
local expired = drop_expired(now)
if expired > 0 then changed(current_count(stock)) end
return {expired, next_expiry(), now}
"""

# ARGV[3] initial stock, ARGV[4] a fresh epoch id. Never overwrites an existing SKU.
SEED = PRELUDE + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2], KEYS[6])
redis.call('SET', KEYS[3], 0)
redis.call('SET', KEYS[4], ARGV[4])
changed(tonumber(ARGV[3]))
return 1
"""

# {count, version, epoch, stock, holds, changed at}
READ = r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {} end
return {tonumber(stock) - redis.call('ZCARD', KEYS[2]),
        tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('GET', KEYS[4]) or '',
        tonumber(stock), redis.call('ZCARD', KEYS[2]), tonumber(redis.call('GET', KEYS[5]) or '0')}
"""
