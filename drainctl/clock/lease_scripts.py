"""The clock lease's Lua scripts (see ``drainctl.clock.lease``): each decision is one atomic step.

Fencing tokens come from ``INCR`` on a counter, floored by the Redis server time in
microseconds (so a token handed out in the same millisecond as a wipe is above the last one
before it): if Redis loses its data (a restart without persistence, a failover to a replica
that lagged), the counter starts again, and the floor keeps every new token above every token
handed out before (as long as the server clock does not go back).

A free lease next to a missing counter means Redis lost its data (the counter outlives any
lease by 30 days). Only a clock that is starting, or that held the lease before (``ARGV[7]``),
takes it then; a standby answers ``standby`` with ``fresh`` and waits, so the previous holder,
whose schedule is the most advanced, gets it back if it is alive.

With a secret, ``ARGV[8]`` is the acquirer's signed identity, stored as the holder's ``sig``;
``ARGV[9]`` names a holder ``sig`` (``-`` for none) that failed the acquirer's check: that holder
was written by someone without the secret and is replaced at once.
"""

ACQUIRE = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'instance', 'release', 'rank', 'sig')
local function grant()
  local now = redis.call('TIME')
  local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local token = redis.call('INCR', KEYS[2])
  if token < floor then
    token = floor
    redis.call('SET', KEYS[2], string.format('%d', floor))
  end
  token = string.format('%d', token)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'token', token, 'instance', ARGV[1], 'release', ARGV[2],
             'rank', ARGV[3], 'acquired_at', now[1] .. '.' .. string.format('%06d', now[2]),
             'sig', ARGV[8])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'held', token, ARGV[1], ARGV[2], '', '', ARGV[3]}
end
if not cur[1] then
  if ARGV[7] ~= '1' and redis.call('EXISTS', KEYS[2]) == 0 then
    return {'standby', '0', '', '', 'fresh', '', ''}
  end
  return grant()
end
if cur[2] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])  -- a long-held lease keeps its counter too
  return {'held', cur[1], cur[2], cur[3], '', cur[5] or '', cur[4] or ''}
end
if ARGV[9] ~= '' and (cur[5] or '-') == ARGV[9] then return grant() end
local verdict = 'standby'
if cur[3] ~= ARGV[2] then
  if ARGV[3] ~= '' and cur[4] ~= '' and cur[4] then
    if tonumber(ARGV[3]) > tonumber(cur[4]) then return grant() end
    verdict = 'fenced'
  elseif ARGV[6] == '1' then
    return grant()
  else
    verdict = 'fenced'
  end
end
return {verdict, cur[1], cur[2], cur[3], '', cur[5] or '', cur[4] or ''}
"""

RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

CLAIM = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {'lost'} end
local granted = {'ok'}
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local ms = ARGV[i + 2]
    granted[#granted + 1] = ms
    if tonumber(ms) > last then last = tonumber(ms) end
  end
end
if #granted > 1 then
  redis.call('HSET', KEYS[2], ARGV[3], string.format('%d', last))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return granted
"""
