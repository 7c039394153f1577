-- ARGV: instance: a clean stop forgets the instance (its workers are gone).
redis.call('DEL', K.held .. ARGV[1])
redis.call('ZREM', K.instances, ARGV[1])
return 1
