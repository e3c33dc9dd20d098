//! Instance records: the seed's hash schema, the heartbeat payload, reading them back, and
//! every write to them (registration, state changes, the public IP, beats, a sweeper's
//! compare-and-set to dead and its report outbox). Garbage written by others is skipped (with
//! a warning), never an error.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::core::config::{Discovery, Identity};
use crate::core::error::Result;
use crate::core::fsm::State;
use crate::core::index::{self, IndexView};
use crate::core::keys::Keys;
use crate::core::store::{Command, Store};
use crate::core::wire::text::{hash_from_value, int, opt_int, text};

/// One instance as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub instance_id: String,
    pub hostname: String,
    #[serde(serialize_with = "int")]
    pub exchange_id: u64,
    pub exchange_name: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub pid: u32,
    pub version: String,
    #[serde(deserialize_with = "de_state")]
    pub state: State,
    pub registered_at: String,
    pub last_state_change: String,
    pub metadata: BTreeMap<String, String>,
    pub alive: bool,
    #[serde(serialize_with = "opt_int")]
    pub last_heartbeat: Option<u64>,
    /// From the latest heartbeat payload; `None` without a heartbeat or when its writer
    /// recorded no health (the seed's writers).
    #[serde(default)]
    pub health: Option<InstanceHealth>,
}

/// What an instance's heartbeat says about its health, so operators see a struggling member
/// before its heartbeat lapses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealth {
    /// Round trip of the instance's previous heartbeat (ms).
    #[serde(serialize_with = "int")]
    pub redis_rtt_ms: u64,
    /// Event-loop lag measured for the beat (ms).
    #[serde(serialize_with = "int")]
    pub event_loop_lag_ms: u64,
    /// Resident memory of the process.
    #[serde(serialize_with = "int")]
    pub rss_bytes: u64,
}

fn de_state<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<State, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("unknown state {s}")))
}

/// The heartbeat key's JSON payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatPayload {
    pub last_beat: u64,
    pub state: String,
    pub exchange: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_loop_lag_ms: Option<u64>,
    /// The previous beat's round trip (ms); absent in the seed's payload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redis_rtt_ms: Option<u64>,
    /// Process resident memory; absent in the seed's payload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rss_bytes: Option<u64>,
}

impl HeartbeatPayload {
    /// The health this payload records, if its writer recorded it.
    pub fn health(&self) -> Option<InstanceHealth> {
        Some(InstanceHealth {
            redis_rtt_ms: self.redis_rtt_ms?,
            event_loop_lag_ms: self.event_loop_lag_ms.unwrap_or(0),
            rss_bytes: self.rss_bytes?,
        })
    }
}

/// Where the seed stores "no public IP".
pub const UNKNOWN_IP: &str = "unknown";

/// The hash fields of a registration, in the seed's order, then `meta.<k>`.
pub fn record_fields(
    id: &Identity,
    public_ip: Option<&str>,
    private_ip: Option<&str>,
    state: State,
    registered_at: &str,
    last_state_change: &str,
) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        ("instanceId".into(), id.instance_id.clone()),
        ("hostname".into(), id.hostname.clone()),
        ("exchangeId".into(), id.exchange_id.to_string()),
        ("exchangeName".into(), id.exchange_name.clone()),
        (
            "publicIp".into(),
            public_ip.unwrap_or(UNKNOWN_IP).to_string(),
        ),
        (
            "privateIp".into(),
            private_ip.unwrap_or(UNKNOWN_IP).to_string(),
        ),
        ("pid".into(), id.pid.to_string()),
        ("version".into(), id.version.clone()),
        ("state".into(), state.as_str().to_string()),
        ("registeredAt".into(), registered_at.to_string()),
        ("lastStateChange".into(), last_state_change.to_string()),
    ];
    for (k, v) in &id.metadata {
        f.push((format!("meta.{k}"), v.clone()));
    }
    f
}

/// Parses an instance hash (as HGETALL returns it) plus its heartbeat payload.
/// `None` when the record is missing or not one of ours.
pub fn parse_record(
    key_id: &str,
    hash: &HashMap<String, String>,
    heartbeat: Option<&str>,
) -> Option<InstanceInfo> {
    let get = |k: &str| hash.get(k).map(String::as_str);
    let ip = |k: &str| {
        get(k)
            .filter(|v| *v != UNKNOWN_IP && !v.is_empty())
            .map(str::to_string)
    };
    let state: State = get("state")?.parse().ok()?;
    let instance_id = get("instanceId").unwrap_or(key_id).to_string();
    if instance_id != key_id {
        return None;
    }
    let metadata = hash
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("meta.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let (last_heartbeat, health) = beat_of(heartbeat);
    Some(InstanceInfo {
        instance_id,
        hostname: get("hostname")?.to_string(),
        exchange_id: get("exchangeId")?.parse().ok()?,
        exchange_name: get("exchangeName")?.to_string(),
        public_ip: ip("publicIp"),
        private_ip: ip("privateIp"),
        pid: get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        version: get("version").unwrap_or("").to_string(),
        state,
        registered_at: get("registeredAt").unwrap_or("").to_string(),
        last_state_change: get("lastStateChange").unwrap_or("").to_string(),
        metadata,
        alive: heartbeat.is_some(),
        last_heartbeat,
        health,
    })
}

/// Write the record fresh: a rejoin must not inherit fields (or a TTL) of its previous life.
const WRITE_RECORD: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
";

/// Update state fields only if the record exists (never resurrect a partial hash).
const SET_STATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'lastStateChange', ARGV[2])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// Flip a live record to dead; returns the previous state when this call won, else false.
/// The call's token makes it idempotent: a cluster client that re-sends the script after a
/// lost reply gets the same answer, so the winner still writes its one HEARTBEAT_LOST entry.
/// Invariant (the report outbox): a record this script flips carries `reportToken` (the
/// token) and `reportAt` (server ms) until its HEARTBEAT_LOST entry is known written.
const MARK_DEAD: &str = r"
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'dead' and redis.call('HGET', KEYS[1], 'lostToken') == ARGV[3] then
  return redis.call('HGET', KEYS[1], 'lostFrom')
end
if (not s) or s == 'dead' then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', 'dead', 'lastStateChange', ARGV[1], 'lostToken', ARGV[3],
  'lostFrom', s, 'reportToken', ARGV[3], 'reportAt', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return s
";

/// Clear the report token once its entry is written, only if it is still that token (a
/// later death of the same id has its own). Set to '' rather than deleted, so the ACL rule
/// needs no HDEL.
const CLEAR_REPORT: &str = r"
if redis.call('HGET', KEYS[1], 'reportToken') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'reportToken', '')
  return 1
end
return 0
";

/// Forget, step 1 (on the record): fence a record that is dead (or has no state at all:
/// garbage) with the caller's token. Returns 1 fenced, 0 no record, -1 not dead.
const FORGET_FENCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local s = redis.call('HGET', KEYS[1], 'state')
if s and s ~= 'dead' then return -1 end
redis.call('HSET', KEYS[1], 'forgetToken', ARGV[1])
return 1
";

/// Forget, step 3 (on the record): delete it only if it still carries our token and is still
/// dead. Invariant: an instance comes back to life only by rewriting its record from scratch
/// (WRITE_RECORD deletes the hash first), which drops the token, so this never deletes a
/// record that was re-registered after the fence.
const FORGET_RECORD: &str = r"
if redis.call('HGET', KEYS[1], 'forgetToken') ~= ARGV[1] then return 0 end
local s = redis.call('HGET', KEYS[1], 'state')
if s and s ~= 'dead' then return 0 end
return redis.call('DEL', KEYS[1])
";

/// Forget, step 4 (on the index): remove the member only if its score (its last beat) is the
/// one read at the check. Invariant: a beat since then rewrote the score, and that member is
/// live: it keeps its entry.
const FORGET_INDEX: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and s == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
";

/// What one heartbeat's round trip read back.
#[derive(Debug, Default)]
pub struct BeatReply {
    /// The record's state (`None`: the record is gone).
    pub state: Option<String>,
    /// Signals popped from this instance's list (raw JSON, oldest first).
    pub signals: Vec<String>,
}

/// This instance's own record as this process knows it: what a rewrite writes back.
#[derive(Debug, Clone, Default)]
pub struct OwnRecord {
    /// `None` only before the first lifecycle step is known (reads as dead).
    pub state: Option<State>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub registered_at: String,
    pub last_state_change: String,
}

/// A death report still owed: a dead record whose HEARTBEAT_LOST entry is not known written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReport {
    pub token: String,
    /// When the record was marked dead, server ms (0 when unreadable).
    pub at_ms: u64,
}

/// A raw instance read: its hash, heartbeat payload and heartbeat PTTL (ms; negative = none).
pub struct RawInstance {
    pub id: String,
    pub hash: HashMap<String, String>,
    pub heartbeat: Option<String>,
    pub heartbeat_pttl: i64,
}

/// What a sweep reads of every instance; see [`Registry::read_light`].
pub struct LightInstance {
    pub id: String,
    /// state, lastStateChange and publicIp joined; `None` when the hash is missing.
    pub fingerprint: Option<String>,
    /// A death report the record still owes (`reportToken`, set by a sweeper's mark-dead
    /// and cleared once the entry is written); `None` when none is owed.
    pub report_token: Option<String>,
    pub heartbeat: Option<String>,
    pub heartbeat_pttl: i64,
}

/// The heartbeat payload's `lastBeat`, if the payload is ours.
pub fn last_beat_of(heartbeat: Option<&str>) -> Option<u64> {
    beat_of(heartbeat).0
}

/// The heartbeat payload's `lastBeat` and health, if the payload is ours (one parse).
pub fn beat_of(heartbeat: Option<&str>) -> (Option<u64>, Option<InstanceHealth>) {
    match heartbeat.and_then(|h| serde_json::from_str::<HeartbeatPayload>(h).ok()) {
        Some(b) => (Some(b.last_beat), b.health()),
        None => (None, None),
    }
}

/// Reads and lists instance records.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    keys: Keys,
}

impl Registry {
    pub fn new(store: Store, keys: Keys) -> Self {
        Registry { store, keys }
    }

    /// The ids of every known instance: from the index, or by SCAN of the hashes.
    pub async fn ids(&self, discovery: Discovery) -> Result<Vec<String>> {
        match discovery {
            Discovery::Index => {
                let mut cmd = Command::read("ZRANGE", &self.keys.instances());
                cmd.arg(0).arg(-1);
                let raw: Vec<Vec<u8>> = self.store.query(&cmd).await?;
                Ok(raw
                    .into_iter()
                    .filter_map(|b| String::from_utf8(b).ok())
                    .collect())
            }
            Discovery::Scan => {
                let keys = self.store.scan_match(&self.keys.instance_pattern()).await?;
                Ok(keys
                    .iter()
                    .filter_map(|k| self.keys.instance_id_of(k).map(str::to_string))
                    .collect())
            }
        }
    }

    /// Reads hash, heartbeat and heartbeat PTTL of each id in one round trip.
    pub async fn read_raw(&self, ids: &[String]) -> Result<Vec<RawInstance>> {
        self.read_full(ids, true).await
    }

    /// What a listing needs: hash and heartbeat payload of each id (no PTTL: a third fewer
    /// commands; `heartbeat_pttl` reads -2).
    pub async fn read_records(&self, ids: &[String]) -> Result<Vec<RawInstance>> {
        self.read_full(ids, false).await
    }

    async fn read_full(&self, ids: &[String], with_pttl: bool) -> Result<Vec<RawInstance>> {
        let reads = self
            .read_with_heartbeats(ids, |key| Command::read("HGETALL", key), with_pttl)
            .await?;
        Ok(reads
            .into_iter()
            .map(|(id, h, heartbeat, heartbeat_pttl)| RawInstance {
                id,
                // A wrong-type key (someone else's data) reads as empty, never as an error.
                hash: h.map(hash_from_value).unwrap_or_default(),
                heartbeat,
                heartbeat_pttl,
            })
            .collect())
    }

    /// The cheap per-sweep read: each id's state, lastStateChange and publicIp (what changes
    /// when a record changes), its owed death report, heartbeat payload and PTTL, in one
    /// round trip.
    /// Without `with_pttl`, `heartbeat_pttl` reads -2.
    pub async fn read_light(&self, ids: &[String], with_pttl: bool) -> Result<Vec<LightInstance>> {
        let reads = self
            .read_with_heartbeats(
                ids,
                |key| {
                    let mut c = Command::read("HMGET", key);
                    c.arg("state")
                        .arg("lastStateChange")
                        .arg("publicIp")
                        .arg("reportToken");
                    c
                },
                with_pttl,
            )
            .await?;
        Ok(reads
            .into_iter()
            .map(|(id, h, heartbeat, heartbeat_pttl)| LightInstance {
                id,
                // Missing hash: all fields nil. A wrong-type key reads the same.
                fingerprint: match &h {
                    Ok(Value::Array(f)) if f.iter().take(3).any(|v| *v != Value::Nil) => Some(
                        f.iter()
                            .take(3)
                            .map(|v| text(v).unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join("\u{1f}"),
                    ),
                    _ => None,
                },
                report_token: match &h {
                    Ok(Value::Array(f)) => f.get(3).and_then(text).filter(|t| !t.is_empty()),
                    _ => None,
                },
                heartbeat,
                heartbeat_pttl,
            })
            .collect())
    }

    /// For each id: `hash_cmd(<instance key>)`, the heartbeat payload and (`with_pttl`) its
    /// PTTL (ms; -2 when absent or not read), all in one round trip. The hash reply stays per
    /// key, so one bad key cannot fail the others.
    async fn read_with_heartbeats(
        &self,
        ids: &[String],
        hash_cmd: impl Fn(&str) -> Command,
        with_pttl: bool,
    ) -> Result<
        Vec<(
            String,
            std::result::Result<Value, String>,
            Option<String>,
            i64,
        )>,
    > {
        let mut cmds = Vec::with_capacity(ids.len() * if with_pttl { 3 } else { 2 });
        for id in ids {
            let heartbeat = self.keys.heartbeat(id);
            cmds.push(hash_cmd(&self.keys.instance(id)));
            cmds.push(Command::read("GET", &heartbeat));
            if with_pttl {
                cmds.push(Command::read("PTTL", &heartbeat));
            }
        }
        let replies = self.store.query_many(cmds).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut it = replies.into_iter();
        for id in ids {
            let (Some(h), Some(g)) = (it.next(), it.next()) else {
                break;
            };
            let pttl = match with_pttl.then(|| it.next()).flatten() {
                Some(Ok(Value::Int(n))) => n,
                _ => -2,
            };
            out.push((id.clone(), h, g.ok().as_ref().and_then(text), pttl));
        }
        Ok(out)
    }

    // ─── Writes ─────────────────────────────────────────────────────────────────

    /// Writes `id`'s record fresh from `own` (registration, and again after Redis lost it).
    pub async fn write_record(&self, identity: &Identity, own: &OwnRecord) -> Result<()> {
        let fields = record_fields(
            identity,
            own.public_ip.as_deref(),
            own.private_ip.as_deref(),
            own.state.unwrap_or(State::Dead),
            &own.registered_at,
            &own.last_state_change,
        );
        let args: Vec<String> = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let key = self.keys.instance(&identity.instance_id);
        let _: i64 = self
            .store
            .script(&redis::Script::new(WRITE_RECORD), &[&key], &args)
            .await?;
        Ok(())
    }

    /// Records a transition in `id`'s record if it exists; `ttl` expires it (dead records).
    pub async fn set_state(
        &self,
        id: &str,
        state: State,
        at: &str,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let ttl = ttl.map(|d| d.as_millis().to_string()).unwrap_or_default();
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(SET_STATE),
                &[&self.keys.instance(id)],
                &[state.as_str(), at, &ttl],
            )
            .await?;
        Ok(())
    }

    /// Fills in a detected public IP.
    pub async fn set_public_ip(&self, id: &str, ip: &str) -> Result<()> {
        let mut cmd = Command::write("HSET", &self.keys.instance(id));
        cmd.arg("publicIp").arg(ip);
        let _: Value = self.store.query(&cmd).await?;
        Ok(())
    }

    /// One heartbeat in one round trip: `SET heartbeat PX ttl`, `ZADD instances now+ttl id`
    /// (the index scores each instance by its heartbeat's deadline: see [`crate::core::index`]),
    /// `HGET state`, and with `pop_signals` (n > 0) `LPOP signal n`: operator requests ride
    /// the beat, costing no round trip of their own.
    pub async fn beat(
        &self,
        id: &str,
        payload: &HeartbeatPayload,
        ttl: Duration,
        pop_signals: usize,
    ) -> Result<BeatReply> {
        let mut set = Command::write("SET", &self.keys.heartbeat(id));
        set.arg(serde_json::to_string(payload).unwrap_or_default())
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        let mut zadd = Command::write("ZADD", &self.keys.instances());
        zadd.arg(payload.last_beat + ttl.as_millis() as u64).arg(id);
        let mut hget = Command::read("HGET", &self.keys.instance(id));
        hget.arg("state");
        let mut cmds = vec![set, zadd, hget];
        if pop_signals > 0 {
            // Popping is a write: never re-sent by us (a lost reply loses the signal, which
            // the requester's DRAIN_REQUESTED entry still records).
            let mut lpop = Command::write("LPOP", &self.keys.signal(id));
            lpop.arg(pop_signals);
            cmds.push(lpop);
        }
        let replies = self.store.query_many(cmds).await?;
        // A foreign value at the signal key must not fail the beat: only the first three
        // replies count.
        if let Some(Err(e)) = replies.iter().take(3).find(|r| r.is_err()) {
            return Err(crate::core::error::Error::Redis(e.clone()));
        }
        let signals = match replies.get(3) {
            Some(Ok(Value::Array(items))) => items.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        Ok(BeatReply {
            state: replies.get(2).and_then(|r| r.as_ref().ok()).and_then(text),
            signals,
        })
    }

    /// Forget, step 1: fences `id`'s record with `token` if it is dead (or has no state:
    /// garbage). 1 fenced, 0 no record, -1 not dead.
    pub async fn fence_for_forget(&self, id: &str, token: &str) -> Result<i64> {
        self.store
            .script(
                &redis::Script::new(FORGET_FENCE),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await
    }

    /// Forget, step 3: deletes `id`'s record only if it still carries `token` and is dead.
    pub async fn delete_if_fenced(&self, id: &str, token: &str) -> Result<bool> {
        let n: i64 = self
            .store
            .script(
                &redis::Script::new(FORGET_RECORD),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await?;
        Ok(n > 0)
    }

    /// Forget, step 4: removes `id` from the index only if its score is still `score`.
    pub async fn unindex_if_score(&self, id: &str, score: &str) -> Result<()> {
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(FORGET_INDEX),
                &[&self.keys.instances()],
                &[id, score],
            )
            .await?;
        Ok(())
    }

    /// Deletes `id`'s record whatever it holds (a forced forget).
    pub async fn delete_record(&self, id: &str) -> Result<()> {
        let cmd = Command::write("DEL", &self.keys.instance(id));
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// Deletes `id`'s heartbeat (drain, fail: the instance is gone on purpose).
    pub async fn delete_heartbeat(&self, id: &str) -> Result<()> {
        let cmd = Command::write("DEL", &self.keys.heartbeat(id));
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// Removes `id` from the index (its record has expired).
    pub async fn forget(&self, id: &str) -> Result<()> {
        let mut cmd = Command::write("ZREM", &self.keys.instances());
        cmd.arg(id);
        let _: i64 = self.store.query(&cmd).await?;
        Ok(())
    }

    /// The index members whose heartbeat deadline is not after `now_ms`, and the next one.
    pub async fn index_view(&self, now_ms: u64) -> Result<IndexView> {
        let replies = self
            .store
            .query_many(index::view_cmds(&self.keys, now_ms))
            .await?;
        Ok(index::parse_view(&replies).unwrap_or_default())
    }

    /// Pushes live index members back to their real deadlines.
    pub async fn push_back(&self, deadlines: &[(String, u64)]) -> Result<()> {
        index::push_back(&self.store, &self.keys, deadlines).await
    }

    /// Moves dead members' next look (id, score read, new score) unless a beat moved them.
    pub async fn reschedule(&self, moves: &[(String, String, u64)]) -> Result<()> {
        index::reschedule(&self.store, &self.keys, moves).await
    }

    /// Removes ids whose record has expired from the index, in one command.
    pub async fn forget_many(&self, ids: &[String]) -> Result<()> {
        index::remove(&self.store, &self.keys, ids).await
    }

    /// Remaining TTL (ms) of each id's record; `None` when it has none or is gone.
    pub async fn record_ttls(&self, ids: &[String]) -> Result<Vec<Option<u64>>> {
        let cmds = ids
            .iter()
            .map(|id| Command::read("PTTL", &self.keys.instance(id)))
            .collect();
        Ok(self
            .store
            .query_many(cmds)
            .await?
            .into_iter()
            .map(|r| match r {
                Ok(Value::Int(ms)) if ms > 0 => Some(ms as u64),
                _ => None,
            })
            .collect())
    }

    /// Flips `id`'s record to dead unless it already is; `Some(previous state)` when this
    /// call (identified by `token`, so a re-sent call answers the same) made the flip. The
    /// winner owes a HEARTBEAT_LOST entry carrying `token` (see [`Registry::clear_report`]).
    pub async fn mark_dead(
        &self,
        id: &str,
        at: &str,
        dead_ttl: Duration,
        token: &str,
    ) -> Result<Option<String>> {
        mark_dead(
            &self.store,
            &self.keys.instance(id),
            at,
            &dead_ttl.as_millis().to_string(),
            token,
        )
        .await
    }

    /// The death report `id`'s record still owes, with the state it was lost from.
    pub async fn pending_report(&self, id: &str) -> Result<Option<(PendingReport, Option<State>)>> {
        let mut cmd = Command::read("HMGET", &self.keys.instance(id));
        cmd.arg("state")
            .arg("reportToken")
            .arg("reportAt")
            .arg("lostFrom");
        let v: Vec<Option<String>> = self.store.query(&cmd).await?;
        let field = |i: usize| v.get(i).cloned().flatten();
        let token = field(1).filter(|t| !t.is_empty());
        Ok(match (field(0).as_deref(), token) {
            (Some("dead"), Some(token)) => Some((
                PendingReport {
                    token,
                    at_ms: field(2).and_then(|t| t.parse().ok()).unwrap_or(0),
                },
                field(3).and_then(|s| s.parse().ok()),
            )),
            _ => None,
        })
    }

    /// The entry for `token` is written: the record owes nothing more.
    pub async fn clear_report(&self, id: &str, token: &str) -> Result<()> {
        let _: i64 = self
            .store
            .script(
                &redis::Script::new(CLEAR_REPORT),
                &[&self.keys.instance(id)],
                &[token],
            )
            .await?;
        Ok(())
    }

    /// One instance, or `None` when missing or unparsable.
    pub async fn get(&self, id: &str) -> Result<Option<InstanceInfo>> {
        let raw = self.read_raw(&[id.to_string()]).await?;
        Ok(raw
            .first()
            .and_then(|r| parse_record(&r.id, &r.hash, r.heartbeat.as_deref())))
    }
}

/// [`Registry::mark_dead`] on a raw key (kept public: tests drive it directly).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::PublicIpMode;

    fn identity() -> Identity {
        Identity {
            instance_id: "h:1:2:3".into(),
            hostname: "h".into(),
            exchange_id: 1,
            exchange_name: "coinbase".into(),
            version: "1.2.3".into(),
            pid: 2,
            metadata: BTreeMap::from([("region".into(), "eu".into())]),
            public_ip: PublicIpMode::Disabled,
        }
    }

    #[test]
    fn record_has_the_seed_fields_in_order() {
        let f = record_fields(
            &identity(),
            None,
            Some("10.0.0.1"),
            State::Running,
            "t0",
            "t1",
        );
        let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "instanceId",
                "hostname",
                "exchangeId",
                "exchangeName",
                "publicIp",
                "privateIp",
                "pid",
                "version",
                "state",
                "registeredAt",
                "lastStateChange",
                "meta.region"
            ]
        );
        assert_eq!(f[4].1, "unknown");
    }

    #[test]
    fn record_round_trips_through_parse() {
        let f = record_fields(
            &identity(),
            Some("203.0.113.7"),
            None,
            State::Draining,
            "t0",
            "t1",
        );
        let hash: HashMap<String, String> = f.into_iter().collect();
        let beat = HeartbeatPayload {
            last_beat: 1700000000000,
            state: "running".into(),
            exchange: "coinbase".into(),
            event_loop_lag_ms: Some(3),
            redis_rtt_ms: None,
            rss_bytes: None,
        };
        let json = serde_json::to_string(&beat).unwrap();
        assert_eq!(
            json,
            r#"{"lastBeat":1700000000000,"state":"running","exchange":"coinbase","eventLoopLagMs":3}"#
        );
        let info = parse_record("h:1:2:3", &hash, Some(&json)).unwrap();
        assert_eq!(info.public_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(info.private_ip, None);
        assert_eq!(info.state, State::Draining);
        assert_eq!(info.metadata["region"], "eu");
        assert!(info.alive);
        assert_eq!(info.last_heartbeat, Some(1700000000000));
        assert_eq!(info.health, None, "the seed's payload records no health");
        let ours = r#"{"lastBeat":1,"state":"running","exchange":"x","eventLoopLagMs":3,"redisRttMs":2,"rssBytes":1000}"#;
        let info = parse_record("h:1:2:3", &hash, Some(ours)).unwrap();
        assert_eq!(
            info.health,
            Some(InstanceHealth {
                redis_rtt_ms: 2,
                event_loop_lag_ms: 3,
                rss_bytes: 1000
            })
        );
    }

    #[test]
    fn garbage_records_are_rejected_not_fatal() {
        let mut hash: HashMap<String, String> =
            record_fields(&identity(), None, None, State::Running, "a", "b")
                .into_iter()
                .collect();
        assert!(parse_record("h:1:2:3", &hash, Some("not json")).is_some());
        hash.insert("state".into(), "zombie".into());
        assert!(parse_record("h:1:2:3", &hash, None).is_none());
        assert!(parse_record("x", &HashMap::new(), None).is_none());
        let mut other = HashMap::new();
        other.insert("state".into(), "running".into());
        assert!(parse_record("x", &other, None).is_none());
    }
}
