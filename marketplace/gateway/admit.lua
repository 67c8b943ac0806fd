-- The gateway's one Redis round trip per call: blocked flag, rate limits (GCRA), monthly quota,
-- usage enqueue and the key's last use, all or nothing.
--
-- KEYS: 1 block flag  2 per-second GCRA  3 per-minute GCRA  4 period quota counter
--       5 usage stream  6 key-last-used hash  7 access-token deny-list entry
-- ARGV: 1 weight  2 per_second (0 = none)  3 per_minute (0 = none)  4 quota limit (-1 = none)
--       5 quota hard (1/0)  6 quota counter ttl (s)  7 request id  8 subscription  9 endpoint
--       10 consumer  11 partner  12 api  13 key id  14 method  15 path template  16 bearer (1/0)
-- Returns {code, now_ms, sec_remaining, sec_reset_ms, min_remaining, min_reset_ms, quota_used,
--          retry_after_ms, detail}; code 0 admitted, 1 blocked, 2 per-second, 3 per-minute, 4 quota,
-- 5 revoked access token.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- KEYS[7]: the OAuth access token's deny-list entry (ARGV[16] = '1' on the bearer path).
if ARGV[16] == '1' and redis.call('EXISTS', KEYS[7]) == 1 then
  return {5, now, 0, 0, 0, 0, 0, 0, ''}
end

local blocked = redis.call('GET', KEYS[1])
if blocked then
  return {1, now, 0, 0, 0, 0, 0, 0, blocked}
end

-- GCRA: a call is admitted when its theoretical arrival time minus the window is not in the
-- future; `limit` calls may arrive at once, then one every period/limit.
local function gcra(key, limit, period)
  if limit <= 0 then return 1, -1, 0, 0, nil end
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if now < allow_at then
    return 0, 0, math.ceil(tat - now), math.ceil(allow_at - now), nil
  end
  local remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
  return 1, remaining, math.ceil(new_tat - now), 0, new_tat
end

local s_ok, s_rem, s_reset, s_retry, s_tat = gcra(KEYS[2], tonumber(ARGV[2]), 1000)
local m_ok, m_rem, m_reset, m_retry, m_tat = gcra(KEYS[3], tonumber(ARGV[3]), 60000)
if s_ok == 0 then return {2, now, s_rem, s_reset, m_rem, m_reset, 0, s_retry, ''} end
if m_ok == 0 then return {3, now, s_rem, s_reset, m_rem, m_reset, 0, m_retry, ''} end

local weight = tonumber(ARGV[1])
local quota = tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[4]) or 0)
if quota >= 0 and ARGV[5] == '1' and used + weight > quota then
  return {4, now, s_rem, s_reset, m_rem, m_reset, used, 0, ''}
end

if s_tat then redis.call('SET', KEYS[2], tostring(s_tat), 'PX', math.ceil(s_tat - now) + 1) end
if m_tat then redis.call('SET', KEYS[3], tostring(m_tat), 'PX', math.ceil(m_tat - now) + 1) end
used = redis.call('INCRBY', KEYS[4], weight)
if used == weight then redis.call('EXPIRE', KEYS[4], tonumber(ARGV[6])) end
redis.call('XADD', KEYS[5], '*', 't', 'u', 'r', ARGV[7], 's', ARGV[8], 'e', ARGV[9], 'c', ARGV[10],
           'p', ARGV[11], 'a', ARGV[12], 'k', ARGV[13], 'm', ARGV[14], 'pt', ARGV[15], 'u', ARGV[1],
           'ts', tostring(now))
if ARGV[13] ~= '' then redis.call('HSET', KEYS[6], ARGV[13], tostring(now)) end  -- bearer calls have no key
return {0, now, s_rem, s_reset, m_rem, m_reset, used, 0, ''}
