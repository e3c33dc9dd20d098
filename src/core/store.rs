//! The Redis connection: standalone (auto-reconnecting manager) or OSS cluster, with explicit
//! timeouts, secret-free errors and connection-status tracking.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Client, Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError,
    TlsCertificates, TlsMode, Value,
};

use crate::core::config::{ConnectionConfig, Target};
use crate::core::error::{Error, Result};

/// Called with `(connected, error)` when the link to Redis goes down or comes back.
pub type StatusListener = Arc<dyn Fn(bool, Option<String>) + Send + Sync>;

/// Consecutive timeouts after which a standalone connection is rebuilt (a half-open socket
/// keeps timing out and the manager does not reconnect on timeouts by itself).
const TIMEOUT_STRIKES: u32 = 3;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A cheap-to-clone handle on one Redis connection (multiplexed).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: std::sync::Mutex<Conn>,
    cfg: ConnectionConfig,
    /// Secrets to scrub from any error text: the password option and URL passwords.
    secrets: Vec<String>,
    response_timeout: Duration,
    connected: AtomicBool,
    strikes: AtomicU32,
    on_status: Option<StatusListener>,
}

static CRYPTO: Once = Once::new();

/// Installs ring as rustls' process-wide crypto provider, once (needed before any TLS use).
pub fn install_crypto() {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Store {
    /// Connects within `connect_timeout`. `on_status` hears later losses and recoveries.
    pub async fn connect(
        cfg: &ConnectionConfig,
        on_status: Option<StatusListener>,
    ) -> Result<Self> {
        Self::connect_with(cfg, cfg.command_timeout, on_status).await
    }

    /// A second, independent connection of the same kind whose commands may block for up to
    /// `block` (for `XREAD BLOCK`, which would stall a shared connection).
    pub async fn dedicated(&self, block: Duration) -> Result<Self> {
        Self::connect_with(
            &self.inner.cfg,
            self.inner.cfg.command_timeout + block,
            self.inner.on_status.clone(),
        )
        .await
    }

    async fn connect_with(
        cfg: &ConnectionConfig,
        response_timeout: Duration,
        on_status: Option<StatusListener>,
    ) -> Result<Self> {
        install_crypto();
        let secrets = secrets_of(cfg);
        let scrub = |e: RedisError| Error::Redis(scrub(&secrets, &describe(&e)));
        let deadline = cfg.connect_timeout;
        let fut = async {
            match &cfg.target {
                Target::Standalone(url) => {
                    let client = standalone_client(cfg, url).map_err(scrub)?;
                    let mgr_cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(cfg.connect_timeout))
                        .set_response_timeout(Some(response_timeout))
                        .set_number_of_retries(2)
                        .set_min_delay(Duration::from_millis(50))
                        .set_max_delay(Duration::from_millis(1000));
                    ConnectionManager::new_with_config(client, mgr_cfg)
                        .await
                        .map(Conn::Single)
                        .map_err(scrub)
                }
                Target::Cluster(nodes) => {
                    let client = cluster_client(cfg, nodes, response_timeout).map_err(scrub)?;
                    client
                        .get_async_connection()
                        .await
                        .map(Conn::Cluster)
                        .map_err(scrub)
                }
            }
        };
        let conn = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "could not connect to Redis at {} within {} ms",
                    crate::core::config::redact_target(&cfg.target),
                    deadline.as_millis()
                )))
            }
        };
        // A probe, so a server that accepts TCP but refuses us (auth, ACL) fails here.
        let store = Store {
            inner: Arc::new(Inner {
                conn: std::sync::Mutex::new(conn),
                cfg: cfg.clone(),
                secrets,
                response_timeout,
                connected: AtomicBool::new(true),
                strikes: AtomicU32::new(0),
                on_status,
            }),
        };
        let _: Value = store.query(&redis::cmd("PING")).await?;
        Ok(store)
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.conn_guard(), Conn::Cluster(_))
    }

    fn conn_guard(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn(&self) -> Conn {
        self.conn_guard().clone()
    }

    /// Runs one command with the command timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn();
        let value = self
            .timed(async {
                match &mut conn {
                    Conn::Single(c) => c.req_packed_command(cmd).await,
                    Conn::Cluster(c) => c.req_packed_command(cmd).await,
                }
            })
            .await?;
        self.convert(value)
    }

    /// Runs a pipeline (standalone only: cluster pipelines must stay in one slot, so callers
    /// on a cluster use [`Store::query_many`]).
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>> {
        let mut conn = self.conn();
        let n = pipe.len();
        let values = self
            .timed(async {
                match &mut conn {
                    Conn::Single(c) => c.req_packed_commands(pipe, 0, n).await,
                    Conn::Cluster(c) => c.req_packed_commands(pipe, 0, n).await,
                }
            })
            .await?;
        Ok(values)
    }

    /// Runs independent single-key commands as one round trip: a pipeline on a standalone
    /// server, concurrent requests on a cluster (each goes to its own slot's node). Each
    /// command keeps its own result so one bad key cannot fail the others.
    pub async fn query_many(
        &self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        if self.is_cluster() {
            let futs = cmds.iter().map(|c| self.query::<Value>(c));
            let results = join_all(futs).await;
            // A connection-level failure fails the whole call; a per-key error stays per key.
            let mut out = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    Ok(v) => out.push(Ok(v)),
                    Err(Error::Redis(m)) => out.push(Err(m)),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        } else {
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c);
            }
            let values = self.pipeline(&pipe).await?;
            Ok(values
                .into_iter()
                .map(|v| match v {
                    Value::ServerError(e) => Err(scrub(&self.inner.secrets, &format!("{e:?}"))),
                    v => Ok(v),
                })
                .collect())
        }
    }

    /// Runs a Lua script (which must name at least one key, so a cluster routes it).
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.conn();
        let value: Value = self
            .timed(async {
                match &mut conn {
                    Conn::Single(c) => inv.invoke_async(c).await,
                    Conn::Cluster(c) => inv.invoke_async(c).await,
                }
            })
            .await?;
        self.convert(value)
    }

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

    async fn scan_node(
        &self,
        node: Option<(String, u16)>,
        pattern: &str,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
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
                    self.timed(c.route_command(cmd, route)).await?
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

    /// Maps a redis error to ours with secrets removed.
    pub fn map_err(&self, e: RedisError) -> Error {
        if e.is_timeout() {
            return Error::Timeout(format!(
                "Redis did not answer within {} ms",
                self.inner.response_timeout.as_millis()
            ));
        }
        Error::Redis(scrub(&self.inner.secrets, &describe(&e)))
    }

    fn convert<T: FromRedisValue>(&self, v: Value) -> Result<T> {
        if let Value::ServerError(e) = &v {
            return Err(Error::Redis(scrub(&self.inner.secrets, &format!("{e:?}"))));
        }
        T::from_redis_value(v)
            .map_err(|e| Error::Redis(format!("unexpected reply from Redis: {e}")))
    }

    /// Applies the timeout and tracks connection health around one request.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let limit = self.inner.response_timeout + Duration::from_millis(50);
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => {
                self.inner.strikes.store(0, Ordering::Relaxed);
                self.set_connected(true, None);
                Ok(v)
            }
            Ok(Err(e)) => {
                let err = self.map_err(e.clone());
                if is_link_failure(&e) {
                    self.set_connected(false, Some(err.to_string()));
                    if e.is_timeout() {
                        self.strike().await;
                    }
                }
                Err(err)
            }
            Err(_) => {
                let err = Error::Timeout(format!(
                    "Redis did not answer within {} ms",
                    self.inner.response_timeout.as_millis()
                ));
                self.set_connected(false, Some(err.to_string()));
                self.strike().await;
                Err(err)
            }
        }
    }

    /// Counts a timeout; after a few in a row, replaces a standalone connection.
    async fn strike(&self) {
        let n = self.inner.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if n < TIMEOUT_STRIKES || self.is_cluster() {
            return;
        }
        self.inner.strikes.store(0, Ordering::Relaxed);
        if let Target::Standalone(url) = &self.inner.cfg.target {
            let Ok(client) = standalone_client(&self.inner.cfg, url) else {
                return;
            };
            let mgr_cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.inner.cfg.connect_timeout))
                .set_response_timeout(Some(self.inner.response_timeout));
            if let Ok(Ok(m)) = tokio::time::timeout(
                self.inner.cfg.connect_timeout,
                ConnectionManager::new_with_config(client, mgr_cfg),
            )
            .await
            {
                *self.conn_guard() = Conn::Single(m);
                tracing::debug!("replaced a Redis connection after repeated timeouts");
            }
        }
    }

    fn set_connected(&self, up: bool, error: Option<String>) {
        let was = self.inner.connected.swap(up, Ordering::AcqRel);
        if was != up {
            if let Some(cb) = &self.inner.on_status {
                cb(up, error);
            }
        }
    }
}

/// Whether an error means the link (not the command) failed.
fn is_link_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// The error's text, with the command-level detail Redis gave.
fn describe(e: &RedisError) -> String {
    e.to_string()
}

/// Replaces every secret in `text` with `***`.
pub fn scrub(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

fn secrets_of(cfg: &ConnectionConfig) -> Vec<String> {
    let mut out: Vec<String> = cfg.password.iter().cloned().collect();
    let urls: Vec<&String> = match &cfg.target {
        Target::Standalone(u) => vec![u],
        Target::Cluster(n) => n.iter().collect(),
    };
    for u in urls {
        if let Ok(parsed) = url::Url::parse(u) {
            if let Some(p) = parsed.password() {
                out.push(p.to_string());
                if let Ok(decoded) = url_decode(p) {
                    out.push(decoded);
                }
            }
        }
    }
    out
}

fn url_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .ok_or(())?;
    String::from_utf8(bytes).map_err(|_| ())
}

fn standalone_client(cfg: &ConnectionConfig, url: &str) -> redis::RedisResult<Client> {
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

fn cluster_client(
    cfg: &ConnectionConfig,
    nodes: &[String],
    response_timeout: Duration,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    let mut b = ClusterClientBuilder::new(nodes.iter().map(|s| s.as_str()))
        .connection_timeout(cfg.connect_timeout)
        .response_timeout(response_timeout)
        // No silent re-send of a timed-out write: a timeout surfaces to the caller.
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(1000);
    if let Some(u) = &cfg.username {
        b = b.username(u);
    }
    if let Some(p) = &cfg.password {
        b = b.password(p);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret() {
        let s = vec!["p@ss".to_string(), "other".to_string()];
        assert_eq!(scrub(&s, "auth p@ss failed, other"), "auth *** failed, ***");
    }

    #[test]
    fn url_passwords_are_secrets_too() {
        let cfg = ConnectionConfig {
            target: Target::Standalone("redis://u:p%40ss@h:1".into()),
            username: None,
            password: Some("opt".into()),
            tls_ca_cert: None,
            tls_insecure: false,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        };
        let s = secrets_of(&cfg);
        assert!(s.contains(&"opt".to_string()));
        assert!(s.contains(&"p%40ss".to_string()));
        assert!(s.contains(&"p@ss".to_string()));
    }
}
