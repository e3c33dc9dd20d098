//! The heartbeat loop.
//!
//! Beats run on tokio timers, off the JS thread, so a busy event loop cannot delay them. But a
//! process whose event loop has not answered for `eventLoopStallMs` is hung: its beats stop
//! until the loop answers (see [`crate::core::watchdog`]), so peers see it lost.

use std::time::{Duration, Instant};

use crate::core::activity::ActivityInput;
use crate::core::clock::now_ms;
use crate::core::config::LogLevel;
use crate::core::control;
use crate::core::error::{Error, Result};
use crate::core::events::DrainRequest;
use crate::core::fsm::State;
use crate::core::metrics::{rss_bytes, RttVerdict};
use crate::core::registry::HeartbeatPayload;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::trace::{TraceKind, TraceTimer};
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
    /// lapse nobody may have noticed yet (a pause, a stall), named by this registration.
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
    let timer = TraceTimer::start(&*ctx.sink, TraceKind::Heartbeat);
    let beat = beat_once(ctx, lag).await;
    if let Some(t) = timer {
        let (outcome, rtt, error) = match &beat {
            Ok((b, rtt)) => (
                match b.outcome {
                    BeatOutcome::Alive => "alive",
                    BeatOutcome::RecordGone => "recordGone",
                    // A lapse the instance noticed itself: it marks itself dead.
                    BeatOutcome::MarkedDead | BeatOutcome::Lapsed => "markedDead",
                },
                *rtt,
                None,
            ),
            Err((e, rtt)) => ("failed", *rtt, Some(e.clone())),
        };
        let trace = t
            .finish()
            .with("rttMs", rtt.as_secs_f64() * 1000.0)
            .with("outcome", outcome)
            .failed(error);
        ctx.sink.trace(trace);
    }
    beat.map(|(b, _)| b).map_err(|(e, _)| e)
}

/// [`beat`] without its trace: the beat and its round trip (also when it failed).
async fn beat_once(
    ctx: &TaskCtx,
    lag: Option<u64>,
) -> std::result::Result<
    (Beat, std::time::Duration),
    (crate::core::error::Error, std::time::Duration),
> {
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
            return Err((e, sent.elapsed()));
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
    Ok((Beat { outcome, drain }, rtt))
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
    let mut quick = QuickRetry::default();
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
                if let Some(wait) = quick.after_failure(&e, failing, timing.heartbeat_interval) {
                    next = Instant::now() + wait;
                }
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

/// How many times a failed beat is tried again before the next regular beat.
const QUICK_RETRIES: u32 = 3;

/// The longest wait before a quick retry (shorter intervals wait a quarter of theirs).
const QUICK_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Quick retries of a failed beat (nemesis finding F5). A connection the server closed
/// (`CLIENT KILL`, an idle timeout, a proxy) fails only the next command sent on it, and the
/// manager reconnects for the one after. If a failed beat waited a full interval, a storm of
/// kills landing between beats would fail every beat until the TTL passed, although Redis
/// answered all along: the key would lapse and the member declare itself lost. So a beat that
/// failed with a Redis error (a dropped link; also a refusal, which costs three cheap extra
/// tries and changes nothing: the lapse still comes at the TTL) is sent again after
/// `min(interval / 4, 100 ms)`, at most [`QUICK_RETRIES`] times before the next regular beat
/// (which comes one interval after the last try). A timeout is not retried early: the server
/// or the path is slow, and more commands would only queue behind the late one.
#[derive(Debug, Default)]
struct QuickRetry {
    /// Quick retries left before the next regular beat.
    left: u32,
}

impl QuickRetry {
    /// After a failed beat: how soon to try again, when sooner than the regular interval.
    /// `failing`: the beat before this one failed too (else the budget starts full).
    fn after_failure(&mut self, e: &Error, failing: bool, interval: Duration) -> Option<Duration> {
        if !failing {
            self.left = QUICK_RETRIES;
        }
        if !matches!(e, Error::Redis(_)) {
            return None;
        }
        if self.left == 0 {
            // The budget is spent: wait for the regular beat, which gets a full budget again.
            self.left = QUICK_RETRIES;
            return None;
        }
        self.left -= 1;
        Some((interval / 4).min(QUICK_RETRY_WAIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn dropped() -> Error {
        Error::Redis("SET perseus:heartbeat:a: broken pipe".into())
    }

    #[test]
    fn a_dropped_link_is_retried_three_times_per_interval() {
        let mut q = QuickRetry::default();
        let wait = Some(Duration::from_millis(100));
        // First failure after a success, then two more quick tries, then the regular beat.
        assert_eq!(q.after_failure(&dropped(), false, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), None);
        // The regular beat that fails again gets a new budget.
        assert_eq!(q.after_failure(&dropped(), true, SECOND), wait);
        // A success in between refills it too.
        assert_eq!(q.after_failure(&dropped(), false, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), wait);
        assert_eq!(q.after_failure(&dropped(), true, SECOND), None);
    }

    #[test]
    fn short_intervals_wait_a_quarter_and_timeouts_wait_the_interval() {
        let mut q = QuickRetry::default();
        let interval = Duration::from_millis(100);
        assert_eq!(
            q.after_failure(&dropped(), false, interval),
            Some(Duration::from_millis(25))
        );
        let slow = Error::Timeout("SET timed out".into());
        assert_eq!(q.after_failure(&slow, true, interval), None);
        assert_eq!(q.after_failure(&Error::Closed, true, interval), None);
        // Timeouts spend nothing: two quick tries are left.
        assert!(q.after_failure(&dropped(), true, interval).is_some());
        assert!(q.after_failure(&dropped(), true, interval).is_some());
        assert_eq!(q.after_failure(&dropped(), true, interval), None);
    }
}
