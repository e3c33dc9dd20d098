//! The heartbeat loop.
//!
//! Beats run on tokio timers, off the JS thread, so a busy event loop cannot delay them. But a
//! process whose event loop has not answered for `eventLoopStallMs` is hung: its beats stop
//! until the loop answers (see [`crate::core::watchdog`]), so peers see it lost.

use std::time::Instant;

use crate::core::activity::ActivityInput;
use crate::core::clock::now_ms;
use crate::core::config::LogLevel;
use crate::core::control;
use crate::core::error::Result;
use crate::core::events::DrainRequest;
use crate::core::fsm::State;
use crate::core::metrics::{rss_bytes, RttVerdict};
use crate::core::registry::HeartbeatPayload;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::watchdog::Gate;

/// What one heartbeat learned.
#[derive(Debug, PartialEq, Eq)]
pub enum BeatOutcome {
    Alive,
    /// Our hash is gone (Redis lost data): register again.
    RecordGone,
    /// A sweeper flipped our record to dead while our beats were late.
    MarkedDead,
    /// Our heartbeat key had expired while we were running (`SET … GET` found it gone): a
    /// lapse nobody may have noticed yet (a pause, a stall). The lapse is named by the
    /// deadline of the last good beat, still in [`OwnRecord::last_deadline`].
    ///
    /// [`OwnRecord::last_deadline`]: crate::core::registry::OwnRecord::last_deadline
    Lapsed,
}

/// One heartbeat's outcome, and a drain an operator asked for (only with
/// `onDrainRequest: 'drain'`; the `drainRequested` events are already emitted).
#[derive(Debug)]
pub struct Beat {
    pub outcome: BeatOutcome,
    pub drain: Option<DrainRequest>,
}

/// One heartbeat: `SET heartbeat PX ttl GET`, the index deadline (`TIME + ttl` on the index's
/// node, remembered as the name of a lapse), `HGET state`, and while
/// running `LPOP signal` (operator requests, in the same round trip). The payload carries the
/// previous beat's round trip and this process's resident memory.
pub async fn beat(ctx: &TaskCtx, lag: Option<u64>) -> Result<Beat> {
    let state = ctx.own().state.unwrap_or(State::Dead);
    let payload = HeartbeatPayload {
        last_beat: now_ms(),
        state: state.as_str().to_string(),
        exchange: ctx.cfg.identity.exchange_name.clone(),
        event_loop_lag_ms: lag,
        redis_rtt_ms: Some(ctx.metrics.last_rtt_ms()),
        rss_bytes: Some(rss_bytes()),
    };
    if let Some(lag) = lag {
        ctx.metrics.set_event_loop_lag(lag);
    }
    let pop = if state == State::Running {
        control::SIGNALS_PER_BEAT
    } else {
        0
    };
    let sent = Instant::now();
    let reply = ctx
        .registry
        .beat(
            ctx.instance_id(),
            &payload,
            ctx.cfg.timing.heartbeat_ttl,
            pop,
        )
        .await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            ctx.metrics.beat_failed();
            return Err(e);
        }
    };
    let rtt = sent.elapsed();
    if ctx.metrics.beat_ok(rtt) == RttVerdict::SlowEpisode {
        ctx.log.warn(
            serde_json::json!({ "redisRttMs": rtt.as_millis() as u64 }),
            "Redis is slow: 5 heartbeats in a row took more than 50 ms",
        );
    }
    let drain = control::hear_signals(ctx, &reply.signals);
    let state = ctx.own().state.unwrap_or(State::Dead);
    let had_deadline = ctx.own().last_deadline.is_some();
    let outcome = match reply.state.as_deref() {
        None if state == State::Registering => BeatOutcome::Alive,
        None => BeatOutcome::RecordGone,
        Some("dead") if state == State::Running => BeatOutcome::MarkedDead,
        Some("running") if state == State::Running && had_deadline && !reply.had_key => {
            BeatOutcome::Lapsed
        }
        Some(_) => BeatOutcome::Alive,
    };
    // The lapse keeps the deadline that passed; any other beat records the new one.
    if !matches!(outcome, BeatOutcome::Lapsed | BeatOutcome::MarkedDead) {
        if let Some(d) = reply.deadline {
            ctx.own().last_deadline = Some(d);
        }
    }
    Ok(Beat { outcome, drain })
}

/// After Redis lost our record: write it again (we are still running) and say so.
async fn reregister(ctx: &TaskCtx) -> Result<()> {
    let own = ctx.own().clone();
    ctx.registry.write_record(&ctx.cfg.identity, &own).await?;
    let input = ActivityInput {
        event: "REGISTERED".into(),
        reason: Some("record was missing from Redis".into()),
        ..Default::default()
    };
    ctx.writer.append_as(&ctx.author(), &input).await?;
    Ok(())
}

/// Beats every interval until shutdown or until the heartbeat is lost.
pub async fn run(ctx: TaskCtx, mut shutdown: Shutdown) -> Exit {
    let timing = ctx.cfg.timing.clone();
    let watchdog = ctx.watchdog.clone();
    let mut last_ok = Instant::now();
    let mut next = Instant::now() + timing.heartbeat_interval;
    let mut failing = false;
    let mut stalled = false;
    loop {
        if shutdown
            .sleep(next.saturating_duration_since(Instant::now()))
            .await
        {
            return Exit::Stopped;
        }
        let now = Instant::now();
        next += timing.heartbeat_interval;
        if next <= now {
            next = now + timing.heartbeat_interval;
        }
        let lag = match watchdog.gate(timing.event_loop_stall) {
            Gate::Stalled(lag) => {
                if !stalled {
                    ctx.log.warn(
                        serde_json::json!({ "eventLoopLagMs": lag }),
                        "event loop stalled: heartbeats paused until it answers",
                    );
                }
                stalled = true;
                if last_ok.elapsed() > timing.heartbeat_ttl {
                    return Exit::HeartbeatLost(
                        "the event loop stalled longer than the heartbeat TTL",
                    );
                }
                continue;
            }
            Gate::Beat(lag) => lag,
        };
        if stalled {
            stalled = false;
            ctx.log.info(
                serde_json::json!({}),
                "event loop answers again: heartbeats resumed",
            );
        }
        if watchdog.start_ping() {
            ctx.sink.ping(&watchdog);
        }
        // A beat is one unit of work: shutdown may cut it (it writes nothing that needs a
        // second step).
        let beaten = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = beat(&ctx, Some(lag)) => r,
        };
        let (outcome, drain) = match beaten {
            Ok(b) => (Ok(b.outcome), b.drain),
            Err(e) => (Err(e), None),
        };
        match outcome {
            Ok(BeatOutcome::Alive) => {
                last_ok = Instant::now();
                if ctx.log.enabled(LogLevel::Trace) {
                    ctx.log.log(
                        LogLevel::Trace,
                        serde_json::json!({ "eventLoopLagMs": lag }),
                        "heartbeat",
                    );
                }
                if failing {
                    failing = false;
                    ctx.log.info(serde_json::json!({}), "heartbeat recovered");
                }
            }
            Ok(BeatOutcome::RecordGone) => {
                last_ok = Instant::now();
                ctx.log.warn(
                    serde_json::json!({}),
                    "own instance record vanished from Redis: registering again",
                );
                let done = tokio::select! {
                    biased;
                    _ = shutdown.requested() => return Exit::Stopped,
                    r = reregister(&ctx) => r,
                };
                if let Err(e) = done {
                    ctx.report_error(e, "re-registration failed");
                }
            }
            Ok(BeatOutcome::MarkedDead) => {
                return Exit::HeartbeatLost("a sweeper declared this instance lost");
            }
            Ok(BeatOutcome::Lapsed) => {
                return Exit::HeartbeatLost("the heartbeat key had expired while running");
            }
            Err(e) => {
                if !failing {
                    ctx.report_error(e, "heartbeat failed");
                }
                failing = true;
                if last_ok.elapsed() > timing.heartbeat_ttl {
                    return Exit::HeartbeatLost(
                        "no heartbeat reached Redis within the heartbeat TTL",
                    );
                }
            }
        }
        if let Some(req) = drain {
            return Exit::DrainRequested(req.reason);
        }
    }
}
