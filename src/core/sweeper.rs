//! One sweeper for the whole network: a lease elects it, it sees each death as the heartbeat
//! key expires, and a compare-and-set on the dead peer's hash guarantees one HEARTBEAT_LOST
//! entry per death however many instances sweep.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::core::activity::{ActivityInput, Author};
use crate::core::clock::iso_now;
use crate::core::config::Discovery;
use crate::core::error::Result;
use crate::core::faults;
use crate::core::fsm::State;
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
            r = lease_with_ids(&ctx, lease, due) => r,
        };
        let (leased, ids) = match attempt {
            Ok((l, ids)) => (Ok(l), ids),
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
                    match sweep(&ctx, &mut state, ids, &mut shutdown).await {
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

/// The lease attempt and, when a sweep is due in index mode, the index read in the same
/// round trip (one less per sweep). Falls back to the lease alone when Redis does not know
/// the script yet (after a restart), which loads it.
async fn lease_with_ids(
    ctx: &TaskCtx,
    lease: Duration,
    sweep_due: bool,
) -> Result<(Option<i64>, Option<Vec<String>>)> {
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
    let mut zrange = Command::read("ZRANGE", &keys.instances());
    zrange.arg(0).arg(-1);
    let mut replies = store.query_many(vec![evalsha, zrange]).await?.into_iter();
    let (Some(Ok(Value::Int(r))), Some(Ok(index))) = (replies.next(), replies.next()) else {
        return Ok((
            try_lease(store, keys, ctx.instance_id(), lease).await?,
            None,
        ));
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

/// One sweep. Returns the soonest remaining heartbeat PTTL (ms) among live instances.
/// `ids`: the index, when the caller already read it. On shutdown it returns between
/// instances (never between a compare-and-set and its entry), without a snapshot.
pub(crate) async fn sweep(
    ctx: &TaskCtx,
    st: &mut SweepState<'_>,
    ids: Option<Vec<String>>,
    shutdown: &mut Shutdown,
) -> Result<Option<i64>> {
    let began = Instant::now();
    let registry = &ctx.registry;
    let read = async {
        let ids = match ids {
            Some(ids) => ids,
            None => registry.ids(ctx.cfg.discovery).await?,
        };
        st.cache.refresh(registry, &ids).await
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
                registry.clear_report(&r.id, &token).await?;
            }
        } else if info.state == State::Dead {
            if let Some(token) = &r.report_token {
                owed.push((token.clone(), info.clone()));
            }
        }
        instances.push(info);
    }
    st.outbox.keep_only(&owed);
    for (token, info) in owed {
        if shutdown.is_requested() {
            return Ok(soonest);
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
    if shutdown.is_requested() {
        return Ok(soonest);
    }
    for id in &expired {
        registry.forget(id).await?;
    }
    let mut counts: BTreeMap<String, u64> = State::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for i in &instances {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    ctx.metrics.swept(
        began.elapsed(),
        State::ALL
            .iter()
            .map(|s| (*s, counts.get(s.as_str()).copied().unwrap_or(0))),
    );
    ctx.log.debug(
        serde_json::json!({ "instances": instances.len(), "soonestExpiryMs": soonest }),
        "sweep done",
    );
    let digest = membership_digest(&instances);
    if st.memo.is_due(digest, ctx.cfg.timing.sweep_interval) {
        let snapshot = NetworkState {
            updated_at: iso_now(),
            updated_by: ctx.instance_id().to_string(),
            instances,
            counts,
        };
        let json = serde_json::to_string(&snapshot).unwrap_or_default();
        let mut cmd = Command::write("SET", &ctx.keys.network_state());
        cmd.arg(json);
        let _: () = ctx.store.query(&cmd).await?;
        st.memo.written(digest);
    }
    Ok(soonest)
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
