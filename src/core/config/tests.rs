//! Unit tests of option validation.

use super::*;
use crate::core::error::Error;
use crate::core::redact::redact_url;

fn base() -> RawOptions {
    RawOptions {
        exchange_id: Some(1.0),
        exchange_name: Some("coinbase".into()),
        hostname: Some("host-a".into()),
        pid: Some(42),
        ..Default::default()
    }
}

fn err_of(o: RawOptions) -> String {
    match Config::from_options(o, None) {
        Err(Error::InvalidOption(m)) => m,
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn defaults_follow_the_api() {
    let c = Config::from_options(base(), None).unwrap();
    assert!(matches!(&c.connection.target, Target::Standalone(u) if u == "redis://127.0.0.1:6379"));
    assert_eq!(c.key_prefix, "perseus");
    assert_eq!(c.connection.connect_timeout, Duration::from_millis(5000));
    assert_eq!(c.connection.command_timeout, Duration::from_millis(5000));
    assert_eq!(c.timing.heartbeat_interval, Duration::from_secs(15));
    assert_eq!(c.timing.heartbeat_ttl, Duration::from_secs(45));
    assert_eq!(c.timing.sweep_interval, Duration::from_secs(15));
    assert_eq!(
        c.timing.activity_retention,
        Some(Duration::from_millis(DEFAULT_RETENTION_MS))
    );
    assert_eq!(c.timing.trim_interval, Duration::from_secs(3600));
    assert_eq!(c.timing.dead_instance_ttl, Duration::from_secs(86400));
    assert_eq!(c.timing.event_loop_stall, Some(Duration::from_secs(60)));
    assert_eq!(c.discovery, Discovery::Index);
    assert_eq!(c.on_heartbeat_lost, OnHeartbeatLost::Rejoin);
    assert_eq!(c.on_drain_request, OnDrainRequest::Drain);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.identity.version, "0.0.0");
    assert!(c.identity.instance_id.starts_with("host-a:1:42:"));
    assert!(
        matches!(c.identity.public_ip, PublicIpMode::Detect { ref endpoints, timeout }
        if endpoints.len() == 3 && timeout == Duration::from_secs(5))
    );
}

#[test]
fn env_url_is_used_when_redis_url_is_unset() {
    let c = Config::from_options(base(), Some("redis://10.1.2.3:7000".into())).unwrap();
    assert!(matches!(&c.connection.target, Target::Standalone(u) if u == "redis://10.1.2.3:7000"));
    let mut o = base();
    o.redis_url = Some("redis://h:1".into());
    let c = Config::from_options(o, Some("redis://10.1.2.3:7000".into())).unwrap();
    assert!(matches!(&c.connection.target, Target::Standalone(u) if u == "redis://h:1"));
}

#[test]
fn ttl_defaults_to_three_intervals() {
    let mut o = base();
    o.heartbeat_interval_ms = Some(100.0);
    let c = Config::from_options(o, None).unwrap();
    assert_eq!(c.timing.heartbeat_ttl, Duration::from_millis(300));
    assert_eq!(c.timing.sweep_interval, Duration::from_millis(100));
}

#[test]
fn zero_turns_trimming_and_watchdog_off() {
    let mut o = base();
    o.activity_retention_ms = Some(0.0);
    o.event_loop_stall_ms = Some(0.0);
    let c = Config::from_options(o, None).unwrap();
    assert_eq!(c.timing.activity_retention, None);
    assert_eq!(c.timing.event_loop_stall, None);
}

#[test]
fn rejects_bad_values_naming_the_option() {
    type Mutation = Box<dyn Fn(&mut RawOptions)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|o| o.exchange_id = Some(-1.0)), "exchangeId"),
        (Box::new(|o| o.exchange_id = Some(1.5)), "exchangeId"),
        (Box::new(|o| o.exchange_id = Some(f64::NAN)), "exchangeId"),
        (
            Box::new(|o| o.exchange_id = Some(9007199254740992.0)),
            "exchangeId",
        ),
        (Box::new(|o| o.exchange_id = None), "exchangeId"),
        (
            Box::new(|o| o.exchange_name = Some("".into())),
            "exchangeName",
        ),
        (
            Box::new(|o| o.exchange_name = Some("coin base".into())),
            "exchangeName",
        ),
        (
            Box::new(|o| o.exchange_name = Some("x".repeat(65))),
            "exchangeName",
        ),
        (
            Box::new(|o| o.instance_id = Some("a b".into())),
            "instanceId",
        ),
        (
            Box::new(|o| o.instance_id = Some("a*b".into())),
            "instanceId",
        ),
        (
            Box::new(|o| o.instance_id = Some("a{b}".into())),
            "instanceId",
        ),
        (
            Box::new(|o| o.instance_id = Some("a\u{7}".into())),
            "instanceId",
        ),
        (Box::new(|o| o.instance_id = Some("é".into())), "instanceId"),
        (
            Box::new(|o| o.instance_id = Some("x".repeat(257))),
            "instanceId",
        ),
        (Box::new(|o| o.instance_id = Some("".into())), "instanceId"),
        (
            Box::new(|o| {
                o.heartbeat_interval_ms = Some(1000.0);
                o.heartbeat_ttl_ms = Some(1000.0)
            }),
            "heartbeatTtlMs",
        ),
        (
            Box::new(|o| o.heartbeat_interval_ms = Some(49.0)),
            "heartbeatIntervalMs",
        ),
        (
            Box::new(|o| o.redis_url = Some("http://localhost".into())),
            "redisUrl",
        ),
        (
            Box::new(|o| o.redis_url = Some("not a url".into())),
            "redisUrl",
        ),
        (
            Box::new(|o| o.redis_url = Some("redis://h/abc".into())),
            "redisUrl",
        ),
        (Box::new(|o| o.cluster_nodes = Some(vec![])), "clusterNodes"),
        (
            Box::new(|o| o.cluster_nodes = Some(vec!["tcp://x".into()])),
            "clusterNodes[0]",
        ),
        (Box::new(|o| o.key_prefix = Some("a b".into())), "keyPrefix"),
        (Box::new(|o| o.key_prefix = Some("a*".into())), "keyPrefix"),
        (
            Box::new(|o| o.connect_timeout_ms = Some(0.0)),
            "connectTimeoutMs",
        ),
        (
            Box::new(|o| o.command_timeout_ms = Some(-5.0)),
            "commandTimeoutMs",
        ),
        (
            Box::new(|o| {
                o.metadata = Some((0..65).map(|i| (format!("k{i}"), "v".into())).collect())
            }),
            "metadata",
        ),
        (
            Box::new(|o| o.metadata = Some(vec![("bad key".into(), "v".into())])),
            "metadata",
        ),
        (
            Box::new(|o| o.metadata = Some(vec![("k".into(), "v".repeat(1025))])),
            "metadata.k",
        ),
        (
            Box::new(|o| o.public_ip = Some(PublicIpOption::Fixed("nope".into()))),
            "publicIp",
        ),
        (
            Box::new(|o| o.public_ip_endpoints = Some(vec!["ftp://x".into()])),
            "publicIpEndpoints[0]",
        ),
        (
            Box::new(|o| o.discovery = Some("gossip".into())),
            "discovery",
        ),
        (
            Box::new(|o| o.on_heartbeat_lost = Some("retry".into())),
            "onHeartbeatLost",
        ),
        (
            Box::new(|o| o.on_drain_request = Some("ignore".into())),
            "onDrainRequest",
        ),
        (Box::new(|o| o.log_level = Some("loud".into())), "logLevel"),
        (
            Box::new(|o| o.activity_retention_ms = Some(-1.0)),
            "activityRetentionMs",
        ),
        (
            Box::new(|o| o.tls_ca_cert = Some("garbage".into())),
            "tlsCaCert",
        ),
        (Box::new(|o| o.password = Some("".into())), "password"),
        (Box::new(|o| o.version = Some("1 0".into())), "version"),
        (Box::new(|o| o.hostname = Some("".into())), "hostname"),
    ];
    for (mutate, name) in cases {
        let mut o = base();
        mutate(&mut o);
        let msg = err_of(o);
        assert!(
            msg.starts_with(name),
            "message {msg:?} should start with {name}"
        );
    }
}

#[test]
fn url_errors_never_show_the_password() {
    let mut o = base();
    o.redis_url = Some("http://user:s3cret@host:1".into());
    assert!(!err_of(o).contains("s3cret"));
    let mut o = base();
    o.redis_url = Some("redis://user:s3cret@host:1/xyz".into());
    assert!(!err_of(o).contains("s3cret"));
    assert_eq!(redact_url("redis://u:s3cret@h:1/2"), "redis://u:***@h:1/2");
    let c = ConnectionConfig::for_test(
        Target::Standalone("redis://u:s3cret@h:1".into()),
        Some("s3cret".into()),
    );
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn make_instance_id_matches_the_seed() {
    assert_eq!(
        make_instance_id("DESKTOP-ABC", 1, 12345, 1707580800000),
        "DESKTOP-ABC:1:12345:1707580800000"
    );
}
