-- reserve_budget.lua: one atomic decision for one payment request of one agent, against every window of its
-- policy and its organization's ceiling. It checks the credential, the circuit breaker, the policy's version, the
-- idempotency record and every window, and records the hold in every window in the same step. Safe to run twice
-- with the same ARGV (a client retry): the rate member, the idempotency record and the hold are keyed, so nothing is
-- counted twice. Every key carries the organization's id as its hash tag: one script may touch all of them.
--
-- KEYS[1] policy version  string: the agent's policy version the containers must decide with (10 s, see below)
-- KEYS[2] ceiling version string: the organization's ceiling version, likewise
-- KEYS[3] holds    hash idempotency_key -> "cents:unix_ms:merchant": the budget day's holds not yet settled
-- KEYS[4] idem     string "transaction_id|request_hash": the request deciding this key right now (30 s)
-- KEYS[5] rate     zset request_id -> ms: the agent's payment requests of the last 60 s
-- KEYS[6] blocked  string: present while the circuit breaker holds the agent
-- KEYS[7] credential string "key_hash|active": written when an admin rotates the key or disables the agent
-- KEYS[8..7+n] the window counters, in the order they are checked (shared/policy/evaluate.py, windows())
-- ARGV[1] idempotency key (the hold's field)      ARGV[2] new transaction id     ARGV[3] request hash
-- ARGV[4] amount in cents                          ARGV[5] now, unix ms           ARGV[6] request id
-- ARGV[7] unix s at which the holds hash expires   ARGV[8] policy version         ARGV[9] ceiling version
-- ARGV[10] the hash of the key the request came with
-- ARGV[11] "1" when the caller read both versions from Postgres just now (it may then publish them), else ""
-- ARGV[12] requests per minute allowed, or "" for no limit
-- ARGV[13] the decline of the checks that need no counter (merchant rules, per-transaction limit), or ""
-- ARGV[14] "approved" or "pending": the outcome when every window has room
-- ARGV[15] the merchant as compared (for the hold's record)      ARGV[16] n, the number of windows
-- ARGV[17..16+4n] per window: limit (or "" for none), increment, unix s its counter expires, rebuilt value (or "")
-- ARGV[17+4n] the index of the day window (its counter rebuilt means the holds hash is rebuilt too)
-- ARGV[18+4n..] rebuilt holds: field, "cents:unix_ms:merchant", field, ...
-- Replies: {"revoked"} {"disabled"} {"blocked"} {"need_policy"} {"stale_policy"} {"need_counters", i, ...}
--          {"rate_limited", count, rpm} {"replay", "transaction_id|request_hash"}
--          {outcome, newly_held, exceeded window index or 0, counter 1, ..., counter n}
--          where outcome is approved, pending or declined, and the counters are what each window held before.
-- Lua numbers are doubles: every sum stays below 2^53 because limits are capped far below it.

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

-- The policy the caller decides with must be the newest any container has read from Postgres. A version key lives
-- 10 s: after that, or after a change deleted it, the next caller reads Postgres and publishes what it read.
for i = 1, 2 do
  local known = redis.call('GET', KEYS[i])
  local mine = tonumber(ARGV[7 + i])
  if known and tonumber(known) > mine then
    return {'stale_policy'}
  end
  if not known and ARGV[11] ~= '1' then
    return {'need_policy'}
  end
  if not known or tonumber(known) < mine then
    redis.call('SET', KEYS[i], ARGV[7 + i], 'EX', 10)
  end
end

local n = tonumber(ARGV[16])
local day_index = tonumber(ARGV[17 + 4 * n])
local counters = {}
local missing = {}
for i = 1, n do
  local value = redis.call('GET', KEYS[7 + i])
  if not value then
    local rebuilt = ARGV[16 + 4 * (i - 1) + 4]
    if rebuilt == '' then
      missing[#missing + 1] = i
    else
      -- A new window, or a Redis that lost its data: the caller summed the window from Postgres.
      redis.call('SET', KEYS[7 + i], rebuilt, 'EXAT', ARGV[16 + 4 * (i - 1) + 3])
      value = rebuilt
      if i == day_index then
        redis.call('DEL', KEYS[3])
        for h = 18 + 4 * n, #ARGV, 2 do
          redis.call('HSET', KEYS[3], ARGV[h], ARGV[h + 1])
        end
        redis.call('EXPIREAT', KEYS[3], ARGV[7])
      end
    end
  end
  counters[i] = tonumber(value)
end
if #missing > 0 then
  return {'need_counters', unpack(missing)}
end

local now_ms = tonumber(ARGV[5])
if ARGV[12] ~= '' then
  local rpm = tonumber(ARGV[12])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms - 60000)
  redis.call('ZADD', KEYS[5], now_ms, ARGV[6])
  redis.call('PEXPIRE', KEYS[5], 60000)
  local count = redis.call('ZCARD', KEYS[5])
  if count > rpm then
    redis.call('SET', KEYS[6], tostring(now_ms))
    return {'rate_limited', count, rpm}
  end
end

local owner = redis.call('GET', KEYS[4])
if owner and string.sub(owner, 1, string.len(ARGV[2])) ~= ARGV[2] then
  return {'replay', owner}
end
-- A short claim: it makes concurrent duplicates wait for the first one's row. Once the row is written, the
-- unique (agent_id, idempotency_key) in Postgres is what keeps the key to one transaction.
redis.call('SET', KEYS[4], ARGV[2] .. '|' .. ARGV[3], 'EX', 30)

local reply = {}
local function answer(outcome, newly_held, exceeded)
  reply = {outcome, newly_held, exceeded}
  for i = 1, n do
    reply[3 + i] = counters[i]
  end
  return reply
end

if ARGV[13] ~= '' then
  return answer('declined', 0, 0)
end
-- A hold under this key already counted (this script ran before for the request): decide, don't count again.
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  for i = 1, n do
    counters[i] = counters[i] - tonumber(ARGV[16 + 4 * (i - 1) + 2])
  end
  return answer(ARGV[14], 0, 0)
end
for i = 1, n do
  local limit = ARGV[16 + 4 * (i - 1) + 1]
  if limit ~= '' and counters[i] + tonumber(ARGV[16 + 4 * (i - 1) + 2]) > tonumber(limit) then
    return answer('declined', 0, i)
  end
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4] .. ':' .. ARGV[5] .. ':' .. ARGV[15])
redis.call('EXPIREAT', KEYS[3], ARGV[7])
for i = 1, n do
  redis.call('INCRBY', KEYS[7 + i], ARGV[16 + 4 * (i - 1) + 2])
  redis.call('EXPIREAT', KEYS[7 + i], ARGV[16 + 4 * (i - 1) + 3])
end
return answer(ARGV[14], 1, 0)
