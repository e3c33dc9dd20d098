//! One sweeper for the whole network: a lease elects it, it sees each death as the heartbeat
//! key expires, and a compare-and-set on the dead peer's hash guarantees one HEARTBEAT_LOST
//! entry per death however many instances sweep.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::core::activity::{ActivityInput, Author};
use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::network::{iso_now, Network};
use crate::core::registry::{beat_of, parse_record, InstanceInfo, Registry};
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
        let (leased, ids) = match lease_with_ids(&net, lease, due).await {
            Ok((l, ids)) => (Ok(l), ids),
            Err(e) => (Err(e), None),
        };
        net.metrics().set_sweeper_leader(matches!(leased, Ok(None)));
        let wait = match leased {
            Ok(None) => {
                if due {
                    match sweep(&net, &mut memo, &mut cache, ids).await {
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

/// The lease attempt and, when a sweep is due in index mode, the index read in the same
/// round trip (one less per sweep). Falls back to the lease alone when Redis does not know
/// the script yet (after a restart), which loads it.
async fn lease_with_ids(
    net: &Network,
    lease: Duration,
    sweep_due: bool,
) -> Result<(Option<i64>, Option<Vec<String>>)> {
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
    let mut zrange = redis::cmd("ZRANGE");
    zrange.arg(keys.instances()).arg(0).arg(-1);
    let mut replies = store.query_many(vec![evalsha, zrange]).await?.into_iter();
    let (Some(Ok(Value::Int(r))), Some(Ok(index))) = (replies.next(), replies.next()) else {
        return Ok((try_lease(net, lease).await?, None));
    };
    let held = if r == 1 { None } else { Some(-r) };
    let ids: Vec<Vec<u8>> = redis::FromRedisValue::from_redis_value(index).unwrap_or_default();
    let ids = ids
        .into_iter()
        .filter_map(|b| String::from_utf8(b).ok())
        .collect();
    Ok((held, Some(ids)))
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

/// One sweep. Returns the soonest remaining heartbeat PTTL (ms) among live instances.
/// `ids`: the index, when the caller already read it.
pub(crate) async fn sweep(
    net: &Network,
    memo: &mut SnapshotMemo,
    cache: &mut RecordCache,
    ids: Option<Vec<String>>,
) -> Result<Option<i64>> {
    let began = Instant::now();
    let store = net.store().await?;
    let registry = net.registry().await?;
    let keys = net.keys();
    let ids = match ids {
        Some(ids) => ids,
        None => registry.ids(net.config().discovery).await?,
    };
    let raw = cache.refresh(&registry, &ids).await?;
    let dead_ttl = net
        .config()
        .timing
        .dead_instance_ttl
        .as_millis()
        .to_string();
    let mut soonest: Option<i64> = None;
    let mut instances = Vec::with_capacity(raw.len());
    let mut expired = Vec::new();
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
            let at = iso_now();
            let token = format!("{}|{at}", net.instance_id());
            let won = mark_dead(&store, &keys.instance(&r.id), &at, &dead_ttl, &token).await?;
            if let Some(prev) = won {
                let from = prev.parse().ok();
                info.state = State::Dead;
                info.last_state_change = at;
                write_lost_entry(net, &info, from).await?;
                net.metrics().peer_lost();
            }
        }
        instances.push(info);
    }
    for id in &expired {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(keys.instances()).arg(id);
        let _: i64 = store.query(&cmd).await?;
    }
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for i in &instances {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    net.metrics().swept(
        began.elapsed(),
        State::ALL
            .iter()
            .map(|s| (*s, counts.get(s.as_str()).copied().unwrap_or(0))),
    );
    net.logger().debug(
        serde_json::json!({ "instances": instances.len(), "soonestExpiryMs": soonest }),
        "sweep done",
    );
    let digest = membership_digest(&instances);
    if memo.is_due(digest, net.config().timing.sweep_interval) {
        let snapshot = NetworkState {
            updated_at: iso_now(),
            updated_by: net.instance_id().to_string(),
            instances,
            counts,
        };
        let json = serde_json::to_string(&snapshot).unwrap_or_default();
        let mut cmd = redis::cmd("SET");
        cmd.arg(keys.network_state()).arg(json);
        let _: () = store.query(&cmd).await?;
        memo.written(digest);
    }
    Ok(soonest)
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
                (i.last_heartbeat, i.health) = beat_of(l.heartbeat.as_deref());
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

/// When the last `network:state` was written, and what it said. Fast sweeps rewrite the
/// snapshot only on a change of membership, state or liveness, or once it is a second old:
/// every change is visible at once, and a sweep every heartbeat does not rewrite (and
/// re-serialise) the whole network each time.
#[derive(Default)]
pub(crate) struct SnapshotMemo {
    last: Option<(u64, Instant)>,
}

/// Longest a snapshot goes unrewritten while sweeping.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

impl SnapshotMemo {
    /// Due on a change, or when the next regular sweep would find it older than a second (so
    /// sweeps a second or more apart always write).
    fn is_due(&self, digest: u64, sweep_interval: Duration) -> bool {
        match self.last {
            Some((d, at)) => d != digest || at.elapsed() + sweep_interval / 2 >= SNAPSHOT_MAX_AGE,
            None => true,
        }
    }

    fn written(&mut self, digest: u64) {
        self.last = Some((digest, Instant::now()));
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
    fn memo_writes_on_change_or_when_old() {
        let fast = Duration::from_millis(50);
        let mut m = SnapshotMemo::default();
        assert!(m.is_due(1, fast));
        m.written(1);
        assert!(!m.is_due(1, fast));
        assert!(m.is_due(2, fast));
        assert!(
            m.is_due(1, Duration::from_secs(2)),
            "slow sweeps always write"
        );
        m.last = Some((1, Instant::now() - SNAPSHOT_MAX_AGE));
        assert!(m.is_due(1, fast));
    }
}
