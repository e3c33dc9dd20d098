//! Test-only fault points. With the cargo feature `fault-points` (compiled only for tests,
//! never by `napi build` or a published package) a test can pause a sweeper between its
//! compare-and-set and its HEARTBEAT_LOST entry, to stop or kill it mid-report. Without the
//! feature every point is an empty inline function.

#[cfg(feature = "fault-points")]
mod points {
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    /// Instance ids whose sweeper is paused at the point (tests run in parallel: each
    /// waits for its own sweeper).
    static REACHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

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

    /// Whether the sweeper of `instance_id` is paused at the point.
    pub fn paused_after_mark_dead(instance_id: &str) -> bool {
        REACHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| r == instance_id)
    }

    /// Instance ids whose sweeper holds after its next winning mark-dead until released
    /// (a reporter that pauses, then resumes); `true` once released.
    static HOLD: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());

    /// Holds the sweeper of `instance_id` after its next winning mark-dead until
    /// [`release_after_mark_dead`]: a paused reporter that resumes later.
    pub fn arm_hold_after_mark_dead(instance_id: &str) {
        HOLD.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((instance_id.to_string(), false));
    }

    /// Lets a held sweeper of `instance_id` go on.
    pub fn release_after_mark_dead(instance_id: &str) {
        for (id, released) in HOLD.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            if id == instance_id {
                *released = true;
            }
        }
    }

    /// `None`: no hold armed for `instance_id`; else whether it was released.
    fn hold_state(instance_id: &str) -> Option<bool> {
        HOLD.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(id, _)| id == instance_id)
            .map(|(_, r)| *r)
    }

    pub async fn pause_after_mark_dead(instance_id: &str) {
        if hold_state(instance_id) == Some(false) {
            REACHED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(instance_id.to_string());
            eprintln!("fault point: held after mark-dead");
            while hold_state(instance_id) == Some(false) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            HOLD.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(id, _)| id != instance_id);
            eprintln!("fault point: resumed after mark-dead");
            return;
        }
        let armed = ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a == instance_id)
            || std::env::var(ENV_PAUSE_AFTER_MARK_DEAD).is_ok_and(|v| v == instance_id);
        if armed {
            REACHED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(instance_id.to_string());
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
