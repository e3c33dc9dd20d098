//! Building clients: standalone connection managers and cluster clients, with TLS (custom CA,
//! insecure mode) and AUTH/ACL credentials from the connection config.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisError, TlsCertificates, TlsMode};

use super::errors::{connect_failure, describe};
use super::Conn;
use crate::core::config::{ConnectionConfig, Target};
use crate::core::credentials::scrub;
use crate::core::credentials::Validator;
use crate::core::error::{Error, Result};
use crate::core::wire::tls::install_crypto;

/// Opens the connection(s) for `cfg` within its connect timeout: the shared one and, on a
/// cluster with `with_once`, the send-once one (see [`super::Store`]). `validator` checks
/// rotating credentials before they are used (given by the caller, so building clients does
/// not depend on the rotation code that itself builds probe clients).
pub(super) async fn open(
    cfg: &ConnectionConfig,
    secrets: &[String],
    response_timeout: Duration,
    with_once: bool,
    validator: impl FnOnce() -> Validator,
) -> Result<(Conn, Option<ClusterConnection>)> {
    install_crypto();
    let began = tokio::time::Instant::now();
    if let Some(creds) = &cfg.credentials {
        // The first credentials (start() and the first query wait for them), within the same
        // connect timeout as the connection itself.
        creds.ready(cfg.connect_timeout, validator()).await?;
    }
    let scrub = |e: RedisError| {
        let text = scrub(secrets, &describe(&e));
        let text = match &cfg.credentials {
            Some(c) => c.scrub(&text),
            None => text,
        };
        Error::Redis(connect_failure(cfg, &text))
    };
    let deadline = cfg.connect_timeout.saturating_sub(began.elapsed());
    let fut = async {
        connections(cfg, response_timeout, with_once)
            .await
            .map_err(scrub)
    };
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!(
            "could not connect to Redis at {} within {} ms",
            crate::core::config::redact_target(&cfg.target),
            deadline.as_millis()
        ))),
    }
}

/// Fresh connections (after repeated timeouts), as [`open`] makes them once the credentials
/// are ready, if they can be made within the connect timeout; `None` on failure.
pub(super) async fn reopen(
    cfg: &ConnectionConfig,
    response_timeout: Duration,
    with_once: bool,
) -> Option<(Conn, Option<ClusterConnection>)> {
    tokio::time::timeout(
        cfg.connect_timeout,
        connections(cfg, response_timeout, with_once),
    )
    .await
    .ok()?
    .ok()
}

/// The shared connection (a standalone connection manager, or a cluster client) and, on a
/// cluster with `with_once`, the send-once client.
async fn connections(
    cfg: &ConnectionConfig,
    response_timeout: Duration,
    with_once: bool,
) -> redis::RedisResult<(Conn, Option<ClusterConnection>)> {
    match &cfg.target {
        Target::Standalone(url) => {
            let client = standalone_client(cfg, url)?;
            let mgr_cfg = manager_config(cfg, response_timeout);
            let manager = ConnectionManager::new_with_config(client, mgr_cfg).await?;
            Ok((Conn::Single(manager), None))
        }
        Target::Cluster(nodes) => {
            let client = cluster_client(cfg, nodes, response_timeout, 3)?;
            let conn = client.get_async_connection().await?;
            let once = if with_once {
                let client = cluster_client(cfg, nodes, response_timeout, 0)?;
                Some(client.get_async_connection().await?)
            } else {
                None
            };
            Ok((Conn::Cluster(conn), once))
        }
    }
}

/// The standalone connection manager's settings (the first connection and replacements).
fn manager_config(cfg: &ConnectionConfig, response_timeout: Duration) -> ConnectionManagerConfig {
    let c = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(1000));
    // Rotating credentials: every (re)connection authenticates with the newest value and
    // re-AUTHs in place on each rotation (the crate's token-based authentication).
    match &cfg.credentials {
        Some(creds) => c.set_credentials_provider(creds.provider()),
        None => c,
    }
}

pub(super) fn standalone_client(cfg: &ConnectionConfig, url: &str) -> redis::RedisResult<Client> {
    let mut info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    info = info.set_redis_settings(settings);
    if let ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone() {
        if cfg.tls_insecure {
            info = info.set_addr(ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params: None,
            });
        } else if let Some(ca) = &cfg.tls_ca_cert {
            return Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.as_bytes().to_vec()),
                },
            );
        }
    }
    Client::open(info)
}

/// `retries`: how often the client itself retries a request (redirects, cluster-state errors,
/// and dropped connections, for which it re-sends the command). 0 for the send-once client.
fn cluster_client(
    cfg: &ConnectionConfig,
    nodes: &[String],
    response_timeout: Duration,
    retries: u32,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    let mut b = ClusterClientBuilder::new(nodes.iter().map(|s| s.as_str()))
        .connection_timeout(cfg.connect_timeout)
        .response_timeout(response_timeout)
        // No silent re-send of a timed-out write: a timeout surfaces to the caller (our own
        // timer is at most the response timeout + 50 ms).
        .retries(retries)
        .min_retry_wait(50)
        .max_retry_wait(1000);
    if let Some(u) = &cfg.username {
        b = b.username(u);
    }
    if let Some(p) = &cfg.password {
        b = b.password(p);
    }
    if let Some(creds) = &cfg.credentials {
        // Every node connection, also one to a node found after a failover or resharding.
        b = b.set_credentials_provider(creds.provider());
    }
    if nodes.iter().any(|n| n.starts_with("rediss://")) {
        if cfg.tls_insecure {
            b = b.tls(TlsMode::Insecure);
        } else {
            b = b.tls(TlsMode::Secure);
            if let Some(ca) = &cfg.tls_ca_cert {
                b = b.certs(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.as_bytes().to_vec()),
                });
            }
        }
    }
    b.build()
}
