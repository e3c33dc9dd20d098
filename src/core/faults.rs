//! Test-only fault points. With the cargo feature `fault-points` (compiled only for tests,
//! never by `napi build` or a published package) a test can pause a sweeper between its
//! compare-and-set and its HEARTBEAT_LOST entry (to stop or kill it mid-report, or to let it
//! resume later), or right after its entry's append returned (to kill the stream's master
//! there). Without the feature every point is an empty inline function.

#[cfg(feature = "fault-points")]
mod points {
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    /// `point:instance id` of the points reached and paused (tests run in parallel: each
    /// waits for its own sweeper).
    static REACHED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    /// `point:instance id` holds armed, `true` once released.
    static HOLD: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());

    /// Between a winning mark-dead and the HEARTBEAT_LOST append.
    pub const AFTER_MARK_DEAD: &str = "after-mark-dead";
    /// Right after the HEARTBEAT_LOST append returned (before the report is counted written).
    pub const AFTER_REPORT_APPEND: &str = "after-report-append";

    /// Env var naming an instance id whose sweeper pauses after mark-dead (for child
    /// processes, which a test SIGKILLs while paused).
    pub const ENV_PAUSE_AFTER_MARK_DEAD: &str = "PERSEUS_FAULT_PAUSE_AFTER_MARK_DEAD";

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pauses the sweeper of `instance_id` after its next winning mark-dead, for good.
    pub fn arm_pause_after_mark_dead(instance_id: &str) {
        lock(&ARMED).push(instance_id.to_string());
    }

    /// Whether the sweeper of `instance_id` is paused after its mark-dead.
    pub fn paused_after_mark_dead(instance_id: &str) -> bool {
        reached(AFTER_MARK_DEAD, instance_id)
    }

    /// Whether the sweeper of `instance_id` reached `point` (and is held or paused there).
    pub fn reached(point: &str, instance_id: &str) -> bool {
        let key = format!("{point}:{instance_id}");
        lock(&REACHED).contains(&key)
    }

    /// Holds the sweeper of `instance_id` the next time it reaches `point`, until
    /// [`release`]: a reporter that pauses, then resumes.
    pub fn arm_hold(point: &str, instance_id: &str) {
        lock(&HOLD).push((format!("{point}:{instance_id}"), false));
    }

    /// Lets a sweeper held at `point` go on.
    pub fn release(point: &str, instance_id: &str) {
        let key = format!("{point}:{instance_id}");
        for (k, released) in lock(&HOLD).iter_mut() {
            if *k == key {
                *released = true;
            }
        }
    }

    fn hold_state(key: &str) -> Option<bool> {
        lock(&HOLD).iter().find(|(k, _)| k == key).map(|(_, r)| *r)
    }

    async fn hold(point: &str, instance_id: &str) -> bool {
        let key = format!("{point}:{instance_id}");
        if hold_state(&key) != Some(false) {
            return false;
        }
        lock(&REACHED).push(key.clone());
        eprintln!("fault point: held at {point}");
        while hold_state(&key) == Some(false) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        lock(&HOLD).retain(|(k, _)| *k != key);
        eprintln!("fault point: resumed at {point}");
        true
    }

    /// The point between a winning mark-dead and its entry.
    pub async fn pause_after_mark_dead(instance_id: &str) {
        if hold(AFTER_MARK_DEAD, instance_id).await {
            return;
        }
        let armed = lock(&ARMED).iter().any(|a| a == instance_id)
            || std::env::var(ENV_PAUSE_AFTER_MARK_DEAD).is_ok_and(|v| v == instance_id);
        if armed {
            lock(&REACHED).push(format!("{AFTER_MARK_DEAD}:{instance_id}"));
            eprintln!("fault point: paused after mark-dead");
            std::future::pending::<()>().await;
        }
    }

    /// The point right after a HEARTBEAT_LOST append returned.
    pub async fn after_report_append(instance_id: &str) {
        hold(AFTER_REPORT_APPEND, instance_id).await;
    }
}

#[cfg(feature = "fault-points")]
pub use points::*;

/// Without `fault-points`: nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub async fn pause_after_mark_dead(_instance_id: &str) {}

/// Without `fault-points`: nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub async fn after_report_append(_instance_id: &str) {}
