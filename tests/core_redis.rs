//! The pure core against real, throwaway `redis-server` processes (one per test).
//!
//! Run with `cargo test --no-default-features --test core_redis`. Needs `redis-server` on the
//! PATH (apt-get install -y redis-server); the tests fail, never skip, without it.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use perseus_native::core::activity::{make_query, ActivityInput, Bound};
use perseus_native::core::error::Error;
use perseus_native::core::events::NetEvent;
use perseus_native::core::fsm::{Event, State};
use perseus_native::core::ip;

const TTL_MS: i64 = 400;
const DEAD_TTL_MS: i64 = 60_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_ms() -> u64 {
    perseus_native::core::config::now_ms()
}

/// `(event, fromState, toState)` of every entry of a raw stream read.
fn stream_events(
    entries: &[(String, Vec<(String, String)>)],
    instance_id: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    entries
        .iter()
        .filter(|(_, f)| field(f, "instanceId") == Some(instance_id))
        .map(|(_, f)| {
            (
                field(f, "event").unwrap_or("").to_string(),
                field(f, "fromState").map(str::to_string),
                field(f, "toState").map(str::to_string),
            )
        })
        .collect()
}

fn ev(e: &str, from: Option<&str>, to: Option<&str>) -> (String, Option<String>, Option<String>) {
    (e.into(), from.map(Into::into), to.map(Into::into))
}

fn is_parsable_iso(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

// ─── 1. start ────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_registers_with_the_seed_layout() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p1");
    let mut o = opts(&srv.url(), &prefix);
    o.metadata = Some(vec![
        ("region".into(), "eu-west".into()),
        ("tier".into(), "gold".into()),
    ]);
    let (net, cap) = network(o);
    let id = net.instance_id().to_string();
    assert_eq!(net.state(), State::Idle);

    let before = now_ms();
    let info = net.start().await.expect("start");
    assert_eq!(net.state(), State::Running);
    assert_eq!(info.instance_id, id);
    assert_eq!(info.state, State::Running);

    // StateChange events, in order.
    assert_eq!(
        cap.transitions(),
        vec![
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
        ]
    );
    for e in cap.events() {
        if let NetEvent::StateChange(c) = e {
            assert_eq!(c.instance_id, id);
            assert!(is_parsable_iso(&c.at), "at {:?}", c.at);
        }
    }

    // The hash: exactly the seed fields plus meta.<k>.
    let hash = r.hgetall(&format!("{prefix}:instance:{id}"));
    let names: BTreeSet<&str> = hash.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
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
        "meta.region",
        "meta.tier",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected, "hash fields: {hash:?}");
    assert_eq!(hash["instanceId"], id);
    assert_eq!(hash["hostname"], "test-host");
    assert_eq!(hash["exchangeId"], "7");
    assert_eq!(hash["exchangeName"], "coinbase");
    assert_eq!(hash["publicIp"], "unknown");
    assert_eq!(
        hash["privateIp"],
        ip::private_ip().unwrap_or_else(|| "unknown".into())
    );
    assert_eq!(hash["pid"], std::process::id().to_string());
    assert_eq!(hash["version"], "1.2.3");
    assert_eq!(hash["state"], "running");
    assert!(is_parsable_iso(&hash["registeredAt"]), "{hash:?}");
    assert!(is_parsable_iso(&hash["lastStateChange"]), "{hash:?}");
    assert_eq!(hash["meta.region"], "eu-west");
    assert_eq!(hash["meta.tier"], "gold");
    assert_eq!(
        r.pttl(&format!("{prefix}:instance:{id}")),
        -1,
        "a live record has no TTL"
    );

    // The heartbeat key: PX ttl, JSON payload.
    let hb_key = format!("{prefix}:heartbeat:{id}");
    let pttl = r.pttl(&hb_key);
    assert!(pttl > 0 && pttl <= TTL_MS, "heartbeat PTTL {pttl}");
    let payload: serde_json::Value =
        serde_json::from_str(&r.get(&hb_key).expect("heartbeat payload")).expect("JSON payload");
    let last_beat = payload["lastBeat"].as_u64().expect("lastBeat is a number");
    assert!(
        last_beat >= before && last_beat <= now_ms(),
        "lastBeat {last_beat}"
    );
    assert_eq!(payload["exchange"], "coinbase");
    let st = payload["state"].as_str().expect("state is a string");
    assert!(st == "registering" || st == "running", "payload state {st}");
    // The first periodic beat says running.
    assert!(
        eventually(ms(1000), || {
            r.get(&hb_key)
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .is_some_and(|v| v["state"] == "running")
        })
        .await,
        "heartbeat payload never said running"
    );

    // The index.
    let score: Option<f64> = r.q(|c| {
        c.arg("ZSCORE").arg(format!("{prefix}:instances")).arg(&id);
    });
    assert!(score.is_some(), "index zset lacks {id}");

    // The stream: STATE_CHANGE(idle→registering), REGISTERED, STATE_CHANGE(registering→running).
    let entries = r.xrange(&format!("{prefix}:activity"));
    assert_eq!(
        stream_events(&entries, &id),
        vec![
            ev("STATE_CHANGE", Some("idle"), Some("registering")),
            ev("REGISTERED", None, None),
            ev("STATE_CHANGE", Some("registering"), Some("running")),
        ],
        "stream: {entries:?}"
    );
    for (_, f) in &entries {
        assert_eq!(field(f, "exchange"), Some("coinbase"));
        assert_eq!(field(f, "exchangeId"), Some("7"));
        assert_eq!(field(f, "hostname"), Some("test-host"));
        assert!(is_parsable_iso(field(f, "ts").unwrap_or("")), "{f:?}");
        assert_eq!(field(f, "publicIp"), None, "no public IP known: {f:?}");
    }

    // start twice is illegal.
    assert!(matches!(
        net.start().await,
        Err(Error::IllegalTransition {
            from: State::Running,
            event: Event::Register
        })
    ));
    net.close().await.unwrap();
}

// ─── 2. heartbeat ────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_the_key_alive() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p2");
    let (net, _cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let hb_key = format!("{prefix}:heartbeat:{id}");
    tokio::time::sleep(ms(1500)).await;
    assert!(r.exists(&hb_key), "heartbeat key expired while running");
    let pttl = r.pttl(&hb_key);
    assert!(pttl > 0 && pttl <= TTL_MS, "PTTL {pttl}");
    let payload: serde_json::Value = serde_json::from_str(&r.get(&hb_key).unwrap()).unwrap();
    let age = now_ms().saturating_sub(payload["lastBeat"].as_u64().unwrap());
    assert!(age < 300, "last beat {age} ms old");
    assert_eq!(payload["state"], "running");
    // The index score follows the beats.
    let score: f64 = r.q(|c| {
        c.arg("ZSCORE").arg(format!("{prefix}:instances")).arg(&id);
    });
    assert!(
        now_ms() as f64 - score < 300.0,
        "index score {score} is stale"
    );
    assert_eq!(net.state(), State::Running);
    net.close().await.unwrap();
}

// ─── 3. drain ────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deregisters_and_is_idempotent() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p3");

    // drain before start: illegal, state unchanged.
    let (idle, idle_cap) = network(opts(&srv.url(), &prefix));
    match idle.drain(None).await {
        Err(Error::IllegalTransition { from, event }) => {
            assert_eq!((from, event), (State::Idle, Event::Drain))
        }
        other => panic!("drain before start: {other:?}"),
    }
    assert_eq!(idle.state(), State::Idle);
    assert!(idle_cap.transitions().is_empty());

    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    tokio::time::sleep(ms(150)).await;
    net.drain(Some("deploy".into())).await.expect("drain");
    assert_eq!(net.state(), State::Dead);
    assert_eq!(
        cap.transitions(),
        vec![
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
            (State::Running, Event::Drain, State::Draining),
            (State::Draining, Event::Drained, State::Dead),
        ]
    );
    let drain_reason = cap.events().into_iter().find_map(|e| match e {
        NetEvent::StateChange(c) if c.event == Event::Drain => Some(c.reason),
        _ => None,
    });
    assert_eq!(drain_reason, Some(Some("deploy".to_string())));
    assert!(cap.events().iter().any(|e| matches!(e, NetEvent::Released)));

    let hb_key = format!("{prefix}:heartbeat:{id}");
    let inst_key = format!("{prefix}:instance:{id}");
    assert!(!r.exists(&hb_key), "heartbeat survived drain");
    assert_eq!(r.hget(&inst_key, "state").as_deref(), Some("dead"));
    let pttl = r.pttl(&inst_key);
    assert!(pttl > 0 && pttl <= DEAD_TTL_MS, "dead record PTTL {pttl}");

    let entries = r.xrange(&format!("{prefix}:activity"));
    let evs = stream_events(&entries, &id);
    assert_eq!(
        &evs[evs.len().saturating_sub(3)..],
        &[
            ev("STATE_CHANGE", Some("running"), Some("draining")),
            ev("DEREGISTERED", None, None),
            ev("STATE_CHANGE", Some("draining"), Some("dead")),
        ],
        "stream: {evs:?}"
    );
    let dereg = entries
        .iter()
        .find(|(_, f)| field(f, "event") == Some("DEREGISTERED"))
        .unwrap();
    assert_eq!(field(&dereg.1, "reason"), Some("deploy"));

    // No late beat brings the heartbeat back.
    tokio::time::sleep(ms(300)).await;
    assert!(!r.exists(&hb_key), "a heartbeat was written after drain");

    // drain again: resolves, writes nothing.
    let len = r.xlen(&format!("{prefix}:activity"));
    net.drain(None).await.expect("second drain");
    assert_eq!(net.state(), State::Dead);
    assert_eq!(r.xlen(&format!("{prefix}:activity")), len);
    assert_eq!(cap.transitions().len(), 4);

    // Queries keep working on a dead instance.
    let listed = net.list_instances(true).await.unwrap();
    assert!(listed
        .iter()
        .any(|i| i.instance_id == id && i.state == State::Dead && !i.alive));
    net.close().await.unwrap();
    idle.close().await.unwrap();
}

// ─── 4. fail ─────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_kills_at_once() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p4");
    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let hb_key = format!("{prefix}:heartbeat:{id}");
    assert!(r.exists(&hb_key));

    net.fail("disk on fire".into()).await.expect("fail");
    assert_eq!(net.state(), State::Dead);
    assert!(!r.exists(&hb_key), "fail must delete the heartbeat at once");
    let last = cap.events().into_iter().rev().find_map(|e| match e {
        NetEvent::StateChange(c) => Some(c),
        _ => None,
    });
    let last = last.unwrap();
    assert_eq!(
        (last.from, last.event, last.to),
        (State::Running, Event::Error, State::Dead)
    );
    assert_eq!(last.reason.as_deref(), Some("disk on fire"));
    assert!(cap.events().iter().any(|e| matches!(e, NetEvent::Released)));

    let inst_key = format!("{prefix}:instance:{id}");
    assert_eq!(r.hget(&inst_key, "state").as_deref(), Some("dead"));
    let pttl = r.pttl(&inst_key);
    assert!(pttl > 0 && pttl <= DEAD_TTL_MS, "dead record PTTL {pttl}");

    let entries = r.xrange(&format!("{prefix}:activity"));
    let error = entries
        .iter()
        .find(|(_, f)| field(f, "event") == Some("ERROR") && field(f, "instanceId") == Some(&id))
        .expect("an ERROR entry");
    assert_eq!(field(&error.1, "reason"), Some("disk on fire"));
    let sc = entries
        .iter()
        .find(|(_, f)| {
            field(f, "event") == Some("STATE_CHANGE") && field(f, "toState") == Some("dead")
        })
        .expect("a STATE_CHANGE to dead");
    assert_eq!(field(&sc.1, "fromState"), Some("running"));
    assert_eq!(field(&sc.1, "reason"), Some("disk on fire"));
    assert_eq!(field(&sc.1, "lifecycleEvent"), Some("ERROR"));

    match net.fail("again".into()).await {
        Err(Error::IllegalTransition { from, event }) => {
            assert_eq!((from, event), (State::Dead, Event::Error))
        }
        other => panic!("fail on a dead instance: {other:?}"),
    }
    tokio::time::sleep(ms(250)).await;
    assert!(!r.exists(&hb_key), "a heartbeat was written after fail");
    net.close().await.unwrap();
}

// ─── 5. unreachable ──────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_start_quickly() {
    let port = free_port();
    let mut o = opts(&format!("redis://127.0.0.1:{port}"), &uniq("p5"));
    o.connect_timeout_ms = Some(500.0);
    let (net, cap) = network(o);
    let t0 = Instant::now();
    let res = net.start().await;
    let took = t0.elapsed();
    match &res {
        Err(Error::Redis(_)) | Err(Error::Timeout(_)) => {}
        other => panic!("start against nothing: {other:?}"),
    }
    assert!(took < ms(1500), "start took {took:?}");
    assert_eq!(net.state(), State::Dead);
    assert_eq!(
        cap.transitions(),
        vec![
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Error, State::Dead),
        ]
    );
    // A dead instance cannot start again.
    assert!(matches!(
        net.start().await,
        Err(Error::IllegalTransition {
            from: State::Dead,
            ..
        })
    ));
    net.close().await.unwrap();
}

// ─── 6. wrong password ───────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_without_leaking_it() {
    let srv = RedisServer::start_with(&["--requirepass", "server-side-pw-123"]);
    let prefix = uniq("p6");

    for (label, url, password) in [
        ("option", srv.url(), Some("opt-secret-XYZ-987")),
        (
            "url",
            format!("redis://:url-secret-ABC-654@127.0.0.1:{}", srv.port),
            None,
        ),
    ] {
        let secret = password.unwrap_or("url-secret-ABC-654");
        let mut o = opts(&url, &prefix);
        o.password = password.map(str::to_string);
        o.connect_timeout_ms = Some(2000.0);
        let logs = std::sync::Arc::new(Logs::default());
        let (net, cap) = network_with_logs(o, Some(logs.clone()));
        let t0 = Instant::now();
        let err = net.start().await.expect_err("start with a wrong password");
        assert!(t0.elapsed() < ms(2500), "{label}: took {:?}", t0.elapsed());
        assert!(
            matches!(err, Error::Redis(_) | Error::Timeout(_)),
            "{label}: {err:?}"
        );
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains(secret),
            "{label}: error leaks the password: {text}"
        );
        assert_eq!(net.state(), State::Dead);
        let events = format!("{:?}", cap.events());
        assert!(!events.contains(secret), "{label}: events leak: {events}");
        let records = format!("{:?}", logs.0.lock().unwrap());
        assert!(!records.contains(secret), "{label}: logs leak: {records}");
        eprintln!("{label}: wrong password error: {err}");
        net.close().await.unwrap();
    }

    // The right password works (the option is really used).
    let mut o = opts(&srv.url(), &prefix);
    o.password = Some("server-side-pw-123".into());
    let (net, _cap) = network(o);
    net.start().await.expect("start with the right password");
    net.close().await.unwrap();
}

// ─── 7. sweeper ──────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_reports_a_crashed_peer_once() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p7");
    let mk = || {
        let mut o = opts(&srv.url(), &prefix);
        o.sweep_interval_ms = Some(2000.0);
        network(o)
    };
    let (a, a_cap) = mk();
    let (b, _b_cap) = mk();
    let (a_id, b_id) = (a.instance_id().to_string(), b.instance_id().to_string());
    // A tails before anything is written (an empty stream: the tail reads from 0-0).
    a.set_tail(true);
    tokio::time::sleep(ms(200)).await;
    // B starts first, so B holds the sweeper lease: its crash must hand the role to A.
    b.start().await.unwrap();
    assert!(
        a_cap
            .wait_for(ms(2000), |evs| evs.iter().any(
                |e| matches!(e, NetEvent::InstanceJoined(i) if i.instance_id == b_id)
            ))
            .await,
        "A never saw B join"
    );
    a.start().await.unwrap();
    tokio::time::sleep(ms(300)).await;
    let lease_key = format!("{prefix}:sweeper");
    assert_eq!(
        r.get(&lease_key),
        Some(b_id.clone()),
        "B should hold the lease"
    );

    let stream = format!("{prefix}:activity");
    let lost_entries = || -> Vec<(String, Vec<(String, String)>)> {
        r.xrange(&stream)
            .into_iter()
            .filter(|(_, f)| field(f, "event") == Some("HEARTBEAT_LOST"))
            .collect()
    };
    assert!(lost_entries().is_empty());

    let t0 = Instant::now();
    b.abort(); // a crash: no drain, the heartbeat just stops
    let seen = eventually(ms(TTL_MS as u64 + 300), || !lost_entries().is_empty()).await;
    let took = t0.elapsed();
    assert!(seen, "no HEARTBEAT_LOST within ttl+300 ms");
    eprintln!("HEARTBEAT_LOST written {took:?} after the crash");
    let lost = lost_entries();
    assert_eq!(lost.len(), 1, "{lost:?}");
    let f = &lost[0].1;
    assert_eq!(field(f, "instanceId"), Some(b_id.as_str()));
    assert_eq!(field(f, "reporter"), Some(a_id.as_str()));
    assert_eq!(field(f, "fromState"), Some("running"));
    assert_eq!(field(f, "toState"), Some("dead"));
    assert_eq!(field(f, "exchange"), Some("coinbase"));

    let b_key = format!("{prefix}:instance:{b_id}");
    assert_eq!(r.hget(&b_key, "state").as_deref(), Some("dead"));
    let pttl = r.pttl(&b_key);
    assert!(pttl > 0 && pttl <= DEAD_TTL_MS, "lost record PTTL {pttl}");

    // A's tail turns the entry into instanceLost.
    assert!(
        a_cap
            .wait_for(ms(1000), |evs| evs.iter().any(|e| matches!(
                e,
                NetEvent::InstanceLost(i) if i.instance_id == b_id && i.state == State::Dead
            )))
            .await,
        "A never emitted instanceLost for B"
    );

    assert_eq!(
        r.get(&lease_key),
        Some(a_id.clone()),
        "A took the lease over"
    );
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(lost_entries().len(), 1, "duplicate HEARTBEAT_LOST entries");
    assert_eq!(a.state(), State::Running);
    // The sweeper's snapshot knows B is dead.
    let state = a.network_state().await.unwrap().expect("a network state");
    assert_eq!(state.updated_by, a_id);
    assert!(state
        .instances
        .iter()
        .any(|i| i.instance_id == b_id && i.state == State::Dead));
    a.close().await.unwrap();
}

// ─── 8. self-view ────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_dead_rejoins_with_the_same_id() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p8");
    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let inst_key = format!("{prefix}:instance:{id}");

    let _: i64 = r.q(|c| {
        c.arg("HSET").arg(&inst_key).arg("state").arg("dead");
    });
    let rejoined = cap
        .wait_for(ms(2000), |evs| {
            let t: Vec<_> = evs
                .iter()
                .filter_map(|e| match e {
                    NetEvent::StateChange(c) => Some((c.from, c.event, c.to)),
                    _ => None,
                })
                .collect();
            t.len() >= 5
        })
        .await;
    assert!(rejoined, "transitions: {:?}", cap.transitions());
    assert_eq!(
        cap.transitions(),
        vec![
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
            (State::Running, Event::HeartbeatLost, State::Dead),
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
        ]
    );
    for e in cap.events() {
        if let NetEvent::StateChange(c) = e {
            assert_eq!(c.instance_id, id);
        }
    }
    assert_eq!(net.instance_id(), id);
    assert_eq!(net.state(), State::Running);
    assert_eq!(r.hget(&inst_key, "state").as_deref(), Some("running"));
    assert_eq!(r.pttl(&inst_key), -1, "the rejoined record kept a TTL");
    assert!(r.exists(&format!("{prefix}:heartbeat:{id}")));
    let evs = stream_events(&r.xrange(&format!("{prefix}:activity")), &id);
    assert!(
        evs.contains(&ev("STATE_CHANGE", Some("running"), Some("dead"))),
        "{evs:?}"
    );
    assert_eq!(
        evs.iter().filter(|e| e.0 == "REGISTERED").count(),
        2,
        "{evs:?}"
    );
    // Still alive a while later.
    tokio::time::sleep(ms(500)).await;
    assert_eq!(net.state(), State::Running);
    net.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_dead_stays_dead_when_told() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p8s");
    let mut o = opts(&srv.url(), &prefix);
    o.on_heartbeat_lost = Some("stay-dead".into());
    let (net, cap) = network(o);
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let inst_key = format!("{prefix}:instance:{id}");
    let _: i64 = r.q(|c| {
        c.arg("HSET").arg(&inst_key).arg("state").arg("dead");
    });
    assert!(
        cap.wait_for(ms(2000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::StateChange(c) if c.event == Event::HeartbeatLost
        )))
        .await,
        "no HEARTBEAT_LOST transition"
    );
    assert!(
        cap.wait_for(ms(500), |evs| evs
            .iter()
            .any(|e| matches!(e, NetEvent::Released)))
            .await
    );
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(net.state(), State::Dead);
    assert_eq!(
        cap.transitions(),
        vec![
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
            (State::Running, Event::HeartbeatLost, State::Dead),
        ]
    );
    assert!(
        !r.exists(&format!("{prefix}:heartbeat:{id}")),
        "a stay-dead instance still beats"
    );
    assert_eq!(r.hget(&inst_key, "state").as_deref(), Some("dead"));
    net.close().await.unwrap();
}

// ─── 9. Redis restart ────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart() {
    let mut srv = RedisServer::start();
    let prefix = uniq("p9");
    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    let inst_key = format!("{prefix}:instance:{id}");
    tokio::time::sleep(ms(200)).await;
    let mark = cap.len();

    srv.kill();
    tokio::time::sleep(ms(300)).await;
    srv.restart();
    let r = srv.client();
    assert!(!r.exists(&inst_key), "the restarted server kept data");

    let back = eventually(ms(3000), || {
        r.hget(&inst_key, "state").as_deref() == Some("running")
    })
    .await;
    let after: Vec<NetEvent> = cap.events().split_off(mark);
    assert!(back, "not re-registered within 3 s; events: {after:?}");
    let down = after.iter().position(|e| {
        matches!(
            e,
            NetEvent::Connection {
                connected: false,
                ..
            }
        )
    });
    let up = after.iter().rposition(|e| {
        matches!(
            e,
            NetEvent::Connection {
                connected: true,
                ..
            }
        )
    });
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "connection events: {after:?}"
    );
    assert!(eventually(ms(1000), || r.exists(&format!("{prefix}:heartbeat:{id}"))).await);
    let score: Option<f64> = r.q(|c| {
        c.arg("ZSCORE").arg(format!("{prefix}:instances")).arg(&id);
    });
    assert!(score.is_some(), "index entry not restored");
    let hash = r.hgetall(&inst_key);
    assert_eq!(hash.get("hostname").map(String::as_str), Some("test-host"));
    assert_eq!(
        hash.get("exchangeName").map(String::as_str),
        Some("coinbase")
    );
    eprintln!(
        "after restart: transitions {:?}",
        cap.transitions()
            .iter()
            .map(|(f, e, t)| format!("{f}-{e}-{t}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(net.state(), State::Running);
    net.close().await.unwrap();
}

// ─── 10. activity queries and trimming ───────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_queries_tolerate_foreign_entries() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10");
    let stream = format!("{prefix}:activity");

    // Foreign entries first (explicit IDs must be increasing).
    let mut con = r.con();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("1000-1")
        .arg("instanceId")
        .arg("old-peer")
        .arg("event")
        .arg("OLD")
        .arg("exchange")
        .arg("kraken")
        .arg("exchangeId")
        .arg("3")
        .arg("ts")
        .arg("1970-01-01T00:00:01.000Z")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("2000-1")
        .arg("foo")
        .arg("bar")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("3000-1")
        .arg(&[0xffu8, 0xfe][..])
        .arg(&[0x00u8, 0xc3, 0x28][..])
        .arg("event")
        .arg(&[0xc3u8][..])
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("3000-2")
        .arg("exchangeId")
        .arg("not-a-number")
        .arg("fromState")
        .arg("zombie")
        .arg("toState")
        .arg("running")
        .query(&mut con)
        .unwrap();

    let (a, _) = network(opts(&srv.url(), &prefix));
    let (b, _) = network(opts(&srv.url(), &prefix));
    let (a_id, b_id) = (a.instance_id().to_string(), b.instance_id().to_string());
    // Neither is started: logging works in any state.
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(
            a.log_activity(ActivityInput {
                event: "A_EVT".into(),
                reason: Some(format!("reason {i}")),
                fields: vec![
                    ("symbol".into(), "BTC-USD".into()),
                    ("n".into(), i.to_string()),
                ],
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    for _ in 0..2 {
        mine.push(
            a.log_activity(ActivityInput {
                event: "B_EVT".into(),
                from_state: Some(State::Running),
                to_state: Some(State::Draining),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    for _ in 0..2 {
        mine.push(
            b.log_activity(ActivityInput {
                event: "A_EVT".into(),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    assert!(matches!(
        a.log_activity(ActivityInput {
            event: "lower".into(),
            ..Default::default()
        })
        .await,
        Err(Error::InvalidOption(_))
    ));

    let q = |since, until, limit, reverse, inst: Option<&str>, events: Option<Vec<&str>>| {
        make_query(
            since,
            until,
            limit,
            reverse,
            inst.map(str::to_string),
            events.map(|v| v.into_iter().map(str::to_string).collect()),
        )
        .unwrap()
    };
    let ids = |v: &[perseus_native::core::activity::ActivityEntry]| -> Vec<String> {
        v.iter().map(|e| e.id.clone()).collect()
    };

    // Everything, foreign entries included, without error.
    let all = a
        .query_activity(&q(None, None, None, false, None, None))
        .await
        .unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(
        ids(&all[..4]),
        ["1000-1", "2000-1", "3000-1", "3000-2"].map(String::from)
    );
    assert_eq!(ids(&all[4..]), mine);
    assert_eq!(a.activity_length().await.unwrap(), 11);

    let old = &all[0];
    assert_eq!(
        (old.time, old.instance_id.as_str(), old.event.as_str()),
        (1000, "old-peer", "OLD")
    );
    assert_eq!(
        (old.exchange.as_str(), old.exchange_id),
        ("kraken", Some(3))
    );
    assert!(old.fields.is_empty());
    let missing = &all[1];
    assert_eq!(missing.time, 2000);
    assert_eq!(missing.event, "");
    assert_eq!(missing.instance_id, "");
    assert_eq!(missing.exchange_id, None);
    assert_eq!(missing.ts, "");
    assert_eq!(missing.hostname, None);
    assert_eq!(missing.fields, vec![("foo".to_string(), "bar".to_string())]);
    let junk = &all[2];
    assert_eq!(junk.event, "\u{fffd}");
    assert_eq!(junk.fields.len(), 1);
    assert_eq!(junk.fields[0].0, "\u{fffd}\u{fffd}");
    assert_eq!(junk.fields[0].1, "\u{0}\u{fffd}(");
    let odd = &all[3];
    assert_eq!(odd.exchange_id, None);
    assert_eq!(odd.from_state, None);
    assert_eq!(odd.to_state, Some(State::Running));

    let first_mine = &all[4];
    assert_eq!(first_mine.instance_id, a_id);
    assert_eq!(first_mine.event, "A_EVT");
    assert_eq!(first_mine.reason.as_deref(), Some("reason 0"));
    assert_eq!(first_mine.exchange, "coinbase");
    assert_eq!(first_mine.exchange_id, Some(7));
    assert_eq!(first_mine.hostname.as_deref(), Some("test-host"));
    assert!(is_parsable_iso(&first_mine.ts));
    assert_eq!(
        first_mine.fields,
        vec![
            ("symbol".to_string(), "BTC-USD".to_string()),
            ("n".to_string(), "0".to_string())
        ]
    );
    assert_eq!(all[7].from_state, Some(State::Running));
    assert_eq!(all[7].to_state, Some(State::Draining));
    let now = now_ms();
    assert!(all[4].time <= now && all[4].time + 10_000 > now);

    // since / until in ms (inclusive).
    let r1 = a
        .query_activity(&q(
            Some(Bound::Ms(1500.0)),
            Some(Bound::Ms(2500.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r1), ["2000-1"]);
    let r1 = a
        .query_activity(&q(
            Some(Bound::Ms(1000.0)),
            Some(Bound::Ms(3000.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r1), ["1000-1", "2000-1", "3000-1", "3000-2"]);
    // ... and as IDs.
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("1000-1".into())),
            Some(Bound::Id("2000-1".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r2), ["1000-1", "2000-1"]);
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("2000-2".into())),
            Some(Bound::Id("3000-1".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r2), ["3000-1"]);
    let r2 = a
        .query_activity(&q(
            Some(Bound::Id("-".into())),
            Some(Bound::Id("+".into())),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r2.len(), 11);
    // since the first of ours, in ms.
    let r3 = a
        .query_activity(&q(
            Some(Bound::Ms(all[4].time as f64)),
            None,
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r3), mine);

    // limit and reverse.
    let r4 = a
        .query_activity(&q(None, None, Some(2.0), false, None, None))
        .await
        .unwrap();
    assert_eq!(ids(&r4), ["1000-1", "2000-1"]);
    let r5 = a
        .query_activity(&q(None, None, Some(3.0), true, None, None))
        .await
        .unwrap();
    let mut newest: Vec<String> = mine[mine.len() - 3..].to_vec();
    newest.reverse();
    assert_eq!(ids(&r5), newest);
    let r5 = a
        .query_activity(&q(None, Some(Bound::Ms(2000.0)), None, true, None, None))
        .await
        .unwrap();
    assert_eq!(ids(&r5), ["2000-1", "1000-1"]);

    // Filters; limit counts matches.
    let r6 = a
        .query_activity(&q(None, None, None, false, Some(&a_id), None))
        .await
        .unwrap();
    assert_eq!(ids(&r6), mine[..5].to_vec());
    assert!(r6.iter().all(|e| e.instance_id == a_id));
    let r6 = a
        .query_activity(&q(None, None, Some(2.0), true, Some(&a_id), None))
        .await
        .unwrap();
    assert_eq!(ids(&r6), vec![mine[4].clone(), mine[3].clone()]);
    let r7 = a
        .query_activity(&q(None, None, None, false, None, Some(vec!["B_EVT"])))
        .await
        .unwrap();
    assert_eq!(ids(&r7), mine[3..5].to_vec());
    let r7 = a
        .query_activity(&q(
            None,
            None,
            None,
            false,
            None,
            Some(vec!["A_EVT", "OLD"]),
        ))
        .await
        .unwrap();
    assert_eq!(r7.len(), 6);
    let r8 = a
        .query_activity(&q(
            None,
            None,
            Some(1.0),
            false,
            Some(&b_id),
            Some(vec!["A_EVT"]),
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r8), vec![mine[5].clone()]);
    let none = a
        .query_activity(&q(None, None, None, false, Some("nobody"), None))
        .await
        .unwrap();
    assert!(none.is_empty());
    // An empty range and a missing stream are empty, not errors.
    let empty = a
        .query_activity(&q(
            Some(Bound::Ms(4000.0)),
            Some(Bound::Ms(5000.0)),
            None,
            false,
            None,
            None,
        ))
        .await
        .unwrap();
    assert!(empty.is_empty());
    let (other, _) = network(opts(&srv.url(), &uniq("p10-empty")));
    assert!(other
        .query_activity(&q(None, None, None, false, None, None))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(other.activity_length().await.unwrap(), 0);
    a.close().await.unwrap();
    b.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_queries_page_past_ten_thousand() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10p");
    let stream = format!("{prefix}:activity");
    // 12 000 entries; every 1000th is a NEEDLE.
    let mut pipe = redis::pipe();
    for ms_ in 1..=12_000u64 {
        let event = if ms_ % 1000 == 0 { "NEEDLE" } else { "HAY" };
        pipe.cmd("XADD")
            .arg(&stream)
            .arg(format!("{ms_}-1"))
            .arg("instanceId")
            .arg("x")
            .arg("event")
            .arg(event)
            .ignore();
    }
    let _: () = pipe.query(&mut r.con()).unwrap();
    let (a, _) = network(opts(&srv.url(), &prefix));
    let needles = a
        .query_activity(
            &make_query(None, None, None, false, None, Some(vec!["NEEDLE".into()])).unwrap(),
        )
        .await
        .unwrap();
    let got: Vec<u64> = needles.iter().map(|e| e.time).collect();
    assert_eq!(got, (1..=12).map(|k| k * 1000).collect::<Vec<_>>());
    let rev = a
        .query_activity(
            &make_query(
                None,
                None,
                Some(11.0),
                true,
                None,
                Some(vec!["NEEDLE".into()]),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let got: Vec<u64> = rev.iter().map(|e| e.time).collect();
    assert_eq!(got, (2..=12).rev().map(|k| k * 1000).collect::<Vec<_>>());
    let unfiltered = a
        .query_activity(&make_query(None, None, Some(10_500.0), false, None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(unfiltered.len(), 10_500);
    assert_eq!(unfiltered.last().unwrap().time, 10_500);
    let ids: BTreeSet<&str> = unfiltered.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 10_500, "a page boundary repeated an entry");
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_removes_only_old_entries() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p10t");
    let stream = format!("{prefix}:activity");
    let mut pipe = redis::pipe();
    for ms_ in 1..=2000u64 {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg(format!("{ms_}-1"))
            .arg("instanceId")
            .arg("ancient")
            .arg("event")
            .arg("OLD")
            .ignore();
    }
    let _: () = pipe.query(&mut r.con()).unwrap();
    let (a, _) = network(opts(&srv.url(), &prefix));
    let mut recent = Vec::new();
    for _ in 0..5 {
        recent.push(
            a.log_activity(ActivityInput {
                event: "RECENT".into(),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let before = r.xlen(&stream);
    assert_eq!(before, 2005);
    let removed = a.trim_activity(Some(3_600_000)).await.expect("trim");
    let after = r.xlen(&stream);
    eprintln!("trim removed {removed} of {before} entries; {after} left");
    assert!(removed > 0, "nothing trimmed");
    assert!(after < before, "XLEN did not drop");
    assert_eq!(after, before - removed, "count is not what Redis removed");
    let left: Vec<String> = r.xrange(&stream).into_iter().map(|(id, _)| id).collect();
    for id in &recent {
        assert!(left.contains(id), "recent entry {id} was trimmed");
    }
    // Trimming again with a huge retention removes nothing.
    assert_eq!(
        a.trim_activity(Some(10 * 365 * 86_400_000)).await.unwrap(),
        0
    );
    // activityRetentionMs 0 turns the default trim off.
    let mut o = opts(&srv.url(), &prefix);
    o.activity_retention_ms = Some(0.0);
    let (off, _) = network(o);
    assert_eq!(off.trim_activity(None).await.unwrap(), 0);
    assert_eq!(r.xlen(&stream), after);
    a.close().await.unwrap();
    off.close().await.unwrap();
}

// ─── 11. tail ────────────────────────────────────────────────────────────────────

fn activity_with<'a>(evs: &'a [NetEvent], event: &str) -> Vec<&'a NetEvent> {
    evs.iter()
        .filter(|e| matches!(e, NetEvent::Activity(a) if a.event == event))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_emits_activity_and_peer_events() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p11");
    let stream = format!("{prefix}:activity");
    let (a, cap) = network(opts(&srv.url(), &prefix));
    assert!(!a.is_tailing());
    a.set_tail(true);
    assert!(a.is_tailing());

    // The tail starts after the newest entry it finds: warm up until it hears us.
    let mut warm = false;
    for _ in 0..30 {
        let _: String = r.q(|c| {
            c.arg("XADD")
                .arg(&stream)
                .arg("*")
                .arg("event")
                .arg("WARMUP");
        });
        if cap
            .wait_for(ms(100), |evs| !activity_with(evs, "WARMUP").is_empty())
            .await
        {
            warm = true;
            break;
        }
    }
    assert!(warm, "the tail never delivered anything");

    let t0 = Instant::now();
    let id: String = r.q(|c| {
        c.arg("XADD")
            .arg(&stream)
            .arg("*")
            .arg("instanceId")
            .arg("plain-client")
            .arg("event")
            .arg("PING_TEST")
            .arg("extra")
            .arg("1");
    });
    assert!(
        cap.wait_for(ms(500), |evs| !activity_with(evs, "PING_TEST").is_empty())
            .await,
        "no activity event within 500 ms"
    );
    eprintln!("tail latency {:?}", t0.elapsed());
    let evs = cap.events();
    let got = activity_with(&evs, "PING_TEST");
    assert_eq!(got.len(), 1);
    let NetEvent::Activity(entry) = got[0] else {
        unreachable!()
    };
    assert_eq!(entry.id, id);
    assert_eq!(entry.instance_id, "plain-client");
    assert_eq!(entry.fields, vec![("extra".to_string(), "1".to_string())]);

    // A peer registering yields instanceJoined.
    let (b, _) = network(opts(&srv.url(), &prefix));
    let b_id = b.instance_id().to_string();
    b.start().await.unwrap();
    assert!(
        cap.wait_for(ms(1000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::InstanceJoined(i) if i.instance_id == b_id
                // The REGISTERED entry is written before registering→running, so the
                // record read back may still say registering.
                && matches!(i.state, State::Registering | State::Running)
                && i.exchange_name == "coinbase"
        )))
        .await,
        "no instanceJoined for B: {:#?}",
        cap.events()
    );
    // Draining B yields instanceLeft.
    b.drain(None).await.unwrap();
    assert!(
        cap.wait_for(ms(1000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::InstanceLeft(i) if i.instance_id == b_id
        )))
        .await,
        "no instanceLeft for B"
    );
    // Our own entries come through too.
    a.log_activity(ActivityInput {
        event: "OWN".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        cap.wait_for(ms(500), |evs| !activity_with(evs, "OWN").is_empty())
            .await
    );

    a.set_tail(false);
    assert!(!a.is_tailing());
    let _: String = r.q(|c| {
        c.arg("XADD")
            .arg(&stream)
            .arg("*")
            .arg("event")
            .arg("AFTER_OFF");
    });
    tokio::time::sleep(ms(500)).await;
    assert!(activity_with(&cap.events(), "AFTER_OFF").is_empty());
    // And on again: it resumes from the newest entry.
    a.set_tail(true);
    assert!(a.is_tailing());
    a.close().await.unwrap();
    assert!(!a.is_tailing(), "close must stop the tail");
    b.close().await.unwrap();
}

// ─── 12. listing ─────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_instances_by_index_and_scan() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("p12");
    let mut nets = Vec::new();
    for _ in 0..3 {
        let (n, _) = network(opts(&srv.url(), &prefix));
        n.start().await.unwrap();
        nets.push(n);
    }
    let all_ids: BTreeSet<String> = nets.iter().map(|n| n.instance_id().to_string()).collect();
    let mut so = opts(&srv.url(), &prefix);
    so.discovery = Some("scan".into());
    let (scan, _) = network(so);

    // Garbage others wrote: a foreign hash, a half record, a wrong-type key, an index entry.
    let _: i64 = r.q(|c| {
        c.arg("HSET")
            .arg(format!("{prefix}:instance:junk"))
            .arg("foo")
            .arg("bar")
            .arg("state")
            .arg("zombie");
    });
    let _: i64 = r.q(|c| {
        c.arg("HSET")
            .arg(format!("{prefix}:instance:half"))
            .arg("state")
            .arg("running");
    });
    let _: () = r.q(|c| {
        c.arg("SET")
            .arg(format!("{prefix}:instance:stringkey"))
            .arg("x");
    });
    let _: i64 = r.q(|c| {
        c.arg("ZADD")
            .arg(format!("{prefix}:instances"))
            .arg(1)
            .arg("junk")
            .arg(1)
            .arg("half")
            .arg(1)
            .arg("stringkey")
            .arg(1)
            .arg("ghost");
    });

    let ids_of = |v: &[perseus_native::core::registry::InstanceInfo]| -> BTreeSet<String> {
        v.iter().map(|i| i.instance_id.clone()).collect()
    };
    let by_index = nets[0].list_instances(false).await.expect("index listing");
    assert_eq!(ids_of(&by_index), all_ids);
    let by_scan = scan.list_instances(false).await.expect("scan listing");
    assert_eq!(ids_of(&by_scan), all_ids);
    for i in by_index.iter().chain(by_scan.iter()) {
        assert_eq!(i.state, State::Running);
        assert!(i.alive);
        assert!(i.last_heartbeat.is_some());
        assert_eq!(i.exchange_id, 7);
        assert_eq!(i.hostname, "test-host");
        assert_eq!(i.public_ip, None);
    }
    assert_eq!(nets[0].get_instance("junk").await.unwrap(), None);
    assert_eq!(nets[0].get_instance("stringkey").await.unwrap(), None);
    assert_eq!(nets[0].get_instance("nobody").await.unwrap(), None);
    let one = nets[0]
        .get_instance(nets[1].instance_id())
        .await
        .unwrap()
        .expect("get_instance of a live peer");
    assert_eq!(one.instance_id, nets[1].instance_id());

    // A drained one is listed only with includeDead.
    let drained = nets[2].instance_id().to_string();
    nets[2].drain(None).await.unwrap();
    for lister in [&nets[0], &scan] {
        let live = lister.list_instances(false).await.unwrap();
        assert!(!ids_of(&live).contains(&drained));
        assert_eq!(live.len(), 2);
        let with_dead = lister.list_instances(true).await.unwrap();
        assert_eq!(ids_of(&with_dead), all_ids);
        let d = with_dead.iter().find(|i| i.instance_id == drained).unwrap();
        assert_eq!(d.state, State::Dead);
        assert!(!d.alive);
    }
    // The sweeper keeps running over the garbage without failing.
    tokio::time::sleep(ms(500)).await;
    for n in &nets[..2] {
        assert_eq!(n.state(), State::Running);
    }
    let _: HashMap<String, String> = r.hgetall(&format!("{prefix}:instance:junk"));
    for n in &nets {
        n.close().await.unwrap();
    }
    scan.close().await.unwrap();
}

// ─── close ───────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_then_rejects_everything() {
    let srv = RedisServer::start();
    let r = srv.client();
    let prefix = uniq("pc");
    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    net.set_tail(true);
    net.close().await.expect("close");
    assert!(net.is_closed());
    assert!(!net.is_tailing());
    assert_eq!(net.state(), State::Dead);
    assert_eq!(
        cap.transitions()[2..],
        [
            (State::Running, Event::Drain, State::Draining),
            (State::Draining, Event::Drained, State::Dead),
        ]
    );
    assert!(!r.exists(&format!("{prefix}:heartbeat:{id}")));
    assert_eq!(
        r.hget(&format!("{prefix}:instance:{id}"), "state")
            .as_deref(),
        Some("dead")
    );
    let evs = stream_events(&r.xrange(&format!("{prefix}:activity")), &id);
    assert!(evs.contains(&ev("DEREGISTERED", None, None)), "{evs:?}");
    // The lease is given back at once.
    assert!(!r.exists(&format!("{prefix}:sweeper")));

    net.close().await.expect("second close");
    assert!(matches!(net.start().await, Err(Error::Closed)));
    assert!(matches!(net.drain(None).await, Err(Error::Closed)));
    assert!(matches!(net.fail("x".into()).await, Err(Error::Closed)));
    assert!(matches!(
        net.log_activity(ActivityInput {
            event: "X".into(),
            ..Default::default()
        })
        .await,
        Err(Error::Closed)
    ));
    assert!(matches!(net.list_instances(true).await, Err(Error::Closed)));
    assert!(matches!(
        net.query_activity(&make_query(None, None, None, false, None, None).unwrap())
            .await,
        Err(Error::Closed)
    ));
    assert!(matches!(net.trim_activity(None).await, Err(Error::Closed)));
    assert!(matches!(
        net.trim_activity(Some(1000)).await,
        Err(Error::Closed)
    ));
    net.set_tail(true);
    assert!(!net.is_tailing(), "a closed network must not tail");
    // A network closed before it ever started never touches Redis.
    let (idle, _) = network(opts(&srv.url(), &prefix));
    idle.close().await.unwrap();
    assert_eq!(idle.state(), State::Idle);
    assert!(matches!(idle.start().await, Err(Error::Closed)));
}

// ─── 9b. a long outage ───────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outage_goes_dead_then_rejoins() {
    let mut srv = RedisServer::start();
    let prefix = uniq("p9l");
    let (net, cap) = network(opts(&srv.url(), &prefix));
    let id = net.instance_id().to_string();
    net.start().await.unwrap();
    tokio::time::sleep(ms(200)).await;

    srv.kill();
    // Longer than the heartbeat TTL: the instance must consider itself lost.
    assert!(
        cap.wait_for(ms(2000), |evs| evs.iter().any(|e| matches!(
            e,
            NetEvent::StateChange(c) if c.event == Event::HeartbeatLost
        )))
        .await,
        "no HEARTBEAT_LOST while Redis was down; transitions {:?}",
        cap.transitions()
    );
    assert_eq!(net.state(), State::Dead);
    srv.restart();
    let r = srv.client();
    let inst_key = format!("{prefix}:instance:{id}");
    let back = eventually(ms(4000), || {
        r.hget(&inst_key, "state").as_deref() == Some("running")
    })
    .await;
    assert!(back, "never rejoined; transitions {:?}", cap.transitions());
    assert_eq!(net.state(), State::Running);
    assert_eq!(
        cap.transitions()[2..],
        [
            (State::Running, Event::HeartbeatLost, State::Dead),
            (State::Idle, Event::Register, State::Registering),
            (State::Registering, Event::Registered, State::Running),
        ]
    );
    assert_eq!(r.pttl(&inst_key), -1);
    assert!(eventually(ms(1000), || r.exists(&format!("{prefix}:heartbeat:{id}"))).await);
    net.close().await.unwrap();
}

/// The sweeper's compare-and-set is idempotent per call: a cluster client that re-sends it
/// after a lost reply gets the same "won" answer (so the one HEARTBEAT_LOST entry is still
/// written), while any other sweep loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_dead_is_idempotent_per_call() {
    use perseus_native::core::config::{ConnectionConfig, Target};
    use perseus_native::core::store::Store;
    use perseus_native::core::sweeper::mark_dead;

    let server = RedisServer::start();
    let plain = server.client();
    let key = "perseus:instance:x";
    let _: () = plain.q(|c| {
        c.arg("HSET").arg(key).arg("state").arg("running");
    });
    let cfg = ConnectionConfig {
        target: Target::Standalone(server.url()),
        username: None,
        password: None,
        tls_ca_cert: None,
        tls_insecure: false,
        connect_timeout: ms(2000),
        command_timeout: ms(2000),
        credentials: None,
        client_name: None,
    };
    let store = Store::connect(&cfg, None).await.expect("connects");
    let first = mark_dead(&store, key, "t1", "60000", "sweeper-a|t1")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("running"));
    let resent = mark_dead(&store, key, "t1", "60000", "sweeper-a|t1")
        .await
        .unwrap();
    assert_eq!(
        resent.as_deref(),
        Some("running"),
        "a re-sent call answers the same"
    );
    let other = mark_dead(&store, key, "t2", "60000", "sweeper-b|t2")
        .await
        .unwrap();
    assert_eq!(other, None, "another sweep loses");
    assert_eq!(plain.hget(key, "state").as_deref(), Some("dead"));
    assert!(plain.pttl(key) > 0 && plain.pttl(key) <= 60_000);
}

/// The sweeper re-reads a record when its state, lastStateChange or publicIp changes, and only
/// then: a change written by someone else reaches `network:state` within a few sweeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_notice_record_changes() {
    let server = RedisServer::start();
    let plain = server.client();
    let prefix = uniq("p");
    let (a, _cap) = network(opts(&server.url(), &prefix));
    a.start().await.unwrap();
    let key = format!("{prefix}:instance:{}", a.instance_id());
    let snapshot_ip = || async {
        let state = a.network_state().await.unwrap()?;
        let me = state
            .instances
            .into_iter()
            .find(|i| i.instance_id == a.instance_id())?;
        me.public_ip
    };
    tokio::time::sleep(ms(300)).await;
    assert_eq!(snapshot_ip().await, None);
    let _: () = plain.q(|c| {
        c.arg("HSET").arg(&key).arg("publicIp").arg("203.0.113.9");
    });
    let deadline = Instant::now() + ms(3000);
    while snapshot_ip().await.as_deref() != Some("203.0.113.9") {
        assert!(
            Instant::now() < deadline,
            "network:state never showed the new public IP"
        );
        tokio::time::sleep(ms(50)).await;
    }
    a.close().await.unwrap();
}
