//! One network member: what the napi class wraps; it can be driven from plain Rust (and is,
//! in `cargo test`). This module is the only place that spawns or stops background tasks
//! (the supervisor): each task gets a narrow [`TaskCtx`], stops on a shutdown signal between
//! units of work and returns how it ended. The lifecycle is in [`lifecycle`], operator
//! calls and queries in [`queries`], the activity tail in [`tail`].

mod lifecycle;
mod queries;
mod tail;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

use crate::core::activity::{ActivityLog, Writer};
use crate::core::config::{Config, PublicIpMode};
use crate::core::error::{Error, Result};
use crate::core::events::{EventSink, NetEvent};
use crate::core::fsm::State;
use crate::core::keys::Keys;
use crate::core::logging::{LogSink, Logger};
use crate::core::metrics::Metrics;
use crate::core::registry::{OwnRecord, Registry};
use crate::core::store::Store;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::watchdog::Watchdog;

/// A handle on one network member. Cheap to clone; all clones are the same member.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    keys: Keys,
    log: Logger,
    sink: Arc<dyn EventSink>,
    store: OnceCell<Store>,
    watchdog: Arc<Watchdog>,
    metrics: Arc<Metrics>,
    /// Serialises start / drain / fail / close / self-loss.
    lifecycle: tokio::sync::Mutex<()>,
    /// This instance's record as this process knows it (shared with its tasks).
    own: Arc<Mutex<OwnRecord>>,
    crews: Mutex<Crews>,
    closed: AtomicBool,
    /// `false` while a tail is starting and has not yet fixed its start point: our own
    /// appends wait for it, so a listener attached before a write always hears that write.
    tail_ready: watch::Sender<bool>,
}

/// The running background tasks, by group.
#[derive(Default)]
struct Crews {
    /// Heartbeat, sweeper, trimmer, public-IP detection: stopped when the lifecycle ends.
    tasks: Option<Crew>,
    /// Waits for Redis after a self-loss with 'rejoin'.
    rejoin: Option<Crew>,
    tail: Option<Crew>,
}

/// Tasks started together, sharing one shutdown signal.
struct Crew {
    stop: watch::Sender<bool>,
    shutdown: Shutdown,
    handles: Vec<JoinHandle<Exit>>,
}

impl Crew {
    fn new() -> Self {
        let (stop, shutdown) = Shutdown::channel();
        Crew {
            stop,
            shutdown,
            handles: Vec::new(),
        }
    }

    /// Asks every task to stop, and waits up to `bound` for them to finish their unit of work;
    /// a task still running then is aborted (the last resort: the outbox covers a sweep cut
    /// there).
    async fn stop(self, bound: Duration) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + bound;
        for mut h in self.handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
            }
        }
    }

    /// Asks every task to stop and aborts them at once (the host object is going away).
    fn abort(self) {
        self.stop.send_replace(true);
        for h in self.handles {
            h.abort();
        }
    }

    /// Asks every task to stop without waiting for them.
    fn signal(self) {
        self.stop.send_replace(true);
    }
}

impl Network {
    /// A member in state `idle`. No I/O happens until a method needs Redis.
    pub fn new(cfg: Config, sink: Arc<dyn EventSink>, log_sink: Option<Arc<dyn LogSink>>) -> Self {
        Self::with_watchdog(cfg, sink, log_sink, Arc::new(Watchdog::default()))
    }

    /// Like [`Network::new`], sharing a watchdog the host answers (its `pong`).
    pub fn with_watchdog(
        cfg: Config,
        sink: Arc<dyn EventSink>,
        log_sink: Option<Arc<dyn LogSink>>,
        watchdog: Arc<Watchdog>,
    ) -> Self {
        let log = Logger::new(cfg.log_level, log_sink, &cfg.identity.instance_id);
        let public_ip = match &cfg.identity.public_ip {
            PublicIpMode::Fixed(ip) => Some(ip.clone()),
            _ => None,
        };
        if cfg.connection.tls_insecure {
            log.warn(
                serde_json::json!({}),
                "tlsInsecure is set: the Redis server's certificate is not verified (development only)",
            );
        }
        Network {
            inner: Arc::new(Inner {
                keys: Keys::new(cfg.key_prefix.clone()),
                cfg: Arc::new(cfg),
                log,
                sink,
                store: OnceCell::new(),
                watchdog,
                metrics: Arc::new(Metrics::default()),
                lifecycle: tokio::sync::Mutex::new(()),
                own: Arc::new(Mutex::new(OwnRecord {
                    state: Some(State::Idle),
                    public_ip,
                    ..Default::default()
                })),
                crews: Mutex::new(Crews::default()),
                closed: AtomicBool::new(false),
                tail_ready: watch::Sender::new(true),
            }),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.cfg.identity.instance_id
    }
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }
    pub fn logger(&self) -> &Logger {
        &self.inner.log
    }
    pub fn sink(&self) -> &Arc<dyn EventSink> {
        &self.inner.sink
    }
    pub fn watchdog(&self) -> Arc<Watchdog> {
        self.inner.watchdog.clone()
    }
    /// This process's counters (shared with the tasks that bump them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The current lifecycle state.
    pub fn state(&self) -> State {
        self.own().state.unwrap_or(State::Dead)
    }

    fn own(&self) -> MutexGuard<'_, OwnRecord> {
        self.inner.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn crews(&self) -> MutexGuard<'_, Crews> {
        self.inner.crews.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether two handles are the same network (the Node layer batches per network).
    pub fn same_as(&self, other: &Network) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Fails with [`Error::Closed`] once closed.
    pub fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The shared connection, made on first use.
    pub async fn store(&self) -> Result<Store> {
        self.ensure_open()?;
        let sink = self.inner.sink.clone();
        let log = self.inner.log.clone();
        let metrics = self.inner.metrics.clone();
        self.inner
            .store
            .get_or_try_init(|| async move {
                let on_status = Arc::new(move |up: bool, error: Option<String>| {
                    metrics.connection(up);
                    if up {
                        log.info(serde_json::json!({}), "Redis connection restored");
                    } else {
                        log.warn(
                            serde_json::json!({ "error": error.clone() }),
                            "Redis connection lost",
                        );
                    }
                    sink.emit(NetEvent::Connection {
                        connected: up,
                        error,
                    });
                });
                if let Some(creds) = &self.inner.cfg.connection.credentials {
                    let (sink, log) = (self.inner.sink.clone(), self.inner.log.clone());
                    let metrics = self.inner.metrics.clone();
                    creds.set_reporter(Arc::new(move |outcome: Result<()>| {
                        metrics.credentials_refreshed(outcome.is_ok());
                        if let Err(e) = outcome {
                            log.warn(
                                serde_json::json!({ "error": e.to_string(), "code": e.code() }),
                                "credentials refresh failed; the current credentials stay in use",
                            );
                            sink.emit(NetEvent::Error(e));
                        }
                    }));
                }
                let store = Store::connect(&self.inner.cfg.connection, Some(on_status)).await?;
                self.inner.metrics.connection(true);
                if let Some(why) = store.take_name_refusal() {
                    self.inner.log.debug(
                        serde_json::json!({ "error": why }),
                        "Redis refused CLIENT SETNAME; connections stay unnamed",
                    );
                }
                self.inner.sink.emit(NetEvent::Connection {
                    connected: true,
                    error: None,
                });
                Ok(store)
            })
            .await
            .cloned()
    }

    /// What a background task (or the lifecycle) works with, over the shared connection.
    async fn ctx(&self) -> Result<TaskCtx> {
        let store = self.store().await?;
        let keys = self.inner.keys.clone();
        let writer = Writer::new(
            ActivityLog::new(store.clone(), &keys),
            self.inner.tail_ready.subscribe(),
            self.inner.cfg.connection.connect_timeout,
            self.inner.metrics.clone(),
        );
        Ok(TaskCtx {
            cfg: self.inner.cfg.clone(),
            registry: Registry::new(store.clone(), keys.clone()),
            keys,
            log: self.inner.log.clone(),
            sink: self.inner.sink.clone(),
            store,
            writer,
            own: self.inner.own.clone(),
            watchdog: self.inner.watchdog.clone(),
            metrics: self.inner.metrics.clone(),
        })
    }

    // ─── Supervisor ─────────────────────────────────────────────────────────────

    /// Spawns a lifecycle task (heartbeat, sweeper, trimmer, public-IP detection) into the
    /// current crew. A task that reports the heartbeat lost, or an operator's drain request,
    /// makes the lifecycle leave `running` (from a separate task, since leaving stops the crew
    /// it belongs to).
    fn spawn_task<F>(&self, task: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = Exit> + Send + 'static,
    {
        let mut crews = self.crews();
        let crew = crews.tasks.get_or_insert_with(Crew::new);
        let fut = task(crew.shutdown.clone());
        let net = self.clone();
        crew.handles.push(tokio::spawn(async move {
            let exit = fut.await;
            match &exit {
                Exit::HeartbeatLost(why) => {
                    let why = *why;
                    tokio::spawn(async move { net.self_lost(why).await });
                }
                Exit::DrainRequested(reason) => net.spawn_requested_drain(reason.clone()),
                Exit::Stopped => {}
            }
            exit
        }));
    }

    /// Drains on an operator's request, from its own task (the drain stops the crew of the
    /// task that heard the request). It waits for the lifecycle lock, so a request heard
    /// during `start()` drains once `start()` is done.
    fn spawn_requested_drain(&self, reason: Option<String>) {
        let net = self.clone();
        tokio::spawn(async move {
            if net.is_closed() || net.state() == State::Dead {
                return;
            }
            if let Err(e) = net.drain(reason).await {
                net.inner.log.warn(
                    serde_json::json!({ "error": e.to_string(), "code": e.code() }),
                    "drain on request failed",
                );
                net.inner.sink.emit(NetEvent::Error(e));
            }
        });
    }

    /// Stops the lifecycle tasks and a pending rejoin cooperatively, waiting at most the
    /// command timeout for each group (a sweep finishes its compare-and-set + entry).
    async fn stop_background(&self) {
        self.inner.metrics.set_sweeper_leader(false);
        let (tasks, rejoin) = {
            let mut c = self.crews();
            (c.tasks.take(), c.rejoin.take())
        };
        let bound = self.inner.cfg.connection.command_timeout;
        if let Some(r) = rejoin {
            r.stop(bound).await;
        }
        if let Some(t) = tasks {
            t.stop(bound).await;
        }
    }

    /// Stops the credentials refresher (the network is closed: nobody needs fresh ones).
    pub(super) fn stop_credentials(&self) {
        if let Some(c) = &self.inner.cfg.connection.credentials {
            c.stop();
        }
    }

    /// Stops everything at once without touching Redis (the host object is being destroyed).
    pub fn abort(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.stop_credentials();
        let (tasks, rejoin, tail) = {
            let mut c = self.crews();
            (c.tasks.take(), c.rejoin.take(), c.tail.take())
        };
        for crew in [tasks, rejoin, tail].into_iter().flatten() {
            crew.abort();
        }
        self.inner.tail_ready.send_replace(true);
    }

    // ─── Tail ───────────────────────────────────────────────────────────────────

    /// Starts or stops tailing the stream (the host calls this as listeners come and go).
    pub fn set_tail(&self, on: bool) {
        let mut crews = self.crews();
        match (on, crews.tail.is_some()) {
            (true, false) if !self.is_closed() => {
                self.inner.tail_ready.send_replace(false);
                let mut crew = Crew::new();
                let net = self.clone();
                let connect = move || {
                    let net = net.clone();
                    async move { net.ctx().await }
                };
                let ready = self.inner.tail_ready.clone();
                let errors = tail::Reporter {
                    log: self.inner.log.clone(),
                    sink: self.inner.sink.clone(),
                };
                crew.handles.push(tokio::spawn(tail::run(
                    connect,
                    errors,
                    ready,
                    crew.shutdown.clone(),
                )));
                crews.tail = Some(crew);
            }
            (false, true) => {
                if let Some(t) = crews.tail.take() {
                    t.signal();
                }
                self.inner.tail_ready.send_replace(true);
            }
            _ => {}
        }
    }

    /// Whether the tail task is running.
    pub fn is_tailing(&self) -> bool {
        self.crews()
            .tail
            .as_ref()
            .is_some_and(|t| t.handles.iter().any(|h| !h.is_finished()))
    }
}
