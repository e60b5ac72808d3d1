-- Leased semaphore with a cross-process FIFO queue, in Redis TIME microseconds.
-- KEYS[1]: holders (sorted set, token -> lease expiry)
-- KEYS[2]: queue (sorted set, token -> ticket number, lowest first)
-- KEYS[3]: queue leases (sorted set, token -> expiry; a dead process's tickets lapse)
-- KEYS[4]: ticket counter; KEYS[5]: release channel (published to, never stored)
-- ARGV: op, limit, lease_us, tokens...
-- Reply: {granted (1/0), holders now, the token's ticket when it is left queued (0 otherwise)}
local holders, queue, alive, counter, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local until_ms = math.ceil(lease / 1000)

-- Crashed holders' slots and dead waiters' tickets come back here.
local freed = redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
if #dead > 0 then
  redis.call('ZREM', queue, unpack(dead))
  redis.call('ZREMRANGEBYSCORE', alive, '-inf', now)
end

local granted = 0
local notify = freed > 0 or #dead > 0
if op == 'acquire' or op == 'try' then
  local token = ARGV[4]
  if redis.call('ZSCORE', holders, token) then
    granted = 1
  else
    local rank = redis.call('ZRANK', queue, token)
    local ahead = rank or redis.call('ZCARD', queue)
    local free = limit - redis.call('ZCARD', holders)
    if free > ahead then
      granted = 1
      if rank then
        redis.call('ZREM', queue, token)
        redis.call('ZREM', alive, token)
        notify = notify or free > 1 -- a slot is left for the next in line
      end
    elseif op == 'acquire' and not rank then
      redis.call('ZADD', queue, redis.call('INCR', counter), token)
      redis.call('ZADD', alive, now + lease, token)
    end
  end
  if granted == 1 then
    redis.call('ZADD', holders, now + lease, token)
  end
elseif op == 'release' then
  if redis.call('ZREM', holders, ARGV[4]) == 1 then
    notify = true
  end
elseif op == 'leave' then
  -- A caller that gave up: its ticket, or the slot granted while it was leaving.
  redis.call('ZREM', queue, ARGV[4])
  redis.call('ZREM', alive, ARGV[4])
  redis.call('ZREM', holders, ARGV[4])
  notify = true
elseif op == 'renew' then
  for i = 4, #ARGV do
    redis.call('ZADD', holders, 'XX', now + lease, ARGV[i])
    redis.call('ZADD', alive, 'XX', now + lease, ARGV[i])
  end
end

if notify and redis.call('ZCARD', queue) > 0 then
  redis.call('PUBLISH', channel, 'released')
end
for _, key in ipairs({holders, queue, alive, counter}) do
  redis.call('PEXPIRE', key, 2 * until_ms + 1000)
end
local ticket = 0
if (op == 'acquire' or op == 'try') and granted == 0 then
  ticket = tonumber(redis.call('ZSCORE', queue, ARGV[4]) or 0)
end
return {granted, redis.call('ZCARD', holders), ticket}
