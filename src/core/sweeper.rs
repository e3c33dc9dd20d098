//! One sweeper for the whole network: a lease elects it, it sees each death as the heartbeat
//! key expires, and a compare-and-set on the dead peer's hash guarantees one HEARTBEAT_LOST
//! entry per death however many instances sweep.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::core::activity::{ActivityInput, Author};
use crate::core::config::{now_ms, Discovery};
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::index::{self, IndexView};
use crate::core::network::{iso_now, Network};
use crate::core::registry::{last_beat_of, parse_record, InstanceInfo, Registry};
use crate::core::store::Store;

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

/// Flip a live record to dead; returns the previous state when this call won, else false.
/// The call's token makes it idempotent: a cluster client that re-sends the script after a
/// lost reply gets the same answer, so the winner still writes its one HEARTBEAT_LOST entry.
const MARK_DEAD: &str = r"
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'dead' and redis.call('HGET', KEYS[1], 'lostToken') == ARGV[3] then
  return redis.call('HGET', KEYS[1], 'lostFrom')
end
if (not s) or s == 'dead' then return false end
redis.call('HSET', KEYS[1], 'state', 'dead', 'lastStateChange', ARGV[1], 'lostToken', ARGV[3], 'lostFrom', s)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return s
";

/// Runs while the instance is started: competes for the lease and sweeps while holding it.
pub(crate) async fn run(net: Network) {
    let timing = net.config().timing.clone();
    // The lease lasts one heartbeat TTL and is renewed every heartbeat interval, so when the
    // sweeper dies its lease lapses about when its own heartbeat does.
    let lease = timing.heartbeat_ttl;
    let renew_every = timing.heartbeat_interval;
    let mut next_sweep = Instant::now();
    let mut failing = false;
    let mut memo = SnapshotMemo::default();
    let mut cache = RecordCache::default();
    loop {
        let due = Instant::now() >= next_sweep;
        let (leased, view) = match lease_with_view(&net, lease, due).await {
            Ok((l, view)) => (Ok(l), view),
            Err(e) => (Err(e), None),
        };
        let wait = match leased {
            Ok(None) => {
                if due {
                    match sweep(&net, &mut memo, &mut cache, view).await {
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
                                net.report_error(e, "sweep failed");
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
                    net.report_error(e, "sweeper lease failed");
                }
                failing = true;
                timing.heartbeat_interval
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The lease attempt and, when a sweep is due in index mode, the index's due members in the
/// same round trip (one less per sweep). Falls back to the lease alone when Redis does not
/// know the script yet (after a restart), which loads it.
async fn lease_with_view(
    net: &Network,
    lease: Duration,
    sweep_due: bool,
) -> Result<(Option<i64>, Option<IndexView>)> {
    if !sweep_due || net.config().discovery != Discovery::Index {
        return Ok((try_lease(net, lease).await?, None));
    }
    let store = net.store().await?;
    let keys = net.keys();
    let mut evalsha = redis::cmd("EVALSHA");
    evalsha
        .arg(redis::Script::new(LEASE).get_hash())
        .arg(1)
        .arg(keys.sweeper())
        .arg(net.instance_id())
        .arg(lease.as_millis() as u64);
    let mut cmds = vec![evalsha];
    cmds.extend(index::view_cmds(&keys, now_ms()));
    let replies = store.query_many(cmds).await?;
    let (Some(Ok(Value::Int(r))), Some(view)) = (replies.first(), index::parse_view(&replies[1..]))
    else {
        return Ok((try_lease(net, lease).await?, None));
    };
    let held = if *r == 1 { None } else { Some(-r) };
    Ok((held, Some(view)))
}

/// `Ok(None)`: we hold the lease. `Ok(Some(ms))`: another holder's lease has `ms` left.
async fn try_lease(net: &Network, lease: Duration) -> Result<Option<i64>> {
    let store = net.store().await?;
    let key = net.keys().sweeper();
    let lease_ms = lease.as_millis().to_string();
    let r: i64 = store
        .script(
            &redis::Script::new(LEASE),
            &[&key],
            &[net.instance_id(), &lease_ms],
        )
        .await?;
    Ok(if r == 1 { None } else { Some(-r) })
}

/// Gives the lease up (on drain), so another instance takes over at once.
pub(crate) async fn release(net: &Network) -> Result<()> {
    let store = net.store().await?;
    let key = net.keys().sweeper();
    let _: i64 = store
        .script(&redis::Script::new(RELEASE), &[&key], &[net.instance_id()])
        .await?;
    Ok(())
}

/// One sweep. Returns how long (ms) until the soonest known heartbeat deadline.
///
/// Index mode: only the members whose deadline passed are read (`view`, or read here), each
/// judged alone (alive: pushed back to its real deadline; heartbeat gone: lost, once, by the
/// compare-and-set; record gone: removed); the whole network is read only when
/// `network:state` may be due (see [`SnapshotMemo`]). Scan mode has no deadlines: every sweep
/// reads every record.
pub(crate) async fn sweep(
    net: &Network,
    memo: &mut SnapshotMemo,
    cache: &mut RecordCache,
    view: Option<IndexView>,
) -> Result<Option<i64>> {
    let store = net.store().await?;
    let registry = net.registry().await?;
    let keys = net.keys();
    let sweep_interval = net.config().timing.sweep_interval;
    if net.config().discovery == Discovery::Scan {
        let ids = registry.ids(Discovery::Scan).await?;
        let swept = cache.refresh(&registry, &ids).await?;
        let mut soonest: Option<i64> = None;
        let mut gone = Vec::new();
        let mut instances = Vec::with_capacity(swept.len());
        for r in swept {
            let id = r.id.clone();
            let (verdict, info) = judge(net, &store, r).await?;
            match verdict {
                Verdict::Alive(Some(ms)) => soonest = Some(soonest.map_or(ms, |s| s.min(ms))),
                Verdict::Gone => gone.push(id),
                _ => {}
            }
            instances.extend(info);
        }
        // Beats keep the index in scan mode too: entries of expired records go.
        index::remove(&store, keys, &gone).await?;
        net.logger().debug(
            serde_json::json!({ "instances": instances.len(), "soonestExpiryMs": soonest }),
            "sweep done",
        );
        memo.full_read_done();
        write_snapshot(net, &store, memo, instances, sweep_interval).await?;
        return Ok(soonest);
    }

    let view = match view {
        Some(v) => v,
        None => {
            let replies = store.query_many(index::view_cmds(&keys, now_ms())).await?;
            index::parse_view(&replies).unwrap_or_default()
        }
    };
    let now = now_ms();
    let due_ids: Vec<String> = view.due.iter().map(|(id, _)| id.clone()).collect();
    let raw = registry.read_raw(&due_ids).await?;
    let mut alive = Vec::new();
    let mut later = Vec::new();
    let mut gone = Vec::new();
    let mut changed = view.size != memo.index_size;
    for (r, (_, score)) in raw.into_iter().zip(&view.due) {
        let info = if r.hash.is_empty() {
            None
        } else {
            parse_record(&r.id, &r.hash, r.heartbeat.as_deref())
        };
        let swept = Swept {
            missing: r.hash.is_empty(),
            id: r.id,
            info,
            heartbeat: r.heartbeat,
            heartbeat_pttl: r.heartbeat_pttl,
        };
        let id = swept.id.clone();
        match judge(net, &store, swept).await? {
            (Verdict::Alive(ms), _) => {
                let ttl = ms.unwrap_or(net.config().timing.dead_instance_ttl.as_millis() as i64);
                alive.push((id, now + ttl.max(0) as u64));
            }
            (Verdict::Gone, _) => {
                gone.push(id);
                changed = true;
            }
            (verdict, _) => {
                changed |= verdict == Verdict::Lost;
                later.push((id, score.clone()));
            }
        }
    }
    index::push_back(&store, keys, &alive).await?;
    index::remove(&store, keys, &gone).await?;
    if !later.is_empty() {
        // Look again when the dead record should have expired (then its entry goes).
        let ttls = store
            .query_many(
                later
                    .iter()
                    .map(|(id, _)| {
                        let mut c = redis::cmd("PTTL");
                        c.arg(keys.instance(id));
                        c
                    })
                    .collect(),
            )
            .await?;
        let dead_ttl = net.config().timing.dead_instance_ttl.as_millis() as u64;
        let moves: Vec<(String, String, u64)> = later
            .into_iter()
            .zip(ttls)
            .map(|((id, old), ttl)| {
                let ms = match ttl {
                    Ok(Value::Int(ms)) if ms > 0 => ms as u64,
                    _ => dead_ttl,
                };
                (id, old, now + ms + EXPIRY_MARGIN_MS)
            })
            .collect();
        index::reschedule(&store, keys, &moves).await?;
    }
    net.logger().debug(
        serde_json::json!({ "due": view.due.len(), "indexed": view.size, "nextDeadline": view.next_deadline }),
        "sweep done",
    );
    memo.index_size = view.size;
    if memo.full_read_due(changed, sweep_interval) {
        let ids = registry.ids(Discovery::Index).await?;
        let swept = cache.refresh(&registry, &ids).await?;
        memo.full_read_done();
        let instances = swept.into_iter().filter_map(|r| r.info).collect();
        write_snapshot(net, &store, memo, instances, sweep_interval).await?;
    }
    Ok(view
        .next_deadline
        .map(|d| d.saturating_sub(now_ms()) as i64))
}

/// How long after a dead record's expiry the sweeper looks again (so it is gone by then).
const EXPIRY_MARGIN_MS: u64 = 1000;

/// What a sweep concluded about one instance.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Heartbeat present; its remaining TTL in ms (`None`: the key has no TTL).
    Alive(Option<i64>),
    /// Heartbeat gone, and this sweep flipped the record to dead (and reported it).
    Lost,
    /// Heartbeat gone, record dead already (or not ours to judge).
    Dead,
    /// Record and heartbeat both gone: the index entry can go.
    Gone,
}

/// Judges one instance: flips a live record whose heartbeat is gone to dead (the
/// compare-and-set decides which sweeper reports it). Returns the instance as it now is.
async fn judge(net: &Network, store: &Store, r: Swept) -> Result<(Verdict, Option<InstanceInfo>)> {
    let Some(mut info) = r.info else {
        let verdict = if r.missing && r.heartbeat.is_none() {
            Verdict::Gone
        } else if r.heartbeat.is_some() {
            Verdict::Alive((r.heartbeat_pttl >= 0).then_some(r.heartbeat_pttl))
        } else {
            Verdict::Dead
        };
        return Ok((verdict, None));
    };
    if r.heartbeat_pttl >= 0 || r.heartbeat.is_some() {
        let ms = (r.heartbeat_pttl >= 0).then_some(r.heartbeat_pttl);
        return Ok((Verdict::Alive(ms), Some(info)));
    }
    if info.state == State::Dead {
        return Ok((Verdict::Dead, Some(info)));
    }
    let at = iso_now();
    let token = format!("{}|{at}", net.instance_id());
    let dead_ttl = net
        .config()
        .timing
        .dead_instance_ttl
        .as_millis()
        .to_string();
    let won = mark_dead(store, &net.keys().instance(&r.id), &at, &dead_ttl, &token).await?;
    let Some(prev) = won else {
        info.state = State::Dead; // another sweeper (or the instance itself) got there first
        return Ok((Verdict::Dead, Some(info)));
    };
    let from = prev.parse().ok();
    info.state = State::Dead;
    info.last_state_change = at;
    write_lost_entry(net, &info, from).await?;
    Ok((Verdict::Lost, Some(info)))
}

/// Writes `network:state` when [`SnapshotMemo`] says it is due.
async fn write_snapshot(
    net: &Network,
    store: &Store,
    memo: &mut SnapshotMemo,
    instances: Vec<InstanceInfo>,
    sweep_interval: Duration,
) -> Result<()> {
    let digest = membership_digest(&instances);
    if !memo.is_due(digest, sweep_interval) {
        return Ok(());
    }
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for i in &instances {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    let snapshot = NetworkState {
        updated_at: iso_now(),
        updated_by: net.instance_id().to_string(),
        instances,
        counts,
    };
    let json = serde_json::to_string(&snapshot).unwrap_or_default();
    let bytes = json.len();
    let mut cmd = redis::cmd("SET");
    cmd.arg(net.keys().network_state()).arg(json);
    let _: () = store.query(&cmd).await?;
    memo.written(digest, bytes);
    Ok(())
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
    heartbeat: Option<String>,
    heartbeat_pttl: i64,
}

impl RecordCache {
    async fn refresh(&mut self, registry: &Registry, ids: &[String]) -> Result<Vec<Swept>> {
        if self
            .since
            .is_none_or(|t| t.elapsed() >= RECORD_CACHE_MAX_AGE)
        {
            self.records.clear();
            self.since = Some(Instant::now());
        }
        let light = registry.read_light(ids).await?;
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
                i.last_heartbeat = last_beat_of(l.heartbeat.as_deref());
                i
            });
            if let (Some(f), Some(i)) = (&l.fingerprint, &info) {
                kept.insert(l.id.clone(), (f.clone(), i.clone()));
            }
            out.push(Swept {
                missing: l.fingerprint.is_none(),
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
///   (at most 5 s), at once when the index shows a join, a loss or a removal.
#[derive(Default)]
pub(crate) struct SnapshotMemo {
    last: Option<(u64, Instant, usize)>,
    last_full_read: Option<Instant>,
    /// A change was seen but not yet written (its pacing gap had not passed).
    pending: bool,
    /// Members of the index at the last sweep (a change means a join or a removal).
    index_size: u64,
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

/// Flips the record at `key` to dead unless it already is; `Some(previous state)` when this
/// call (identified by `token`, so a re-sent call answers the same) made the flip.
pub async fn mark_dead(
    store: &Store,
    key: &str,
    at: &str,
    dead_ttl_ms: &str,
    token: &str,
) -> Result<Option<String>> {
    store
        .script(
            &redis::Script::new(MARK_DEAD),
            &[key],
            &[at, dead_ttl_ms, token],
        )
        .await
}

async fn write_lost_entry(net: &Network, lost: &InstanceInfo, from: Option<State>) -> Result<()> {
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
        fields: vec![("reporter".into(), net.instance_id().to_string())],
    };
    net.append_as(&author, &input).await?;
    net.logger().warn(
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
        assert!(m.is_due(2, fast), "a change of a small network is written at once");
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
        assert!(!m.is_due(2, sweep), "a change waits until ~3 s after the last write");
        assert!(m.pending, "and is remembered");
        assert!(!m.full_read_due(false, sweep));
        m.last = Some((1, Instant::now() - Duration::from_secs(3), big));
        assert!(m.full_read_due(false, sweep), "the pending change");
        assert!(m.is_due(1, sweep), "a pending change is written even if the digest is back");
        m.written(1, big);
        m.last = Some((1, Instant::now() - Duration::from_secs(10), big));
        assert!(!m.is_due(1, sweep), "at rest: every 15 s");
        m.last = Some((1, Instant::now() - Duration::from_secs(15), big));
        assert!(m.is_due(1, sweep));
        m.last_full_read = Some(Instant::now() - Duration::from_secs(5));
        assert!(m.full_read_due(false, sweep), "changes are looked for every 5 s");
    }
}
