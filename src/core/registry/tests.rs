//! Unit tests of the record model.

use super::*;
use crate::core::config::Identity;
use crate::core::config::PublicIpMode;
use crate::core::fsm::State;
use std::collections::{BTreeMap, HashMap};

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
