//! The sweeper: lost peers, the index, the compare-and-set, the record cache.

use super::common::*;

/// Sweeps this network has made as the lease holder (its `perseus_sweeps_total`): what a test
/// waits on instead of sleeping "long enough for a sweep or two".
fn sweeps(net: &Network) -> u64 {
    let text = net.metrics_text().expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("perseus_sweeps_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Whether some connection of the server is blocked in XREAD (a tail is listening).
fn tail_blocked(r: &Plain) -> bool {
    let list: String = r.q(|c| {
        c.arg("CLIENT").arg("LIST");
    });
    list.lines()
        .any(|l| l.contains("cmd=xread") && l.contains("flags=b"))
}

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
    assert!(
        eventually(ms(3000), || tail_blocked(&r)).await,
        "A's tail never blocked in XREAD"
    );
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
    // Two more sweeps by A, the holder now, write no second entry for the same lapse.
    let swept = sweeps(&a);
    assert!(
        eventually(ms(3 * 2000 + 2000), || sweeps(&a) >= swept + 2).await,
        "A did not sweep twice more"
    );
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
    // The sweeper keeps running over the garbage without failing: two more sweeps (by whoever
    // holds the lease) and both live members are still running.
    let total = |nets: &[Network]| nets.iter().map(sweeps).sum::<u64>();
    let before = total(&nets[..2]);
    assert!(
        eventually(ms(5000), || total(&nets[..2]) >= before + 2).await,
        "no sweeps over the garbage"
    );
    for n in &nets[..2] {
        assert_eq!(n.state(), State::Running);
    }
    let _: HashMap<String, String> = r.hgetall(&format!("{prefix}:instance:junk"));
    for n in &nets {
        n.close().await.unwrap();
    }
    scan.close().await.unwrap();
}

/// A plain store on `server` (no credentials), to drive the registry's scripts directly.
async fn store_on(server: &RedisServer) -> perseus_native::core::store::Store {
    use perseus_native::core::config::{ConnectionConfig, Target};
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
    perseus_native::core::store::Store::connect(&cfg, None)
        .await
        .expect("connects")
}

/// The sweeper's compare-and-set is idempotent per call: a cluster client that re-sends it
/// after a lost reply gets the same "won" answer (so the one HEARTBEAT_LOST entry is still
/// written), while any other sweep loses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_dead_is_idempotent_per_call() {
    use perseus_native::core::registry::mark_dead;

    let server = RedisServer::start();
    let plain = server.client();
    let key = "perseus:instance:x";
    let _: () = plain.q(|c| {
        c.arg("HSET").arg(key).arg("state").arg("running");
    });
    let store = store_on(&server).await;
    let first = mark_dead(&store, key, "t1", "60000", "sweeper-a|t1", "")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("running"));
    let resent = mark_dead(&store, key, "t1", "60000", "sweeper-a|t1", "")
        .await
        .unwrap();
    assert_eq!(
        resent.as_deref(),
        Some("running"),
        "a re-sent call answers the same"
    );
    let other = mark_dead(&store, key, "t2", "60000", "sweeper-b|t2", "")
        .await
        .unwrap();
    assert_eq!(other, None, "another sweep loses");
    assert_eq!(plain.hget(key, "state").as_deref(), Some("dead"));
    assert!(plain.pttl(key) > 0 && plain.pttl(key) <= 60_000);
}

/// F24: a sweeper whose view of a record predates the instance's rejoin must not flip the new
/// life dead (it would name the old lapse, or give the new one a second name). The mark-dead
/// compare-and-set flips only the registration the caller judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_dead_flips_only_the_registration_it_judged() {
    use perseus_native::core::registry::mark_dead;

    let server = RedisServer::start();
    let plain = server.client();
    let key = "perseus:instance:y";
    let _: () = plain.q(|c| {
        c.arg("HSET")
            .arg(key)
            .arg("state")
            .arg("registering")
            .arg("registeredAt")
            .arg("2026-12-03T10:00:02.000Z");
    });
    let store = store_on(&server).await;
    let stale = mark_dead(
        &store,
        key,
        "t1",
        "60000",
        "y|r2026-12-03T10:00:01.000Z",
        "2026-12-03T10:00:01.000Z",
    )
    .await
    .unwrap();
    assert_eq!(
        stale, None,
        "a view of the previous life flipped the new one"
    );
    assert_eq!(plain.hget(key, "state").as_deref(), Some("registering"));
    assert_eq!(plain.hget(key, "reportToken"), None);
    let current = mark_dead(
        &store,
        key,
        "t2",
        "60000",
        "y|r2026-12-03T10:00:02.000Z",
        "2026-12-03T10:00:02.000Z",
    )
    .await
    .unwrap();
    assert_eq!(current.as_deref(), Some("registering"));
    assert_eq!(
        plain.hget(key, "reportToken").as_deref(),
        Some("y|r2026-12-03T10:00:02.000Z")
    );
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
    // The first snapshot that lists this instance says no public IP (detection is off).
    let deadline = Instant::now() + ms(3000);
    loop {
        let listed = match a.network_state().await.unwrap() {
            Some(state) => state
                .instances
                .into_iter()
                .find(|i| i.instance_id == a.instance_id()),
            None => None,
        };
        if let Some(me) = listed {
            assert_eq!(me.public_ip, None);
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot listed the instance");
        tokio::time::sleep(ms(20)).await;
    }
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
