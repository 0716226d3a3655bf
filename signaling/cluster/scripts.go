package cluster

import "github.com/redis/go-redis/v9"

// Keys in Redis. Every id in a key is a pseudonym (DESIGN §2).
const (
	keyNodes   = "medcall:nodes"    // set of node ids that registered
	keyNode    = "medcall:node:"    // + node id: its record (JSON), expires unless heartbeated
	keyHosted  = "medcall:hosted:"  // + node id: set of the cids placed on it
	keyPlace   = "medcall:place:"   // + cid: the id of the node hosting it, with a lease
	keyBinding = "medcall:binding:" // + cid: the binding (JSON); expires only once finished
	keySegment = "medcall:segment:" // + cid: "rid node" of its newest recording segment
	keyAudit   = "medcall:audit"    // stream: the cluster's audit log
)

// placeScript returns the node hosting KEYS[1]'s consultation, placing it
// first when it has no live host: on the live, undrained node with the
// fewest hosted consultations, preferring nodes of zone ARGV[3]. It returns
// {node id, node record, "1" when placed now} or false when no node can
// take it.
// ARGV: 1 lease ms, 2 cid, 3 zone.
var placeScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if owner then
  local raw = redis.call('GET', 'medcall:node:' .. owner)
  if raw then return {owner, raw, '0'} end
  redis.call('SREM', 'medcall:hosted:' .. owner, ARGV[2])
end
local best, bestLoad, bestRaw, bestZone = nil, nil, nil, false
for _, id in ipairs(redis.call('SMEMBERS', 'medcall:nodes')) do
  local raw = redis.call('GET', 'medcall:node:' .. id)
  if not raw then
    redis.call('SREM', 'medcall:nodes', id)
  else
    local n = cjson.decode(raw)
    if not n.draining then
      local load = redis.call('SCARD', 'medcall:hosted:' .. id)
      local inZone = (n.zone == ARGV[3])
      if best == nil or (inZone and not bestZone) or (inZone == bestZone and (load < bestLoad or (load == bestLoad and id < best))) then
        best, bestLoad, bestRaw, bestZone = id, load, raw, inZone
      end
    end
  end
end
if not best then return false end
redis.call('SET', KEYS[1], best, 'PX', ARGV[1])
redis.call('SADD', 'medcall:hosted:' .. best, ARGV[2])
return {best, bestRaw, '1'}
`)

// renewScript keeps node ARGV[1]'s lease on KEYS[1]'s consultation.
// ARGV: 1 node id, 2 lease ms, 3 "1" when the consultation runs here,
// 4 cid, 5 grace ms (how long a placement may wait for its first join).
// Returns 1 renewed (or still waiting for its first join), 2 re-claimed (the
// placement was gone, e.g. Redis lost it), 3 forgotten (it ended here or its
// client never came), 0 lost (another node holds it while it runs here).
var renewScript = redis.NewScript(`
local hosted = 'medcall:hosted:' .. ARGV[1]
local owner = redis.call('GET', KEYS[1])
if not owner then
  if ARGV[3] == '1' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('SADD', hosted, ARGV[4])
    return 2
  end
  redis.call('SREM', hosted, ARGV[4])
  return 3
end
if owner ~= ARGV[1] then
  redis.call('SREM', hosted, ARGV[4])
  if ARGV[3] == '1' then return 0 end
  return 3
end
if ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SADD', hosted, ARGV[4])
  return 1
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) - tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', hosted, ARGV[4])
  return 3
end
return 1
`)

// releaseScript gives up node ARGV[1]'s placement of KEYS[1]'s consultation
// (cid ARGV[2]) so the next join places it anew. Returns 1 when released.
var releaseScript = redis.NewScript(`
redis.call('SREM', 'medcall:hosted:' .. ARGV[1], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)
