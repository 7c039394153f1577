-- A worker_id's binding to a public key: admit a connection, note that it left, release.
-- ARGV: op ('admit' | 'left' | 'release'), worker_id, public key ('' : keyless),
-- ttl_ms (how long the binding outlives its last connection), instance
-- -> admit: 1 admitted, 0 refused (bound to another key, or to any key for a keyless
--    worker); left: 1; release: the key that was bound, or ''
local k = K.key .. ARGV[2]
local bound = redis.call('GET', k)
local op, key = ARGV[1], ARGV[3]
if op == 'admit' then
  if key == '' then
    if bound then return 0 end
    return 1
  end
  if bound and bound ~= key then return 0 end
  -- No expiry while a connection of this key is the worker's current one.
  redis.call('SET', k, key)
  return 1
elseif op == 'left' then
  -- Only when no other instance holds the worker now (it replaced this connection).
  local holder = redis.call('HGET', K.worker .. ARGV[2], 'inst')
  if bound == key and (not holder or holder == ARGV[5]) then
    redis.call('PEXPIRE', k, ARGV[4])
  end
  return 1
end
redis.call('DEL', k)
return bound or ''
