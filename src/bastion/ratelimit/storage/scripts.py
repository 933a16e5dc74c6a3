# SPDX-License-Identifier: Apache-2.0
"""The Lua scripts of the Redis storage: each decision is one of these, run by EVALSHA.

They mirror ``storage/memory.py`` line for line; the contract tests hold both to the same answers.
Every script takes ``now`` as an argument rather than calling TIME (see ``storage/redis.py``), so
its outcome depends only on its inputs. Times are float seconds; ``f`` prints them with 17
significant digits because Lua's own tostring keeps only 14 (it would round a TAT near 1.7e9 s to
the millisecond). TTLs (PX, PEXPIRE) only collect garbage: every rule compares stored times with ``now``.
"""

from __future__ import annotations

_PRELUDE = """
local EPS = 1e-9
local function f(x) return string.format('%.17g', x) end
local function ms(x)
  local v = math.ceil(x * 1000)
  if v < 1 then v = 1 end
  return v
end
"""

# A block is one string value "until created reason" (SET ... PX), read with one GET.
_BLOCK_READ = """
local function block_until(key)
  local b = redis.call('GET', key)
  if not b then return nil end
  return tonumber(string.match(b, '^(%S+)'))
end
local function place_block(key, now, until_at, reason)
  redis.call('SET', key, f(until_at) .. ' ' .. f(now) .. ' ' .. reason, 'PX', ms(until_at - now))
end
"""

# KEYS: bucket, abuse (per identity), block (per identity) -- all share the identity's hash tag.
# ARGV[1]: one string "now cost interval tolerance strike_window penalty_cap violation_window
#          violation_threshold block_seconds" (see RedisStorage.decide).
# Returns an integer when admitted (remaining << 33 | reset in ms), else one string
# "outcome 0 retry_after reset_after".
#
# This is the hot path, and on a fast network a round trip is mostly fixed costs: the client
# encoding arguments and parsing the reply, and the server's work per redis.call and per string
# operation. So: one packed argument, one integer reply, and a bucket stored as one string value,
# read together with the block by one MGET and written with SET ... PX. A bucket with no
# escalation state is just "tat"; one with state is "tat penalty_until strikes strikes_expire".
# The admitted path formats one number and defines no functions; the rest is on the denial path.
DECIDE = (
    """
local a_now, a_cost, a_interval, a_tolerance = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+)')
local now = tonumber(a_now)
local got = redis.call('MGET', KEYS[3], KEYS[1])  -- the block and the bucket in one call
local blocked = got[1]
if blocked then
  local blocked_until = tonumber(string.match(blocked, '^(%S+)'))
  if blocked_until > now then
    local left = string.format('%.17g', blocked_until - now)
    return '2 0 ' .. left .. ' ' .. left
  end
end
local interval = tonumber(a_interval)
local tat, pu, strikes, se, rest = now, 0, 0, 0, nil
local st = got[2]
if st then
  local space = string.find(st, ' ', 1, true)
  if space then
    local s1, s2, s3, s4 = string.match(st, '^(%S+) (%S+) (%S+) (%S+)$')
    tat = tonumber(s1)
    pu = tonumber(s2)
    strikes = tonumber(s3)
    se = tonumber(s4)
    rest = string.sub(st, space)
  else
    tat = tonumber(st)
  end
  if tat < now then tat = now end
end
local new_tat = tat + tonumber(a_cost) * interval
local allow_at = new_tat - tonumber(a_tolerance)
if pu <= now and allow_at - now <= 1e-9 then
  local tat_s = string.format('%.17g', new_tat)
  local ttl = math.ceil((math.max(new_tat, se) - now) * 1000)
  if ttl < 1 then ttl = 1 end
  if rest and se > now then
    redis.call('SET', KEYS[1], tat_s .. rest, 'PX', ttl)  -- strikes are still remembered
  else
    redis.call('SET', KEYS[1], tat_s, 'PX', ttl)
  end
  -- One integer reply (no bulk string to parse): remaining in the high bits, the reset in
  -- milliseconds in the low 33 (99 days). Exact, as Lua numbers hold integers to 2^53.
  local remaining = math.floor((now - allow_at) / interval + 1e-9)
  if remaining > 1048575 then remaining = 1048575 end
  return remaining * 8589934592 + math.floor((new_tat - now) * 1000 + 0.5)
end
"""
    + _PRELUDE
    + _BLOCK_READ
    + """
local p = {}
for v in string.gmatch(ARGV[1], '%S+') do p[#p + 1] = tonumber(v) end
-- p[5..9]: strike_window penalty_cap violation_window violation_threshold block_seconds
local wait
if pu > now then
  wait = pu - now
else
  if se > now then strikes = strikes + 1 else strikes = 1 end
  local natural = allow_at - now
  local e = strikes - 1
  if e > 62 then e = 62 end
  wait = natural * (2 ^ e)
  if wait > p[6] then wait = p[6] end
  if wait < natural then wait = natural end
  pu = now + wait
  se = now + p[5]
  redis.call('SET', KEYS[1], f(tat) .. ' ' .. f(pu) .. ' ' .. strikes .. ' ' .. f(se),
    'PX', ms(math.max(tat, pu, se) - now))
end
local threshold = p[8]
if threshold > 0 then
  local ab = redis.call('HMGET', KEYS[2], 'v', 've', 'afe')
  local v = tonumber(ab[1]) or 0
  local ve = tonumber(ab[2]) or 0
  local afe = tonumber(ab[3]) or 0
  if ve <= now then
    v = 0
    ve = now + p[7]
  end
  v = v + 1
  if v >= threshold then
    redis.call('HSET', KEYS[2], 'v', 0, 've', f(ve))
    redis.call('PEXPIRE', KEYS[2], ms(math.max(ve, afe) - now))
    place_block(KEYS[3], now, now + p[9], 'violations')
    return '3 0 ' .. f(p[9]) .. ' ' .. f(p[9])
  end
  redis.call('HSET', KEYS[2], 'v', v, 've', f(ve))
  redis.call('PEXPIRE', KEYS[2], ms(math.max(ve, afe) - now))
end
return '0 0 ' .. f(wait) .. ' ' .. f(math.max(tat, pu) - now)
"""
)

# KEYS: abuse, block (same identity tag). ARGV: now, window, threshold, block_seconds.
# Returns 1 when this failure placed a new block.
AUTH_FAILURE = (
    _PRELUDE
    + _BLOCK_READ
    + """
local now = tonumber(ARGV[1])
local ab = redis.call('HMGET', KEYS[1], 'af', 'afe', 've')
local af = tonumber(ab[1]) or 0
local afe = tonumber(ab[2]) or 0
local ve = tonumber(ab[3]) or 0
if afe <= now then
  af = 0
  afe = now + tonumber(ARGV[2])
end
af = af + 1
if af < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'af', af, 'afe', f(afe))
  redis.call('PEXPIRE', KEYS[1], ms(math.max(afe, ve) - now))
  return 0
end
redis.call('HSET', KEYS[1], 'af', 0, 'afe', f(afe))
redis.call('PEXPIRE', KEYS[1], ms(math.max(afe, ve) - now))
local block_for = tonumber(ARGV[4])
local current = block_until(KEYS[2])
if current and current > now + block_for then return 0 end
place_block(KEYS[2], now, now + block_for, 'auth_failures')
if current and current > now then return 0 end
return 1
"""
)

# KEYS: block. ARGV: now, until, reason. Keeps a longer block in force; returns the block in force.
BLOCK = (
    _PRELUDE
    + _BLOCK_READ
    + """
local now = tonumber(ARGV[1])
local until_at = tonumber(ARGV[2])
local current = block_until(KEYS[1])
if current and current > until_at then return redis.call('GET', KEYS[1]) end
place_block(KEYS[1], now, until_at, ARGV[3])
return redis.call('GET', KEYS[1])
"""
)

# KEYS: sorted sets sharing one hash tag. ARGV: now, expires_at, member, limit per key...
# Returns {acquired, count per key...}.
ACQUIRE_SLOTS = (
    _PRELUDE
    + """
local now = tonumber(ARGV[1])
local member = ARGV[3]
local counts = {}
local present = {}
local held = true
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', f(now))
  counts[i] = redis.call('ZCARD', key)
  present[i] = redis.call('ZSCORE', key, member) ~= false
  if not present[i] then held = false end
end
if not held then
  for i = 1, #KEYS do
    if not present[i] and counts[i] >= tonumber(ARGV[3 + i]) then
      local out = {0}
      for j = 1, #KEYS do out[j + 1] = counts[j] end
      return out
    end
  end
end
local out = {1}
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], member)
  out[i + 1] = redis.call('ZCARD', key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now))
end
return out
"""
)

# KEYS: sorted sets. ARGV: member.
RELEASE_SLOTS = """
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
return 1
"""

# KEYS: sorted sets. ARGV: now, expires_at, member. Returns 1 when renewed, 0 when not held.
RENEW_SLOTS = (
    _PRELUDE
    + """
local now = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local score = tonumber(redis.call('ZSCORE', key, ARGV[3]))
  if not score or score <= now then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', ARGV[2], ARGV[3])
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now))
end
return 1
"""
)

# A budget is one hash: 'used' (charged), 'reserved' (held by calls in flight), 'exp' (reset time).
_BUDGET_READ = """
local function budget(key, now)
  local b = redis.call('HMGET', key, 'used', 'reserved', 'exp')
  local exp = tonumber(b[3]) or 0
  if exp <= now then return 0, 0, nil end
  return tonumber(b[1]) or 0, tonumber(b[2]) or 0, exp
end
"""

# KEYS: budget hash. ARGV: amount, limit, now, expires_at. Returns {granted, remaining}.
RESERVE_BUDGET = (
    _PRELUDE
    + _BUDGET_READ
    + """
local amount = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
local used, reserved, exp = budget(KEYS[1], now)
local left = tonumber(ARGV[2]) - used - reserved
if amount > left then
  if left < 0 then left = 0 end
  return {0, left}
end
if amount == 0 then return {1, left} end
exp = exp or tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'used', used, 'reserved', reserved + amount, 'exp', f(exp))
redis.call('PEXPIRE', KEYS[1], ms(exp - now))
return {1, left - amount}
"""
)

# KEYS: budget hash. ARGV: reserved, actual, limit, now, expires_at.
# Returns {charged, used, reserved}. Beyond its reservation a call is charged only up to
# limit + its reservation (the other reservations counted), so overshoot never compounds.
SETTLE_BUDGET = (
    _PRELUDE
    + _BUDGET_READ
    + """
local mine = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local expires_at = tonumber(ARGV[5])
if expires_at <= now then return {0, 0, 0} end
local used, reserved, exp = budget(KEYS[1], now)
local rest = reserved - mine
if rest < 0 then rest = 0 end
local charge = actual
if actual > mine then
  local cap = limit + mine - used - rest
  if cap < mine then cap = mine end
  if charge > cap then charge = cap end
end
used = used + charge
if exp or charge > 0 then
  exp = exp or expires_at
  redis.call('HSET', KEYS[1], 'used', used, 'reserved', rest, 'exp', f(exp))
  redis.call('PEXPIRE', KEYS[1], ms(exp - now))
end
return {charge, used, rest}
"""
)

# Everything one identity's hash slot holds for the admission of a model call, in one script:
# that identity's rate decisions (each exactly DECIDE), stopping at the first refusal, then the
# budget reservation (exactly RESERVE_BUDGET) when every decision admitted.
# KEYS: the n buckets, then abuse and block, then the budget hash (when one is reserved).
# ARGV: n, DECIDE's packed argument per bucket, then RESERVE_BUDGET's four arguments (budget).
# Returns {budget, decision...}: budget is {granted, remaining} ({0, 0} after a refusal, 0 when
# none was asked), each decision DECIDE's reply; decisions after a refusal are left out.
ADMIT = (
    "local function decide(KEYS, ARGV)\n"
    + DECIDE
    + "\nend\nlocal function reserve(KEYS, ARGV)\n"
    + RESERVE_BUDGET
    + """
end
local n = tonumber(ARGV[1])
local out = {0}
for i = 1, n do
  local reply = decide({KEYS[i], KEYS[n + 1], KEYS[n + 2]}, {ARGV[1 + i]})
  out[i + 1] = reply
  if type(reply) ~= 'number' then
    if #KEYS > n + 2 then out[1] = {0, 0} end
    return out
  end
end
if #KEYS > n + 2 then
  out[1] = reserve({KEYS[n + 3]}, {ARGV[n + 2], ARGV[n + 3], ARGV[n + 4], ARGV[n + 5]})
end
return out
"""
)

SCRIPTS = {
    "decide": DECIDE,
    "auth_failure": AUTH_FAILURE,
    "block": BLOCK,
    "acquire_slots": ACQUIRE_SLOTS,
    "release_slots": RELEASE_SLOTS,
    "renew_slots": RENEW_SLOTS,
    "reserve_budget": RESERVE_BUDGET,
    "settle_budget": SETTLE_BUDGET,
    "admit": ADMIT,
}
