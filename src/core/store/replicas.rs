//! Confirming that writes reached a replica (`WAIT 1`) where the key's master has one: a death
//! report counts as written only once a failover cannot lose it.

use redis::aio::ConnectionLike;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;

use super::errors::labelled;
use super::{Conn, Store};
use crate::core::error::Result;
use crate::core::wire::slots::slot_of;

/// The range of a `CLUSTER SLOTS` reply that holds `slot`: `[start, end, master, replicas…]`.
fn range_of(reply: &Value, slot: u16) -> Option<&[Value]> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|r| {
        let Value::Array(r) = r else { return None };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (r.first(), r.get(1)) else {
            return None;
        };
        (*start <= i64::from(slot) && i64::from(slot) <= *end).then_some(r.as_slice())
    })
}

/// Replicas a `CLUSTER SLOTS` reply lists for `slot` (`None`: the slot is not in it).
fn replicas_in_slots(reply: &Value, slot: u16) -> Option<usize> {
    range_of(reply, slot).map(|r| r.len().saturating_sub(3))
}

/// The master (`host`, `port`) a `CLUSTER SLOTS` reply lists for `slot`.
fn master_in_slots(reply: &Value, slot: u16) -> Option<(String, u16)> {
    range_of(reply, slot).and_then(|r| {
        let Some(Value::Array(node)) = r.get(2) else {
            return None;
        };
        let host = match node.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = node.get(1) else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    })
}

/// Connected replicas in a `ROLE` reply of a master (0 for anything else).
fn replicas_in_role(reply: &Value) -> usize {
    match reply {
        Value::Array(parts) => match parts.get(2) {
            Some(Value::Array(replicas)) => replicas.len(),
            _ => 0,
        },
        _ => 0,
    }
}

impl Store {
    /// After a write of `key` on this connection: `Ok(true)` when a replica acknowledged
    /// every write of the connection so far within `timeout_ms` (`WAIT 1`), or when `key`'s
    /// master has no replica (nothing to wait for); `Ok(false)` when it has one that did not
    /// acknowledge in time. On a cluster the replicas are the ones `CLUSTER SLOTS` lists for
    /// the key's slot (so one whose link is down still counts), and `WAIT` goes to the slot's
    /// master by its address (the connection the write took), never to another node;
    /// standalone, the ones `ROLE` lists.
    pub async fn replicated(&self, key: &str, timeout_ms: u64) -> Result<bool> {
        let label = || format!("WAIT for {key}");
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(timeout_ms);
        let acked = match self.conn() {
            Conn::Single(mut c) => {
                let role = self
                    .timed(c.req_packed_command(&redis::cmd("ROLE")))
                    .await
                    .map_err(|e| labelled(e, label))?;
                if replicas_in_role(&role) == 0 {
                    return Ok(true);
                }
                self.timed(c.req_packed_command(&wait))
                    .await
                    .map_err(|e| labelled(e, label))?
            }
            Conn::Cluster(mut c) => {
                let slot = slot_of(key.as_bytes());
                let mut slots = redis::cmd("CLUSTER");
                slots.arg("SLOTS");
                let reply = self
                    .timed(c.route_command(
                        slots,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    ))
                    .await
                    .map_err(|e| labelled(e, label))?;
                if replicas_in_slots(&reply, slot).unwrap_or(0) == 0 {
                    return Ok(true);
                }
                // By address, never by slot: when the slot's master is gone (killed, not yet
                // replaced) the client sends a slot-routed command to a random node, whose
                // `WAIT` answers for its own replicas and would clear a report its master
                // lost. A master we hold no live connection to is an error: still owed.
                let Some((host, port)) = master_in_slots(&reply, slot) else {
                    return Ok(false);
                };
                let to_master =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                self.timed(c.route_command(wait, to_master))
                    .await
                    .map_err(|e| labelled(e, label))?
            }
        };
        let n: i64 = self.convert(acked).map_err(|e| labelled(e, label))?;
        Ok(n >= 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn counts_the_replicas_of_a_slot_and_of_a_master() {
        let slots = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node(1), node(4)]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node(2)]),
        ]);
        assert_eq!(replicas_in_slots(&slots, 100), Some(1));
        assert_eq!(replicas_in_slots(&slots, 9000), Some(0));
        assert_eq!(replicas_in_slots(&Value::Nil, 1), None);
        assert_eq!(master_in_slots(&slots, 100), Some(("127.0.0.1".into(), 1)));
        assert_eq!(master_in_slots(&slots, 9000), Some(("127.0.0.1".into(), 2)));
        assert_eq!(master_in_slots(&Value::Nil, 1), None);
        let role = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(10),
            Value::Array(vec![Value::Array(vec![]), Value::Array(vec![])]),
        ]);
        assert_eq!(replicas_in_role(&role), 2);
        assert_eq!(replicas_in_role(&Value::Nil), 0);
    }
}
