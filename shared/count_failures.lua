-- count_failures.lua: one more failure in a fixed window; the window starts with the first failure.
-- One key per call (the address's and the key prefix's counters may live on different cluster slots).
--
-- KEYS[1] counter  string: failures in the current window
-- ARGV[1] window length in seconds
-- Reply: {failures in the window so far, seconds until the window ends}

local failures = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  -- a new counter, or one whose expiry was lost (a crash between INCR and EXPIRE cannot happen in a script, but a
  -- key restored without its TTL can): a window always ends
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {failures, ttl}
