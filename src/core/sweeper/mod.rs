//! One sweeper for the whole network: a lease elects it, it sees each death as the heartbeat
//! key expires, and a compare-and-set on the dead peer's hash guarantees one HEARTBEAT_LOST
//! entry per death however many instances sweep.

//!
//! One concept per file: `lease`, `sweep` (both modes), `outbox` (owed death reports),
//! `cache` (the record cache), `snapshot` (`network:state` pacing), `report` (one
//! HEARTBEAT_LOST per lapse, for every reporter: sweeper, outbox, forget, the instance itself).

mod cache;
mod lease;
mod outbox;
pub mod report;
mod snapshot;
mod sweep;
#[cfg(test)]
mod tests;

pub use lease::release;
pub use snapshot::state_counts;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::registry::InstanceInfo;
use crate::core::task::{Exit, Shutdown, TaskCtx};
use crate::core::trace::{TraceKind, TraceTimer};

use cache::*;
use lease::*;
use snapshot::*;
use sweep::*;

/// The sweeper's snapshot of the network (`<prefix>:network:state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkState {
    pub updated_at: String,
    pub updated_by: String,
    pub instances: Vec<InstanceInfo>,
    pub counts: BTreeMap<String, u64>,
}

/// Runs while the instance is started: competes for the lease and sweeps while holding it,
/// until shutdown. A sweep stops between instances, never between a compare-and-set and its
/// HEARTBEAT_LOST entry.
pub async fn run(ctx: TaskCtx, mut shutdown: Shutdown) -> Exit {
    let timing = ctx.cfg.timing.clone();
    // The lease lasts one heartbeat TTL and is renewed every heartbeat interval, so when the
    // sweeper dies its lease lapses about when its own heartbeat does.
    let lease = timing.heartbeat_ttl;
    let renew_every = timing.heartbeat_interval;
    let mut next_sweep = Instant::now();
    let mut failing = false;
    // Whether this process held the lease at its last successful attempt.
    let mut leader = false;
    let mut memo = SnapshotMemo::default();
    let mut cache = RecordCache::default();
    loop {
        let due = Instant::now() >= next_sweep;
        let attempt = tokio::select! {
            biased;
            _ = shutdown.requested() => return Exit::Stopped,
            r = lease_with_view(&ctx, lease, due) => r,
        };
        let (leased, view) = match attempt {
            Ok((l, view)) => (Ok(l), view),
            Err(e) => (Err(e), None),
        };
        if let (Err(e), true) = (&leased, due && leader) {
            // The lease and the due members are a sweep's first read: its failure is a
            // failed sweep of the process that holds (or held) the lease.
            let timer = TraceTimer::start(&*ctx.sink, TraceKind::Sweep);
            trace_sweep(&ctx, timer, 0, Vec::new(), Some(e.clone()));
        }
        leader = matches!(leased, Ok(None)) || (leader && leased.is_err());
        ctx.metrics.set_sweeper_leader(matches!(leased, Ok(None)));
        let wait = match leased {
            Ok(None) => {
                if due {
                    let mut state = SweepState {
                        memo: &mut memo,
                        cache: &mut cache,
                        examined: 0,
                        lost: Vec::new(),
                    };
                    let timer = TraceTimer::start(&*ctx.sink, TraceKind::Sweep);
                    let swept = sweep(&ctx, &mut state, view, &mut shutdown).await;
                    let lost = std::mem::take(&mut state.lost);
                    let error = swept.as_ref().err().cloned();
                    trace_sweep(&ctx, timer, state.examined, lost, error);
                    match swept {
                        Ok(soonest) => {
                            failing = false;
                            let by_interval = timing.sweep_interval;
                            let by_expiry = soonest
                                .map(|ms| Duration::from_millis(ms.max(0) as u64 + 2))
                                .unwrap_or(by_interval);
                            next_sweep = Instant::now() + by_interval.min(by_expiry);
                        }
                        Err(e) => {
                            if !failing {
                                ctx.report_error(e, "sweep failed");
                            }
                            failing = true;
                            next_sweep = Instant::now() + timing.sweep_interval;
                        }
                    }
                }
                next_sweep
                    .saturating_duration_since(Instant::now())
                    .min(renew_every)
            }
            Ok(Some(other_ttl)) => {
                // Someone else sweeps. When it is late with a death (slow, paused or cut off
                // while its lease lasts), report that death here: detection stays within
                // TTL + 2 sweeps whatever befalls the holder.
                let late = view
                    .as_ref()
                    .map(|v| overdue(v, timing.sweep_interval.as_millis() as u64))
                    .unwrap_or_default();
                if !late.is_empty() {
                    let timer = TraceTimer::start(&*ctx.sink, TraceKind::Sweep);
                    let examined = late.len();
                    let swept = sweep_overdue(&ctx, late, &mut shutdown).await;
                    let lost = swept.as_ref().cloned().unwrap_or_default();
                    let error = swept.as_ref().err().cloned();
                    trace_sweep(&ctx, timer, examined, lost, error);
                    if let Err(e) = swept {
                        if !failing {
                            ctx.report_error(e, "sweep of overdue members failed");
                        }
                        failing = true;
                    }
                }
                // Try the lease again when their lease would lapse.
                next_sweep = Instant::now();
                Duration::from_millis(other_ttl.max(1) as u64 + 1).min(timing.sweep_interval)
            }
            Err(e) => {
                if !failing {
                    ctx.report_error(e, "sweeper lease failed");
                }
                failing = true;
                timing.heartbeat_interval
            }
        };
        if shutdown.sleep(wait).await {
            return Exit::Stopped;
        }
    }
}

/// Publishes one sweep's trace (when `timer` says someone listens): how many members it
/// looked at, those it declared lost, and its error.
fn trace_sweep(
    ctx: &TaskCtx,
    timer: Option<TraceTimer>,
    examined: usize,
    lost: Vec<String>,
    error: Option<crate::core::error::Error>,
) {
    if let Some(t) = timer {
        let trace = t
            .finish()
            .with("examined", examined)
            .with("lost", lost)
            .failed(error);
        ctx.sink.trace(trace);
    }
}

/// What a sweeper keeps from sweep to sweep.
struct SweepState<'a> {
    memo: &'a mut SnapshotMemo,
    cache: &'a mut RecordCache,
    /// Members this sweep looked at, and those it declared lost (for its trace).
    examined: usize,
    lost: Vec<String>,
}
