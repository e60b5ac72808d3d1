-- Circuit breaker shared by every process: state and a window, transitions atomic.
-- KEYS[1]: hash {state, opened_at, epoch, running, ok, slow, probe_at, calls, failed, slowc,
--          second, seconds}; the window's totals are calls, failed and slowc.
-- KEYS[2]: a count window, a list of outcome codes (newest first: 1 ok, 3 failed, +4 slow).
-- KEYS[3]: a time window, a hash of per-second counts "<second>:c|f|s" (calls, failed, slow)
--          of the last `seconds` whole seconds of Redis TIME, the current one included; the
--          totals are kept for `seconds` and rolled up to `second`.
-- ARGV[1]: "op failure_rate minimum_calls window open_for_us half_open_calls slow_rate timed
--          seconds" (seconds 0: the count window of `window` calls)
-- ARGV[2]: permit (record), ARGV[3]: code (record; 0 = not recorded)
-- Reply: "<state> <permit> <retry_after_us> <calls> <failed> <slow>"
--   permit: -1 closed, -2 disabled (nothing recorded), -3 rejected, >= 0 a probe's epoch
local key, window, buckets = KEYS[1], KEYS[2], KEYS[3]
local op, failure_rate, min_calls, size, open_for, half_open, slow_rate, timed, seconds =
  string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
failure_rate, min_calls, size = tonumber(failure_rate), tonumber(min_calls), tonumber(size)
seconds = tonumber(seconds)
open_for, half_open, slow_rate = tonumber(open_for), tonumber(half_open), tonumber(slow_rate)
timed = timed == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local h = redis.call('HMGET', key, 'state', 'opened_at', 'epoch', 'running', 'ok', 'slow',
  'probe_at', 'calls', 'failed', 'slowc', 'second', 'seconds')
local state = h[1] or 'closed'
local opened_at, epoch = tonumber(h[2]) or 0, tonumber(h[3]) or 0
local running, ok, slow = tonumber(h[4]) or 0, tonumber(h[5]) or 0, tonumber(h[6]) or 0
local probe_at = tonumber(h[7]) or 0
local calls, failed, slowc = tonumber(h[8]) or 0, tonumber(h[9]) or 0, tonumber(h[10]) or 0
local second, kept_for = tonumber(h[11]) or 0, tonumber(h[12]) or 0

local function is_failure(code) return code % 4 == 3 end
local function is_slow(code) return code >= 4 end

local function to_open()
  state, opened_at = 'open', now
end
local function to_half_open()
  state, epoch, running, ok, slow = 'half_open', epoch + 1, 0, 0, 0
end
local function clear()
  redis.call('DEL', window, buckets)
  calls, failed, slowc = 0, 0, 0
end

local function count(kind, n)
  if kind == 'c' then
    calls = calls + n
  elseif kind == 'f' then
    failed = failed + n
  else
    slowc = slowc + n
  end
end

-- A time window: drop the seconds that have left it from the totals and the hash.
if seconds > 0 then
  local now_second = math.floor(now / 1000000)
  if now_second ~= second or seconds ~= kept_for then
    local gap = now_second - second
    if seconds ~= kept_for or gap < 0 or gap > redis.call('HLEN', buckets) / 3 then
      -- New length, a clock step back, or more seconds to step than counts: recount.
      calls, failed, slowc = 0, 0, 0
      local all, stale = redis.call('HGETALL', buckets), {}
      for i = 1, #all, 2 do
        local s, kind = string.match(all[i], '^(%d+):(%a)$')
        if tonumber(s) > now_second - seconds and tonumber(s) <= now_second then
          count(kind, tonumber(all[i + 1]))
        else
          stale[#stale + 1] = all[i]
        end
      end
      for i = 1, #stale, 1000 do
        redis.call('HDEL', buckets, unpack(stale, i, math.min(i + 999, #stale)))
      end
    else
      for s = second - seconds + 1, now_second - seconds do
        local c, f, sl = s .. ':c', s .. ':f', s .. ':s'
        local v = redis.call('HMGET', buckets, c, f, sl)
        count('c', -(tonumber(v[1]) or 0))
        count('f', -(tonumber(v[2]) or 0))
        count('s', -(tonumber(v[3]) or 0))
        redis.call('HDEL', buckets, c, f, sl)
      end
    end
    second, kept_for = now_second, seconds
  end
end

-- An open circuit whose time is up is half-open.
if state == 'open' and now >= opened_at + open_for then
  to_half_open()
end
-- Probes that have not reported for open_for are lost (their process died): free their slots.
if state == 'half_open' and running > 0 and now >= probe_at + open_for then
  running = 0
end

local permit, retry = -3, -1
if op == 'admit' then
  if state == 'closed' then
    permit = -1
  elseif state == 'disabled' then
    permit = -2
  elseif state == 'open' then
    retry = opened_at + open_for - now
  elseif state == 'half_open' and running + ok < half_open then
    running = running + 1
    probe_at = now
    permit = epoch
  end
elseif op == 'record' then
  local p, code = tonumber(ARGV[2]), tonumber(ARGV[3])
  if p == -1 and state == 'closed' and code > 0 then
    local needed = min_calls
    if seconds > 0 then
      redis.call('HINCRBY', buckets, second .. ':c', 1)
      calls = calls + 1
      if is_failure(code) then
        redis.call('HINCRBY', buckets, second .. ':f', 1)
        failed = failed + 1
      end
      if is_slow(code) then
        redis.call('HINCRBY', buckets, second .. ':s', 1)
        slowc = slowc + 1
      end
    else
      redis.call('LPUSH', window, code)
      calls = calls + 1
      if is_failure(code) then failed = failed + 1 end
      if is_slow(code) then slowc = slowc + 1 end
      while calls > size do -- (more than one after a live shrink of the window)
        local old = tonumber(redis.call('RPOP', window))
        calls = calls - 1
        if is_failure(old) then failed = failed - 1 end
        if is_slow(old) then slowc = slowc - 1 end
      end
      needed = math.min(min_calls, size)
    end
    if calls >= needed and (failed / calls >= failure_rate
        or (timed and slowc / calls >= slow_rate)) then
      to_open()
    end
  elseif p >= 0 and state == 'half_open' and p == epoch then
    running = running - 1
    if code > 0 then
      if is_failure(code) then
        to_open()
      else
        ok = ok + 1
        if is_slow(code) then slow = slow + 1 end
        if ok >= half_open then
          if timed and slow / ok >= slow_rate then
            to_open()
          else
            clear()
            state = 'closed'
          end
        end
      end
    end
  end
elseif op == 'force_open' then
  state = 'forced_open'
elseif op == 'disable' then
  state = 'disabled'
elseif op == 'reset' then
  clear()
  epoch = epoch + 1
  state = 'closed'
end

if state == 'open' then
  retry = math.max(opened_at + open_for - now, 0)
end
redis.call('HSET', key, 'state', state, 'opened_at', opened_at, 'epoch', epoch,
  'running', running, 'ok', ok, 'slow', slow, 'probe_at', probe_at, 'calls', calls, 'failed', failed,
  'slowc', slowc, 'second', second, 'seconds', kept_for)
-- Idle for a day (and past any open period): forgotten, i.e. closed with an empty window.
local ttl = math.ceil(open_for / 1000) + 86400000
redis.call('PEXPIRE', key, ttl)
if calls > 0 then
  redis.call('PEXPIRE', window, ttl)
  redis.call('PEXPIRE', buckets, ttl)
end
return {ok = string.format('%s %d %d %d %d %d', state, permit, math.ceil(retry), calls,
  failed, slowc)}
