//! Reporter stopped mid-report: a sweeper paused by the test-only fault point between its
//! compare-and-set (record → dead) and its HEARTBEAT_LOST entry is drained, or SIGKILLed;
//! another sweeper writes exactly one entry, from the record's report outbox. Each runs on a
//! standalone server and on the binary's shared 6-node cluster.
//! (Built only with the `fault-points` feature; `scripts/test.sh` enables it.)

use std::process::{Command, Stdio};

use perseus_native::core::faults;

use super::common::*;

/// HEARTBEAT_LOST entries of `id` in the raw stream, as field lists.
fn lost_entries(r: &Plain, prefix: &str, id: &str) -> Vec<Vec<(String, String)>> {
    r.xrange(&format!("{prefix}:activity"))
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| {
            field(f, "event") == Some("HEARTBEAT_LOST") && field(f, "instanceId") == Some(id)
        })
        .collect()
}

/// The peer is marked dead by the paused sweeper, with no entry; after `stop_sweeper` another
/// sweeper writes exactly one, carrying the record's token, and never a second.
async fn expect_one_report_after(
    r: &Plain,
    prefix: &str,
    peer: &str,
    stop_sweeper: impl std::future::Future<Output = ()>,
) {
    let record = format!("{prefix}:instance:{peer}");
    assert!(
        eventually(ms(5000), || r.hget(&record, "state").as_deref()
            == Some("dead"))
        .await,
        "the peer was never marked dead"
    );
    // Briefly: the paused sweeper's lease lapses after one heartbeat TTL (400 ms), and then
    // another sweeper may settle the report on its own.
    tokio::time::sleep(ms(50)).await;
    assert!(
        lost_entries(r, prefix, peer).is_empty(),
        "the paused sweeper wrote no entry"
    );
    let token = r.hget(&record, "reportToken").unwrap_or_default();
    assert!(!token.is_empty(), "the dead record owes its report");
    stop_sweeper.await;
    assert!(
        eventually(ms(5000), || !lost_entries(r, prefix, peer).is_empty()).await,
        "no sweeper settled the owed HEARTBEAT_LOST"
    );
    tokio::time::sleep(ms(3000)).await;
    let entries = lost_entries(r, prefix, peer);
    assert_eq!(entries.len(), 1, "exactly one HEARTBEAT_LOST: {entries:?}");
    assert_eq!(field(&entries[0], "reportToken"), Some(token.as_str()));
    assert_eq!(r.hget(&record, "reportToken").as_deref(), Some(""));
}

/// The sweeper `a` (this process) pauses after its mark-dead of a crashed peer and is drained;
/// the second sweeper `b` writes the one owed entry.
async fn drained_mid_report(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fp");
    let (a, _) = network(backend.opts(&prefix));
    let a_id = a.instance_id().to_string();
    faults::arm_pause_after_mark_dead(&a_id);
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(3000), || r.get(&lease).as_deref() == Some(a_id.as_str())).await,
        "{t:?}: the armed instance never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort(); // a crash: its heartbeat expires
    let drained = async {
        assert!(
            eventually(ms(3000), || faults::paused_after_mark_dead(&a_id)).await,
            "{t:?}: the fault point was reached"
        );
        let t0 = Instant::now();
        a.drain(None).await.unwrap();
        // Bounded by commandTimeoutMs (1 s here), plus the drain's own writes.
        assert!(
            t0.elapsed() < ms(5000),
            "{t:?}: drain waited {:?}",
            t0.elapsed()
        );
    };
    expect_one_report_after(&r, &prefix, &peer_id, drained).await;
    b.close().await.unwrap();
    a.close().await.unwrap();
}

/// The sweeper is a child process paused after its mark-dead and SIGKILLed there; the second
/// sweeper `b` writes the one owed entry.
async fn killed_mid_report(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fk");
    let sweeper_id = uniq("child");
    let child = Command::new(env!("CARGO_BIN_EXE_fault-member"))
        .args([backend.child_arg(), prefix.clone(), sweeper_id.clone()])
        .env(faults::ENV_PAUSE_AFTER_MARK_DEAD, &sweeper_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the fault-member child");
    // Killed even when an assertion below fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill(); // SIGKILL
            let _ = self.0.wait();
        }
    }
    let child = KillOnDrop(child);
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(5000), || r.get(&lease).as_deref()
            == Some(sweeper_id.as_str()))
        .await,
        "{t:?}: the child never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort();
    let killed = async move { drop(child) };
    expect_one_report_after(&r, &prefix, &peer_id, killed).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_mid_report_another_sweeper_reports_once_standalone() {
    drained_mid_report(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_mid_report_another_sweeper_reports_once_cluster() {
    drained_mid_report(Topology::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_report_another_sweeper_reports_once_standalone() {
    killed_mid_report(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_report_another_sweeper_reports_once_cluster() {
    killed_mid_report(Topology::Cluster).await;
}

/// The sweeper `a` holds between its compare-and-set and its entry (a paused reporter) while
/// the second sweeper `b` settles the owed report; then `a` resumes: still exactly one entry,
/// and still one 3 s later.
async fn paused_then_resumed(t: Topology) {
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("fr");
    let (a, _) = network(backend.opts(&prefix));
    let a_id = a.instance_id().to_string();
    faults::arm_hold(faults::AFTER_MARK_DEAD, &a_id);
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(3000), || r.get(&lease).as_deref() == Some(a_id.as_str())).await,
        "{t:?}: the armed instance never took the sweeper lease"
    );
    let (b, _) = network(backend.opts(&prefix));
    b.start().await.unwrap();
    let (peer, _) = network(backend.opts(&prefix));
    peer.start().await.unwrap();
    let peer_id = peer.instance_id().to_string();
    peer.abort(); // a crash: its heartbeat expires
    assert!(
        eventually(ms(5000), || faults::paused_after_mark_dead(&a_id)).await,
        "{t:?}: the fault point was reached"
    );
    assert!(
        eventually(ms(8000), || !lost_entries(&r, &prefix, &peer_id).is_empty()).await,
        "{t:?}: the second sweeper never settled the owed HEARTBEAT_LOST"
    );
    faults::release(faults::AFTER_MARK_DEAD, &a_id);
    tokio::time::sleep(ms(3000)).await;
    let entries = lost_entries(&r, &prefix, &peer_id);
    assert_eq!(
        entries.len(),
        1,
        "{t:?}: exactly one HEARTBEAT_LOST after the paused reporter resumed: {entries:?}"
    );
    b.close().await.unwrap();
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_reporter_resumes_after_another_settled_one_entry_standalone() {
    paused_then_resumed(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_reporter_resumes_after_another_settled_one_entry_cluster() {
    paused_then_resumed(Topology::Cluster).await;
}

/// `(master port, first replica port)` serving `key`'s slot, as the node at `url` sees it.
fn slot_owner(url: &str, key: &str) -> (u16, Option<u16>) {
    let p = Plain::new(url);
    let slot: i64 = p.q(|c| {
        c.arg("CLUSTER").arg("KEYSLOT").arg(key);
    });
    let slots: redis::Value = p.q(|c| {
        c.arg("CLUSTER").arg("SLOTS");
    });
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let port_of = |v: &redis::Value| match v {
        redis::Value::Array(n) => match n.get(1) {
            Some(redis::Value::Int(p)) => *p as u16,
            other => panic!("node port: {other:?}"),
        },
        other => panic!("node: {other:?}"),
    };
    for r in ranges {
        let redis::Value::Array(r) = r else { continue };
        let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) = (r.first(), r.get(1))
        else {
            continue;
        };
        if *start <= slot && slot <= *end {
            return (port_of(&r[2]), r.get(3).map(port_of));
        }
    }
    panic!("slot {slot} of {key} is not served");
}

fn node_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A field of `INFO <section>` on the node at `port`.
fn info_field(port: u16, section: &str, name: &str) -> Option<String> {
    let text: String = Plain::new(&node_url(port)).q(|c| {
        c.arg("INFO").arg(section);
    });
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{name}:"))
            .map(|v| v.trim().to_string())
    })
}

/// Cluster: the stream's master is SIGKILLed right after the report's append returned, before
/// its replica had the entry (the replica's link is cut first: it authenticates to its master
/// with wrong credentials, so it cannot resynchronise). After the replica is promoted, the
/// entry exists exactly once: a report counts as written only once a replica holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_master_killed_after_the_report_append_one_entry_after_failover_cluster() {
    let cluster = Cluster::private();
    let seed = cluster.urls[0].clone();
    // A fresh cluster's nodes learn who replicates whom by gossip: wait until every slot
    // range lists a replica.
    let all_replicated = || {
        let slots: redis::Value = Plain::new(&seed).q(|c| {
            c.arg("CLUSTER").arg("SLOTS");
        });
        matches!(&slots, redis::Value::Array(rs) if rs.iter().all(|r| matches!(r, redis::Value::Array(r) if r.len() >= 4)))
    };
    assert!(
        eventually(ms(15_000), all_replicated).await,
        "the cluster's replicas never showed in CLUSTER SLOTS"
    );
    // A prefix whose stream and peer record live on different masters (so the record's token
    // is not lost with the stream's master).
    let (prefix, peer_id, master, replica) = (0..64)
        .find_map(|_| {
            let prefix = uniq("fo");
            let peer_id = uniq("peer");
            let (m, r) = slot_owner(&seed, &format!("{prefix}:activity"));
            let (rm, _) = slot_owner(&seed, &format!("{prefix}:instance:{peer_id}"));
            (rm != m).then_some((prefix, peer_id, m, r))
        })
        .expect("a prefix whose stream and record are on different masters");
    let replica = replica.unwrap_or_else(|| {
        let slots: redis::Value = Plain::new(&seed).q(|c| {
            c.arg("CLUSTER").arg("SLOTS");
        });
        panic!("the stream's master {master} has no replica: {slots:?}")
    });
    let opts = |id: Option<String>| {
        let mut o = opts(&seed, &prefix);
        o.redis_url = None;
        o.cluster_nodes = Some(cluster.urls.clone());
        // Survive the failover (~2-3 s) without losing the sweepers' own heartbeats.
        o.heartbeat_ttl_ms = Some(4000.0);
        o.heartbeat_interval_ms = Some(200.0);
        o.command_timeout_ms = Some(1000.0);
        if let Some(id) = id {
            o.instance_id = Some(id);
        }
        o
    };
    let r = Plain::cluster(&cluster.urls);
    let (a, _) = network(opts(None));
    let a_id = a.instance_id().to_string();
    faults::arm_hold(faults::AFTER_REPORT_APPEND, &a_id);
    a.start().await.unwrap();
    let lease = format!("{prefix}:sweeper");
    assert!(
        eventually(ms(5000), || r.get(&lease).as_deref() == Some(a_id.as_str())).await,
        "the armed instance never took the sweeper lease"
    );
    let (b, _) = network(opts(None));
    b.start().await.unwrap();
    let (peer, _) = network(opts(Some(peer_id.clone())));
    peer.start().await.unwrap();
    // Cut the replica's link: it can no longer authenticate to its master.
    let rep = Plain::new(&node_url(replica));
    for (k, v) in [("masteruser", "perseus-nobody"), ("masterauth", "wrong")] {
        let _: () = rep.q(|c| {
            c.arg("CONFIG").arg("SET").arg(k).arg(v);
        });
    }
    let _: i64 = rep.q(|c| {
        c.arg("CLIENT").arg("KILL").arg("TYPE").arg("master");
    });
    assert!(
        eventually(ms(5000), || info_field(
            replica,
            "replication",
            "master_link_status"
        )
        .as_deref()
            == Some("down"))
        .await,
        "the replica's link never went down"
    );
    peer.abort(); // a crash: its heartbeat expires
    assert!(
        eventually(ms(10_000), || faults::reached(
            faults::AFTER_REPORT_APPEND,
            &a_id
        ))
        .await,
        "the report's append never returned"
    );
    assert_eq!(
        lost_entries(&r, &prefix, &peer_id).len(),
        1,
        "the entry is on the master"
    );
    let pid = info_field(master, "server", "process_id").expect("the master's pid");
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success(), "SIGKILL of the stream's master");
    faults::release(faults::AFTER_REPORT_APPEND, &a_id);
    assert!(
        eventually(ms(20_000), || info_field(replica, "replication", "role")
            .as_deref()
            == Some("master"))
        .await,
        "the replica was never promoted"
    );
    // Read through the live nodes only; reads may fail while the cluster settles: they count
    // as "not yet".
    let live: Vec<String> = cluster
        .urls
        .iter()
        .filter(|u| **u != node_url(master))
        .cloned()
        .collect();
    let r = Plain::cluster(&live);
    let count = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lost_entries(&r, &prefix, &peer_id).len()
        }))
        .unwrap_or(0)
    };
    assert!(
        eventually(ms(10_000), || std::panic::catch_unwind(
            std::panic::AssertUnwindSafe(|| r.xlen(&format!("{prefix}:activity")) > 0)
        )
        .unwrap_or(false))
        .await,
        "the stream cannot be read after the failover"
    );
    let found = eventually(ms(30_000), || count() > 0).await;
    assert!(
        found,
        "no HEARTBEAT_LOST after the failover: the report was lost"
    );
    tokio::time::sleep(ms(3000)).await;
    assert_eq!(count(), 1, "exactly one HEARTBEAT_LOST after the failover");
    b.abort();
    a.abort();
}
