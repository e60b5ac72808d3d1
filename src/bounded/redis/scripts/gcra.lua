-- GCRA rate limiter: one hash per limiter, {tat, interval} in microseconds of Redis TIME.
-- KEYS[1]: the state hash.
-- ARGV: op, cost, interval_us, burst, arg (max_wait_us, -1 = none | remaining), arg2
--       (acquire and cancel: a token the caller chose for the reservation)
-- Reply: {admitted (1/0), wait_us or retry_after_us, token, available, now_us}, as strings.
local key = KEYS[1]
local op = ARGV[1]
local cost = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local state = redis.call('HMGET', key, 'tat', 'interval', 'last')
local tat = tonumber(state[1]) or now
local old_interval = tonumber(state[2]) or interval
if old_interval ~= interval and tat > now then
  -- Live rate change: keep the backlog in units, drained at the new pace.
  tat = now + (tat - now) / old_interval * interval
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function save(value, last)
  redis.call('HSET', key, 'tat', fmt(value), 'interval', fmt(interval), 'last', last or '')
  -- After tat has passed, the state equals a fresh limiter: let it expire then.
  local ttl = math.ceil((math.max(value - now, 0) + burst * interval) / 1000) + 1000
  redis.call('PEXPIRE', key, ttl)
  tat = value
end

local function available()
  local backlog = tat - now
  if backlog > 0 then
    return math.max(burst - backlog / interval, 0)
  end
  return burst
end

local reply = {'1', '0', '', ''}
if op == 'acquire' then
  local max_wait = tonumber(ARGV[5])
  local base = math.max(tat, now)
  local wait = math.max(tat + (cost - burst) * interval - now, 0)
  if max_wait >= 0 and wait > max_wait then
    reply = {'0', fmt(wait), '', ''}
  else
    save(base + cost * interval, ARGV[6])
    reply = {'1', fmt(wait), '', ''}
  end
elseif op == 'cancel' then
  -- Give back an unused reservation, unless later ones were made on top of it.
  if state[3] == ARGV[6] then
    save(math.max(tat - cost * interval, now))
  end
elseif op == 'refund' then
  if tat > now then
    save(math.max(tat - cost * interval, now))
  end
elseif op == 'consume' then
  save(math.max(tat, now) + cost * interval)
elseif op == 'throttle' then
  local remaining = tonumber(ARGV[5])
  local reset_after = tonumber(ARGV[6])
  local target
  if remaining < 1 then
    target = now + reset_after + (burst - 1) * interval
  else
    target = now + (burst - remaining) * interval
  end
  if target > tat then
    save(target)
  end
end
reply[4] = fmt(available())
reply[5] = fmt(now)
return reply
