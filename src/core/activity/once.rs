//! Idempotent appends to the activity stream: an entry is written at most once per token.
//!
//! A token's entry ID is recorded in a hash beside the stream (`…:<ns>`, token → ID), and the
//! token in a sorted set scored by Redis' time (`…:<ns>:at`), both in the stream's hash slot
//! (see [`crate::core::keys::companion`]) so one script holds all three keys on a cluster.
//! Two namespaces: `reports` (HEARTBEAT_LOST, one token per lapse) and `idem` (an
//! application's `idempotencyKey`). The trimmer drops tokens older than the stream's
//! retention (24 h without one), in bounded steps.

use redis::Value;

use super::stream::ActivityLog;
use crate::core::error::{Error, Result};
use crate::core::keys::once_keys;
use crate::core::wire::text::text;

/// Namespace of HEARTBEAT_LOST report tokens.
pub const REPORTS: &str = "reports";
/// Namespace of application idempotency keys.
pub const IDEM: &str = "idem";

/// Append an entry once per token. KEYS = [stream, ids hash, at zset]; ARGV = [token,
/// maxlen-or-empty, field, value, ...]. Returns {id, 1} when it wrote the entry, {id, 0} when
/// the token was already recorded (nothing written).
/// Invariant: while a token is recorded, no second entry is written for it; the check, the
/// XADD and the recording are one script on one slot, so a re-sent call, a resumed reporter
/// or a second reporter of the same token only reads the first ID back. The token's time is
/// recorded before the XADD, so a refused XADD (ACL, OOM) leaves at most a stray time that the
/// trimmer drops, never an entry without its token.
pub const APPEND_ONCE: &str = r"
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return {id, 0} end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
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
return {id, 1}
";

/// Drop tokens recorded before `Redis now - ARGV[1]` ms, at most ARGV[2] of them; returns how
/// many. KEYS = [ids hash, at zset]. Invariant: a token leaves the hash and the zset together.
pub const TRIM_ONCE: &str = r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local old = redis.call('ZRANGE', KEYS[2], '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
";

impl ActivityLog {
    /// Appends `fields` once per `token` in namespace `ns` ([`REPORTS`], [`IDEM`]): `(id,
    /// true)` when this call wrote the entry, `(first id, false)` when the token already had
    /// one. Idempotent, so the cluster client may re-send it after a lost reply.
    pub async fn append_once(
        &self,
        ns: &str,
        token: &str,
        fields: &[(String, String)],
    ) -> Result<(String, bool)> {
        let (ids, at) = once_keys(self.key(), ns);
        let mut args: Vec<&str> = Vec::with_capacity(2 + fields.len() * 2);
        args.push(token);
        args.push("");
        for (k, v) in fields {
            args.push(k);
            args.push(v);
        }
        let reply: Vec<Value> = self
            .store()
            .script(
                &redis::Script::new(APPEND_ONCE),
                &[self.key(), &ids, &at],
                &args,
            )
            .await?;
        match reply.as_slice() {
            [id, Value::Int(n)] => match text(id) {
                Some(id) => Ok((id, *n == 1)),
                None => Err(Error::Redis(format!(
                    "unexpected APPEND_ONCE reply: {reply:?}"
                ))),
            },
            _ => Err(Error::Redis(format!(
                "unexpected APPEND_ONCE reply: {reply:?}"
            ))),
        }
    }

    /// Drops the tokens of every namespace recorded more than `keep_ms` ago (Redis' time), in
    /// steps of [`TRIM_STEP`]; how many.
    pub async fn trim_once(&self, keep_ms: u64) -> Result<u64> {
        let mut total = 0;
        let keep = keep_ms.to_string();
        let step = TRIM_STEP.to_string();
        for ns in [REPORTS, IDEM] {
            let (ids, at) = once_keys(self.key(), ns);
            loop {
                let n: u64 = self
                    .store()
                    .script(
                        &redis::Script::new(TRIM_ONCE),
                        &[&ids, &at],
                        &[&keep, &step],
                    )
                    .await?;
                total += n;
                if n < TRIM_STEP {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// Most tokens one trim script drops (bounded steps: a big backlog never blocks Redis long).
pub const TRIM_STEP: u64 = 500;
