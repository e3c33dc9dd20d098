//! One sweep in either mode: index mode (only the members whose deadline passed) and scan
//! mode (every record), with the metrics of a finished sweep.

use std::time::Instant;

use crate::core::clock::iso_now;
use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::faults;
use crate::core::fsm::State;
use crate::core::index::IndexView;
use crate::core::registry::{parse_record, InstanceInfo};
use crate::core::task::{Shutdown, TaskCtx};

use super::outbox::*;
use super::report::{self, lapse_token};
use super::snapshot::*;
use super::SweepState;

/// How long after a dead record's expiry the sweeper looks again (so it is gone by then).
pub(super) const EXPIRY_MARGIN_MS: u64 = 1000;

/// One sweep. Returns how long (ms) until the soonest known heartbeat deadline.
///
/// Index mode: only the members whose deadline passed are read (`view`, or read here), each
/// judged alone: alive (a clock or an older writer scored it early) → pushed back to its
/// real deadline; heartbeat gone → lost, reported once by the compare-and-set; dead → looked
/// at again when its record should have expired, or every sweep while it owes its report;
/// record gone → leaves the index. The whole network is read only when `network:state` may
/// be due ([`SnapshotMemo`]). So a sweep's cost follows the deaths, not the network's size.
/// On shutdown it returns between instances (never between a compare-and-set and its
/// entry), without a snapshot.
pub(crate) async fn sweep(
    ctx: &TaskCtx,
    st: &mut SweepState<'_>,
    view: Option<IndexView>,
    shutdown: &mut Shutdown,
) -> Result<Option<i64>> {
    if ctx.cfg.discovery == Discovery::Scan {
        return sweep_all(ctx, st, shutdown).await;
    }
    let began = Instant::now();
    let registry = &ctx.registry;
    let read = async {
        let view = match view {
            Some(v) => v,
            None => registry.index_view().await?,
        };
        let ids: Vec<String> = view.due.iter().map(|(id, _)| id.clone()).collect();
        let raw = registry.read_raw(&ids).await?;
        Ok::<_, crate::core::error::Error>((view, raw))
    };
    let (view, raw) = tokio::select! {
        biased;
        _ = shutdown.requested() => return Ok(None),
        r = read => r?,
    };
    // Every deadline below counts on the index node's clock, never this host's.
    let now = view.now;
    st.examined = view.due.len();
    let dead_ttl = ctx.cfg.timing.dead_instance_ttl;
    let mut alive = Vec::new();
    let mut later = Vec::new();
    let mut gone = Vec::new();
    let mut owed: Vec<(String, InstanceInfo)> = Vec::new();
    let mut changed = false;
    for (r, (_, score)) in raw.into_iter().zip(&view.due) {
        let info = if r.hash.is_empty() {
            None
        } else {
            parse_record(&r.id, &r.hash, r.heartbeat.as_deref())
        };
        let report_token = r.hash.get("reportToken").filter(|t| !t.is_empty()).cloned();
        if r.heartbeat_pttl >= 0 || r.heartbeat.is_some() {
            // Alive: back to its real deadline (a key without TTL: look again much later).
            let ms = if r.heartbeat_pttl >= 0 {
                r.heartbeat_pttl as u64
            } else {
                dead_ttl.as_millis() as u64
            };
            alive.push((r.id, now + ms));
            continue;
        }
        if r.hash.is_empty() {
            gone.push(r.id); // record and heartbeat both gone: it has expired
            changed = true;
            continue;
        }
        match info {
            Some(mut info) if info.state != State::Dead => {
                if shutdown.is_requested() {
                    return Ok(None);
                }
                if report_loss(ctx, &r.id, &mut info).await? {
                    st.lost.push(r.id.clone());
                }
                changed = true;
                later.push((r.id, score.clone()));
            }
            Some(info) => match report_token {
                // Owes its HEARTBEAT_LOST entry: stays due (read every sweep) until settled.
                Some(token) => owed.push((token, info)),
                None => later.push((r.id, score.clone())),
            },
            None => later.push((r.id, score.clone())), // not ours to judge: look again later
        }
    }
    if !settle_owed(ctx, owed, shutdown).await {
        return Ok(None);
    }
    registry.push_back(&alive).await?;
    registry.forget_many(&gone).await?;
    if !later.is_empty() {
        // Look again when the dead record should have expired (its entry then leaves).
        let ids: Vec<String> = later.iter().map(|(id, _)| id.clone()).collect();
        let ttls = registry.record_ttls(&ids).await?;
        let moves: Vec<(String, String, u64)> = later
            .into_iter()
            .zip(ttls)
            .map(|((id, old), ttl)| {
                let ms = ttl.unwrap_or(dead_ttl.as_millis() as u64);
                (id, old, now + ms + EXPIRY_MARGIN_MS)
            })
            .collect();
        registry.reschedule(&moves).await?;
    }
    // The soonest deadline known: the next one in the index, or a member just pushed back
    // (its key had not expired yet: look again right when it does).
    let soonest = alive
        .iter()
        .map(|(_, at)| *at)
        .chain(view.next_deadline)
        .min();
    let soonest_ms = soonest.map(|d| d.saturating_sub(view.now_ms()) as i64);
    ctx.log.debug(
        serde_json::json!({ "due": view.due.len(), "soonestExpiryMs": soonest_ms }),
        "sweep done",
    );
    if st
        .memo
        .full_read_due(changed, ctx.cfg.timing.sweep_interval)
    {
        let read = async {
            let ids = registry.ids(Discovery::Index).await?;
            // Deadlines come from the index: no heartbeat PTTLs needed (a third fewer reads).
            st.cache.refresh(registry, &ids, false).await
        };
        let swept = tokio::select! {
            biased;
            _ = shutdown.requested() => return Ok(None),
            r = read => r?,
        };
        st.memo.full_read_done();
        let instances: Vec<InstanceInfo> = swept.into_iter().filter_map(|r| r.info).collect();
        record_sweep(ctx, began, Some(&instances));
        write_snapshot(ctx, st.memo, instances).await?;
    } else {
        record_sweep(ctx, began, None);
    }
    Ok(soonest.map(|d| d.saturating_sub(view.now_ms()) as i64))
}

/// How late a due member must be before a sweeper that does not hold the lease reports it,
/// beyond half a sweep interval. A holder that is well sweeps at the soonest deadline it
/// knows (a few milliseconds after it), so half an interval past one means the holder is
/// slow, paused or cut off while its lease lasts (nemesis finding F15). Contenders look every
/// sweep interval, so a death is then reported within about 1.5 intervals + this margin of
/// its deadline: inside TTL + 2 sweeps.
pub(super) const LATE_MARGIN_MS: u64 = 50;

/// The ids of the members of a contender's `view` that the lease holder is late with: due more
/// than half a sweep interval (+ [`LATE_MARGIN_MS`]) ago, on the index node's clock.
pub(super) fn overdue(view: &IndexView, sweep_interval_ms: u64) -> Vec<String> {
    let late_before = view
        .now
        .saturating_sub(sweep_interval_ms / 2 + LATE_MARGIN_MS);
    view.due
        .iter()
        .filter(|(_, score)| {
            score
                .parse::<f64>()
                .is_ok_and(|d| d >= 0.0 && (d as u64) < late_before)
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// A contender's sweep of members the lease holder is late with: each whose record still says
/// it runs and whose heartbeat is gone is reported, by the same compare-and-set as the
/// holder's (so one HEARTBEAT_LOST per lapse whoever wins). Nothing else of a sweep is done
/// here (no index upkeep, owed reports or snapshot): those wait for the holder, and a
/// late holder only delays them. Returns the ids this process declared lost.
pub(crate) async fn sweep_overdue(
    ctx: &TaskCtx,
    ids: Vec<String>,
    shutdown: &mut Shutdown,
) -> Result<Vec<String>> {
    let raw = tokio::select! {
        biased;
        _ = shutdown.requested() => return Ok(Vec::new()),
        r = ctx.registry.read_raw(&ids) => r?,
    };
    let mut lost = Vec::new();
    for r in raw {
        if r.hash.is_empty() || r.heartbeat_pttl >= 0 || r.heartbeat.is_some() {
            continue;
        }
        let Some(mut info) = parse_record(&r.id, &r.hash, r.heartbeat.as_deref()) else {
            continue;
        };
        if info.state == State::Dead || shutdown.is_requested() {
            continue;
        }
        if report_loss(ctx, &r.id, &mut info).await? {
            lost.push(r.id);
        }
    }
    Ok(lost)
}

/// Counts a finished sweep in the metrics; `instances`: what it read in full, when it did
/// (a sweep of only the due members leaves the by-state gauges as the last full read set them).
pub(super) fn record_sweep(ctx: &TaskCtx, began: Instant, instances: Option<&[InstanceInfo]>) {
    let counts = instances.map(state_counts).unwrap_or_default();
    ctx.metrics.swept(
        began.elapsed(),
        State::ALL
            .iter()
            .filter_map(|s| counts.get(s.as_str()).map(|n| (*s, *n))),
    );
}

/// A sweep in scan mode (no index, so no deadlines): reads every record, every sweep.
/// Returns the soonest remaining heartbeat PTTL (ms) among live instances.
pub(super) async fn sweep_all(
    ctx: &TaskCtx,
    st: &mut SweepState<'_>,
    shutdown: &mut Shutdown,
) -> Result<Option<i64>> {
    let began = Instant::now();
    let registry = &ctx.registry;
    let read = async {
        let ids = registry.ids(ctx.cfg.discovery).await?;
        st.cache.refresh(registry, &ids, true).await
    };
    let raw = tokio::select! {
        biased;
        _ = shutdown.requested() => return Ok(None),
        r = read => r?,
    };
    st.examined = raw.len();
    let mut soonest: Option<i64> = None;
    let mut instances = Vec::with_capacity(raw.len());
    let mut expired = Vec::new();
    let mut owed: Vec<(String, InstanceInfo)> = Vec::new();
    for r in raw {
        let Some(mut info) = r.info else {
            if r.missing && r.heartbeat.is_none() {
                expired.push(r.id);
            }
            continue;
        };
        if r.heartbeat_pttl >= 0 {
            soonest = Some(soonest.map_or(r.heartbeat_pttl, |s| s.min(r.heartbeat_pttl)));
        } else if r.heartbeat.is_none() && info.state != State::Dead {
            if shutdown.is_requested() {
                return Ok(soonest);
            }
            if report_loss(ctx, &r.id, &mut info).await? {
                st.lost.push(r.id.clone());
            }
        } else if info.state == State::Dead {
            if let Some(token) = &r.report_token {
                owed.push((token.clone(), info.clone()));
            }
        }
        instances.push(info);
    }
    if !settle_owed(ctx, owed, shutdown).await {
        return Ok(soonest);
    }
    for id in &expired {
        registry.forget(id).await?;
    }
    record_sweep(ctx, began, Some(&instances));
    ctx.log.debug(
        serde_json::json!({ "instances": instances.len(), "soonestExpiryMs": soonest }),
        "sweep done",
    );
    st.memo.full_read_done();
    write_snapshot(ctx, st.memo, instances).await?;
    Ok(soonest)
}

/// Flips a lost peer's record to dead by the compare-and-set with the lapse's token (named by
/// the registration this sweeper read, see [`lapse_token`]) and, when this sweeper won it,
/// makes sure its one HEARTBEAT_LOST entry exists (both sweep modes). A failure leaves the
/// report owed in the record: the next sweep settles it. `true` when this sweeper won the
/// compare-and-set (it declared the peer lost).
async fn report_loss(ctx: &TaskCtx, id: &str, info: &mut InstanceInfo) -> Result<bool> {
    let registry = &ctx.registry;
    let at = iso_now();
    let dead_ttl = ctx.cfg.timing.dead_instance_ttl;
    let registered_at = info.registered_at.clone();
    let token = lapse_token(id, &registered_at);
    let token = token.as_str();
    if let Some(prev) = registry
        .mark_dead(id, &at, dead_ttl, token, &registered_at)
        .await?
    {
        // Between the compare-and-set and the entry a reporter may stop (a crash) or pause;
        // the record's token lets any reporter settle it, and APPEND_ONCE keeps it one entry.
        faults::pause_after_mark_dead(ctx.instance_id()).await;
        let from = prev.parse().ok();
        info.state = State::Dead;
        info.last_state_change = at;
        report::settle(ctx, &author_of(info), from, token).await?;
        return Ok(true);
    }
    Ok(false)
}
