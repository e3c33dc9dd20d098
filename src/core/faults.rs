//! Test-only fault points. With the cargo feature `fault-points` (compiled only for tests,
//! never by `napi build` or a published package) a test can pause a sweeper between its
//! compare-and-set and its HEARTBEAT_LOST entry, to stop or kill it mid-report. Without the
//! feature every point is an empty inline function.

#[cfg(feature = "fault-points")]
mod points {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static REACHED: AtomicBool = AtomicBool::new(false);

    /// Env var naming an instance id whose sweeper pauses after mark-dead (for child
    /// processes, which a test SIGKILLs while paused).
    pub const ENV_PAUSE_AFTER_MARK_DEAD: &str = "PERSEUS_FAULT_PAUSE_AFTER_MARK_DEAD";

    /// Pauses the sweeper of `instance_id` after its next winning mark-dead, for good.
    pub fn arm_pause_after_mark_dead(instance_id: &str) {
        ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance_id.to_string());
    }

    /// Whether some sweeper is paused at the point.
    pub fn paused_after_mark_dead() -> bool {
        REACHED.load(Ordering::Acquire)
    }

    pub async fn pause_after_mark_dead(instance_id: &str) {
        let armed = ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a == instance_id)
            || std::env::var(ENV_PAUSE_AFTER_MARK_DEAD).is_ok_and(|v| v == instance_id);
        if armed {
            REACHED.store(true, Ordering::Release);
            eprintln!("fault point: paused after mark-dead");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(feature = "fault-points")]
pub use points::*;

/// Without `fault-points`: nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub async fn pause_after_mark_dead(_instance_id: &str) {}
