-- release_hold.lua: free one hold exactly once (decline, timeout, charge failure), or settle it (charged).
-- Freeing gives the hold back to every window it was counted in. Running it twice frees nothing the second time:
-- the hold's field is gone after the first run.
--
-- KEYS[1] holds  hash idempotency_key -> "cents:unix_ms:merchant": the budget day's holds
-- KEYS[2] idem   string "transaction_id|request_hash": the idempotency claim (only when undoing a request)
-- KEYS[3..] the window counters the hold was counted in (shared/budget/engine.py, window_keys)
-- ARGV[1] idempotency key (the hold's field)
-- ARGV[2] "release" gives the hold back to its windows; "settle" keeps it spent (the charge went through)
-- ARGV[3] transaction id whose claim to drop, or ""
-- ARGV[4..] per window counter: what the hold added to it ("cents" for money windows, "1" for a count of payments)
-- Reply: the cents given back (0 when settled or when nothing was held under that key).

if ARGV[3] ~= '' then
  local owner = redis.call('GET', KEYS[2])
  if owner and string.sub(owner, 1, string.len(ARGV[3])) == ARGV[3] then
    redis.call('DEL', KEYS[2])
  end
end
local hold = redis.call('HGET', KEYS[1], ARGV[1])
if not hold then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= 'release' then
  return 0
end
local cents = string.match(hold, '^%d+')
for i = 3, #KEYS do
  -- A counter that expired or was lost is rebuilt from Postgres, where this payment no longer holds anything.
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local given = ARGV[i + 1]
    if given == 'cents' then
      given = cents
    end
    redis.call('DECRBY', KEYS[i], given)
  end
end
return tonumber(cents)
