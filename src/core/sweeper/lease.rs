//! The sweeper lease: one holder at a time, renewed each sweep, given up on drain.

use std::time::Duration;

use redis::Value;

use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::index::{self, IndexView};
use crate::core::keys::Keys;
use crate::core::store::{Command, Kind, Store};
use crate::core::task::TaskCtx;

/// Acquire or renew the lease: returns 1 when this instance holds it, else the negated
/// remaining PTTL of the other holder's lease (so a contender knows when to try again).
pub(super) const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return -redis.call('PTTL', KEYS[1])
";

/// Release the lease only if we hold it.
pub(super) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The lease attempt and, when a sweep is due in index mode, the index's due members in the
/// same round trip (one less per sweep). Falls back to the lease alone when Redis does not
/// know the script yet (after a restart), which loads it.
pub(super) async fn lease_with_view(
    ctx: &TaskCtx,
    lease: Duration,
    sweep_due: bool,
) -> Result<(Option<i64>, Option<IndexView>)> {
    let store = &ctx.store;
    if !sweep_due || ctx.cfg.discovery != Discovery::Index {
        return Ok((
            try_lease(store, &ctx.keys, ctx.instance_id(), lease).await?,
            None,
        ));
    }
    let keys = &ctx.keys;
    let mut evalsha = Command::with_args(Kind::Write, "EVALSHA", Some(&keys.sweeper()));
    evalsha
        .arg(redis::Script::new(LEASE).get_hash())
        .arg(1)
        .arg(keys.sweeper())
        .arg(ctx.instance_id())
        .arg(lease.as_millis() as u64);
    let cmds = vec![evalsha, index::view_cmd(keys)];
    let replies = store.query_many(cmds).await?;
    let view = replies
        .get(1)
        .and_then(|r| r.as_ref().ok())
        .and_then(index::parse_view);
    let (Some(Ok(Value::Int(r))), Some(view)) = (replies.first(), view) else {
        return Ok((
            try_lease(store, keys, ctx.instance_id(), lease).await?,
            None,
        ));
    };
    let held = if *r == 1 { None } else { Some(-r) };
    Ok((held, Some(view)))
}

/// `Ok(None)`: we hold the lease. `Ok(Some(ms))`: another holder's lease has `ms` left.
pub(super) async fn try_lease(
    store: &Store,
    keys: &Keys,
    id: &str,
    lease: Duration,
) -> Result<Option<i64>> {
    let key = keys.sweeper();
    let lease_ms = lease.as_millis().to_string();
    let r: i64 = store
        .script(&redis::Script::new(LEASE), &[&key], &[id, &lease_ms])
        .await?;
    Ok(if r == 1 { None } else { Some(-r) })
}

/// Gives the lease up (on drain), so another instance takes over at once.
pub async fn release(store: &Store, keys: &Keys, id: &str) -> Result<()> {
    let key = keys.sweeper();
    let _: i64 = store
        .script(&redis::Script::new(RELEASE), &[&key], &[id])
        .await?;
    Ok(())
}
