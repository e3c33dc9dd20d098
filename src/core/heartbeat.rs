//! The heartbeat loop and the event-loop watchdog.
//!
//! Beats run on tokio timers, off the JS thread, so a busy event loop cannot delay them. But a
//! process whose event loop has not answered for `eventLoopStallMs` is hung: its beats stop
//! until the loop answers, so peers see it lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::core::config::now_ms;
use crate::core::network::{BeatOutcome, Network};

/// Tracks how quickly the host's event loop answers pings.
#[derive(Default)]
pub struct Watchdog {
    /// When the unanswered ping was sent (ms epoch); 0 when none is outstanding.
    pending_since: AtomicU64,
    /// How long the last answered ping took, in ms.
    last_lag: AtomicU64,
}

/// What the watchdog says before a beat.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Beat, reporting this event-loop lag (ms).
    Beat(u64),
    /// The event loop has not answered for at least the stall limit: skip the beat.
    Stalled(u64),
}

impl Watchdog {
    /// The host's event loop answered the outstanding ping.
    pub fn pong(&self) {
        let since = self.pending_since.swap(0, Ordering::AcqRel);
        if since != 0 {
            self.last_lag
                .store(now_ms().saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Whether to beat now, given the stall limit (`None`: watchdog off).
    pub fn gate(&self, stall: Option<Duration>) -> Gate {
        let since = self.pending_since.load(Ordering::Acquire);
        let lag = if since == 0 {
            self.last_lag.load(Ordering::Relaxed)
        } else {
            now_ms().saturating_sub(since)
        };
        match stall {
            Some(limit) if since != 0 && lag >= limit.as_millis() as u64 => Gate::Stalled(lag),
            _ => Gate::Beat(lag),
        }
    }

    /// Records that a ping is going out; `false` when one is already outstanding.
    pub fn start_ping(&self) -> bool {
        self.pending_since
            .compare_exchange(0, now_ms().max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Beats every interval until the lifecycle ends or the heartbeat is lost.
pub(crate) async fn run(net: Network) {
    let timing = net.config().timing.clone();
    let watchdog = net.watchdog();
    let mut last_ok = Instant::now();
    let mut next = Instant::now() + timing.heartbeat_interval;
    let mut failing = false;
    let mut stalled = false;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        next += timing.heartbeat_interval;
        if next <= now {
            next = now + timing.heartbeat_interval;
        }
        let lag = match watchdog.gate(timing.event_loop_stall) {
            Gate::Stalled(lag) => {
                if !stalled {
                    net.logger().warn(
                        serde_json::json!({ "eventLoopLagMs": lag }),
                        "event loop stalled: heartbeats paused until it answers",
                    );
                }
                stalled = true;
                if last_ok.elapsed() > timing.heartbeat_ttl {
                    net.spawn_self_lost("the event loop stalled longer than the heartbeat TTL");
                    return;
                }
                continue;
            }
            Gate::Beat(lag) => lag,
        };
        if stalled {
            stalled = false;
            net.logger().info(
                serde_json::json!({}),
                "event loop answers again: heartbeats resumed",
            );
        }
        if watchdog.start_ping() {
            net.sink().ping(&watchdog);
        }
        match net.beat(Some(lag)).await {
            Ok(BeatOutcome::Alive) => {
                last_ok = Instant::now();
                if net.logger().enabled(crate::core::config::LogLevel::Trace) {
                    net.logger().log(
                        crate::core::config::LogLevel::Trace,
                        serde_json::json!({ "eventLoopLagMs": lag }),
                        "heartbeat",
                    );
                }
                if failing {
                    failing = false;
                    net.logger()
                        .info(serde_json::json!({}), "heartbeat recovered");
                }
            }
            Ok(BeatOutcome::RecordGone) => {
                last_ok = Instant::now();
                net.logger().warn(
                    serde_json::json!({}),
                    "own instance record vanished from Redis: registering again",
                );
                if let Err(e) = net.reregister().await {
                    net.report_error(e, "re-registration failed");
                }
            }
            Ok(BeatOutcome::MarkedDead) => {
                net.spawn_self_lost("a sweeper declared this instance lost");
                return;
            }
            Err(e) => {
                if !failing {
                    net.report_error(e, "heartbeat failed");
                }
                failing = true;
                if last_ok.elapsed() > timing.heartbeat_ttl {
                    net.spawn_self_lost("no heartbeat reached Redis within the heartbeat TTL");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_stalls_only_past_the_limit() {
        let w = Watchdog::default();
        assert_eq!(w.gate(Some(Duration::from_millis(50))), Gate::Beat(0));
        assert!(w.start_ping());
        assert!(!w.start_ping());
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(w.gate(Some(Duration::from_millis(50))), Gate::Stalled(l) if l >= 50));
        assert!(matches!(w.gate(None), Gate::Beat(l) if l >= 50));
        w.pong();
        assert!(matches!(w.gate(Some(Duration::from_millis(50))), Gate::Beat(l) if l >= 50));
        assert!(w.start_ping());
    }
}
