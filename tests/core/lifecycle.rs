//! Lifecycle: start, heartbeat, drain, fail, close, self-loss and rejoin, outages.

use super::common::*;

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
