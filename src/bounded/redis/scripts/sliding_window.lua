-- Sliding log: at most `rate` units in any window of `per`, in Redis TIME microseconds.
-- KEYS[1]: the log (sorted set, member "<token>:<cost>" or "<seq>:<cost>", score = admission time,
--          which may lie ahead of now for a reservation); KEYS[2]: string
--          "<used> <seq> <newest> <expires> <odd>": the units in the log, the last sequence number,
--          the newest entry's score, when both keys expire (Unix ms), and how many entries cost
--          other than 1 (-1: unknown, in a state written before this field existed).
-- ARGV[1]: "op cost rate per_us arg5" (one string: the cheapest request to send), with
--          arg5 = max_wait_us (-1 = none) | remaining; ARGV[2]: arg6 (acquire and cancel: a
--          token the caller chose for the reservation; throttle: reset_after_us)
-- Reply: "<admitted 1/0> <wait_us (or retry_after_us)> <available x 1000> <at_us>" (one
-- status string: the cheapest to parse), except that an admission by op `acquire` replies
-- with one integer, cheaper still: the wait in us when it must wait (nothing is available
-- then), else -(available x 1000). `acquire_at` is `acquire` with the status reply, for
-- callers that want the admission time on the Redis clock.
local log, meta = KEYS[1], KEYS[2]
local op, cost, rate, per, arg5 = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
local arg6 = ARGV[2]
cost, rate, per = tonumber(cost), tonumber(rate), tonumber(per)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local EPSILON = 1e-9

local function fmt(x)
  return string.format('%.17g', x)
end

local function cost_of(member)
  return tonumber(string.match(member, ':([^:]*)$'))
end

local used, seq, last, expires, odd = 0, 0, 0, 0, 0
local state = redis.call('GET', meta)
if state then
  local u, s, l, e, o = string.match(state, '^(%S+) (%S+) (%S+) ?(%S*) ?(%S*)$')
  used, seq, last = tonumber(u), tonumber(s), tonumber(l)
  expires, odd = tonumber(e) or 0, tonumber(o) or -1
end

-- Entries of cost 1 are counted as such, so while there is no other (`odd` is 0) the
-- expired ones need not be read: the number removed is the units they held.
local function count_odd(c, delta)
  if c ~= 1 and odd >= 0 then
    odd = odd + delta
  end
end

-- Forget entries that no window from now on can hold.
local expired
if odd == 0 then
  expired = redis.call('ZREMRANGEBYSCORE', log, '-inf', now - per)
  used = used - expired
else
  local members = redis.call('ZRANGEBYSCORE', log, '-inf', now - per)
  for _, member in ipairs(members) do
    local c = cost_of(member)
    used = used - c
    count_odd(c, -1)
  end
  expired = #members
  if expired > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - per)
  end
end
if expired > 0 and used < EPSILON and redis.call('ZCARD', log) == 0 then
  used, odd = 0, 0 -- drop accumulated rounding error
end

local function add(c, member, at)
  redis.call('ZADD', log, at, member)
  count_odd(c, 1)
end

local function next_member(c)
  seq = seq + 1
  return seq .. ':' .. fmt(c)
end

local admitted, wait, newest = 1, 0, nil
if op == 'acquire' or op == 'acquire_at' then
  local max_wait = tonumber(arg5)
  local t = now
  if used > 0 and last > t then
    t = last -- admissions keep arrival order: never before the last one
  end
  -- Walk the oldest entries until the window ending at t has room for `cost` (every
  -- entry left lies in (now - per, t], so with room for all of them there is no walk).
  local u = used
  local start = 0
  local done = u + cost <= rate + EPSILON
  while not done do
    local batch = redis.call('ZRANGE', log, start, start + 31, 'WITHSCORES')
    if #batch == 0 then
      break
    end
    for i = 1, #batch, 2 do
      local c = cost_of(batch[i])
      local ts = tonumber(batch[i + 1])
      if ts + per <= t then
        u = u - c
      elseif u + cost <= rate + EPSILON then
        done = true
        break
      else
        u = u - c
        t = ts + per
      end
    end
    start = start + 32
  end
  wait = t - now
  if max_wait >= 0 and wait > max_wait then
    admitted = 0
  else
    add(cost, arg6 .. ':' .. fmt(cost), t)
    used = used + cost
    newest = t
  end
elseif op == 'cancel' then
  local member = arg6 .. ':' .. fmt(cost)
  if redis.call('ZREM', log, member) == 1 then
    used = used - cost
    count_odd(cost, -1)
  end
elseif op == 'refund' then
  -- Taken from the oldest entries (a later window never undercounts because of it).
  local remaining = cost
  while remaining > 0 do
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    if #oldest == 0 then
      break
    end
    local c = cost_of(oldest[1])
    local taken = math.min(remaining, c)
    redis.call('ZREM', log, oldest[1])
    count_odd(c, -1)
    if c - taken > 0 then
      add(c - taken, next_member(c - taken), tonumber(oldest[2]))
    end
    used = used - taken
    remaining = remaining - taken
  end
elseif op == 'consume' then
  add(cost, next_member(cost), now)
  used = used + cost
elseif op == 'throttle' then
  local remaining = tonumber(arg5)
  local reset_at = now + math.min(tonumber(arg6), per)
  -- Until the reset the window must hold at least rate - remaining: a phantom entry
  -- that expires at the reset makes up what the surviving entries do not.
  local at = reset_at - per
  local surviving = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', log, '(' .. fmt(at), '+inf')) do
    surviving = surviving + cost_of(member)
  end
  local missing = (rate - remaining) - surviving
  if missing > 0 then
    add(missing, next_member(missing), at)
    used = used + missing
  end
end

if admitted == 1 or expired > 0 then
  if not newest then
    local newest_entry = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    newest = #newest_entry > 0 and tonumber(newest_entry[2]) or now
  end
  -- An entry stops counting one period after its time: expire (a second after) the newest
  -- one. Extended half a second further than needed, so calls in that time skip PEXPIREAT.
  local needed = math.ceil((math.max(newest, now) + per) / 1000) + 1000
  if expires < needed then
    expires = needed + 500
    redis.call('PEXPIREAT', log, expires)
  end
  local value = string.format('%s %d %s %d %d', fmt(used), seq, fmt(newest), expires, odd)
  redis.call('SET', meta, value, 'PXAT', expires)
end
-- Reservations ahead count as used: a backlog leaves nothing available.
local available = math.max(rate - used, 0)
wait = math.ceil(wait)
if op == 'acquire' and admitted == 1 then
  if wait > 0 then
    return wait
  end
  return -math.floor(available * 1000)
end
return {ok = string.format('%d %d %d %d', admitted, wait, math.floor(available * 1000), now + wait)}
