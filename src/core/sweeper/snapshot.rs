//! The network snapshot (`network:state`): when it is written, paced by its size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::core::clock::iso_now;
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::registry::InstanceInfo;
use crate::core::store::Command;
use crate::core::task::TaskCtx;

use super::NetworkState;

/// Writes `network:state` when [`SnapshotMemo`] says it is due.
pub(super) async fn write_snapshot(
    ctx: &TaskCtx,
    memo: &mut SnapshotMemo,
    instances: Vec<InstanceInfo>,
) -> Result<()> {
    let digest = membership_digest(&instances);
    if !memo.is_due(digest, ctx.cfg.timing.sweep_interval) {
        return Ok(());
    }
    let counts = state_counts(&instances);
    let snapshot = NetworkState {
        updated_at: iso_now(),
        updated_by: ctx.instance_id().to_string(),
        instances,
        counts,
    };
    let json = serde_json::to_string(&snapshot).unwrap_or_default();
    let bytes = json.len();
    let mut cmd = Command::write("SET", &ctx.keys.network_state());
    cmd.arg(json);
    let _: () = ctx.store.query(&cmd).await?;
    memo.written(digest, bytes);
    Ok(())
}

/// When the last `network:state` was written, what it said and how big it was, and when the
/// whole network was last read for it.
///
/// The snapshot is rewritten on a change of membership, state or liveness, and otherwise
/// only to refresh `lastHeartbeat`/`updatedAt`. Both are paced by its size, so a network of
/// 10,000 instances (a ~3 MB snapshot) does not rewrite megabytes a second:
/// - a change is written once the last write is `bytes / 1 MiB/s` old (at once for small
///   networks, ~3 s at 10,000);
/// - at rest it is rewritten every `bytes / 32 KiB/s`, between 1 s and 15 s (the seed's
///   heartbeat interval): every second up to ~100 instances, every 15 s from ~1,500;
/// - in index mode the whole network is read to look for changes every `bytes / 128 KiB/s`
///   (every sweep for small networks, at most 5 s apart), and at once (paced like a change)
///   when a sweep found a loss or an expired record.
#[derive(Default)]
pub(super) struct SnapshotMemo {
    pub(super) last: Option<(u64, Instant, usize)>,
    pub(super) last_full_read: Option<Instant>,
    /// A change was seen but not yet written (its pacing gap had not passed).
    pub(super) pending: bool,
}

/// Pacing of `network:state` writes and reads, in bytes of snapshot per second.
pub(super) const CHANGE_RATE: f64 = 1024.0 * 1024.0;
pub(super) const REST_RATE: f64 = 32.0 * 1024.0;
pub(super) const CHECK_RATE: f64 = 128.0 * 1024.0;
pub(super) const REST_MIN: Duration = Duration::from_secs(1);
pub(super) const REST_MAX: Duration = Duration::from_secs(15);
pub(super) const CHECK_MAX: Duration = Duration::from_secs(5);

pub(super) fn paced(bytes: usize, rate: f64, min: Duration, max: Duration) -> Duration {
    Duration::from_secs_f64(bytes as f64 / rate).clamp(min, max)
}

impl SnapshotMemo {
    /// Age of the last write as the next regular sweep will see it (so sweeps a second or
    /// more apart always find a 1 s gap passed).
    pub(super) fn age(&self, at: Instant, sweep_interval: Duration) -> Duration {
        at.elapsed() + sweep_interval / 2
    }

    /// Whether to read the whole network now (index mode): the snapshot may be due by age,
    /// a change was signalled (`signal`) or is pending, or it is time to look for changes.
    pub(super) fn full_read_due(&self, signal: bool, sweep_interval: Duration) -> bool {
        let Some((_, at, bytes)) = self.last else {
            return true;
        };
        let age = self.age(at, sweep_interval);
        let check = paced(bytes, CHECK_RATE, Duration::ZERO, CHECK_MAX);
        ((signal || self.pending) && age >= paced(bytes, CHANGE_RATE, Duration::ZERO, REST_MAX))
            || age >= paced(bytes, REST_RATE, REST_MIN, REST_MAX)
            || self
                .last_full_read
                .is_none_or(|t| t.elapsed() + sweep_interval / 2 >= check)
    }

    pub(super) fn full_read_done(&mut self) {
        self.last_full_read = Some(Instant::now());
    }

    /// Whether a snapshot with this digest is due now; remembers a change that is not yet.
    pub(super) fn is_due(&mut self, digest: u64, sweep_interval: Duration) -> bool {
        let Some((d, at, bytes)) = self.last else {
            return true;
        };
        let age = self.age(at, sweep_interval);
        let changed = d != digest || self.pending;
        let due = (changed && age >= paced(bytes, CHANGE_RATE, Duration::ZERO, REST_MAX))
            || age >= paced(bytes, REST_RATE, REST_MIN, REST_MAX);
        self.pending = changed && !due;
        due
    }

    pub(super) fn written(&mut self, digest: u64, bytes: usize) {
        self.last = Some((digest, Instant::now(), bytes));
        self.pending = false;
    }
}

/// A fingerprint of who is in the network, in which state, and alive or not.
pub(super) fn membership_digest(instances: &[InstanceInfo]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut rows: Vec<_> = instances
        .iter()
        .map(|i| (&i.instance_id, i.state, i.alive, &i.public_ip))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0)); // the index orders by last beat, which changes every beat
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut h);
    h.finish()
}

/// Instances by state, every state present (the snapshot's `counts`).
pub(super) fn state_counts(instances: &[InstanceInfo]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for i in instances {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    counts
}
