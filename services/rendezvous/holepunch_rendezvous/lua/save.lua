-- Write a record this instance still holds.
-- ARGV: worker_id, instance, ttl_ms, conn, record -> 1 written, 0 not ours
local key = K.worker .. ARGV[1]
if redis.call('HGET', key, 'inst') ~= ARGV[2] then return 0 end
redis.call('HSET', key, 'conn', ARGV[4], 'rec', ARGV[5])
redis.call('PEXPIRE', key, ARGV[3])
return 1
