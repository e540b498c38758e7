-- count_in_window.lua: one more event in a fixed window that starts with the window's first event.
-- One key per call (two counters of one request may live on different cluster slots).
--
-- KEYS[1] counter  string: events in the current window
-- ARGV[1] window length in seconds
-- Reply: {events in the window so far, seconds until the window ends}

local events = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  -- a new counter, or one without an expiry (a key restored without its TTL): every window ends
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {events, ttl}
