-- GCRA rate limiter. State: one string "<tat> <interval> <last>": tat in whole microseconds
-- of Redis TIME (rounded up: never early), interval as the caller sent it, and `last`
-- naming the newest reservation, so that its owner can give it back.
-- KEYS[1]: the state key.
-- ARGV[1]: "op cost interval_us burst arg5" (one string: the cheapest request to send),
-- ARGV[2]: arg6
--   acquire: arg5 = max_wait_us (-1: none), arg6 = the caller's token for the reservation
--   cancel: arg6 = that token; throttle: arg5 = remaining, arg6 = reset_after_us
-- Reply: "<admitted 1/0> <wait_us (or retry_after_us)> <available x 1000> <at_us>" (one
-- status string: the cheapest to parse), except that an admission by op `acquire` replies
-- with one integer, cheaper still: the wait in us when it must wait (nothing is available
-- then), else -(available x 1000). `acquire_at` is `acquire` with the status reply, for
-- callers that want the admission time on the Redis clock.
local key = KEYS[1]
local op, cost, interval_arg, burst, arg5 = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
local arg6 = ARGV[2]
cost, burst = tonumber(cost), tonumber(burst)
local interval = tonumber(interval_arg)
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]

local tat, last = now, ''
local state = redis.call('GET', key)
if state then
  -- Read by position, not by pattern: a capture is a new string, and each one costs the
  -- call measurably (INFO commandstats); `last` is read only by the op that needs it.
  local space = string.find(state, ' ', 1, true)
  tat = tonumber(string.sub(state, 1, space - 1))
  local after = space + #interval_arg + 1
  if string.byte(state, after) ~= 32 or string.sub(state, space + 1, after - 1) ~= interval_arg then
    local stored_interval, stored_last = string.match(state, '^%S+ (%S+) ?(%S*)$')
    last = stored_last
    if tat > now then
      -- Live rate change: keep the backlog in units, drained at the new pace.
      tat = now + (tat - now) / tonumber(stored_interval) * interval
    end
  elseif op == 'cancel' then
    last = string.sub(state, after + 1)
  end
end

-- Each op may move tat: `moved` is the new value (saved once, below), `token` names the
-- reservation it makes, if any.
local admitted, wait, moved, token = 1, 0, nil, ''
if op == 'acquire' or op == 'acquire_at' then
  local max_wait = tonumber(arg5)
  wait = math.max(tat + (cost - burst) * interval - now, 0)
  if max_wait >= 0 and wait > max_wait then
    admitted = 0
  else
    moved, token = math.max(tat, now) + cost * interval, arg6
  end
elseif op == 'cancel' then
  -- Give back an unused reservation, unless later ones were made on top of it.
  if last == arg6 and last ~= '' then
    moved = math.max(tat - cost * interval, now)
  end
elseif op == 'refund' then
  if tat > now then
    moved = math.max(tat - cost * interval, now)
  end
elseif op == 'consume' then
  moved = math.max(tat, now) + cost * interval
elseif op == 'throttle' then
  local remaining = tonumber(arg5)
  local target
  if remaining < 1 then
    target = now + tonumber(arg6) + (burst - 1) * interval
  else
    target = now + (burst - remaining) * interval
  end
  if target > tat then
    moved = target
  end
end
if moved then
  tat = math.ceil(moved)
  -- Once tat has passed, the state equals a fresh limiter's: let it expire then.
  local ttl = math.ceil((math.max(tat - now, 0) + burst * interval) / 1000) + 1000
  redis.call('SET', key, string.format('%d %s %s', tat, interval_arg, token), 'PX', ttl)
end

local available = burst
if tat > now then
  available = math.max(burst - (tat - now) / interval, 0)
end
wait = math.ceil(wait)
if op == 'acquire' and admitted == 1 then
  if wait > 0 then
    return wait
  end
  return -math.floor(available * 1000)
end
return {ok = string.format('%d %d %d %d', admitted, wait, math.floor(available * 1000), now + wait)}
