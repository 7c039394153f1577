-- Claim a worker_id for an identity and publish its record.
-- ARGV: worker_id, instance, identity, ttl_ms, ownership_ttl_ms, conn, record,
-- republish ('1': an entry another instance holds wins, it is newer than ours)
-- -> {0} refused; {2} yielded; {1, replaced instance or "", replaced connection or ""}
local wid, inst, identity = ARGV[1], ARGV[2], ARGV[3]
local own = K.owner .. wid
local owner = redis.call('GET', own)
if owner and owner ~= identity then return {0} end
local key = K.worker .. wid
local old = redis.call('HMGET', key, 'inst', 'conn')
if ARGV[8] == '1' and old[1] and old[1] ~= inst then return {2} end
redis.call('SET', own, identity, 'PX', ARGV[5])
redis.call('HSET', key, 'inst', inst, 'conn', ARGV[6], 'rec', ARGV[7])
redis.call('PEXPIRE', key, ARGV[4])
redis.call('ZADD', K.ids, 0, wid)
redis.call('SADD', K.held .. inst, wid)
if old[1] and old[1] ~= inst then
  redis.call('SREM', K.held .. old[1], wid)
  redis.call('PUBLISH', K.channel .. old[1],
    cjson.encode({op = 'close', w = wid, c = tonumber(old[2])}))
end
return {1, old[1] or '', old[2] or ''}
