//! SCAN over every master (a cluster) or the one server.

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;

use super::{Command, Conn, Kind, Store};
use crate::core::error::Result;

impl Store {
    /// Every key matching `pattern`: SCAN on the server, or on every master of a cluster
    /// (a plain cluster SCAN would only visit one random node).
    pub async fn scan_match(&self, pattern: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        match self.conn() {
            Conn::Single(_) => self.scan_node(None, pattern, &mut keys).await?,
            Conn::Cluster(mut c) => {
                let ping = redis::cmd("PING");
                let routed = self
                    .timed(c.route_command(
                        ping,
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    ))
                    .await?;
                for addr in node_addresses(&routed) {
                    self.scan_node(Some(addr), pattern, &mut keys).await?;
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    pub(super) async fn scan_node(
        &self,
        node: Option<(String, u16)>,
        pattern: &str,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = Command::with_args(Kind::Read, "SCAN", None);
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let value = match (&node, self.conn()) {
                (Some((host, port)), Conn::Cluster(mut c)) => {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    self.timed(c.route_command(cmd.cmd, route)).await?
                }
                _ => self.query::<Value>(&cmd).await?,
            };
            let (next, batch): (u64, Vec<Vec<u8>>) = self.convert(value)?;
            out.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// The `host:port` keys of a multi-node reply.
fn node_addresses(v: &Value) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    if let Value::Map(entries) = v {
        for (k, _) in entries {
            let name = match k {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => continue,
            };
            if let Some((host, port)) = name.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push((host.to_string(), port));
                }
            }
        }
    }
    out
}
