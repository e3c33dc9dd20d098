//! The store's side of rotating credentials and connection names: checking new credentials
//! on a probe connection before they are published, spotting refused logins, and naming
//! connections with `CLIENT SETNAME`.
//!
//! Re-authentication itself is the redis crate's (`token-based-authentication`): every
//! connection the store builds subscribes to the credentials cell and sends `AUTH` in place
//! when it changes (see `credentials.rs`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{ErrorKind, RedisError, RedisResult};

use crate::core::config::{ConnectionConfig, Target};
use crate::core::credentials::{Creds, Validator};
use crate::core::error::{Error, Result};

/// Whether the server refused a login: wrong or revoked credentials, or none sent.
pub(super) fn is_auth_failure(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// Checks new credentials by logging in on a short-lived probe connection to the first
/// configured node (a standalone server or a cluster seed). Only a refused login is an
/// error: an unreachable server says nothing about the credentials, so they pass.
pub(super) fn validator(cfg: &ConnectionConfig) -> Validator {
    let mut base = cfg.clone();
    // The probe logs in with exactly the credentials under test (and holds no reference to
    // the cell, which owns the refresher that owns this closure).
    base.credentials = None;
    base.client_name = None;
    let url = match &base.target {
        Target::Standalone(u) => Some(u.clone()),
        Target::Cluster(nodes) => nodes.first().cloned(),
    };
    Arc::new(move |creds: Creds| {
        let mut cfg = base.clone();
        cfg.username = Some(creds.username.unwrap_or_else(|| "default".into()));
        cfg.password = Some(creds.password);
        let url = url.clone();
        Box::pin(async move {
            let Some(url) = url else { return Ok(()) };
            probe(&cfg, &url).await
        })
    })
}

async fn probe(cfg: &ConnectionConfig, url: &str) -> Result<()> {
    let Ok(client) = super::connect::standalone_client(cfg, url) else {
        return Ok(());
    };
    let conn_cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.command_timeout));
    let attempt = client.get_multiplexed_async_connection_with_config(&conn_cfg);
    match tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, attempt).await {
        Ok(Err(e)) if is_auth_failure(&e) || e.code() == Some("NOPERM") => {
            Err(Error::Redis(super::errors::describe(&e)))
        }
        _ => Ok(()),
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
