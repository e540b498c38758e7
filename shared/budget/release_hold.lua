-- release_hold.lua: free one hold exactly once (decline, timeout, charge failure), or settle it (charged).
-- Running it twice frees nothing the second time: the hold's field is gone after the first run.
--
-- KEYS[1] spent  string: cents held or spent on the budget day
-- KEYS[2] holds  hash idempotency_key -> "cents:unix_ms"
-- KEYS[3] idem   string "transaction_id|request_hash": the idempotency claim (only when undoing a request)
-- ARGV[1] idempotency key (the hold's field)
-- ARGV[2] "release" gives the cents back to the day; "settle" keeps them spent (the charge went through)
-- ARGV[3] transaction id whose claim to drop, or ""
-- Reply: the cents given back (0 when settled or when nothing was held under that key).

if ARGV[3] ~= '' then
  local owner = redis.call('GET', KEYS[3])
  if owner and string.sub(owner, 1, string.len(ARGV[3])) == ARGV[3] then
    redis.call('DEL', KEYS[3])
  end
end
local hold = redis.call('HGET', KEYS[2], ARGV[1])
if not hold then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] ~= 'release' then
  return 0
end
local cents = tonumber(string.match(hold, '^%d+'))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DECRBY', KEYS[1], cents)
end
return cents
