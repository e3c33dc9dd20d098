//! The record model: the seed's hash schema, the heartbeat payload, and the shapes reads
//! return.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::core::config::Identity;
use crate::core::fsm::State;
use crate::core::wire::text::{int, opt_int};

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

/// What one heartbeat's round trip read back.
#[derive(Debug, Default)]
pub struct BeatReply {
    /// The record's state (`None`: the record is gone).
    pub state: Option<String>,
    /// Signals popped from this instance's list (raw JSON, oldest first).
    pub signals: Vec<String>,
    /// The deadline the beat wrote to the index (Redis time of the index's node + TTL, ms).
    pub deadline: Option<u64>,
    /// Whether the heartbeat key existed when the beat rewrote it (`SET … GET`): `false`
    /// while running means it had expired, a lapse.
    pub had_key: bool,
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
    /// The index deadline the last good beat wrote (Redis time + TTL): a beat that finds its
    /// key gone after one good beat of this registration is a lapse.
    pub last_deadline: Option<u64>,
    /// The registration (`registeredAt`) of this instance's own lapse, while its report is not
    /// yet known written (retried before it rejoins); it names the lapse.
    pub lapse: Option<String>,
}

/// How a record stands towards its HEARTBEAT_LOST report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lapse {
    /// The token whose report is still owed (`reportToken`, not empty).
    pub report_token: Option<String>,
    /// The token of the record's last mark-dead (`lostToken`): its lapse was reported.
    pub lost_token: Option<String>,
    /// The state it was lost from.
    pub lost_from: Option<State>,
}

/// What a registration's record rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Written,
    /// Refused: the record still owes the report of this token.
    Owed(String),
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

/// The heartbeat payload's `lastBeat` and health, if the payload is ours (one parse).
pub fn beat_of(heartbeat: Option<&str>) -> (Option<u64>, Option<InstanceHealth>) {
    match heartbeat.and_then(|h| serde_json::from_str::<HeartbeatPayload>(h).ok()) {
        Some(b) => (Some(b.last_beat), b.health()),
        None => (None, None),
    }
}
