//! The store's side of rotating credentials and connection names: checking new credentials
//! on a probe connection before they are published, spotting refused logins, and naming
//! connections with `CLIENT SETNAME`.
//!
//! Re-authentication itself is the redis crate's (`token-based-authentication`): every
//! connection the store builds subscribes to the credentials cell and sends `AUTH` in place
//! when it changes (see `credentials.rs`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{ErrorKind, RedisError, RedisResult};

use crate::core::config::{ConnectionConfig, Target};
use crate::core::credentials::{Creds, Validator};
use crate::core::error::{Error, Result};
use crate::core::wire::slots::SlotTable;

/// Whether the server refused a login: wrong or revoked credentials, or none sent.
pub(super) fn is_auth_failure(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// Checks new credentials by logging in on short-lived probe connections: the server, or on
/// a cluster every master (ACLs are per node: a seed that accepts says nothing of the
/// others), found with `CLUSTER SLOTS` asked on the first seed that answers. Only a refused
/// login is an error: an unreachable node says nothing about the credentials.
pub(super) fn validator(cfg: &ConnectionConfig) -> Validator {
    let mut base = cfg.clone();
    // The probe logs in with exactly the credentials under test (and holds no reference to
    // the cell, which owns the refresher that owns this closure).
    base.credentials = None;
    base.client_name = None;
    Arc::new(move |creds: Creds| {
        let mut cfg = base.clone();
        cfg.username = Some(creds.username.unwrap_or_else(|| "default".into()));
        cfg.password = Some(creds.password);
        Box::pin(async move {
            match cfg.target.clone() {
                Target::Standalone(url) => probe(&cfg, &url).await.map(|_| ()),
                Target::Cluster(seeds) => every_master(&cfg, &seeds).await,
            }
        })
    })
}

/// Cluster: the first seed that answers is asked for the masters, then every master is
/// logged in to at once. A refusal anywhere (the seed included) is the answer.
async fn every_master(cfg: &ConnectionConfig, seeds: &[String]) -> Result<()> {
    for seed in seeds {
        let Some(mut conn) = probe(cfg, seed).await? else {
            continue;
        };
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply = tokio::time::timeout(cfg.command_timeout, conn.req_packed_command(&slots))
            .await
            .ok()
            .and_then(|r| r.ok());
        let Some(table) = reply.as_ref().and_then(SlotTable::from_cluster_slots) else {
            return Ok(()); // the seed accepted them; the map is not ours to read
        };
        let scheme = if seed.starts_with("rediss://") {
            "rediss"
        } else {
            "redis"
        };
        let mut nodes: Vec<String> = (0..table.masters())
            .map(|m| table.address(m))
            .filter(|(host, _)| !host.is_empty())
            .map(|(host, port)| match host.contains(':') {
                true => format!("{scheme}://[{host}]:{port}"),
                false => format!("{scheme}://{host}:{port}"),
            })
            .collect();
        nodes.sort();
        nodes.dedup();
        let checks = futures_util::future::join_all(nodes.iter().map(|url| probe(cfg, url)));
        for (url, r) in nodes.iter().zip(checks.await) {
            r.map_err(|e| Error::Redis(format!("{e} (on {})", redact_node(url))))?;
        }
        return Ok(());
    }
    Ok(())
}

/// `host:port` of a node URL (it carries no credentials: they are in the config).
fn redact_node(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Logs in to `url` with `cfg`'s credentials: `Err` when refused, `Ok(None)` when the node
/// could not be reached or answered nothing in time, else the connection.
async fn probe(cfg: &ConnectionConfig, url: &str) -> Result<Option<MultiplexedConnection>> {
    let Ok(client) = super::connect::standalone_client(cfg, url) else {
        return Ok(None);
    };
    let conn_cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.command_timeout));
    let attempt = client.get_multiplexed_async_connection_with_config(&conn_cfg);
    match tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, attempt).await {
        Ok(Err(e)) if is_auth_failure(&e) || e.code() == Some("NOPERM") => {
            Err(Error::Redis(super::errors::describe(&e)))
        }
        Ok(Ok(conn)) => Ok(Some(conn)),
        _ => Ok(None),
    }
}

fn setname(name: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("SETNAME").arg(name);
    cmd
}

/// `CLIENT SETNAME` on a standalone connection. A slow answer is not a refusal.
pub(super) async fn set_name(
    conn: &mut ConnectionManager,
    name: &str,
    limit: Duration,
) -> RedisResult<()> {
    match tokio::time::timeout(limit, conn.req_packed_command(&setname(name))).await {
        Ok(r) => r.and_then(|v| v.extract_error()).map(|_| ()),
        Err(_) => Ok(()),
    }
}

/// `CLIENT SETNAME` on the connection to every node (masters and replicas) of a cluster.
pub(super) async fn set_name_all_nodes(
    mut conn: ClusterConnection,
    name: &str,
    limit: Duration,
) -> RedisResult<()> {
    let route = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllNodes,
        Some(ResponsePolicy::AllSucceeded),
    ));
    match tokio::time::timeout(limit, conn.route_command(setname(name), route)).await {
        Ok(r) => r.and_then(|v| v.extract_error()).map(|_| ()),
        Err(_) => Ok(()),
    }
}

/// Notes that a server refused `CLIENT SETNAME` (tracing only; the network logs the first
/// refusal of its shared connection once, at debug).
pub(super) fn name_refused(text: &str) -> String {
    tracing::debug!("CLIENT SETNAME refused: {text}");
    text.to_string()
}
