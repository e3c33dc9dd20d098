//! Operator verbs on other instances: ask one to drain, forget a dead one, see who sweeps.
//!
//! Every verb works from a network that was never started (the CLI, a dashboard), touches one
//! key per command (cluster-safe without hash tags) and leaves an activity entry naming who
//! asked (`fields.requestedBy`): the stream is the audit trail.

use redis::Value;
use serde::Serialize;

use crate::core::activity::{ActivityInput, Author};
use crate::core::clock::iso_now;
use crate::core::config::OnDrainRequest;
use crate::core::error::{Error, Result};
use crate::core::events::{DrainRequest, NetEvent};
use crate::core::fsm::State;
use crate::core::keys::Keys;
use crate::core::registry::{parse_record, InstanceInfo};
use crate::core::store::{Command, Store};
use crate::core::sweeper::report;
use crate::core::task::TaskCtx;
use crate::core::wire::text::{hash_from_value, text};

/// Queue a signal for one instance. Invariant: the list never outlives its expiry, renewed on
/// every push, so a request to an instance that dies before reading it is dropped with the key.
const PUSH_SIGNAL: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Most signals one beat pops (more wait for the next beat).
pub const SIGNALS_PER_BEAT: usize = 16;

/// A signal list lives this many of the longer of (our TTL, the target's remaining TTL).
const SIGNAL_TTLS: u32 = 3;

/// Who holds the sweeper lease and for how much longer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweeperLease {
    pub instance_id: String,
    #[serde(serialize_with = "crate::core::wire::text::int")]
    pub expires_in_ms: u64,
}

/// Hears what a heartbeat popped: emits `drainRequested` for each request and returns the
/// first when this instance drains on request (`onDrainRequest: 'drain'`). Malformed signals
/// (foreign writers) are logged and skipped.
pub fn hear_signals(ctx: &TaskCtx, raw: &[String]) -> Option<DrainRequest> {
    let mut first = None;
    for item in raw {
        let Ok(mut req) = serde_json::from_str::<DrainRequest>(item) else {
            ctx.log.warn(
                serde_json::json!({ "key": ctx.keys.signal(ctx.instance_id()) }),
                "skipped a signal that cannot be parsed",
            );
            continue;
        };
        req.instance_id = ctx.instance_id().to_string();
        ctx.log.info(
            serde_json::json!({ "requestedBy": req.requested_by, "reason": req.reason }),
            "drain requested by an operator",
        );
        ctx.sink.emit(NetEvent::DrainRequested(req.clone()));
        first.get_or_insert(req);
    }
    first.filter(|_| ctx.cfg.on_drain_request == OnDrainRequest::Drain)
}

/// `requestDrain`: `false` (writing nothing) unless `id` is a running instance with a live
/// heartbeat. Writes DRAIN_REQUESTED first and then the signal, so the entry always precedes
/// the target's DEREGISTERED.
pub async fn request_drain(ctx: &TaskCtx, id: &str, reason: Option<String>) -> Result<bool> {
    let Some(raw) = ctx.registry.read_raw(&[id.to_string()]).await?.pop() else {
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
        requested_by: ctx.instance_id().to_string(),
        at: iso_now(),
    };
    let input = ActivityInput {
        event: "DRAIN_REQUESTED".into(),
        reason,
        fields: vec![("requestedBy".into(), request.requested_by.clone())],
        ..Default::default()
    };
    ctx.writer.append_as(&author_of(&info), &input).await?;
    // The target's TTL is not ours to know, but its heartbeat's remaining PTTL bounds it.
    let own_ttl = ctx.cfg.timing.heartbeat_ttl.as_millis() as u64;
    let expiry = own_ttl.max(raw.heartbeat_pttl.max(0) as u64) * u64::from(SIGNAL_TTLS);
    let payload = serde_json::to_string(&request).unwrap_or_default();
    let _: i64 = ctx
        .store
        .script(
            &redis::Script::new(PUSH_SIGNAL),
            &[&ctx.keys.signal(id)],
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
/// still carries the token, (4) the index entry only if its score (last beat) is unchanged.
/// A heartbeat key is never deleted without `force`, so a heartbeat that arrives meanwhile
/// survives whole, and its instance (which finds its record dead or gone) registers again
/// through its own path, rewriting record and index entry.
///
/// With `force`, heartbeat, index entry and signals go first and the record last: a live
/// instance beating in between still finds its record, and its next beat finds it gone and
/// registers again (`REGISTERED`, reason "record was missing from Redis").
pub async fn forget_instance(ctx: &TaskCtx, id: &str, force: bool) -> Result<bool> {
    let (store, keys, registry) = (&ctx.store, &ctx.keys, &ctx.registry);
    let heartbeat_key = keys.heartbeat(id);
    let mut zscore = Command::read("ZSCORE", &keys.instances());
    zscore.arg(id);
    let mut replies = store
        .query_many(vec![
            Command::read("HGETALL", &keys.instance(id)),
            Command::read("EXISTS", &heartbeat_key),
            zscore,
        ])
        .await?
        .into_iter();
    // A wrong-type key at the record's name (not ours) reads as empty.
    let hash = match replies.next() {
        Some(Ok(v)) => hash_from_value(v),
        _ => Default::default(),
    };
    let heartbeat = matches!(replies.next(), Some(Ok(Value::Int(n))) if n > 0);
    let score = replies.next().and_then(|r| r.ok()).and_then(|v| text(&v));
    if hash.is_empty() && !heartbeat && score.is_none() {
        return Ok(false);
    }
    let state = hash.get("state").cloned();
    let author = match parse_record(id, &hash, None) {
        Some(info) => author_of(&info),
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
    // A report still owed is written before the record goes (its token would go with it).
    let settle_first = || async {
        if hash.is_empty() {
            return Ok(());
        }
        report::settle_record(ctx, id, &author).await.map_err(|e| {
            Error::Conflict(format!(
                "cannot forget instance '{}': it still owes its HEARTBEAT_LOST entry, which could not be written ({e}); try again once it can be",
                crate::core::redact::clip(id)
            ))
        })
    };
    if force {
        settle_first().await?;
        let mut zrem = Command::write("ZREM", &keys.instances());
        zrem.arg(id);
        let dels = vec![
            Command::write("DEL", &heartbeat_key),
            zrem,
            Command::write("DEL", &keys.signal(id)),
        ];
        for r in store.query_many(dels).await? {
            r.map_err(Error::Redis)?;
        }
        registry.delete_record(id).await?;
    } else {
        if heartbeat {
            return Err(conflict(id, "its heartbeat key exists (it is alive)"));
        }
        if let Some(s) = state.as_deref().filter(|s| *s != "dead") {
            return Err(conflict(id, &format!("its state is '{s}', not 'dead'")));
        }
        if !hash.is_empty() {
            let token = format!("{}|{}", ctx.instance_id(), iso_now());
            let fenced = registry.fence_for_forget(id, &token).await?;
            if fenced < 0 {
                return Err(conflict(id, "it registered again meanwhile"));
            }
            let beating: i64 = store
                .query(&Command::read("EXISTS", &heartbeat_key))
                .await?;
            if beating > 0 {
                return Err(conflict(id, "its heartbeat reappeared meanwhile"));
            }
            if fenced > 0 {
                settle_first().await?;
            }
            if fenced > 0 && !registry.delete_if_fenced(id, &token).await? {
                return Err(conflict(id, "its record changed meanwhile"));
            }
        }
        if let Some(score) = &score {
            registry.unindex_if_score(id, score).await?;
        }
        let _: i64 = store
            .query(&Command::write("DEL", &keys.signal(id)))
            .await?;
    }
    let mut fields = vec![("requestedBy".into(), ctx.instance_id().to_string())];
    if force {
        fields.push(("force".into(), "true".into()));
    }
    let input = ActivityInput {
        event: "FORGOTTEN".into(),
        reason: Some(match state {
            Some(s) => format!("forgotten in state '{s}'"),
            None => "forgotten".into(),
        }),
        fields,
        ..Default::default()
    };
    ctx.writer.append_as(&author, &input).await?;
    Ok(true)
}

/// `sweeper()`: the lease holder and its remaining time, `None` when nobody holds it.
pub async fn sweeper(store: &Store, keys: &Keys) -> Result<Option<SweeperLease>> {
    let key = keys.sweeper();
    let mut replies = store
        .query_many(vec![
            Command::read("GET", &key),
            Command::read("PTTL", &key),
        ])
        .await?
        .into_iter();
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
        crate::core::redact::clip(id)
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
