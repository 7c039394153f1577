-- A worker left this instance.
-- ARGV: worker_id, instance, ownership_ttl_ms -> 1 removed, 0 not ours. An entry that
-- already expired (this instance was cut off from Redis for longer than the TTL) still
-- has its index entry removed.
local wid, inst = ARGV[1], ARGV[2]
redis.call('SREM', K.held .. inst, wid)
redis.call('PEXPIRE', K.owner .. wid, ARGV[3])
local key = K.worker .. wid
local owner = redis.call('HGET', key, 'inst')
if owner and owner ~= inst then return 0 end
redis.call('DEL', key)
redis.call('ZREM', K.ids, wid)
local sessions = K.worker_sessions .. wid
for _, sid in ipairs(redis.call('SMEMBERS', sessions)) do
  redis.call('DEL', K.session .. sid)
end
redis.call('DEL', sessions)
return 1
