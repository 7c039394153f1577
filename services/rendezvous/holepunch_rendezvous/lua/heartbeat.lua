-- ARGV: instance, ttl_ms, worker_id... -> {worker ids missing from Redis, dead instances
-- swept}. Refreshes this instance's entries (only those it still owns) and removes the
-- index entries of instances whose last heartbeat is older than the TTL: their hashes
-- have expired by then, since both were set from the same heartbeat.
local inst, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', K.instances, now, inst)
local missing = {}
for i = 3, #ARGV do
  local key = K.worker .. ARGV[i]
  local owner = redis.call('HGET', key, 'inst')
  if owner == inst then
    redis.call('PEXPIRE', key, ttl)
  elseif not owner then
    missing[#missing + 1] = ARGV[i]
  end
end
local dead = redis.call('ZRANGEBYSCORE', K.instances, '-inf', now - ttl)
for _, d in ipairs(dead) do
  local held = K.held .. d
  for _, wid in ipairs(redis.call('SMEMBERS', held)) do
    local key = K.worker .. wid
    local owner = redis.call('HGET', key, 'inst')
    if owner == d then
      redis.call('DEL', key)
      owner = false
    end
    if not owner then redis.call('ZREM', K.ids, wid) end
  end
  redis.call('DEL', held)
  redis.call('ZREM', K.instances, d)
end
return {missing, #dead}
