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
// first when it has no placement: on the live, undrained node with the
// fewest hosted consultations and room for one more (fewer than its
// record's capacity, when it has one, and not busy), preferring nodes of
// zone ARGV[3]. A placement moves only when its lease is gone: while the lease lives the
// consultation stays with its node even when that node's record expired (a
// node starved of CPU or cut from Redis still serves it until its own lease
// clock runs out, see Node.fence), and the join is told to wait. When the
// caller (ARGV[4]) holds the lease the join renews it.
// It returns {node id, node record, "1" placed now | "0" already placed |
// "2" placed on a node not answering}, {"", "", "full"} when every live
// undrained node is at its capacity or busy, or false when there is no
// such node.
// ARGV: 1 lease ms, 2 cid, 3 zone, 4 calling node id.
var placeScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if owner then
  if owner == ARGV[4] then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    redis.call('SADD', 'medcall:hosted:' .. owner, ARGV[2])
  end
  local raw = redis.call('GET', 'medcall:node:' .. owner)
  if raw then return {owner, raw, '0'} end
  if owner == ARGV[4] then return {owner, '', '0'} end
  return {owner, '', '2'}
end
local best, bestLoad, bestRaw, bestZone, full = nil, nil, nil, false, false
for _, id in ipairs(redis.call('SMEMBERS', 'medcall:nodes')) do
  local raw = redis.call('GET', 'medcall:node:' .. id)
  if not raw then
    redis.call('SREM', 'medcall:nodes', id)
  else
    local n = cjson.decode(raw)
    if not n.draining then
      local load = redis.call('SCARD', 'medcall:hosted:' .. id)
      local cap = tonumber(n.capacity) or 0
      local inZone = (n.zone == ARGV[3])
      if n.busy or (cap > 0 and load >= cap) then
        full = true
      elseif best == nil or (inZone and not bestZone) or (inZone == bestZone and (load < bestLoad or (load == bestLoad and id < best))) then
        best, bestLoad, bestRaw, bestZone = id, load, raw, inZone
      end
    end
  end
end
if not best then
  if full then return {'', '', 'full'} end
  return false
end
redis.call('SET', KEYS[1], best, 'PX', ARGV[1])
redis.call('SADD', 'medcall:hosted:' .. best, ARGV[2])
return {best, bestRaw, '1'}
`)

// beatScript is one heartbeat of node ARGV[1], in one round trip so a
// loaded node renews every lease or none: it publishes the node record
// (ARGV[4], for ARGV[5] ms) and renews the lease (ARGV[2] ms) of each
// consultation running on the node (ARGV[6...]) or placed on it.
// It returns {cid, code, ...}: 1 renewed (or still waiting for its first
// join), 2 re-claimed (the placement was gone, e.g. Redis lost it), 3
// forgotten (it ended here or its client never came in ARGV[3] ms), 0 lost
// (another node holds it while it runs here).
var beatScript = redis.NewScript(`
local id, lease, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local hosted = 'medcall:hosted:' .. id
redis.call('SET', 'medcall:node:' .. id, ARGV[4], 'PX', ARGV[5])
redis.call('SADD', 'medcall:nodes', id)
local here, all = {}, {}
for i = 6, #ARGV do here[ARGV[i]] = true; all[ARGV[i]] = true end
for _, cid in ipairs(redis.call('SMEMBERS', hosted)) do all[cid] = true end
local out = {}
for cid in pairs(all) do
  local key = 'medcall:place:' .. cid
  local owner = redis.call('GET', key)
  local code
  if not owner then
    if here[cid] then
      redis.call('SET', key, id, 'PX', lease)
      redis.call('SADD', hosted, cid)
      code = 2
    else
      redis.call('SREM', hosted, cid)
      code = 3
    end
  elseif owner ~= id then
    redis.call('SREM', hosted, cid)
    if here[cid] then code = 0 else code = 3 end
  elseif here[cid] then
    redis.call('PEXPIRE', key, lease)
    redis.call('SADD', hosted, cid)
    code = 1
  elseif redis.call('PTTL', key) < lease - grace then
    redis.call('DEL', key)
    redis.call('SREM', hosted, cid)
    code = 3
  else
    code = 1
  end
  table.insert(out, cid)
  table.insert(out, tostring(code))
end
redis.call('PEXPIRE', hosted, 10 * lease)
return out
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
