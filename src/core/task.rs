//! What a background task (heartbeat, sweeper, trimmer, tail) is given, and how it ends.
//!
//! A task gets a [`TaskCtx`] (what it uses, nothing of the `Network`) and a [`Shutdown`]; it
//! stops between units of work when shutdown is requested and returns an [`Exit`] to the one
//! supervisor (in `network`), which alone spawns and stops tasks.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::core::activity::{Author, Writer};
use crate::core::config::Config;
use crate::core::error::Error;
use crate::core::events::{EventSink, NetEvent};
use crate::core::keys::Keys;
use crate::core::logging::Logger;
use crate::core::metrics::Metrics;
use crate::core::registry::{OwnRecord, Registry};
use crate::core::store::Store;
use crate::core::watchdog::Watchdog;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was requested and the task stopped between units of work.
    Stopped,
    /// This instance's heartbeat is lost (peers see it dead): the supervisor takes
    /// `running → dead (HEARTBEAT_LOST)` for the given reason.
    HeartbeatLost(&'static str),
    /// An operator asked this instance to drain (`onDrainRequest: 'drain'`): the supervisor
    /// takes `running → draining → dead` with this reason.
    DrainRequested(Option<String>),
}

/// A task's view of a shutdown request (mini-redis style: a `watch` flag the supervisor
/// raises once; a dropped supervisor counts as a request).
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A fresh flag: the supervisor keeps the sender and raises it with `send(true)`.
    pub fn channel() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown is requested.
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Sleeps `d`; `true` when shutdown came first (the task should return).
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.requested() => true,
            _ = tokio::time::sleep(d) => self.is_requested(),
        }
    }
}

/// What background tasks use: configuration, keys, logger, events, the store, the instance
/// registry, the activity writer, this instance's own record and the watchdog. Cheap to
/// clone.
#[derive(Clone)]
pub struct TaskCtx {
    pub cfg: Arc<Config>,
    pub keys: Keys,
    pub log: Logger,
    pub sink: Arc<dyn EventSink>,
    pub store: Store,
    pub registry: Registry,
    pub writer: Writer,
    pub own: Arc<Mutex<OwnRecord>>,
    pub watchdog: Arc<Watchdog>,
    pub metrics: Arc<Metrics>,
}

impl TaskCtx {
    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.cfg.identity.instance_id
    }

    /// This instance's own record as this process knows it.
    pub fn own(&self) -> MutexGuard<'_, OwnRecord> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who this instance's own entries are written by.
    pub fn author(&self) -> Author {
        let id = &self.cfg.identity;
        Author {
            instance_id: id.instance_id.clone(),
            exchange: id.exchange_name.clone(),
            exchange_id: id.exchange_id,
            hostname: id.hostname.clone(),
            public_ip: self.own().public_ip.clone(),
        }
    }

    /// Logs a background failure and emits it as an `error` event.
    pub fn report_error(&self, e: Error, what: &str) {
        self.log.warn(
            serde_json::json!({ "error": e.to_string(), "code": e.code() }),
            what,
        );
        self.sink.emit(NetEvent::Error(e));
    }
}
