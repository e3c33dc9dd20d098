//! The registry's Lua scripts, each a named constant whose doc comment states its invariant.

/// Write the record fresh: a rejoin must not inherit fields (or a TTL) of its previous life.
/// Invariant: a record that still owes its HEARTBEAT_LOST report (`reportToken` not empty) is
/// never rewritten (that would erase the token): the script returns the token instead, and
/// the caller settles the report first.
pub(super) const WRITE_RECORD: &str = r"
local owed = redis.call('HGET', KEYS[1], 'reportToken')
if owed and owed ~= '' then return owed end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
";

/// Update state fields only if the record exists (never resurrect a partial hash).
pub(super) const SET_STATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'lastStateChange', ARGV[2])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// Flip a live record to dead; returns the previous state when this call won, else false.
/// The call's token makes it idempotent: a cluster client that re-sends the script after a
/// lost reply gets the same answer, so the winner still writes its one HEARTBEAT_LOST entry.
/// Invariant (the report outbox): a record this script flips carries `reportToken` (the
/// token) and `reportAt` (server ms) until its HEARTBEAT_LOST entry is known written.
/// Invariant (one life, F24): only the registration the caller judged (`registeredAt` =
/// ARGV[4]) is flipped; a sweeper whose view predates a rejoin leaves the new life alone (the
/// old lapse's report was settled before the rejoin could write its record).
pub(super) const MARK_DEAD: &str = r"
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'dead' and redis.call('HGET', KEYS[1], 'lostToken') == ARGV[3] then
  return redis.call('HGET', KEYS[1], 'lostFrom')
end
if (not s) or s == 'dead' then return false end
if (redis.call('HGET', KEYS[1], 'registeredAt') or '') ~= ARGV[4] then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', 'dead', 'lastStateChange', ARGV[1], 'lostToken', ARGV[3],
  'lostFrom', s, 'reportToken', ARGV[3], 'reportAt', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return s
";

/// Clear the report token once its entry is written, only if it is still that token (a
/// later death of the same id has its own). Set to '' rather than deleted, so the ACL rule
/// needs no HDEL.
pub(super) const CLEAR_REPORT: &str = r"
if redis.call('HGET', KEYS[1], 'reportToken') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'reportToken', '')
  return 1
end
return 0
";

/// Forget, step 1 (on the record): fence a record that is dead (or has no state at all:
/// garbage) with the caller's token. Returns 1 fenced, 0 no record, -1 not dead.
pub(super) const FORGET_FENCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local s = redis.call('HGET', KEYS[1], 'state')
if s and s ~= 'dead' then return -1 end
redis.call('HSET', KEYS[1], 'forgetToken', ARGV[1])
return 1
";

/// Forget, step 3 (on the record): delete it only if it still carries our token and is still
/// dead. Invariant: an instance comes back to life only by rewriting its record from scratch
/// (WRITE_RECORD deletes the hash first), which drops the token, so this never deletes a
/// record that was re-registered after the fence; nor one that still owes its HEARTBEAT_LOST
/// report (-1: the caller settles it first).
pub(super) const FORGET_RECORD: &str = r"
if redis.call('HGET', KEYS[1], 'forgetToken') ~= ARGV[1] then return 0 end
local owed = redis.call('HGET', KEYS[1], 'reportToken')
if owed and owed ~= '' then return -1 end
local s = redis.call('HGET', KEYS[1], 'state')
if s and s ~= 'dead' then return 0 end
return redis.call('DEL', KEYS[1])
";

/// Forget, step 4 (on the index): remove the member only if its score (its last beat) is the
/// one read at the check. Invariant: a beat since then rewrote the score, and that member is
/// live: it keeps its entry.
pub(super) const FORGET_INDEX: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and s == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
";
