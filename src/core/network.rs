//! One network member: its lifecycle, its background tasks, and every query. This is what
//! the napi class wraps; it can be driven from plain Rust (and is, in `cargo test`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::core::activity::{self, ActivityEntry, ActivityInput, ActivityLog, Author, Query};
use crate::core::config::{now_ms, Config, OnHeartbeatLost, PublicIpMode};
use crate::core::control;
use crate::core::error::{Error, Result};
use crate::core::events::{EventSink, NetEvent, StateChange};
use crate::core::fsm::{next_state, Event, State};
use crate::core::heartbeat::{self, Watchdog};
use crate::core::ip;
use crate::core::keys::Keys;
use crate::core::logging::{LogSink, Logger};
use crate::core::metrics::{rss_bytes, Metrics, RttVerdict};
use crate::core::registry::{
    parse_record, record_fields, HeartbeatPayload, InstanceInfo, Registry,
};
use crate::core::store::Store;
use crate::core::sweeper::{self, NetworkState};

/// ISO 8601 with milliseconds, UTC.
pub fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long one blocking read of the tail waits.
const TAIL_BLOCK: Duration = Duration::from_millis(1000);

/// Write the record fresh: a rejoin must not inherit fields (or a TTL) of its previous life.
const WRITE_RECORD: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
";

/// Update state fields only if the record exists (never resurrect a partial hash).
const SET_STATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'lastStateChange', ARGV[2])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// What one heartbeat learned.
#[derive(Debug, PartialEq, Eq)]
pub enum BeatOutcome {
    Alive,
    /// Our hash is gone (Redis lost data): register again.
    RecordGone,
    /// A sweeper flipped our record to dead while our beats were late.
    MarkedDead,
}

/// A handle on one network member. Cheap to clone; all clones are the same member.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    keys: Keys,
    log: Logger,
    sink: Arc<dyn EventSink>,
    store: OnceCell<Store>,
    watchdog: Arc<Watchdog>,
    metrics: Arc<Metrics>,
    /// Serialises start / drain / fail / close / self-loss.
    lifecycle: tokio::sync::Mutex<()>,
    life: Mutex<Life>,
    closed: AtomicBool,
    /// `false` while a tail is starting and has not yet fixed its start point: our own
    /// appends wait for it, so a listener attached before a write always hears that write.
    tail_ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Life {
    state: Option<State>,
    public_ip: Option<String>,
    private_ip: Option<String>,
    registered_at: String,
    last_state_change: String,
    /// Heartbeat, sweeper, trimmer, public-IP detection: stopped when the lifecycle ends.
    tasks: Vec<JoinHandle<()>>,
    /// Waits for Redis after a self-loss with 'rejoin'.
    rejoin: Option<JoinHandle<()>>,
    tail: Option<JoinHandle<()>>,
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
                cfg,
                log,
                sink,
                store: OnceCell::new(),
                watchdog,
                metrics: Arc::new(Metrics::default()),
                lifecycle: tokio::sync::Mutex::new(()),
                life: Mutex::new(Life {
                    state: Some(State::Idle),
                    public_ip,
                    ..Default::default()
                }),
                closed: AtomicBool::new(false),
                tail_ready: tokio::sync::watch::Sender::new(true),
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
        self.life().state.unwrap_or(State::Dead)
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.inner.life.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_open(&self) -> Result<()> {
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
                let store = Store::connect(&self.inner.cfg.connection, Some(on_status)).await?;
                self.inner.metrics.connection(true);
                self.inner.sink.emit(NetEvent::Connection {
                    connected: true,
                    error: None,
                });
                Ok(store)
            })
            .await
            .cloned()
    }

    pub(crate) async fn registry(&self) -> Result<Registry> {
        Ok(Registry::new(self.store().await?, self.inner.keys.clone()))
    }

    async fn activity_log(&self) -> Result<ActivityLog> {
        Ok(ActivityLog::new(self.store().await?, &self.inner.keys))
    }

    fn author(&self) -> Author {
        let id = &self.inner.cfg.identity;
        Author {
            instance_id: id.instance_id.clone(),
            exchange: id.exchange_name.clone(),
            exchange_id: id.exchange_id,
            hostname: id.hostname.clone(),
            public_ip: self.life().public_ip.clone(),
        }
    }

    /// Appends an entry written on behalf of `author` (the sweeper writes for lost peers).
    pub(crate) async fn append_as(&self, author: &Author, input: &ActivityInput) -> Result<String> {
        if !*self.inner.tail_ready.borrow() {
            let mut ready = self.inner.tail_ready.subscribe();
            let limit = self.inner.cfg.connection.connect_timeout;
            let _ = tokio::time::timeout(limit, ready.wait_for(|r| *r)).await;
        }
        let fields = activity::encode(author, input, &iso_now());
        let appended = self.activity_log().await?.append(&fields).await;
        self.inner.metrics.appended(appended.is_ok());
        appended
    }

    async fn append(&self, input: ActivityInput) -> Result<String> {
        self.append_as(&self.author(), &input).await
    }

    /// Logs a background failure and emits it as an `error` event.
    pub(crate) fn report_error(&self, e: Error, what: &str) {
        self.inner.log.warn(
            serde_json::json!({ "error": e.to_string(), "code": e.code() }),
            what,
        );
        self.inner.sink.emit(NetEvent::Error(e));
    }

    // ─── Lifecycle ──────────────────────────────────────────────────────────────

    /// Takes one FSM step: checks it, records it in Redis (best effort), emits `stateChange`.
    async fn transition(&self, event: Event, reason: Option<String>) -> Result<StateChange> {
        let (from, to) = {
            let mut life = self.life();
            let from = life.state.unwrap_or(State::Dead);
            let to = next_state(from, event).ok_or(Error::IllegalTransition { from, event })?;
            life.state = Some(to);
            (from, to)
        };
        let change = StateChange {
            instance_id: self.instance_id().to_string(),
            from,
            to,
            event,
            reason: reason.clone(),
            at: iso_now(),
        };
        self.life().last_state_change = change.at.clone();
        if self.inner.store.initialized() {
            if let Err(e) = self.persist_transition(&change).await {
                self.inner.log.warn(
                    serde_json::json!({ "error": e.to_string(), "from": from.as_str(), "to": to.as_str() }),
                    "could not record a state change in Redis",
                );
            }
        }
        self.inner.log.info(
            serde_json::json!({ "from": from.as_str(), "to": to.as_str(), "event": event.as_str(), "reason": reason }),
            "state change",
        );
        self.inner.sink.emit(NetEvent::StateChange(change.clone()));
        Ok(change)
    }

    async fn persist_transition(&self, c: &StateChange) -> Result<()> {
        let store = self.store().await?;
        let ttl = if c.to == State::Dead {
            self.inner
                .cfg
                .timing
                .dead_instance_ttl
                .as_millis()
                .to_string()
        } else {
            String::new()
        };
        let _: i64 = store
            .script(
                &redis::Script::new(SET_STATE),
                &[&self.inner.keys.instance(self.instance_id())],
                &[c.to.as_str(), &c.at, &ttl],
            )
            .await?;
        self.append(ActivityInput {
            event: "STATE_CHANGE".into(),
            reason: c.reason.clone(),
            from_state: Some(c.from),
            to_state: Some(c.to),
            fields: vec![("lifecycleEvent".into(), c.event.as_str().into())],
        })
        .await?;
        Ok(())
    }

    /// idle → registering → running. On failure → dead (ERROR), and the error is returned.
    pub async fn start(&self) -> Result<InstanceInfo> {
        let _guard = self.inner.lifecycle.lock().await;
        self.ensure_open()?;
        let from = self.state();
        if next_state(from, Event::Register).is_none() {
            return Err(Error::IllegalTransition {
                from,
                event: Event::Register,
            });
        }
        // Connect first, so REGISTER (idle → registering) is recorded in Redis like every
        // other transition; a connect failure still takes idle → registering → dead.
        let connected = self.store().await.map(|_| ());
        self.transition(Event::Register, None).await?;
        let registered = match connected {
            Ok(()) => self.register().await,
            Err(e) => Err(e),
        };
        match registered {
            Ok(()) => {
                self.transition(Event::Registered, None).await?;
                // One beat now, so the payload says `running` before the first interval ends.
                if let Err(e) = self.beat(None).await {
                    self.report_error(e, "heartbeat failed");
                }
                self.spawn_background();
                Ok(self.local_info())
            }
            Err(e) => {
                let _ = self
                    .transition(Event::Error, Some(format!("registration failed: {e}")))
                    .await;
                self.inner.sink.emit(NetEvent::Released);
                Err(e)
            }
        }
    }

    /// Writes the heartbeat, the record, the index entry, then REGISTERED.
    async fn register(&self) -> Result<()> {
        let store = self.store().await?;
        {
            let mut life = self.life();
            life.private_ip = ip::private_ip();
            life.registered_at = iso_now();
        }
        self.beat(None).await?;
        self.write_record(&store).await?;
        self.append(ActivityInput {
            event: "REGISTERED".into(),
            ..Default::default()
        })
        .await?;
        if let PublicIpMode::Detect { endpoints, timeout } = &self.inner.cfg.identity.public_ip {
            if self.life().public_ip.is_none() {
                let (net, endpoints, timeout) = (self.clone(), endpoints.clone(), *timeout);
                let task = tokio::spawn(async move {
                    net.detect_and_store_public_ip(&endpoints, timeout).await
                });
                self.life().tasks.push(task);
            }
        }
        Ok(())
    }

    /// Registration never waits for the public IP: it is filled in when detection answers.
    async fn detect_and_store_public_ip(&self, endpoints: &[String], timeout: Duration) {
        let Some(found) = ip::detect_public_ip(endpoints, timeout).await else {
            self.inner
                .log
                .debug(serde_json::json!({}), "public IP not detected");
            return;
        };
        self.life().public_ip = Some(found.clone());
        if let Ok(store) = self.store().await {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.inner.keys.instance(self.instance_id()))
                .arg("publicIp")
                .arg(&found);
            let _ = store.query::<Value>(&cmd).await;
        }
    }

    async fn write_record(&self, store: &Store) -> Result<()> {
        let (state, public_ip, private_ip, registered_at, last_change) = {
            let l = self.life();
            (
                l.state.unwrap_or(State::Dead),
                l.public_ip.clone(),
                l.private_ip.clone(),
                l.registered_at.clone(),
                l.last_state_change.clone(),
            )
        };
        let fields = record_fields(
            &self.inner.cfg.identity,
            public_ip.as_deref(),
            private_ip.as_deref(),
            state,
            &registered_at,
            &last_change,
        );
        let args: Vec<String> = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _: i64 = store
            .script(
                &redis::Script::new(WRITE_RECORD),
                &[&self.inner.keys.instance(self.instance_id())],
                &args,
            )
            .await?;
        Ok(())
    }

    /// After Redis lost our record: write it again (we are still running) and say so.
    pub(crate) async fn reregister(&self) -> Result<()> {
        let store = self.store().await?;
        self.write_record(&store).await?;
        self.append(ActivityInput {
            event: "REGISTERED".into(),
            reason: Some("record was missing from Redis".into()),
            ..Default::default()
        })
        .await?;
        Ok(())
    }

    /// One heartbeat: `SET heartbeat PX ttl`, `ZADD instances now id`, `HGET state`, and
    /// `LPOP signal` (operator requests ride the beat's round trip).
    pub(crate) async fn beat(&self, lag: Option<u64>) -> Result<BeatOutcome> {
        let store = self.store().await?;
        let id = self.instance_id();
        let keys = &self.inner.keys;
        let now = now_ms();
        let payload = HeartbeatPayload {
            last_beat: now,
            state: self.state().as_str().to_string(),
            exchange: self.inner.cfg.identity.exchange_name.clone(),
            event_loop_lag_ms: lag,
            redis_rtt_ms: Some(self.inner.metrics.last_rtt_ms()),
            rss_bytes: Some(rss_bytes()),
        };
        if let Some(lag) = lag {
            self.inner.metrics.set_event_loop_lag(lag);
        }
        let mut set = redis::cmd("SET");
        set.arg(keys.heartbeat(id))
            .arg(serde_json::to_string(&payload).unwrap_or_default())
            .arg("PX")
            .arg(self.inner.cfg.timing.heartbeat_ttl.as_millis() as u64);
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys.instances()).arg(now).arg(id);
        let mut hget = redis::cmd("HGET");
        hget.arg(keys.instance(id)).arg("state");
        let sent = std::time::Instant::now();
        let replies = store
            .query_many(vec![set, zadd, hget, control::pop_signals_cmd(self)])
            .await
            // A foreign value at the signal key must not fail the beat: only the first three
            // replies count.
            .and_then(
                |replies| match replies.iter().take(3).find_map(|r| r.as_ref().err()) {
                    Some(e) => Err(Error::Redis(e.clone())),
                    None => Ok(replies),
                },
            );
        let replies = match replies {
            Ok(r) => r,
            Err(e) => {
                self.inner.metrics.beat_failed();
                return Err(e);
            }
        };
        let rtt = sent.elapsed();
        if self.inner.metrics.beat_ok(rtt) == RttVerdict::SlowEpisode {
            self.inner.log.warn(
                serde_json::json!({ "redisRttMs": rtt.as_millis() as u64 }),
                "Redis is slow: 5 heartbeats in a row took more than 50 ms",
            );
        }
        if let Some(Ok(popped)) = replies.get(3) {
            control::on_signals(self, popped);
        }
        let state = replies
            .get(2)
            .and_then(|r| r.as_ref().ok())
            .and_then(crate::core::registry::text);
        Ok(match state.as_deref() {
            None => {
                if self.state() == State::Registering {
                    BeatOutcome::Alive
                } else {
                    BeatOutcome::RecordGone
                }
            }
            Some("dead") if self.state() == State::Running => BeatOutcome::MarkedDead,
            Some(_) => BeatOutcome::Alive,
        })
    }

    fn spawn_background(&self) {
        let mut tasks = vec![
            tokio::spawn(heartbeat::run(self.clone())),
            tokio::spawn(sweeper::run(self.clone())),
        ];
        if let Some(retention) = self.inner.cfg.timing.activity_retention {
            tasks.push(tokio::spawn(activity_trimmer(self.clone(), retention)));
        }
        self.life().tasks.extend(tasks);
    }

    fn stop_background(&self) {
        self.inner.metrics.set_sweeper_leader(false);
        let mut life = self.life();
        for t in life.tasks.drain(..) {
            t.abort();
        }
        if let Some(r) = life.rejoin.take() {
            r.abort();
        }
    }

    /// The instance as this process knows it.
    fn local_info(&self) -> InstanceInfo {
        let id = &self.inner.cfg.identity;
        let l = self.life();
        InstanceInfo {
            instance_id: id.instance_id.clone(),
            hostname: id.hostname.clone(),
            exchange_id: id.exchange_id,
            exchange_name: id.exchange_name.clone(),
            public_ip: l.public_ip.clone(),
            private_ip: l.private_ip.clone(),
            pid: id.pid,
            version: id.version.clone(),
            state: l.state.unwrap_or(State::Dead),
            registered_at: l.registered_at.clone(),
            last_state_change: l.last_state_change.clone(),
            metadata: id.metadata.clone(),
            alive: true,
            last_heartbeat: Some(now_ms()),
            health: Some(crate::core::registry::InstanceHealth {
                redis_rtt_ms: self.inner.metrics.last_rtt_ms(),
                event_loop_lag_ms: self.inner.metrics.event_loop_lag_ms(),
                rss_bytes: rss_bytes(),
            }),
        }
    }

    /// running → draining → dead. Idempotent on a dead instance.
    pub async fn drain(&self, reason: Option<String>) -> Result<()> {
        let _guard = self.inner.lifecycle.lock().await;
        self.ensure_open()?;
        self.drain_locked(reason).await
    }

    async fn drain_locked(&self, reason: Option<String>) -> Result<()> {
        match self.state() {
            State::Dead => {
                self.stop_background();
                self.inner.sink.emit(NetEvent::Released);
                return Ok(());
            }
            State::Running => {}
            from => {
                return Err(Error::IllegalTransition {
                    from,
                    event: Event::Drain,
                })
            }
        }
        self.transition(Event::Drain, reason.clone()).await?;
        self.stop_background();
        let mut result = self
            .append(ActivityInput {
                event: "DEREGISTERED".into(),
                reason,
                ..Default::default()
            })
            .await
            .map(|_| ());
        let _ = sweeper::release(self).await;
        self.transition(Event::Drained, None).await?;
        // The state is dead before the heartbeat goes, so no sweeper reports a drained
        // instance as lost.
        if let Err(e) = self.delete_heartbeat().await {
            result = result.and(Err(e));
        }
        self.inner.sink.emit(NetEvent::Released);
        result
    }

    async fn delete_heartbeat(&self) -> Result<()> {
        let store = self.store().await?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.keys.heartbeat(self.instance_id()));
        let _: i64 = store.query(&cmd).await?;
        Ok(())
    }

    /// registering|running → dead (ERROR), with the reason logged and recorded.
    pub async fn fail(&self, reason: String) -> Result<()> {
        let _guard = self.inner.lifecycle.lock().await;
        self.ensure_open()?;
        self.transition(Event::Error, Some(reason.clone())).await?;
        self.inner
            .log
            .error(serde_json::json!({ "reason": reason }), "instance failed");
        self.stop_background();
        let _ = sweeper::release(self).await;
        let entry = self
            .append(ActivityInput {
                event: "ERROR".into(),
                reason: Some(reason),
                ..Default::default()
            })
            .await;
        let deleted = self.delete_heartbeat().await;
        self.inner.sink.emit(NetEvent::Released);
        entry.and(deleted)
    }

    /// Our heartbeat was lost: leave the lifecycle (from a separate task, since the caller is
    /// one of the tasks this stops).
    pub(crate) fn spawn_self_lost(&self, why: &'static str) {
        let net = self.clone();
        tokio::spawn(async move { net.self_lost(why).await });
    }

    async fn self_lost(&self, why: &str) {
        let _guard = self.inner.lifecycle.lock().await;
        if self.is_closed() || self.state() != State::Running {
            return;
        }
        self.stop_background();
        let _ = self
            .transition(Event::HeartbeatLost, Some(why.to_string()))
            .await;
        match self.inner.cfg.on_heartbeat_lost {
            OnHeartbeatLost::StayDead => self.inner.sink.emit(NetEvent::Released),
            OnHeartbeatLost::Rejoin => {
                let net = self.clone();
                self.life().rejoin = Some(tokio::spawn(async move { net.rejoin().await }));
            }
        }
    }

    /// Waits for Redis, then starts a fresh lifecycle with the same instance id.
    async fn rejoin(&self) {
        let interval = self.inner.cfg.timing.heartbeat_interval;
        loop {
            tokio::time::sleep(interval).await;
            let Ok(store) = self.store().await else {
                return;
            };
            if store.query::<Value>(&redis::cmd("PING")).await.is_err() {
                continue;
            }
            // A hung event loop must not look alive: rejoin only once it answers again.
            if let heartbeat::Gate::Stalled(_) = self
                .inner
                .watchdog
                .gate(self.inner.cfg.timing.event_loop_stall)
            {
                continue;
            }
            {
                let _guard = self.inner.lifecycle.lock().await;
                if self.is_closed() || self.state() != State::Dead {
                    return;
                }
                self.life().state = Some(State::Idle);
                self.inner.log.info(
                    serde_json::json!({}),
                    "Redis answers again: rejoining with the same instance id",
                );
            }
            // `start` takes the lifecycle lock itself; our own handle must not abort us.
            self.life().rejoin = None;
            if self.start().await.is_ok() {
                return;
            }
        }
    }

    /// Drains when running, then stops every task and releases the host's handles.
    pub async fn close(&self) -> Result<()> {
        let _guard = self.inner.lifecycle.lock().await;
        if self.is_closed() {
            return Ok(());
        }
        let drained = if self.state() == State::Running {
            self.drain_locked(None).await
        } else {
            Ok(())
        };
        self.inner.closed.store(true, Ordering::Release);
        self.stop_background();
        if let Some(t) = self.life().tail.take() {
            t.abort();
        }
        self.inner.tail_ready.send_replace(true);
        self.inner.sink.emit(NetEvent::Released);
        self.inner.sink.close();
        if let Err(e) = drained {
            self.inner.log.warn(
                serde_json::json!({ "error": e.to_string() }),
                "drain during close failed; closing anyway",
            );
        }
        Ok(())
    }

    /// Stops tasks at once without touching Redis (the host object is being destroyed).
    pub fn abort(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.stop_background();
        if let Some(t) = self.life().tail.take() {
            t.abort();
        }
        self.inner.tail_ready.send_replace(true);
    }

    // ─── Queries ────────────────────────────────────────────────────────────────

    /// Instances not `dead` (or all, with `include_dead`), unparsable records skipped.
    pub async fn list_instances(&self, include_dead: bool) -> Result<Vec<InstanceInfo>> {
        let registry = self.registry().await?;
        let ids = registry.ids(self.inner.cfg.discovery).await?;
        let raw = registry.read_raw(&ids).await?;
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
        self.registry().await?.get(id).await
    }

    /// The sweeper's last snapshot, or `None` (none yet, or unparsable).
    pub async fn network_state(&self) -> Result<Option<NetworkState>> {
        let store = self.store().await?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.inner.keys.network_state());
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
        let mut life = self.life();
        match (on, life.tail.is_some()) {
            (true, false) if !self.is_closed() => {
                self.inner.tail_ready.send_replace(false);
                let net = self.clone();
                life.tail = Some(tokio::spawn(async move { net.tail().await }));
            }
            (false, true) => {
                if let Some(t) = life.tail.take() {
                    t.abort();
                }
                self.inner.tail_ready.send_replace(true);
            }
            _ => {}
        }
    }

    /// Whether the tail task is running.
    pub fn is_tailing(&self) -> bool {
        self.life().tail.as_ref().is_some_and(|t| !t.is_finished())
    }

    async fn tail(&self) {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        let mut last: Option<String> = None;
        let mut reader: Option<ActivityLog> = None;
        loop {
            let step: Result<()> = async {
                if reader.is_none() {
                    let store = self.store().await?;
                    let dedicated = store.dedicated(TAIL_BLOCK).await?;
                    reader = Some(ActivityLog::new(dedicated, &self.inner.keys));
                }
                let log = reader.as_ref().expect("set above");
                if last.is_none() {
                    last = Some(log.last_id().await?);
                    self.inner.tail_ready.send_replace(true);
                }
                let after = last.clone().unwrap_or_else(|| "0-0".into());
                let entries = log.read_after(&after, TAIL_BLOCK, 500).await?;
                for e in entries {
                    last = Some(e.id.clone());
                    self.dispatch_entry(e).await;
                }
                Ok(())
            }
            .await;
            match step {
                Ok(()) => {
                    failing = false;
                    backoff = Duration::from_millis(100);
                }
                Err(Error::Closed) => return,
                Err(e) => {
                    // Writers must not wait on a tail that cannot start.
                    self.inner.tail_ready.send_replace(true);
                    if !failing {
                        self.report_error(e, "activity tail failed; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn dispatch_entry(&self, e: ActivityEntry) {
        let peer_event: Option<fn(InstanceInfo) -> NetEvent> = match e.event.as_str() {
            "REGISTERED" => Some(NetEvent::InstanceJoined),
            "DEREGISTERED" => Some(NetEvent::InstanceLeft),
            "HEARTBEAT_LOST" => Some(NetEvent::InstanceLost),
            _ => None,
        };
        if let Some(make) = peer_event {
            let info = match self.get_instance(&e.instance_id).await {
                Ok(Some(info)) => info,
                _ => info_from_entry(&e),
            };
            self.inner.sink.emit(make(info));
        }
        self.inner.sink.emit(NetEvent::Activity(e));
    }
}

/// A peer's info rebuilt from its entry when its record is gone.
fn info_from_entry(e: &ActivityEntry) -> InstanceInfo {
    InstanceInfo {
        instance_id: e.instance_id.clone(),
        hostname: e.hostname.clone().unwrap_or_default(),
        exchange_id: e.exchange_id.unwrap_or(0),
        exchange_name: e.exchange.clone(),
        public_ip: e.public_ip.clone(),
        private_ip: None,
        pid: 0,
        version: String::new(),
        state: e.to_state.unwrap_or(if e.event == "REGISTERED" {
            State::Running
        } else {
            State::Dead
        }),
        registered_at: String::new(),
        last_state_change: e.ts.clone(),
        metadata: Default::default(),
        alive: e.event == "REGISTERED",
        last_heartbeat: None,
        health: None,
    }
}

/// Trims the stream every `trimIntervalMs` while the instance is started.
async fn activity_trimmer(net: Network, retention: Duration) {
    let every = net.config().timing.trim_interval;
    loop {
        tokio::time::sleep(every).await;
        match net.trim_activity(Some(retention.as_millis() as u64)).await {
            Ok(n) => net.logger().debug(
                serde_json::json!({ "removed": n }),
                "activity stream trimmed",
            ),
            Err(e) => net.report_error(e, "activity trim failed"),
        }
    }
}
