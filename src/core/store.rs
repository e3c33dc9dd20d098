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
    /// Cluster only: a second connection whose client never retries by itself, for commands
    /// that must not be sent twice (`XADD *`). The cluster client re-sends a request whose
    /// connection dropped, and a dropped reply does not mean the server did not execute it:
    /// with CLIENT KILL during a write loop that doubled ~1 in 800 entries.
    once: Option<ClusterConnection>,
    cfg: ConnectionConfig,
    /// Secrets to scrub from any error text: the password option and URL passwords.
    secrets: Vec<String>,
    response_timeout: Duration,
    connected: AtomicBool,
    strikes: AtomicU32,
    /// A replacement connection is being made (after repeated timeouts).
    replacing: AtomicBool,
    on_status: Option<StatusListener>,
    /// Connections of our own for range reads decoded from raw bytes (`direct.rs`).
    direct: crate::core::direct::Direct,
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
        Self::connect_with(cfg, cfg.command_timeout, on_status, true).await
    }

    /// A second, independent connection of the same kind whose commands may block for up to
    /// `block` (for `XREAD BLOCK`, which would stall a shared connection). It reports no
    /// `connection` status of its own: the shared connection speaks for the link, so one
    /// outage is one disconnected/connected pair, not one per connection.
    pub async fn dedicated(&self, block: Duration) -> Result<Self> {
        Self::connect_with(
            &self.inner.cfg,
            self.inner.cfg.command_timeout + block,
            None,
            false,
        )
        .await
    }

    async fn connect_with(
        cfg: &ConnectionConfig,
        response_timeout: Duration,
        on_status: Option<StatusListener>,
        with_once: bool,
    ) -> Result<Self> {
        install_crypto();
        let secrets = secrets_of(cfg);
        let scrub =
            |e: RedisError| Error::Redis(connect_failure(cfg, &scrub(&secrets, &describe(&e))));
        let deadline = cfg.connect_timeout;
        let fut = async {
            match &cfg.target {
                Target::Standalone(url) => {
                    let client = standalone_client(cfg, url).map_err(scrub)?;
                    let mgr_cfg = manager_config(cfg, response_timeout);
                    ConnectionManager::new_with_config(client, mgr_cfg)
                        .await
                        .map(|c| (Conn::Single(c), None))
                        .map_err(scrub)
                }
                Target::Cluster(nodes) => {
                    let client = cluster_client(cfg, nodes, response_timeout, 3).map_err(scrub)?;
                    let conn = client.get_async_connection().await.map_err(scrub)?;
                    let once = if with_once {
                        let client =
                            cluster_client(cfg, nodes, response_timeout, 0).map_err(scrub)?;
                        Some(client.get_async_connection().await.map_err(scrub)?)
                    } else {
                        None
                    };
                    Ok((Conn::Cluster(conn), once))
                }
            }
        };
        let (conn, once) = match tokio::time::timeout(deadline, fut).await {
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
                once,
                cfg: cfg.clone(),
                secrets,
                response_timeout,
                connected: AtomicBool::new(true),
                strikes: AtomicU32::new(0),
                replacing: AtomicBool::new(false),
                on_status,
                direct: crate::core::direct::Direct::new(cfg),
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

    /// Runs one command with the command timeout. A failure names the command (and its key),
    /// e.g. `XADD perseus:activity failed: NOPERM this user has no permissions to run the
    /// 'xadd' command`.
    ///
    /// A read-only command that fails because the link dropped (the server closed it, e.g.
    /// `CLIENT KILL`, a restart or a failover) is sent once more on the reconnected link: the
    /// multiplexed connection only notices a dropped socket when it next writes, so the first
    /// command after a drop would fail although the server is fine. Writes are never re-sent
    /// (`XADD *` is not idempotent).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        if let Some(once) = &self.inner.once {
            if !is_idempotent(cmd) {
                return self.query_once(cmd, once.clone()).await;
            }
        }
        let value = self.query_raw(cmd).await.map_err(|(e, _)| e)?;
        self.convert(value)
            .map_err(|e| labelled(e, || cmd_label(cmd)))
    }

    /// One command on the shared connection (read-only ones retried once after a dropped
    /// link). The reply may be a `Value::ServerError`. A failure comes labelled, with whether
    /// it is about the key's data (a per-key error) rather than the link, the cluster's state
    /// or the user's rights.
    async fn query_raw(&self, cmd: &Cmd) -> std::result::Result<Value, (Error, bool)> {
        let retry = is_read_only(cmd);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.conn();
            let may_retry = retry && attempt == 1;
            match self
                .timed_with(
                    async {
                        match &mut conn {
                            Conn::Single(c) => c.req_packed_command(cmd).await,
                            Conn::Cluster(c) => c.req_packed_command(cmd).await,
                        }
                    },
                    !may_retry,
                )
                .await
            {
                Ok(v) => return Ok(v),
                Err((_, Some(e))) if may_retry && is_dropped(&e) => continue,
                Err((err, e)) => {
                    let data = e.as_ref().is_some_and(|e| {
                        is_data_error(redis::ServerError::try_from(e.clone()).ok().as_ref())
                    });
                    return Err((labelled(err, || cmd_label(cmd)), data));
                }
            }
        }
    }

    /// Cluster: sends a non-idempotent command at most once. It is sent again only when the
    /// server provably did not run it (a redirect or a cluster-state refusal: MOVED, TRYAGAIN,
    /// CLUSTERDOWN, MASTERDOWN, LOADING; or the connection was refused), until the command
    /// timeout. A dropped link or a timeout surfaces to the caller: the entry may or may not
    /// have been written.
    async fn query_once<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        mut conn: ClusterConnection,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = async {
                match tokio::time::timeout(remaining, conn.req_packed_command(cmd)).await {
                    Ok(r) => r,
                    Err(_) => Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out",
                    ))),
                }
            };
            let (err, retryable) = match attempt.await {
                Ok(v) => {
                    self.set_connected(true, None);
                    return self.convert(v).map_err(|e| labelled(e, || cmd_label(cmd)));
                }
                Err(e) => {
                    let retryable = was_not_run(&e);
                    (e, retryable)
                }
            };
            if retryable && tokio::time::Instant::now() + wait < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(400));
                continue;
            }
            let mapped = self.map_err(err.clone());
            if is_link_failure(&err) || retryable {
                self.set_connected(false, Some(mapped.to_string()));
            }
            return Err(labelled(mapped, || cmd_label(cmd)));
        }
    }

    /// One read-only command about `key` over a direct connection, its reply as raw bytes
    /// (for [`crate::core::resp`]). `None` when that path cannot serve it, or the reply is a
    /// server error: the caller then sends it through [`Store::query`], which words errors.
    pub async fn query_bytes(&self, key: &str, cmd: &Cmd) -> Option<Result<Vec<u8>>> {
        use crate::core::direct::Miss;
        let slot_map = || async {
            let mut slots = redis::cmd("CLUSTER");
            slots.arg("SLOTS");
            let v: Value = self.query(&slots).await.ok()?;
            crate::core::direct::parse_slots(&v)
        };
        let packed = cmd.get_packed_command();
        match self.inner.direct.request(key, &packed, slot_map).await {
            Ok(bytes) if !bytes.starts_with(b"-") => Some(Ok(bytes)),
            Ok(_) | Err(Miss::Fallback(_)) => {
                self.inner.direct.forget_slots();
                None
            }
            Err(Miss::Timeout) => {
                let err = Error::Timeout(format!(
                    "Redis did not answer within {} ms",
                    self.inner.response_timeout.as_millis()
                ));
                self.set_connected(false, Some(err.to_string()));
                Some(Err(labelled(err, || cmd_label(cmd))))
            }
        }
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

    /// Sends writes that must never be sent twice (`XADD *`) as one pipeline, each command at
    /// most once, and returns each command's own outcome in order: a per-command server error
    /// (say OOM) fails that command alone. A dropped link or a timeout fails every command of
    /// the pipeline (each may or may not have been written). On a cluster the commands go
    /// through the send-once connection; commands that provably did not run (MOVED,
    /// TRYAGAIN, CLUSTERDOWN...: a whole-pipeline refusal, or those entries alone) are sent
    /// again until the command timeout, the others never.
    pub async fn pipeline_once(&self, cmds: &[Cmd]) -> Result<Vec<Result<Value>>> {
        let label = || cmds.first().map(cmd_label).unwrap_or_default();
        let Some(once) = &self.inner.once else {
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c.clone());
            }
            let values = self.pipeline(&pipe).await.map_err(|e| labelled(e, label))?;
            return Ok(values.into_iter().map(|v| self.entry(v, label)).collect());
        };
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        let mut out: Vec<Option<Result<Value>>> = (0..cmds.len()).map(|_| None).collect();
        let mut todo: Vec<usize> = (0..cmds.len()).collect();
        let mut conn = once.clone();
        loop {
            let mut pipe = redis::pipe();
            for &i in &todo {
                pipe.add_command(cmds[i].clone());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let sent =
                tokio::time::timeout(remaining, conn.req_packed_commands(&pipe, 0, todo.len()));
            let err = match sent.await {
                Ok(Ok(values)) => {
                    self.set_connected(true, None);
                    let mut again = Vec::new();
                    for (&i, v) in todo.iter().zip(values) {
                        let not_run = matches!(&v, Value::ServerError(se) if was_not_run(&RedisError::from(se.clone())));
                        if not_run && tokio::time::Instant::now() + wait < deadline {
                            again.push(i);
                        } else {
                            out[i] = Some(self.entry(v, label));
                        }
                    }
                    if again.is_empty() {
                        break;
                    }
                    todo = again;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(400));
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out",
                )),
            };
            let retryable = was_not_run(&err);
            if retryable && tokio::time::Instant::now() + wait < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(400));
                continue;
            }
            let mapped = labelled(self.map_err(err.clone()), label);
            if is_link_failure(&err) || retryable {
                self.set_connected(false, Some(mapped.to_string()));
            }
            for &i in &todo {
                out[i] = Some(Err(mapped.clone()));
            }
            break;
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(Error::Redis(format!("{} failed: no reply", label()))))
            })
            .collect())
    }

    /// One command's reply within a pipeline: its value, or its server error, labelled.
    fn entry(&self, v: Value, label: impl FnOnce() -> String) -> Result<Value> {
        match &v {
            Value::ServerError(se) => Err(Error::Redis(format!(
                "{} failed: {}",
                label(),
                scrub(&self.inner.secrets, &server_error_text(se))
            ))),
            _ => Ok(v),
        }
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
        // Only an error about one key's data (say WRONGTYPE on someone else's key) stays per
        // key. A failed link, a cluster in failover (CLUSTERDOWN, TRYAGAIN, MOVED...) or a
        // refusal of the user (ACL, auth) fails the whole call: reading such a key as absent
        // would let a sweeper declare a live instance dead, or prune its index entry.
        if self.is_cluster() {
            let labels: Vec<String> = cmds.iter().map(cmd_label).collect();
            let futs = cmds.iter().map(|c| self.query_raw(c));
            let results = join_all(futs).await;
            let mut out = Vec::with_capacity(results.len());
            for (r, label) in results.into_iter().zip(labels) {
                match r {
                    Ok(v) => match self.reply_error(&v) {
                        None => out.push(Ok(v)),
                        Some((text, true)) => out.push(Err(format!("{label} failed: {text}"))),
                        Some((text, false)) => {
                            return Err(Error::Redis(format!("{label} failed: {text}")))
                        }
                    },
                    Err((Error::Redis(m), true)) => out.push(Err(m)),
                    Err((e, _)) => return Err(e),
                }
            }
            Ok(out)
        } else {
            let labels: Vec<String> = cmds.iter().map(cmd_label).collect();
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c);
            }
            let values = self.pipeline(&pipe).await?;
            let mut out = Vec::with_capacity(values.len());
            for (v, label) in values.into_iter().zip(labels) {
                match self.reply_error(&v) {
                    None => out.push(Ok(v)),
                    Some((text, true)) => out.push(Err(format!("{label} failed: {text}"))),
                    Some((text, false)) => {
                        return Err(Error::Redis(format!("{label} failed: {text}")))
                    }
                }
            }
            Ok(out)
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
        let label = || {
            format!(
                "Lua script on {}",
                keys.first().copied().unwrap_or("no key")
            )
        };
        let mut conn = self.conn();
        let value: Value = self
            .timed(async {
                match &mut conn {
                    Conn::Single(c) => inv.invoke_async(c).await,
                    Conn::Cluster(c) => inv.invoke_async(c).await,
                }
            })
            .await
            .map_err(|e| labelled(e, label))?;
        self.convert(value).map_err(|e| labelled(e, label))
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
            return Err(Error::Redis(scrub(
                &self.inner.secrets,
                &server_error_text(e),
            )));
        }
        T::from_redis_value(v)
            .map_err(|e| Error::Redis(format!("unexpected reply from Redis: {e}")))
    }

    /// Applies the timeout and tracks connection health around one request.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        self.timed_with(fut, true).await.map_err(|(e, _)| e)
    }

    /// Whether a server error reply of `query_raw` is about the key's data.
    fn reply_error(&self, v: &Value) -> Option<(String, bool)> {
        match v {
            Value::ServerError(se) => Some((
                scrub(&self.inner.secrets, &server_error_text(se)),
                is_data_error(Some(se)),
            )),
            _ => None,
        }
    }

    /// Like [`Store::timed`]; the error comes with the client's own error (none when our timer
    /// fired). With `report_drop` false a dropped link (an I/O failure other than a timeout,
    /// see [`is_dropped`]) is not reported as a disconnection: the caller retries first.
    async fn timed_with<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
        report_drop: bool,
    ) -> std::result::Result<T, (Error, Option<RedisError>)> {
        let limit = self.inner.response_timeout + Duration::from_millis(50);
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => {
                self.inner.strikes.store(0, Ordering::Relaxed);
                self.set_connected(true, None);
                Ok(v)
            }
            Ok(Err(e)) => {
                let err = self.map_err(e.clone());
                if is_link_failure(&e) && (report_drop || !is_dropped(&e)) {
                    self.set_connected(false, Some(err.to_string()));
                }
                if e.is_timeout() {
                    self.strike();
                }
                Err((err, Some(e)))
            }
            Err(_) => {
                let err = Error::Timeout(format!(
                    "Redis did not answer within {} ms",
                    self.inner.response_timeout.as_millis()
                ));
                self.set_connected(false, Some(err.to_string()));
                self.strike();
                Err((err, None))
            }
        }
    }

    /// Counts a timeout; after a few in a row, replaces a standalone connection in the
    /// background (the caller's command has already timed out: it must not also wait for a
    /// reconnect to a server that may be frozen).
    fn strike(&self) {
        let n = self.inner.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if n < TIMEOUT_STRIKES || self.is_cluster() {
            return;
        }
        if self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.strikes.store(0, Ordering::Relaxed);
        let me = self.clone();
        tokio::spawn(async move {
            me.replace_connection().await;
            me.inner.replacing.store(false, Ordering::Release);
        });
    }

    /// Makes a fresh standalone connection and swaps it in, if one can be made in time.
    async fn replace_connection(&self) {
        if let Target::Standalone(url) = &self.inner.cfg.target {
            let Ok(client) = standalone_client(&self.inner.cfg, url) else {
                return;
            };
            let mgr_cfg = manager_config(&self.inner.cfg, self.inner.response_timeout);
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

/// The standalone connection manager's settings (the first connection and replacements).
fn manager_config(cfg: &ConnectionConfig, response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(1000))
}

/// Whether the server provably did not run the command that got this error.
fn was_not_run(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    S::Moved | S::TryAgain | S::ClusterDown | S::MasterDown | S::BusyLoading
                )
        )
}

/// Commands the cluster client may safely re-send by itself (everything the core sends but
/// XADD: a second `XADD *` writes a second entry).
fn is_idempotent(cmd: &Cmd) -> bool {
    !matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"XADD"))
}

/// Commands that only read: safe to send again after the link dropped.
fn is_read_only(cmd: &Cmd) -> bool {
    const READS: &[&str] = &[
        "PING",
        "GET",
        "EXISTS",
        "PTTL",
        "HGET",
        "HGETALL",
        "ZRANGE",
        "XRANGE",
        "XREVRANGE",
        "XLEN",
        "XREAD",
        "SCAN",
    ];
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => READS
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name)),
        _ => false,
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

/// The error's text, with the command-level detail Redis gave: a server error reads as Redis
/// wrote it (`NOPERM this user has no permissions to run the 'xadd' command`), not as the
/// crate's debug form.
fn describe(e: &RedisError) -> String {
    match redis::ServerError::try_from(e.clone()) {
        Ok(se) => server_error_text(&se),
        Err(_) => e.to_string(),
    }
}

/// `CODE detail`, as the server sent it.
fn server_error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

/// Commands whose first argument is their one key (every single-key command the core sends).
const KEY_FIRST: &[&str] = &[
    "GET",
    "SET",
    "DEL",
    "EXISTS",
    "PEXPIRE",
    "PTTL",
    "HGET",
    "HGETALL",
    "HSET",
    "ZADD",
    "ZRANGE",
    "ZREM",
    "XADD",
    "XRANGE",
    "XREVRANGE",
    "XTRIM",
    "XLEN",
];

/// `XADD perseus:activity`: the command's name, plus its key for single-key commands (keys
/// are never secret; values are never included).
fn cmd_label(cmd: &Cmd) -> String {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    });
    let name = args.next().unwrap_or_default().to_ascii_uppercase();
    if KEY_FIRST.contains(&name.as_str()) {
        if let Some(key) = args.next() {
            return format!("{name} {key}");
        }
    }
    if name == "XREAD" {
        let rest: Vec<String> = args.collect();
        if let Some(i) = rest.iter().position(|a| a.eq_ignore_ascii_case("STREAMS")) {
            if let Some(key) = rest.get(i + 1) {
                return format!("{name} {key}");
            }
        }
    }
    name
}

/// Prefixes a Redis error or timeout with what was being done; other kinds pass unchanged.
fn labelled(e: Error, label: impl FnOnce() -> String) -> Error {
    match e {
        Error::Redis(m) => {
            // Redis 7 does not name the refused command when a script calls it.
            let hint = if m.contains("can't run this command") {
                " (a command the script calls is not allowed for this ACL user: see ACL LOG and docs/ACL.md)"
            } else {
                ""
            };
            Error::Redis(format!("{} failed: {m}{hint}", label()))
        }
        Error::Timeout(m) => Error::Timeout(format!("{} timed out: {m}", label())),
        e => e,
    }
}

/// Whether a server error is about the data of the key a command named (WRONGTYPE, ERR...),
/// not about the user's rights (NOPERM, NOAUTH) or the cluster's state (MOVED, CLUSTERDOWN,
/// LOADING...). `None` (no server error: the link failed) is not.
fn is_data_error(e: Option<&redis::ServerError>) -> bool {
    use redis::ServerErrorKind as S;
    match e {
        None => false,
        Some(se) => match se.kind() {
            Some(S::ResponseError | S::ExecAbort | S::NoScript | S::NotBusy | S::NoSub) => true,
            Some(_) => false,
            None => !matches!(se.code(), "NOAUTH" | "WRONGPASS" | "NOPERM"),
        },
    }
}

/// Whether the link dropped under the command (an I/O failure other than a timeout): a
/// read-only command may be sent again on the reconnected link.
fn is_dropped(e: &RedisError) -> bool {
    is_link_failure(e) && !e.is_timeout()
}

/// A connect failure with where it went, and a hint when the TLS handshake failed.
fn connect_failure(cfg: &ConnectionConfig, msg: &str) -> String {
    let target = crate::core::config::redact_target(&cfg.target);
    let lower = msg.to_ascii_lowercase();
    let hint = if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
    {
        if cfg.tls_ca_cert.is_some() {
            " (TLS: the server's certificate is not trusted by tlsCaCert, or does not name this host)"
        } else {
            " (TLS: the server's certificate is not trusted; set tlsCaCert to the PEM of the CA that signed it)"
        }
    } else {
        ""
    };
    format!("could not connect to Redis at {target}: {msg}{hint}")
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
    fn labels_name_the_command_and_its_key_only() {
        let mut x = redis::cmd("XADD");
        x.arg("perseus:activity")
            .arg("*")
            .arg("secret-field")
            .arg("v");
        assert_eq!(cmd_label(&x), "XADD perseus:activity");
        let mut r = redis::cmd("XREAD");
        r.arg("COUNT")
            .arg(5)
            .arg("BLOCK")
            .arg(10)
            .arg("STREAMS")
            .arg("p:activity")
            .arg("0-0");
        assert_eq!(cmd_label(&r), "XREAD p:activity");
        assert_eq!(cmd_label(&redis::cmd("PING")), "PING");
        let mut scan = redis::cmd("SCAN");
        scan.arg(0).arg("MATCH").arg("p:*");
        assert_eq!(cmd_label(&scan), "SCAN");
    }

    #[test]
    fn only_reads_are_retried() {
        for name in ["GET", "hgetall", "XRANGE", "XREAD", "SCAN", "PING", "PTTL"] {
            assert!(is_read_only(&redis::cmd(name)), "{name}");
        }
        for name in ["XADD", "SET", "DEL", "HSET", "ZADD", "XTRIM", "EVALSHA"] {
            assert!(!is_read_only(&redis::cmd(name)), "{name}");
        }
    }

    #[test]
    fn refusals_fail_whole_calls_other_errors_stay_per_key() {
        let parse = |raw: &[u8]| match redis::parse_redis_value(raw).unwrap() {
            Value::ServerError(se) => se,
            v => panic!("not an error: {v:?}"),
        };
        assert!(is_data_error(Some(&parse(
            b"-WRONGTYPE Operation against a key\r\n"
        ))));
        assert!(is_data_error(Some(&parse(
            b"-ERR value is not an integer\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-NOPERM this user has no permissions\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-CLUSTERDOWN The cluster is down\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-MOVED 3999 127.0.0.1:6381\r\n"
        ))));
        assert!(!is_data_error(Some(&parse(
            b"-TRYAGAIN Multiple keys request\r\n"
        ))));
        assert!(!is_data_error(None));
        let e = labelled(
            Error::Redis("ERR The user executing the script can't run this command".into()),
            || "Lua script on k".into(),
        );
        assert!(e.to_string().starts_with("Lua script on k failed: ERR"));
        assert!(e.to_string().contains("ACL LOG"));
        let t = labelled(
            Error::Timeout("Redis did not answer within 5 ms".into()),
            || "XLEN k".into(),
        );
        assert!(
            matches!(t, Error::Timeout(ref m) if m == "XLEN k timed out: Redis did not answer within 5 ms")
        );
    }

    #[test]
    fn tls_connect_failures_get_a_hint_and_no_secret() {
        let mut cfg = ConnectionConfig {
            target: Target::Standalone("rediss://u:pw@h:1".into()),
            username: None,
            password: None,
            tls_ca_cert: None,
            tls_insecure: false,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        };
        let m = connect_failure(&cfg, "invalid peer certificate: UnknownIssuer");
        assert!(m.contains("set tlsCaCert"), "{m}");
        assert!(!m.contains("pw@"), "{m}");
        cfg.tls_ca_cert = Some("pem".into());
        assert!(
            connect_failure(&cfg, "invalid peer certificate: UnknownIssuer")
                .contains("not trusted by tlsCaCert")
        );
        assert!(!connect_failure(&cfg, "Connection refused (os error 111)").contains("TLS"));
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
