//! The Redis connection: standalone (auto-reconnecting manager) or OSS cluster, with explicit
//! timeouts, secret-free errors and connection-status tracking.
//!
//! Callers say what a command is ([`Kind`]): a read may be sent again after a dropped link, a
//! write never is by us, a send-once write is never re-sent by anyone. The store matches no
//! command names; a failure is labelled with the command and key the caller gave.

mod connect;
mod direct;
mod errors;
mod rotation;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, ToRedisArgs, Value};

pub use errors::scrub;
use errors::{
    describe, is_data_error, is_dropped, is_link_failure, labelled, secrets_of, server_error_text,
    was_not_run,
};

use crate::core::config::ConnectionConfig;
use crate::core::error::{Error, Result};
use crate::core::wire::slots::{self, SlotTable};

/// Called with `(connected, error)` when the link to Redis goes down or comes back.
pub type StatusListener = Arc<dyn Fn(bool, Option<String>) + Send + Sync>;

/// Most commands in one pipeline to one cluster master (bigger batches are split; all are in
/// flight at once, so Redis works on one while the client parses another).
const CLUSTER_BATCH: usize = 2048;

/// Whether a reply is a cluster redirect (`MOVED`/`ASK`): the command ran nowhere and must be
/// sent where the cluster says.
fn is_redirect(v: &Value) -> bool {
    matches!(v, Value::ServerError(se) if matches!(se.code(), "MOVED" | "ASK"))
}

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
    /// The key that routes it on a cluster (`None`: keyless), as the caller named it.
    key: Option<String>,
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
            key: Some(key.to_string()),
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

    /// A command whose key is not its first argument (`XREAD ... STREAMS key`, `EVALSHA`), or
    /// that has none (`PING`, `SCAN`): `label_key` names it in errors and routes it in
    /// [`Store::query_many`] on a cluster.
    pub fn with_args(kind: Kind, name: &str, label_key: Option<&str>) -> Self {
        Command {
            cmd: redis::cmd(name),
            kind,
            label: match label_key {
                Some(k) => format!("{name} {k}"),
                None => name.to_string(),
            },
            key: label_key.map(str::to_string),
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

    /// The command as sent.
    pub fn cmd(&self) -> &Cmd {
        &self.cmd
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
    /// Reads this store sent a second time after a dropped link (see [`Store::reads_resent`]).
    resent: AtomicU64,
    /// A replacement connection is being made (after repeated timeouts).
    replacing: AtomicBool,
    on_status: Option<StatusListener>,
    /// Cluster: which master serves which slot, for [`Store::query_many`]'s per-master
    /// pipelines; dropped after a redirect or a failed pipeline, read again when next needed.
    slots: std::sync::Mutex<Option<Arc<SlotTable>>>,
    /// Why the server refused `CLIENT SETNAME`, for the network to log once.
    name_refusal: std::sync::Mutex<Option<String>>,
    /// A refusal was already noted (each store reports it once).
    name_refused: AtomicBool,
    /// Connections of our own for range reads decoded from raw bytes (`direct.rs`).
    direct: direct::Direct,
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
                resent: AtomicU64::new(0),
                replacing: AtomicBool::new(false),
                on_status,
                slots: std::sync::Mutex::new(None),
                name_refusal: std::sync::Mutex::new(None),
                name_refused: AtomicBool::new(false),
                direct: direct::Direct::new(cfg),
            }),
        };
        let _: Value = store
            .query(&Command::with_args(Kind::Read, "PING", None))
            .await?;
        store.name_connections().await;
        Ok(store)
    }

    /// How many reads this store itself sent a second time after a dropped link. On a cluster
    /// the cluster client usually re-sends first (it retries a dropped request by itself), so
    /// this counts only what reached us; it exists so tests can tell who retried.
    pub fn reads_resent(&self) -> u64 {
        self.inner.resent.load(Ordering::Relaxed)
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
                Err((_, Some(e))) if may_retry && is_dropped(&e) => {
                    self.inner.resent.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(command = %cmd.label, "read re-sent after a dropped link");
                    continue;
                }
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

    /// One read-only command about `key` over a direct connection, its reply as raw bytes
    /// (for [`crate::core::wire::resp`]). `None` when that path cannot serve it, or the reply is a
    /// server error: the caller then sends it through [`Store::query`], which words errors.
    pub async fn query_bytes(&self, key: &str, cmd: &Command) -> Option<Result<Vec<u8>>> {
        use direct::Miss;
        let slot_map = || self.slot_table();
        let packed = cmd.cmd.get_packed_command();
        match self.inner.direct.request(key, &packed, slot_map).await {
            Ok(bytes) if !bytes.starts_with(b"-") => Some(Ok(bytes)),
            Ok(_) => {
                self.forget_slot_table();
                None
            }
            Err(Miss::Fallback(why)) => {
                tracing::debug!(%why, "range read falls back to the client");
                self.forget_slot_table();
                None
            }
            Err(Miss::Timeout) => {
                let err = Error::Timeout(format!(
                    "Redis did not answer within {} ms",
                    self.inner.response_timeout.as_millis()
                ));
                self.set_connected(false, Some(err.to_string()));
                Some(Err(labelled(err, || cmd.label.clone())))
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
    pub async fn pipeline_once(&self, cmds: &[Command]) -> Result<Vec<Result<Value>>> {
        let label = || cmds.first().map(|c| c.label.clone()).unwrap_or_default();
        let Some(once) = &self.inner.once else {
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c.cmd.clone());
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
                pipe.add_command(cmds[i].cmd.clone());
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
            self.query_many_cluster(cmds).await
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

    /// Cluster half of [`Store::query_many`]: the commands are grouped by the master serving
    /// their key's slot (from a cached `CLUSTER SLOTS` table) and each group goes to its master
    /// as pipelines of at most [`CLUSTER_BATCH`] commands, every pipeline in flight at once. A
    /// command redirected (`MOVED`/`ASK`: slots migrated since the table was read) is sent again
    /// on its own, which the client routes and follows; the table is then read again. Commands
    /// with no key, or that must not be re-sent (`XADD`), go one by one as before.
    async fn query_many_cluster(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        let table = self.slot_table().await;
        let mut groups: Vec<Vec<usize>> =
            vec![Vec::new(); table.as_ref().map_or(0, |t| t.masters())];
        let mut singles = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let master = match (&table, &c.key) {
                (Some(t), Some(key)) if c.kind != Kind::WriteOnce => {
                    t.master_of(slots::slot_of(key.as_bytes()))
                }
                _ => None,
            };
            match master {
                Some(m) => groups[m].push(i),
                None => singles.push(i),
            }
        }
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let batches = groups
            .iter()
            .enumerate()
            .flat_map(|(m, idx)| idx.chunks(CLUSTER_BATCH).map(move |chunk| (m, chunk)));
        let sent = join_all(batches.map(|(m, chunk)| {
            let slot = table.as_ref().map_or(0, |t| t.representative(m));
            let cmds = &cmds;
            async move { (chunk, self.pipeline_to_slot(cmds, chunk, slot).await) }
        }))
        .await;
        let mut redirected = false;
        for (chunk, result) in sent {
            let values = match result {
                Ok(v) => v,
                Err(e) => {
                    self.forget_slot_table();
                    return Err(e);
                }
            };
            for (i, v) in chunk.iter().zip(values) {
                if is_redirect(&v) {
                    redirected = true;
                    singles.push(*i);
                } else {
                    replies[*i] = Some(v);
                }
            }
        }
        if redirected {
            self.forget_slot_table(); // slots moved (a reshard): read the table again next time
        }
        let alone = join_all(singles.iter().map(|i| self.query_raw(&cmds[*i]))).await;
        let mut failed: Vec<Option<(Error, bool)>> = Vec::new();
        failed.resize_with(cmds.len(), || None);
        for (i, r) in singles.iter().zip(alone) {
            match r {
                Ok(v) => replies[*i] = Some(v),
                Err(e) => failed[*i] = Some(e),
            }
        }
        let mut out = Vec::with_capacity(cmds.len());
        for (i, (reply, fail)) in replies.into_iter().zip(failed).enumerate() {
            match (reply, fail) {
                (Some(v), _) => match self.reply_error(&v) {
                    None => out.push(Ok(v)),
                    Some((text, true)) => {
                        out.push(Err(format!("{} failed: {text}", cmds[i].label)))
                    }
                    Some((text, false)) => {
                        return Err(Error::Redis(format!("{} failed: {text}", cmds[i].label)))
                    }
                },
                (None, Some((Error::Redis(m), true))) => out.push(Err(m)),
                (None, Some((e, _))) => return Err(e),
                (None, None) => {
                    return Err(Error::Redis(format!("{} failed: no reply", cmds[i].label)))
                }
            }
        }
        Ok(out)
    }

    /// One pipeline of `cmds[idx]` to the master serving `slot` (routed by the client's own
    /// slot map). A pipeline of reads whose link dropped is sent once more, like
    /// [`Store::query_raw`] does for one read.
    async fn pipeline_to_slot(
        &self,
        cmds: &[Command],
        idx: &[usize],
        slot: u16,
    ) -> Result<Vec<Value>> {
        let mut pipe = redis::pipe();
        for i in idx {
            pipe.add_command(cmds[*i].cmd.clone());
        }
        let reads = idx.iter().all(|i| cmds[*i].kind == Kind::Read);
        let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let may_retry = reads && attempt == 1;
            let Conn::Cluster(mut c) = self.conn() else {
                return Err(Error::Redis("not a cluster connection".into()));
            };
            match self
                .timed_with(
                    c.route_pipeline(pipe.clone(), 0, idx.len(), route.clone()),
                    !may_retry,
                )
                .await
            {
                Ok(v) if v.len() == idx.len() => return Ok(v),
                Ok(v) => {
                    return Err(Error::Redis(format!(
                        "pipeline of {} commands got {} replies",
                        idx.len(),
                        v.len()
                    )))
                }
                Err((_, Some(e))) if may_retry && is_dropped(&e) => continue,
                Err((err, _)) => {
                    return Err(labelled(err, || {
                        format!(
                            "pipeline of {} commands ({} ...)",
                            idx.len(),
                            cmds[idx[0]].label
                        )
                    }))
                }
            }
        }
    }

    /// The cached slot → master table, read with `CLUSTER SLOTS` when missing. `None` when it
    /// cannot be read (the batch then goes command by command, as the client routes them).
    async fn slot_table(&self) -> Option<Arc<SlotTable>> {
        if let Some(t) = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(t);
        }
        let Conn::Cluster(mut c) = self.conn() else {
            return None;
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS"); // what the client itself sends for its slot map: the ACL allows it
        let reply = self
            .timed(c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)))
            .await
            .ok()?;
        let table = Arc::new(SlotTable::from_cluster_slots(&reply)?);
        *self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()) = Some(table.clone());
        Some(table)
    }

    fn forget_slot_table(&self) {
        *self.inner.slots.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
