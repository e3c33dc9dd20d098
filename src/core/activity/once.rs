//! Appends that happen once per token: the `APPEND_ONCE` script (the contract of
//! `helpers/COORD.md`, shared by death reports and `idempotencyKey`).
//!
//! Each namespace (`idem` for application keys) has two companions of the stream in its hash
//! slot (`Keys::activity_companion`): a hash `…:<ns>` (token → entry ID) and a sorted set
//! `…:<ns>:at` (token scored by the Redis time it was written, for trimming).

/// Appends an entry unless its token was seen.
///
/// KEYS = [stream, ids hash, at zset]; ARGV = [token, maxlen-or-empty, field, value, ...].
/// Invariant: for one token the stream gets at most one entry while the token is in the ids
/// hash, and every call returns that entry's ID: `{id, 1}` when this call wrote it, `{id, 0}`
/// when an earlier one did (nothing written). The entry, its token and the token's time are
/// written by one script, so they exist together or not at all.
pub const APPEND_ONCE: &str = r#"
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return {id, 0} end
local args = {'XADD', KEYS[1]}
if ARGV[2] ~= '' then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[2]
end
args[#args + 1] = '*'
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
id = redis.call(unpack(args))
redis.call('HSET', KEYS[2], ARGV[1], id)
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return {id, 1}
"#;

/// The namespace of application `idempotencyKey`s.
pub const IDEM: &str = "idem";

/// Forgets the tokens of one namespace written before a cutoff, a bounded step at a time.
///
/// KEYS = [ids hash, at zset]; ARGV = [cutoff ms (inclusive), most tokens per call].
/// Invariant: a token leaves the hash and the zset together; returns how many it removed (a
/// caller repeats while that equals the limit).
pub const FORGET_TOKENS: &str = r#"
local old = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
if #old == 0 then return 0 end
redis.call('HDEL', KEYS[1], unpack(old))
redis.call('ZREM', KEYS[2], unpack(old))
return #old
"#;

/// Tokens forgotten per [`FORGET_TOKENS`] call.
pub const FORGET_STEP: u64 = 1000;

/// How long `idempotencyKey`s are kept when the stream is not trimmed (retention 0): 24 h.
pub const IDEM_KEEP_WITHOUT_RETENTION_MS: u64 = 24 * 3600 * 1000;
