//! One network member: what the napi class wraps; it can be driven from plain Rust (and is,
//! in `cargo test`). This module is the only place that spawns or stops background tasks
//! (the supervisor): each task gets a narrow [`TaskCtx`], stops on a shutdown signal between
//! units of work and returns how it ended. The lifecycle is in [`lifecycle`], the activity
//! tail in [`tail`]; queries are here.

mod lifecycle;
mod tail;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

use crate::core::activity::{self, ActivityEntry, ActivityInput, ActivityLog, Query, Writer};
use crate::core::config::{Config, PublicIpMode};
use crate::core::control;
use crate::core::error::{Error, Result};
use crate::core::events::{EventSink, NetEvent};
use crate::core::fsm::State;
use crate::core::keys::Keys;
use crate::core::logging::{LogSink, Logger};
use crate::core::metrics::Metrics;
use crate::core::ordered::{Ordered, Sink};
use crate::core::registry::{parse_record, InstanceInfo, OwnRecord, Registry};
use crate::core::store::{Command, Store};
use crate::core::sweeper::NetworkState;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::watchdog::Watchdog;

pub use crate::core::clock::iso_now;

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
    /// The one ordered queue of this network's `logActivity` batches (call order across ticks).
    ordered: Arc<Ordered>,
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
                ordered: Arc::new(Ordered::default()),
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

    // ─── Operators ──────────────────────────────────────────────────────────────

    /// Asks a running instance to drain (see [`control::request_drain`]).
    pub async fn request_drain(&self, id: &str, reason: Option<String>) -> Result<bool> {
        control::request_drain(&self.ctx().await?, id, reason).await
    }

    /// Forgets a dead instance (see [`control::forget_instance`]).
    pub async fn forget_instance(&self, id: &str, force: bool) -> Result<bool> {
        control::forget_instance(&self.ctx().await?, id, force).await
    }

    /// The sweeper lease holder, if any.
    pub async fn sweeper(&self) -> Result<Option<control::SweeperLease>> {
        control::sweeper(&self.store().await?, &self.inner.keys).await
    }

    /// This process's metrics in the Prometheus text format 0.0.4.
    pub fn metrics_text(&self) -> Result<String> {
        self.ensure_open()?;
        let id = &self.inner.cfg.identity;
        Ok(self.inner.metrics.render(
            &crate::core::metrics::InfoLabels {
                instance_id: &id.instance_id,
                exchange: &id.exchange_name,
                version: &id.version,
            },
            self.state(),
        ))
    }

    // ─── Queries ────────────────────────────────────────────────────────────────

    /// Instances not `dead` (or all, with `include_dead`), unparsable records skipped.
    pub async fn list_instances(&self, include_dead: bool) -> Result<Vec<InstanceInfo>> {
        let registry = self.ctx().await?.registry;
        let ids = registry.ids(self.inner.cfg.discovery).await?;
        let raw = registry.read_records(&ids).await?;
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            if r.hash.is_empty() {
                continue;
            }
            match parse_record(&r.id, &r.hash, r.heartbeat.as_deref()) {
                Some(info) if include_dead || info.state != State::Dead => out.push(info),
                Some(_) => {}
                None => self.inner.log.warn(
                    serde_json::json!({ "key": self.inner.keys.instance(&r.id) }),
                    "skipped an instance record that cannot be parsed",
                ),
            }
        }
        Ok(out)
    }

    /// One instance, or `None` when missing or unparsable.
    pub async fn get_instance(&self, id: &str) -> Result<Option<InstanceInfo>> {
        crate::core::config::validate_instance_id("instanceId", id)?;
        self.ctx().await?.registry.get(id).await
    }

    /// The sweeper's last snapshot, or `None` (none yet, or unparsable).
    pub async fn network_state(&self) -> Result<Option<NetworkState>> {
        let store = self.store().await?;
        let cmd = Command::read("GET", &self.inner.keys.network_state());
        let raw: Option<Vec<u8>> = store.query(&cmd).await.or_else(|e| match e {
            Error::Redis(_) => Ok(None),
            e => Err(e),
        })?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Appends an application entry. Works in any state until close.
    pub async fn log_activity(&self, input: ActivityInput) -> Result<String> {
        self.ensure_open()?;
        activity::validate_input(&input)?;
        self.append(input).await
    }

    /// Many `log_activity` calls as one pipeline (the Node layer gathers one tick's calls):
    /// each input gets its own stream ID or error, in order; an invalid input fails alone and
    /// is not sent.
    pub async fn log_activity_batch(&self, inputs: Vec<ActivityInput>) -> Vec<Result<String>> {
        if let Err(e) = self.ensure_open() {
            return inputs.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out: Vec<Result<String>> = inputs
            .iter()
            .map(|i| activity::validate_input(i).map(|()| String::new()))
            .collect();
        let sendable: Vec<usize> = (0..inputs.len()).filter(|&i| out[i].is_ok()).collect();
        if sendable.is_empty() {
            return out;
        }
        let valid: Vec<&ActivityInput> = sendable.iter().map(|&i| &inputs[i]).collect();
        let results = match self.ctx().await {
            Ok(ctx) => ctx.writer.append_many_as(&ctx.author(), &valid).await,
            Err(e) => valid.iter().map(|_| Err(e.clone())).collect(),
        };
        for (i, r) in sendable.into_iter().zip(results) {
            out[i] = r;
        }
        out
    }

    /// Queues one flush's `logActivity` inputs (validated) behind every earlier flush of this
    /// network; `sink` hears their results in call order. Returns the future that sends them
    /// when no sender runs yet: the caller spawns it (the host owns the runtime). So there is
    /// one ordered writer per network, and a flush never overtakes an earlier one.
    pub fn submit_activity(
        &self,
        inputs: Vec<ActivityInput>,
        sink: Arc<dyn Sink>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        if !self.inner.ordered.submit(inputs, sink) {
            return None;
        }
        let net = self.clone();
        Some(async move {
            let queue = net.inner.ordered.clone();
            queue
                .drain(move |chunk| {
                    let net = net.clone();
                    async move {
                        let n = chunk.len();
                        // A bug must fail these calls, not stop the queue for good.
                        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                            net.log_activity_batch(chunk),
                        ))
                        .await
                        .unwrap_or_else(|_| {
                            (0..n)
                                .map(|_| {
                                    Err(Error::Redis(
                                        "internal error (a bug): the activity writer panicked"
                                            .into(),
                                    ))
                                })
                                .collect()
                        })
                    }
                })
                .await;
        })
    }

    /// Appends an entry of this instance's own.
    async fn append(&self, input: ActivityInput) -> Result<String> {
        let ctx = self.ctx().await?;
        ctx.writer.append_as(&ctx.author(), &input).await
    }

    async fn activity_log(&self) -> Result<ActivityLog> {
        Ok(ActivityLog::new(self.store().await?, &self.inner.keys))
    }

    pub async fn query_activity(&self, q: &Query) -> Result<Vec<ActivityEntry>> {
        self.activity_log().await?.query(q).await
    }

    /// The same query as a JSON array of entries (for hosts that parse JSON fastest).
    pub async fn query_activity_json(&self, q: &Query) -> Result<String> {
        self.activity_log().await?.query_json(q).await
    }

    /// Trims with `retention_ms`, or the configured retention (0 entries when that is off).
    pub async fn trim_activity(&self, retention_ms: Option<u64>) -> Result<u64> {
        let retention = match retention_ms {
            Some(ms) => ms,
            None => match self.inner.cfg.timing.activity_retention {
                Some(d) => d.as_millis() as u64,
                None => {
                    self.ensure_open()?;
                    return Ok(0);
                }
            },
        };
        self.activity_log().await?.trim(retention).await
    }

    pub async fn activity_length(&self) -> Result<u64> {
        self.activity_log().await?.len().await
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
