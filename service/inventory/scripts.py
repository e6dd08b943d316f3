"""The inventory's Lua scripts: each change of a SKU is one atomic script.

Every script that changes a count also bumps the SKU's version and PUBLISHes the new
snapshot in the same atomic step, so "count changed" and "notification sent" can never
disagree. Time comes from the Redis clock (TIME), so instances with skewed clocks agree
on when a hold expires. Each script touches one SKU's keys only (one hash tag).
"""

# KEYS: 1 stock, 2 holds, 3 version, 4 epoch, 5 changed-at (redis_keys.sku_keys).
# ARGV[1] channel, ARGV[2] sku. A change's time is the Redis clock's, in ms since the
# epoch, kept beside the version so every snapshot can say when its change happened.
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
  redis.call('PUBLISH', ARGV[1], string.format(
    '{"sku":"%s","inventoryCount":%d,"version":%d,"epoch":"%s","changedAt":%d}',
    ARGV[2], count, ver, epoch, at))
  return ver
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

# ARGV[3] session id, ARGV[4] hold ttl ms
ADD = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local now = now_ms()
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local count = current_count(stock)
local expires_at = now + tonumber(ARGV[4])
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  -- a repeated add only extends the hold
  redis.call('ZADD', KEYS[2], 'XX', expires_at, ARGV[3])
  if expired > 0 then changed(count) end
  return reply('ok', count, 1, expires_at)
end
if count <= 0 then
  if expired > 0 then changed(count) end
  return reply('sold_out', count, 0)
end
redis.call('ZADD', KEYS[2], expires_at, ARGV[3])
changed(count - 1)
return reply('ok', count - 1, 1, expires_at)
"""

# ARGV[3] session id
REMOVE = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
local removed = redis.call('ZREM', KEYS[2], ARGV[3])
local count = current_count(stock)
if removed + expired > 0 then changed(count) end
return reply('ok', count, 0)
"""

# ARGV[3] new total stock
SET_STOCK = PRELUDE + r"""
if not redis.call('GET', KEYS[1]) then return {'unknown'} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
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
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], stock)
changed(tonumber(stock))
local answer = reply('ok', tonumber(stock), 0)
answer[9] = released
return answer
"""

# Idempotent: every instance runs it; only the first to see an expired hold publishes.
# {holds expired, the next expiry or false}
SWEEP = PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {0, false} end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
if expired > 0 then changed(current_count(stock)) end
return {expired, next_expiry()}
"""

# ARGV[3] initial stock, ARGV[4] a fresh epoch id. Never overwrites an existing SKU.
SEED = PRELUDE + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
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
