//! Confirming that writes reached a replica (`WAIT 1`) where the key's master has one: a death
//! report counts as written only once a failover cannot lose it.

use redis::aio::ConnectionLike;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::Value;

use super::errors::labelled;
use super::{Conn, Store};
use crate::core::error::Result;
use crate::core::wire::slots::slot_of;

/// Replicas a `CLUSTER SLOTS` reply lists for `slot` (`None`: the slot is not in it).
fn replicas_in_slots(reply: &Value, slot: u16) -> Option<usize> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|r| {
        let Value::Array(r) = r else { return None };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (r.first(), r.get(1)) else {
            return None;
        };
        (*start <= i64::from(slot) && i64::from(slot) <= *end).then(|| r.len().saturating_sub(3))
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
    /// master over the connection the write took; standalone, the ones `ROLE` lists.
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
                let to_master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot, SlotAddr::Master),
                ));
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
        let role = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(10),
            Value::Array(vec![Value::Array(vec![]), Value::Array(vec![])]),
        ]);
        assert_eq!(replicas_in_role(&role), 2);
        assert_eq!(replicas_in_role(&Value::Nil), 0);
    }
}
