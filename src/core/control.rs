//! Operator verbs on other instances: ask one to drain, forget a dead one, see who sweeps.
//!
//! Every verb works from a network that was never started (the CLI, a dashboard), touches one
//! key per command (cluster-safe without hash tags) and leaves an activity entry naming who
//! asked (`fields.requestedBy`): the stream is the audit trail.

use redis::Value;
use serde::Serialize;

use crate::core::activity::{ActivityInput, Author};
use crate::core::config::{validate_instance_id, OnDrainRequest};
use crate::core::error::{Error, Result};
use crate::core::events::{DrainRequest, NetEvent};
use crate::core::fsm::State;
use crate::core::network::{iso_now, Network};
use crate::core::registry::{hash_from_value, parse_record, text, InstanceInfo};

/// Queue a signal for one instance. Invariant: the list never outlives its expiry, renewed on
/// every push, so a request to an instance that dies before reading it is dropped with the key.
const PUSH_SIGNAL: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
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
/// dead. An instance can only come back to life by rewriting its record from scratch (the
/// registration script deletes the hash first), which drops the token: so this never deletes
/// a record that was re-registered after step 1.
const FORGET_RECORD: &str = r"
if redis.call('HGET', KEYS[1], 'forgetToken') ~= ARGV[1] then return 0 end
local s = redis.call('HGET', KEYS[1], 'state')
if s and s ~= 'dead' then return 0 end
return redis.call('DEL', KEYS[1])
";

/// Forget, step 4 (on the index): remove the member only if its score (its last beat) is the
/// one read at the check. A beat since then rewrote the score: that member is live, keep it.
const FORGET_INDEX: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and s == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
";

/// Most signals one beat pops (more wait for the next beat).
const SIGNALS_PER_BEAT: usize = 16;

/// A signal list lives this many of the longer of (our TTL, the target's remaining TTL).
const SIGNAL_TTLS: u32 = 3;

/// Who holds the sweeper lease and for how much longer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweeperLease {
    pub instance_id: String,
    #[serde(serialize_with = "crate::core::registry::int")]
    pub expires_in_ms: u64,
}

/// The command a heartbeat adds to its round trip to read this instance's signals.
pub(crate) fn pop_signals_cmd(net: &Network) -> redis::Cmd {
    let mut c = redis::cmd("LPOP");
    c.arg(net.keys().signal(net.instance_id()))
        .arg(SIGNALS_PER_BEAT);
    c
}

/// Acts on what a heartbeat popped: emits `drainRequested` for each request, and drains once
/// (from its own task: the drain stops the heartbeat that is calling us) unless the
/// application asked to decide itself. Malformed signals (foreign writers) are logged, skipped.
pub(crate) fn on_signals(net: &Network, popped: &Value) {
    let Value::Array(items) = popped else { return };
    let mut first: Option<DrainRequest> = None;
    for item in items {
        let parsed = text(item).and_then(|t| serde_json::from_str::<DrainRequest>(&t).ok());
        let Some(mut req) = parsed else {
            net.logger().warn(
                serde_json::json!({ "key": net.keys().signal(net.instance_id()) }),
                "skipped a signal that cannot be parsed",
            );
            continue;
        };
        req.instance_id = net.instance_id().to_string();
        net.logger().info(
            serde_json::json!({ "requestedBy": req.requested_by, "reason": req.reason }),
            "drain requested by an operator",
        );
        net.sink().emit(NetEvent::DrainRequested(req.clone()));
        first.get_or_insert(req);
    }
    if let (Some(req), OnDrainRequest::Drain) = (first, net.config().on_drain_request) {
        let net = net.clone();
        tokio::spawn(async move {
            // Waits for the lifecycle lock: a request heard while registering drains once
            // `start()` is done.
            if net.state() == State::Dead {
                return;
            }
            if let Err(e) = net.drain(req.reason.clone()).await {
                net.report_error(e, "drain on request failed");
            }
        });
    }
}

/// `requestDrain`: `false` (writing nothing) unless `id` is a running instance with a live
/// heartbeat. Writes DRAIN_REQUESTED first and then the signal, so the entry always precedes
/// the target's DEREGISTERED.
pub async fn request_drain(net: &Network, id: &str, reason: Option<String>) -> Result<bool> {
    validate_instance_id("instanceId", id)?;
    let registry = net.registry().await?;
    let Some(raw) = registry.read_raw(&[id.to_string()]).await?.pop() else {
        return Ok(false);
    };
    let Some(info) = parse_record(&raw.id, &raw.hash, raw.heartbeat.as_deref()) else {
        return Ok(false);
    };
    if info.state != State::Running || !info.alive {
        return Ok(false);
    }
    let request = DrainRequest {
        instance_id: id.to_string(),
        reason: reason.clone(),
        requested_by: net.instance_id().to_string(),
        at: iso_now(),
    };
    net.append_as(
        &author_of(&info),
        &ActivityInput {
            event: "DRAIN_REQUESTED".into(),
            reason,
            fields: vec![("requestedBy".into(), request.requested_by.clone())],
            ..Default::default()
        },
    )
    .await?;
    let own_ttl = net.config().timing.heartbeat_ttl.as_millis() as u64;
    let expiry = own_ttl.max(raw.heartbeat_pttl.max(0) as u64) * u64::from(SIGNAL_TTLS);
    let payload = serde_json::to_string(&request).unwrap_or_default();
    let store = net.store().await?;
    let _: i64 = store
        .script(
            &redis::Script::new(PUSH_SIGNAL),
            &[&net.keys().signal(id)],
            &[&payload, &expiry.to_string()],
        )
        .await?;
    Ok(true)
}

/// `forgetInstance`: deletes a dead instance's record, heartbeat key and index entry and
/// writes FORGOTTEN; `false` when none of them exists; [`Error::Conflict`] when the instance
/// is not dead or its heartbeat exists, unless `force`.
///
/// The three keys sit in different cluster slots, so no one script can hold them all. The
/// record is the point of truth: without `force`, (1) the record is fenced with a token
/// while dead, (2) the heartbeat key is checked absent, (3) the record is deleted only if it
/// still carries the token, (4) the index entry only if its score is unchanged. A heartbeat
/// key is never deleted without `force`, so a heartbeat that arrives meanwhile survives whole,
/// and its instance (which finds its record dead or gone) registers again through its own
/// path, rewriting the record and the index entry.
///
/// With `force`, heartbeat, index entry and signals go first and the record last: a live
/// instance beating in between still finds its record, and its next beat finds it gone and
/// registers again (`REGISTERED`, reason "record was missing from Redis").
pub async fn forget_instance(net: &Network, id: &str, force: bool) -> Result<bool> {
    validate_instance_id("instanceId", id)?;
    let store = net.store().await?;
    let keys = net.keys();
    let (record_key, heartbeat_key, index_key) =
        (keys.instance(id), keys.heartbeat(id), keys.instances());
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(&record_key);
    let mut exists = redis::cmd("EXISTS");
    exists.arg(&heartbeat_key);
    let mut zscore = redis::cmd("ZSCORE");
    zscore.arg(&index_key).arg(id);
    let mut replies = store
        .query_many(vec![hgetall, exists, zscore])
        .await?
        .into_iter();
    let hash = match replies.next() {
        Some(Ok(v)) => hash_from_value(v),
        _ => Default::default(),
    };
    let heartbeat = matches!(replies.next(), Some(Ok(Value::Int(n))) if n > 0);
    let score = replies.next().and_then(|r| r.ok()).and_then(|v| text(&v));
    // A wrong-type key at the record's name (not ours) reads as empty and is left alone.
    if hash.is_empty() && !heartbeat && score.is_none() {
        return Ok(false);
    }
    let state = hash.get("state").cloned();
    if !force {
        if heartbeat {
            return Err(conflict(id, "its heartbeat key exists (it is alive)"));
        }
        if let Some(s) = state.as_deref().filter(|s| *s != "dead") {
            return Err(conflict(id, &format!("its state is '{s}', not 'dead'")));
        }
        let token = format!("{}|{}", net.instance_id(), iso_now());
        if !hash.is_empty() {
            let fenced: i64 = store
                .script(&redis::Script::new(FORGET_FENCE), &[&record_key], &[&token])
                .await?;
            if fenced < 0 {
                return Err(conflict(id, "it came back to life meanwhile"));
            }
            let mut again = redis::cmd("EXISTS");
            again.arg(&heartbeat_key);
            let beating: i64 = store.query(&again).await?;
            if beating > 0 {
                return Err(conflict(id, "its heartbeat reappeared meanwhile"));
            }
            if fenced > 0 {
                let deleted: i64 = store
                    .script(
                        &redis::Script::new(FORGET_RECORD),
                        &[&record_key],
                        &[&token],
                    )
                    .await?;
                if deleted == 0 {
                    return Err(conflict(id, "its record changed meanwhile"));
                }
            }
        }
        if let Some(score) = &score {
            let _: i64 = store
                .script(
                    &redis::Script::new(FORGET_INDEX),
                    &[&index_key],
                    &[id, score],
                )
                .await?;
        }
        let mut del = redis::cmd("DEL");
        del.arg(keys.signal(id));
        let _: i64 = store.query(&del).await?;
    } else {
        let mut del_hb = redis::cmd("DEL");
        del_hb.arg(&heartbeat_key);
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&index_key).arg(id);
        let mut del_sig = redis::cmd("DEL");
        del_sig.arg(keys.signal(id));
        for r in store.query_many(vec![del_hb, zrem, del_sig]).await? {
            r.map_err(Error::Redis)?;
        }
        let mut del = redis::cmd("DEL");
        del.arg(&record_key);
        let _: i64 = store.query(&del).await?;
    }
    let info = parse_record(id, &hash, None);
    let author = match &info {
        Some(info) => author_of(info),
        None => Author {
            instance_id: id.to_string(),
            exchange: hash.get("exchangeName").cloned().unwrap_or_default(),
            exchange_id: hash
                .get("exchangeId")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            hostname: hash.get("hostname").cloned().unwrap_or_default(),
            public_ip: None,
        },
    };
    let mut fields = vec![("requestedBy".into(), net.instance_id().to_string())];
    if force {
        fields.push(("force".into(), "true".into()));
    }
    net.append_as(
        &author,
        &ActivityInput {
            event: "FORGOTTEN".into(),
            reason: Some(match state {
                Some(s) => format!("forgotten in state '{s}'"),
                None => "forgotten".into(),
            }),
            fields,
            ..Default::default()
        },
    )
    .await?;
    Ok(true)
}

/// `sweeper()`: the lease holder and its remaining time, `None` when nobody holds it.
pub async fn sweeper(net: &Network) -> Result<Option<SweeperLease>> {
    let store = net.store().await?;
    let key = net.keys().sweeper();
    let mut get = redis::cmd("GET");
    get.arg(&key);
    let mut pttl = redis::cmd("PTTL");
    pttl.arg(&key);
    let mut replies = store.query_many(vec![get, pttl]).await?.into_iter();
    let holder = replies.next().and_then(|r| r.ok()).and_then(|v| text(&v));
    let ttl = match replies.next() {
        Some(Ok(Value::Int(n))) => n,
        _ => -2,
    };
    Ok(match holder {
        // A lease that expired between the two reads (-2) is nobody's.
        Some(h) if ttl != -2 && !h.is_empty() => Some(SweeperLease {
            instance_id: h,
            expires_in_ms: ttl.max(0) as u64,
        }),
        _ => None,
    })
}

fn conflict(id: &str, why: &str) -> Error {
    Error::Conflict(format!(
        "cannot forget instance '{}': {why}; pass force to forget it anyway",
        crate::core::config::clip(id)
    ))
}

/// Entries about another instance carry that instance's identity (like HEARTBEAT_LOST).
fn author_of(info: &InstanceInfo) -> Author {
    Author {
        instance_id: info.instance_id.clone(),
        exchange: info.exchange_name.clone(),
        exchange_id: info.exchange_id,
        hostname: info.hostname.clone(),
        public_ip: info.public_ip.clone(),
    }
}

/// `metrics()`: this process's families in the Prometheus text format 0.0.4.
pub fn metrics_text(net: &Network) -> Result<String> {
    if net.is_closed() {
        return Err(Error::Closed);
    }
    let id = &net.config().identity;
    Ok(net.metrics().render(
        &crate::core::metrics::InfoLabels {
            instance_id: &id.instance_id,
            exchange: &id.exchange_name,
            version: &id.version,
        },
        net.state(),
    ))
}
