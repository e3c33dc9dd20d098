//! The event-loop watchdog: how quickly the host's event loop answers pings, and whether a
//! beat may go out. A process whose event loop has not answered for `eventLoopStallMs` is
//! hung: its beats stop until the loop answers, so peers see it lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::clock::now_ms;

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
