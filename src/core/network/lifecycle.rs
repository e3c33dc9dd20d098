//! The lifecycle: start (register), drain, fail, self-loss, rejoin and close — each one FSM
//! step recorded in Redis, with the background tasks started and stopped around them.

use std::time::Duration;

use redis::Value;

use super::Network;
use crate::core::activity::{validate_reason, ActivityInput};
use crate::core::clock::{iso_now, now_ms};
use crate::core::config::{OnHeartbeatLost, PublicIpMode};
use crate::core::error::{Error, Result};
use crate::core::events::{NetEvent, StateChange};
use crate::core::fsm::{next_state, Event, State};
use crate::core::redact::clip;
use crate::core::registry::{InstanceInfo, Rewrite};
use crate::core::store::{Command, Kind};
use crate::core::sweeper::report;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::trace::{TraceKind, TraceTimer};
use crate::core::watchdog::Gate;
use crate::core::{heartbeat, ip, sweeper, trimmer};

impl Network {
    /// Takes one FSM step: checks it, records it in Redis (best effort), emits `stateChange`.
    async fn transition(&self, event: Event, reason: Option<String>) -> Result<StateChange> {
        let (from, to) = {
            let mut own = self.own();
            let from = own.state.unwrap_or(State::Dead);
            let to = next_state(from, event).ok_or(Error::IllegalTransition { from, event })?;
            own.state = Some(to);
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
        self.own().last_state_change = change.at.clone();
        let timer = TraceTimer::start(&*self.inner.sink, TraceKind::Lifecycle);
        let mut failure = None;
        if self.inner.store.initialized() {
            if let Err(e) = self.persist_transition(&change).await {
                failure = Some(e.clone());
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
        if let Some(t) = timer {
            let trace = t
                .finish()
                .with("from", from.as_str())
                .with("to", to.as_str())
                .with("event", event.as_str())
                .with("reason", reason)
                .failed(failure);
            self.inner.sink.trace(trace);
        }
        Ok(change)
    }

    async fn persist_transition(&self, c: &StateChange) -> Result<()> {
        let ctx = self.ctx().await?;
        // A lost heartbeat's record was flipped by the mark-dead compare-and-set with the
        // lapse's token (see `self_lost`); a plain state write would mark it dead without one,
        // and then no sweeper would report the lapse.
        if c.event != Event::HeartbeatLost {
            let ttl = (c.to == State::Dead).then_some(self.inner.cfg.timing.dead_instance_ttl);
            ctx.registry
                .set_state(self.instance_id(), c.to, &c.at, ttl)
                .await?;
        }
        let input = ActivityInput {
            event: "STATE_CHANGE".into(),
            reason: c.reason.clone(),
            from_state: Some(c.from),
            to_state: Some(c.to),
            fields: vec![("lifecycleEvent".into(), c.event.as_str().into())],
            idempotency_key: None,
        };
        ctx.writer.append_as(&ctx.author(), &input).await?;
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
        let connected = self.ctx().await;
        self.transition(Event::Register, None).await?;
        let registered = match connected {
            Ok(ctx) => self.register(&ctx).await.map(|()| ctx),
            Err(e) => Err(e),
        };
        match registered {
            Ok(ctx) => {
                self.transition(Event::Registered, None).await?;
                // One beat now, so the payload says `running` before the first interval ends.
                let drain = match heartbeat::beat(&ctx, None).await {
                    Ok(b) => b.drain,
                    Err(e) => {
                        ctx.report_error(e, "heartbeat failed");
                        None
                    }
                };
                self.spawn_background(&ctx);
                if let Some(req) = drain {
                    self.spawn_requested_drain(req.reason);
                }
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
    async fn register(&self, ctx: &TaskCtx) -> Result<()> {
        {
            let mut own = self.own();
            own.private_ip = ip::private_ip();
            own.registered_at = iso_now();
            own.last_deadline = None;
        }
        heartbeat::beat(ctx, None).await?;
        let own = self.own().clone();
        let identity = &self.inner.cfg.identity;
        // A record that still owes its HEARTBEAT_LOST report is never rewritten (the token
        // would go): settle the report first, then write.
        if let Rewrite::Owed(_) = ctx.registry.write_record(identity, &own).await? {
            let owed = |why: String| {
                Error::Conflict(format!(
                    "instance '{}' still owes the HEARTBEAT_LOST entry of its last lapse: {why}",
                    clip(self.instance_id())
                ))
            };
            report::settle_record(ctx, self.instance_id(), &ctx.author())
                .await
                .map_err(|e| owed(format!("it could not be written ({e})")))?;
            if let Rewrite::Owed(_) = ctx.registry.write_record(identity, &own).await? {
                return Err(owed("it is still owed".into()));
            }
        }
        let input = ActivityInput {
            event: "REGISTERED".into(),
            ..Default::default()
        };
        ctx.writer.append_as(&ctx.author(), &input).await?;
        if let PublicIpMode::Detect { endpoints, timeout } = &self.inner.cfg.identity.public_ip {
            if self.own().public_ip.is_none() {
                let (ctx, endpoints, timeout) = (ctx.clone(), endpoints.clone(), *timeout);
                self.spawn_task(move |mut shutdown| async move {
                    tokio::select! {
                        biased;
                        _ = shutdown.requested() => {}
                        _ = detect_and_store_public_ip(&ctx, &endpoints, timeout) => {}
                    }
                    Exit::Stopped
                });
            }
        }
        Ok(())
    }

    /// Heartbeat, sweeper and trimmer, in the lifecycle crew.
    fn spawn_background(&self, ctx: &TaskCtx) {
        let c = ctx.clone();
        self.spawn_task(move |s| heartbeat::run(c, s));
        let c = ctx.clone();
        self.spawn_task(move |s| sweeper::run(c, s));
        // Always: the append-once tokens are trimmed even when the stream keeps everything.
        let c = ctx.clone();
        let retention = self.inner.cfg.timing.activity_retention;
        self.spawn_task(move |s| trimmer::run(c, retention, s));
    }

    /// The instance as this process knows it.
    fn local_info(&self) -> InstanceInfo {
        let id = &self.inner.cfg.identity;
        let l = self.own();
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
                rss_bytes: crate::core::metrics::rss_bytes(),
            }),
        }
    }

    /// running → draining → dead. Idempotent on a dead instance.
    pub async fn drain(&self, reason: Option<String>) -> Result<()> {
        if let Some(r) = &reason {
            validate_reason(r)?;
        }
        self.after_queued_appends().await;
        let _guard = self.inner.lifecycle.lock().await;
        self.ensure_open()?;
        self.drain_locked(reason).await
    }

    async fn drain_locked(&self, reason: Option<String>) -> Result<()> {
        match self.state() {
            State::Dead => {
                self.stop_background().await;
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
        self.stop_background().await;
        let mut result = self
            .append(ActivityInput {
                event: "DEREGISTERED".into(),
                reason,
                ..Default::default()
            })
            .await
            .map(|_| ());
        self.release_lease().await;
        self.transition(Event::Drained, None).await?;
        // The state is dead before the heartbeat goes, so no sweeper reports a drained
        // instance as lost.
        if let Err(e) = self.delete_heartbeat().await {
            result = result.and(Err(e));
        }
        self.inner.sink.emit(NetEvent::Released);
        result
    }

    /// Gives up the sweeper lease if held, so another instance sweeps at once.
    async fn release_lease(&self) {
        if let Ok(store) = self.store().await {
            let _ = sweeper::release(&store, &self.inner.keys, self.instance_id()).await;
        }
    }

    async fn delete_heartbeat(&self) -> Result<()> {
        self.ctx()
            .await?
            .registry
            .delete_heartbeat(self.instance_id())
            .await
    }

    /// registering|running → dead (ERROR), with the reason logged and recorded.
    pub async fn fail(&self, reason: String) -> Result<()> {
        validate_reason(&reason)?;
        self.after_queued_appends().await;
        let _guard = self.inner.lifecycle.lock().await;
        self.ensure_open()?;
        self.transition(Event::Error, Some(reason.clone())).await?;
        self.inner
            .log
            .error(serde_json::json!({ "reason": reason }), "instance failed");
        self.stop_background().await;
        self.release_lease().await;
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

    /// Our heartbeat was lost (a task said so): leave the lifecycle.
    pub(super) async fn self_lost(&self, why: &str) {
        let _guard = self.inner.lifecycle.lock().await;
        if self.is_closed() || self.state() != State::Running {
            return;
        }
        self.stop_background().await;
        // The lapse's one HEARTBEAT_LOST entry before anything else: flip our record dead
        // with the lapse's token (or adopt the token a sweeper recorded) and append it once.
        // If Redis refuses now, the rejoin tries again before it registers.
        let registration = self.own().registered_at.clone();
        self.own().lapse = Some(registration);
        self.settle_own_lapse().await;
        let _ = self
            .transition(Event::HeartbeatLost, Some(why.to_string()))
            .await;
        match self.inner.cfg.on_heartbeat_lost {
            OnHeartbeatLost::StayDead => self.inner.sink.emit(NetEvent::Released),
            OnHeartbeatLost::Rejoin => {
                let mut crew = super::Crew::new();
                let net = self.clone();
                let shutdown = crew.shutdown.clone();
                crew.handles
                    .push(tokio::spawn(async move { net.rejoin(shutdown).await }));
                self.crews().rejoin = Some(crew);
            }
        }
    }

    /// Makes sure this instance's pending lapse (if any) is on record as its one
    /// HEARTBEAT_LOST entry; `true` when nothing is pending any more.
    async fn settle_own_lapse(&self) -> bool {
        let Some(registration) = self.own().lapse.clone() else {
            return true;
        };
        let done = match self.ctx().await {
            Ok(ctx) => report::report_own_lapse(&ctx, &registration).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => {
                self.own().lapse = None;
                true
            }
            Err(e) => {
                self.inner.log.warn(
                    serde_json::json!({ "error": e.to_string() }),
                    "could not record this instance's own lapse yet; retrying before it rejoins",
                );
                false
            }
        }
    }

    /// Waits for Redis, then starts a fresh lifecycle with the same instance id.
    async fn rejoin(&self, mut shutdown: Shutdown) -> Exit {
        let interval = self.inner.cfg.timing.heartbeat_interval;
        // Once `start` runs, nobody may stop this task (start takes the lifecycle lock
        // itself): it holds its own crew, so its signal stays up.
        let mut own_crew = None;
        loop {
            if shutdown.sleep(interval).await {
                return Exit::Stopped;
            }
            let Ok(store) = self.store().await else {
                return Exit::Stopped;
            };
            let ping = Command::with_args(Kind::Read, "PING", None);
            let answered = tokio::select! {
                biased;
                _ = shutdown.requested() => return Exit::Stopped,
                r = store.query::<Value>(&ping) => r.is_ok(),
            };
            if !answered {
                continue;
            }
            // A hung event loop must not look alive: rejoin only once it answers again.
            if let Gate::Stalled(_) = self
                .inner
                .watchdog
                .gate(self.inner.cfg.timing.event_loop_stall)
            {
                continue;
            }
            // The lapse's entry first: a rejoin never leaves a report unwritten.
            let settled = tokio::select! {
                biased;
                _ = shutdown.requested() => return Exit::Stopped,
                done = self.settle_own_lapse() => done,
            };
            if !settled {
                continue;
            }
            {
                let _guard = tokio::select! {
                    biased;
                    _ = shutdown.requested() => return Exit::Stopped,
                    g = self.inner.lifecycle.lock() => g,
                };
                if self.is_closed() || self.state() != State::Dead {
                    return Exit::Stopped;
                }
                self.own().state = Some(State::Idle);
                self.inner.log.info(
                    serde_json::json!({}),
                    "Redis answers again: rejoining with the same instance id",
                );
            }
            if own_crew.is_none() {
                own_crew = self.crews().rejoin.take();
            }
            if self.start().await.is_ok() {
                return Exit::Stopped;
            }
        }
    }

    /// Drains when running, then stops every task and releases the host's handles.
    pub async fn close(&self) -> Result<()> {
        self.after_queued_appends().await;
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
        self.stop_background().await;
        self.stop_credentials();
        let tail = self.crews().tail.take();
        if let Some(t) = tail {
            t.stop(self.inner.cfg.connection.command_timeout).await;
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
}

use std::sync::atomic::Ordering;

/// Registration never waits for the public IP: it is filled in when detection answers.
async fn detect_and_store_public_ip(ctx: &TaskCtx, endpoints: &[String], timeout: Duration) {
    let Some(found) = ip::detect_public_ip(endpoints, timeout).await else {
        ctx.log
            .debug(serde_json::json!({}), "public IP not detected");
        return;
    };
    ctx.own().public_ip = Some(found.clone());
    let _ = ctx.registry.set_public_ip(ctx.instance_id(), &found).await;
}
