-- ARGV: worker_id, message -> the instance it was published to, or false
local inst = redis.call('HGET', K.worker .. ARGV[1], 'inst')
if not inst then return false end
redis.call('PUBLISH', K.channel .. inst, ARGV[2])
return inst
