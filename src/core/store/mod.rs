//! The Redis connection: standalone (auto-reconnecting manager) or OSS cluster, with explicit
//! timeouts, secret-free errors and connection-status tracking.
//!
//! Callers say what a command is ([`Kind`]): a read may be sent again after a dropped link, a
//! write never is by us, a send-once write is never re-sent by anyone. The store matches no
//! command names; a failure is labelled with the command and key the caller gave.

mod connect;
mod errors;
mod rotation;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, ToRedisArgs, Value};

pub use connect::install_crypto;
pub use errors::scrub;
use errors::{
    describe, is_data_error, is_dropped, is_link_failure, labelled, secrets_of, server_error_text,
    was_not_run,
};

use crate::core::config::ConnectionConfig;
use crate::core::error::{Error, Result};

/// Called with `(connected, error)` when the link to Redis goes down or comes back.
pub type StatusListener = Arc<dyn Fn(bool, Option<String>) + Send + Sync>;

/// Consecutive timeouts after which a standalone connection is rebuilt (a half-open socket
/// keeps timing out and the manager does not reconnect on timeouts by itself).
const TIMEOUT_STRIKES: u32 = 3;

/// What sending a command twice would do, as its caller knows: the store decides retries on
/// this, never on the command's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only reads: sent once more on the reconnected link after the link dropped under it
    /// (the multiplexed connection notices a dropped socket only when it next writes).
    Read,
    /// Changes data, with the same effect when run twice (SET, HSET, ZADD, DEL, a script
    /// with a token...): never re-sent by us, but a cluster client may re-send it.
    Write,
    /// Must run at most once (`XADD *` writes a second entry when sent twice): on a cluster
    /// it goes over a connection whose client never re-sends by itself.
    WriteOnce,
}

/// One command, with what it is ([`Kind`]) and how its failures are labelled (`NAME key`:
/// keys are never secret; values are never included).
#[derive(Clone)]
pub struct Command {
    cmd: Cmd,
    kind: Kind,
    label: String,
}

impl Command {
    /// `NAME key ...`: the usual single-key command; add the rest with [`Command::arg`].
    pub fn on_key(kind: Kind, name: &str, key: &str) -> Self {
        let mut cmd = redis::cmd(name);
        cmd.arg(key);
        Command {
            cmd,
            kind,
            label: format!("{name} {key}"),
        }
    }

    /// A read of `key` ([`Kind::Read`]).
    pub fn read(name: &str, key: &str) -> Self {
        Self::on_key(Kind::Read, name, key)
    }

    /// An idempotent write of `key` ([`Kind::Write`]).
    pub fn write(name: &str, key: &str) -> Self {
        Self::on_key(Kind::Write, name, key)
    }

    /// A write of `key` that must run at most once ([`Kind::WriteOnce`]).
    pub fn write_once(name: &str, key: &str) -> Self {
        Self::on_key(Kind::WriteOnce, name, key)
    }

    /// A command whose key is not its first argument (`XREAD ... STREAMS key`), or that has
    /// none (`PING`, `SCAN`): `label_key` names it in errors.
    pub fn with_args(kind: Kind, name: &str, label_key: Option<&str>) -> Self {
        Command {
            cmd: redis::cmd(name),
            kind,
            label: match label_key {
                Some(k) => format!("{name} {k}"),
                None => name.to_string(),
            },
        }
    }

    /// Appends an argument.
    pub fn arg<T: ToRedisArgs>(&mut self, a: T) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    /// What errors of this command start with (`XADD perseus:activity`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The caller's word on re-sending it.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

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
    /// Why the server refused `CLIENT SETNAME`, for the network to log once.
    name_refusal: std::sync::Mutex<Option<String>>,
    /// A refusal was already noted (each store reports it once).
    name_refused: AtomicBool,
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
        let secrets = secrets_of(cfg);
        let (conn, once) = connect::open(cfg, &secrets, response_timeout, with_once).await?;
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
                name_refusal: std::sync::Mutex::new(None),
                name_refused: AtomicBool::new(false),
            }),
        };
        let _: Value = store
            .query(&Command::with_args(Kind::Read, "PING", None))
            .await?;
        store.name_connections().await;
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
    /// A [`Kind::Read`] that fails because the link dropped (the server closed it, e.g.
    /// `CLIENT KILL`, a restart or a failover) is sent once more on the reconnected link: the
    /// multiplexed connection only notices a dropped socket when it next writes, so the first
    /// command after a drop would fail although the server is fine. Writes are never re-sent
    /// by us, and a [`Kind::WriteOnce`] never by the cluster client either.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Command) -> Result<T> {
        if let Some(once) = &self.inner.once {
            if cmd.kind == Kind::WriteOnce {
                return self.query_once(cmd, once.clone()).await;
            }
        }
        let value = self.query_raw(cmd).await.map_err(|(e, _)| e)?;
        self.convert(value)
            .map_err(|e| labelled(e, || cmd.label.clone()))
    }

    /// One command on the shared connection (reads retried once after a dropped link). The
    /// reply may be a `Value::ServerError`. A failure comes labelled, with whether it is about
    /// the key's data (a per-key error) rather than the link, the cluster's state or the
    /// user's rights.
    async fn query_raw(&self, cmd: &Command) -> std::result::Result<Value, (Error, bool)> {
        let retry = cmd.kind == Kind::Read;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.conn();
            let may_retry = retry && attempt == 1;
            match self
                .timed_with(
                    async {
                        match &mut conn {
                            Conn::Single(c) => c.req_packed_command(&cmd.cmd).await,
                            Conn::Cluster(c) => c.req_packed_command(&cmd.cmd).await,
                        }
                    },
                    !may_retry,
                )
                .await
            {
                Ok(v) => {
                    if attempt > 1 {
                        // The link was re-made under this read: the new connection is unnamed.
                        let me = self.clone();
                        tokio::spawn(async move { me.name_connections().await });
                    }
                    return Ok(v);
                }
                Err((_, Some(e))) if may_retry && is_dropped(&e) => continue,
                Err((err, e)) => {
                    let data = e.as_ref().is_some_and(|e| {
                        is_data_error(redis::ServerError::try_from(e.clone()).ok().as_ref())
                    });
                    return Err((labelled(err, || cmd.label.clone()), data));
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
        cmd: &Command,
        mut conn: ClusterConnection,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        let mut wait = Duration::from_millis(25);
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = async {
                match tokio::time::timeout(remaining, conn.req_packed_command(&cmd.cmd)).await {
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
                    return self
                        .convert(v)
                        .map_err(|e| labelled(e, || cmd.label.clone()));
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
            return Err(labelled(mapped, || cmd.label.clone()));
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

    /// Runs independent single-key commands as one round trip: a pipeline on a standalone
    /// server, concurrent requests on a cluster (each goes to its own slot's node). Each
    /// command keeps its own result so one bad key cannot fail the others.
    pub async fn query_many(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        // Only an error about one key's data (say WRONGTYPE on someone else's key) stays per
        // key. A failed link, a cluster in failover (CLUSTERDOWN, TRYAGAIN, MOVED...) or a
        // refusal of the user (ACL, auth) fails the whole call: reading such a key as absent
        // would let a sweeper declare a live instance dead, or prune its index entry.
        if self.is_cluster() {
            let labels: Vec<&str> = cmds.iter().map(|c| c.label.as_str()).collect();
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
            let labels: Vec<String> = cmds.iter().map(|c| c.label.clone()).collect();
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c.cmd);
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

    /// Maps a redis error to ours with secrets removed.
    pub fn map_err(&self, e: RedisError) -> Error {
        if e.is_timeout() {
            return Error::Timeout(format!(
                "Redis did not answer within {} ms",
                self.inner.response_timeout.as_millis()
            ));
        }
        Error::Redis(self.scrub_text(&describe(&e)))
    }

    fn convert<T: FromRedisValue>(&self, v: Value) -> Result<T> {
        if let Value::ServerError(e) = &v {
            return Err(Error::Redis(self.scrub_text(&server_error_text(e))));
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
                self.scrub_text(&server_error_text(se)),
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
                self.note_auth_failure(&e);
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
        if let Some(m) =
            connect::reopen_standalone(&self.inner.cfg, self.inner.response_timeout).await
        {
            *self.conn_guard() = Conn::Single(m);
            tracing::debug!("replaced a Redis connection after repeated timeouts");
            self.name_connections().await;
        }
    }

    /// Removes every known secret (options, URLs, rotated passwords) from `text`.
    fn scrub_text(&self, text: &str) -> String {
        let text = scrub(&self.inner.secrets, text);
        match &self.inner.cfg.credentials {
            Some(c) => c.scrub(&text),
            None => text,
        }
    }

    /// A refused login (WRONGPASS, NOAUTH: the credentials were revoked or expired) asks the
    /// credentials provider for fresh ones at once instead of at the next scheduled refresh.
    fn note_auth_failure(&self, e: &RedisError) {
        if let Some(c) = &self.inner.cfg.credentials {
            if rotation::is_auth_failure(e) {
                c.nudge();
            }
        }
    }

    /// Sends `CLIENT SETNAME perseus:<instanceId>` on this store's connections (every node's
    /// on a cluster), so operators see who is connected in `CLIENT LIST`. A server that
    /// refuses it (some managed services) is logged once at debug and otherwise ignored.
    async fn name_connections(&self) {
        let Some(name) = &self.inner.cfg.client_name else {
            return;
        };
        let limit = self.inner.response_timeout;
        let results = match self.conn() {
            Conn::Single(mut c) => vec![rotation::set_name(&mut c, name, limit).await],
            Conn::Cluster(c) => {
                let mut out = vec![rotation::set_name_all_nodes(c, name, limit).await];
                if let Some(once) = &self.inner.once {
                    out.push(rotation::set_name_all_nodes(once.clone(), name, limit).await);
                }
                out
            }
        };
        for r in results {
            if let Err(e) = r {
                let text = rotation::name_refused(&self.scrub_text(&describe(&e)));
                if !self.inner.name_refused.swap(true, Ordering::AcqRel) {
                    *self
                        .inner
                        .name_refusal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(text);
                }
            }
        }
    }

    /// How long a blocking read on this store may wait: `max`, or less when rotating
    /// credentials expire soon (a re-AUTH queues behind the blocked read on its connection,
    /// so the block must end in time for it to land before the expiry).
    pub fn block_limit(&self, max: Duration) -> Duration {
        match &self.inner.cfg.credentials {
            Some(c) => c.block_limit(max),
            None => max,
        }
    }

    /// The server's refusal of `CLIENT SETNAME`, once (the caller logs it at debug).
    pub fn take_name_refusal(&self) -> Option<String> {
        self.inner
            .name_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn set_connected(&self, up: bool, error: Option<String>) {
        let was = self.inner.connected.swap(up, Ordering::AcqRel);
        if up && !was {
            // A reconnected link is a new connection: give it its name too.
            let me = self.clone();
            tokio::spawn(async move { me.name_connections().await });
        }
        if was != up {
            if let Some(cb) = &self.inner.on_status {
                cb(up, error);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_command_and_its_key_only() {
        let mut x = Command::write_once("XADD", "perseus:activity");
        x.arg("*").arg("secret-field").arg("v");
        assert_eq!(x.label(), "XADD perseus:activity");
        let mut r = Command::with_args(Kind::Read, "XREAD", Some("p:activity"));
        r.arg("COUNT")
            .arg(5)
            .arg("BLOCK")
            .arg(10)
            .arg("STREAMS")
            .arg("p:activity")
            .arg("0-0");
        assert_eq!(r.label(), "XREAD p:activity");
        assert_eq!(Command::with_args(Kind::Read, "PING", None).label(), "PING");
        let mut h = Command::read("HMGET", "p:instance:a");
        h.arg("state").arg("publicIp");
        assert_eq!(h.label(), "HMGET p:instance:a");
        assert_eq!(h.kind(), Kind::Read);
    }
}
