//! The index zset (`<prefix>:instances`) as a queue of heartbeat deadlines: each beat writes
//! its instance's score as `now + heartbeat TTL` (when its heartbeat key will expire), so a
//! sweep asks Redis "whose deadline has passed?" with one `ZRANGEBYSCORE` and reads only
//! those records. A sweep's cost then follows the deaths, not the size of the network.
//!
//! The score only says when to look: every decision (lost, expired) is still made from the
//! heartbeat key and the record themselves, so a wrong score (a writer's clock running behind
//! or ahead, a foreign or older writer that scores by last beat) costs a read or a delay,
//! never a false death. A candidate found alive is pushed back to its real deadline.

use redis::Value;

use crate::core::error::Result;
use crate::core::keys::Keys;
use crate::core::store::{Command, Store};
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

/// What a sweep learns from the index in one round trip.
#[derive(Debug, Default)]
pub struct IndexView {
    /// Members whose deadline is not after `now`, with their score as Redis wrote it.
    pub due: Vec<(String, String)>,
    /// The soonest deadline after `now` (ms epoch, the writer's clock).
    pub next_deadline: Option<u64>,
}

/// The commands of an index view at `now_ms`: the due members and the next deadline
/// (`ZRANGE ... BYSCORE`, Redis 6.2+, so the ACL's `+zrange` covers them).
pub fn view_cmds(keys: &Keys, now_ms: u64) -> Vec<Command> {
    let mut due = Command::read("ZRANGE", &keys.instances());
    due.arg("-inf").arg(now_ms).arg("BYSCORE").arg("WITHSCORES");
    let mut next = Command::read("ZRANGE", &keys.instances());
    next.arg(format!("({now_ms}"))
        .arg("+inf")
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(1)
        .arg("WITHSCORES");
    vec![due, next]
}

/// Parses the replies of [`view_cmds`], `None` if one failed or has another shape.
pub fn parse_view(replies: &[std::result::Result<Value, String>]) -> Option<IndexView> {
    let [Ok(due), Ok(next)] = replies else {
        return None;
    };
    let pairs = |v: &Value| -> Option<Vec<(String, String)>> {
        let Value::Array(items) = v else { return None };
        let mut out = Vec::with_capacity(items.len() / 2);
        if items.iter().all(|i| matches!(i, Value::Array(_))) {
            // RESP3: [member, score] pairs.
            for p in items {
                let Value::Array(p) = p else { continue };
                out.push((text(p.first()?)?, score_text(p.get(1)?)?));
            }
        } else {
            // RESP2: member, score, member, score...
            for pair in items.chunks(2) {
                if let [m, s] = pair {
                    out.push((text(m)?, score_text(s)?));
                }
            }
        }
        Some(out)
    };
    let due = pairs(due)?;
    let next_deadline = pairs(next)?
        .first()
        .and_then(|(_, s)| s.parse::<f64>().ok())
        .map(|s| s.max(0.0) as u64);
    Some(IndexView { due, next_deadline })
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
    fn view_parses_resp2_and_resp3_pairs() {
        let replies = vec![
            Ok(Value::Array(vec![
                bulk("a"),
                bulk("1000"),
                bulk("b"),
                bulk("1500"),
            ])),
            Ok(Value::Array(vec![Value::Array(vec![
                bulk("c"),
                Value::Double(2500.0),
            ])])),
        ];
        let v = parse_view(&replies).unwrap();
        assert_eq!(
            v.due,
            vec![("a".into(), "1000".into()), ("b".into(), "1500".into())]
        );
        assert_eq!(v.next_deadline, Some(2500));
        let failed = vec![Ok(Value::Array(vec![])), Err("x".into())];
        assert!(parse_view(&failed).is_none());
    }

    #[test]
    fn view_asks_for_due_members_and_the_next_deadline() {
        let cmds = view_cmds(&Keys::new("p"), 42);
        let args: Vec<Vec<String>> = cmds
            .iter()
            .map(|c| {
                c.cmd()
                    .args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => String::new(),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            args[0],
            [
                "ZRANGE",
                "p:instances",
                "-inf",
                "42",
                "BYSCORE",
                "WITHSCORES"
            ]
        );
        assert_eq!(args[1][2], "(42");
        assert_eq!(cmds.len(), 2);
    }
}
