//! The Redis connection: standalone (auto-reconnecting manager) or OSS cluster, with explicit
//! timeouts, secret-free errors and connection-status tracking.
//!
//! Callers say what a command is ([`Kind`]): a read may be sent again after a dropped link, a
//! write never is by us, a send-once write is never re-sent by anyone. The store matches no
//! command names; a failure is labelled with the command and key the caller gave.
//!
//! One job per file: [`command`] (what a command is), `query` (commands, retry, timeouts),
//! `once` (the send-once writer), `batch` (cluster batching: `query_many`), `scan`,
//! `health` (link status, strikes, naming), `direct` (range-read connections of our own),
//! `connect` (building clients), `rotation` (credential validation and naming commands),
//! `errors` (wording and classifying failures).

mod batch;
mod command;
mod connect;
mod direct;
mod errors;
mod health;
mod once;
mod query;
mod replicas;
mod rotation;
mod scan;
#[cfg(test)]
mod tests;

pub use command::{Command, Kind};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::Value;

use errors::secrets_of;

use crate::core::config::ConnectionConfig;
use crate::core::error::Result;
use crate::core::wire::slots::SlotTable;

/// Called with `(connected, error)` when the link to Redis goes down or comes back.
pub type StatusListener = Arc<dyn Fn(bool, Option<String>) + Send + Sync>;

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
    /// Replaced with the shared connection after repeated timeouts (see [`Store::strike`]).
    once: Option<std::sync::Mutex<ClusterConnection>>,
    cfg: ConnectionConfig,
    /// Secrets to scrub from any error text: the password option and URL passwords.
    secrets: Vec<String>,
    response_timeout: Duration,
    connected: AtomicBool,
    strikes: AtomicU32,
    /// Cluster: timeouts in a row per key slot. The cluster client reconnects a node only when
    /// its link reports an error, so a node link that went silent is found by its slots'
    /// timeouts; an answer from another node must not clear them (see [`Store::strike`]).
    slot_strikes: std::sync::Mutex<std::collections::HashMap<u16, u32>>,
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

    /// Like [`Store::dedicated`], with its own send-once writer on a cluster: for appends
    /// followed by `WAIT` (`activityReplicas`), which blocks its connection until replicas
    /// acknowledge, so it must not share one with heartbeats or other writes.
    pub async fn dedicated_writer(&self, block: Duration) -> Result<Self> {
        Self::connect_with(
            &self.inner.cfg,
            self.inner.cfg.command_timeout + block,
            None,
            true,
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
        let (conn, once) = connect::open(cfg, &secrets, response_timeout, with_once, || {
            rotation::validator(cfg)
        })
        .await?;
        // A probe, so a server that accepts TCP but refuses us (auth, ACL) fails here.
        let store = Store {
            inner: Arc::new(Inner {
                conn: std::sync::Mutex::new(conn),
                once: once.map(std::sync::Mutex::new),
                cfg: cfg.clone(),
                secrets,
                response_timeout,
                connected: AtomicBool::new(true),
                strikes: AtomicU32::new(0),
                slot_strikes: std::sync::Mutex::new(std::collections::HashMap::new()),
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

    /// The send-once cluster connection, if this store has one.
    fn once_conn(&self) -> Option<ClusterConnection> {
        let once = self.inner.once.as_ref()?;
        Some(once.lock().unwrap_or_else(|p| p.into_inner()).clone())
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
}
