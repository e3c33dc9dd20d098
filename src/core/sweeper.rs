//! One sweeper for the whole network: a lease elects it, it sees each death as the heartbeat
//! key expires, and a compare-and-set on the dead peer's hash guarantees one HEARTBEAT_LOST
//! entry per death however many instances sweep.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::core::activity::{ActivityInput, Author};
use crate::core::clock::{iso_now, now_ms};
use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::faults;
use crate::core::fsm::State;
use crate::core::index::{self, IndexView};
use crate::core::keys::Keys;
use crate::core::registry::{beat_of, parse_record, InstanceInfo, Registry};
use crate::core::store::{Command, Kind, Store};
use crate::core::task::{Exit, Shutdown, TaskCtx};

/// How far before a death's recorded time the outbox looks for its entry: the record and
/// the stream may live on different nodes, whose clocks may differ a little.
const REPORT_SEARCH_MARGIN_MS: u64 = 10_000;

/// The sweeper's snapshot of the network (`<prefix>:network:state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkState {
    pub updated_at: String,
    pub updated_by: String,
    pub instances: Vec<InstanceInfo>,
    pub counts: BTreeMap<String, u64>,
}

/// Acquire or renew the lease: returns 1 when this instance holds it, else the negated
/// remaining PTTL of the other holder's lease (so a contender knows when to try again).
const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return -redis.call('PTTL', KEYS[1])
";

/// Release the lease only if we hold it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

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
    let mut memo = SnapshotMemo::default();
    let mut cache = RecordCache::default();
    let mut outbox = Outbox::default();
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
        ctx.metrics.set_sweeper_leader(matches!(leased, Ok(None)));
        let wait = match leased {
            Ok(None) => {
                if due {
                    let mut state = SweepState {
                        memo: &mut memo,
                        cache: &mut cache,
                        outbox: &mut outbox,
                    };
                    match sweep(&ctx, &mut state, view, &mut shutdown).await {
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
                // Someone else sweeps: try again when their lease would lapse.
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

/// The lease attempt and, when a sweep is due in index mode, the index's due members in the
/// same round trip (one less per sweep). Falls back to the lease alone when Redis does not
/// know the script yet (after a restart), which loads it.
async fn lease_with_view(
    ctx: &TaskCtx,
    lease: Duration,
    sweep_due: bool,
) -> Result<(Option<i64>, Option<IndexView>)> {
    let store = &ctx.store;
    if !sweep_due || ctx.cfg.discovery != Discovery::Index {
        return Ok((
            try_lease(store, &ctx.keys, ctx.instance_id(), lease).await?,
            None,
        ));
    }
    let keys = &ctx.keys;
    let mut evalsha = Command::with_args(Kind::Write, "EVALSHA", Some(&keys.sweeper()));
    evalsha
        .arg(redis::Script::new(LEASE).get_hash())
        .arg(1)
        .arg(keys.sweeper())
        .arg(ctx.instance_id())
        .arg(lease.as_millis() as u64);
    let mut cmds = vec![evalsha];
    cmds.extend(index::view_cmds(keys, now_ms()));
    let replies = store.query_many(cmds).await?;
    let (Some(Ok(Value::Int(r))), Some(view)) = (replies.first(), index::parse_view(&replies[1..]))
    else {
        return Ok((
            try_lease(store, keys, ctx.instance_id(), lease).await?,
            None,
        ));
    };
    let held = if *r == 1 { None } else { Some(-r) };
    Ok((held, Some(view)))
}

/// `Ok(None)`: we hold the lease. `Ok(Some(ms))`: another holder's lease has `ms` left.
async fn try_lease(store: &Store, keys: &Keys, id: &str, lease: Duration) -> Result<Option<i64>> {
    let key = keys.sweeper();
    let lease_ms = lease.as_millis().to_string();
    let r: i64 = store
        .script(&redis::Script::new(LEASE), &[&key], &[id, &lease_ms])
        .await?;
    Ok(if r == 1 { None } else { Some(-r) })
}

/// Gives the lease up (on drain), so another instance takes over at once.
pub async fn release(store: &Store, keys: &Keys, id: &str) -> Result<()> {
    let key = keys.sweeper();
    let _: i64 = store
        .script(&redis::Script::new(RELEASE), &[&key], &[id])
        .await?;
    Ok(())
}

/// What a sweeper keeps from sweep to sweep.
pub(crate) struct SweepState<'a> {
    memo: &'a mut SnapshotMemo,
    cache: &'a mut RecordCache,
    outbox: &'a mut Outbox,
}

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
    let now = now_ms();
    let read = async {
        let view = match view {
            Some(v) => v,
            None => registry.index_view(now).await?,
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
                let at = iso_now();
                let token = format!("{}|{at}", ctx.instance_id());
                if let Some(prev) = registry.mark_dead(&r.id, &at, dead_ttl, &token).await? {
                    // The compare-and-set and the entry are one unit: nothing stops a sweep
                    // between them but a crash, which the outbox (reportToken) covers.
                    faults::pause_after_mark_dead(ctx.instance_id()).await;
                    let from = prev.parse().ok();
                    info.state = State::Dead;
                    info.last_state_change = at;
                    write_lost_entry(ctx, &info, from, &token).await?;
                    faults::after_report_append(ctx.instance_id()).await;
                    registry.clear_report(&r.id, &token).await?;
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
    if !settle_owed(ctx, st, owed, shutdown).await {
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
    let soonest_ms = soonest.map(|d| d.saturating_sub(now_ms()) as i64);
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
    Ok(soonest.map(|d| d.saturating_sub(now_ms()) as i64))
}

/// Instances by state, every state present (the snapshot's `counts`).
fn state_counts(instances: &[InstanceInfo]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for i in instances {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    counts
}

/// Counts a finished sweep in the metrics; `instances`: what it read in full, when it did
/// (a sweep of only the due members leaves the by-state gauges as the last full read set them).
fn record_sweep(ctx: &TaskCtx, began: Instant, instances: Option<&[InstanceInfo]>) {
    let counts = instances.map(state_counts).unwrap_or_default();
    ctx.metrics.swept(
        began.elapsed(),
        State::ALL
            .iter()
            .filter_map(|s| counts.get(s.as_str()).map(|n| (*s, *n))),
    );
}

/// How long after a dead record's expiry the sweeper looks again (so it is gone by then).
const EXPIRY_MARGIN_MS: u64 = 1000;

/// Writes `network:state` when [`SnapshotMemo`] says it is due.
async fn write_snapshot(
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

/// A sweep in scan mode (no index, so no deadlines): reads every record, every sweep.
/// Returns the soonest remaining heartbeat PTTL (ms) among live instances.
async fn sweep_all(
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
    let dead_ttl = ctx.cfg.timing.dead_instance_ttl;
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
            let at = iso_now();
            let token = format!("{}|{at}", ctx.instance_id());
            let won = registry.mark_dead(&r.id, &at, dead_ttl, &token).await?;
            if let Some(prev) = won {
                // The compare-and-set and the entry are one unit: nothing stops a sweep
                // between them but a crash, which the outbox (reportToken) covers.
                faults::pause_after_mark_dead(ctx.instance_id()).await;
                let from = prev.parse().ok();
                info.state = State::Dead;
                info.last_state_change = at;
                write_lost_entry(ctx, &info, from, &token).await?;
                faults::after_report_append(ctx.instance_id()).await;
                registry.clear_report(&r.id, &token).await?;
            }
        } else if info.state == State::Dead {
            if let Some(token) = &r.report_token {
                owed.push((token.clone(), info.clone()));
            }
        }
        instances.push(info);
    }
    if !settle_owed(ctx, st, owed, shutdown).await {
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

/// Settles the death reports owed for longer than a sweep interval (both sweep modes);
/// `false` when shutdown was requested (the sweep stops there).
async fn settle_owed(
    ctx: &TaskCtx,
    st: &mut SweepState<'_>,
    owed: Vec<(String, InstanceInfo)>,
    shutdown: &Shutdown,
) -> bool {
    st.outbox.keep_only(&owed);
    for (token, info) in owed {
        if shutdown.is_requested() {
            return false;
        }
        if st
            .outbox
            .is_overdue(&info.instance_id, &token, ctx.cfg.timing.sweep_interval)
        {
            if let Err(e) = settle_report(ctx, &info).await {
                ctx.log.warn(
                    serde_json::json!({ "error": e.to_string(), "lostInstanceId": info.instance_id }),
                    "could not settle an owed HEARTBEAT_LOST entry; retrying next sweep",
                );
            }
        }
    }
    !shutdown.is_requested()
}

/// Death reports owed by dead records (their `reportToken`), with when this sweeper first saw
/// each: one is settled only once it is older than a sweep interval, so a reporter that is
/// merely between its compare-and-set and its entry is not raced.
#[derive(Default)]
pub(crate) struct Outbox {
    seen: HashMap<String, (String, Instant)>,
}

impl Outbox {
    /// Forgets reports no longer owed; remembers new ones from now.
    fn keep_only(&mut self, owed: &[(String, InstanceInfo)]) {
        let mut next = HashMap::with_capacity(owed.len());
        for (token, info) in owed {
            let first = match self.seen.remove(&info.instance_id) {
                Some((t, at)) if t == *token => at,
                _ => Instant::now(),
            };
            next.insert(info.instance_id.clone(), (token.clone(), first));
        }
        self.seen = next;
    }

    /// Whether `id`'s report `token` has been owed for at least `age`.
    fn is_overdue(&self, id: &str, token: &str, age: Duration) -> bool {
        self.seen
            .get(id)
            .is_some_and(|(t, at)| t == token && at.elapsed() >= age)
    }
}

/// Settles the death report `lost`'s record owes: writes its HEARTBEAT_LOST entry unless the
/// stream already holds one with the record's token (searching from the death on), then
/// clears the token. At least once by the outbox, at most once by the token check.
async fn settle_report(ctx: &TaskCtx, lost: &InstanceInfo) -> Result<()> {
    let id = &lost.instance_id;
    let Some((pending, from)) = ctx.registry.pending_report(id).await? else {
        return Ok(());
    };
    let since = pending.at_ms.saturating_sub(REPORT_SEARCH_MARGIN_MS);
    let written = ctx
        .writer
        .log()
        .has_field_since(since, id, "reportToken", &pending.token)
        .await?;
    if !written {
        write_lost_entry(ctx, lost, from, &pending.token).await?;
    }
    ctx.registry.clear_report(id, &pending.token).await
}

/// Parsed records from earlier sweeps, keyed by id with the fingerprint they were read at:
/// a sweep reads three small fields per instance and re-reads a whole hash only when those
/// changed (a transition, a rejoin, a public IP filled in) — so a sweep's cost is dominated
/// by the heartbeats it must check, not by re-parsing every record.
#[derive(Default)]
pub(crate) struct RecordCache {
    records: HashMap<String, (String, InstanceInfo)>,
    /// When the cache was last emptied: it is rebuilt from full reads every
    /// [`RECORD_CACHE_MAX_AGE`], so a foreign edit of another field shows up eventually.
    since: Option<Instant>,
}

/// Longest a parsed record is reused without a full read.
const RECORD_CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// One instance as a sweep sees it.
pub(crate) struct Swept {
    id: String,
    /// `None`: hash missing (`missing`) or not parsable.
    info: Option<InstanceInfo>,
    missing: bool,
    /// The death report the record still owes, if any.
    report_token: Option<String>,
    heartbeat: Option<String>,
    heartbeat_pttl: i64,
}

impl RecordCache {
    /// `with_pttl`: also read each heartbeat's PTTL (scan mode finds its next expiry by it).
    async fn refresh(
        &mut self,
        registry: &Registry,
        ids: &[String],
        with_pttl: bool,
    ) -> Result<Vec<Swept>> {
        if self
            .since
            .is_none_or(|t| t.elapsed() >= RECORD_CACHE_MAX_AGE)
        {
            self.records.clear();
            self.since = Some(Instant::now());
        }
        let light = registry.read_light(ids, with_pttl).await?;
        let stale: Vec<String> = light
            .iter()
            .filter(|l| match (&l.fingerprint, self.records.get(&l.id)) {
                (Some(f), Some((cached, _))) => f != cached,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .map(|l| l.id.clone())
            .collect();
        let mut fresh: HashMap<String, Option<InstanceInfo>> = HashMap::new();
        for r in registry.read_raw(&stale).await? {
            fresh.insert(r.id.clone(), parse_record(&r.id, &r.hash, None));
        }
        let mut kept = HashMap::with_capacity(light.len());
        let mut out = Vec::with_capacity(light.len());
        for l in light {
            let info = match (&l.fingerprint, fresh.remove(&l.id)) {
                (None, _) => None,
                (Some(_), Some(parsed)) => parsed,
                (Some(_), None) => self.records.remove(&l.id).map(|(_, info)| info),
            };
            let info = info.map(|mut i| {
                i.alive = l.heartbeat.is_some();
                (i.last_heartbeat, i.health) = beat_of(l.heartbeat.as_deref());
                i
            });
            if let (Some(f), Some(i)) = (&l.fingerprint, &info) {
                kept.insert(l.id.clone(), (f.clone(), i.clone()));
            }
            out.push(Swept {
                missing: l.fingerprint.is_none(),
                report_token: l.report_token,
                id: l.id,
                info,
                heartbeat: l.heartbeat,
                heartbeat_pttl: l.heartbeat_pttl,
            });
        }
        self.records = kept;
        Ok(out)
    }
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
pub(crate) struct SnapshotMemo {
    last: Option<(u64, Instant, usize)>,
    last_full_read: Option<Instant>,
    /// A change was seen but not yet written (its pacing gap had not passed).
    pending: bool,
}

/// Pacing of `network:state` writes and reads, in bytes of snapshot per second.
const CHANGE_RATE: f64 = 1024.0 * 1024.0;
const REST_RATE: f64 = 32.0 * 1024.0;
const CHECK_RATE: f64 = 128.0 * 1024.0;
const REST_MIN: Duration = Duration::from_secs(1);
const REST_MAX: Duration = Duration::from_secs(15);
const CHECK_MAX: Duration = Duration::from_secs(5);

fn paced(bytes: usize, rate: f64, min: Duration, max: Duration) -> Duration {
    Duration::from_secs_f64(bytes as f64 / rate).clamp(min, max)
}

impl SnapshotMemo {
    /// Age of the last write as the next regular sweep will see it (so sweeps a second or
    /// more apart always find a 1 s gap passed).
    fn age(&self, at: Instant, sweep_interval: Duration) -> Duration {
        at.elapsed() + sweep_interval / 2
    }

    /// Whether to read the whole network now (index mode): the snapshot may be due by age,
    /// a change was signalled (`signal`) or is pending, or it is time to look for changes.
    fn full_read_due(&self, signal: bool, sweep_interval: Duration) -> bool {
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

    fn full_read_done(&mut self) {
        self.last_full_read = Some(Instant::now());
    }

    /// Whether a snapshot with this digest is due now; remembers a change that is not yet.
    fn is_due(&mut self, digest: u64, sweep_interval: Duration) -> bool {
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

    fn written(&mut self, digest: u64, bytes: usize) {
        self.last = Some((digest, Instant::now(), bytes));
        self.pending = false;
    }
}

/// A fingerprint of who is in the network, in which state, and alive or not.
fn membership_digest(instances: &[InstanceInfo]) -> u64 {
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

/// Writes HEARTBEAT_LOST for `lost` (the entry's instanceId is the lost peer; `reporter` is
/// this sweeper; `reportToken` the token of the record's mark-dead).
async fn write_lost_entry(
    ctx: &TaskCtx,
    lost: &InstanceInfo,
    from: Option<State>,
    token: &str,
) -> Result<()> {
    let author = Author {
        instance_id: lost.instance_id.clone(),
        exchange: lost.exchange_name.clone(),
        exchange_id: lost.exchange_id,
        hostname: lost.hostname.clone(),
        public_ip: lost.public_ip.clone(),
    };
    let input = ActivityInput {
        event: "HEARTBEAT_LOST".into(),
        reason: Some("heartbeat expired".into()),
        from_state: from,
        to_state: Some(State::Dead),
        fields: vec![
            ("reporter".into(), ctx.instance_id().to_string()),
            ("reportToken".into(), token.to_string()),
        ],
    };
    ctx.writer.append_as(&author, &input).await?;
    ctx.metrics.peer_lost();
    ctx.log.warn(
        serde_json::json!({ "lostInstanceId": lost.instance_id }),
        "peer lost: heartbeat expired",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, state: State, alive: bool) -> InstanceInfo {
        InstanceInfo {
            instance_id: id.into(),
            hostname: "h".into(),
            exchange_id: 1,
            exchange_name: "x".into(),
            public_ip: None,
            private_ip: None,
            pid: 1,
            version: "1".into(),
            state,
            registered_at: String::new(),
            last_state_change: String::new(),
            metadata: Default::default(),
            alive,
            last_heartbeat: Some(1),
            health: None,
        }
    }

    #[test]
    fn digest_ignores_order_and_heartbeat_times_but_not_changes() {
        let a = info("a", State::Running, true);
        let b = info("b", State::Running, true);
        let mut b_later = b.clone();
        b_later.last_heartbeat = Some(99);
        let base = membership_digest(&[a.clone(), b.clone()]);
        assert_eq!(base, membership_digest(&[b_later, a.clone()]));
        assert_ne!(
            base,
            membership_digest(&[a.clone(), info("b", State::Dead, false)])
        );
        assert_ne!(base, membership_digest(&[a]));
    }

    #[test]
    fn memo_writes_small_snapshots_on_change_or_every_second() {
        let fast = Duration::from_millis(50);
        let mut m = SnapshotMemo::default();
        assert!(m.is_due(1, fast));
        m.written(1, 3_000);
        assert!(!m.is_due(1, fast));
        assert!(
            m.is_due(2, fast),
            "a change of a small network is written at once"
        );
        assert!(
            m.is_due(1, Duration::from_secs(2)),
            "slow sweeps always write"
        );
        m.last = Some((1, Instant::now() - Duration::from_secs(1), 3_000));
        assert!(m.is_due(1, fast));
    }

    #[test]
    fn memo_paces_big_snapshots_by_size() {
        let sweep = Duration::from_secs(1);
        let mut m = SnapshotMemo::default();
        let big = 3_300_000; // ~10,000 instances
        m.written(1, big);
        m.full_read_done();
        assert!(
            !m.is_due(2, sweep),
            "a change waits until ~3 s after the last write"
        );
        assert!(m.pending, "and is remembered");
        assert!(!m.full_read_due(false, sweep));
        m.last = Some((1, Instant::now() - Duration::from_secs(3), big));
        assert!(m.full_read_due(false, sweep), "the pending change");
        assert!(
            m.is_due(1, sweep),
            "a pending change is written even if the digest is back"
        );
        m.written(1, big);
        m.last = Some((1, Instant::now() - Duration::from_secs(10), big));
        assert!(!m.is_due(1, sweep), "at rest: every 15 s");
        m.last = Some((1, Instant::now() - Duration::from_secs(15), big));
        assert!(m.is_due(1, sweep));
        m.last_full_read = Some(Instant::now() - Duration::from_secs(5));
        assert!(
            m.full_read_due(false, sweep),
            "changes are looked for every 5 s"
        );
    }
}
