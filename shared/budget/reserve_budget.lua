-- reserve_budget.lua: one atomic budget decision for one payment request of one agent.
-- It checks the circuit breaker, the idempotency record and the limits, and records the hold, the day's counter
-- and the idempotency record in the same step. Safe to run twice with the same ARGV (a client retry): the rate
-- window member, the idempotency record and the hold are all keyed, so nothing is counted twice.
--
-- KEYS[1] limits   hash {daily, per_tx, threshold, rpm}: the agent's limits, cached for at most 10 s
-- KEYS[2] spent    string: cents held or spent on the budget day (pending + approved + completed)
-- KEYS[3] holds    hash idempotency_key -> "cents:unix_ms": the day's holds not yet settled, and when taken
-- KEYS[4] idem     string "transaction_id|request_hash": the request deciding this key right now (30 s)
-- KEYS[5] rate     zset request_id -> ms: the agent's payment requests of the last 60 s
-- KEYS[6] blocked  string: present while the circuit breaker holds the agent
-- KEYS[7] credential string "key_hash|active": written when an admin rotates the key or disables the agent, so
--                  every container refuses the old key at once (its in-process cache may be 10 s old)
-- ARGV[1] idempotency key (the hold's field)      ARGV[2] new transaction id     ARGV[3] request hash
-- ARGV[4] amount in cents                          ARGV[5] now, unix ms           ARGV[6] request id
-- ARGV[7] unix s at which the day's keys expire    ARGV[8] limits "daily,per_tx,threshold,rpm" or ""
--         (shared/policy/limits.py, Limits.script_arg: its fields in order; the reply ends with them in that order)
-- ARGV[9] rebuilt counter in cents or ""           ARGV[10] the hash of the key the request came with
-- ARGV[11..] rebuilt holds: field, cents, field, cents, ...
-- Replies: {"revoked"} {"disabled"} {"blocked"} {"need_limits"} {"need_counter"} {"rate_limited", count, rpm}
--          {"replay", "transaction_id|request_hash"}
--          {outcome, spent_before, newly_held, daily, per_tx, threshold, rpm}
--          where outcome is approved, pending, per_transaction_limit_exceeded or daily_limit_exceeded.
-- Lua numbers are doubles: every sum stays below 2^53 because daily limits are capped far below it.

local credential = redis.call('GET', KEYS[7])
if credential then
  if string.sub(credential, 1, string.len(ARGV[10])) ~= ARGV[10] then
    return {'revoked'}
  end
  if string.sub(credential, -1) == '0' then
    return {'disabled'}
  end
end

if redis.call('EXISTS', KEYS[6]) == 1 then
  return {'blocked'}
end

local limits = redis.call('HMGET', KEYS[1], 'daily', 'per_tx', 'threshold', 'rpm')
if not limits[1] then
  if ARGV[8] == '' then
    return {'need_limits'}
  end
  local given = {}
  for value in string.gmatch(ARGV[8], '[^,]+') do
    given[#given + 1] = value
  end
  redis.call('HSET', KEYS[1], 'daily', given[1], 'per_tx', given[2], 'threshold', given[3], 'rpm', given[4])
  redis.call('EXPIRE', KEYS[1], 10)
  limits = given
end
local daily = tonumber(limits[1])
local per_tx = tonumber(limits[2])
local threshold = tonumber(limits[3])
local rpm = tonumber(limits[4])

local spent = redis.call('GET', KEYS[2])
if not spent then
  if ARGV[9] == '' then
    return {'need_counter'}
  end
  -- A new day, or a Redis that lost its data: the caller summed the day from Postgres.
  redis.call('SET', KEYS[2], ARGV[9], 'EXAT', ARGV[7])
  redis.call('DEL', KEYS[3])
  for i = 11, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[5])
  end
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
  spent = ARGV[9]
end
spent = tonumber(spent)

local now_ms = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms - 60000)
redis.call('ZADD', KEYS[5], now_ms, ARGV[6])
redis.call('PEXPIRE', KEYS[5], 60000)
local count = redis.call('ZCARD', KEYS[5])
if count > rpm then
  redis.call('SET', KEYS[6], tostring(now_ms))
  return {'rate_limited', count, rpm}
end

local owner = redis.call('GET', KEYS[4])
if owner and string.sub(owner, 1, string.len(ARGV[2])) ~= ARGV[2] then
  return {'replay', owner}
end
-- A short claim: it makes concurrent duplicates wait for the first one's row. Once the row is written, the
-- unique (agent_id, idempotency_key) in Postgres is what keeps the key to one transaction.
redis.call('SET', KEYS[4], ARGV[2] .. '|' .. ARGV[3], 'EX', 30)

local amount = tonumber(ARGV[4])
if amount > per_tx then
  return {'per_transaction_limit_exceeded', spent, 0, daily, per_tx, threshold, rpm}
end
local outcome = 'pending'
if amount <= threshold then
  outcome = 'approved'
end
-- A hold under this key already counted (this script ran before for the request): decide, don't count again.
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {outcome, spent - amount, 0, daily, per_tx, threshold, rpm}
end
if spent + amount > daily then
  return {'daily_limit_exceeded', spent, 0, daily, per_tx, threshold, rpm}
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4] .. ':' .. ARGV[5])
redis.call('EXPIREAT', KEYS[3], ARGV[7])
redis.call('INCRBY', KEYS[2], amount)
return {outcome, spent, 1, daily, per_tx, threshold, rpm}
