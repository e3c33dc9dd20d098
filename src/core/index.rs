//! The index zset (`<prefix>:instances`) as a queue of heartbeat deadlines: each beat writes
//! its instance's score as `TIME + heartbeat TTL` on the index's own node (when its heartbeat
//! key will expire), so a sweep asks that node "whose deadline has passed by *your* clock?"
//! in one script and reads only those records. A sweep's cost then follows the deaths, not the
//! size of the network, and no host's clock enters the question.
//!
//! The score only says when to look: every decision (lost, expired) is still made from the
//! heartbeat key and the record themselves, so a wrong score (a writer's clock running behind
//! or ahead, a foreign or older writer that scores by last beat) costs a read or a delay,
//! never a false death. A candidate found alive is pushed back to its real deadline.

use std::time::Instant;

use redis::Value;

use crate::core::error::Result;
use crate::core::keys::Keys;
use crate::core::store::{Command, Kind, Store};
use crate::core::wire::text::text;

/// Move one member's score from `ARGV[2]` to `ARGV[3]` only if it still is `ARGV[2]`.
/// Invariant: a sweeper never overwrites a deadline a beat wrote after the sweeper read the
/// score (a rejoin), so a late sweeper cannot postpone a live instance's next check.
/// (`ZADD XX INCR 0` reads the score without changing it: the documented least-privilege ACL
/// allows ZADD and ZRANGE on the index, not ZSCORE.)
const RESCORE: &str = r"
local s = redis.call('ZADD', KEYS[1], 'XX', 'INCR', 0, ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  return redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
end
return 0
";

/// A beat's index write on the index key's own clock. KEYS = [index]; ARGV = [id, ttl ms].
/// Invariant: a member's score is the Redis `TIME` (ms) of the index's node at its last beat
/// plus its TTL, never a host's clock; returns that deadline (the name of the lapse if it
/// passes).
pub const BEAT_INDEX: &str = r"
local t = redis.call('TIME')
local d = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], d, ARGV[1])
return d
";

/// Who is due, on the index node's clock. KEYS = [index]. Returns {now ms, {member, score,
/// ...} scored at or before now, {member, score} of the next deadline after now (or empty)}.
/// Invariant: "due" is decided by the same node's `TIME` that scored the deadlines.
pub const INDEX_VIEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'WITHSCORES')
local nxt = redis.call('ZRANGE', KEYS[1], '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
return {now, due, nxt}
";

/// What a sweep learns from the index in one round trip.
#[derive(Debug)]
pub struct IndexView {
    /// The index node's time when it answered (ms): every deadline below is on this clock.
    pub now: u64,
    /// When this process received it (to age `now` without a wall clock).
    pub read_at: Instant,
    /// Members whose deadline is not after `now`, with their score as Redis holds it.
    pub due: Vec<(String, String)>,
    /// The soonest deadline after `now` (ms, the index node's clock).
    pub next_deadline: Option<u64>,
}

impl Default for IndexView {
    fn default() -> Self {
        IndexView {
            now: 0,
            read_at: Instant::now(),
            due: Vec::new(),
            next_deadline: None,
        }
    }
}

impl IndexView {
    /// The index node's time now, as this view's `now` plus what elapsed here since.
    pub fn now_ms(&self) -> u64 {
        self.now + self.read_at.elapsed().as_millis() as u64
    }
}

/// The beat's index write as a command for a pipeline (`EVALSHA` of [`BEAT_INDEX`]).
pub fn beat_cmd(keys: &Keys, id: &str, ttl_ms: u64) -> Command {
    let key = keys.instances();
    let mut c = Command::with_args(Kind::Write, "EVALSHA", Some(&key));
    c.arg(redis::Script::new(BEAT_INDEX).get_hash())
        .arg(1)
        .arg(&key)
        .arg(id)
        .arg(ttl_ms);
    c
}

/// [`BEAT_INDEX`] alone (loads the script when Redis does not know it); the deadline written.
pub async fn beat_deadline(store: &Store, keys: &Keys, id: &str, ttl_ms: u64) -> Result<u64> {
    let d: i64 = store
        .script(
            &redis::Script::new(BEAT_INDEX),
            &[&keys.instances()],
            &[id, &ttl_ms.to_string()],
        )
        .await?;
    Ok(d.max(0) as u64)
}

/// The index view as a command for a pipeline (`EVALSHA` of [`INDEX_VIEW`], read-only).
pub fn view_cmd(keys: &Keys) -> Command {
    let key = keys.instances();
    let mut c = Command::with_args(Kind::Read, "EVALSHA", Some(&key));
    c.arg(redis::Script::new(INDEX_VIEW).get_hash())
        .arg(1)
        .arg(&key);
    c
}

/// [`INDEX_VIEW`] alone (loads the script when Redis does not know it).
pub async fn view(store: &Store, keys: &Keys) -> Result<IndexView> {
    let v: Value = store
        .script(&redis::Script::new(INDEX_VIEW), &[&keys.instances()], &[])
        .await?;
    Ok(parse_view(&v).unwrap_or_default())
}

/// Parses the reply of [`INDEX_VIEW`], `None` if it has another shape.
pub fn parse_view(reply: &Value) -> Option<IndexView> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [Value::Int(now), due, next] = parts.as_slice() else {
        return None;
    };
    let pairs = |v: &Value| -> Option<Vec<(String, String)>> {
        let Value::Array(items) = v else { return None };
        let mut out = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            if let [m, s] = pair {
                out.push((text(m)?, score_text(s)?));
            }
        }
        Some(out)
    };
    let due = pairs(due)?;
    let next_deadline = pairs(next)?
        .first()
        .and_then(|(_, s)| s.parse::<f64>().ok())
        .map(|s| s.max(0.0) as u64);
    Some(IndexView {
        now: (*now).max(0) as u64,
        read_at: Instant::now(),
        due,
        next_deadline,
    })
}

fn score_text(v: &Value) -> Option<String> {
    match v {
        Value::Double(d) => Some(d.to_string()),
        v => text(v),
    }
}

/// Pushes live members back to their real deadlines (`ZADD XX GT`: never earlier than what a
/// beat wrote meanwhile, never re-adding a member that left).
pub async fn push_back(store: &Store, keys: &Keys, deadlines: &[(String, u64)]) -> Result<()> {
    if deadlines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::write("ZADD", &keys.instances());
    cmd.arg("XX").arg("GT");
    for (id, at) in deadlines {
        cmd.arg(*at).arg(id);
    }
    let _: Value = store.query(&cmd).await?;
    Ok(())
}

/// Schedules dead or unreadable members' next look (when their record should have expired),
/// each only if its score is still the one this sweep read.
pub async fn reschedule(store: &Store, keys: &Keys, moves: &[(String, String, u64)]) -> Result<()> {
    let key = keys.instances();
    let script = redis::Script::new(RESCORE);
    let calls = moves.iter().map(|(id, old, new)| {
        let new = new.to_string();
        let (key, script) = (&key, &script);
        async move {
            store
                .script::<i64>(script, &[key], &[id, old, &new])
                .await
                .map(|_| ())
        }
    });
    for r in futures_util::future::join_all(calls).await {
        r?;
    }
    Ok(())
}

/// Removes members whose record is gone.
pub async fn remove(store: &Store, keys: &Keys, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::write("ZREM", &keys.instances());
    for id in ids {
        cmd.arg(id);
    }
    let _: i64 = store.query(&cmd).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn view_parses_the_script_reply() {
        let reply = Value::Array(vec![
            Value::Int(2000),
            Value::Array(vec![bulk("a"), bulk("1000"), bulk("b"), bulk("1500")]),
            Value::Array(vec![bulk("c"), bulk("2500")]),
        ]);
        let v = parse_view(&reply).unwrap();
        assert_eq!(v.now, 2000);
        assert_eq!(
            v.due,
            vec![("a".into(), "1000".into()), ("b".into(), "1500".into())]
        );
        assert_eq!(v.next_deadline, Some(2500));
        assert!(v.now_ms() >= 2000);
        let empty = Value::Array(vec![
            Value::Int(5),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]);
        let v = parse_view(&empty).unwrap();
        assert!(v.due.is_empty() && v.next_deadline.is_none());
        assert!(parse_view(&Value::Array(vec![Value::Int(1)])).is_none());
    }

    #[test]
    fn beat_and_view_commands_are_scripts_on_the_index() {
        let keys = Keys::new("p");
        let args = |c: &Command| -> Vec<String> {
            c.cmd()
                .args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                })
                .collect()
        };
        let beat = args(&beat_cmd(&keys, "x", 1500));
        assert_eq!(beat[0], "EVALSHA");
        assert_eq!(&beat[2..], ["1", "p:instances", "x", "1500"]);
        let view = args(&view_cmd(&keys));
        assert_eq!(&view[2..], ["1", "p:instances"]);
    }
}
