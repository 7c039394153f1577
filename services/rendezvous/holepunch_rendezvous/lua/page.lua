-- One page of the listing.
-- ARGV: start ('-' or '(' .. cursor), limit (0: all) -> {index size, ids, records, more,
-- last id}. Ids whose record expired (their instance died) are left out and dropped from
-- the index on the way.
local limit = tonumber(ARGV[2])
local ids
if limit > 0 then
  ids = redis.call('ZRANGE', K.ids, ARGV[1], '+', 'BYLEX', 'LIMIT', 0, limit + 1)
else
  ids = redis.call('ZRANGE', K.ids, ARGV[1], '+', 'BYLEX')
end
local more = 0
if limit > 0 and #ids > limit then
  more = 1
  ids[#ids] = nil
end
local found, records, last = {}, {}, ''
for _, wid in ipairs(ids) do
  last = wid
  local record = redis.call('HGET', K.worker .. wid, 'rec')
  if record then
    found[#found + 1] = wid
    records[#records + 1] = record
  else
    redis.call('ZREM', K.ids, wid)
  end
end
return {redis.call('ZCARD', K.ids), found, records, more, last}
